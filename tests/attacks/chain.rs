//! Attacks on chain-governed names: deleting someone's alias through the
//! public `/deactivate`, claiming a name through the admin API or the CLI,
//! expiring every alias with one bad block timestamp, and learning from
//! RCPT which names have aliases. Against a real chain (anvil with the
//! project's contracts) and a relay following it.

use crate::common::anvil::{Chain, ChainOptions, YEAR, authorize, dev_signer};
use crate::common::eas::{CONFIRMATIONS, ChainRelay, DOMAIN, SLD, WATCH_LIMIT, chain_config};
use crate::common::node::{ADMIN_KEY, NodeFiles, NodeOptions, free_addr};
use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use alloy::signers::local::PrivateKeySigner;
use eas_relay::config::{Config, HumanDuration};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const FORWARD: &str = "mr.robot@dest.test";

fn at(local: &str, sld: &str) -> String {
    format!("{local}@{sld}.country")
}

/// Dev account 1 registers `sld.country` for `lease` seconds, activates
/// `local → forward` on chain and reveals it to the relay.
async fn alias_of(
    t: &ChainRelay,
    sld: &str,
    local: &str,
    forward: &str,
    lease: u64,
) -> PrivateKeySigner {
    let owner = dev_signer(1);
    if t.chain.name_expires(sld).await == 0 {
        t.chain.register(sld, owner.address(), lease).await.unwrap();
    }
    let a = t.chain.activate(&owner, sld, local, forward).await.unwrap();
    t.activated(&a).await;
    owner
}

/// A relay following `chain` with its data in `dir` (so that it can be
/// restarted on the same store), `dest.test` routed to `sink`.
async fn relay_in(chain: Chain, sink: TestSink, dir: &Path, tweak: fn(&mut Config)) -> ChainRelay {
    let chain_cfg = chain_config(&chain, &chain.anvil.url());
    let dest = sink.addr.to_string();
    let relay = TestRelay::start_in(dir, |c| {
        c.outbound.routes.insert("dest.test".into(), dest);
        c.chain = chain_cfg;
        tweak(c);
    })
    .await;
    let t = ChainRelay {
        chain,
        relay,
        sink,
        proxy: None,
    };
    t.wait_for_cursor(0).await;
    t
}

/// Stops the relay and starts it again on the same data directory.
async fn restart(t: ChainRelay, dir: &Path, tweak: fn(&mut Config)) -> ChainRelay {
    let ChainRelay {
        chain, relay, sink, ..
    } = t;
    relay.stop().await;
    relay_in(chain, sink, dir, tweak).await
}

/// Waits until the watcher has seen block `head` as the chain's head.
async fn wait_for_head(t: &ChainRelay, head: u64) {
    let deadline = Instant::now() + WATCH_LIMIT;
    while t.chain_status().await["head"].as_u64().unwrap_or(0) < head {
        assert!(
            Instant::now() < deadline,
            "the watcher never saw block {head}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------
// /deactivate (issue 9, item 2)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn anyone_calling_deactivate_with_another_case_cannot_delete_a_live_alias() {
    let t = ChainRelay::start().await;
    let owner = alias_of(&t, SLD, "hello", FORWARD, YEAR).await;
    // The owner also had "Hello" on chain once: its own key now reads zero.
    t.chain
        .activate(&owner, SLD, "Hello", "old@dest.test")
        .await
        .unwrap();
    t.chain.deactivate(&owner, SLD, "Hello").await.unwrap();
    t.settle().await;

    // The attacker names the alias in another case, whose key is zero
    // (never activated, or deactivated): the relay's record is not that
    // key's, and its own key still holds the commitment.
    for alias in ["HELLO", "Hello", "hELLO"] {
        assert_eq!(
            t.post("/deactivate", json!({ "alias": alias, "sld": SLD }))
                .await,
            (401, json!({ "error": "Not deactivated on contract" })),
            "/deactivate {alias}"
        );
    }
    let got = t.deliver(&at("hello", SLD), "still forwarding").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // The genuine deactivation still works: on chain, then /deactivate.
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&at("hello", SLD), "550 5.1.1").await;
    t.deactivated(SLD, "hello").await;
}

#[tokio::test]
async fn a_zero_read_at_deactivate_that_the_chain_does_not_confirm_cannot_remove_an_alias() {
    let t = ChainRelay::start().await;
    let owner = alias_of(&t, SLD, "hello", FORWARD, YEAR).await;
    alias_of(&t, SLD, "other", "other@dest.test", YEAR).await;
    t.settle().await;
    let before = t.chain.snapshot().await;

    // The endpoint the relay reads shows the alias deactivated (a block
    // that is about to be replaced, a lagging or lying node); anyone calls
    // /deactivate then, and is told success.
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    assert_eq!(
        t.post("/deactivate", json!({ "alias": "hello", "sld": SLD }))
            .await,
        (200, json!({ "success": true }))
    );
    // Until confirmed, the alias still forwards.
    let got = t.deliver(&at("hello", SLD), "not confirmed yet").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // The chain the relay confirms still commits to the alias.
    assert!(t.chain.revert(before).await);
    t.chain.mine(CONFIRMATIONS + 3).await;
    t.settle().await;
    let head = t.chain.block_number().await;
    t.chain.mine(1).await;
    t.wait_for_cursor(head + 1 - CONFIRMATIONS).await;
    let aliases = t.aliases_of(SLD).await;
    assert!(
        aliases.to_string().contains("\"hello\""),
        "the alias was removed: {aliases}"
    );
    let got = t.deliver(&at("hello", SLD), "still the owner's").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // A real deactivation, once confirmed, removes it; others still flow.
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&at("hello", SLD), "550 5.1.1").await;
    assert_eq!(
        t.post("/deactivate", json!({ "alias": "hello", "sld": SLD }))
            .await,
        (200, json!({ "success": true }))
    );
    let deadline = Instant::now() + WATCH_LIMIT;
    while t.aliases_of(SLD).await.to_string().contains("\"hello\"") {
        assert!(Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = t.deliver(&at("other", SLD), "ordinary").await;
    assert_eq!(got.rcpt_to, vec!["other@dest.test".to_string()]);
}

#[tokio::test]
async fn a_replayed_reveal_of_a_case_variant_cannot_take_over_a_live_alias() {
    let t = ChainRelay::start().await;
    let owner = alias_of(&t, SLD, "hello", FORWARD, YEAR).await;
    // "HELLO" is on chain too, committed to another forward, and its
    // reveal is known to someone else, who sends it to the relay.
    let variant = t
        .chain
        .activate(&owner, SLD, "HELLO", "second@dest.test")
        .await
        .unwrap();
    let (status, body) = t.activate(&variant).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("another case")),
        "{body}"
    );
    let got = t.deliver(&at("hello", SLD), "first keeps it").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // Once the owner deactivates the first on chain, the variant is theirs
    // to reveal.
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    t.activated(&variant).await;
    let got = t.deliver(&at("hello", SLD), "now the variant").await;
    assert_eq!(got.rcpt_to, vec!["second@dest.test".to_string()]);
}

// ---------------------------------------------------------------------------
// /activate as an oracle (review of items 2, 3, 13)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn probing_activate_without_a_valid_signature_cannot_tell_which_domains_are_served() {
    let t = ChainRelay::start().await;
    let owner = alias_of(&t, SLD, "hello", FORWARD, YEAR).await;
    t.relay.alias("hello", "example.org", "op@dest.test").await;

    // Forwards at a static domain, at a chain-governed name with aliases,
    // at a name without, and at a domain the relay does not serve; signed
    // by nobody (garbage) and by someone who does not own the name.
    let stranger = dev_signer(2);
    let mut answers = Vec::new();
    for forward in [
        "x@example.org",
        "x@fsociety.country",
        "x@nobody.country",
        "x@unserved.test",
    ] {
        let garbage = json!({
            "alias": "probe",
            "sld": SLD,
            "forwardAddress": forward,
            "signature": format!("0x{}1b", "11".repeat(64)),
        });
        answers.push((forward, "garbage", t.post("/activate", garbage).await));
        let signed = authorize(&stranger, SLD, "probe", forward);
        answers.push((forward, "stranger", t.activate(&signed).await));
    }
    for (forward, who, answer) in &answers {
        assert_eq!(
            answer,
            &(401, json!({ "error": "invalid signature" })),
            "{who} → {forward}"
        );
    }

    // The owner is still told that a served domain would loop.
    let looping = t
        .chain
        .activate(&owner, SLD, "loop", "x@example.org")
        .await
        .unwrap();
    let (status, body) = t.activate(&looping).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("serves")),
        "{body}"
    );
    let got = t.deliver(&at("hello", SLD), "ordinary").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

// ---------------------------------------------------------------------------
// The admin API and the CLI (issue 9, item 3)
// ---------------------------------------------------------------------------

/// The field and message of an admin API error.
fn conflict_message(status: u16, body: &Value) -> String {
    assert_eq!(status, 409, "{body}");
    body["errors"]["domain"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_admin_api_cannot_claim_a_chain_governed_name() {
    let t = ChainRelay::start().await;
    for domain in [
        "unclaimed.country",
        "Mail.FSociety.Country",
        "country",
        DOMAIN,
    ] {
        let (status, body) = t
            .relay
            .api("POST", "/v3/domains", Some(json!({ "domain": domain })))
            .await;
        let message = conflict_message(status, &body);
        assert!(message.contains("/activate"), "{domain}: {message}");
    }
    let (status, body) = t
        .relay
        .api(
            "POST",
            "/v3/domains/unclaimed.country/aliases",
            Some(json!({ "alias": "x", "forward": "thief@dest.test" })),
        )
        .await;
    conflict_message(status, &body);
    let (status, body) = t
        .relay
        .api(
            "POST",
            "/v3/domains/unclaimed.country/aliases/bulk",
            Some(json!({ "aliases": [{ "alias": "x", "forward": "thief@dest.test" }] })),
        )
        .await;
    conflict_message(status, &body);
    let (status, body) = t
        .relay
        .import("x@unclaimed.country\tthief@dest.test\n")
        .await;
    assert_eq!(status, 409, "{body}");
    // Nothing forwards there, and the name is not relayed either.
    assert!(t.rcpt(&at("x", "unclaimed")).await.starts_with("550 5.1.1"));

    // The real owner activates an alias: it forwards to the owner's choice.
    alias_of(&t, "unclaimed", "x", FORWARD, YEAR).await;
    let got = t.deliver(&at("x", "unclaimed"), "the owner's").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
    // Static domains elsewhere are still the operator's.
    t.relay.alias("hello", "example.org", "op@dest.test").await;
    let got = t.deliver("hello@example.org", "static").await;
    assert_eq!(got.rcpt_to, vec!["op@dest.test".to_string()]);
}

#[tokio::test]
async fn the_cli_cannot_claim_a_chain_governed_name_and_leftovers_do_not_forward() {
    let files = NodeFiles::new(NodeOptions::default());
    // Made while the chain was off: a static domain under .country.
    files.cli(&["domain", "add", "old.country"]).ok();
    files
        .cli(&["alias", "add", "a@old.country", "u@dest.test"])
        .ok();
    // The chain is on now (its RPC need not answer for any of this).
    files.append_config(&format!(
        "[chain]\nenabled = true\nrpc_url = \"http://{}\"\n\
         [[chain.registries]]\ntld = \"country\"\neas = \"0x{}\"\n",
        free_addr(),
        "11".repeat(20)
    ));
    for args in [
        &["domain", "add", "new.country"][..],
        &["alias", "add", "b@old.country", "u@dest.test"][..],
    ] {
        let out = files.cli(args);
        assert_ne!(out.code, 0, "{args:?}: {out:#?}");
        assert!(
            format!("{}{}", out.stdout, out.stderr).contains("/activate"),
            "{args:?}: {out:#?}"
        );
    }
    let _node = files.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(files.log().contains("do not forward") && files.log().contains("old.country")) {
        assert!(
            Instant::now() < deadline,
            "no start-up warning: {}",
            files.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        crate::common::eas::rcpt_reply(files.smtp, "a@old.country")
            .await
            .starts_with("550 5.1.1")
    );
    // The operator removes the leftovers (through the running node).
    files.cli(&["domain", "remove", "old.country"]).ok();
    let (status, body) =
        crate::common::http::request(files.http, "GET", "/v3/domains", Some(ADMIN_KEY), None).await;
    assert_eq!((status, &body["total"]), (200, &json!(0)), "{body}");
}

// ---------------------------------------------------------------------------
// Chain time (issue 9, item 8)
// ---------------------------------------------------------------------------

fn default_skew(_: &mut Config) {}

fn day_skew(c: &mut Config) {
    c.chain.max_clock_skew = HumanDuration::parse("1d").unwrap();
}

#[tokio::test]
async fn a_far_future_block_timestamp_cannot_expire_every_alias() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::start_with(ChainOptions::default()).await;
    let t = relay_in(chain, TestSink::start().await, dir.path(), default_skew).await;
    alias_of(&t, SLD, "hello", FORWARD, YEAR).await;
    t.settle().await;
    let snapshot = t.chain.snapshot().await;

    // The RPC serves a block ten years ahead, and it gets confirmed.
    let far = t.chain.now().await + 10 * YEAR;
    t.chain.set_next_block_timestamp(far).await;
    t.chain.mine(1 + CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&at("hello", SLD)).await.starts_with("250"));
    let got = t.deliver(&at("hello", SLD), "from the future").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // A sane chain comes back; nothing was lost, also after a restart.
    assert!(t.chain.revert(snapshot).await);
    t.chain.mine(CONFIRMATIONS + 1).await;
    let t = restart(t, dir.path(), default_skew).await;
    t.settle().await;
    assert!(t.rcpt(&at("hello", SLD)).await.starts_with("250"));
    let got = t.deliver(&at("hello", SLD), "after restart").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

#[tokio::test]
async fn a_future_block_counts_only_once_confirmed_and_not_after_a_reorg() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::start_with(ChainOptions::default()).await;
    // A skew large enough that the bound does not apply: what is left to
    // protect is confirmations and reorgs.
    let t = relay_in(chain, TestSink::start().await, dir.path(), day_skew).await;
    alias_of(&t, SLD, "hello", FORWARD, 2 * 3600).await;
    t.settle().await;
    let snapshot = t.chain.snapshot().await;

    // A head 12 hours ahead, past the name's expiry: not confirmed yet.
    let ahead = t.chain.now().await + 12 * 3600;
    t.chain.set_next_block_timestamp(ahead).await;
    t.chain.mine(1).await;
    wait_for_head(&t, t.chain.block_number().await).await;
    assert!(t.rcpt(&at("hello", SLD)).await.starts_with("250"));
    // Confirmed, within the allowed skew: the name has expired by the
    // chain's clock.
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&at("hello", SLD), "550 5.1.1").await;

    // Those blocks are replaced: their time goes with them.
    assert!(t.chain.revert(snapshot).await);
    t.chain.mine(CONFIRMATIONS + 1).await;
    t.wait_rcpt(&at("hello", SLD), "250").await;
    let t = restart(t, dir.path(), day_skew).await;
    t.wait_rcpt(&at("hello", SLD), "250").await;
    let got = t.deliver(&at("hello", SLD), "after the reorg").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

// ---------------------------------------------------------------------------
// RCPT answers (issue 9, item 13)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rcpt_answers_do_not_tell_which_names_have_aliases() {
    let t = ChainRelay::start().await;
    let owner = alias_of(&t, "alpha", "hello", FORWARD, YEAR).await;
    alias_of(&t, "alpha", "quiet", FORWARD, YEAR).await;
    alias_of(&t, "gamma", "hello", FORWARD, YEAR).await;
    t.chain
        .register("beta", owner.address(), YEAR)
        .await
        .unwrap();
    // gamma's only alias is deactivated on chain; alpha's "quiet" is
    // suspended by the operator.
    t.chain.deactivate(&owner, "gamma", "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&at("hello", "gamma"), "550").await;
    let (status, _) = t
        .relay
        .api("DELETE", "/v3/domains/alpha.country/aliases/quiet", None)
        .await;
    assert_eq!(status, 200);

    // A name with aliases, at an address that has none: the reference.
    let reference = t.rcpt(&at("nobody", "alpha")).await;
    assert!(reference.starts_with("550 5.1.1"), "{reference}");
    for rcpt in [
        at("x", "beta"),               // registered, no alias
        at("hello", "gamma"),          // its aliases are gone
        at("x", "unregistered"),       // nobody's
        at("postmaster", "beta"),      // no postmaster alias
        at("quiet", "alpha"),          // suspended
        "x@mail.alpha.country".into(), // a subdomain
        "x@country".into(),            // the TLD itself
    ] {
        assert_eq!(t.rcpt(&rcpt).await, reference, "RCPT TO:<{rcpt}>");
    }
    // A domain the relay does not serve is still refused as relaying.
    assert!(t.rcpt("victim@gmail.test").await.starts_with("550 5.7.1"));
    let got = t.deliver(&at("hello", "alpha"), "ordinary").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}

#[tokio::test]
async fn postmaster_at_a_chain_governed_name_tells_nothing_unless_the_owner_activated_it() {
    let t = ChainRelay::start_with(ChainOptions::default(), false, |c| {
        c.aliases.postmaster = "ops@dest.test".into();
    })
    .await;
    let owner = alias_of(&t, "alpha", "hello", FORWARD, YEAR).await;
    alias_of(&t, "gamma", "hello", FORWARD, YEAR).await;
    t.chain
        .register("beta", owner.address(), YEAR)
        .await
        .unwrap();
    t.chain.deactivate(&owner, "gamma", "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.wait_rcpt(&at("hello", "gamma"), "550").await;

    // The operator's postmaster does not apply under the TLD: postmaster
    // at a name with aliases, one without, one whose aliases are gone, and
    // one nobody registered answers like any address that does not forward.
    let reference = t.rcpt(&at("nobody", "alpha")).await;
    assert!(reference.starts_with("550 5.1.1"), "{reference}");
    for rcpt in [
        at("postmaster", "alpha"),
        at("PostMaster", "alpha"),
        at("postmaster+x", "alpha"),
        at("postmaster", "beta"),
        at("postmaster", "gamma"),
        at("postmaster", "unregistered"),
        "postmaster@mail.alpha.country".into(),
    ] {
        assert_eq!(t.rcpt(&rcpt).await, reference, "RCPT TO:<{rcpt}>");
    }
    // The bare <postmaster> is the operator's, as on any relay.
    assert_eq!(
        crate::common::eas::rcpt_reply(t.relay.smtp, "postmaster").await,
        "250 2.1.5 Recipient OK"
    );

    // The owner activates a postmaster alias: it forwards to the owner's
    // choice, never to the operator's.
    alias_of(&t, "alpha", "postmaster", "owner-pm@dest.test", YEAR).await;
    let got = t.deliver(&at("postmaster", "alpha"), "to the owner").await;
    assert_eq!(got.rcpt_to, vec!["owner-pm@dest.test".to_string()]);
    assert_eq!(t.rcpt(&at("postmaster", "beta")).await, reference);
    let got = t.deliver(&at("hello", "alpha"), "ordinary").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);
}
