//! The chain test harness (`tests/common/anvil.rs`) against the contracts of
//! `contracts/`: the DESIGN §2 vectors, deploy, register, activate as the
//! EAS frontend does, read back, transfer, deactivate, events (and their
//! absence on `EASWithoutEvents`), maintainers, snapshot/revert, restart,
//! expiry, manual mining.

mod common;

use alloy::primitives::{Address, B256, Signature, U256, b256, eip191_hash_message, keccak256};
use common::anvil::{
    AnvilOptions, Chain, ChainOptions, EAS, Mining, TestRegistry, YEAR, alias_name, authorize,
    commitment_of, dev_signer, events, maintainer_role, node,
};

const SLD: &str = "fsociety";
const FORWARD: &str = "mr.robot@gmail.com";

#[test]
fn design_test_vectors() {
    assert_eq!(
        node("fsociety"),
        b256!("eb188ab663fcb210e0e5f0ff9c81a1260e28db0e4cb3eca20675e02a1fd672f8")
    );
    assert_eq!(
        alias_name("hello"),
        b256!("1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8")
    );
    let mut sig = [0x11u8; 65];
    sig[64] = 0x1b;
    assert_eq!(
        commitment_of("hello", FORWARD, &sig),
        b256!("f3cf51937c452cb825888838caaca862fbfde52c516d84dfd71e54a9033af10f")
    );
    let message = common::anvil::authorization_message("hello", "fsociety", FORWARD);
    assert_eq!(
        message,
        "You are about to authorize forwarding all emails sent to [hello@fsociety.country] to [mr.robot@gmail.com] instead"
    );
    assert_eq!(message.len(), 113);
    assert_eq!(
        eip191_hash_message(message.as_bytes()),
        b256!("42a0a3be50a6c6b562bcfff01bad1bc7f3c9db5eba4cb9a552879e8349735bf0")
    );
    assert_eq!(
        maintainer_role(),
        b256!("339759585899103d2ace64958e37e18ccb0504652c81d4a1b8aa80fe2126ab95")
    );
    // The signature helper is a wallet's personal_sign: it recovers to the signer.
    let owner = dev_signer(1);
    let auth = authorize(&owner, "fsociety", "hello", FORWARD);
    assert_eq!(auth.signature.len(), 65);
    assert!(matches!(auth.signature[64], 27 | 28));
    assert_eq!(auth.signature_hex.len(), 132);
    let recovered = Signature::from_raw(&auth.signature)
        .unwrap()
        .recover_address_from_msg(auth.message.as_bytes())
        .unwrap();
    assert_eq!(recovered, owner.address());
    assert_eq!(
        auth.commitment,
        commitment_of("hello", FORWARD, &auth.signature)
    );
}

#[tokio::test]
async fn activate_read_back_transfer_deactivate_with_events() {
    let chain = Chain::start().await;
    eprintln!(
        "anvil started in {:?}, contracts deployed in {:?}",
        chain.anvil.startup, chain.deploy_time
    );
    assert_eq!(chain.anvil.chain_id(), common::anvil::HARMONY_CHAIN_ID);
    let (owner, buyer, maintainer) = (dev_signer(1), dev_signer(2), dev_signer(3));

    // Deployment state.
    let eas = EAS::new(chain.eas, chain.provider());
    assert_eq!(eas.dc().call().await.unwrap(), chain.registry);
    assert_eq!(eas.maxNumAlias().call().await.unwrap(), U256::from(10));
    assert_eq!(
        eas.MAINTAINER_ROLE().call().await.unwrap(),
        maintainer_role()
    );
    assert_eq!(eas.SEPARATOR().call().await.unwrap().0, *b"|");
    assert!(chain.is_maintainer(chain.admin.address()).await);
    assert!(
        eas.hasRole(B256::ZERO, chain.admin.address())
            .call()
            .await
            .unwrap()
    );
    // ERC-165 and IAccessControl.
    assert!(
        eas.supportsInterface([0x01, 0xff, 0xc9, 0xa7].into())
            .call()
            .await
            .unwrap()
    );
    assert!(
        eas.supportsInterface([0x79, 0x65, 0xdb, 0x0b].into())
            .call()
            .await
            .unwrap()
    );
    assert!(
        !eas.supportsInterface([0xff; 4].into())
            .call()
            .await
            .unwrap()
    );

    // Register: owner, expiry and the registry's events.
    let receipt = chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let now = chain.now().await;
    assert_eq!(chain.owner_of(SLD).await, owner.address());
    assert_eq!(chain.name_expires(SLD).await, now + YEAR);
    let transfers = events::<TestRegistry::Transfer>(&receipt);
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].from, Address::ZERO);
    assert_eq!(transfers[0].to, owner.address());
    assert_eq!(B256::from(transfers[0].tokenId), node(SLD));
    let rented = events::<TestRegistry::NameRented>(&receipt);
    assert_eq!(rented.len(), 1);
    assert_eq!(rented[0].name, keccak256(SLD)); // indexed string: its hash
    assert_eq!(rented[0].renter, owner.address());

    // Activate as the frontend does and read it back.
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    assert_eq!(a.commitment, commitment_of("hello", FORWARD, &a.signature));
    assert_eq!(chain.commitment(SLD, "hello").await, a.commitment);
    assert_eq!(chain.num_alias(SLD).await, 1);
    let activated = events::<EAS::AliasActivated>(&a.receipt);
    assert_eq!(
        activated,
        vec![EAS::AliasActivated {
            node: node(SLD),
            aliasName: alias_name("hello"),
            commitment: a.commitment,
        }]
    );
    assert_eq!(a.receipt.logs()[0].address(), chain.eas);
    // The contract's verify() agrees; a wrong forward does not.
    chain.verify(&a).await.unwrap();
    let mut wrong = a.auth.clone();
    wrong.forward = "elliot@ecorp.com".into();
    let err = chain.verify(&wrong).await.unwrap_err();
    assert!(err.contains("commitment mismatch"), "{err}");

    // Re-activation replaces the commitment without counting twice.
    let b = chain
        .activate(&owner, SLD, "hello", "darlene@fsociety.org")
        .await
        .unwrap();
    assert_eq!(chain.commitment(SLD, "hello").await, b.commitment);
    assert_eq!(chain.num_alias(SLD).await, 1);
    // A public alias, shown with getPublicAliases.
    chain
        .activate_as(&owner, &owner, SLD, "info", FORWARD, "info")
        .await
        .unwrap();
    assert_eq!(chain.public_aliases(SLD).await, vec!["info".to_string()]);
    assert_eq!(chain.num_alias(SLD).await, 2);

    // Nobody else may activate; an empty commitment is refused.
    let err = chain.activate(&buyer, SLD, "x", FORWARD).await.unwrap_err();
    assert!(err.contains("not owner or maintainer"), "{err}");
    let err = chain
        .activate_raw(&owner, SLD, alias_name("x"), B256::ZERO, "")
        .await
        .unwrap_err();
    assert!(err.contains("empty commitment"), "{err}");

    // Transfer: the old owner loses control and verify() no longer passes.
    let receipt = chain.transfer(&owner, SLD, buyer.address()).await.unwrap();
    let transfers = events::<TestRegistry::Transfer>(&receipt);
    assert_eq!(
        (transfers[0].from, transfers[0].to),
        (owner.address(), buyer.address())
    );
    assert_eq!(chain.owner_of(SLD).await, buyer.address());
    let err = chain.deactivate(&owner, SLD, "hello").await.unwrap_err();
    assert!(err.contains("not owner or maintainer"), "{err}");
    let err = chain.verify(&b).await.unwrap_err();
    assert!(err.contains("signer is not the owner"), "{err}");

    // The new owner deactivates one alias, then all.
    let receipt = chain.deactivate(&buyer, SLD, "info").await.unwrap();
    assert_eq!(
        events::<EAS::AliasDeactivated>(&receipt),
        vec![EAS::AliasDeactivated {
            node: node(SLD),
            aliasName: alias_name("info"),
        }]
    );
    assert_eq!(chain.commitment(SLD, "info").await, B256::ZERO);
    assert!(chain.public_aliases(SLD).await.is_empty());
    let err = chain.deactivate(&buyer, SLD, "info").await.unwrap_err();
    assert!(err.contains("alias not active"), "{err}");
    let receipt = chain.deactivate_all(&buyer, SLD).await.unwrap();
    assert_eq!(
        events::<EAS::AllDeactivated>(&receipt),
        vec![EAS::AllDeactivated { node: node(SLD) }]
    );
    assert_eq!(chain.commitment(SLD, "hello").await, B256::ZERO);
    assert_eq!(chain.num_alias(SLD).await, 0);

    // Maintainers: allowed until the owner disables access.
    chain.grant_maintainer(maintainer.address()).await.unwrap();
    assert!(chain.is_maintainer(maintainer.address()).await);
    let m = chain
        .activate_as(&maintainer, &buyer, SLD, "support", FORWARD, "")
        .await
        .unwrap();
    assert_eq!(chain.commitment(SLD, "support").await, m.commitment);
    chain.verify(&m).await.unwrap();
    let err = chain
        .toggle_maintainer_access(&maintainer, SLD)
        .await
        .unwrap_err();
    assert!(err.contains("not owner"), "{err}");
    let receipt = chain.toggle_maintainer_access(&buyer, SLD).await.unwrap();
    assert_eq!(
        events::<EAS::MaintainerAccessToggled>(&receipt),
        vec![EAS::MaintainerAccessToggled {
            node: node(SLD),
            allowed: false,
        }]
    );
    assert!(!chain.allow_maintainer_access(SLD).await);
    let err = chain
        .deactivate(&maintainer, SLD, "support")
        .await
        .unwrap_err();
    assert!(err.contains("not owner or maintainer"), "{err}");
    let configs = eas.configs(node(SLD)).call().await.unwrap();
    assert_eq!(configs.numAlias, U256::from(1));
    assert!(configs.disallowMaintainer);
    chain.toggle_maintainer_access(&buyer, SLD).await.unwrap();
    chain.revoke_maintainer(maintainer.address()).await.unwrap();
    let err = chain
        .deactivate(&maintainer, SLD, "support")
        .await
        .unwrap_err();
    assert!(err.contains("not owner or maintainer"), "{err}");
}

#[tokio::test]
async fn without_events_same_state_no_logs() {
    let chain = Chain::start_with(ChainOptions {
        eas_events: false,
        ..ChainOptions::default()
    })
    .await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    assert_eq!(chain.commitment(SLD, "hello").await, a.commitment);
    chain.verify(&a).await.unwrap();
    assert!(a.receipt.logs().is_empty(), "{:?}", a.receipt.logs());
    // The calldata is the only trace: activate's selector and arguments.
    let tx = alloy::providers::Provider::get_transaction_by_hash(
        &chain.provider(),
        a.receipt.transaction_hash,
    )
    .await
    .unwrap()
    .unwrap();
    let input = alloy::consensus::Transaction::input(&tx).clone();
    assert_eq!(
        input.as_ref(),
        Chain::activate_calldata(SLD, alias_name("hello"), a.commitment, "").as_slice()
    );
    let call =
        <EAS::activateCall as alloy::sol_types::SolCall>::abi_decode(input.as_ref()).unwrap();
    assert_eq!(call.name, SLD);
    assert_eq!(call.aliasName, alias_name("hello"));
    for receipt in [
        chain.deactivate(&owner, SLD, "hello").await.unwrap(),
        chain.deactivate_all(&owner, SLD).await.unwrap(),
        chain.toggle_maintainer_access(&owner, SLD).await.unwrap(),
    ] {
        assert!(receipt.logs().is_empty(), "{:?}", receipt.logs());
    }
    assert!(!chain.allow_maintainer_access(SLD).await);
    assert_eq!(chain.num_alias(SLD).await, 0);
}

#[tokio::test]
async fn alias_limit() {
    let chain = Chain::start_with(ChainOptions {
        max_num_alias: 2,
        ..ChainOptions::default()
    })
    .await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    chain.activate(&owner, SLD, "a", FORWARD).await.unwrap();
    chain.activate(&owner, SLD, "b", FORWARD).await.unwrap();
    let err = chain.activate(&owner, SLD, "c", FORWARD).await.unwrap_err();
    assert!(err.contains("too many aliases"), "{err}");
    chain
        .activate(&owner, SLD, "b", "other@example.org")
        .await
        .unwrap();
    chain.deactivate(&owner, SLD, "a").await.unwrap();
    chain.activate(&owner, SLD, "c", FORWARD).await.unwrap();
    assert_eq!(chain.num_alias(SLD).await, 2);
}

#[tokio::test]
async fn snapshot_revert_is_a_reorg() {
    let chain = Chain::start().await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let snapshot = chain.snapshot().await;
    let (before, _, _) = chain.latest_block().await;
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    let mined_at = a.receipt.block_number.unwrap();
    let old_hash = a.receipt.block_hash.unwrap();
    assert_eq!(mined_at, before + 1);
    assert_eq!(chain.commitment(SLD, "hello").await, a.commitment);

    assert!(chain.revert(snapshot).await);
    assert_eq!(chain.block_number().await, before);
    assert_eq!(chain.commitment(SLD, "hello").await, B256::ZERO);
    assert_eq!(chain.block_hash(mined_at).await, None);
    // The same height again, another block.
    chain.increase_time(1).await;
    let new_hash = chain.block_hash(mined_at).await.unwrap();
    assert_ne!(new_hash, old_hash);
    // A snapshot is used up by revert.
    assert!(!chain.revert(snapshot).await);
}

#[tokio::test]
async fn restart_keeps_chain_and_port() {
    let mut chain = Chain::start().await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    chain.mine(3).await;
    let (number, hash, _) = chain.latest_block().await;
    let mined_at = a.receipt.block_number.unwrap();
    let url = chain.anvil.url();

    let started = std::time::Instant::now();
    chain.anvil.stop().await;
    assert!(!chain.anvil.is_running());
    let down = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        alloy::providers::Provider::get_block_number(&chain.provider()),
    )
    .await
    .expect("a refused connection is an error, not a hang");
    assert!(down.is_err());
    chain.anvil.resume().await;
    eprintln!(
        "restart took {:?} (start {:?})",
        started.elapsed(),
        chain.anvil.startup
    );
    assert_eq!(chain.anvil.url(), url);

    // Same blocks, same state, history readable at old blocks.
    assert_eq!(chain.latest_block().await.0, number);
    assert_eq!(chain.block_hash(number).await, Some(hash));
    assert_eq!(chain.commitment(SLD, "hello").await, a.commitment);
    assert_eq!(
        chain.commitment_at(SLD, "hello", mined_at).await,
        a.commitment
    );
    assert_eq!(
        chain.commitment_at(SLD, "hello", mined_at - 1).await,
        B256::ZERO
    );
    assert_eq!(
        chain.receipt(a.receipt.transaction_hash).await.block_hash,
        a.receipt.block_hash
    );
    // And it goes on (nonces continue).
    chain.deactivate(&owner, SLD, "hello").await.unwrap();
    assert_eq!(chain.commitment(SLD, "hello").await, B256::ZERO);
    assert_eq!(chain.latest_block().await.0, number + 1);
}

#[tokio::test]
async fn expiry_by_time_travel() {
    let chain = Chain::start().await;
    let (owner, squatter) = (dev_signer(1), dev_signer(4));
    chain.register(SLD, owner.address(), 100).await.unwrap();
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    let expires = chain.name_expires(SLD).await;

    chain.increase_time(101).await;
    assert!(chain.now().await >= expires);
    // Like DC: ownerOf still answers the last owner; the commitment stays.
    assert_eq!(chain.owner_of(SLD).await, owner.address());
    assert_eq!(chain.commitment(SLD, "hello").await, a.commitment);
    // The expired owner may no longer change aliases; a maintainer may.
    let err = chain
        .activate(&owner, SLD, "late", FORWARD)
        .await
        .unwrap_err();
    assert!(err.contains("not owner or maintainer"), "{err}");
    let err = chain
        .toggle_maintainer_access(&owner, SLD)
        .await
        .unwrap_err();
    assert!(err.contains("not owner"), "{err}");
    let err = chain
        .transfer(&owner, SLD, squatter.address())
        .await
        .unwrap_err();
    assert!(err.contains("name expired"), "{err}");

    // Renewing revives it (from now, as it had expired).
    let receipt = chain.renew(SLD, 50).await.unwrap();
    assert_eq!(events::<TestRegistry::NameRenewed>(&receipt).len(), 1);
    let now = chain.now().await;
    assert_eq!(chain.name_expires(SLD).await, now + 50);
    chain.activate(&owner, SLD, "late", FORWARD).await.unwrap();

    // Expired again, someone else registers it: burn + mint.
    chain.increase_time(51).await;
    let receipt = chain.register(SLD, squatter.address(), YEAR).await.unwrap();
    let moves: Vec<_> = events::<TestRegistry::Transfer>(&receipt)
        .iter()
        .map(|t| (t.from, t.to, B256::from(t.tokenId)))
        .collect();
    assert_eq!(
        moves,
        vec![
            (owner.address(), Address::ZERO, node(SLD)),
            (Address::ZERO, squatter.address(), node(SLD)),
        ]
    );
    assert_eq!(chain.owner_of(SLD).await, squatter.address());
    // The old commitment is still stored, but its signer is not the owner.
    let err = chain.verify(&a).await.unwrap_err();
    assert!(err.contains("signer is not the owner"), "{err}");
    // A name that has not expired cannot be taken.
    let err = chain
        .register(SLD, owner.address(), YEAR)
        .await
        .unwrap_err();
    assert!(err.contains("not available"), "{err}");
}

#[tokio::test]
async fn manual_mining_batches_transactions() {
    let chain = Chain::start_with(ChainOptions {
        anvil: AnvilOptions {
            chain_id: 31337,
            mining: Mining::Manual,
            ..AnvilOptions::default()
        },
        ..ChainOptions::default()
    })
    .await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let start = chain.block_number().await;

    // Two transactions of one sender in the mempool, then one block.
    let first = authorize(&owner, SLD, "a", FORWARD);
    let second = authorize(&owner, SLD, "b", FORWARD);
    let mut hashes = Vec::new();
    for auth in [&first, &second] {
        let data = Chain::activate_calldata(SLD, alias_name(&auth.alias), auth.commitment, "");
        let tx = alloy::rpc::types::TransactionRequest::default();
        let tx = alloy::network::TransactionBuilder::with_input(
            alloy::network::TransactionBuilder::with_to(tx, chain.eas),
            data,
        );
        hashes.push(chain.send_no_wait(&owner, tx).await.unwrap());
    }
    assert_eq!(chain.block_number().await, start);
    assert_eq!(chain.commitment(SLD, "a").await, B256::ZERO);
    chain.mine(1).await;
    let r1 = chain.receipt(hashes[0]).await;
    let r2 = chain.receipt(hashes[1]).await;
    assert!(r1.status() && r2.status());
    assert_eq!(r1.block_number, Some(start + 1));
    assert_eq!(r2.block_number, Some(start + 1));
    assert_eq!(chain.commitment(SLD, "b").await, second.commitment);

    // anvil_mine N and automine switching.
    chain.mine(5).await;
    assert_eq!(chain.block_number().await, start + 6);
    chain.set_automine(true).await;
    chain.activate(&owner, SLD, "c", FORWARD).await.unwrap();
    assert_eq!(chain.block_number().await, start + 7);
}
