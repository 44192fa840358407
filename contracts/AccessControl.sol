// SPDX-License-Identifier: MIT OR Apache-2.0
// Copyright (c) eas-relay contributors. Licensed under MIT or Apache-2.0, at your option.
pragma solidity ^0.8.20;

/// @title Minimal role-based access control with ERC-165 introspection.
/// @notice The external interface (functions, selectors and events) of the
/// common AccessControl pattern that the deployed EAS exposes: roles are
/// bytes32 ids, each role has an admin role that may grant and revoke it,
/// DEFAULT_ADMIN_ROLE (0x00) is the admin of every role unless changed.
abstract contract AccessControl {
    struct RoleData {
        mapping(address => bool) members;
        bytes32 adminRole;
    }

    bytes32 public constant DEFAULT_ADMIN_ROLE = 0x00;

    /// @dev interfaceId of IAccessControl (xor of the five role functions' selectors).
    bytes4 private constant ACCESS_CONTROL_INTERFACE_ID = 0x7965db0b;
    /// @dev interfaceId of ERC-165 itself.
    bytes4 private constant ERC165_INTERFACE_ID = 0x01ffc9a7;

    mapping(bytes32 => RoleData) private _roles;

    event RoleAdminChanged(bytes32 indexed role, bytes32 indexed previousAdminRole, bytes32 indexed newAdminRole);
    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
    event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);

    modifier onlyRole(bytes32 role) {
        require(hasRole(role, msg.sender), "AccessControl: missing role");
        _;
    }

    function supportsInterface(bytes4 interfaceId) public view virtual returns (bool) {
        return interfaceId == ACCESS_CONTROL_INTERFACE_ID || interfaceId == ERC165_INTERFACE_ID;
    }

    function hasRole(bytes32 role, address account) public view virtual returns (bool) {
        return _roles[role].members[account];
    }

    function getRoleAdmin(bytes32 role) public view virtual returns (bytes32) {
        return _roles[role].adminRole;
    }

    function grantRole(bytes32 role, address account) public virtual onlyRole(getRoleAdmin(role)) {
        _grantRole(role, account);
    }

    function revokeRole(bytes32 role, address account) public virtual onlyRole(getRoleAdmin(role)) {
        _revokeRole(role, account);
    }

    /// @notice An account gives up one of its own roles.
    function renounceRole(bytes32 role, address account) public virtual {
        require(account == msg.sender, "AccessControl: can only renounce roles for self");
        _revokeRole(role, account);
    }

    function _setRoleAdmin(bytes32 role, bytes32 adminRole) internal virtual {
        bytes32 previous = getRoleAdmin(role);
        _roles[role].adminRole = adminRole;
        emit RoleAdminChanged(role, previous, adminRole);
    }

    function _grantRole(bytes32 role, address account) internal virtual {
        if (!hasRole(role, account)) {
            _roles[role].members[account] = true;
            emit RoleGranted(role, account, msg.sender);
        }
    }

    function _revokeRole(bytes32 role, address account) internal virtual {
        if (hasRole(role, account)) {
            _roles[role].members[account] = false;
            emit RoleRevoked(role, account, msg.sender);
        }
    }
}
