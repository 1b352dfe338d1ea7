// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "./lib/IERC20.sol";

/// @title MycelToken
/// @notice A plain ERC-20 for the devnet: 18 decimals, minted by its owner. Production deployments
/// take any ERC-20 address from their configuration instead.
contract MycelToken is IERC20 {
    string public constant name = "Mycel Devnet Token";
    string public constant symbol = "MYC";
    uint8 public constant decimals = 18;

    address public immutable owner;
    uint256 public totalSupply;
    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    /// @notice The sender lacks `needed` tokens (has `available`).
    error InsufficientBalance(address account, uint256 available, uint256 needed);
    /// @notice The spender may move only `allowed` of the owner's tokens.
    error InsufficientAllowance(address spender, uint256 allowed, uint256 needed);
    /// @notice Transfers to the zero address are refused.
    error ZeroAddressRecipient();
    /// @notice Only the owner mints.
    error NotOwner(address caller);

    constructor() {
        owner = msg.sender;
    }

    /// @notice Creates `amount` tokens for `to`; owner only.
    function mint(address to, uint256 amount) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (to == address(0)) revert ZeroAddressRecipient();
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert InsufficientAllowance(msg.sender, allowed, value);
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert ZeroAddressRecipient();
        uint256 available = balanceOf[from];
        if (available < value) revert InsufficientBalance(from, available, value);
        unchecked {
            balanceOf[from] = available - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
