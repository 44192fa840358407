//! Mail addresses: splitting, domain normalization (lower case, IDNA2008),
//! the checks that refuse every relay trick (source routes, `%` hacks,
//! quoted locals with `@`, bang paths, IP literals), and the one validation
//! of forwarding addresses that `/activate`, the admin API and the CLI share.
//!
//! A domain is accepted only in the form it would be registered in: UTS #46
//! processing must change nothing but letter case. A code point that
//! processing would drop (U+200B ZERO WIDTH SPACE, U+00AD SOFT HYPHEN, U+FEFF),
//! map (full-width letters, compatibility forms) or refuse, and one that
//! IDNA2008 does not allow there (symbols, punctuation, its exceptions and
//! contextual rules: [`idna`]), makes the whole address invalid instead of
//! silently vanishing, so that `fsoc\u{200B}iety.country` never reaches
//! `fsociety.country`. Empty labels (`a..b`, `d.country..`) are syntax
//! errors; one trailing dot is the root.

mod idna;

use ::idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use std::fmt;

/// Longest address text looked at (RFC 5321: 256 octets for a path); a
/// longer one is refused before any Unicode processing.
const MAX_ADDRESS: usize = 512;

/// Why an address or a domain name is refused. SMTP answers `Syntax` with
/// `501` and the two others with `553` (the name itself is not allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    /// Not of the form `local@domain`, or a part is empty or too long.
    #[error("{0}")]
    Syntax(&'static str),
    /// The domain holds a code point IDNA2008 does not allow.
    #[error("the domain contains {}, which IDNA2008 does not allow", CodePoint(*.0))]
    CodePoint(char),
    /// A label that is not valid IDNA2008 as a whole (bad Punycode, joiners
    /// or right-to-left rules).
    #[error("the domain has a label that is not valid IDNA2008")]
    BadLabel,
}

impl AddressError {
    /// Whether the address is well formed but names something not allowed
    /// (SMTP `553`), rather than malformed (`501`).
    pub fn is_disallowed_name(self) -> bool {
        !matches!(self, AddressError::Syntax(_))
    }
}

/// Shows a code point as `U+200B`.
struct CodePoint(char);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", u32::from(self.0))
    }
}

/// A normalized mailbox: domain in lower-case ASCII (punycode), local part
/// as given (case is the destination's business; lookups lower-case it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// Parses `local@domain`, normalizing the domain. None when malformed
    /// or not allowed ([`Mailbox::check`] says why).
    pub fn parse(addr: &str) -> Option<Mailbox> {
        Self::check(addr).ok()
    }

    /// Parses `local@domain` (as smtp-proto hands it over: unquoted),
    /// normalizing the domain. The local part must be 1 to 64 octets
    /// without `@` or control characters.
    pub(crate) fn check(addr: &str) -> Result<Mailbox, AddressError> {
        if addr.len() > MAX_ADDRESS {
            return Err(AddressError::Syntax("address too long"));
        }
        let (local, domain) = addr
            .rsplit_once('@')
            .ok_or(AddressError::Syntax("no '@' and domain"))?;
        if local.is_empty() {
            return Err(AddressError::Syntax("empty local part"));
        }
        if local.len() > 64 {
            return Err(AddressError::Syntax("local part longer than 64 octets"));
        }
        if local.contains('@') {
            return Err(AddressError::Syntax("more than one '@'"));
        }
        if local.chars().any(char::is_control) {
            return Err(AddressError::Syntax("control character in the local part"));
        }
        let domain = parse_domain_name(domain)?;
        Ok(Mailbox {
            local: local.to_string(),
            domain,
        })
    }

    /// The local part in the form aliases are stored under.
    pub fn local_key(&self) -> String {
        self.local.to_lowercase()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// A DNS host name: labels of letters, digits and '-', dot-separated.
pub(crate) fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Lower-cases and IDNA-encodes a domain; None for IP literals, empty
/// labels, code points IDNA2008 does not allow, and anything that is not a
/// host name ([`parse_domain_name`] says why).
pub(crate) fn normalize_domain(domain: &str) -> Option<String> {
    parse_domain_name(domain).ok()
}

/// A domain name in its lower-case ASCII (punycode) form, or why not. One
/// trailing dot is allowed.
pub(crate) fn parse_domain_name(domain: &str) -> Result<String, AddressError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err(AddressError::Syntax("empty domain"));
    }
    if domain.starts_with('[') {
        return Err(AddressError::Syntax("address literals are not accepted"));
    }
    if domain.len() > MAX_ADDRESS {
        return Err(AddressError::Syntax("domain too long"));
    }
    // Also a second trailing dot: `d.country..` is not `d.country`.
    if domain.split('.').any(str::is_empty) {
        return Err(AddressError::Syntax("empty label in the domain"));
    }
    let lower = domain.to_ascii_lowercase();
    if lower.is_ascii() && !lower.contains("xn--") {
        // The common case: nothing to decode, nothing that IDNA maps.
        return if is_hostname(&lower) {
            Ok(lower)
        } else {
            Err(AddressError::Syntax("not a host name"))
        };
    }
    let mut ascii = String::with_capacity(domain.len());
    for (i, label) in domain.split('.').enumerate() {
        if i > 0 {
            ascii.push('.');
        }
        ascii.push_str(&label_to_ascii(label)?);
    }
    if is_hostname(&ascii) {
        Ok(ascii)
    } else {
        Err(AddressError::Syntax("not a host name"))
    }
}

/// One label in lower-case ASCII: as is for an ASCII label (a `xn--` one
/// must decode to a valid label that encodes back to itself), punycode for
/// a Unicode label that UTS #46 leaves unchanged but for case.
fn label_to_ascii(label: &str) -> Result<String, AddressError> {
    if label.is_empty() {
        return Err(AddressError::Syntax("empty label"));
    }
    let uts46 = Uts46::new();
    if label.is_ascii() {
        let lower = label.to_ascii_lowercase();
        if lower.starts_with("xn--") {
            let (unicode, result) =
                uts46.to_unicode(lower.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
            result.map_err(|_| AddressError::BadLabel)?;
            idna::check_label(&unicode)?;
            let back = uts46
                .to_ascii(
                    unicode.as_bytes(),
                    AsciiDenyList::STD3,
                    Hyphens::Allow,
                    DnsLength::Ignore,
                )
                .map_err(|_| AddressError::BadLabel)?;
            if back != lower {
                return Err(AddressError::BadLabel);
            }
        }
        return Ok(lower);
    }
    let lower = label.to_lowercase();
    // The offending code point itself, when one is to blame on its own.
    let blame = || {
        lower
            .chars()
            .find(|&c| !c.is_ascii() && !code_point_ok(&uts46, c))
            .map_or(AddressError::BadLabel, AddressError::CodePoint)
    };
    let ascii = uts46
        .to_ascii(
            label.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| blame())?;
    let (unicode, result) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
    if result.is_err() || unicode != lower {
        return Err(blame());
    }
    idna::check_label(&unicode)?;
    Ok(ascii.into_owned())
}

/// Whether `c` alone survives UTS #46 unchanged and is allowed.
fn code_point_ok(uts46: &Uts46, c: char) -> bool {
    let mut buf = [0u8; 4];
    let text = c.encode_utf8(&mut buf);
    let Ok(ascii) = uts46.to_ascii(
        text.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::Allow,
        DnsLength::Ignore,
    ) else {
        return false;
    };
    let (unicode, result) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
    result.is_ok() && unicode == *text && idna::may_appear(c)
}

/// Why a recipient address is refused as an attempt to relay (`550 5.7.1`),
/// or as malformed (`Malformed`: a syntax error, `501 5.1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayTrick {
    SourceRoute,
    PercentHack,
    BangPath,
    QuotedLocal,
    IpLiteral,
    Malformed,
}

impl RelayTrick {
    pub fn describe(self) -> &'static str {
        match self {
            RelayTrick::SourceRoute => "source routes are not accepted",
            RelayTrick::PercentHack => "'%' in the local part is not accepted",
            RelayTrick::BangPath => "'!' paths are not accepted",
            RelayTrick::QuotedLocal => "quoted local parts are not accepted",
            RelayTrick::IpLiteral => "address literals are not accepted",
            RelayTrick::Malformed => "malformed address",
        }
    }
}

/// Checks the address text a client sent in RCPT TO (between `<` and `>`,
/// before any unquoting) for relay tricks. An address that is merely
/// malformed (`<@d>`, `<info@@d>`, `<info@>`, no `@`) is `Malformed`: a
/// source route is `@host[,@host]:` before a mailbox.
pub(crate) fn check_relay_tricks(raw: &str) -> Result<(), RelayTrick> {
    if raw.starts_with('@') {
        return Err(if raw.contains(':') {
            RelayTrick::SourceRoute
        } else {
            RelayTrick::Malformed
        });
    }
    if raw.contains('"') || raw.contains('\\') {
        return Err(RelayTrick::QuotedLocal);
    }
    let Some((local, domain)) = raw.rsplit_once('@') else {
        return Err(RelayTrick::Malformed);
    };
    if domain.starts_with('[') {
        return Err(RelayTrick::IpLiteral);
    }
    if local.contains('%') {
        return Err(RelayTrick::PercentHack);
    }
    if local.contains('!') {
        return Err(RelayTrick::BangPath);
    }
    if local.contains(':') || local.contains(',') {
        return Err(RelayTrick::SourceRoute);
    }
    if local.is_empty() || local.contains('@') || domain.is_empty() {
        return Err(RelayTrick::Malformed);
    }
    Ok(())
}

/// Extracts the raw path of an `RCPT TO:<...>` command line as sent.
pub(crate) fn raw_path(line: &str) -> Option<&str> {
    let start = line.find('<')? + 1;
    let end = start + line.get(start..)?.find('>')?;
    line.get(start..end)
}

/// Why a forwarding address is refused; `E` is the error of the lookup that
/// says whether the relay serves a domain.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError<E> {
    /// Not a plain `local@domain` the relay can deliver to (the reason).
    #[error("{0}")]
    Invalid(&'static str),
    /// At a domain the relay serves: forwarding there would loop.
    #[error("at a domain this relay serves (a forwarding loop)")]
    Served,
    #[error(transparent)]
    Lookup(E),
}

/// Longest forwarding address (RFC 5321 path, without the brackets).
pub(crate) const MAX_FORWARD: usize = 254;

/// The one check of a forwarding address, for `/activate`, the admin API
/// (single, bulk, import) and the CLI: at most [`MAX_FORWARD`] octets, no
/// whitespace or control character (CR, LF: it is written into SMTP
/// commands), no `<>`, none of the relay tricks, a valid [`Mailbox`] whose
/// local part is printable ASCII without specials, and not at a domain
/// `served` says the relay serves (called with the normalized domain).
pub(crate) fn check_forward<E>(
    forward: &str,
    served: impl FnOnce(&str) -> Result<bool, E>,
) -> Result<Mailbox, ForwardError<E>> {
    if forward.len() > MAX_FORWARD {
        return Err(ForwardError::Invalid("longer than 254 octets"));
    }
    if forward
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(ForwardError::Invalid(
            "whitespace, control characters and '<' '>' are not allowed",
        ));
    }
    if let Err(trick) = check_relay_tricks(forward) {
        return Err(ForwardError::Invalid(trick.describe()));
    }
    let mailbox = Mailbox::check(forward).map_err(|e| {
        ForwardError::Invalid(match e {
            AddressError::Syntax(why) => why,
            AddressError::CodePoint(_) | AddressError::BadLabel => {
                "the domain has code points IDNA2008 does not allow"
            }
        })
    })?;
    if !mailbox.local.bytes().all(|b| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'<' | b'>' | b'(' | b')' | b'[' | b']' | b',' | b';' | b':'
            )
    }) {
        return Err(ForwardError::Invalid(
            "the local part must be printable ASCII without specials",
        ));
    }
    if served(&mailbox.domain).map_err(ForwardError::Lookup)? {
        return Err(ForwardError::Served);
    }
    Ok(mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let m = Mailbox::parse("Hello@FSociety.Country").unwrap();
        assert_eq!(m.domain, "fsociety.country");
        assert_eq!(m.local, "Hello");
        assert_eq!(m.local_key(), "hello");
        assert_eq!(
            Mailbox::parse("a@bücher.example").unwrap().domain,
            "xn--bcher-kva.example"
        );
        assert_eq!(
            Mailbox::parse("a@BÜCHER.example").unwrap().domain,
            "xn--bcher-kva.example"
        );
        assert_eq!(
            Mailbox::parse("a@XN--BCHER-KVA.example.").unwrap().domain,
            "xn--bcher-kva.example"
        );
        assert!(Mailbox::parse("a@[127.0.0.1]").is_none());
        assert!(Mailbox::parse("nodomain").is_none());
        assert!(Mailbox::parse("@x.test").is_none());
        assert!(Mailbox::parse("a@bad..test").is_none());
    }

    #[test]
    fn malformed_addresses_are_syntax_errors() {
        for bad in [
            "info@@d.test",
            "@d.test",
            "info@",
            "info",
            "",
            "a\r\nb@d.test",
            "a\0@d.test",
            &format!("{}@d.test", "a".repeat(65)),
            &format!("a@{}.test", "b".repeat(600)),
        ] {
            assert!(
                matches!(Mailbox::check(bad), Err(AddressError::Syntax(_))),
                "{bad:?}: {:?}",
                Mailbox::check(bad)
            );
        }
    }

    #[test]
    fn code_points_idna2008_disallows_are_refused_not_dropped() {
        for (bad, c) in [
            ("fsoc\u{200B}iety.country", '\u{200B}'),
            ("fsoc\u{00AD}iety.country", '\u{00AD}'),
            ("\u{FEFF}fsociety.country", '\u{FEFF}'),
            ("ｆsociety.country", 'ｆ'),
            ("b\u{00FC}cher\u{2665}.example", '\u{2665}'),
        ] {
            assert_eq!(
                parse_domain_name(bad),
                Err(AddressError::CodePoint(c)),
                "{bad:?}"
            );
            let addr = format!("info@{bad}");
            assert!(Mailbox::check(&addr).unwrap_err().is_disallowed_name());
        }
        // Joiners outside their context, decomposed (not NFC) text, an
        // ideographic full stop, bad punycode: refused too.
        for bad in [
            "pay\u{200D}pal.example",
            "bu\u{0308}cher.example",
            "a\u{3002}example",
            "xn--zz.example",
            "xn--bcher-kva\u{200B}.example",
        ] {
            assert!(parse_domain_name(bad).is_err(), "{bad:?}");
        }
        // A punycode label that decodes to a dropped code point.
        let smuggled = ::idna::punycode::encode_str("fsoc\u{200B}iety").unwrap();
        let err = parse_domain_name(&format!("xn--{smuggled}.country")).unwrap_err();
        assert!(err.is_disallowed_name(), "{err:?}");
        // Real IDNs still work, in any script.
        for good in ["bücher.example", "münchen.de", "пример.рф", "例え.jp"] {
            assert!(parse_domain_name(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            AddressError::CodePoint('\u{200B}').to_string(),
            "the domain contains U+200B, which IDNA2008 does not allow"
        );
    }

    #[test]
    fn idna2008_context_rules_decide_not_uts46() {
        // What IDNA2008 allows in context is accepted there...
        for good in [
            "col\u{00B7}legi.cat",
            "\u{0915}\u{094D}\u{200D}\u{0937}.example",
            "\u{05D0}\u{05F3}.example",
            "\u{30A2}\u{30FB}\u{30A4}.jp",
            "\u{0628}\u{0661}\u{0662}.example",
        ] {
            let ascii = parse_domain_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            assert!(ascii.starts_with("xn--"), "{good:?} → {ascii}");
        }
        // ...and refused elsewhere, or always when IDNA2008 disallows it
        // (UTS #46 takes every one of these).
        for (bad, c) in [
            ("co\u{00B7}legi.cat", '\u{00B7}'),
            ("ab\u{30FB}cd.jp", '\u{30FB}'),
            ("\u{0628}\u{0661}\u{06F2}.example", '\u{0661}'),
            ("\u{0628}\u{0640}\u{0628}.example", '\u{0640}'),
            ("\u{3042}\u{3031}.jp", '\u{3031}'),
        ] {
            assert_eq!(
                parse_domain_name(bad),
                Err(AddressError::CodePoint(c)),
                "{bad:?}"
            );
            let encoded = ::idna::domain_to_ascii(bad).unwrap_or_default();
            if !encoded.is_empty() {
                // Sent as punycode: refused the same.
                assert!(parse_domain_name(&encoded).is_err(), "{encoded}");
            }
        }
        // Empty labels, also a second trailing dot: syntax errors.
        for bad in [
            "d.country..",
            "a..b.example",
            ".d.country",
            "d.country.\u{00FC}..",
        ] {
            assert_eq!(
                parse_domain_name(bad),
                Err(AddressError::Syntax("empty label in the domain")),
                "{bad:?}"
            );
            assert!(matches!(
                Mailbox::check(&format!("x@{bad}")),
                Err(AddressError::Syntax(_))
            ));
        }
        assert_eq!(parse_domain_name("d.country.").unwrap(), "d.country");
    }

    #[test]
    fn relay_tricks_are_named() {
        assert_eq!(
            check_relay_tricks("@a.country:u@evil.test"),
            Err(RelayTrick::SourceRoute)
        );
        assert_eq!(
            check_relay_tricks("u%evil.test@a.country"),
            Err(RelayTrick::PercentHack)
        );
        assert_eq!(
            check_relay_tricks("evil.test!u@a.country"),
            Err(RelayTrick::BangPath)
        );
        assert_eq!(
            check_relay_tricks("\"u@evil.test\"@a.country"),
            Err(RelayTrick::QuotedLocal)
        );
        assert_eq!(
            check_relay_tricks("u@[127.0.0.1]"),
            Err(RelayTrick::IpLiteral)
        );
        assert_eq!(check_relay_tricks("hello+tag@a.country"), Ok(()));
        for malformed in ["@d.test", "info@@d.test", "info@", "info", "@"] {
            assert_eq!(
                check_relay_tricks(malformed),
                Err(RelayTrick::Malformed),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn raw_path_extraction() {
        assert_eq!(raw_path("RCPT TO:<a@b.c> NOTIFY=NEVER"), Some("a@b.c"));
        assert_eq!(raw_path("RCPT TO:<@x:a@b.c>"), Some("@x:a@b.c"));
        assert_eq!(raw_path("RCPT TO:a@b.c"), None);
    }

    fn never_served(_: &str) -> Result<bool, ()> {
        Ok(false)
    }

    #[test]
    fn forwards_are_plain_deliverable_addresses() {
        assert_eq!(
            check_forward("Mr.Robot@Gmail.com", never_served)
                .unwrap()
                .domain,
            "gmail.com"
        );
        for bad in [
            "u@dest.test\r\nRCPT TO:<x@evil.test>",
            "u\n@dest.test",
            "<u@dest.test>",
            "u @dest.test",
            "u@dest.test>",
            "\"u\"@dest.test",
            "u%v@dest.test",
            "@a:u@dest.test",
            "u@[127.0.0.1]",
            "u@@dest.test",
            "u@",
            "not-an-address",
            "u(x)@dest.test",
            "ü@dest.test",
            "u@dest\u{200B}.test",
            &format!("{}@dest.test", "u".repeat(250)),
        ] {
            assert!(
                matches!(
                    check_forward(bad, never_served),
                    Err(ForwardError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let served = |d: &str| Ok::<_, ()>(d == "relay.test");
        assert!(matches!(
            check_forward("x@RELAY.test", served),
            Err(ForwardError::Served)
        ));
        assert!(matches!(
            check_forward("x@dest.test", |_| Err("store down")),
            Err(ForwardError::Lookup("store down"))
        ));
    }

    /// Code points that UTS #46 drops silently (the attack of issue 9).
    const DROPPED: [char; 5] = ['\u{200B}', '\u{00AD}', '\u{FEFF}', '\u{2060}', '\u{180B}'];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Fuzz: parsing never panics; what parses has a valid host name.
        #[test]
        fn parsing_is_total(addr in "\\PC{0,80}") {
            if let Some(m) = Mailbox::parse(&addr) {
                proptest::prop_assert!(is_hostname(&m.domain));
                proptest::prop_assert!(!m.local.is_empty());
                proptest::prop_assert!(!m.local.contains('@'));
            }
            let _ = check_relay_tricks(&addr);
            let _ = raw_path(&addr);
            let _ = check_forward(&addr, never_served);
        }

        /// What a domain is accepted as is exactly what was sent, up to
        /// case: nothing is dropped or mapped on the way.
        #[test]
        fn an_accepted_domain_is_what_was_sent(domain in "[a-zA-Z0-9\\u{00AD}\\u{200B}\\u{FEFF}ÄäöüßéЖж例え♥ｆ.\\-]{1,40}") {
            if let Ok(ascii) = parse_domain_name(&domain) {
                let sent = domain.strip_suffix('.').unwrap_or(&domain).to_lowercase();
                for (got, sent) in ascii.split('.').zip(sent.split('.')) {
                    if sent.is_ascii() {
                        proptest::prop_assert_eq!(got, sent);
                    } else {
                        let (unicode, result) = ::idna::domain_to_unicode(got);
                        proptest::prop_assert!(result.is_ok());
                        proptest::prop_assert_eq!(unicode.as_str(), sent);
                    }
                }
                proptest::prop_assert_eq!(ascii.split('.').count(), sent.split('.').count());
            }
        }

        /// A middle dot is accepted exactly where IDNA2008 allows it:
        /// between two `l`; Arabic-Indic digits of both kinds never share
        /// an accepted label.
        #[test]
        fn contextual_code_points_only_in_their_context(
            label in "[lab\u{00B7}]{1,12}",
            digits in "[\u{0628}\u{0660}-\u{0669}\u{06F0}-\u{06F9}]{1,8}",
        ) {
            let chars: Vec<char> = label.chars().collect();
            let dots_ok = chars.iter().enumerate().all(|(i, &c)| {
                c != '\u{00B7}'
                    || (i > 0 && chars[i - 1] == 'l' && chars.get(i + 1) == Some(&'l'))
            });
            let accepted = parse_domain_name(&format!("{label}.cat")).is_ok();
            proptest::prop_assert_eq!(accepted, dots_ok, "{:?}", label);
            if parse_domain_name(&format!("\u{0628}{digits}.example")).is_ok() {
                let mixed = digits.chars().any(|c| ('\u{0660}'..='\u{0669}').contains(&c))
                    && digits.chars().any(|c| ('\u{06F0}'..='\u{06F9}').contains(&c));
                proptest::prop_assert!(!mixed, "{:?}", digits);
            }
        }

        /// A dropped code point anywhere in a valid domain makes it invalid.
        #[test]
        fn a_dropped_code_point_is_never_accepted(
            label in "[a-z0-9äöü]{1,20}",
            at in 0usize..21,
            which in 0usize..DROPPED.len(),
        ) {
            let mut chars: Vec<char> = label.chars().collect();
            chars.insert(at.min(chars.len()), DROPPED[which]);
            let domain: String = chars.into_iter().collect::<String>() + ".country";
            proptest::prop_assert!(parse_domain_name(&domain).is_err());
            let addr = format!("info@{domain}");
            proptest::prop_assert!(Mailbox::check(&addr).is_err());
            proptest::prop_assert!(check_forward(&addr, never_served).is_err());
        }
    }
}
