//! `eas_relay::chain::ChainRpc` against a real chain (anvil with the
//! contracts of `contracts/`): every read back after the EAS frontend's and
//! the registry's transactions, at the latest and at past blocks; events and
//! EAS calls over a block range (with and without alias events, in small
//! and large request chunks); batched reads; the verification functions on
//! what the harness signed; an unreachable RPC.

mod common;

use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::TransactionReceipt;
use common::anvil::{Chain, ChainOptions, HARMONY_CHAIN_ID, YEAR, alias_name, dev_signer, node};
use eas_relay::chain::verify;
use eas_relay::chain::{
    At, ChainError, ChainEvent, ChainRpc, EasCall, Limits, RpcFailure, StateRead, StateValue,
};

const SLD: &str = "fsociety";
const FORWARD: &str = "mr.robot@gmail.com";

fn rpc_of(chain: &Chain) -> ChainRpc {
    ChainRpc::new(&chain.anvil.url(), Duration::from_secs(15)).expect("rpc")
}

fn block_of(receipt: &TransactionReceipt) -> u64 {
    receipt.block_number.expect("mined receipt")
}

#[tokio::test]
async fn reads_every_value_back() {
    let chain = Chain::start().await;
    let rpc = rpc_of(&chain);
    let owner = dev_signer(1);
    let stranger = dev_signer(2);
    let n = node(SLD);

    assert_eq!(rpc.chain_id().await.unwrap(), HARMONY_CHAIN_ID);
    let registered = chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let activation = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    let activated_at = block_of(&activation.receipt);

    let (latest, latest_hash, _) = chain.latest_block().await;
    assert_eq!(rpc.head().await.unwrap(), latest);
    assert_eq!(rpc.block_hash(latest).await.unwrap(), Some(latest_hash));
    assert_eq!(
        rpc.block_hash(block_of(&registered)).await.unwrap(),
        registered.block_hash
    );
    assert_eq!(rpc.block_hash(latest + 1_000).await.unwrap(), None);

    // EAS state, now and before the activation.
    let eas = chain.eas;
    let hello = verify::alias_hash("hello");
    assert_eq!(hello, alias_name("hello"));
    assert_eq!(
        rpc.commitment(eas, n, hello, At::Latest).await.unwrap(),
        activation.commitment
    );
    assert_eq!(
        rpc.commitment(eas, n, hello, At::Number(activated_at))
            .await
            .unwrap(),
        activation.commitment
    );
    assert_eq!(
        rpc.commitment(eas, n, hello, At::Number(activated_at - 1))
            .await
            .unwrap(),
        B256::ZERO
    );
    assert_eq!(rpc.num_alias(eas, n, At::Latest).await.unwrap(), 1);
    assert_eq!(
        rpc.num_alias(eas, n, At::Number(activated_at - 1))
            .await
            .unwrap(),
        0
    );
    assert!(rpc.maintainer_allowed(eas, n, At::Latest).await.unwrap());
    chain.toggle_maintainer_access(&owner, SLD).await.unwrap();
    assert!(!rpc.maintainer_allowed(eas, n, At::Latest).await.unwrap());
    assert!(
        rpc.is_maintainer(eas, chain.admin.address(), At::Latest)
            .await
            .unwrap()
    );
    assert!(
        !rpc.is_maintainer(eas, owner.address(), At::Latest)
            .await
            .unwrap()
    );

    // The registry, found through the EAS.
    let dc = rpc.dc_of(eas, At::Latest).await.unwrap();
    assert_eq!(dc, chain.registry);
    assert_eq!(
        rpc.owner_of(dc, SLD, At::Latest).await.unwrap(),
        owner.address()
    );
    assert_eq!(
        rpc.name_expires(dc, SLD, At::Latest).await.unwrap(),
        chain.name_expires(SLD).await
    );
    assert_eq!(
        rpc.owner_of(dc, "unregistered", At::Latest).await.unwrap(),
        Address::ZERO
    );
    chain
        .transfer(&owner, SLD, stranger.address())
        .await
        .unwrap();
    assert_eq!(
        rpc.owner_of(dc, SLD, At::Latest).await.unwrap(),
        stranger.address()
    );
    assert_eq!(
        rpc.owner_of(dc, SLD, At::Number(activated_at))
            .await
            .unwrap(),
        owner.address()
    );

    // What the frontend signed verifies with the relay's own functions.
    let sig = verify::parse_signature(&activation.signature_hex).unwrap();
    let text = verify::message("hello", SLD, "country", FORWARD);
    assert_eq!(text, activation.message);
    assert_eq!(
        verify::recover_signer(verify::message_digest(&text), &sig),
        Ok(owner.address())
    );
    assert_eq!(
        verify::commitment("hello", FORWARD, &sig),
        activation.commitment
    );

    // A contract without that function reverts; an address without code
    // answers nothing.
    let e = rpc.owner_of(eas, SLD, At::Latest).await.unwrap_err();
    assert!(matches!(e, ChainError::Revert(_)), "{e:?}");
    assert!(!e.is_unreachable());
    let e = rpc
        .commitment(Address::repeat_byte(0x42), n, hello, At::Latest)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ChainError::Decode {
                what: "getCommitment",
                ..
            }
        ),
        "{e:?}"
    );
    // A block that does not exist yet.
    let e = rpc
        .commitment(eas, n, hello, At::Number(latest + 1_000))
        .await
        .unwrap_err();
    assert!(matches!(e, ChainError::Server { .. }), "{e:?}");
}

/// Everything that happens to one name, with the block it happened in.
struct Story {
    from: u64,
    to: u64,
    events: Vec<(u64, ChainEvent)>,
    calls: Vec<(u64, EasCall)>,
}

async fn tell_a_story(chain: &Chain) -> Story {
    let owner = dev_signer(1);
    let buyer = dev_signer(2);
    let maintainer = dev_signer(3);
    let n = node(SLD);
    let hello = alias_name("hello");
    let world = alias_name("world");
    let name = SLD.to_string();
    let from = chain.block_number().await + 1;
    let mut events = Vec::new();
    let mut calls = Vec::new();

    let r = chain.register(SLD, owner.address(), YEAR).await.unwrap();
    events.push((
        block_of(&r),
        ChainEvent::NameTransferred {
            node: n,
            to: owner.address(),
        },
    ));
    events.push((block_of(&r), ChainEvent::NameRegistered { node: n }));

    for (alias, hash) in [("hello", hello), ("world", world)] {
        let a = chain.activate(&owner, SLD, alias, FORWARD).await.unwrap();
        events.push((
            block_of(&a.receipt),
            ChainEvent::AliasActivated {
                node: n,
                alias: hash,
                commitment: a.commitment,
            },
        ));
        calls.push((
            block_of(&a.receipt),
            EasCall::Activate {
                name: name.clone(),
                alias: hash,
            },
        ));
    }
    let r = chain.deactivate(&owner, SLD, "world").await.unwrap();
    events.push((
        block_of(&r),
        ChainEvent::AliasDeactivated {
            node: n,
            alias: world,
        },
    ));
    calls.push((
        block_of(&r),
        EasCall::Deactivate {
            name: name.clone(),
            alias: world,
        },
    ));
    let r = chain.toggle_maintainer_access(&owner, SLD).await.unwrap();
    events.push((
        block_of(&r),
        ChainEvent::MaintainerAccessToggled {
            node: n,
            allowed: false,
        },
    ));
    calls.push((
        block_of(&r),
        EasCall::ToggleMaintainer { name: name.clone() },
    ));
    for granted in [true, false] {
        let r = if granted {
            chain.grant_maintainer(maintainer.address()).await
        } else {
            chain.revoke_maintainer(maintainer.address()).await
        }
        .unwrap();
        events.push((
            block_of(&r),
            ChainEvent::RoleChanged {
                role: verify::MAINTAINER_ROLE,
                account: maintainer.address(),
                granted,
            },
        ));
    }
    let r = chain
        .set_public_aliases(&owner, SLD, &["hello"])
        .await
        .unwrap();
    calls.push((
        block_of(&r),
        EasCall::SetPublicAliases { name: name.clone() },
    ));
    let r = chain.renew(SLD, YEAR).await.unwrap();
    events.push((block_of(&r), ChainEvent::NameRenewed { node: n }));
    let r = chain.deactivate_all(&owner, SLD).await.unwrap();
    events.push((block_of(&r), ChainEvent::AllDeactivated { node: n }));
    calls.push((block_of(&r), EasCall::DeactivateAll { name: name.clone() }));
    let r = chain.transfer(&owner, SLD, buyer.address()).await.unwrap();
    events.push((
        block_of(&r),
        ChainEvent::NameTransferred {
            node: n,
            to: buyer.address(),
        },
    ));
    // Blocks without anything of interest after the story.
    chain.mine(5).await;
    Story {
        from,
        to: chain.block_number().await,
        events,
        calls,
    }
}

#[tokio::test]
async fn events_and_calls_over_a_range() {
    let chain = Chain::start().await;
    let story = tell_a_story(&chain).await;
    let addresses = [chain.eas, chain.registry];
    let small = Limits {
        max_log_range: 2,
        read_batch: 3,
        block_batch: 3,
        in_flight: 2,
    };
    for rpc in [rpc_of(&chain), rpc_of(&chain).with_limits(small)] {
        let events = rpc.events(story.from, story.to, &addresses).await.unwrap();
        assert_eq!(events, story.events, "limits {:?}", rpc.limits());
        let calls = rpc
            .eas_calls(story.from, story.to, chain.eas)
            .await
            .unwrap();
        assert_eq!(calls, story.calls, "limits {:?}", rpc.limits());
    }

    let rpc = rpc_of(&chain);
    // Only the registry's logs when only the registry is asked.
    let registry_only = rpc
        .events(story.from, story.to, &[chain.registry])
        .await
        .unwrap();
    let expected: Vec<_> = story
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                ChainEvent::NameTransferred { .. }
                    | ChainEvent::NameRegistered { .. }
                    | ChainEvent::NameRenewed { .. }
            )
        })
        .cloned()
        .collect();
    assert_eq!(registry_only, expected);
    // A sub-range: only its blocks.
    let (first, _) = story.calls[0];
    let (last, _) = story.calls[story.calls.len() - 1];
    let inner = rpc.eas_calls(first + 1, last - 1, chain.eas).await.unwrap();
    assert_eq!(inner, story.calls[1..story.calls.len() - 1].to_vec());
    // Calls to another address are not EAS calls.
    assert_eq!(
        rpc.eas_calls(story.from, story.to, chain.registry)
            .await
            .unwrap(),
        vec![]
    );
    // Past the head.
    let e = rpc
        .eas_calls(story.to, story.to + 3, chain.eas)
        .await
        .unwrap_err();
    assert_eq!(e, ChainError::BlockNotFound(story.to + 1));
}

#[tokio::test]
async fn calls_are_seen_without_alias_events() {
    let chain = Chain::start_with(ChainOptions {
        eas_events: false,
        ..ChainOptions::default()
    })
    .await;
    let story = tell_a_story(&chain).await;
    let rpc = rpc_of(&chain);
    // The deployed-like EAS emits only AccessControl's role events.
    let events = rpc
        .events(story.from, story.to, &[chain.eas, chain.registry])
        .await
        .unwrap();
    let expected: Vec<_> = story
        .events
        .iter()
        .filter(|(_, e)| {
            !matches!(
                e,
                ChainEvent::AliasActivated { .. }
                    | ChainEvent::AliasDeactivated { .. }
                    | ChainEvent::AllDeactivated { .. }
                    | ChainEvent::MaintainerAccessToggled { .. }
            )
        })
        .cloned()
        .collect();
    assert_eq!(events, expected);
    assert_eq!(
        rpc.eas_calls(story.from, story.to, chain.eas)
            .await
            .unwrap(),
        story.calls
    );
}

/// 10 names, 10 aliases each (every other one activated), and reads of
/// everything, 1,000 in all, in one `read_many`.
#[tokio::test]
async fn read_many_matches_single_reads() {
    let chain = Chain::start().await;
    let rpc = rpc_of(&chain);
    let owner = dev_signer(1);
    let eas = chain.eas;
    let dc = chain.registry;
    let deployed = chain.block_number().await;
    let mut reads = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10 {
        let sld = format!("name{i}");
        let n = node(&sld);
        chain.register(&sld, owner.address(), YEAR).await.unwrap();
        for j in 0..10 {
            let alias = format!("alias{j}");
            let commitment = if j % 2 == 0 {
                chain
                    .activate(&owner, &sld, &alias, FORWARD)
                    .await
                    .unwrap()
                    .commitment
            } else {
                B256::ZERO
            };
            reads.push(StateRead::Commitment {
                eas,
                node: n,
                alias: alias_name(&alias),
            });
            expected.push(StateValue::Hash(commitment));
        }
        reads.push(StateRead::OwnerOf {
            dc,
            sld: sld.clone(),
        });
        expected.push(StateValue::Address(owner.address()));
        reads.push(StateRead::NameExpires {
            dc,
            sld: sld.clone(),
        });
        expected.push(StateValue::Number(chain.name_expires(&sld).await));
        reads.push(StateRead::MaintainerAllowed { eas, node: n });
        expected.push(StateValue::Bool(true));
    }
    reads.push(StateRead::IsMaintainer {
        eas,
        account: chain.admin.address(),
    });
    expected.push(StateValue::Bool(true));
    reads.push(StateRead::IsMaintainer {
        eas,
        account: owner.address(),
    });
    expected.push(StateValue::Bool(false));
    // A call that reverts (the EAS has no ownerOf) is one value, not a failure.
    reads.push(StateRead::OwnerOf {
        dc: eas,
        sld: SLD.into(),
    });
    let reads_per_round = reads.len() + 1;
    // Fill up to 1,000 with repeats.
    let mut all_reads = Vec::new();
    let mut all_expected = Vec::new();
    while all_reads.len() + reads_per_round <= 1_000 {
        all_reads.extend(reads.iter().cloned());
        all_expected.extend(expected.iter().cloned());
        all_expected.push(StateValue::Reverted(String::new()));
    }
    while all_reads.len() < 1_000 {
        all_reads.push(StateRead::MaintainerAllowed {
            eas,
            node: node("other"),
        });
        all_expected.push(StateValue::Bool(true));
    }
    assert_eq!(all_reads.len(), 1_000);

    let head = chain.block_number().await;
    for rpc in [
        rpc.clone(),
        rpc.clone().with_limits(Limits {
            read_batch: 7,
            in_flight: 3,
            ..Limits::default()
        }),
    ] {
        let values = rpc.read_many(&all_reads, At::Number(head)).await.unwrap();
        assert_eq!(values.len(), all_expected.len());
        for (i, (got, want)) in values.iter().zip(&all_expected).enumerate() {
            match (got, want) {
                (StateValue::Reverted(_), StateValue::Reverted(_)) => {}
                _ => assert_eq!(got, want, "read {i}: {:?}", all_reads[i]),
            }
        }
    }

    // Same answers as the single reads.
    for (read, want) in reads.iter().zip(&expected).step_by(7) {
        let got = match read {
            StateRead::Commitment { eas, node, alias } => StateValue::Hash(
                rpc.commitment(*eas, *node, *alias, At::Latest)
                    .await
                    .unwrap(),
            ),
            StateRead::OwnerOf { dc, sld } => {
                StateValue::Address(rpc.owner_of(*dc, sld, At::Latest).await.unwrap())
            }
            StateRead::NameExpires { dc, sld } => {
                StateValue::Number(rpc.name_expires(*dc, sld, At::Latest).await.unwrap())
            }
            StateRead::MaintainerAllowed { eas, node } => StateValue::Bool(
                rpc.maintainer_allowed(*eas, *node, At::Latest)
                    .await
                    .unwrap(),
            ),
            StateRead::IsMaintainer { eas, account } => {
                StateValue::Bool(rpc.is_maintainer(*eas, *account, At::Latest).await.unwrap())
            }
        };
        assert_eq!(&got, want, "{read:?}");
    }

    // Reads at the block of the deployment: no commitments yet.
    let before = rpc
        .read_many(&reads[..10], At::Number(deployed))
        .await
        .unwrap();
    assert!(before.iter().all(|v| *v == StateValue::Hash(B256::ZERO)));
}

/// Many reads in one `read_many` span several concurrent JSON-RPC batches;
/// every answer still lands at its request's index. (Speed is measured by
/// scripts/bench-resync, not here.)
#[tokio::test]
async fn read_many_keeps_order_across_concurrent_batches() {
    let chain = Chain::start().await;
    let rpc = rpc_of(&chain);
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    let n = node(SLD);
    let reads: Vec<StateRead> = (0..5_000)
        .map(|i| StateRead::Commitment {
            eas: chain.eas,
            node: n,
            alias: if i % 100 == 0 {
                alias_name("hello")
            } else {
                alias_name(&format!("alias{i}"))
            },
        })
        .collect();
    assert!(reads.len() > rpc.limits().read_batch * rpc.limits().in_flight);
    let values = rpc.read_many(&reads, At::Latest).await.unwrap();
    assert_eq!(values.len(), reads.len());
    for (i, value) in values.iter().enumerate() {
        let want = if i % 100 == 0 {
            a.commitment
        } else {
            B256::ZERO
        };
        assert_eq!(*value, StateValue::Hash(want), "read {i}");
    }
}

#[tokio::test]
async fn rpc_down_is_distinguishable() {
    let mut chain = Chain::start().await;
    let rpc = rpc_of(&chain);
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let head = rpc.head().await.unwrap();

    chain.anvil.stop().await;
    let e = rpc.head().await.unwrap_err();
    assert!(
        matches!(
            e,
            ChainError::Rpc {
                kind: RpcFailure::Unreachable,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_unreachable());
    let reads = vec![
        StateRead::OwnerOf {
            dc: chain.registry,
            sld: SLD.into(),
        };
        10
    ];
    let e = rpc.read_many(&reads, At::Latest).await.unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    let e = rpc.events(1, head, &[chain.registry]).await.unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");

    // Back: the same reader reads again.
    chain.anvil.resume().await;
    assert_eq!(rpc.head().await.unwrap(), head);
    assert_eq!(
        rpc.read_many(&reads, At::Latest).await.unwrap(),
        vec![StateValue::Address(owner.address()); 10]
    );
}
