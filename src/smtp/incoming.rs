//! The message under way. DATA and BDAT content is normalized to CRLF as
//! it arrives; the header section (up to the first empty line) is kept in
//! memory, capped in size and field count; the body is streamed to a
//! private file in the spool's `incoming/` directory in writes of
//! [`CHUNK`] bytes, with the relaxed SHA-256 DKIM body hash (the one our
//! own signatures use) computed on the way. A session therefore holds at
//! most one write buffer of body, whatever the message size; the limits
//! are enforced while streaming, and the partial file is removed when the
//! transaction ends without the message being queued.

use crate::reply::Reply;
use crate::spool::{Body, CHUNK, IncomingFile, Spool};
use mail_auth::common::crypto::{HashContext, HashImpl, Sha256};
use mail_auth::dkim::Canonicalization;
use mail_auth::dkim::canonicalize::BodyHasher;
use memchr::{memchr_iter, memchr2, memmem};

type Sha256Context = <Sha256 as HashImpl>::Context;

/// The refusal of a message over the size limit (declared at MAIL, or
/// crossed in DATA or BDAT).
pub(crate) fn oversize_reply() -> Reply {
    Reply::new(
        552,
        [5, 3, 4],
        "Error: message size exceeds fixed maximum message size",
    )
}

/// The limits a message is held to while it arrives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Whole message, after CRLF normalization.
    pub(crate) max_size: u64,
    /// Header section, up to and including the empty line.
    pub(crate) max_header_size: u64,
    pub(crate) max_header_fields: usize,
}

/// Why a message cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooBig,
    HeaderTooLarge(u64),
    TooManyFields(usize),
    /// The incoming file could not be written (a local fault).
    Io,
}

impl Refusal {
    pub(crate) fn reply(self) -> Reply {
        match self {
            Refusal::TooBig => oversize_reply(),
            Refusal::HeaderTooLarge(max) => Reply::owned(
                552,
                [5, 3, 4],
                format!("Error: message header section exceeds the limit of {max} bytes"),
            ),
            Refusal::TooManyFields(max) => Reply::owned(
                554,
                [5, 6, 0],
                format!("Error: message has more than {max} header fields"),
            ),
            Refusal::Io => Reply::new(
                451,
                [4, 3, 0],
                "Error: temporary failure, message not queued",
            ),
        }
    }

    /// The metrics reason of the refusal.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::TooBig => "too_big",
            Refusal::HeaderTooLarge(_) | Refusal::TooManyFields(_) => "header",
            Refusal::Io => "queue_error",
        }
    }
}

/// A message that arrived whole and within the limits.
pub(crate) struct Arrived {
    /// The header section, ending with the empty line when there is one.
    pub(crate) header: Vec<u8>,
    pub(crate) body: Body,
    /// Relaxed/SHA-256 DKIM hash of `body` (no length limit).
    pub(crate) body_hash: Vec<u8>,
    pub(crate) eight_bit: bool,
}

/// Receives one message; see the module documentation.
pub(crate) struct Incoming {
    spool: Spool,
    limits: Limits,
    /// A CR ended the last input: whether it is bare depends on the next byte.
    cr: bool,
    header: Vec<u8>,
    in_body: bool,
    /// Body bytes not yet written to `file`.
    pending: Vec<u8>,
    file: Option<IncomingFile>,
    /// Bytes so far, normalized.
    size: u64,
    eight_bit: bool,
    hasher: BodyHasher<Sha256Context>,
    failed: Option<Refusal>,
}

impl Incoming {
    pub(crate) fn new(spool: Spool, limits: Limits) -> Incoming {
        Incoming {
            spool,
            limits,
            cr: false,
            header: Vec::new(),
            in_body: false,
            pending: Vec::new(),
            file: None,
            size: 0,
            eight_bit: false,
            hasher: BodyHasher::new(Sha256::hasher(), Canonicalization::Relaxed, 0),
            failed: None,
        }
    }

    /// Size so far (normalized).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The refusal, once a limit was crossed or a write failed; everything
    /// after it is discarded.
    pub(crate) fn failed(&self) -> Option<Refusal> {
        self.failed
    }

    /// Takes message bytes as received (after SMTP unstuffing). Bare CR and
    /// bare LF become CRLF, so the stored message is canonical (signatures
    /// and the next hop see the same bytes).
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.failed.is_some() || data.is_empty() {
            return;
        }
        let mut data = data;
        if self.cr {
            self.cr = false;
            if let Some(rest) = data.strip_prefix(b"\n") {
                data = rest;
            }
            self.emit(b"\r\n");
        }
        // Proper CRLFs pass through in long runs; only bare ones split them.
        let mut start = 0;
        let mut at = 0;
        while let Some(found) = data.get(at..).and_then(|rest| memchr2(b'\r', b'\n', rest)) {
            let pos = at + found;
            match (data.get(pos), data.get(pos + 1)) {
                (Some(b'\r'), Some(b'\n')) => at = pos + 2,
                (Some(b'\r'), None) => {
                    self.emit(data.get(start..pos).unwrap_or_default());
                    self.cr = true;
                    start = data.len();
                    at = data.len();
                }
                _ => {
                    self.emit(data.get(start..pos).unwrap_or_default());
                    self.emit(b"\r\n");
                    start = pos + 1;
                    at = pos + 1;
                }
            }
        }
        self.emit(data.get(start..).unwrap_or_default());
    }

    /// Appends normalized bytes to the header or the body.
    fn emit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.failed.is_some() {
            return;
        }
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.limits.max_size {
            self.fail(Refusal::TooBig);
            return;
        }
        if self.in_body {
            self.body(bytes);
            return;
        }
        // The empty line may straddle two calls: look 3 bytes back.
        let from = self.header.len().saturating_sub(3);
        self.header.extend_from_slice(bytes);
        let end = if self.header.starts_with(b"\r\n") {
            Some(2)
        } else {
            self.header
                .get(from..)
                .and_then(|tail| memmem::find(tail, b"\r\n\r\n"))
                .map(|p| from + p + 4)
        };
        let Some(end) = end else {
            if self.header.len() as u64 > self.limits.max_header_size {
                self.fail(Refusal::HeaderTooLarge(self.limits.max_header_size));
            }
            return;
        };
        let rest = self.header.split_off(end.min(self.header.len()));
        self.in_body = true;
        if !self.check_header() {
            return;
        }
        self.body(&rest);
    }

    /// The header section is complete: checks its limits.
    fn check_header(&mut self) -> bool {
        if self.header.len() as u64 > self.limits.max_header_size {
            self.fail(Refusal::HeaderTooLarge(self.limits.max_header_size));
            return false;
        }
        if field_count(&self.header) > self.limits.max_header_fields {
            self.fail(Refusal::TooManyFields(self.limits.max_header_fields));
            return false;
        }
        true
    }

    fn body(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.eight_bit = self.eight_bit || bytes.iter().any(|b| *b >= 0x80);
        self.hasher.write(bytes);
        self.pending.extend_from_slice(bytes);
    }

    /// Drops what arrived (the message is refused before its end).
    pub(crate) fn discard(&mut self) {
        self.fail(Refusal::TooBig);
    }

    fn fail(&mut self, refusal: Refusal) {
        self.failed = Some(refusal);
        self.header = Vec::new();
        self.pending = Vec::new();
        // Removes the partial file (a drop, on this thread: one unlink).
        self.file = None;
    }

    /// Writes the pending body out once a whole chunk is there.
    pub(crate) async fn spill(&mut self) {
        if self.failed.is_none() && self.pending.len() >= CHUNK {
            self.write_pending().await;
        }
    }

    async fn write_pending(&mut self) {
        let spool = self.spool.clone();
        let file = self.file.take();
        let mut pending = std::mem::take(&mut self.pending);
        let written = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(file) => file,
                None => spool.incoming()?,
            };
            file.append(&pending)?;
            pending.clear();
            Ok::<_, std::io::Error>((file, pending))
        })
        .await;
        match written {
            Ok(Ok((file, pending))) => {
                self.file = Some(file);
                self.pending = pending;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write an incoming message body");
                self.fail(Refusal::Io);
            }
            Err(_) => self.fail(Refusal::Io),
        }
    }

    /// The end of the message: the last bytes are written, and the message
    /// is handed over (or the refusal).
    pub(crate) async fn finish(mut self) -> Result<Arrived, Refusal> {
        if self.cr {
            self.cr = false;
            self.emit(b"\r\n");
        }
        if !self.in_body && self.failed.is_none() {
            // No empty line: the whole message is header.
            self.check_header();
        }
        if self.file.is_some() && !self.pending.is_empty() && self.failed.is_none() {
            self.write_pending().await;
        }
        if let Some(refusal) = self.failed {
            return Err(refusal);
        }
        let body = match self.file.take() {
            Some(file) => Body::File(file),
            None => Body::Memory(std::mem::take(&mut self.pending)),
        };
        let eight_bit = self.eight_bit || self.header.iter().any(|b| *b >= 0x80);
        let (hasher, _) = self.hasher.finish();
        Ok(Arrived {
            header: self.header,
            body,
            body_hash: hasher.complete().as_ref().to_vec(),
            eight_bit,
        })
    }
}

/// Header fields in a header section: lines that are not continuations
/// (nor the empty line).
fn field_count(header: &[u8]) -> usize {
    let starts = std::iter::once(0).chain(memchr_iter(b'\n', header).map(|p| p + 1));
    starts
        .filter(|&p| matches!(header.get(p), Some(b) if !matches!(b, b' ' | b'\t' | b'\r')))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::normalize_crlf;

    fn limits() -> Limits {
        Limits {
            max_size: 10 << 20,
            max_header_size: 4096,
            max_header_fields: 50,
        }
    }

    fn receive(spool: &Spool, parts: &[&[u8]], limits: Limits) -> Result<Vec<u8>, Refusal> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut incoming = Incoming::new(spool.clone(), limits);
            for part in parts {
                incoming.push(part);
                incoming.spill().await;
            }
            let arrived = incoming.finish().await?;
            let mut out = arrived.header.clone();
            let mut hasher = BodyHasher::new(Sha256::hasher(), Canonicalization::Relaxed, 0);
            arrived
                .body
                .for_each_chunk(|c| {
                    hasher.write(c);
                    out.extend_from_slice(c);
                })
                .unwrap();
            let (h, _) = hasher.finish();
            assert_eq!(h.complete().as_ref(), arrived.body_hash.as_slice());
            Ok(out)
        })
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        (dir, spool)
    }

    #[test]
    fn large_bodies_go_to_a_file_and_back_unchanged() {
        let (dir, spool) = spool();
        let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n";
        let mut msg = b"Subject: big\r\n\r\n".to_vec();
        while msg.len() < 3 * CHUNK + 17 {
            msg.extend_from_slice(line);
        }
        let parts: Vec<&[u8]> = msg.chunks(8192).collect();
        assert_eq!(receive(&spool, &parts, limits()).unwrap(), msg);
        let left = std::fs::read_dir(dir.path().join("incoming"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "the incoming file is gone once dropped");
    }

    #[test]
    fn header_limits_are_enforced_while_streaming() {
        let (_dir, spool) = spool();
        let big = [
            b"X-Pad: ".to_vec(),
            vec![b'a'; 5000],
            b"\r\n\r\nbody".to_vec(),
        ]
        .concat();
        assert_eq!(
            receive(&spool, &[&big], limits()),
            Err(Refusal::HeaderTooLarge(4096))
        );
        let no_blank_line = vec![b'a'; 5000];
        assert_eq!(
            receive(&spool, &[&no_blank_line], limits()),
            Err(Refusal::HeaderTooLarge(4096))
        );
        let many = "A: b\r\n".repeat(51) + "\r\nbody";
        assert_eq!(
            receive(&spool, &[many.as_bytes()], limits()),
            Err(Refusal::TooManyFields(50))
        );
        let folded = "A: b\r\n c\r\n".repeat(50) + "\r\nbody";
        assert!(receive(&spool, &[folded.as_bytes()], limits()).is_ok());
        let mut small = limits();
        small.max_size = 100;
        let long = [b"S: x\r\n\r\n".to_vec(), vec![b'b'; 200]].concat();
        assert_eq!(receive(&spool, &[&long], small), Err(Refusal::TooBig));
    }

    #[test]
    fn field_counting() {
        assert_eq!(field_count(b"A: 1\r\n\tx\r\nB: 2\r\n\r\n"), 2);
        assert_eq!(field_count(b""), 0);
        assert_eq!(field_count(b"\r\n"), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Streaming in any split gives what normalizing the whole does.
        #[test]
        fn streaming_normalizes_like_the_whole(
            msg in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'),
                proptest::prelude::Just(b'a'), proptest::prelude::any::<u8>()
            ], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let (_dir, spool) = spool();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= msg.len()).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut last = 0;
            for c in cuts {
                parts.push(&msg[last..c]);
                last = c;
            }
            parts.push(&msg[last..]);
            let mut roomy = limits();
            roomy.max_header_fields = 10_000;
            let out = receive(&spool, &parts, roomy).unwrap();
            proptest::prop_assert_eq!(out, normalize_crlf(msg.clone()));
        }
    }
}
