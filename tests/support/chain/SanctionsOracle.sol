// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The view the Chainalysis sanctions oracle exposes, with an owner-managed list for tests.
contract SanctionsOracle {
    address public immutable owner;
    mapping(address => bool) private _sanctioned;

    constructor() {
        owner = msg.sender;
    }

    function addToSanctionsList(address[] calldata addresses) external {
        require(msg.sender == owner, "not owner");
        for (uint256 i = 0; i < addresses.length; i++) {
            _sanctioned[addresses[i]] = true;
        }
    }

    function isSanctioned(address addr) external view returns (bool) {
        return _sanctioned[addr];
    }
}
