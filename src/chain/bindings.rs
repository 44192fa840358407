//! ABI bindings (alloy `sol!`) of the contracts the relay reads: EAS, the
//! `.country` DC contract and the ENS-style base registrar (ERC-721).
//! Hand-written signatures matching the reference ABIs of the deployed
//! contracts; the `AliasActivated`/`AliasDeactivated`/`AllDeactivated`/
//! `MaintainerAccessToggled` events exist only in the project's own
//! EAS-compatible contract (the deployed one emits no alias events).
//!
//! Two events are called `NameRenewed` with different signatures (so
//! different topic0): `DC::NameRenewed(string indexed, address indexed,
//! uint256)` and `BaseRegistrar::NameRenewed(uint256 indexed, uint256)`.

use alloy::sol;

sol! {
    /// The Email Alias Service contract (AccessControl version with
    /// `MAINTAINER_ROLE`), plus the alias events of the project's contract.
    #[sol(rpc, all_derives = true)]
    interface EAS {
        function activate(string name, bytes32 aliasName, bytes32 commitment, string publicAlias) external;
        function deactivate(string name, bytes32 aliasName) external;
        function deactivateAll(string name) external;
        function toggleMaintainerAccess(string name) external;
        function setPublicAliases(string name, string[] aliases) external;
        function grantRole(bytes32 role, address account) external;
        function revokeRole(bytes32 role, address account) external;

        function getCommitment(bytes32 node, bytes32 aliasName) external view returns (bytes32);
        function getNumAlias(bytes32 node) external view returns (uint256);
        function getPublicAliases(bytes32 node) external view returns (string[]);
        function getAllowMaintainerAccess(bytes32 node) external view returns (bool);
        function hasRole(bytes32 role, address account) external view returns (bool);
        function maxNumAlias() external view returns (uint256);
        function MAINTAINER_ROLE() external view returns (bytes32);
        function dc() external view returns (address);
        function SEPARATOR() external view returns (bytes1);

        event AliasActivated(bytes32 indexed node, bytes32 indexed aliasName, bytes32 commitment);
        event AliasDeactivated(bytes32 indexed node, bytes32 indexed aliasName);
        event AllDeactivated(bytes32 indexed node);
        event MaintainerAccessToggled(bytes32 indexed node, bool allowed);
        event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
        event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);
    }
}

sol! {
    /// The `.country` DC contract: who rents a name and until when.
    #[sol(rpc, all_derives = true)]
    interface DC {
        function ownerOf(string name) external view returns (address);
        function nameExpires(string name) external view returns (uint256);

        event NameRented(string indexed name, address indexed renter, uint256 price);
        event NameRenewed(string indexed name, address indexed renter, uint256 price);
    }
}

sol! {
    /// The base registrar (ERC-721; token id = `keccak256(sld)`).
    #[sol(rpc, all_derives = true)]
    interface BaseRegistrar {
        function ownerOf(uint256 tokenId) external view returns (address);
        function nameExpires(uint256 id) external view returns (uint256);

        event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
        event NameRegistered(uint256 indexed id, address indexed owner, uint256 expires);
        event NameRenewed(uint256 indexed id, uint256 expires);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::json_abi::JsonAbi;
    use alloy::sol_types::{SolCall, SolEvent};
    use std::path::PathBuf;

    /// A reference ABI of the deployed contracts (copies kept in
    /// tests/fixtures, see its README).
    fn reference(file: &str) -> JsonAbi {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reference ABI {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn has_selector(abi: &JsonAbi, selector: [u8; 4]) -> bool {
        abi.functions().any(|f| f.selector() == selector)
    }

    fn has_event(abi: &JsonAbi, topic0: alloy::primitives::B256) -> bool {
        abi.events().any(|e| e.selector() == topic0)
    }

    #[test]
    fn eas_functions_match_the_deployed_abi() {
        let abi = reference("eas-reference-abi.json");
        for selector in [
            EAS::activateCall::SELECTOR,
            EAS::deactivateCall::SELECTOR,
            EAS::deactivateAllCall::SELECTOR,
            EAS::toggleMaintainerAccessCall::SELECTOR,
            EAS::setPublicAliasesCall::SELECTOR,
            EAS::grantRoleCall::SELECTOR,
            EAS::revokeRoleCall::SELECTOR,
            EAS::getCommitmentCall::SELECTOR,
            EAS::getNumAliasCall::SELECTOR,
            EAS::getPublicAliasesCall::SELECTOR,
            EAS::getAllowMaintainerAccessCall::SELECTOR,
            EAS::hasRoleCall::SELECTOR,
            EAS::maxNumAliasCall::SELECTOR,
            EAS::MAINTAINER_ROLECall::SELECTOR,
            EAS::dcCall::SELECTOR,
            EAS::SEPARATORCall::SELECTOR,
        ] {
            assert!(
                has_selector(&abi, selector),
                "{selector:02x?} not in EAS.json"
            );
        }
        for topic in [
            EAS::RoleGranted::SIGNATURE_HASH,
            EAS::RoleRevoked::SIGNATURE_HASH,
        ] {
            assert!(has_event(&abi, topic), "{topic} not in EAS.json");
        }
        // The deployed EAS emits no alias events (DESIGN §2).
        assert!(!has_event(&abi, EAS::AliasActivated::SIGNATURE_HASH));
    }

    #[test]
    fn dc_and_registrar_match_the_deployed_abis() {
        let dc = reference("dc-reference-abi.json");
        assert!(has_selector(&dc, DC::ownerOfCall::SELECTOR));
        assert!(has_selector(&dc, DC::nameExpiresCall::SELECTOR));
        assert!(has_event(&dc, DC::NameRented::SIGNATURE_HASH));
        assert!(has_event(&dc, DC::NameRenewed::SIGNATURE_HASH));

        let registrar = reference("registrar-reference-abi.json");
        assert!(has_selector(
            &registrar,
            BaseRegistrar::ownerOfCall::SELECTOR
        ));
        assert!(has_selector(
            &registrar,
            BaseRegistrar::nameExpiresCall::SELECTOR
        ));
        for topic in [
            BaseRegistrar::Transfer::SIGNATURE_HASH,
            BaseRegistrar::NameRegistered::SIGNATURE_HASH,
            BaseRegistrar::NameRenewed::SIGNATURE_HASH,
        ] {
            assert!(
                has_event(&registrar, topic),
                "{topic} not in the registrar ABI"
            );
        }
    }

    #[test]
    fn the_two_name_renewed_events_differ() {
        assert_ne!(
            DC::NameRenewed::SIGNATURE_HASH,
            BaseRegistrar::NameRenewed::SIGNATURE_HASH
        );
        assert_eq!(
            DC::NameRenewed::SIGNATURE,
            "NameRenewed(string,address,uint256)"
        );
        assert_eq!(
            BaseRegistrar::NameRenewed::SIGNATURE,
            "NameRenewed(uint256,uint256)"
        );
    }
}
