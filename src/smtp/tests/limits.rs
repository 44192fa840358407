//! Session tests: line length, errors, timeouts.

use super::harness::*;
use super::{HOST, SENDER};
use crate::config::HumanDuration;
use std::time::{Duration, Instant};

#[tokio::test]
async fn long_command_lines_are_refused_and_the_session_goes_on() {
    let h = Harness::new(|c| c.smtp.max_line_length = 512);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // 512 bytes with the CRLF: accepted
    let fits = format!("NOOP {}", "x".repeat(512 - 5 - 2));
    c.cmd(&fits, "250 2.0.0").await;
    let over = format!("NOOP {}", "x".repeat(512 - 5 - 1));
    c.cmd(&over, "500 5.5.2").await;
    let huge = format!("MAIL FROM:<{}@b.test>", "x".repeat(70_000));
    c.cmd(&huge, "500 5.5.2").await;
    // nothing of the long lines leaked into the next command
    c.mail_from(SENDER, "250 2.1.0").await;
    c.quit().await;
}

#[tokio::test]
async fn long_command_line_split_over_several_reads() {
    let h = Harness::new(|c| c.smtp.max_line_length = 512);
    let chunks = vec![
        b"EHLO c.test\r\nNOOP ".to_vec(),
        vec![b'x'; 300],
        vec![b'x'; 300],
        b"xx\r\nNOOP\r\nMAIL FROM:<".to_vec(),
        vec![b'y'; 400],
        vec![b'y'; 400],
        b"@b.test>\r\nRSET\r\nNOOP ".to_vec(),
        vec![b'z'; 250],
        vec![b'z'; 250],
        b"\r\nQUIT\r\n".to_vec(),
    ];
    let lines = lines_of(&h.script(chunks).await);
    let codes: Vec<&str> = lines.iter().map(|l| &l[..l.len().min(9)]).collect();
    assert_eq!(
        codes,
        [
            "220 relay",
            "250-relay",
            "250-PIPEL",
            "250-SIZE ",
            "250-8BITM",
            "250-SMTPU",
            "250-ENHAN",
            "250 CHUNK",
            "500 5.5.2", // NOOP x{600}
            "250 2.0.0", // NOOP
            "500 5.5.2", // MAIL FROM:<y{800}...
            "250 2.0.0", // RSET
            "250 2.0.0", // NOOP z{500}: 507 bytes fit
            "221 2.0.0",
        ]
    );
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let h = Harness::new(|c| c.smtp.max_errors = 3);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd("FROBNICATE", "500 5.5.2").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("nobody@d.country", "550 5.1.1").await; // rejected recipients count
    c.cmd("NOOP", "250 2.0.0").await; // good commands do not reset the count
    c.cmd("EXPN team", "421 4.7.0").await;
    c.closed().await;
}

#[tokio::test]
async fn idle_session_times_out() {
    let h = Harness::new(|c| {
        c.smtp.command_timeout = HumanDuration::new(Duration::from_millis(300));
        c.smtp.data_timeout = HumanDuration::secs(30);
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let start = Instant::now();
    let reply = c.expect("421 4.4.2").await;
    assert!(reply.contains(HOST), "{reply}");
    c.closed().await;
    // (the session's clock started just before the EHLO reply was seen)
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn stalled_data_times_out() {
    let h = Harness::new(|c| {
        c.smtp.command_timeout = HumanDuration::secs(30);
        c.smtp.data_timeout = HumanDuration::new(Duration::from_millis(300));
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: stalled\r\n\r\nhalf a mess").await;
    let start = Instant::now();
    c.expect("421 4.4.2").await;
    c.closed().await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(h.queue_len(), 0);
}
