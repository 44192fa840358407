//! Session tests: greeting, EHLO and the simple verbs.

use super::harness::*;
use super::{HOST, SENDER};
use crate::config::ByteSize;

const EXTENSIONS: [&str; 6] = [
    "PIPELINING",
    "SIZE 1048576",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
];

#[tokio::test]
async fn greeting_and_ehlo_extensions() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize::new(1024 * 1024));
    let mut c = h.connect().await;
    assert_eq!(c.ehlo("client.test").await, EXTENSIONS);
    // EHLO may be repeated; the answer is the same
    assert_eq!(c.ehlo("client.test").await, EXTENSIONS);
    c.quit().await;
}

#[tokio::test]
async fn ehlo_offers_starttls_only_when_configured_and_not_active() {
    let h = Harness::with_tls(|c| c.smtp.max_message_size = ByteSize::new(1024 * 1024));
    let mut c = h.connect().await;
    let mut expected: Vec<&str> = EXTENSIONS.to_vec();
    expected.insert(5, "STARTTLS");
    assert_eq!(c.ehlo("client.test").await, expected);
    c.quit().await;
}

#[tokio::test]
async fn helo_noop_help_vrfy_quit() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    // HELO: one line, no extensions
    c.send("HELO client.test\r\n").await;
    assert_eq!(c.reply().await, [format!("250 {HOST}")]);
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("NOOP with an argument", "250 2.0.0").await;
    c.cmd("HELP", "214 2.0.0").await;
    c.cmd("HELP DATA", "214 2.0.0").await;
    c.cmd("VRFY hello@d.country", "252 2.5.2").await;
    c.cmd("vrfy nobody", "252 2.5.2").await;
    c.quit().await;
}

#[tokio::test]
async fn unimplemented_and_unknown_commands() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd("EXPN team@d.country", "502 5.5.1").await;
    c.cmd("AUTH PLAIN AGFAYg==", "502 5.5.1").await;
    c.cmd("ETRN d.country", "502 5.5.1").await;
    c.cmd("FROBNICATE", "500 5.5.2").await;
    c.cmd("", "500 5.5.2").await;
    // the session is still usable
    c.cmd("NOOP", "250 2.0.0").await;
    c.quit().await;
}

#[tokio::test]
async fn syntax_errors() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.cmd("EHLO", "501 5.5.4").await;
    c.cmd("HELO", "501 5.5.4").await;
    c.ehlo("client.test").await;
    c.cmd("MAIL FROM:sender@origin.test", "501 5.5.4").await;
    c.cmd("MAIL TO:<sender@origin.test>", "501 5.5.4").await;
    c.cmd("MAIL FROM:<no-domain>", "501 5.1.7").await;
    c.cmd("MAIL FROM:<a@b.test> FOO=BAR", "555 5.5.4").await;
    c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME", "504 5.5.4")
        .await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.cmd("RCPT TO:hello@d.country", "501 5.5.4").await;
    c.cmd("RCPT TO:<no-domain>", "501 5.1.3").await;
    c.cmd("BDAT", "501 5.5.4").await;
    c.cmd("BDAT many", "501 5.5.4").await;
    // none of that broke the transaction
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data("Subject: x\r\n\r\nx\r\n.\r\n", "250 2.0.0").await;
    c.quit().await;
}
