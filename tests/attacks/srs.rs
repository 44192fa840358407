//! Attacks through the SRS bounce path: relaying spam to the original
//! sender of forwarded mail through its SRS address (any sender, many
//! recipients, a flood), and guessing SRS hashes at RCPT, which answers
//! for free whether a guess is right.

use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A relay serving `hello@example.org → op@dest.test`, with `dest.test`
/// and `origin.test` (where bounces go back) routed to the sink.
async fn relay(tweak: impl FnOnce(&mut eas_relay::Config)) -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let relay = TestRelay::start(|c| {
        c.outbound.routes.insert("dest.test".into(), dest.clone());
        c.outbound.routes.insert("origin.test".into(), dest);
        tweak(c);
    })
    .await;
    relay.alias("hello", "example.org", "op@dest.test").await;
    (relay, sink)
}

/// Forwards one message from alice@origin.test; returns the SRS address the
/// destination saw as its sender (where its bounces go).
async fn srs_address_of_a_forward(relay: &TestRelay, sink: &TestSink) -> String {
    let before = sink.messages().len();
    ordinary_mail_flows(relay, sink).await;
    let srs = sink.messages()[before].mail_from.clone();
    assert!(srs.starts_with("SRS0="), "{srs}");
    srs
}

/// Ordinary mail still arrives at `hello@example.org`.
async fn ordinary_mail_flows(relay: &TestRelay, sink: &TestSink) {
    let before = sink.messages().len();
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;
    c.send_mail(
        "alice@origin.test",
        &["hello@example.org"],
        &message("alice@origin.test", "hello@example.org", "ordinary", "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["op@dest.test".to_string()]);
}

/// Sends one bounce (null sender) to `srs`; returns the final reply.
async fn bounce(c: &mut Client, srs: &str, expect: &str) -> String {
    c.mail_from("", "250").await;
    c.rcpt_to(srs, "250 2.1.5").await;
    c.data(
        &message("MAILER-DAEMON@dest.test", srs, "Undelivered", "bounced"),
        expect,
    )
    .await
}

#[tokio::test]
async fn spam_to_srs_address_is_refused() {
    let (relay, sink) = relay(|_| {}).await;
    let srs = srs_address_of_a_forward(&relay, &sink).await;
    assert_eq!(srs.split('=').nth(1).map(str::len), Some(8), "hash length");
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("spam.evil.test").await;
    // Any sender but the null one: not a bounce.
    c.mail_from("spammer@evil.test", "250").await;
    let reply = c.rcpt_to(&srs, "550 5.7.1").await;
    assert!(reply.contains("null sender"), "{reply}");
    c.cmd("RSET", "250").await;
    // A bounce travels alone: no second recipient, SRS or not.
    c.mail_from("", "250").await;
    c.rcpt_to("hello@example.org", "250").await;
    c.rcpt_to(&srs, "452 4.5.3").await;
    c.cmd("RSET", "250").await;
    c.mail_from("", "250").await;
    c.rcpt_to(&srs, "250 2.1.5").await;
    c.rcpt_to("hello@example.org", "452 4.5.3").await;
    c.rcpt_to(&srs, "452 4.5.3").await;
    c.cmd("RSET", "250").await;
    // A real bounce still goes back to the original sender.
    let before = sink.messages().len();
    bounce(&mut c, &srs, "250").await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["alice@origin.test".to_string()]);
    assert_eq!(got[before].mail_from, "");
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn bouncing_a_flood_through_one_srs_address_is_capped() {
    let (relay, sink) = relay(|c| c.srs.max_bounces_per_address = 3).await;
    let srs = srs_address_of_a_forward(&relay, &sink).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mx.dest.test").await;
    // RCPT then RSET spends nothing: the budget counts accepted messages.
    for _ in 0..10 {
        c.mail_from("", "250").await;
        c.rcpt_to(&srs, "250 2.1.5").await;
        c.cmd("RSET", "250").await;
    }
    let before = sink.messages().len();
    for _ in 0..3 {
        bounce(&mut c, &srs, "250").await;
    }
    c.mail_from("", "250").await;
    c.rcpt_to(&srs, "450 4.7.1").await;
    c.cmd("RSET", "250").await;
    c.quit().await;
    sink.wait_for(before + 3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), before + 3, "no fourth bounce");
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn guessing_srs_hashes_is_throttled() {
    let (relay, sink) = relay(|_| {}).await;
    let srs = srs_address_of_a_forward(&relay, &sink).await;
    let max = relay.config.srs.max_failures;
    assert_eq!(max, 10, "the default");
    // Same timestamp and original, guessed hashes.
    let (_, rest) = srs["SRS0=".len()..].split_once('=').unwrap();
    let guess = |i: u32| format!("SRS0=G{i:07}={rest}");
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("guesser.evil.test").await;
    c.mail_from("", "250").await;
    for i in 1..max {
        c.rcpt_to(&guess(i), "550 5.1.1").await;
    }
    c.rcpt_to(&guess(max), "451 4.7.1").await;
    assert_eq!(c.line().await, None, "the session is closed");
    // The count holds across sessions: even the right hash is not
    // answered to this network now.
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("guesser.evil.test").await;
    c.mail_from("", "250").await;
    c.rcpt_to(&srs, "451 4.7.1").await;
    assert_eq!(c.line().await, None, "the session is closed");
    // Another network's bounces still come back.
    let (mut other, greeting) =
        Client::connect_from(relay.smtp, "127.0.0.2".parse().unwrap()).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    other.ehlo("mx.dest.test").await;
    let before = sink.messages().len();
    bounce(&mut other, &srs, "250").await;
    other.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["alice@origin.test".to_string()]);
    // Ordinary mail from the guessing network still flows.
    ordinary_mail_flows(&relay, &sink).await;
}

#[tokio::test]
async fn bare_postmaster_does_not_ride_along_with_a_bounce() {
    let (relay, sink) = relay(|c| c.aliases.postmaster = "pm@dest.test".into()).await;
    let srs = srs_address_of_a_forward(&relay, &sink).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mx.dest.test").await;
    // A bounce travels alone, the bare <postmaster> (RFC 5321 §4.5.1)
    // included: it would fan the bounce path out to a second mailbox.
    c.mail_from("", "250").await;
    c.rcpt_to(&srs, "250 2.1.5").await;
    c.cmd("RCPT TO:<postmaster>", "452 4.5.3").await;
    let before = sink.messages().len();
    c.data(
        &message("MAILER-DAEMON@dest.test", &srs, "Undelivered", "bounced"),
        "250",
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["alice@origin.test".to_string()]);
    // The bare <postmaster> alone still works, and so does ordinary mail.
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mx.dest.test").await;
    c.mail_from("", "250").await;
    c.cmd("RCPT TO:<postmaster>", "250").await;
    c.quit().await;
    ordinary_mail_flows(&relay, &sink).await;
}
