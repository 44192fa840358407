//! Recipient resolution (the alias rule as the store knows it): which
//! forwarding addresses a recipient reaches. Order: exact alias, alias
//! without its `+tag`, catch-all `*`, else unknown.

use crate::address::Mailbox;
use crate::rewrite::srs::Srs;
use crate::store::{Store, StoreError};

/// The local part of a catch-all alias.
pub const CATCH_ALL: &str = "*";

/// What a recipient address resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Forward to `destinations`; `alias` is the alias that matched
    /// (`local@domain`, `*@domain` for the catch-all).
    Forward {
        alias: String,
        destinations: Vec<String>,
    },
    /// The domain is ours but no active alias matches.
    UnknownUser,
    /// The domain is not served here (or disabled): relaying is refused.
    NotLocal,
    /// An address at the SRS domain that does not verify (forged, expired).
    BadBounceAddress,
}

/// Resolves a recipient at the SRS domain: a bounce coming back, forwarded
/// to the original sender when its hash and timestamp verify. None when
/// the address is not at the SRS domain.
pub fn srs_bounce(srs: &Srs, mailbox: &Mailbox) -> Option<Resolution> {
    if !mailbox.domain.eq_ignore_ascii_case(srs.domain()) {
        return None;
    }
    let address = mailbox.to_string();
    Some(match srs.reverse(&address) {
        Ok(original) => Resolution::Forward {
            alias: address,
            destinations: vec![original],
        },
        Err(_) => Resolution::BadBounceAddress,
    })
}

/// The local part every domain must accept (RFC 5321 §4.5.1).
pub const POSTMASTER: &str = "postmaster";

/// Resolves one recipient against the store; `postmaster` (may be empty)
/// takes `postmaster@` of served domains that have no alias for it.
pub fn recipient(
    store: &Store,
    mailbox: &Mailbox,
    postmaster: &str,
) -> Result<Resolution, StoreError> {
    let local = mailbox.local_key();
    let mut candidates: Vec<&str> = vec![local.as_str()];
    if let Some((base, _tag)) = local.split_once('+')
        && !base.is_empty()
    {
        candidates.push(base);
    }
    candidates.push(CATCH_ALL);
    let (domain, hit) = store.lookup(&mailbox.domain, &candidates)?;
    match (domain, hit) {
        (None, _) => Ok(Resolution::NotLocal),
        (Some(d), _) if !d.active => Ok(Resolution::NotLocal),
        (Some(_), Some((i, alias))) if alias.active && !alias.forwards.is_empty() => {
            Ok(Resolution::Forward {
                alias: format!("{}@{}", candidates[i], mailbox.domain),
                destinations: alias.forwards,
            })
        }
        (Some(_), None) if local == POSTMASTER && !postmaster.is_empty() => {
            Ok(Resolution::Forward {
                alias: format!("{POSTMASTER}@{}", mailbox.domain),
                destinations: vec![postmaster.to_string()],
            })
        }
        // A suspended alias stops here: it does not fall through to the
        // catch-all, so suspending an address really stops its mail.
        (Some(_), _) => Ok(Resolution::UnknownUser),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.domain_add("d.country", Source::Static).unwrap();
        s.alias_put(
            "d.country",
            "hello",
            vec!["a@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        s.alias_put(
            "d.country",
            "team",
            vec!["b@dest.test".into(), "c@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        (dir, s)
    }

    fn resolve(s: &Store, addr: &str) -> Resolution {
        recipient(s, &Mailbox::parse(addr).unwrap(), "").unwrap()
    }

    fn forward(alias: &str, dests: &[&str]) -> Resolution {
        Resolution::Forward {
            alias: alias.into(),
            destinations: dests.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn exact_tag_catch_all_and_case() {
        let (_d, s) = setup();
        assert_eq!(
            resolve(&s, "HeLLo@D.Country"),
            forward("hello@d.country", &["a@dest.test"])
        );
        assert_eq!(
            resolve(&s, "hello+news@d.country"),
            forward("hello@d.country", &["a@dest.test"])
        );
        assert_eq!(
            resolve(&s, "team@d.country"),
            forward("team@d.country", &["b@dest.test", "c@dest.test"])
        );
        assert_eq!(resolve(&s, "nobody@d.country"), Resolution::UnknownUser);
        assert_eq!(resolve(&s, "+x@d.country"), Resolution::UnknownUser);
        assert_eq!(resolve(&s, "hello@other.test"), Resolution::NotLocal);
        s.alias_put(
            "d.country",
            "*",
            vec!["all@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        assert_eq!(
            resolve(&s, "nobody@d.country"),
            forward("*@d.country", &["all@dest.test"])
        );
        // an exact alias wins over the catch-all
        assert_eq!(
            resolve(&s, "hello@d.country"),
            forward("hello@d.country", &["a@dest.test"])
        );
    }

    #[test]
    fn tagged_alias_exact_match_wins_over_base() {
        let (_d, s) = setup();
        s.alias_put(
            "d.country",
            "hello+vip",
            vec!["vip@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        assert_eq!(
            resolve(&s, "hello+vip@d.country"),
            forward("hello+vip@d.country", &["vip@dest.test"])
        );
    }

    #[test]
    fn suspended_alias_and_disabled_domain_reject() {
        let (_d, s) = setup();
        s.alias_put(
            "d.country",
            "*",
            vec!["all@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        assert!(s.alias_set_active("d.country", "hello", false).unwrap());
        assert_eq!(resolve(&s, "hello@d.country"), Resolution::UnknownUser);
        let mut d = s.domain_get("d.country").unwrap().unwrap();
        d.active = false;
        s.domain_put("d.country", &d).unwrap();
        assert_eq!(resolve(&s, "team@d.country"), Resolution::NotLocal);
    }

    #[test]
    fn postmaster_falls_back_to_the_configured_address() {
        let (_d, s) = setup();
        let pm =
            |addr: &str| recipient(&s, &Mailbox::parse(addr).unwrap(), "ops@ops.test").unwrap();
        assert_eq!(
            pm("PostMaster@d.country"),
            forward("postmaster@d.country", &["ops@ops.test"])
        );
        assert_eq!(resolve(&s, "postmaster@d.country"), Resolution::UnknownUser);
        assert_eq!(pm("postmaster@other.test"), Resolution::NotLocal);
        s.alias_put(
            "d.country",
            "postmaster",
            vec!["owner@dest.test".into()],
            Source::Static,
        )
        .unwrap();
        assert_eq!(
            pm("postmaster@d.country"),
            forward("postmaster@d.country", &["owner@dest.test"])
        );
    }
}
