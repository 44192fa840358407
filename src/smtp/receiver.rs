//! The framing of message bytes in DATA and BDAT: where a DATA body ends
//! (CRLF "." CRLF, and only there) with its dot-stuffing undone, and the
//! chunk size a BDAT line declares. Pure byte work: the session feeds it
//! and decides what the bytes mean.

use memchr::memchr;

/// Receives a DATA body (RFC 5321 §4.5.2): takes the leading dot off
/// dot-stuffed lines and ends at CRLF "." CRLF, and only there. A dot line
/// after a bare LF or a bare CR, or followed by anything but CRLF (e.g.
/// ".\r\r\n"), is content: ending data on anything another MTA would
/// not is what SMTP smuggling exploits. smtp-proto's receiver ends on
/// CRLF "." CR+ LF, hence this one. The body starts at the beginning of a
/// line, so "." or ".." on the very first line is handled like any other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataReceiver {
    state: DataState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// After CRLF (or at the start of the body).
    LineStart,
    /// After CRLF "." (the dot is dropped).
    Dot,
    /// After CRLF "." CR; the CR is held back until the next byte.
    DotCr,
    InLine,
    /// After a CR inside a line.
    Cr,
}

impl DataReceiver {
    pub(crate) fn new() -> DataReceiver {
        DataReceiver {
            state: DataState::LineStart,
        }
    }

    /// Consumes `bytes` up to and including the end-of-data line, appending
    /// the content to `body` (None: discard it). Returns true at the end of
    /// data, with `bytes` advanced past it.
    pub(crate) fn ingest(&mut self, bytes: &mut &[u8], mut body: Option<&mut Vec<u8>>) -> bool {
        fn put(body: &mut Option<&mut Vec<u8>>, data: &[u8]) {
            if let Some(body) = body {
                body.extend_from_slice(data);
            }
        }
        let input = *bytes;
        let mut i = 0;
        while i < input.len() {
            let ch = input[i];
            match self.state {
                DataState::InLine => match memchr(b'\r', &input[i..]) {
                    Some(at) => {
                        put(&mut body, &input[i..=i + at]);
                        i += at + 1;
                        self.state = DataState::Cr;
                    }
                    None => {
                        put(&mut body, &input[i..]);
                        i = input.len();
                    }
                },
                DataState::Cr => {
                    put(&mut body, &[ch]);
                    i += 1;
                    self.state = match ch {
                        b'\n' => DataState::LineStart,
                        b'\r' => DataState::Cr,
                        _ => DataState::InLine,
                    };
                }
                DataState::LineStart => {
                    i += 1;
                    self.state = match ch {
                        b'.' => DataState::Dot,
                        b'\r' => DataState::Cr,
                        _ => DataState::InLine,
                    };
                    if ch != b'.' {
                        put(&mut body, &[ch]);
                    }
                }
                DataState::Dot => {
                    i += 1;
                    if ch == b'\r' {
                        self.state = DataState::DotCr;
                    } else {
                        put(&mut body, &[ch]);
                        self.state = DataState::InLine;
                    }
                }
                DataState::DotCr => {
                    if ch == b'\n' {
                        *bytes = &input[i + 1..];
                        self.state = DataState::LineStart;
                        return true;
                    }
                    // A CR inside the line after all; `ch` is read again.
                    put(&mut body, b"\r");
                    self.state = DataState::Cr;
                }
            }
        }
        *bytes = &[];
        false
    }
}

/// The chunk size of a `BDAT` line as written, saturating (None when it is
/// not a number).
pub(super) fn declared_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty() && !w.eq_ignore_ascii_case(b"BDAT"))?;
    digits.iter().all(u8::is_ascii_digit).then(|| {
        digits.iter().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(chunks: &[&[u8]]) -> Option<Vec<u8>> {
        let mut r = DataReceiver::new();
        let mut body = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            if r.ingest(&mut rest, Some(&mut body)) {
                return Some(body);
            }
            assert!(rest.is_empty());
        }
        None
    }

    #[test]
    fn first_line_dot_handling() {
        assert_eq!(receive(&[b".\r\n"]), Some(vec![]));
        assert_eq!(receive(&[b"..x\r\n.\r\n"]), Some(b".x\r\n".to_vec()));
        assert_eq!(
            receive(&[b"a\r\n..b\r\n.", b"\r\n"]),
            Some(b"a\r\n.b\r\n".to_vec())
        );
        assert_eq!(
            receive(&[b"a\n.\nb\r\n"]),
            None,
            "bare LF dot does not end data"
        );
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        for (input, body) in [
            (&b"a\r\n.\r\r\nb\r\n.\r\n"[..], &b"a\r\n\r\r\nb\r\n"[..]),
            (b"a\n.\r\n.\r\n", b"a\n.\r\n"),
            (b"a\r.\r\n.\r\n", b"a\r.\r\n"),
            (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n"),
            (b"a\r\n.\rx\r\n.\r\n", b"a\r\n\rx\r\n"),
            (b"\r\r\n.\r\n", b"\r\r\n"),
        ] {
            // whole, and split at every byte
            assert_eq!(receive(&[input]), Some(body.to_vec()), "{input:?}");
            for at in 0..input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(receive(&[a, b]), Some(body.to_vec()), "{input:?} at {at}");
            }
        }
    }

    #[test]
    fn the_rest_after_the_end_is_left() {
        let mut r = DataReceiver::new();
        let mut rest: &[u8] = b"x\r\n.\r\nQUIT\r\n";
        assert!(r.ingest(&mut rest, None));
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn chunk_sizes_are_read_as_written() {
        assert_eq!(declared_chunk_size(b"BDAT 42 LAST\r\n"), Some(42));
        assert_eq!(declared_chunk_size(b"bdat 0\r\n"), Some(0));
        assert_eq!(
            declared_chunk_size(b"BDAT 100000000000000000000005\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(declared_chunk_size(b"BDAT x\r\n"), None);
    }
}
