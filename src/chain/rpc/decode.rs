//! What the relay reads out of the node's answers: the events of interest
//! in logs, the EAS calls in transaction input, the return values of state
//! reads (and their calldata), and the few block fields it needs. Decoding
//! is strict: a value that does not fit its type is refused, and any log or
//! calldata, however malformed, gives None or a value, never a panic.

use alloy::primitives::{Address, B256, Bytes, U64, U256};
use alloy::sol_types::{SolCall, SolEvent, SolInterface};
use serde::Deserialize;

use super::error::ChainError;
use crate::chain::bindings::{BaseRegistrar, DC, EAS};
use crate::chain::verify::MAINTAINER_ROLE;

/// A decoded log of interest. Nodes: Transfer's token id and the registrar's
/// `id` are `keccak256(sld)`, and so is the indexed `string name` topic of
/// DC's events: all are the EAS node of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    AliasActivated {
        node: B256,
        alias: B256,
        commitment: B256,
    },
    AliasDeactivated {
        node: B256,
        alias: B256,
    },
    AllDeactivated {
        node: B256,
    },
    MaintainerAccessToggled {
        node: B256,
        allowed: bool,
    },
    NameTransferred {
        node: B256,
        to: Address,
    },
    NameRenewed {
        node: B256,
    },
    NameRegistered {
        node: B256,
    },
    RoleChanged {
        role: B256,
        account: Address,
        granted: bool,
    },
}

/// A decoded top-level call to the EAS contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EasCall {
    Activate { name: String, alias: B256 },
    Deactivate { name: String, alias: B256 },
    DeactivateAll { name: String },
    ToggleMaintainer { name: String },
    SetPublicAliases { name: String },
}

/// One state read of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRead {
    Commitment {
        eas: Address,
        node: B256,
        alias: B256,
    },
    OwnerOf {
        dc: Address,
        sld: String,
    },
    NameExpires {
        dc: Address,
        sld: String,
    },
    MaintainerAllowed {
        eas: Address,
        node: B256,
    },
    IsMaintainer {
        eas: Address,
        account: Address,
    },
}

/// The answer to one [`StateRead`]: `Hash` for a commitment, `Address` for
/// an owner, `Number` for an expiry, `Bool` for the maintainer reads, and
/// `Reverted` when that one call reverted (e.g. `ownerOf` of a name that
/// does not exist or has expired, for registries that revert there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateValue {
    Hash(B256),
    Address(Address),
    Number(u64),
    Bool(bool),
    Reverted(String),
}

impl StateValue {
    /// A registry or role read that reverts means "nothing there": an
    /// ENS-style registrar's `ownerOf` reverts for an expired or unknown
    /// name, which must stop its aliases, not stall the reader.
    pub(crate) fn or_if_reverted(self, nothing: StateValue) -> StateValue {
        match self {
            StateValue::Reverted(_) => nothing,
            v => v,
        }
    }
}

impl StateRead {
    /// The contract called and the calldata.
    pub(super) fn encode(&self) -> (Address, Vec<u8>) {
        match self {
            StateRead::Commitment { eas, node, alias } => (
                *eas,
                EAS::getCommitmentCall {
                    node: *node,
                    aliasName: *alias,
                }
                .abi_encode(),
            ),
            StateRead::OwnerOf { dc, sld } => {
                (*dc, DC::ownerOfCall { name: sld.clone() }.abi_encode())
            }
            StateRead::NameExpires { dc, sld } => {
                (*dc, DC::nameExpiresCall { name: sld.clone() }.abi_encode())
            }
            StateRead::MaintainerAllowed { eas, node } => (
                *eas,
                EAS::getAllowMaintainerAccessCall { node: *node }.abi_encode(),
            ),
            StateRead::IsMaintainer { eas, account } => (
                *eas,
                EAS::hasRoleCall {
                    role: MAINTAINER_ROLE,
                    account: *account,
                }
                .abi_encode(),
            ),
        }
    }

    /// The typed answer from the call's return data.
    pub(super) fn decode(&self, out: &[u8]) -> Result<StateValue, ChainError> {
        Ok(match self {
            StateRead::Commitment { .. } => StateValue::Hash(decode_returns::<
                EAS::getCommitmentCall,
            >(out, "getCommitment")?),
            StateRead::OwnerOf { .. } => {
                StateValue::Address(decode_returns::<DC::ownerOfCall>(out, "ownerOf")?)
            }
            StateRead::NameExpires { .. } => StateValue::Number(saturate(decode_returns::<
                DC::nameExpiresCall,
            >(
                out, "nameExpires"
            )?)),
            StateRead::MaintainerAllowed { .. } => {
                StateValue::Bool(decode_returns::<EAS::getAllowMaintainerAccessCall>(
                    out,
                    "getAllowMaintainerAccess",
                )?)
            }
            StateRead::IsMaintainer { .. } => {
                StateValue::Bool(decode_returns::<EAS::hasRoleCall>(out, "hasRole")?)
            }
        })
    }
}

/// The only block fields the relay needs.
#[derive(Debug, Deserialize)]
pub(super) struct BlockHeader {
    hash: B256,
    number: U64,
    timestamp: U64,
}

/// A block's place and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub number: u64,
    pub hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
}

/// A block with its transactions, of which only `to` and `input` are read.
#[derive(Debug, Deserialize)]
pub(super) struct BlockWithTxs {
    #[serde(default)]
    pub(super) transactions: Vec<TxLite>,
}

/// The only transaction fields the relay needs.
#[derive(Debug, Deserialize)]
pub(super) struct TxLite {
    #[serde(default)]
    pub(super) to: Option<Address>,
    pub(super) input: Bytes,
}

impl BlockHeader {
    pub(super) fn info(self) -> BlockInfo {
        BlockInfo {
            number: self.number.to(),
            hash: self.hash,
            timestamp: self.timestamp.to(),
        }
    }
}

/// The return value of `C` from `out` (strictly: a value that does not fit
/// its type, e.g. an address with high bits set, is refused).
pub(super) fn decode_returns<C: SolCall>(
    out: &[u8],
    what: &'static str,
) -> Result<C::Return, ChainError> {
    if out.is_empty() {
        return Err(ChainError::Decode {
            what,
            detail: "empty return data (no contract at that address?)".into(),
        });
    }
    C::abi_decode_returns_validate(out).map_err(|e| ChainError::Decode {
        what,
        detail: e.to_string(),
    })
}

pub(super) fn saturate(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// topic0 of every event [`decode_log`] knows.
pub(super) fn known_topics() -> [B256; 11] {
    [
        EAS::AliasActivated::SIGNATURE_HASH,
        EAS::AliasDeactivated::SIGNATURE_HASH,
        EAS::AllDeactivated::SIGNATURE_HASH,
        EAS::MaintainerAccessToggled::SIGNATURE_HASH,
        EAS::RoleGranted::SIGNATURE_HASH,
        EAS::RoleRevoked::SIGNATURE_HASH,
        BaseRegistrar::Transfer::SIGNATURE_HASH,
        BaseRegistrar::NameRegistered::SIGNATURE_HASH,
        BaseRegistrar::NameRenewed::SIGNATURE_HASH,
        DC::NameRented::SIGNATURE_HASH,
        DC::NameRenewed::SIGNATURE_HASH,
    ]
}

/// The event of interest in a log, None for any other log (including a
/// known topic0 with the wrong topic count, e.g. an ERC-20 `Transfer`).
pub(super) fn decode_log(log: &alloy::primitives::Log) -> Option<ChainEvent> {
    let data = &log.data;
    let topic0 = *data.topics().first()?;
    let event = match topic0 {
        EAS::AliasActivated::SIGNATURE_HASH => {
            let e = EAS::AliasActivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AliasActivated {
                node: e.node,
                alias: e.aliasName,
                commitment: e.commitment,
            }
        }
        EAS::AliasDeactivated::SIGNATURE_HASH => {
            let e = EAS::AliasDeactivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AliasDeactivated {
                node: e.node,
                alias: e.aliasName,
            }
        }
        EAS::AllDeactivated::SIGNATURE_HASH => {
            let e = EAS::AllDeactivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AllDeactivated { node: e.node }
        }
        EAS::MaintainerAccessToggled::SIGNATURE_HASH => {
            let e = EAS::MaintainerAccessToggled::decode_log_data_validate(data).ok()?;
            ChainEvent::MaintainerAccessToggled {
                node: e.node,
                allowed: e.allowed,
            }
        }
        EAS::RoleGranted::SIGNATURE_HASH => {
            let e = EAS::RoleGranted::decode_log_data_validate(data).ok()?;
            ChainEvent::RoleChanged {
                role: e.role,
                account: e.account,
                granted: true,
            }
        }
        EAS::RoleRevoked::SIGNATURE_HASH => {
            let e = EAS::RoleRevoked::decode_log_data_validate(data).ok()?;
            ChainEvent::RoleChanged {
                role: e.role,
                account: e.account,
                granted: false,
            }
        }
        BaseRegistrar::Transfer::SIGNATURE_HASH => {
            let e = BaseRegistrar::Transfer::decode_log_data_validate(data).ok()?;
            ChainEvent::NameTransferred {
                node: e.tokenId.into(),
                to: e.to,
            }
        }
        BaseRegistrar::NameRegistered::SIGNATURE_HASH => {
            let e = BaseRegistrar::NameRegistered::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRegistered { node: e.id.into() }
        }
        BaseRegistrar::NameRenewed::SIGNATURE_HASH => {
            let e = BaseRegistrar::NameRenewed::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRenewed { node: e.id.into() }
        }
        DC::NameRenewed::SIGNATURE_HASH => {
            let e = DC::NameRenewed::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRenewed { node: e.name }
        }
        DC::NameRented::SIGNATURE_HASH => {
            let e = DC::NameRented::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRegistered { node: e.name }
        }
        _ => return None,
    };
    Some(event)
}

/// The EAS call in a transaction's input, None for any other input.
pub(super) fn decode_eas_call(input: &[u8]) -> Option<EasCall> {
    use EAS::EASCalls as C;
    Some(match C::abi_decode(input).ok()? {
        C::activate(c) => EasCall::Activate {
            name: c.name,
            alias: c.aliasName,
        },
        C::deactivate(c) => EasCall::Deactivate {
            name: c.name,
            alias: c.aliasName,
        },
        C::deactivateAll(c) => EasCall::DeactivateAll { name: c.name },
        C::toggleMaintainerAccess(c) => EasCall::ToggleMaintainer { name: c.name },
        C::setPublicAliases(c) => EasCall::SetPublicAliases { name: c.name },
        _ => return None,
    })
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
