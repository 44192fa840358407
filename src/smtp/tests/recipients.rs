//! Session tests: recipients.

use super::SENDER;
use super::harness::*;
use crate::store::RcptStatus;

#[tokio::test]
async fn known_aliases_tags_and_case_are_accepted() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("HeLLo+News@D.Country", "250 2.1.5").await;
    c.rcpt_to("team+x@d.country", "250 2.1.5").await;
    let reply = c
        .data(
            "Subject: r\r\n\r\nbody\r\n.\r\n",
            "250 2.0.0 Ok: queued as ",
        )
        .await;
    let (entry, message) = h.queued(&reply);
    // one copy per destination, whatever recipient reached it
    let dest: Vec<(&str, &str, &str)> = entry
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.rcpt.as_str(), r.alias.as_str()))
        .collect();
    assert_eq!(
        dest,
        [
            ("a@dest.test", "hello@d.country", "hello@d.country"),
            ("b@dest.test", "team+x@d.country", "team@d.country"),
            ("c@dest.test", "team+x@d.country", "team@d.country"),
        ]
    );
    assert!(
        entry
            .recipients
            .iter()
            .all(|r| r.status == RcptStatus::Pending && r.attempts == 0)
    );
    // several recipients: the trace header names none of them
    let (received, _) = split_trace(&message);
    assert!(!received.contains("for <"), "{received}");
    c.quit().await;
}

#[tokio::test]
async fn unknown_and_foreign_recipients_are_refused() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("nobody@d.country", "550 5.1.1").await;
    c.rcpt_to("+tag@d.country", "550 5.1.1").await;
    c.rcpt_to("hello@other.country", "550 5.7.1").await;
    c.rcpt_to("victim@gmail.test", "550 5.7.1").await;
    c.rcpt_to("hello@d.country.evil.test", "550 5.7.1").await;
    c.cmd("DATA", "554 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn postmaster_is_accepted_when_configured() {
    let h = Harness::new(|c| c.aliases.postmaster = "ops@ops.test".into());
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("postmaster", "250 2.1.5").await;
    c.rcpt_to("PostMaster@d.country", "250 2.1.5").await;
    c.rcpt_to("postmaster@other.test", "550 5.7.1").await;
    c.quit().await;

    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("postmaster", "550 5.1.1").await;
    c.rcpt_to("postmaster@d.country", "550 5.1.1").await;
    c.quit().await;
}

#[tokio::test]
async fn bounces_to_srs_addresses_are_verified_at_rcpt() {
    let h = Harness::new(|_| {});
    let srs = h.ctx.srs.as_ref().expect("srs is on");
    let minted = srs.forward("alice@origin.test");
    assert!(minted.ends_with("@srs.relay.test"), "{minted}");
    let mut c = h.connect().await;
    c.ehlo("mx.remote.test").await;
    c.mail_from("", "250 2.1.0").await;
    c.rcpt_to(&minted, "250 2.1.5").await;
    // a forged hash and a made-up address at the SRS domain
    let forged = minted.replacen("SRS0=", "SRS0=x", 1);
    c.rcpt_to(&forged, "550 5.1.1").await;
    c.rcpt_to("SRS0=abcd=ZZ=evil.test=x@srs.relay.test", "550 5.1.1")
        .await;
    c.rcpt_to("anyone@srs.relay.test", "550 5.1.1").await;
    let reply = c
        .data(b"Subject: bounce\r\n\r\nreturned\r\n.\r\n", "250 2.0.0")
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.sender, "");
    assert_eq!(
        entry.envelope_from, None,
        "the null sender is never rewritten"
    );
    assert_eq!(entry.recipients[0].address, "alice@origin.test");
    c.quit().await;
}

#[tokio::test]
async fn forwarded_senders_are_rewritten_except_local_and_null() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for (sender, rewritten) in [("bob@origin.test", true), ("me@d.country", false)] {
        c.mail_from(sender, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let reply = c
            .data(b"Subject: x\r\n\r\nbody\r\n.\r\n", "250 2.0.0")
            .await;
        let (entry, _) = h.queued(&reply);
        assert_eq!(entry.sender, sender, "the original sender is kept for DSNs");
        match &entry.envelope_from {
            Some(srs) if rewritten => {
                assert!(srs.starts_with("SRS0="), "{srs}");
                assert_eq!(h.ctx.srs.as_ref().unwrap().reverse(srs).unwrap(), sender);
            }
            None if !rewritten => {}
            other => panic!("{sender}: unexpected envelope {other:?}"),
        }
    }
    c.quit().await;
}

#[tokio::test]
async fn absurd_bdat_sizes_end_the_session() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 100000000000000000000005 LAST\r\nhello").await;
    c.expect("421 4.7.0").await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn relay_tricks_are_refused_even_with_a_catch_all() {
    let h = Harness::new(|_| {});
    // with a catch-all, a trick on the local domain would otherwise match
    h.catch_all();
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), "250 2.1.0")
        .await;
    for trick in [
        "<@a.country:u@evil.test>",
        "<@evil.test:hello@d.country>",
        "<@a.country,@b.country:hello@d.country>",
        "<u%evil.test@d.country>",
        "<evil!u@d.country>",
        "<evil.test!u@d.country>",
        "<\"u@evil.test\"@d.country>",
        "<\"hello\"@d.country>",
        "<u@[127.0.0.1]>",
        "<u@[IPv6:::1]>",
    ] {
        c.cmd(&format!("RCPT TO:{trick}"), "550 5.7.1").await;
    }
    // an invalid UTF-8 byte must not hide the trick from the check
    c.send(b"RCPT TO:<\"u@evil.test\"\xff@d.country>\r\n").await;
    c.expect("550 5.7.1").await;
    c.send(b"RCPT TO:<u%evil.test@d.country> NOTIFY=NEVER ORCPT=rfc822;u\xff@x.test\r\n")
        .await;
    c.expect("550 5.7.1").await;
    // the catch-all itself works
    c.rcpt_to("anyone@d.country", "250 2.1.5").await;
    c.quit().await;
}

#[tokio::test]
async fn too_many_recipients() {
    let h = Harness::new(|c| {
        c.smtp.max_recipients = 2;
        c.smtp.max_errors = 3;
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("team@d.country", "250 2.1.5").await;
    // a pipelining client sends all its recipients at once; the extra ones
    // are deferred (it sends them again later), which is not a client
    // error that may end the session and lose the whole transaction
    let mut batch = String::new();
    for i in 0..6 {
        batch.push_str(&format!("RCPT TO:<hello+{i}@d.country>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch).await;
    for _ in 0..6 {
        c.expect("452 4.5.3").await;
    }
    c.expect("354 ").await;
    c.send("Subject: many\r\n\r\nbody\r\n.\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (entry, _) = h.queued(&reply);
    let dest: Vec<&str> = entry
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(dest, ["a@dest.test", "b@dest.test", "c@dest.test"]);
    c.quit().await;
}
