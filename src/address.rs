//! Mail addresses: splitting, domain normalization (lower case, IDNA), and
//! the checks that refuse every relay trick (source routes, `%` hacks,
//! quoted locals with `@`, bang paths, IP literals).

use std::fmt;

/// A normalized mailbox: domain in lower-case ASCII (punycode), local part
/// as given (case is the destination's business; lookups lower-case it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// Parses `local@domain`, normalizing the domain. None when malformed.
    pub fn parse(addr: &str) -> Option<Mailbox> {
        let (local, domain) = addr.rsplit_once('@')?;
        if local.is_empty() || local.len() > 64 {
            return None;
        }
        let domain = normalize_domain(domain)?;
        Some(Mailbox {
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

/// Lower-cases and IDNA-encodes a domain; None for IP literals, empty
/// labels and anything that is not a host name.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.starts_with('[') || domain.len() > 253 {
        return None;
    }
    let ascii = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(domain).ok()?
    };
    crate::config::is_hostname(&ascii).then_some(ascii)
}

/// Why a recipient address is refused as an attempt to relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTrick {
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
/// before any unquoting) for relay tricks.
pub fn check_relay_tricks(raw: &str) -> Result<(), RelayTrick> {
    if raw.starts_with('@') {
        return Err(RelayTrick::SourceRoute);
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
    if local.contains('@') || local.contains(':') || local.contains(',') {
        return Err(RelayTrick::SourceRoute);
    }
    Ok(())
}

/// Extracts the raw path of an `RCPT TO:<...>` command line as sent.
pub fn raw_path(line: &str) -> Option<&str> {
    let start = line.find('<')? + 1;
    let end = start + line[start..].find('>')?;
    Some(&line[start..end])
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
        assert!(Mailbox::parse("a@[127.0.0.1]").is_none());
        assert!(Mailbox::parse("nodomain").is_none());
        assert!(Mailbox::parse("@x.test").is_none());
        assert!(Mailbox::parse("a@bad..test").is_none());
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
    }

    #[test]
    fn raw_path_extraction() {
        assert_eq!(raw_path("RCPT TO:<a@b.c> NOTIFY=NEVER"), Some("a@b.c"));
        assert_eq!(raw_path("RCPT TO:<@x:a@b.c>"), Some("@x:a@b.c"));
        assert_eq!(raw_path("RCPT TO:a@b.c"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Fuzz: parsing never panics; what parses has a valid host name.
        #[test]
        fn parsing_is_total(addr in "\\PC{0,80}") {
            if let Some(m) = Mailbox::parse(&addr) {
                proptest::prop_assert!(crate::config::is_hostname(&m.domain));
                proptest::prop_assert!(!m.local.is_empty());
            }
            let _ = check_relay_tricks(&addr);
            let _ = raw_path(&addr);
        }
    }
}
