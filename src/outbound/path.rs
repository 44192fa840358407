//! The one encoder of the paths the SMTP client writes into `MAIL FROM:<…>`
//! and `RCPT TO:<…>` (RFC 5321 §4.1.2, RFC 6531 for UTF-8). Addresses are
//! kept unquoted inside the relay (smtp-proto hands them over that way), so
//! a local part such as `a> RET=FULL ENVID=x`, which arrived quoted, would
//! otherwise be written raw and the destination would read everything after
//! the `>` as ESMTP parameters of the relay's own command. Here a local
//! part that is not a dot-atom is written as a quoted string, and an
//! address that no valid path can carry (line breaks, NUL, other control
//! characters, U+2028/U+2029, no usable domain) is refused: the client
//! never writes what is not valid syntax.

use crate::address::parse_domain_name;

/// Why an address cannot be written as an SMTP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// CR, LF, NUL, U+2028 or U+2029: a line break for someone.
    #[error("the address contains a line break or NUL")]
    LineBreak,
    /// Another control character: no quoted string may carry it.
    #[error("the address contains a control character")]
    Control,
    #[error("the address has no '@' and domain")]
    NoDomain,
    #[error("the address has an empty local part")]
    EmptyLocal,
    #[error("the domain of the address is not a valid host name")]
    BadDomain,
    /// A non-ASCII local part needs SMTPUTF8, which this transaction lacks.
    #[error("the address is not ASCII and the message is not SMTPUTF8")]
    NeedsSmtpUtf8,
}

/// Code points that end a line for some reader: refused anywhere.
fn is_line_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\0' | '\u{2028}' | '\u{2029}')
}

/// RFC 5322 `atext`, extended by RFC 6531 with every non-ASCII code point.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// True when `local` is a dot-atom (RFC 5321 `Dot-string`): atoms of
/// `atext` joined by single dots, so it may be written unquoted.
pub fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// True when every character of `local` may stand in a dot-atom (`atext`
/// or `.`): what the relay accepts from a sender, since such a local part
/// stays one token wherever it is copied (an SRS address, a log line).
pub fn has_only_atom_chars(local: &str) -> bool {
    local.chars().all(|c| c == '.' || is_atext(c))
}

/// `address` (`local@domain`, unquoted) as the text between `<` and `>`:
/// the local part as is when it is a dot-atom, else as a quoted string
/// (`"` and `\` escaped); the domain without a trailing dot, in A-labels
/// unless the transaction is SMTPUTF8. The null path is the caller's.
pub fn encode_path(address: &str, smtputf8: bool) -> Result<String, PathError> {
    if address.chars().any(is_line_break) {
        return Err(PathError::LineBreak);
    }
    if address.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let (local, domain) = address.rsplit_once('@').ok_or(PathError::NoDomain)?;
    if local.is_empty() {
        return Err(PathError::EmptyLocal);
    }
    if !smtputf8 && !local.is_ascii() {
        return Err(PathError::NeedsSmtpUtf8);
    }
    let ascii = parse_domain_name(domain).map_err(|_| PathError::BadDomain)?;
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let domain = if smtputf8 || domain.is_ascii() {
        domain
    } else {
        ascii.as_str()
    };
    let mut path = String::with_capacity(address.len() + 4);
    if is_dot_string(local) {
        path.push_str(local);
    } else {
        // Quoted-string (RFC 5321 §4.1.2): qtextSMTP, quoted-pairSMTP for
        // `"` and `\`; the control characters were refused above.
        path.push('"');
        for c in local.chars() {
            if c == '"' || c == '\\' {
                path.push('\\');
            }
            path.push(c);
        }
        path.push('"');
    }
    path.push('@');
    path.push_str(domain);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_atoms_are_written_as_they_are() {
        for addr in [
            "a@b.test",
            "Mr.Robot+tag@gmail.com",
            "SRS0=Hh0Q=TT=example.org=user@relay.test",
            "o'neil{x}@b.test",
        ] {
            assert_eq!(encode_path(addr, false).unwrap(), addr);
        }
        assert_eq!(encode_path("a@b.test.", false).unwrap(), "a@b.test");
        assert_eq!(
            encode_path("a@bücher.example", false).unwrap(),
            "a@xn--bcher-kva.example"
        );
        assert_eq!(
            encode_path("ü@bücher.example", true).unwrap(),
            "ü@bücher.example"
        );
    }

    #[test]
    fn other_local_parts_are_quoted() {
        for (addr, path) in [
            (
                "a> RET=FULL ENVID=x@example.org",
                "\"a> RET=FULL ENVID=x\"@example.org",
            ),
            (
                "SRS0=h=TT=example.org=a> SMTPUTF8@relay.test",
                "\"SRS0=h=TT=example.org=a> SMTPUTF8\"@relay.test",
            ),
            ("a..b@docomo.test", "\"a..b\"@docomo.test"),
            (".a@b.test", "\".a\"@b.test"),
            ("a\"b\\c@b.test", "\"a\\\"b\\\\c\"@b.test"),
            ("x@y@b.test", "\"x@y\"@b.test"),
            ("john smith@b.test", "\"john smith\"@b.test"),
        ] {
            assert_eq!(encode_path(addr, false).unwrap(), path, "{addr:?}");
        }
    }

    #[test]
    fn unwritable_addresses_are_refused() {
        for (addr, error) in [
            ("a\r\nRSET@b.test", PathError::LineBreak),
            ("a\n@b.test", PathError::LineBreak),
            ("a\r@b.test", PathError::LineBreak),
            ("a\0@b.test", PathError::LineBreak),
            ("a\u{2028}@b.test", PathError::LineBreak),
            ("a\u{2029}@b.test", PathError::LineBreak),
            ("a@b.test\r\nQUIT", PathError::LineBreak),
            ("a\t@b.test", PathError::Control),
            ("a\u{7f}@b.test", PathError::Control),
            ("a\u{85}@b.test", PathError::Control),
            ("nodomain", PathError::NoDomain),
            ("@b.test", PathError::EmptyLocal),
            ("a@", PathError::BadDomain),
            ("a@b.test> SIZE=1", PathError::BadDomain),
            ("a@[127.0.0.1]", PathError::BadDomain),
            ("ü@b.test", PathError::NeedsSmtpUtf8),
        ] {
            assert_eq!(encode_path(addr, false), Err(error), "{addr:?}");
        }
    }

    /// Reads a path back as an RFC 5321 parser would: the local part
    /// (dot-string or quoted string, unescaped) and the rest.
    fn decode(path: &str) -> Option<(String, &str)> {
        if let Some(quoted) = path.strip_prefix('"') {
            let mut local = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => local.push(chars.next()?.1),
                    '"' => return Some((local, quoted.get(i + 1..)?.strip_prefix('@')?)),
                    c => local.push(c),
                }
            }
            None
        } else {
            let (local, domain) = path.split_once('@')?;
            Some((local.to_string(), domain))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Whatever the local part holds, the path is one token: no space,
        /// `>` or line break outside the quotes, it reads back to the same
        /// local part, and what is refused had a reason to be.
        #[test]
        fn a_path_is_one_token_that_reads_back(
            local in "[a-z.\"\\\\ <>=\r\n\t\u{0}\u{2028}üé@]{0,24}|\\PC{0,24}",
            utf8 in any::<bool>(),
        ) {
            let addr = format!("{local}@dest.test");
            match encode_path(&addr, utf8) {
                Ok(path) => {
                    prop_assert!(!path.chars().any(is_line_break), "{}", path);
                    let (back, domain) = decode(&path).expect("decodes");
                    prop_assert_eq!(back, local.clone());
                    prop_assert_eq!(domain, "dest.test");
                    if !path.starts_with('"') {
                        prop_assert!(!path.contains([' ', '>', '<', '"', '\\']));
                    }
                    let line = format!("MAIL FROM:<{path}>\r\n");
                    prop_assert_eq!(line.matches("\r\n").count(), 1);
                }
                Err(PathError::EmptyLocal) => prop_assert!(local.is_empty()),
                Err(PathError::NeedsSmtpUtf8) => prop_assert!(!utf8 && !local.is_ascii()),
                Err(PathError::LineBreak | PathError::Control) => {
                    prop_assert!(local.chars().any(|c| c.is_control() || is_line_break(c)));
                }
                Err(e) => prop_assert!(false, "{local:?}: {e}"),
            }
        }
    }
}
