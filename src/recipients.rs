//! Recipient resolution (the alias rule as the store knows it): which
//! forwarding addresses a recipient reaches. Order: exact alias, alias
//! without its `+tag`, catch-all `*`, else unknown. Addresses at the SRS
//! domain are bounces, answered by `smtp::rcpt` (the bounce path).

use crate::address::Mailbox;
use crate::store::{AliasRecord, ChainBinding, Lookup, NameState, Source, Store, StoreError};

/// The local part of a catch-all alias.
pub(crate) const CATCH_ALL: &str = "*";

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
}

/// The alias rule of DESIGN §3 for a chain-governed alias, as of the last
/// check of the chain and `now` (Unix s, see `Store::expiry_now`): its
/// commitment is still on chain, the name has not expired, and the signer
/// still owns it (or is a maintainer the owner allows).
fn chain_rule_holds(
    binding: &ChainBinding,
    name: Option<&NameState>,
    signer_is_maintainer: bool,
    now: u64,
) -> bool {
    let Some(name) = name else {
        return false;
    };
    binding.commitment_holds()
        && name.expires > now
        && (binding.signer.eq_ignore_ascii_case(&name.owner)
            || (name.maintainer_allowed && signer_is_maintainer))
}

/// The local part every domain must accept (RFC 5321 §4.5.1).
pub(crate) const POSTMASTER: &str = "postmaster";

/// Resolves one recipient against the store; `postmaster` (may be empty)
/// takes `postmaster@` of served static domains that have no alias for it.
/// `governed`: the domain is under a chain-governed TLD
/// ([`crate::config::ChainConfig::governing_tld`]), where only the chain
/// decides (see [`governed`]).
pub fn recipient(
    store: &Store,
    mailbox: &Mailbox,
    postmaster: &str,
    governed: bool,
) -> Result<Resolution, StoreError> {
    let local = mailbox.local_key();
    let mut candidates: Vec<&str> = vec![local.as_str()];
    if let Some((base, _tag)) = local.split_once('+')
        && !base.is_empty()
    {
        candidates.push(base);
    }
    candidates.push(CATCH_ALL);
    let lookup = store.lookup(&mailbox.domain, &candidates)?;
    if governed {
        return Ok(self::governed(store, mailbox, &candidates, lookup));
    }
    let chain_ok = match &lookup.hit {
        Some((_, alias)) => match &alias.chain {
            Some(binding) => chain_rule_holds(
                binding,
                lookup.name.as_ref(),
                lookup.signer_is_maintainer,
                store.expiry_now(),
            ),
            None => true,
        },
        None => true,
    };
    match (lookup.domain, lookup.hit) {
        (None, _) => Ok(Resolution::NotLocal),
        (Some(d), _) if !d.active => Ok(Resolution::NotLocal),
        (Some(_), Some((i, alias))) if alias.active && chain_ok && !alias.forwards.is_empty() => {
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

/// Under a chain-governed TLD an address forwards only through a chain
/// alias of a chain-governed name whose alias rule holds. A static domain
/// or alias there (left from before the TLD was governed, or made by
/// hand) never forwards, and nor does `aliases.postmaster`: the owner
/// activates a `postmaster` alias like any other. Every address that does
/// not forward, whether its name is registered, has aliases, has expired
/// or is unknown here, is `UnknownUser`: one answer (`550 5.1.1`), which
/// tells nobody whether a name has aliases, and which never relays.
fn governed(store: &Store, mailbox: &Mailbox, candidates: &[&str], lookup: Lookup) -> Resolution {
    let forwards = |alias: &AliasRecord| {
        alias.active
            && !alias.forwards.is_empty()
            && alias.chain.as_ref().is_some_and(|binding| {
                chain_rule_holds(
                    binding,
                    lookup.name.as_ref(),
                    lookup.signer_is_maintainer,
                    store.expiry_now(),
                )
            })
    };
    match (&lookup.domain, &lookup.hit) {
        (Some(d), Some((i, alias))) if d.active && d.source == Source::Chain && forwards(alias) => {
            Resolution::Forward {
                alias: format!("{}@{}", candidates[*i], mailbox.domain),
                destinations: alias.forwards.clone(),
            }
        }
        _ => Resolution::UnknownUser,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    mod chain_rule {
        use super::super::chain_rule_holds;
        use crate::store::{ChainBinding, NameState};

        const OWNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
        const OTHER: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";
        const NOW: u64 = 1_800_000_000;

        fn binding(signer: &str) -> ChainBinding {
            ChainBinding {
                tld: "country".into(),
                sld: "fsociety".into(),
                alias: "hello".into(),
                commitment: "0xF3CF51937C452CB825888838CAACA862FBFDE52C516D84DFD71E54A9033AF10F"
                    .into(),
                observed: "0xf3cf51937c452cb825888838caaca862fbfde52c516d84dfd71e54a9033af10f"
                    .into(),
                signer: signer.into(),
                checked_block: 7,
            }
        }

        fn name(owner: &str, expires: u64, maintainer_allowed: bool) -> NameState {
            NameState {
                tld: "country".into(),
                sld: "fsociety".into(),
                owner: owner.into(),
                expires,
                maintainer_allowed,
                checked_block: 7,
            }
        }

        #[test]
        fn holds_for_the_owner_of_a_live_name_with_the_commitment_on_chain() {
            let n = name(&OWNER.to_uppercase().replace("0X", "0x"), NOW + 1, false);
            assert!(chain_rule_holds(&binding(OWNER), Some(&n), false, NOW));
        }

        #[test]
        fn stops_when_any_condition_fails() {
            let live = name(OWNER, NOW + 1, true);
            // No name state known: never invent an alias.
            assert!(!chain_rule_holds(&binding(OWNER), None, false, NOW));
            // Commitment gone (deactivated) or replaced.
            let mut gone = binding(OWNER);
            gone.observed = format!("0x{}", "00".repeat(32));
            assert!(!chain_rule_holds(&gone, Some(&live), false, NOW));
            // Expired: `expires` must be strictly in the future.
            assert!(!chain_rule_holds(
                &binding(OWNER),
                Some(&name(OWNER, NOW, false)),
                false,
                NOW
            ));
            // Sold: the signer is no longer the owner.
            assert!(!chain_rule_holds(
                &binding(OWNER),
                Some(&name(OTHER, NOW + 1, false)),
                false,
                NOW
            ));
        }

        #[test]
        fn a_maintainer_signature_needs_the_role_and_the_owners_permission() {
            let b = binding(OTHER);
            assert!(chain_rule_holds(
                &b,
                Some(&name(OWNER, NOW + 1, true)),
                true,
                NOW
            ));
            assert!(!chain_rule_holds(
                &b,
                Some(&name(OWNER, NOW + 1, false)),
                true,
                NOW
            ));
            assert!(!chain_rule_holds(
                &b,
                Some(&name(OWNER, NOW + 1, true)),
                false,
                NOW
            ));
        }
    }

    fn resolve(s: &Store, addr: &str) -> Resolution {
        recipient(s, &Mailbox::parse(addr).unwrap(), "", false).unwrap()
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
        let pm = |addr: &str| {
            recipient(&s, &Mailbox::parse(addr).unwrap(), "ops@ops.test", false).unwrap()
        };
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

    fn chain_setup(owner: &str, signer: &str, expires: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let binding = ChainBinding {
            tld: "country".into(),
            sld: "fsociety".into(),
            alias: "Hello".into(),
            commitment: "0xc1".into(),
            observed: "0xc1".into(),
            signer: signer.into(),
            checked_block: 1,
        };
        let name = NameState {
            tld: "country".into(),
            sld: "fsociety".into(),
            owner: owner.into(),
            expires,
            maintainer_allowed: true,
            checked_block: 1,
        };
        s.chain_activate(&crate::store::Activated {
            domain: "fsociety.country".into(),
            local: "hello".into(),
            node: [1; 32],
            alias_hash: [2; 32],
            binding,
            reveal: crate::store::Reveal {
                forward: "mr.robot@gmail.com".into(),
                signature: format!("0x{}1b", "11".repeat(64)),
            },
            name,
        })
        .unwrap();
        (dir, s)
    }

    #[test]
    fn under_a_governed_tld_only_the_chain_forwards_and_every_refusal_is_the_same() {
        let future = crate::store::now_ms() / 1000 + 3600;
        let (_d, s) = chain_setup("0xaa", "0xaa", future);
        // Static records under the TLD: a domain, and an alias left in the
        // chain-governed domain.
        s.domain_add("d.country", Source::Static).unwrap();
        for (domain, local) in [("d.country", "hello"), ("fsociety.country", "legacy")] {
            s.alias_put(domain, local, vec!["x@dest.test".into()], Source::Static)
                .unwrap();
        }
        let governed = |addr: &str| {
            recipient(&s, &Mailbox::parse(addr).unwrap(), "ops@ops.test", true).unwrap()
        };
        assert_eq!(
            governed("HELLO+x@fsociety.country"),
            forward("hello@fsociety.country", &["mr.robot@gmail.com"])
        );
        for addr in [
            "hello@d.country",
            "legacy@fsociety.country",
            "nobody@fsociety.country",
            "postmaster@fsociety.country",
            "hello@unregistered.country",
            "hello@sub.fsociety.country",
        ] {
            assert_eq!(governed(addr), Resolution::UnknownUser, "{addr}");
        }
        // Not governed (chain disabled): the static records forward.
        assert_eq!(
            resolve(&s, "hello@d.country"),
            forward("hello@d.country", &["x@dest.test"])
        );
        // A suspended domain answers the same as everything else.
        let mut d = s.domain_get("fsociety.country").unwrap().unwrap();
        d.active = false;
        s.domain_put("fsociety.country", &d).unwrap();
        assert_eq!(governed("hello@fsociety.country"), Resolution::UnknownUser);
    }

    #[test]
    fn chain_aliases_follow_the_alias_rule() {
        let future = crate::store::now_ms() / 1000 + 3600;
        let (_d, s) = chain_setup("0xaa", "0xAA", future);
        let forwarded = forward("hello@fsociety.country", &["mr.robot@gmail.com"]);
        assert_eq!(resolve(&s, "hello@fsociety.country"), forwarded);
        assert_eq!(resolve(&s, "HELLO+x@fsociety.country"), forwarded);
        // expired by the wall clock: stops without any chain event
        let (_d, s) = chain_setup("0xaa", "0xaa", 1000);
        assert_eq!(
            resolve(&s, "hello@fsociety.country"),
            Resolution::UnknownUser
        );
        // the name changed hands: the previous owner's alias stops
        let (_d, s) = chain_setup("0xbb", "0xaa", future);
        assert_eq!(
            resolve(&s, "hello@fsociety.country"),
            Resolution::UnknownUser
        );
        // ...unless the signer is a maintainer the owner allows
        s.chain_apply(&crate::store::ChainUpdate {
            maintainers: vec![("country".into(), "0xaa".into(), true)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(resolve(&s, "hello@fsociety.country"), forwarded);
        // the commitment left the chain
        let key = s
            .chain_alias_of(&[1; 32], &[2; 32], "country")
            .unwrap()
            .unwrap();
        s.chain_apply(&crate::store::ChainUpdate {
            commitments: vec![(key, "0x00".into(), 5)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            resolve(&s, "hello@fsociety.country"),
            Resolution::UnknownUser
        );
    }
}
