//! Redaction of remote and relay-generated delivery text before it reaches
//! a DSN, the delivery log or the INFO log: the private forwarding address
//! becomes the address the sender wrote to, the forwarding domain and its
//! mail servers become "the destination", and the text is one printable
//! ASCII line of bounded length.
//!
//! The text comes from the network (a destination's reply) and must never
//! panic: matching is done char by char on the original text, so a
//! character whose lower case has another UTF-8 length (U+212A KELVIN SIGN,
//! U+0130) can never move a byte offset off a char boundary.

use crate::message::sanitize_header_text;

/// Most characters of delivery text kept (RFC 5321 reply lines are at most
/// 512 bytes; relay text wraps one reply at most once).
pub const MAX_TEXT_CHARS: usize = 1000;
/// What the forwarding domain and its subdomains are called instead.
pub const DESTINATION: &str = "the destination";
/// What the host that answered (name or address) is called instead.
pub const DESTINATION_SERVER: &str = "the destination's mail server";
/// Said instead of text that still names the forwarding address after
/// every replacement (only for pathological aliases and replies).
pub const WITHHELD: &str = "(details withheld: they name the forwarding address)";

/// What to hide in a text, and what to show instead.
#[derive(Debug, Clone, Copy)]
pub struct Private<'a> {
    /// The forwarding address ("" when there is nothing private).
    pub address: &'a str,
    /// The address the sender knows (the alias it wrote to).
    pub shown: &'a str,
    /// The host that answered, as the outbound client reports it:
    /// `"mx.dest.example [192.0.2.1]:25"` (or just a host name).
    pub server: Option<&'a str>,
}

impl Private<'_> {
    /// Nothing to hide when the forward is what the sender wrote to (a DSN
    /// going back to its sender, an old entry without an alias).
    fn is_private(&self) -> bool {
        !self.address.is_empty() && !self.address.eq_ignore_ascii_case(self.shown)
    }

    fn domain(&self) -> Option<&str> {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.'))
            .filter(|d| !d.is_empty())
    }

    /// Host name and address of the server that answered.
    fn server_names(&self) -> Vec<&str> {
        let Some(server) = self.server else {
            return Vec::new();
        };
        let mut names = Vec::new();
        let (host, rest) = server.split_once(' ').unwrap_or((server, ""));
        names.push(host.trim_end_matches('.'));
        if let Some((ip, _)) = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .filter(|(ip, _)| !ip.is_empty())
        {
            names.push(ip);
        }
        names.retain(|n| !n.is_empty());
        names
    }
}

/// The printable ASCII one-liner to store, log and report for `text`.
pub fn redact(text: &str, private: &Private<'_>) -> String {
    let mut out = one_line(text);
    if !private.is_private() {
        return ascii(&out);
    }
    // Replacing and masking can each bring the address back (a '?' in the
    // address, an alias that contains it); repeat a few times, then give up
    // on the text rather than leak the address.
    for _ in 0..3 {
        out = replace_ci(&out, private.address, private.shown);
        out = replace_hosts(&out, private);
        out = ascii(&out);
        if find_ci(&out, private.address).is_none() {
            return out;
        }
    }
    WITHHELD.to_string()
}

/// Control characters to spaces, trimmed, at most [`MAX_TEXT_CHARS`].
pub fn one_line(text: &str) -> String {
    let clean = sanitize_header_text(text);
    match clean.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => clean.get(..cut).unwrap_or_default().to_string(),
        None => clean,
    }
}

/// Every non-ASCII character becomes '?'.
pub fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// The byte range (on char boundaries of `text`) of the first occurrence of
/// `needle` in `text`, comparing the lower case of each character (so
/// "K" U+212A matches "k"). An empty needle is never found.
pub fn find_ci(text: &str, needle: &str) -> Option<(usize, usize)> {
    find_ci_from(text, needle, 0)
}

fn find_ci_from(text: &str, needle: &str, from: usize) -> Option<(usize, usize)> {
    let needle: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    if needle.is_empty() {
        return None;
    }
    let rest = text.get(from..)?;
    rest.char_indices().find_map(|(start, _)| {
        let tail = rest.get(start..)?;
        match_len(tail, &needle).map(|len| (from + start, from + start + len))
    })
}

/// Bytes of `text` (a whole number of its chars) whose lower case is
/// exactly `needle`, if its start matches.
fn match_len(text: &str, needle: &[char]) -> Option<usize> {
    let mut matched = 0;
    for (i, c) in text.char_indices() {
        for lower in c.to_lowercase() {
            if needle.get(matched) != Some(&lower) {
                return None;
            }
            matched += 1;
        }
        if matched == needle.len() {
            return Some(i + c.len_utf8());
        }
    }
    None
}

/// Every occurrence of `needle` (case-insensitive, see [`find_ci`]) replaced.
pub fn replace_ci(text: &str, needle: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some((start, end)) = find_ci_from(text, needle, pos) {
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(with);
        pos = end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

/// Characters of a host name or address token in free text.
fn is_host_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')
}

/// Host-name tokens naming the forwarding domain (or a name under it) or
/// the server that answered, replaced by what the sender may know.
fn replace_hosts(text: &str, private: &Private<'_>) -> String {
    let domain = private.domain().map(lower);
    let servers: Vec<String> = private.server_names().into_iter().map(lower).collect();
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        // A sentence may end right after a name: keep its dot.
        let trimmed = token.trim_end_matches(['.', ':']);
        let tail = token.get(trimmed.len()..).unwrap_or_default();
        let name = lower(trimmed);
        let under = |d: &str| name == d || name.ends_with(&format!(".{d}"));
        if servers.contains(&name) {
            out.push_str(DESTINATION_SERVER);
            out.push_str(tail);
        } else if domain.as_deref().is_some_and(under) {
            out.push_str(DESTINATION);
            out.push_str(tail);
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_host_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FORWARD: &str = "Mr.Robot@dest.test";

    fn private(server: Option<&'static str>) -> Private<'static> {
        Private {
            address: FORWARD,
            shown: "hello@fsociety.country",
            server,
        }
    }

    #[test]
    fn kelvin_sign_before_the_address_does_not_panic() {
        for n in 1..=4 {
            let kelvins = "\u{212A}".repeat(n);
            let reply = format!("550 5.1.1 {kelvins} <mr.robot@dest.test>: unknown");
            let out = redact(&reply, &private(None));
            let masked = "?".repeat(n);
            assert_eq!(
                out,
                format!("550 5.1.1 {masked} <hello@fsociety.country>: unknown")
            );
        }
    }

    #[test]
    fn kelvin_sign_inside_the_address_is_still_the_address() {
        let forward = Private {
            address: "kelvin@dest.test",
            ..private(None)
        };
        let out = redact("550 <\u{212A}elvin@DEST.test> unknown", &forward);
        assert_eq!(out, "550 <hello@fsociety.country> unknown");
    }

    #[test]
    fn domain_and_server_become_the_destination() {
        let out = redact(
            "451 4.4.1 no host for dest.test could be reached",
            &private(None),
        );
        assert_eq!(
            out,
            "451 4.4.1 no host for the destination could be reached"
        );
        let out = redact(
            "451 4.4.1 connection to mx.example.net [192.0.2.7]:25 failed: refused",
            &private(Some("mx.example.net [192.0.2.7]:25")),
        );
        assert_eq!(
            out,
            "451 4.4.1 connection to the destination's mail server [the destination's mail server]:25 failed: refused"
        );
        let out = redact(
            "550 5.1.2 domain MX1.Dest.Test. does not exist",
            &private(None),
        );
        assert_eq!(out, "550 5.1.2 domain the destination. does not exist");
        // Other names are left alone.
        let out = redact("550 see https://notdest.test/help", &private(None));
        assert_eq!(out, "550 see https://notdest.test/help");
    }

    #[test]
    fn nothing_private_when_the_forward_is_what_the_sender_wrote_to() {
        let p = Private {
            address: "a@example.org",
            shown: "a@example.org",
            server: Some("mx.example.org [192.0.2.1]:25"),
        };
        assert_eq!(
            redact("550 <a@example.org> unknown at mx.example.org", &p),
            "550 <a@example.org> unknown at mx.example.org"
        );
    }

    #[test]
    fn an_alias_containing_the_forward_is_withheld() {
        let p = Private {
            address: "a@x.test",
            shown: "ba@x.test.country",
            server: None,
        };
        assert_eq!(redact("550 a@x.test", &p), WITHHELD);
    }

    #[test]
    fn a_question_mark_in_the_address_cannot_come_back_by_masking() {
        let p = Private {
            address: "a?b@x.test",
            shown: "hello@d.country",
            server: None,
        };
        let out = redact("550 a\u{e9}b@x.test", &p);
        assert!(find_ci(&out, "a?b@x.test").is_none(), "{out}");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let text = "\u{e9}".repeat(5000);
        let out = one_line(&text);
        assert_eq!(out.chars().count(), MAX_TEXT_CHARS);
    }

    fn lowercase_contains(hay: &str, needle: &str) -> bool {
        !needle.is_empty() && hay.to_lowercase().contains(&needle.to_lowercase())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any reply, any address (also with characters whose lower case
        /// changes length): no panic, ASCII out, the address never in it.
        #[test]
        fn redaction_never_panics_or_leaks(
            before in "\\PC{0,20}",
            after in "\\PC{0,20}",
            local in "[a-zA-Z0-9.?\u{212A}\u{130}\u{3A3}\u{1E9E}é-]{1,12}",
            domain in "[a-zA-Z0-9\u{212A}\u{130}.-]{1,12}",
            shown in "[a-z0-9\u{e9}]{1,8}@[a-z]{1,6}\\.country",
            server in proptest::option::of("\\PC{0,30}"),
            noise in "\\PC{0,40}",
        ) {
            let address = format!("{local}@{domain}");
            let shouted: String = address.chars().flat_map(char::to_uppercase).collect();
            let p = Private { address: &address, shown: &shown, server: server.as_deref() };
            for reply in [
                format!("{before}{address}{after}"),
                format!("550 {before}<{shouted}>{after} {noise}"),
                noise.clone(),
            ] {
                let out = redact(&reply, &p);
                prop_assert!(out.is_ascii());
                prop_assert!(!out.contains(['\r', '\n']));
                if !address.eq_ignore_ascii_case(&shown) {
                    prop_assert!(!lowercase_contains(&out, &address), "{reply:?} -> {out:?}");
                    prop_assert!(find_ci(&out, &address).is_none(), "{reply:?} -> {out:?}");
                }
            }
        }

        #[test]
        fn find_ci_returns_char_boundaries(text in "\\PC{0,40}", needle in "\\PC{0,6}") {
            if let Some((a, b)) = find_ci(&text, &needle) {
                prop_assert!(text.is_char_boundary(a) && text.is_char_boundary(b) && a < b);
            }
            let _ = replace_ci(&text, &needle, "x");
        }
    }
}
