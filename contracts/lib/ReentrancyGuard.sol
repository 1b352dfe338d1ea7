// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice Refuses a call into a guarded function while another guarded function of the same
/// contract is running (a token calling back during a transfer). Uses transient storage.
abstract contract ReentrancyGuard {
    /// @notice A guarded function was entered again before it returned.
    error ReentrantCall();

    uint256 private transient entered;

    modifier nonReentrant() {
        if (entered != 0) revert ReentrantCall();
        entered = 1;
        _;
        entered = 0;
    }
}
