// SPDX-License-Identifier: MIT OR Apache-2.0
// Copyright (c) eas-relay contributors. Licensed under MIT or Apache-2.0, at your option.
pragma solidity ^0.8.20;

/// @title The part of the .country DC contract that EAS reads.
interface IDC {
    /// @notice The current (or, after expiry, the last) owner of `name` (an SLD such as "fsociety").
    function ownerOf(string calldata name) external view returns (address);

    /// @notice When the registration of `name` ends (unix seconds; 0 if never registered).
    function nameExpires(string calldata name) external view returns (uint256);
}
