//! A typed SMTP reply `{code, enhanced, text}`: what the inbound server says
//! and what the outbound client hears, in one shape.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// An SMTP reply with its RFC 3463 enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (class.subject.detail); None when a remote sent none.
    pub enhanced: Option<[u8; 3]>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, enhanced: [u8; 3], text: &'static str) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Borrowed(text),
        }
    }

    pub fn owned(code: u16, enhanced: [u8; 3], text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Owned(text.into()),
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// "5.1.1", or "" when there is no enhanced code.
    pub fn enhanced_str(&self) -> String {
        match self.enhanced {
            Some([a, b, c]) => format!("{a}.{b}.{c}"),
            None => String::new(),
        }
    }

    /// Appends the wire form (multi-line when `text` has several lines).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut lines = self
            .text
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            let _ = match self.enhanced {
                Some([a, b, c]) => write!(out, "{}{sep}{a}.{b}.{c} {line}\r\n", self.code),
                None => write!(out, "{}{sep}{line}\r\n", self.code),
            };
        }
    }

    /// Builds a reply from what a remote server said (smtp-proto's parse).
    pub fn from_remote(r: &smtp_proto::Response<String>) -> Reply {
        let enhanced = (r.esc[0] != 0).then_some(r.esc);
        Reply {
            code: r.code,
            enhanced,
            text: Cow::Owned(r.message.replace("\r\n", "\n").trim_end().to_string()),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text.replace('\n', " / ");
        match self.enhanced {
            Some([a, b, c]) => write!(f, "{} {a}.{b}.{c} {text}", self.code),
            None => write!(f, "{} {text}", self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_wire_form() {
        let mut out = Vec::new();
        Reply::new(550, [5, 1, 1], "No such user").write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 No such user\r\n");
        out.clear();
        Reply::owned(250, [2, 0, 0], "a\nb").write_to(&mut out);
        assert_eq!(out, b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::new(451, [4, 3, 0], "x").is_transient());
        assert!(Reply::new(554, [5, 0, 0], "x").is_permanent());
        assert!(Reply::new(354, [2, 0, 0], "x").is_positive());
        assert_eq!(Reply::new(556, [5, 1, 10], "x").enhanced_str(), "5.1.10");
    }
}
