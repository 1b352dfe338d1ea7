// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "./IERC20.sol";

/// @notice ERC-20 transfers that revert on failure, including tokens that return nothing,
/// and pulls that credit what actually arrived (fee-on-transfer tokens).
library TokenTransfers {
    /// @notice A token call failed or returned false.
    error TokenTransferFailed(address token);
    /// @notice A pull credited nothing.
    error NothingReceived(address token);

    function _call(IERC20 token, bytes memory data) private {
        (bool ok, bytes memory returned) = address(token).call(data);
        if (!ok || (returned.length != 0 && !abi.decode(returned, (bool))) || address(token).code.length == 0) {
            revert TokenTransferFailed(address(token));
        }
    }

    /// @notice Sends `amount` of `token` to `to`.
    function send(IERC20 token, address to, uint256 amount) internal {
        if (amount == 0) return;
        _call(token, abi.encodeCall(IERC20.transfer, (to, amount)));
    }

    /// @notice Pulls `amount` from `from` (who approved this contract) and returns what arrived.
    function pull(IERC20 token, address from, uint256 amount) internal returns (uint256 received) {
        uint256 before = token.balanceOf(address(this));
        _call(token, abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
        received = token.balanceOf(address(this)) - before;
        if (received == 0) revert NothingReceived(address(token));
    }
}
