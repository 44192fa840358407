//! Chain-governed aliases end to end, against a real chain: anvil with the
//! project's contracts, a relay following it, real signatures from dev
//! keys, mail over SMTP to a sink. Each test checks one part of the alias
//! rule (DESIGN §3) or of the EAS endpoints (DESIGN §6) the way the
//! frontend and a sender see it.

mod common;

use alloy::signers::local::PrivateKeySigner;
use common::anvil::{
    Activation, ChainOptions, YEAR, authorize, commitment_of, dev_signer, personal_sign,
};
use common::eas::{CONFIRMATIONS, ChainRelay, DOMAIN, SLD, activate_body};
use serde_json::json;
use std::time::{Duration, Instant};

const FORWARD: &str = "mr.robot@dest.test";

fn options(eas_events: bool) -> ChainOptions {
    ChainOptions {
        eas_events,
        ..ChainOptions::default()
    }
}

/// A relay following a chain where dev account 1 owns `fsociety.country`
/// for a year and has activated `hello → FORWARD` (on chain and through
/// `/activate`).
async fn with_hello(eas_events: bool) -> ChainRelay {
    let t = ChainRelay::start_with(options(eas_events), false, |_| {}).await;
    let (_, a) = hello_on_chain(&t).await;
    t.activated(&a).await;
    t
}

/// Dev account 1 registers `fsociety.country` for a year and activates
/// `hello → FORWARD` on chain (the relay is not told).
async fn hello_on_chain(t: &ChainRelay) -> (PrivateKeySigner, Activation) {
    let owner = dev_signer(1);
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let activation = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    (owner, activation)
}

fn hello() -> String {
    format!("hello@{DOMAIN}")
}

#[tokio::test]
async fn activate_then_mail_forwards() {
    let t = ChainRelay::start().await;
    let owner = dev_signer(1);
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    // Nothing forwards before a reveal; the answer is the one every
    // address under the chain-governed TLD gets that does not forward.
    assert!(t.rcpt(&hello()).await.starts_with("550 5.1.1"));

    let a = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    t.activated(&a).await;

    let got = t.deliver(&hello(), "first").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
    assert!(got.text().contains("Subject: first"));
    // Case does not matter in the local part; other aliases of the name
    // do not exist.
    assert!(t.rcpt(&format!("HeLLo@{DOMAIN}")).await.starts_with("250"));
    assert!(
        t.rcpt(&format!("other@{DOMAIN}"))
            .await
            .starts_with("550 5.1.1")
    );
    assert_eq!(
        t.post("/check-alias", json!({ "sld": SLD, "alias": "hello" }))
            .await,
        (200, json!({ "exist": true }))
    );
    assert_eq!(
        t.post("/check-alias", json!({ "sld": SLD, "alias": "other" }))
            .await,
        (200, json!({ "exist": false }))
    );
    // Activating the same reveal again is harmless.
    t.activated(&a).await;
}

#[tokio::test]
async fn a_signature_by_anyone_but_the_owner_is_refused() {
    let t = ChainRelay::start().await;
    let (owner, _) = hello_on_chain(&t).await;

    // A stranger signs the same text: the recovered signer owns nothing.
    let forged = authorize(&dev_signer(3), SLD, "hello", FORWARD);
    assert_eq!(
        t.activate(&forged).await,
        (401, json!({ "error": "invalid signature" }))
    );
    // A signature over different text recovers someone else too.
    let mut tampered = authorize(&owner, SLD, "hello", FORWARD);
    tampered.forward = "attacker@dest.test".into();
    assert_eq!(
        t.activate(&tampered).await,
        (401, json!({ "error": "invalid signature" }))
    );
    assert!(t.rcpt(&hello()).await.starts_with("550"));
}

#[tokio::test]
async fn a_forward_other_than_the_committed_one_is_a_commitment_mismatch() {
    let t = ChainRelay::start().await;
    let (owner, on_chain) = hello_on_chain(&t).await;

    // The owner's genuine signature, but for another forward than the one
    // whose commitment is on chain.
    let other = authorize(&owner, SLD, "hello", "elsewhere@dest.test");
    let expected = commitment_of("hello", "elsewhere@dest.test", &other.signature);
    let (status, body) = t.activate(&other).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({
            "error": "commitment mismatch",
            "success": false,
            "actualCommitment": format!("{:#x}", on_chain.commitment),
            "expectedCommitment": format!("{expected:#x}"),
        })
    );
    // An alias that was never activated on chain: the actual one is zero.
    let never = authorize(&owner, SLD, "never", FORWARD);
    let (status, body) = t.activate(&never).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["actualCommitment"],
        json!(format!("0x{}", "0".repeat(64)))
    );
    assert!(t.rcpt(&hello()).await.starts_with("550"));
    assert!(t.rcpt(&format!("never@{DOMAIN}")).await.starts_with("550"));
}

/// Mines one block at a time after `block`, letting the watcher catch up
/// each time, until `rcpt` is refused; returns the head at that moment.
async fn head_when_refused(t: &ChainRelay, rcpt: &str, limit: u64) -> u64 {
    loop {
        let head = t.chain.block_number().await;
        t.settle().await;
        let reply = t.rcpt(rcpt).await;
        if reply.starts_with("550 5.1.1") {
            return head;
        }
        assert!(reply.starts_with("250"), "{reply}");
        assert!(head < limit, "still forwarding at block {head}");
        t.chain.mine(1).await;
    }
}

async fn deactivation_on_chain_is_followed(eas_events: bool) {
    let t = with_hello(eas_events).await;
    let owner = dev_signer(1);
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));
    // /deactivate refuses while the chain still holds the commitment.
    assert_eq!(
        t.post("/deactivate", json!({ "sld": SLD, "alias": "hello" }))
            .await,
        (401, json!({ "error": "Not deactivated on contract" }))
    );

    // Deactivated on chain, and nobody tells the relay.
    let receipt = t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    let block = receipt.block_number.unwrap();
    let stopped = head_when_refused(&t, &hello(), block + CONFIRMATIONS + 2).await;
    // It follows head − confirmations: not before, and at most 2 later.
    assert!(
        (block + CONFIRMATIONS..=block + CONFIRMATIONS + 2).contains(&stopped),
        "deactivated in block {block}, refused from head {stopped}"
    );
    assert_eq!(
        t.post("/check-alias", json!({ "sld": SLD, "alias": "hello" }))
            .await,
        (200, json!({ "exist": false }))
    );
    // Now the EAS frontend's /deactivate is accepted and the record goes.
    t.deactivated(SLD, "hello").await;
}

#[tokio::test]
async fn deactivation_on_chain_is_followed_from_events() {
    deactivation_on_chain_is_followed(true).await;
}

#[tokio::test]
async fn deactivation_on_chain_is_followed_from_calldata() {
    deactivation_on_chain_is_followed(false).await;
}

async fn deactivate_all_stops_every_alias(eas_events: bool) {
    let t = with_hello(eas_events).await;
    let owner = dev_signer(1);
    let team = t
        .chain
        .activate(&owner, SLD, "team", "team@dest.test")
        .await
        .unwrap();
    t.activated(&team).await;
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("250"));
    assert_eq!(
        t.post("/deactivate-all", json!({ "sld": SLD })).await,
        (401, json!({ "error": "Not all deactivated on contract" }))
    );

    t.chain.deactivate_all(&owner, SLD).await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("550 5.1.1"));
    assert!(
        t.rcpt(&format!("team@{DOMAIN}"))
            .await
            .starts_with("550 5.1.1")
    );
    assert_eq!(
        t.post("/deactivate-all", json!({ "sld": SLD })).await,
        (200, json!({ "success": true }))
    );
    // Confirmed gone: the watcher removes the records.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while t.aliases_of(SLD).await != json!([]) {
        assert!(std::time::Instant::now() < deadline, "not removed");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn deactivate_all_on_chain_stops_every_alias_from_events() {
    deactivate_all_stops_every_alias(true).await;
}

#[tokio::test]
async fn deactivate_all_on_chain_stops_every_alias_from_calldata() {
    deactivate_all_stops_every_alias(false).await;
}

#[tokio::test]
async fn a_name_that_changed_hands_never_forwards_to_the_previous_owner() {
    let t = with_hello(true).await;
    let (owner, buyer) = (dev_signer(1), dev_signer(2));
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));

    t.chain
        .transfer(&owner, SLD, buyer.address())
        .await
        .unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    // The commitment is still on chain, but its signer no longer owns the name.
    assert!(t.rcpt(&hello()).await.starts_with("550 5.1.1"));
    // Replaying the previous owner's reveal does not bring it back.
    let old = authorize(&owner, SLD, "hello", FORWARD);
    assert_eq!(
        t.activate(&old).await,
        (401, json!({ "error": "invalid signature" }))
    );

    // The new owner points the alias at their own address.
    let mine = t
        .chain
        .activate(&buyer, SLD, "hello", "buyer@dest.test")
        .await
        .unwrap();
    t.activated(&mine).await;
    let got = t.deliver(&hello(), "after the sale").await;
    assert_eq!(got.rcpt_to, vec!["buyer@dest.test".to_string()]);
}

#[tokio::test]
async fn expiry_stops_forwarding_and_renewal_resumes_it() {
    let t = ChainRelay::start().await;
    let owner = dev_signer(1);
    // Short enough that the chain's clock passes it while still within
    // chain.max_clock_skew (10m) of the wall clock: a timestamp further
    // ahead is not believed.
    let lease = 300;
    t.chain.register(SLD, owner.address(), lease).await.unwrap();
    let a = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    t.activated(&a).await;
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));

    // The chain's clock passes the expiry (no event marks it), in a block
    // that then gets its confirmations.
    t.chain.increase_time(lease + 60).await;
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&hello(), "550 5.1.1").await;
    assert_eq!(
        t.activate(&a).await,
        (401, json!({ "error": "domain expired" }))
    );

    t.chain.renew(SLD, YEAR).await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));
    let got = t.deliver(&hello(), "renewed").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

#[tokio::test]
async fn a_reorg_that_removes_a_deactivation_is_followed() {
    let t = with_hello(true).await;
    let owner = dev_signer(1);
    t.settle().await;
    let snapshot = t.chain.snapshot().await;
    let before = t.chain.block_number().await;

    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("550 5.1.1"));
    let old_tip = t.chain.block_number().await;

    // The blocks with the deactivation are replaced, first by a chain no
    // longer than the old one (what was read at the orphaned blocks must
    // not outrank reads at lower, canonical ones), then by a longer one.
    assert!(t.chain.revert(snapshot).await);
    assert_eq!(t.chain.block_number().await, before);
    t.chain.mine(CONFIRMATIONS).await;
    assert!(t.chain.block_number().await <= old_tip);
    t.wait_rcpt(&hello(), "250").await;
    t.chain.mine(old_tip - before + 3).await;
    assert_eq!(
        t.chain.commitment(SLD, "hello").await,
        authorize(&owner, SLD, "hello", FORWARD).commitment
    );
    t.settle().await;
    assert!(t.rcpt(&hello()).await.starts_with("250"));
    let got = t.deliver(&hello(), "after the reorg").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

#[tokio::test]
async fn an_rpc_outage_misses_no_change_and_serves_from_the_cache() {
    let mut t = ChainRelay::start_with(options(true), true, |c| {
        c.chain.stale_after = eas_relay::config::HumanDuration::parse("1s").unwrap();
    })
    .await;
    let owner = dev_signer(1);
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    for (alias, forward) in [("hello", FORWARD), ("team", "team@dest.test")] {
        let a = t.chain.activate(&owner, SLD, alias, forward).await.unwrap();
        t.activated(&a).await;
    }
    t.settle().await;
    let health = || async {
        let (status, body) =
            common::http::request(t.relay.http, "GET", "/health", None, None).await;
        assert_eq!(status, 200);
        body
    };
    assert_eq!(health().await["status"], "ok");

    // The relay loses its RPC endpoint; meanwhile the chain moves on and
    // its node is restarted (with its state).
    t.proxy.as_ref().unwrap().cut();
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(5).await;
    t.chain.anvil.restart().await;
    t.chain.mine(2).await;

    // Stale, said so, and still serving what it knew to be good.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health().await;
        if h["status"] == "degraded" {
            assert_eq!(h["chain"]["stale"], true, "{h}");
            assert!(h["chain"]["last_error"].is_string(), "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "never reported stale: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (The metrics are process-wide, shared by the relays of this test
    // binary: tests/chain_cli.rs checks them on the real binary.)
    assert!(t.rcpt(&hello()).await.starts_with("250"));
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("250"));

    t.proxy.as_ref().unwrap().restore();
    t.settle().await;
    t.wait_rcpt(&hello(), "550 5.1.1").await;
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("250"));
    assert_eq!(health().await["status"], "ok");
}

async fn maintainer_follows_the_owners_permission(eas_events: bool) {
    let t = ChainRelay::start_with(options(eas_events), false, |_| {}).await;
    let owner = dev_signer(1);
    let maintainer = t.chain.admin.clone();
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    // A maintainer (the EAS operator) signs and activates for the owner.
    let a = t
        .chain
        .activate_as(&maintainer, &maintainer, SLD, "ops", "ops@dest.test", "")
        .await
        .unwrap();
    t.activated(&a).await;
    let ops = format!("ops@{DOMAIN}");
    assert!(t.rcpt(&ops).await.starts_with("250"));

    // The owner withdraws maintainer access: the maintainer's alias stops.
    t.chain.toggle_maintainer_access(&owner, SLD).await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&ops).await.starts_with("550 5.1.1"));
    // ...and is allowed again.
    t.chain.toggle_maintainer_access(&owner, SLD).await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&ops).await.starts_with("250"));

    // The account loses the role: its alias stops too.
    t.chain
        .revoke_maintainer(maintainer.address())
        .await
        .unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&ops).await.starts_with("550 5.1.1"));
}

#[tokio::test]
async fn a_maintainers_alias_follows_the_owners_permission_and_the_role() {
    maintainer_follows_the_owners_permission(true).await;
}

#[tokio::test]
async fn a_maintainers_alias_follows_the_owners_permission_without_events() {
    maintainer_follows_the_owners_permission(false).await;
}

#[tokio::test]
async fn invalid_requests_get_precise_errors_and_the_relay_keeps_serving() {
    let t = ChainRelay::start().await;
    let (owner, a) = hello_on_chain(&t).await;
    let good = activate_body(&a);
    let with = |key: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let sig64 = format!("0x{}", "11".repeat(64));
    let cases = [
        (with("alias", json!("hello\n")), "alias must be"),
        (with("alias", json!("a@b")), "alias must be"),
        (with("alias", json!("x".repeat(33))), "alias must be"),
        (with("alias", json!("")), "alias must be"),
        (with("sld", json!("FSociety")), "sld must be"),
        (with("sld", json!("fsociety.country")), "sld must be"),
        (
            with("forwardAddress", json!("not-an-address")),
            "forwardAddress",
        ),
        (
            with("forwardAddress", json!("a@b@dest.test")),
            "forwardAddress",
        ),
        (with("signature", json!(sig64)), "signature"),
        (
            with("signature", json!(format!("{}zz", &a.signature_hex[..130]))),
            "signature",
        ),
        (
            with("signature", json!(format!("{} ", a.signature_hex))),
            "signature",
        ),
        (with("tld", json!("com")), "unknown tld"),
    ];
    for (body, want) in cases {
        let (status, answer) = t.post("/activate", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{body} → {answer}");
    }
    // A forward at a served domain is refused only once the signature is
    // the owner's: unsigned for it, the answer is the signature's (which
    // tells nobody what the relay serves).
    assert_eq!(
        t.post("/activate", with("forwardAddress", json!("x@relay.test")))
            .await,
        (401, json!({ "error": "invalid signature" }))
    );
    for raw in ["{", "[]", "{\"alias\":\"hello\"}", ""] {
        let (status, answer) =
            common::http::raw(t.relay.http, "POST", "/activate", None, raw).await;
        assert_eq!(status, 400, "{raw:?} → {answer}");
        assert!(answer.contains("invalid JSON body"), "{raw:?} → {answer}");
    }
    // A forward at a domain the relay serves would loop.
    t.activated(&a).await;
    let looping = authorize(&owner, SLD, "loop", &format!("hello@{DOMAIN}"));
    let (status, answer) = t.activate(&looping).await;
    assert_eq!(status, 400, "{answer}");
    // After all that, the relay still serves.
    let got = t.deliver(&hello(), "still here").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

#[tokio::test]
async fn the_shared_secret_guards_the_endpoints_when_configured() {
    let t = ChainRelay::start_with(options(true), false, |c| {
        c.chain.activation_secret = "webhook-secret-0123".into();
    })
    .await;
    let (_, a) = hello_on_chain(&t).await;
    let body = activate_body(&a).to_string();
    let hmac = |key: &[u8], body: &str| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        alloy::primitives::hex::encode(aws_lc_rs::hmac::sign(&key, body.as_bytes()).as_ref())
    };
    let post = |headers: Vec<(&'static str, String)>| {
        let body = body.clone();
        let addr = t.relay.http;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            common::http::raw_with_headers(addr, "POST", "/activate", &h, &body).await
        }
    };
    let json_type = ("Content-Type", "application/json".to_string());
    let (status, answer) = post(vec![json_type.clone()]).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("invalid request signature"));
    let wrong = hmac(b"another-secret", &body);
    let (status, _) = post(vec![json_type.clone(), ("X-EAS-Signature", wrong)]).await;
    assert_eq!(status, 401);
    assert!(t.rcpt(&hello()).await.starts_with("550"));

    let right = hmac(b"webhook-secret-0123", &body);
    let (status, answer) = post(vec![json_type, ("X-EAS-Signature", right)]).await;
    assert_eq!((status, answer.as_str()), (200, r#"{"success":true}"#));
    assert!(t.rcpt(&hello()).await.starts_with("250"));
}

#[tokio::test]
async fn a_raw_signature_with_v_0_or_1_is_accepted_like_27_or_28() {
    // Some wallets return v as 0/1; the commitment is over the exact bytes
    // sent on chain, so the frontend must commit to those same bytes.
    let t = ChainRelay::start().await;
    let owner = dev_signer(1);
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let message = common::anvil::authorization_message("hello", SLD, FORWARD);
    let mut sig = personal_sign(&owner, &message);
    sig[64] -= 27;
    let commitment = commitment_of("hello", FORWARD, &sig);
    t.chain
        .activate_raw(
            &owner,
            SLD,
            common::anvil::alias_name("hello"),
            commitment,
            "",
        )
        .await
        .unwrap();
    let body = json!({
        "alias": "hello", "sld": SLD, "forwardAddress": FORWARD,
        "signature": format!("0x{}", alloy::primitives::hex::encode(sig)),
    });
    assert_eq!(
        t.post("/activate", body).await,
        (200, json!({ "success": true }))
    );
    assert!(t.rcpt(&hello()).await.starts_with("250"));
}

#[tokio::test]
async fn without_a_chain_the_endpoints_say_so() {
    let relay = common::relay::TestRelay::start(|_| {}).await;
    let (status, body) = common::http::request(
        relay.http,
        "POST",
        "/activate",
        None,
        Some(
            json!({"alias": "hello", "sld": SLD, "forwardAddress": FORWARD,
                    "signature": format!("0x{}1b", "11".repeat(64))}),
        ),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not enabled"));
    let (_, health) = common::http::request(relay.http, "GET", "/health", None, None).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["chain"], json!({ "enabled": false }));
}

/// Two registries (`.country` with an EAS that emits events, `.club` with
/// one that does not, each over its own name registry) on one chain: the
/// same name and alias in both are separate aliases, each verified against
/// its own contracts, and a deactivation in one leaves the other alone.
#[tokio::test]
async fn two_registries_govern_their_own_names() {
    use alloy::primitives::U256;
    use alloy::sol_types::SolCall;
    use common::anvil::{EAS, TestRegistry, alias_name};
    use eas_relay::config::RegistryConfig;

    // The deployer's next two contracts (nonces 2 and 3, after the
    // `.country` registry and EAS) will be `.club`'s.
    let deployer = dev_signer(0).address();
    let (club_dc, club_eas) = (deployer.create(2), deployer.create(3));
    let t = ChainRelay::start_with(options(true), false, |c| {
        c.chain.registries.push(RegistryConfig {
            tld: "club".into(),
            eas: format!("{club_eas:#x}"),
            dc: format!("{club_dc:#x}"),
            eas_events: false,
            log_addresses: Vec::new(),
        });
    })
    .await;
    let admin = t.chain.admin.clone();
    assert_eq!(t.chain.deploy_registry(&admin).await, club_dc);
    assert_eq!(
        t.chain.deploy_eas(&admin, club_dc, 10, false).await,
        club_eas
    );

    // `.country`: hello → FORWARD, as everywhere else.
    let (owner, a) = hello_on_chain(&t).await;
    t.activated(&a).await;
    // `.club`: the same owner registers the same name there and maps the
    // same alias elsewhere, signing the text for `.club`.
    let club_forward = "club.member@dest.test";
    let register = TestRegistry::registerCall {
        name: SLD.into(),
        owner: owner.address(),
        duration: U256::from(YEAR),
    }
    .abi_encode();
    t.chain.call_tx(&admin, club_dc, register).await.unwrap();
    let text = format!(
        "You are about to authorize forwarding all emails sent to [hello@{SLD}.club] to [{club_forward}] instead"
    );
    let signature = personal_sign(&owner, &text);
    let activate = EAS::activateCall {
        name: SLD.into(),
        aliasName: alias_name("hello"),
        commitment: commitment_of("hello", club_forward, &signature),
        publicAlias: String::new(),
    }
    .abi_encode();
    t.chain.call_tx(&owner, club_eas, activate).await.unwrap();
    let body = json!({
        "alias": "hello",
        "sld": SLD,
        "tld": "club",
        "forwardAddress": club_forward,
        "signature": format!("0x{}", alloy::primitives::hex::encode(signature)),
    });
    assert_eq!(
        t.post("/activate", body.clone()).await,
        (200, json!({ "success": true }))
    );
    // The `.country` signature is no good for `.club` (other text).
    let mut wrong = body.clone();
    wrong["signature"] = json!(a.auth.signature_hex);
    wrong["forwardAddress"] = json!(FORWARD);
    let (status, _) = t.post("/activate", wrong).await;
    assert_eq!(status, 401);

    let club = format!("hello@{SLD}.club");
    let got = t.deliver(&club, "to the club").await;
    assert_eq!(got.rcpt_to, vec![club_forward.to_string()]);
    let got = t.deliver(&hello(), "to the country").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // Deactivated on `.club`'s EAS (seen in calldata): only `.club` stops.
    let deactivate = EAS::deactivateCall {
        name: SLD.into(),
        aliasName: alias_name("hello"),
    }
    .abi_encode();
    t.chain.call_tx(&owner, club_eas, deactivate).await.unwrap();
    t.chain.mine(CONFIRMATIONS + 1).await;
    t.wait_rcpt(&club, "550 5.1.1").await;
    t.settle().await;
    assert!(
        t.rcpt(&hello()).await.starts_with("250"),
        "country unaffected"
    );
}
