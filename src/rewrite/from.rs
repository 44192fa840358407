//! From rewriting for DMARC-strict senders: replace the one From mailbox
//! with the relay's address (keeping the display name), keep the original in
//! Reply-To (when the message has none) and in `rewrite.original_from_header`.
//! Every other header field and the body stay byte for byte as they were.

use crate::config::Config;
use crate::rewrite::sign::{Field, header_fields};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

/// Display names longer than this (or not ASCII) are written as RFC 2047
/// encoded words, which fold; shorter ASCII ones as a quoted string.
const MAX_QUOTED_NAME: usize = 200;
/// Bytes of UTF-8 per encoded word: `=?utf-8?b?` + 60 base64 chars + `?=`
/// stays within the 75 characters RFC 2047 §2 allows.
const ENCODED_WORD_BYTES: usize = 45;

/// Why a message's From is left alone (it is then forwarded as it came).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrewritable {
    #[error("the message has no From header field")]
    NoFrom,
    #[error("the message has {0} From header fields (RFC 5322 allows one)")]
    Several(usize),
    #[error("From is a group, not a mailbox: {0:?}")]
    Group(String),
    #[error("From names {0} mailboxes")]
    Mailboxes(usize),
    #[error("From has no usable address: {0:?}")]
    Unparsable(String),
}

/// The configured rewrite.
#[derive(Debug, Clone)]
pub struct FromRewrite {
    address: String,
    /// None when the configured name is not a usable field name.
    original_header: Option<String>,
}

impl FromRewrite {
    pub fn new(config: &Config) -> FromRewrite {
        let address = if config.rewrite.from_address.is_empty() {
            format!("forwarder@{}", config.dkim_domain())
        } else {
            config.rewrite.from_address.clone()
        };
        let name = config.rewrite.original_from_header.trim();
        let valid = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if !valid && !name.is_empty() {
            tracing::warn!(
                header = name,
                "rewrite.original_from_header is not a header field name: the original From \
                 is kept in Reply-To only"
            );
        }
        FromRewrite {
            address,
            original_header: valid.then(|| name.to_string()),
        }
    }

    /// The address that replaces the sender's.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The message with From rewritten, or why it was left alone.
    pub fn rewrite(&self, message: &[u8]) -> Result<Vec<u8>, Unrewritable> {
        let (fields, _) = header_fields(message);
        let mut froms = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(b"from"));
        let from: &Field<'_> = match (froms.next(), froms.count()) {
            (None, _) => return Err(Unrewritable::NoFrom),
            (Some(from), 0) => from,
            (Some(_), more) => return Err(Unrewritable::Several(more + 1)),
        };
        let has_reply_to = fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(b"reply-to"));
        let shown = || {
            let text = String::from_utf8_lossy(from.value);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            text.chars().take(200).collect::<String>()
        };
        let (name, address) = match MessageStream::new(from.value).parse_address() {
            HeaderValue::Address(Address::List(list)) => match list.as_slice() {
                [one] => (one.name.clone(), one.address.clone()),
                [] => return Err(Unrewritable::Unparsable(shown())),
                more => return Err(Unrewritable::Mailboxes(more.len())),
            },
            HeaderValue::Address(Address::Group(_)) => return Err(Unrewritable::Group(shown())),
            _ => return Err(Unrewritable::Unparsable(shown())),
        };
        let address = address
            .map(|a| a.trim().to_string())
            .filter(|a| is_address(a))
            .ok_or_else(|| Unrewritable::Unparsable(shown()))?;
        let display = name
            .map(|n| clean(&n))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| clean(&address));

        let mut original = from.value.to_vec();
        if !original.ends_with(b"\n") {
            original.extend_from_slice(b"\r\n");
        }
        let mut added = Vec::with_capacity(3 * original.len() + 128);
        let phrase = phrase(&display);
        added.extend_from_slice(b"From: ");
        added.extend_from_slice(phrase.as_bytes());
        // Fold before the address when the line would pass 78 characters.
        let last_line = phrase.rsplit("\r\n").next().unwrap_or("").len();
        let first = if phrase.contains('\n') {
            0
        } else {
            "From: ".len()
        };
        if first + last_line + self.address.len() + 3 > 78 {
            added.extend_from_slice(b"\r\n");
        }
        added.extend_from_slice(b" <");
        added.extend_from_slice(self.address.as_bytes());
        added.extend_from_slice(b">\r\n");
        if !has_reply_to {
            added.extend_from_slice(b"Reply-To:");
            added.extend_from_slice(&original);
        }
        if let Some(header) = &self.original_header {
            added.extend_from_slice(header.as_bytes());
            added.push(b':');
            added.extend_from_slice(&original);
        }
        let mut out = Vec::with_capacity(message.len() + added.len());
        out.extend_from_slice(&message[..from.start]);
        out.extend_from_slice(&added);
        out.extend_from_slice(&message[from.end..]);
        Ok(out)
    }
}

/// local@domain with nothing that could break out of the header.
fn is_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !a
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Control characters (CR, LF, ...) become spaces, runs of spaces one: a
/// decoded encoded word must not smuggle a header line break.
fn clean(name: &str) -> String {
    name.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A display name as an RFC 5322 phrase: a quoted string for short ASCII
/// names, else RFC 2047 `=?utf-8?b?...?=` words folded onto lines of their own.
fn phrase(name: &str) -> String {
    if name.is_ascii() && name.len() <= MAX_QUOTED_NAME {
        let mut out = String::with_capacity(name.len() + 2);
        out.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return out;
    }
    let mut words = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let mut cut = rest.len().min(ENCODED_WORD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        words.push(format!("=?utf-8?b?{}?=", BASE64.encode(chunk)));
        rest = tail;
    }
    words.join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> FromRewrite {
        let mut config = Config {
            hostname: "relay.test".into(),
            ..Config::default()
        };
        config.dkim.domain = "mail.relay.test".into();
        FromRewrite::new(&config)
    }

    fn rewrite(msg: &str) -> Result<String, Unrewritable> {
        rewriter()
            .rewrite(msg.as_bytes())
            .map(|m| String::from_utf8(m).unwrap())
    }

    /// The display name and address mail-parser reads back from a From value.
    fn parsed_from(msg: &str) -> (Option<String>, String) {
        let (fields, _) = header_fields(msg.as_bytes());
        let froms: Vec<_> = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(b"from"))
            .collect();
        assert_eq!(froms.len(), 1, "{msg}");
        match MessageStream::new(froms[0].value).parse_address() {
            HeaderValue::Address(Address::List(list)) => {
                assert_eq!(list.len(), 1);
                (
                    list[0].name.as_ref().map(|n| n.to_string()),
                    list[0].address.as_ref().unwrap().to_string(),
                )
            }
            other => panic!("From does not parse: {other:?}"),
        }
    }

    const BODY: &str = "\r\nHello\r\nFrom: not a header\r\n";

    #[test]
    fn plain_display_name() {
        let msg = format!(
            "Received: by relay\r\nFrom: Alice Smith <alice@strict.example>\r\nTo: bob@d.country\r\nSubject: Hi\r\n{BODY}"
        );
        let out = rewrite(&msg).unwrap();
        assert_eq!(
            out,
            format!(
                "Received: by relay\r\nFrom: \"Alice Smith\" <forwarder@mail.relay.test>\r\n\
                 Reply-To: Alice Smith <alice@strict.example>\r\n\
                 X-Original-From: Alice Smith <alice@strict.example>\r\n\
                 To: bob@d.country\r\nSubject: Hi\r\n{BODY}"
            )
        );
        assert_eq!(
            parsed_from(&out),
            (
                Some("Alice Smith".into()),
                "forwarder@mail.relay.test".into()
            )
        );
    }

    #[test]
    fn folded_quoted_display_name() {
        let msg = format!(
            "Subject: x\r\nfrom: \"Smith,\r\n\tAlice \\\"Al\\\"\"\r\n <alice@strict.example>\r\n{BODY}"
        );
        let out = rewrite(&msg).unwrap();
        let (name, address) = parsed_from(&out);
        assert_eq!(address, "forwarder@mail.relay.test");
        assert_eq!(name.as_deref(), Some("Smith, Alice \"Al\""));
        // The originals are kept verbatim, folding included.
        assert!(
            out.contains(
                "Reply-To: \"Smith,\r\n\tAlice \\\"Al\\\"\"\r\n <alice@strict.example>\r\n"
            )
        );
        assert!(out.contains(
            "X-Original-From: \"Smith,\r\n\tAlice \\\"Al\\\"\"\r\n <alice@strict.example>\r\n"
        ));
        assert!(out.starts_with("Subject: x\r\nFrom: "));
        assert!(out.ends_with(BODY));
    }

    #[test]
    fn encoded_word_display_name_is_kept() {
        let msg =
            format!("From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@strict.example>\r\n{BODY}");
        let out = rewrite(&msg).unwrap();
        let (name, address) = parsed_from(&out);
        assert_eq!(name.as_deref(), Some("Jörg Müller"));
        assert_eq!(address, "forwarder@mail.relay.test");
        assert!(out.is_ascii(), "non-ASCII name must be encoded: {out}");
        // A long non-ASCII name folds into several encoded words.
        let long = "Ünïcödé ".repeat(30);
        let msg = format!(
            "From: =?utf-8?b?{}?= <u@strict.example>\r\n{BODY}",
            BASE64.encode(long.trim())
        );
        let out = rewrite(&msg).unwrap();
        let (name, _) = parsed_from(&out);
        assert_eq!(name.as_deref(), Some(long.trim()));
        let (fields, _) = header_fields(out.as_bytes());
        let from = &fields[0];
        assert!(from.value.windows(3).filter(|w| w == b"\r\n ").count() >= 5);
        let ours = &out[from.start..from.end];
        assert!(ours.lines().all(|l| l.len() <= 78), "{ours}");
    }

    #[test]
    fn no_display_name_uses_the_address() {
        for value in ["alice@strict.example", "<alice@strict.example>"] {
            let out = rewrite(&format!("From: {value}\r\n{BODY}")).unwrap();
            let (name, address) = parsed_from(&out);
            assert_eq!(name.as_deref(), Some("alice@strict.example"), "{value}");
            assert_eq!(address, "forwarder@mail.relay.test");
            assert!(out.contains(&format!("Reply-To: {value}\r\n")));
        }
    }

    #[test]
    fn existing_reply_to_is_left_alone() {
        let msg = format!(
            "From: Alice <alice@strict.example>\r\nReply-To: list@strict.example\r\n{BODY}"
        );
        let out = rewrite(&msg).unwrap();
        assert_eq!(out.matches("Reply-To:").count(), 1);
        assert!(out.contains("Reply-To: list@strict.example\r\n"));
        assert!(out.contains("X-Original-From: Alice <alice@strict.example>\r\n"));
    }

    #[test]
    fn refuses_what_it_cannot_rewrite_safely() {
        let cases = [
            (format!("Subject: x\r\n{BODY}"), Unrewritable::NoFrom),
            (
                format!("From: a@strict.example\r\nFROM: b@strict.example\r\n{BODY}"),
                Unrewritable::Several(2),
            ),
            (
                format!("From: a@strict.example, b@strict.example\r\n{BODY}"),
                Unrewritable::Mailboxes(2),
            ),
        ];
        for (msg, expected) in cases {
            assert_eq!(rewrite(&msg).unwrap_err(), expected, "{msg}");
        }
        for value in [
            "Friends: a@strict.example, b@strict.example;",
            "just some text",
            "",
            "<>",
        ] {
            let err = rewrite(&format!("From: {value}\r\n{BODY}")).unwrap_err();
            assert!(
                matches!(err, Unrewritable::Group(_) | Unrewritable::Unparsable(_)),
                "{value}: {err:?}"
            );
        }
    }

    #[test]
    fn a_decoded_line_break_cannot_inject_a_header() {
        let evil = BASE64.encode("Eve\r\nBcc: victim@example.org");
        let out = rewrite(&format!(
            "From: =?utf-8?b?{evil}?= <eve@strict.example>\r\n{BODY}"
        ))
        .unwrap();
        let (fields, _) = header_fields(out.as_bytes());
        assert!(!fields.iter().any(|f| f.name.eq_ignore_ascii_case(b"bcc")));
        assert!(out.starts_with("From: \"Eve Bcc: victim@example.org\" <forwarder@"));
    }

    #[test]
    fn configured_address_and_header() {
        let mut config = Config::default();
        config.rewrite.from_address = "noreply@relay.test".into();
        config.rewrite.original_from_header = "X-Forwarded-For-From".into();
        let out = FromRewrite::new(&config)
            .rewrite(format!("From: A <a@strict.example>\r\n{BODY}").as_bytes())
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("From: \"A\" <noreply@relay.test>\r\n"));
        assert!(out.contains("X-Forwarded-For-From: A <a@strict.example>\r\n"));
    }
}
