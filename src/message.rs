//! Just enough RFC 5322 to relay a message without parsing its MIME tree:
//! iterate top-level header fields, read one field, count trace headers,
//! and normalize line endings to CRLF. Safe on hostile input (linear time,
//! no allocation proportional to header count).

use memchr::memchr;

/// Longest header value returned by [`header_value`] (RFC 5322 line limit).
const MAX_VALUE: usize = 998;

/// Iterates `(name, raw value)` of the top-level header fields. The raw
/// value keeps folding whitespace and line endings. Stops at the empty line
/// that ends the header, or at the first line that is neither a field nor a
/// continuation (such a message has no more header).
pub fn header_fields(msg: &[u8]) -> HeaderFields<'_> {
    HeaderFields { msg, pos: 0 }
}

pub struct HeaderFields<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for HeaderFields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.msg[self.pos..];
        let first_end = line_end(rest);
        let first = &rest[..first_end];
        let trimmed = trim_eol(first);
        if trimmed.is_empty() || trimmed[0] == b' ' || trimmed[0] == b'\t' {
            return None;
        }
        let colon = memchr(b':', trimmed)?;
        let name = &trimmed[..colon];
        if name.is_empty() || name.iter().any(|b| !(33..=126).contains(b)) {
            return None;
        }
        let mut end = first_end;
        while end < rest.len() && (rest[end] == b' ' || rest[end] == b'\t') {
            end += line_end(&rest[end..]);
        }
        self.pos += end;
        Some((name, &rest[colon + 1..end]))
    }
}

/// Length of the line at the start of `s`, including its LF (or all of `s`).
fn line_end(s: &[u8]) -> usize {
    memchr(b'\n', s).map(|p| p + 1).unwrap_or(s.len())
}

fn trim_eol(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Byte offset where the body starts (after the blank line), or the
/// message length when there is no body.
pub fn header_len(msg: &[u8]) -> usize {
    let mut pos = 0;
    let mut fields = header_fields(msg);
    while fields.next().is_some() {
        pos = fields.pos;
    }
    let rest = &msg[pos..];
    if rest.starts_with(b"\r\n") {
        pos + 2
    } else if rest.starts_with(b"\n") {
        pos + 1
    } else {
        pos
    }
}

/// Unfolded, trimmed value of the first field named `name` (case-insensitive),
/// lossily decoded and capped at 998 bytes.
pub fn header_value(msg: &[u8], name: &str) -> Option<String> {
    let (_, raw) = header_fields(msg).find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))?;
    let mut out = Vec::with_capacity(raw.len().min(MAX_VALUE));
    for &b in raw {
        if out.len() >= MAX_VALUE {
            break;
        }
        match b {
            b'\r' | b'\n' => {}
            b'\t' => out.push(b' '),
            _ => out.push(b),
        }
    }
    let text = String::from_utf8_lossy(&out);
    Some(text.trim().to_string())
}

/// Number of `Received:` fields in the header (mail loop detection).
pub fn count_received(msg: &[u8]) -> usize {
    header_fields(msg)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"received"))
        .count()
}

/// Rewrites bare LF and bare CR as CRLF so the stored message is canonical
/// (signatures and the next hop see the same bytes). Returns the input
/// unchanged when it has none. The whole-message model that the streaming
/// normalizer of `smtp/incoming.rs` is tested against.
#[cfg(test)]
pub(crate) fn normalize_crlf(msg: Vec<u8>) -> Vec<u8> {
    let needs = msg.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || msg[i - 1] != b'\r',
        b'\r' => msg.get(i + 1) != Some(&b'\n'),
        _ => false,
    });
    if !needs {
        return msg;
    }
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 32);
    let mut i = 0;
    while i < msg.len() {
        match msg[i] {
            b'\r' if msg.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// True when any byte has the high bit set (needs 8BITMIME downstream).
pub fn has_8bit(msg: &[u8]) -> bool {
    msg.iter().any(|b| *b >= 0x80)
}

/// An RFC 5322 date-time for headers, in UTC.
pub fn rfc2822_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 1 Jan 1970 00:00:00 +0000".into())
}

/// Removes CR, LF and other control characters from text that goes into a
/// header we write (client-supplied HELO names, reply texts).
pub fn sanitize_header_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from a\r\n\tby b; x\r\nSubject: Hello\r\n  world\r\nreceived: c\r\nMessage-ID: <1@x>\r\n\r\nReceived: not a header\r\n";

    #[test]
    fn fields_unfold_and_stop_at_body() {
        let names: Vec<&[u8]> = header_fields(MSG).map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![&b"Received"[..], b"Subject", b"received", b"Message-ID"]
        );
        assert_eq!(header_value(MSG, "subject").unwrap(), "Hello  world");
        assert_eq!(header_value(MSG, "message-id").unwrap(), "<1@x>");
        assert_eq!(count_received(MSG), 2);
        assert_eq!(&MSG[header_len(MSG)..], b"Received: not a header\r\n");
    }

    #[test]
    fn hostile_headers_do_not_panic() {
        for msg in [
            &b""[..],
            b":",
            b" leading space\r\n",
            b"NoColon\r\n\r\n",
            b"A:\r\n",
            b"A: b",
            b"\r\n\r\n",
            b"A\x00B: c\r\n",
        ] {
            let _ = header_fields(msg).count();
            let _ = header_len(msg);
            let _ = header_value(msg, "a");
        }
        assert_eq!(header_value(b"A: b", "a").unwrap(), "b");
        let long = [b"Subject: ".to_vec(), vec![b'x'; 5000]].concat();
        assert_eq!(header_value(&long, "subject").unwrap().len(), 998 - 1);
    }

    #[test]
    fn crlf_normalization() {
        assert_eq!(
            normalize_crlf(b"a\nb\r\nc\rd\n".to_vec()),
            b"a\r\nb\r\nc\r\nd\r\n"
        );
        let clean = b"a\r\nb\r\n".to_vec();
        assert_eq!(normalize_crlf(clean.clone()), clean);
        assert_eq!(normalize_crlf(b"\n".to_vec()), b"\r\n");
        assert_eq!(normalize_crlf(b"x\r".to_vec()), b"x\r\n");
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_header_text("evil\r\nBcc: x"), "evil  Bcc: x");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Fuzz: any bytes; the scanners never panic and stay in bounds.
        #[test]
        fn header_scanning_is_total(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let len = header_len(&msg);
            proptest::prop_assert!(len <= msg.len());
            for (name, value) in header_fields(&msg) {
                proptest::prop_assert!(!name.is_empty());
                proptest::prop_assert!(value.len() <= msg.len());
            }
            let _ = header_value(&msg, "subject");
            proptest::prop_assert!(count_received(&msg) <= msg.len());
        }

        /// CRLF normalization leaves no bare CR or LF and keeps every other byte.
        #[test]
        fn crlf_normalization_is_canonical(msg in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'), proptest::prelude::Just(b'a'), proptest::prelude::any::<u8>()
        ], 0..300)) {
            let out = normalize_crlf(msg.clone());
            for (i, &b) in out.iter().enumerate() {
                if b == b'\n' { proptest::prop_assert!(i > 0 && out[i - 1] == b'\r'); }
                if b == b'\r' { proptest::prop_assert_eq!(out.get(i + 1), Some(&b'\n')); }
            }
            let strip = |v: &[u8]| v.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect::<Vec<u8>>();
            proptest::prop_assert_eq!(strip(&out), strip(&msg));
            proptest::prop_assert_eq!(normalize_crlf(out.clone()), out);
        }
    }
}
