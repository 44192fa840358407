//! Tests of the decoders: every event and call back from its encoding,
//! strictness on malformed input, and fuzzing for panics.

use super::*;
use crate::chain::verify::{alias_hash, node};
use alloy::primitives::{LogData, address};
use alloy::sol_types::SolValue;

const EMITTER: Address = address!("0x00000000000000000000000000000000000000ee");
const ALICE: Address = address!("0x00000000000000000000000000000000000a11ce");

fn log_of<E: SolEvent>(event: &E) -> alloy::primitives::Log {
    alloy::primitives::Log {
        address: EMITTER,
        data: event.encode_log_data(),
    }
}

#[test]
fn every_event_decodes_back() {
    let n = node("fsociety");
    let a = alias_hash("hello");
    let c = B256::repeat_byte(0x42);
    let id = U256::from_be_bytes(n.0);
    let cases: Vec<(alloy::primitives::Log, ChainEvent)> = vec![
        (
            log_of(&EAS::AliasActivated {
                node: n,
                aliasName: a,
                commitment: c,
            }),
            ChainEvent::AliasActivated {
                node: n,
                alias: a,
                commitment: c,
            },
        ),
        (
            log_of(&EAS::AliasDeactivated {
                node: n,
                aliasName: a,
            }),
            ChainEvent::AliasDeactivated { node: n, alias: a },
        ),
        (
            log_of(&EAS::AllDeactivated { node: n }),
            ChainEvent::AllDeactivated { node: n },
        ),
        (
            log_of(&EAS::MaintainerAccessToggled {
                node: n,
                allowed: false,
            }),
            ChainEvent::MaintainerAccessToggled {
                node: n,
                allowed: false,
            },
        ),
        (
            log_of(&EAS::RoleGranted {
                role: MAINTAINER_ROLE,
                account: ALICE,
                sender: EMITTER,
            }),
            ChainEvent::RoleChanged {
                role: MAINTAINER_ROLE,
                account: ALICE,
                granted: true,
            },
        ),
        (
            log_of(&EAS::RoleRevoked {
                role: MAINTAINER_ROLE,
                account: ALICE,
                sender: EMITTER,
            }),
            ChainEvent::RoleChanged {
                role: MAINTAINER_ROLE,
                account: ALICE,
                granted: false,
            },
        ),
        (
            log_of(&BaseRegistrar::Transfer {
                from: Address::ZERO,
                to: ALICE,
                tokenId: id,
            }),
            ChainEvent::NameTransferred { node: n, to: ALICE },
        ),
        (
            log_of(&BaseRegistrar::NameRegistered {
                id,
                owner: ALICE,
                expires: U256::from(1_900_000_000u64),
            }),
            ChainEvent::NameRegistered { node: n },
        ),
        (
            log_of(&BaseRegistrar::NameRenewed {
                id,
                expires: U256::from(1_900_000_000u64),
            }),
            ChainEvent::NameRenewed { node: n },
        ),
        // DC's events index the name string: the topic is keccak256(name).
        (
            log_of(&DC::NameRented {
                name: n,
                renter: ALICE,
                price: U256::from(5),
            }),
            ChainEvent::NameRegistered { node: n },
        ),
        (
            log_of(&DC::NameRenewed {
                name: n,
                renter: ALICE,
                price: U256::from(5),
            }),
            ChainEvent::NameRenewed { node: n },
        ),
    ];
    assert_eq!(cases.len(), known_topics().len());
    for (log, expected) in cases {
        assert!(known_topics().contains(&log.data.topics()[0]));
        assert_eq!(decode_log(&log), Some(expected));
    }
}

#[test]
fn dc_name_topic_is_the_node() {
    // What a real DC emits for `NameRented("fsociety", ...)`: the indexed
    // string's topic is keccak256 of its bytes, the EAS node.
    let topics = vec![
        DC::NameRented::SIGNATURE_HASH,
        alloy::primitives::keccak256("fsociety"),
        ALICE.into_word(),
    ];
    let data = U256::from(7).abi_encode();
    let log = alloy::primitives::Log {
        address: EMITTER,
        data: LogData::new(topics, data.into()).unwrap(),
    };
    assert_eq!(
        decode_log(&log),
        Some(ChainEvent::NameRegistered {
            node: node("fsociety")
        })
    );
}

#[test]
fn other_logs_are_skipped() {
    // ERC-20 Transfer: same topic0, value in data, 3 topics.
    let erc20 = alloy::primitives::Log {
        address: EMITTER,
        data: LogData::new(
            vec![
                BaseRegistrar::Transfer::SIGNATURE_HASH,
                ALICE.into_word(),
                ALICE.into_word(),
            ],
            U256::from(1).abi_encode().into(),
        )
        .unwrap(),
    };
    assert_eq!(decode_log(&erc20), None);
    // Unknown topic0, no topics at all.
    let unknown = alloy::primitives::Log {
        address: EMITTER,
        data: LogData::new(vec![B256::repeat_byte(1)], Bytes::new()).unwrap(),
    };
    assert_eq!(decode_log(&unknown), None);
    let anonymous = alloy::primitives::Log {
        address: EMITTER,
        data: LogData::new(vec![], Bytes::new()).unwrap(),
    };
    assert_eq!(decode_log(&anonymous), None);
    // Known event with truncated data.
    let mut short = log_of(&EAS::AliasActivated {
        node: B256::ZERO,
        aliasName: B256::ZERO,
        commitment: B256::ZERO,
    });
    short.data = LogData::new(short.data.topics().to_vec(), Bytes::from(vec![0u8; 16])).unwrap();
    assert_eq!(decode_log(&short), None);
    // A bool that is neither 0 nor 1 is not a MaintainerAccessToggled.
    let bad_bool = alloy::primitives::Log {
        address: EMITTER,
        data: LogData::new(
            vec![EAS::MaintainerAccessToggled::SIGNATURE_HASH, B256::ZERO],
            U256::from(2).abi_encode().into(),
        )
        .unwrap(),
    };
    assert_eq!(decode_log(&bad_bool), None);
}

#[test]
fn eas_calls_decode_back() {
    let a = alias_hash("hello");
    let name = "fsociety".to_string();
    let cases = [
        (
            EAS::activateCall {
                name: name.clone(),
                aliasName: a,
                commitment: B256::repeat_byte(9),
                publicAlias: "hello".into(),
            }
            .abi_encode(),
            EasCall::Activate {
                name: name.clone(),
                alias: a,
            },
        ),
        (
            EAS::deactivateCall {
                name: name.clone(),
                aliasName: a,
            }
            .abi_encode(),
            EasCall::Deactivate {
                name: name.clone(),
                alias: a,
            },
        ),
        (
            EAS::deactivateAllCall { name: name.clone() }.abi_encode(),
            EasCall::DeactivateAll { name: name.clone() },
        ),
        (
            EAS::toggleMaintainerAccessCall { name: name.clone() }.abi_encode(),
            EasCall::ToggleMaintainer { name: name.clone() },
        ),
        (
            EAS::setPublicAliasesCall {
                name: name.clone(),
                aliases: vec!["a".into(), "b".into()],
            }
            .abi_encode(),
            EasCall::SetPublicAliases { name: name.clone() },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(decode_eas_call(&input), Some(expected));
    }
    // Other EAS functions, plain transfers, garbage, truncated input.
    let grant = EAS::grantRoleCall {
        role: MAINTAINER_ROLE,
        account: ALICE,
    }
    .abi_encode();
    assert_eq!(decode_eas_call(&grant), None);
    assert_eq!(decode_eas_call(&[]), None);
    assert_eq!(decode_eas_call(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), None);
    let activate = EAS::activateCall {
        name,
        aliasName: a,
        commitment: B256::ZERO,
        publicAlias: String::new(),
    }
    .abi_encode();
    assert_eq!(decode_eas_call(&activate[..activate.len() - 8]), None);
}

#[test]
fn state_reads_encode_and_decode() {
    let eas = EMITTER;
    let n = node("fsociety");
    let a = alias_hash("hello");
    let c = B256::repeat_byte(7);

    let read = StateRead::Commitment {
        eas,
        node: n,
        alias: a,
    };
    let (to, input) = read.encode();
    assert_eq!(to, eas);
    let call = EAS::getCommitmentCall::abi_decode(&input).unwrap();
    assert_eq!((call.node, call.aliasName), (n, a));
    let out = EAS::getCommitmentCall::abi_encode_returns(&c);
    assert_eq!(read.decode(&out), Ok(StateValue::Hash(c)));

    let read = StateRead::OwnerOf {
        dc: EMITTER,
        sld: "fsociety".into(),
    };
    let (_, input) = read.encode();
    assert_eq!(
        DC::ownerOfCall::abi_decode(&input).unwrap().name,
        "fsociety"
    );
    let out = DC::ownerOfCall::abi_encode_returns(&ALICE);
    assert_eq!(read.decode(&out), Ok(StateValue::Address(ALICE)));
    // An address word with high bits set is not an address.
    assert!(matches!(
        read.decode(B256::repeat_byte(0xff).as_slice()),
        Err(ChainError::Decode {
            what: "ownerOf",
            ..
        })
    ));

    let read = StateRead::NameExpires {
        dc: EMITTER,
        sld: "fsociety".into(),
    };
    let out = DC::nameExpiresCall::abi_encode_returns(&U256::from(1_900_000_000u64));
    assert_eq!(read.decode(&out), Ok(StateValue::Number(1_900_000_000)));
    let out = DC::nameExpiresCall::abi_encode_returns(&U256::MAX);
    assert_eq!(read.decode(&out), Ok(StateValue::Number(u64::MAX)));

    let read = StateRead::MaintainerAllowed { eas, node: n };
    let out = EAS::getAllowMaintainerAccessCall::abi_encode_returns(&true);
    assert_eq!(read.decode(&out), Ok(StateValue::Bool(true)));

    let read = StateRead::IsMaintainer {
        eas,
        account: ALICE,
    };
    let (_, input) = read.encode();
    let call = EAS::hasRoleCall::abi_decode(&input).unwrap();
    assert_eq!((call.role, call.account), (MAINTAINER_ROLE, ALICE));
    let out = EAS::hasRoleCall::abi_encode_returns(&false);
    assert_eq!(read.decode(&out), Ok(StateValue::Bool(false)));

    // No contract at the address: empty return data.
    assert!(matches!(
        read.decode(&[]),
        Err(ChainError::Decode { what: "hasRole", ref detail }) if detail.contains("no contract")
    ));
}

/// Selectors of the EAS calls the watcher decodes, to aim the fuzzer at
/// the decoders behind them rather than at "unknown selector".
fn eas_selectors() -> Vec<[u8; 4]> {
    vec![
        EAS::activateCall::SELECTOR,
        EAS::deactivateCall::SELECTOR,
        EAS::deactivateAllCall::SELECTOR,
        EAS::toggleMaintainerAccessCall::SELECTOR,
        EAS::setPublicAliasesCall::SELECTOR,
    ]
}

proptest::proptest! {
    /// Anyone can send any calldata to the EAS address: the decoder
    /// answers None or a call, never panics.
    #[test]
    fn eas_calldata_never_panics(
        selector in proptest::sample::select(eas_selectors()),
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let mut input = selector.to_vec();
        input.extend_from_slice(&body);
        let _ = decode_eas_call(&input);
        let _ = decode_eas_call(&raw);
    }

    /// Any contract can emit logs with our topics and any data.
    #[test]
    fn logs_never_panic(
        topic0 in proptest::sample::select(known_topics().to_vec()),
        topics in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..4),
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
    ) {
        let mut all = vec![topic0];
        all.extend(topics.into_iter().map(B256::from));
        let log = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new_unchecked(all, data.into()),
        };
        let _ = decode_log(&log);
    }
}
