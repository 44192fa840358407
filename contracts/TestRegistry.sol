// SPDX-License-Identifier: MIT OR Apache-2.0
// Copyright (c) eas-relay contributors. Licensed under MIT or Apache-2.0, at your option.
pragma solidity ^0.8.20;

import {IDC} from "./IDC.sol";

/// @title A .country-like name registry for tests (no payments, no commit-reveal).
/// @notice Answers `ownerOf(string)` and `nameExpires(string)` like the DC
/// contract and emits the events eas-relay follows: DC's `NameRented` and
/// `NameRenewed`, and the base registrar's ERC-721 `Transfer` with
/// `tokenId = uint256(keccak256(bytes(name)))`.
///
/// Like DC, `ownerOf` keeps answering the last owner after a name expired:
/// whoever reads it must check `nameExpires` itself. An expired name may be
/// registered again by anyone (its token moves: burn from the old owner,
/// mint to the new one). Prices are always 0.
contract TestRegistry is IDC {
    struct Record {
        address owner;
        uint256 expires;
    }

    mapping(bytes32 => Record) private _records;

    event NameRented(string indexed name, address indexed renter, uint256 price);
    event NameRenewed(string indexed name, address indexed renter, uint256 price);
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    function ownerOf(string calldata name) external view override returns (address) {
        return _records[keccak256(bytes(name))].owner;
    }

    function nameExpires(string calldata name) external view override returns (uint256) {
        return _records[keccak256(bytes(name))].expires;
    }

    /// @notice Registers `name` for `owner` until now + `duration` seconds. The
    /// name must be new or expired.
    function register(string calldata name, address owner, uint256 duration) external {
        require(owner != address(0), "TestRegistry: zero owner");
        bytes32 node = keccak256(bytes(name));
        Record storage record = _records[node];
        require(record.expires <= block.timestamp, "TestRegistry: name not available");
        uint256 tokenId = uint256(node);
        if (record.owner != address(0)) {
            emit Transfer(record.owner, address(0), tokenId);
        }
        record.owner = owner;
        record.expires = block.timestamp + duration;
        emit Transfer(address(0), owner, tokenId);
        emit NameRented(name, owner, 0);
    }

    /// @notice The owner of an unexpired name gives it to `to`.
    function transfer(string calldata name, address to) external {
        require(to != address(0), "TestRegistry: zero owner");
        bytes32 node = keccak256(bytes(name));
        Record storage record = _records[node];
        require(record.owner == msg.sender, "TestRegistry: not owner");
        require(record.expires > block.timestamp, "TestRegistry: name expired");
        record.owner = to;
        emit Transfer(msg.sender, to, uint256(node));
    }

    /// @notice Anyone may renew a registered name: it then expires `duration`
    /// seconds after its current expiry, or after now if it already expired.
    function renew(string calldata name, uint256 duration) external {
        Record storage record = _records[keccak256(bytes(name))];
        require(record.owner != address(0), "TestRegistry: name not registered");
        uint256 from = record.expires > block.timestamp ? record.expires : block.timestamp;
        record.expires = from + duration;
        emit NameRenewed(name, msg.sender, 0);
    }
}
