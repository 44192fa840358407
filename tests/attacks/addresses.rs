//! Attacks through address syntax: invisible code points that
//! normalization used to drop (so `exa<U+200B>mple.org` reached
//! `example.org`), malformed addresses answered as if they were relay
//! attempts or unknown users, and forwarding addresses that carry SMTP
//! commands into the relay's own outbound session.

use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A relay serving `hello@example.org → op@dest.test`, `dest.test` routed
/// to the sink.
async fn relay_with_hello() -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let relay = TestRelay::start(|c| {
        c.outbound.routes.insert("dest.test".into(), dest);
    })
    .await;
    relay.alias("hello", "example.org", "op@dest.test").await;
    (relay, sink)
}

/// Ordinary mail still arrives at `hello@example.org`.
async fn ordinary_mail_flows(relay: &TestRelay, sink: &TestSink) {
    let before = sink.messages().len();
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["hello@example.org"],
        &message("alice@sender.test", "hello@example.org", "ordinary", "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["op@dest.test".to_string()]);
}

/// Code points UTS #46 drops without a trace.
const INVISIBLE: [char; 3] = ['\u{200B}', '\u{00AD}', '\u{FEFF}'];

#[tokio::test]
async fn an_invisible_code_point_cannot_smuggle_an_address_past_normalization() {
    let (relay, sink) = relay_with_hello().await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    for cp in INVISIBLE {
        c.cmd(
            &format!("MAIL FROM:<alice@sen{cp}der.test> SMTPUTF8"),
            "553 5.1.7",
        )
        .await;
    }
    c.cmd("MAIL FROM:<alice@sender.test> SMTPUTF8", "250").await;
    for cp in INVISIBLE {
        let reply = c
            .rcpt_to(&format!("hello@exa{cp}mple.org"), "553 5.1.3")
            .await;
        assert!(reply.contains("IDNA2008"), "{reply}");
    }
    c.cmd("RSET", "250").await;
    c.quit().await;
    // The admin API takes no such domain name either.
    for cp in INVISIBLE {
        let (status, body) = relay
            .api(
                "POST",
                "/v3/domains",
                Some(json!({ "domain": format!("exa{cp}mple.net") })),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["errors"]["domain"].is_array(), "{body}");
    }
    let (_, domains) = relay.api("GET", "/v3/domains", None).await;
    assert_eq!(domains["total"], 1, "{domains}");
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn malformed_addresses_get_syntax_errors_not_relay_or_unknown_user_answers() {
    let (relay, sink) = relay_with_hello().await;
    // A catch-all, which a malformed address must not reach either.
    relay.alias("*", "example.org", "op@dest.test").await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    for sender in ["info@", "@example.org", "info@@example.org"] {
        c.mail_from(sender, "501 5.1.7").await;
    }
    c.mail_from("alice@sender.test", "250").await;
    for rcpt in [
        "<info@@example.org>",
        "<@example.org>",
        "<info@>",
        "<>",
        "<info>",
    ] {
        c.cmd(&format!("RCPT TO:{rcpt}"), "501 5.1.3").await;
    }
    // Real relay tricks keep their answer.
    c.cmd("RCPT TO:<@evil.test:info@example.org>", "550 5.7.1")
        .await;
    c.cmd("RCPT TO:<info%evil.test@example.org>", "550 5.7.1")
        .await;
    c.cmd("RSET", "250").await;
    c.quit().await;
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn a_forward_with_crlf_cannot_inject_smtp_commands_through_the_admin_api() {
    let (relay, sink) = relay_with_hello().await;
    let injected = [
        "u\r\nDATA\r\n@dest.test",
        "u\rRSET\r@dest.test",
        "u\n@dest.test",
        "<u@dest.test>",
        "u\u{0}@dest.test",
    ];
    for forward in injected {
        let (status, body) = relay
            .api(
                "POST",
                "/v3/domains/example.org/aliases",
                Some(json!({ "alias": "victim", "forward": forward })),
            )
            .await;
        assert_eq!(status, 400, "{forward:?}: {body}");
        assert!(body["errors"]["forward"].is_array(), "{body}");
        let (status, body) = relay
            .api(
                "PUT",
                "/v3/domains/example.org/aliases/hello",
                Some(json!({ "forward": forward })),
            )
            .await;
        assert_eq!(status, 400, "{forward:?}: {body}");
    }
    let items: Vec<_> = injected
        .iter()
        .enumerate()
        .map(|(i, f)| json!({ "alias": format!("bulk{i}"), "forward": f }))
        .collect();
    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({ "aliases": items })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["failed"].as_array().map(Vec::len),
        Some(injected.len())
    );
    assert_eq!(body["added"], json!([]), "{body}");
    // Import lines end at LF; a CR inside one is not an end.
    let (status, body) = relay.import("x@example.org\tu\rDATA\r@dest.test\n").await;
    assert_eq!(status, 400, "{body}");
    let (_, aliases) = relay
        .api("GET", "/v3/domains/example.org/aliases", None)
        .await;
    assert_eq!(aliases["total"], 1, "only hello: {aliases}");
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn names_idna2008_refuses_but_uts46_maps_or_keeps_are_refused_and_empty_labels_are_syntax() {
    let (relay, sink) = relay_with_hello().await;
    // Look-alikes of a served name that UTS #46 keeps but IDNA2008 does
    // not allow (tatweel, kana repeat mark, a middle dot outside "l·l",
    // Arabic-Indic digits of both kinds) and a second trailing dot.
    let lookalikes = [
        "exa\u{3031}mple.org",
        "exa\u{00B7}mple.org",
        "\u{0628}\u{0640}\u{0628}.example.org",
        "\u{0628}\u{0661}\u{06F2}.example.org",
    ];
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.cmd("MAIL FROM:<alice@sender.test> SMTPUTF8", "250").await;
    for domain in lookalikes {
        let reply = c.rcpt_to(&format!("hello@{domain}"), "553 5.1.3").await;
        assert!(reply.contains("IDNA2008"), "{domain}: {reply}");
    }
    for rcpt in ["hello@example.org..", "hello@example..org"] {
        c.rcpt_to(rcpt, "501 5.1.3").await;
    }
    c.cmd("RSET", "250").await;
    c.quit().await;
    for domain in lookalikes
        .iter()
        .chain(&["example.org..", "exa\u{0640}mple.net"])
    {
        let (status, body) = relay
            .api("POST", "/v3/domains", Some(json!({ "domain": domain })))
            .await;
        assert_eq!(status, 400, "{domain}: {body}");
    }
    // What IDNA2008 allows in context is a name like any other.
    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains",
            Some(json!({ "domain": "col\u{00B7}legi.example" })),
        )
        .await;
    assert!(status < 300, "{body}");
    ordinary_mail_flows(&relay, &sink).await;
}
