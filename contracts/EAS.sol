// SPDX-License-Identifier: MIT OR Apache-2.0
// Copyright (c) eas-relay contributors. Licensed under MIT or Apache-2.0, at your option.
pragma solidity ^0.8.20;

import {AccessControl} from "./AccessControl.sol";
import {IDC} from "./IDC.sol";

/// @title Email Alias Service: on-chain commitments of email aliases of .country names.
/// @notice Written for eas-relay from the ABI and the documented behaviour of
/// the deployed EAS contract: the same functions, selectors and rules.
///
/// A name (SLD, e.g. "fsociety" for fsociety.country) is identified by
/// `node = keccak256(bytes(name))`, an alias by `aliasName = keccak256(bytes(alias))`.
/// For each active alias the contract stores only a commitment
/// `keccak256(alias | forwardAddress | sig)`, where `sig` is the owner's 65-byte
/// personal_sign signature of the authorization text; the forwarding address
/// itself is never on-chain.
///
/// Who may change a name's aliases: its owner in the DC contract while the
/// name has not expired, or an account holding MAINTAINER_ROLE unless the
/// owner has disabled maintainer access for the name.
///
/// `EASBase` holds all of it; the two deployable contracts differ only in the
/// events of alias changes: `EAS` emits them, `EASWithoutEvents` does not
/// (like the deployed contract, whose changes are only visible as calls).
abstract contract EASBase is AccessControl {
    struct Config {
        uint256 numAlias;
        bool disallowMaintainer;
    }

    bytes32 public constant MAINTAINER_ROLE = keccak256("MAINTAINER_ROLE");
    bytes1 public constant SEPARATOR = bytes1("|");

    IDC public dc;
    uint256 public maxNumAlias;
    /// @notice The EAS contract this one replaces (informational; set by the admin).
    EAS public upgradedFrom;

    mapping(bytes32 => Config) public configs;

    /// @dev deactivateAll starts a new generation of a name's aliases, so that
    /// it costs the same however many aliases the name had.
    mapping(bytes32 => uint256) private _generation;
    /// @dev node => generation => aliasName => commitment
    mapping(bytes32 => mapping(uint256 => mapping(bytes32 => bytes32))) private _commitments;
    mapping(bytes32 => string[]) private _publicAliases;

    constructor(IDC _dc, uint256 _maxNumAlias) {
        dc = _dc;
        maxNumAlias = _maxNumAlias;
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
        _grantRole(MAINTAINER_ROLE, msg.sender);
    }

    // ---- administration ----

    function setDc(IDC _dc) external onlyRole(DEFAULT_ADMIN_ROLE) {
        dc = _dc;
    }

    function setMaxNumAlias(uint256 _maxNumAlias) external onlyRole(DEFAULT_ADMIN_ROLE) {
        maxNumAlias = _maxNumAlias;
    }

    function setUpgradedFrom(EAS _upgradedFrom) external onlyRole(DEFAULT_ADMIN_ROLE) {
        upgradedFrom = _upgradedFrom;
    }

    // ---- authorization ----

    /// @dev `account` owns `name` now: it is the DC owner and the name has not expired.
    function _isOwner(string calldata name, address account) internal view returns (bool) {
        return dc.ownerOf(name) == account && dc.nameExpires(name) > block.timestamp;
    }

    modifier onlyOwnerOrMaintainer(string calldata name) {
        bytes32 node = keccak256(bytes(name));
        require(
            _isOwner(name, msg.sender)
                || (hasRole(MAINTAINER_ROLE, msg.sender) && !configs[node].disallowMaintainer),
            "EAS: not owner or maintainer"
        );
        _;
    }

    // ---- alias changes ----

    /// @notice Activates `aliasName` of `name` with `commitment`, or replaces the
    /// commitment of an alias that is already active. A non-empty `publicAlias`
    /// (the alias in plain text, for display) is added to the public aliases.
    function activate(string calldata name, bytes32 aliasName, bytes32 commitment, string calldata publicAlias)
        external
        onlyOwnerOrMaintainer(name)
    {
        require(commitment != bytes32(0), "EAS: empty commitment");
        bytes32 node = keccak256(bytes(name));
        Config storage config = configs[node];
        mapping(bytes32 => bytes32) storage commitments = _commitments[node][_generation[node]];
        if (commitments[aliasName] == bytes32(0)) {
            require(config.numAlias < maxNumAlias, "EAS: too many aliases");
            config.numAlias += 1;
        }
        commitments[aliasName] = commitment;
        if (bytes(publicAlias).length > 0) {
            _publicAliases[node].push(publicAlias);
        }
        _aliasActivated(node, aliasName, commitment);
    }

    /// @notice Deactivates one active alias (and removes it from the public aliases).
    function deactivate(string calldata name, bytes32 aliasName) external onlyOwnerOrMaintainer(name) {
        bytes32 node = keccak256(bytes(name));
        mapping(bytes32 => bytes32) storage commitments = _commitments[node][_generation[node]];
        require(commitments[aliasName] != bytes32(0), "EAS: alias not active");
        delete commitments[aliasName];
        configs[node].numAlias -= 1;
        string[] storage shown = _publicAliases[node];
        for (uint256 i = shown.length; i > 0; i--) {
            if (keccak256(bytes(shown[i - 1])) == aliasName) {
                shown[i - 1] = shown[shown.length - 1];
                shown.pop();
            }
        }
        _aliasDeactivated(node, aliasName);
    }

    /// @notice Deactivates every alias of `name` and clears its public aliases.
    function deactivateAll(string calldata name) external onlyOwnerOrMaintainer(name) {
        bytes32 node = keccak256(bytes(name));
        _generation[node] += 1;
        configs[node].numAlias = 0;
        delete _publicAliases[node];
        _allDeactivated(node);
    }

    /// @notice Replaces the list of aliases shown publicly for `name`.
    function setPublicAliases(string calldata name, string[] calldata aliases) external onlyOwnerOrMaintainer(name) {
        require(aliases.length <= maxNumAlias, "EAS: too many aliases");
        bytes32 node = keccak256(bytes(name));
        delete _publicAliases[node];
        for (uint256 i = 0; i < aliases.length; i++) {
            _publicAliases[node].push(aliases[i]);
        }
    }

    /// @notice The owner allows or disallows (alternately) maintainers to manage the name's aliases.
    function toggleMaintainerAccess(string calldata name) external {
        require(_isOwner(name, msg.sender), "EAS: not owner");
        bytes32 node = keccak256(bytes(name));
        Config storage config = configs[node];
        config.disallowMaintainer = !config.disallowMaintainer;
        _maintainerAccessToggled(node, !config.disallowMaintainer);
    }

    // ---- views ----

    function getCommitment(bytes32 node, bytes32 aliasName) public view returns (bytes32) {
        return _commitments[node][_generation[node]][aliasName];
    }

    function getNumAlias(bytes32 node) external view returns (uint256) {
        return configs[node].numAlias;
    }

    function getPublicAliases(bytes32 node) external view returns (string[] memory) {
        return _publicAliases[node];
    }

    function getAllowMaintainerAccess(bytes32 node) external view returns (bool) {
        return !configs[node].disallowMaintainer;
    }

    /// @notice Reverts unless `sig` (65 bytes r|s|v over `msgHash`) was made by the
    /// owner of `name` and the stored commitment of `aliasName` is
    /// keccak256(aliasName | forwardAddress | sig).
    function verify(
        string calldata name,
        bytes32 msgHash,
        string calldata aliasName,
        string calldata forwardAddress,
        bytes calldata sig
    ) external view {
        require(sig.length == 65, "EAS: signature must be 65 bytes");
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (v < 27) {
            v += 27;
        }
        address signer = ecrecover(msgHash, v, r, s);
        require(signer != address(0) && signer == dc.ownerOf(name), "EAS: signer is not the owner");
        bytes32 expected = keccak256(bytes.concat(bytes(aliasName), SEPARATOR, bytes(forwardAddress), SEPARATOR, sig));
        require(
            getCommitment(keccak256(bytes(name)), keccak256(bytes(aliasName))) == expected, "EAS: commitment mismatch"
        );
    }

    // ---- hooks of the deployable variants ----

    function _aliasActivated(bytes32 node, bytes32 aliasName, bytes32 commitment) internal virtual;

    function _aliasDeactivated(bytes32 node, bytes32 aliasName) internal virtual;

    function _allDeactivated(bytes32 node) internal virtual;

    function _maintainerAccessToggled(bytes32 node, bool allowed) internal virtual;
}

/// @title EAS that also emits an event for every alias change.
contract EAS is EASBase {
    event AliasActivated(bytes32 indexed node, bytes32 indexed aliasName, bytes32 commitment);
    event AliasDeactivated(bytes32 indexed node, bytes32 indexed aliasName);
    event AllDeactivated(bytes32 indexed node);
    event MaintainerAccessToggled(bytes32 indexed node, bool allowed);

    constructor(IDC _dc, uint256 _maxNumAlias) EASBase(_dc, _maxNumAlias) {}

    function _aliasActivated(bytes32 node, bytes32 aliasName, bytes32 commitment) internal override {
        emit AliasActivated(node, aliasName, commitment);
    }

    function _aliasDeactivated(bytes32 node, bytes32 aliasName) internal override {
        emit AliasDeactivated(node, aliasName);
    }

    function _allDeactivated(bytes32 node) internal override {
        emit AllDeactivated(node);
    }

    function _maintainerAccessToggled(bytes32 node, bool allowed) internal override {
        emit MaintainerAccessToggled(node, allowed);
    }
}

/// @title EAS as deployed: the same functions, no events of alias changes.
/// @notice For testing how eas-relay follows a contract that is only
/// observable through its transactions' calldata and its state.
contract EASWithoutEvents is EASBase {
    constructor(IDC _dc, uint256 _maxNumAlias) EASBase(_dc, _maxNumAlias) {}

    function _aliasActivated(bytes32, bytes32, bytes32) internal override {}

    function _aliasDeactivated(bytes32, bytes32) internal override {}

    function _allDeactivated(bytes32) internal override {}

    function _maintainerAccessToggled(bytes32, bool) internal override {}
}
