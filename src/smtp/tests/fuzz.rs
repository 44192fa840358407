//! Session tests: fuzzing.

use super::harness::*;
use super::pipelining::{PIPELINED_BDAT, PIPELINED_DATA};
use crate::config::ByteSize;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngSeed, TestRunner};

/// Deterministic runs: the same cases every time, unless
/// PROPTEST_CASES / PROPTEST_RNG_SEED ask for a longer or other run.
fn runner(cases: u32) -> TestRunner {
    let mut config = PropConfig {
        failure_persistence: None,
        ..PropConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x5e55_1011);
    }
    TestRunner::new(config)
}

fn fuzz_harness() -> Harness {
    Harness::with_tls(|c| {
        c.smtp.max_line_length = 512;
        c.smtp.max_message_size = ByteSize::new(2048);
        c.smtp.max_recipients = 3;
        c.smtp.max_errors = 8;
    })
}

const TOKENS: &[&str] = &[
    "EHLO x.test\r\n",
    "HELO x.test\r\n",
    "MAIL FROM:<a@b.test>\r\n",
    "MAIL FROM:<> SIZE=10 SMTPUTF8 BODY=8BITMIME\r\n",
    "RCPT TO:<hello@d.country>\r\n",
    "RCPT TO:<team+x@d.country>\r\n",
    "RCPT TO:<@x.test:u@evil.test>\r\n",
    "DATA\r\n",
    "BDAT 5\r\n",
    "BDAT 3 LAST\r\n",
    "BDAT 0 LAST\r\n",
    "BDAT 99999\r\n",
    "STARTTLS\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "VRFY x\r\n",
    "QUIT\r\n",
    ".\r\n",
    "..\r\n",
    "\r\n",
    "\n.\n",
    "\r\n.\r\n",
    "\r",
    "\n",
    ".",
];

/// The transcript is reply lines; after "220 2.0.0" to STARTTLS only
/// the TLS handshake speaks (a record: alert or handshake).
fn check(out: &[u8]) -> Result<(), TestCaseError> {
    const READY: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
    let (plain, tls) = match memchr::memmem::find(out, READY) {
        Some(at) => out.split_at(at + READY.len()),
        None => (out, &[][..]),
    };
    check_reply_lines(plain).map_err(TestCaseError::fail)?;
    prop_assert!(
        tls.is_empty() || matches!(tls[0], 0x15 | 0x16),
        "plaintext after STARTTLS: {:?}",
        String::from_utf8_lossy(tls)
    );
    Ok(())
}

#[test]
fn arbitrary_bytes_never_break_the_session() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = fuzz_harness();
    let input = (
        prop::collection::vec(any::<u8>(), 0..1500),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    );
    runner(256)
        .run(&input, |(bytes, splits)| {
            let chunks = split_at(&bytes, &splits);
            let out = rt.block_on(h.script(chunks));
            check(&out)
        })
        .unwrap();
}

#[test]
fn pipelined_transactions_mixed_with_garbage() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = fuzz_harness();
    let garbage = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..40),
        prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
    ];
    let input = (
        prop::sample::select(vec![PIPELINED_DATA, PIPELINED_BDAT]),
        prop::collection::vec((any::<prop::sample::Index>(), garbage), 0..6),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    );
    runner(256)
        .run(&input, |(script, inserts, splits)| {
            let mut bytes = script.to_vec();
            for (at, junk) in inserts {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, junk);
            }
            let chunks = split_at(&bytes, &splits);
            let out = rt.block_on(h.script(chunks));
            check(&out)
        })
        .unwrap();
}

/// Well-formed transactions split anywhere, several times, always give
/// the same answers.
#[test]
fn pipelined_transactions_split_anywhere() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = Harness::new(|_| {});
    let whole_data = normalize_ids(
        &String::from_utf8(rt.block_on(h.script([PIPELINED_DATA.to_vec()]))).unwrap(),
    );
    let whole_bdat = normalize_ids(
        &String::from_utf8(rt.block_on(h.script([PIPELINED_BDAT.to_vec()]))).unwrap(),
    );
    let input = (
        any::<bool>(),
        prop::collection::vec(any::<prop::sample::Index>(), 1..12),
    );
    runner(64)
        .run(&input, |(bdat, splits)| {
            let (script, whole) = if bdat {
                (PIPELINED_BDAT, &whole_bdat)
            } else {
                (PIPELINED_DATA, &whole_data)
            };
            let out = rt.block_on(h.script(split_at(script, &splits)));
            let text = normalize_ids(&String::from_utf8(out).unwrap());
            prop_assert_eq!(&text, whole);
            Ok(())
        })
        .unwrap();
}

#[test]
fn request_parser_never_panics() {
    let tokens: Vec<Vec<u8>> = TOKENS
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .chain(
            [
                "MAIL",
                "RCPT",
                "FROM:",
                "TO:",
                "<",
                ">",
                "@",
                "\"",
                "\\",
                ":",
                ",",
                " ",
                "SIZE=",
                "BODY=",
                "NOTIFY=",
                "ORCPT=",
                "rfc822;",
                "BDAT",
                "LAST",
                "AUTH",
                "99999999999999999999999",
                "0",
                "=",
                "[",
                "]",
                "%",
                "!",
                "\u{fc}",
            ]
            .iter()
            .map(|t| t.as_bytes().to_vec()),
        )
        .collect();
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(prop::sample::select(tokens), 0..16).prop_map(|t| t.concat()),
    ];
    let input = (line, any::<bool>());
    runner(4096)
        .run(&input, |(mut line, lf)| {
            if lf {
                line.extend_from_slice(b"\r\n");
            }
            let _ = smtp_proto::Request::parse(&mut line.iter());
            Ok(())
        })
        .unwrap();
}

/// Splits `bytes` at the given positions (sorted, deduplicated).
fn split_at(bytes: &[u8], at: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts {
        chunks.push(bytes[from..cut].to_vec());
        from = cut;
    }
    chunks.push(bytes[from..].to_vec());
    chunks
}
