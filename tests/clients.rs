//! Real SMTP clients against the relay: Python's smtplib and swaks. Each
//! test runs a relay in-process that routes `dest.test` to a test sink,
//! and checks what the client saw and what exactly reached the sink.
//!
//! swaks (with TLS support, i.e. Net::SSLeay) is installed by
//! `scripts/test`; without it these tests fail and say so.

mod common;

use common::relay::TestRelay;
use common::sink::{Received, TestSink};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);
/// Longest run of one client program.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// A relay forwarding `hello@d.country` to `u@dest.test` at a sink.
async fn relay_and_sink() -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let relay = TestRelay::start(|c| {
        c.outbound.routes.insert("dest.test".into(), dest);
    })
    .await;
    relay.alias("hello", "d.country", "u@dest.test").await;
    (relay, sink)
}

/// Runs a client program to completion (bounded).
async fn run(cmd: &mut Command) -> Output {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    tokio::time::timeout(CLIENT_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {CLIENT_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks that the sink got `original` exactly, behind one Received
/// header of the relay that says how the client connected (`ESMTP` or
/// `ESMTPS`), and returns that header.
fn assert_forwarded(m: &Received, sender: &str, original: &[u8], protocol: &str) -> String {
    assert_eq!(m.rcpt_to, vec!["u@dest.test".to_string()]);
    // The envelope sender is the original one, or its SRS form.
    let (local, domain) = sender.split_once('@').unwrap();
    assert!(
        m.mail_from == sender
            || (m.mail_from.starts_with("SRS0=")
                && m.mail_from.contains(&format!("={domain}={local}@"))),
        "envelope sender {}",
        m.mail_from
    );
    assert!(
        m.data.ends_with(original),
        "the original bytes must arrive unchanged:\n{}",
        m.text()
    );
    let added = String::from_utf8(m.data[..m.data.len() - original.len()].to_vec())
        .expect("added headers are ASCII");
    // The relay adds its signatures (and seal) above its trace header.
    let at = added.find("Received: from ").expect("a Received header");
    let (signatures, prefix) = added.split_at(at);
    let prefix = prefix.to_string();
    for field in signatures
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
    {
        let name = field.split(':').next().unwrap();
        assert!(
            [
                "DKIM-Signature",
                "ARC-Seal",
                "ARC-Message-Signature",
                "ARC-Authentication-Results",
                "Authentication-Results"
            ]
            .contains(&name),
            "unexpected added header {name}:\n{added}"
        );
    }
    assert!(
        signatures.contains("d=relay.test"),
        "the relay signs:\n{added}"
    );
    assert!(
        prefix
            .trim_end_matches("\r\n")
            .split("\r\n")
            .skip(1)
            .all(|l| l.starts_with('\t') || l.starts_with(' ')),
        "only one trace header is added:\n{prefix}"
    );
    assert!(
        prefix.contains(&format!("\twith {protocol} id ")),
        "expected protocol {protocol}:\n{prefix}"
    );
    assert!(prefix.contains("for <hello@d.country>;"), "{prefix}");
    assert!(!prefix.contains("u@dest.test"), "forward address leaked");
    prefix
}

const PYTHON_CLIENT: &str = r#"
import json, smtplib, ssl, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
message = open(path, "rb").read()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = {}
with smtplib.SMTP(host, port, local_hostname="python.test", timeout=10) as s:
    code, _ = s.ehlo()
    out["ehlo"] = code
    out["starttls_offered"] = s.has_extn("starttls")
    code, _ = s.starttls(context=ctx)
    out["starttls"] = code
    out["tls_version"] = s.sock.version()
    s.ehlo()
    out["starttls_after_tls"] = s.has_extn("starttls")
    out["smtputf8"] = s.has_extn("smtputf8")
    # One known and one unknown alias: the message goes to the known one
    # and sendmail reports the refused one.
    refused = s.sendmail("py@example.org", ["hello@d.country", "nobody@d.country"],
                         message, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
    # Only unknown recipients: nothing is sent, smtplib raises.
    try:
        s.sendmail("py@example.org", ["nobody@d.country"], message)
        out["all_refused"] = None
    except smtplib.SMTPRecipientsRefused as e:
        out["all_refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_with_starttls() {
    let (relay, sink) = relay_and_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    let original = "From: Py <py@example.org>\r\nTo: <hello@d.country>\r\n\
        Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <py1@python.test>\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\ncafé, naïve, 日本語\r\n.leading dot\r\n..two dots\r\nend\r\n"
        .as_bytes()
        .to_vec();
    std::fs::write(&path, &original).unwrap();

    let out = run(Command::new("python3")
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(relay.smtp.ip().to_string())
        .arg(relay.smtp.port().to_string())
        .arg(&path))
    .await;
    assert!(
        out.status.success(),
        "python smtplib client: {}",
        text(&out)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(result["ehlo"], 250, "{result}");
    assert_eq!(result["starttls_offered"], true, "{result}");
    assert_eq!(result["starttls"], 220, "{result}");
    assert_eq!(result["tls_version"], "TLSv1.3", "{result}");
    assert_eq!(
        result["starttls_after_tls"], false,
        "STARTTLS must not be offered again: {result}"
    );
    assert_eq!(result["smtputf8"], true, "{result}");
    let refused = &result["refused"]["nobody@d.country"];
    assert_eq!(refused[0], 550, "{result}");
    assert!(
        refused[1].as_str().unwrap().starts_with("5.1.1 "),
        "{result}"
    );
    assert_eq!(
        result["refused"].as_object().unwrap().len(),
        1,
        "hello@d.country was accepted: {result}"
    );
    assert_eq!(
        result["all_refused"]["nobody@d.country"][0], 550,
        "{result}"
    );

    let got = sink.wait_for(1, WAIT).await;
    let header = assert_forwarded(&got[0], "py@example.org", &original, "UTF8SMTPS");
    assert!(header.contains("(using TLSv1.3 with cipher "), "{header}");
    assert!(header.starts_with("Received: from python.test ([127.0.0.1])"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "the refused-only transaction sent nothing"
    );
    relay.stop().await;
}

/// The swaks binary, or a failure that says how to get it.
async fn swaks(tls: bool) -> Command {
    let support = Command::new("swaks").arg("--support").output().await;
    let Ok(support) = support else {
        panic!(
            "swaks is not installed: run scripts/test (it installs the Debian package swaks \
             and libnet-ssleay-perl for TLS), or apt-get install swaks libnet-ssleay-perl"
        );
    };
    let support = String::from_utf8_lossy(&support.stdout).into_owned()
        + &String::from_utf8_lossy(&support.stderr);
    if tls {
        assert!(
            support.contains("=== TLS supported"),
            "swaks has no TLS support (Net::SSLeay missing): run scripts/test, or \
             apt-get install libnet-ssleay-perl\n{support}"
        );
    }
    let mut cmd = Command::new("swaks");
    cmd.args(["--timeout", "10", "--helo", "swaks.test"]);
    cmd
}

/// A message file for swaks (dot lines, no %TOKENS%), and the bytes the
/// relay receives from it: swaks ends the data with CRLF . CRLF after the
/// file's content, so the file has no final line end of its own.
fn swaks_message(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, Vec<u8>) {
    let file = format!(
        "From: <sw@example.org>\r\nTo: <hello@d.country>\r\nSubject: swaks {n}\r\n\
         Message-ID: <swaks{n}@swaks.test>\r\n\r\nline one\r\n.leading dot\r\n.\r\nlast line"
    );
    let path = dir.join(format!("swaks{n}.eml"));
    std::fs::write(&path, &file).unwrap();
    (path, format!("{file}\r\n").into_bytes())
}

/// Sends one message with swaks and the given extra flags; returns the
/// transcript after checking the exit code.
async fn swaks_send(
    relay: &TestRelay,
    path: &std::path::Path,
    to: &str,
    extra: &[&str],
    expect_exit: i32,
) -> String {
    let tls = extra.contains(&"--tls");
    let out = run(swaks(tls)
        .await
        .args(["--server", &relay.smtp.to_string()])
        .args(["--from", "sw@example.org", "--to", to])
        .arg("--data")
        .arg(format!("@{}", path.display()))
        .args(extra))
    .await;
    let transcript = text(&out);
    assert_eq!(out.status.code(), Some(expect_exit), "swaks: {transcript}");
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_plain() {
    let (relay, sink) = relay_and_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, original) = swaks_message(dir.path(), 1);
    let t = swaks_send(&relay, &path, "hello@d.country", &[], 0).await;
    assert!(t.contains("<-  250 2.0.0 Ok: queued as "), "{t}");
    assert!(t.contains("<-  250 2.1.5 "), "{t}");
    assert!(t.contains("<-  221 2.0.0 "), "{t}");
    let got = sink.wait_for(1, WAIT).await;
    assert_forwarded(&got[0], "sw@example.org", &original, "ESMTP");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls() {
    let (relay, sink) = relay_and_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, original) = swaks_message(dir.path(), 2);
    let t = swaks_send(&relay, &path, "hello@d.country", &["--tls"], 0).await;
    assert!(t.contains("<-  220 2.0.0 Ready to start TLS"), "{t}");
    assert!(t.contains("=== TLS started with cipher TLSv1.3"), "{t}");
    // Everything after the handshake went over TLS (swaks marks it ~>).
    assert!(t.contains(" ~> MAIL FROM:<sw@example.org>"), "{t}");
    assert!(t.contains("<~  250 2.0.0 Ok: queued as "), "{t}");
    let got = sink.wait_for(1, WAIT).await;
    let header = assert_forwarded(&got[0], "sw@example.org", &original, "ESMTPS");
    assert!(header.contains("(using TLSv1.3 with cipher "), "{header}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelining_with_a_refused_recipient() {
    let (relay, sink) = relay_and_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, original) = swaks_message(dir.path(), 3);
    let t = swaks_send(
        &relay,
        &path,
        "hello@d.country,nobody@d.country",
        &["--pipeline"],
        0,
    )
    .await;
    // The whole envelope went out before the first reply came back.
    let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("no `{s}` in {t}"));
    assert!(
        pos(" -> DATA") < pos("<-  250 2.1.0 "),
        "not pipelined: {t}"
    );
    assert!(pos("<-  250 2.1.5 ") < pos("<** 550 5.1.1 "), "{t}");
    assert!(pos("<** 550 5.1.1 ") < pos("<-  354 "), "{t}");
    assert!(t.contains("<-  250 2.0.0 Ok: queued as "), "{t}");
    let got = sink.wait_for(1, WAIT).await;
    assert_forwarded(&got[0], "sw@example.org", &original, "ESMTP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_unknown_recipient_is_rejected() {
    let (relay, sink) = relay_and_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = swaks_message(dir.path(), 4);
    // swaks exits 24 when no recipient was accepted.
    let t = swaks_send(&relay, &path, "nobody@d.country", &[], 24).await;
    assert!(
        t.contains("<** 550 5.1.1 Error: recipient address rejected: user unknown"),
        "{t}"
    );
    assert!(
        !t.contains(" -> DATA"),
        "no data after the only recipient was refused: {t}"
    );
    // Not a relay either.
    let t = swaks_send(&relay, &path, "someone@elsewhere.example", &[], 24).await;
    assert!(t.contains("<** 550 5.7.1 "), "{t}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "nothing may be forwarded");
    assert_eq!(sink.connections(), 0);
    relay.stop().await;
}
