//! The admin API driven from outside, as ImprovMX's clients drive it: curl
//! with the commands of ImprovMX's documentation (only the base URL
//! changed), against the whole relay on loopback; an alias created that way
//! forwards real mail, which then shows in the logs endpoint.

mod common;

use common::dns::TestDns;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::{Client, message};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Runs curl with `args` after the URL; returns (HTTP status, JSON body).
fn curl(url: &str, args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", url])
        .args(args)
        .output()
        .expect("curl (scripts/test installs it)");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status.parse().unwrap(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn improvmx_documentation_commands_manage_aliases_that_forward_and_log() {
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    let sink = TestSink::start().await;
    let relay = TestRelay::start(|c| {
        c.outbound.nameservers = vec![dns.addr()];
        c.outbound.port = sink.addr.port();
    })
    .await;
    let base = format!("http://{}/v3", relay.http);
    let key = relay.key.clone();
    let user = format!("api:{key}");
    // ImprovMX's examples: `-u "api:$API_KEY"` (curl encodes it) and the
    // older `-H "Authorization: Basic api:$API_KEY"` (not encoded).
    let raw_basic = format!("Authorization: Basic api:{key}");

    // curl -X POST https://api.improvmx.com/v3/domains -u "api:$API_KEY" \
    //   -H 'Content-Type: application/json' -d '{ "domain": "piedpiper.com" }'
    let (status, body) = curl(
        &format!("{base}/domains"),
        &[
            "-X",
            "POST",
            "-u",
            &user,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{ "domain": "piedpiper.country" }"#,
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["domain"]["domain"], "piedpiper.country");
    assert_eq!(body["domain"]["active"], true);

    // curl -X GET "https://api.improvmx.com/v3/domains?q=pied" -u "api:$API_KEY"
    let (status, body) = curl(
        &format!("{base}/domains?q=pied"),
        &["-X", "GET", "-u", &user],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["domains"][0]["display"], "piedpiper.country");

    // Create an alias, with the literal `api:KEY` Basic header.
    let (status, body) = curl(
        &format!("{base}/domains/piedpiper.country/aliases"),
        &[
            "-X",
            "POST",
            "-H",
            &raw_basic,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{ "alias": "richard", "forward": "richard@dest.test" }"#,
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alias"]["alias"], "richard");
    assert_eq!(body["alias"]["forward"], "richard@dest.test");
    assert!(body["alias"]["id"].as_u64().unwrap() > 0);
    assert!(body["alias"]["created"].as_u64().unwrap() > 1_700_000_000_000);

    // Bulk: one new, one existing (skipped with "add"), one invalid.
    let (status, body) = curl(
        &format!("{base}/domains/piedpiper.country/aliases/bulk"),
        &[
            "-X",
            "POST",
            "-u",
            &user,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{ "aliases": [
                 { "alias": "gilfoyle", "forward": "gilfoyle@dest.test, bertram@dest.test" },
                 { "alias": "richard", "forward": "other@dest.test" },
                 { "alias": "bad alias", "forward": "x@dest.test" } ],
               "behavior": "add" }"#,
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["added"][0]["alias"], "gilfoyle");
    assert_eq!(body["skipped"][0]["forward"], "richard@dest.test");
    assert_eq!(body["failed"][0]["alias"], "bad alias");
    assert!(
        body["failed"][0]["errors"]["alias"][0].is_string(),
        "{body}"
    );

    // A wrong key: 401 in ImprovMX's shape.
    let (status, body) = curl(&format!("{base}/account"), &["-u", "api:not-the-key"]);
    assert_eq!(status, 401);
    assert_eq!(body["success"], false);
    assert!(body["errors"]["authorization"][0].is_string(), "{body}");

    // Mail to the alias created through the API is forwarded.
    let original = message(
        "gavin@example.org",
        "richard@piedpiper.country",
        "Pied Piper",
        "Middle out.",
    );
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let reply = c
        .send_mail(
            "gavin@example.org",
            &["richard@piedpiper.country"],
            &original,
        )
        .await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    c.quit().await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpt_to, vec!["richard@dest.test".to_string()]);

    // ...and shows in the logs, newest first, as delivered.
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let (status, body) = curl(
            &format!("{base}/domains/piedpiper.country/logs/richard"),
            &["-u", &user],
        );
        assert_eq!(status, 200, "{body}");
        if let Some(first) = body["logs"].as_array().and_then(|l| l.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no log entry: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log["recipient"]["email"], "richard@piedpiper.country");
    assert_eq!(log["forward"]["email"], "richard@dest.test");
    assert_eq!(log["sender"]["email"], "gavin@example.org");
    assert_eq!(log["subject"], "Pied Piper");
    assert_eq!(log["events"][0]["status"], "DELIVERED");
    assert_eq!(log["events"][0]["code"], 250);
    let (_, all) = curl(
        &format!("{base}/domains/piedpiper.country/logs"),
        &["-u", &user],
    );
    assert_eq!(all["logs"].as_array().unwrap().len(), 1, "{all}");

    // The OpenAPI document needs no key.
    let (status, doc) = curl(&format!("{base}/openapi.json"), &[]);
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v3/domains/{domain}/aliases/bulk"]["post"].is_object());
    relay.stop().await;
}
