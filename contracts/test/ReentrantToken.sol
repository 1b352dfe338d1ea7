// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice TEST ONLY: an ERC-20 that, the next time it sends tokens after being armed, first calls
/// `attackTarget` with prepared calldata (a reentrancy attack through a malicious token). Records
/// whether the callback succeeded and what it reverted with.
contract ReentrantToken {
    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;
    uint256 public totalSupply;

    address public attackTarget;
    bytes public attackCalldata;
    bool public attackArmed;
    bool public attackAttempted;
    bool public attackSucceeded;
    bytes public attackRevertData;

    event Transfer(address indexed from, address indexed to, uint256 value);

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    /// @notice Arms the attack: the next `transfer` calls `target` with `data` first.
    function arm(address target, bytes calldata data) external {
        attackTarget = target;
        attackCalldata = data;
        attackArmed = true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        if (attackArmed) {
            attackArmed = false;
            attackAttempted = true;
            (bool ok, bytes memory data) = attackTarget.call(attackCalldata);
            attackSucceeded = ok;
            attackRevertData = data;
        }
        _move(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        require(allowance[from][msg.sender] >= value, "allowance");
        allowance[from][msg.sender] -= value;
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        require(balanceOf[from] >= value, "balance");
        balanceOf[from] -= value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
