//! Line endings of message content. RFC 5321 §2.3.8 allows CR and LF in
//! DATA only together, as CRLF. A bare CR or bare LF is where SMTP
//! smuggling (CVE-2023-51764 and kin) hides its second message: this relay
//! only ends data at CRLF "." CRLF, but a `\n.\r\n` or `\r.\r\n` it passed
//! on could end the transaction early at a destination, or at whatever
//! reads the message later, with the rest read as commands. So a message
//! with a bare CR or LF is refused whole, before it is queued.
//!
//! [`LineEndings`] checks content as it streams in, chunk by chunk (a CRLF
//! may be split between two chunks); [`check`] is the one-piece form.

use memchr::memchr2_iter;

/// The first line ending that is not CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BareLineEnding {
    #[error("a bare CR (not followed by LF)")]
    Cr,
    #[error("a bare LF (not preceded by CR)")]
    Lf,
}

/// A streaming check that every CR and LF comes as CRLF.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineEndings {
    /// The last byte seen was a CR: the next one must be LF.
    pending_cr: bool,
    offence: Option<BareLineEnding>,
}

impl LineEndings {
    pub fn new() -> LineEndings {
        LineEndings::default()
    }

    /// Looks at the next piece of content.
    pub fn scan(&mut self, chunk: &[u8]) {
        if self.offence.is_some() || chunk.is_empty() {
            return;
        }
        // Where an LF must be, after a CR (at 0: the CR ended the last chunk).
        let mut lf_at = self.pending_cr.then_some(0);
        for i in memchr2_iter(b'\r', b'\n', chunk) {
            if let Some(at) = lf_at.take() {
                if i == at && chunk[i] == b'\n' {
                    continue;
                }
                self.offence = Some(BareLineEnding::Cr);
                return;
            }
            if chunk[i] == b'\n' {
                self.offence = Some(BareLineEnding::Lf);
                return;
            }
            lf_at = Some(i + 1);
        }
        self.pending_cr = match lf_at {
            // The byte after the CR is neither CR nor LF.
            Some(at) if at < chunk.len() => {
                self.offence = Some(BareLineEnding::Cr);
                false
            }
            Some(_) => true,
            None => false,
        };
    }

    /// The verdict once all content was scanned (a final CR is bare).
    pub fn finish(&self) -> Result<(), BareLineEnding> {
        match self.offence {
            Some(offence) => Err(offence),
            None if self.pending_cr => Err(BareLineEnding::Cr),
            None => Ok(()),
        }
    }
}

/// Checks a whole message.
pub fn check(content: &[u8]) -> Result<(), BareLineEnding> {
    let mut endings = LineEndings::new();
    endings.scan(content);
    endings.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, byte by byte.
    fn reference(content: &[u8]) -> Result<(), BareLineEnding> {
        for (i, &b) in content.iter().enumerate() {
            match b {
                b'\r' if content.get(i + 1) != Some(&b'\n') => return Err(BareLineEnding::Cr),
                b'\n' if i == 0 || content[i - 1] != b'\r' => return Err(BareLineEnding::Lf),
                _ => {}
            }
        }
        Ok(())
    }

    #[test]
    fn only_crlf_passes() {
        assert_eq!(check(b""), Ok(()));
        assert_eq!(check(b"a\r\nb\r\n\r\n"), Ok(()));
        for (content, offence) in [
            (&b"a\n.\r\nMAIL FROM:<x@y>\r\n"[..], BareLineEnding::Lf),
            (b"a\r.\r\nMAIL FROM:<x@y>\r\n", BareLineEnding::Cr),
            (b"a\r\n.\nMAIL FROM:<x@y>\r\n", BareLineEnding::Lf),
            (b"a\r\n\r\r\n", BareLineEnding::Cr),
            (b"\n", BareLineEnding::Lf),
            (b"a\r", BareLineEnding::Cr),
        ] {
            assert_eq!(check(content), Err(offence), "{content:?}");
        }
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_ending() {
        let mut endings = LineEndings::new();
        endings.scan(b"a\r");
        endings.scan(b"\nb\r");
        endings.scan(b"");
        endings.scan(b"\n");
        assert_eq!(endings.finish(), Ok(()));
        let mut endings = LineEndings::new();
        endings.scan(b"a\r");
        endings.scan(b"b");
        assert_eq!(endings.finish(), Err(BareLineEnding::Cr));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Fed in any pieces, the check agrees with the definition.
        #[test]
        fn streaming_agrees_with_the_definition(
            content in proptest::collection::vec(prop_oneof![
                Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()
            ], 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(content.len())).collect();
            cuts.sort_unstable();
            let mut endings = LineEndings::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([content.len()]) {
                endings.scan(&content[from..cut]);
                from = cut;
            }
            let expected = reference(&content);
            prop_assert_eq!(endings.finish(), expected);
            prop_assert_eq!(check(&content), expected);
        }
    }
}
