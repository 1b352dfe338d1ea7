// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice TEST ONLY: a contract account that makes arbitrary calls, bubbling up reverts, so a
/// malicious token can make it re-enter a Mycel contract in the middle of a transfer.
contract Attacker {
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory returned) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(returned, 32), mload(returned))
            }
        }
        return returned;
    }
}
