//! Submission credentials' own logic, apart from where they are kept
//! (`store::credentials`) and who asks (the submission listeners, the API,
//! the CLI): usernames, Argon2id password hashes, generated passwords, and
//! the one check of a login ([`Credentials::check`]) — the password, and
//! for a credential a wallet granted, that the name is still the
//! granter's and not expired, as the chain watcher last saw it.
//!
//! Argon2id with the `argon2` crate's defaults (19 MiB, 2 passes, 1 lane:
//! the OWASP recommendation); one verification costs a few tens of
//! milliseconds, so it always runs on the blocking pool, never on a
//! runtime thread. An unknown username is checked against a fixed dummy
//! hash, so a login takes as long whether the user exists or not.

use crate::address::Mailbox;
use crate::store::{CredentialRecord, Store, StoreError};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::{Arc, LazyLock};

/// Shortest password accepted when one is given (a generated one is longer).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted: Argon2 hashes any length, but a megabyte
/// password is an attacker's, not a user's.
pub const MAX_PASSWORD_LEN: usize = 256;
/// Characters of a generated password (base62: ~143 bits).
const GENERATED_LEN: usize = 24;

/// Why a credential could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The outcome of a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The user may send as `local@domain`'s domain.
    Accepted { local: String, domain: String },
    /// Unknown user or wrong password (the same answer for both).
    Refused,
    /// The password matched but the wallet's grant no longer holds (the
    /// name changed hands or expired).
    GrantLapsed { local: String, domain: String },
}

/// A username as `(local, domain)`: `local@domain`, or a bare local part
/// when `domain` is given (ImprovMX's API names credentials so). Local
/// parts are kept lower case (as aliases are), domains normalized.
pub fn parse_username(
    username: &str,
    domain: Option<&str>,
) -> Result<(String, String), CredentialError> {
    let bad = |why: &str| CredentialError::Invalid(format!("username {username:?}: {why}"));
    let full = match (username.contains('@'), domain) {
        (true, _) => username.to_string(),
        (false, Some(d)) => format!("{username}@{d}"),
        (false, None) => return Err(bad("must be an address (local@domain)")),
    };
    let mailbox = Mailbox::parse(&full).ok_or_else(|| bad("not a valid address"))?;
    if let Some(d) = domain
        && crate::address::normalize_domain(d).as_deref() != Some(mailbox.domain.as_str())
    {
        return Err(bad(&format!("not an address at {d}")));
    }
    if mailbox
        .local
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(bad("spaces, quotes and backslashes are not allowed"));
    }
    Ok((mailbox.local_key(), mailbox.domain))
}

/// Checks a password someone chose.
pub fn check_password(password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(CredentialError::Invalid(format!(
            "password: at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(CredentialError::Invalid(format!(
            "password: at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(CredentialError::Invalid(
            "password: control characters are not allowed".into(),
        ));
    }
    Ok(())
}

/// A new random password (shown once, never stored).
pub fn generate_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(GENERATED_LEN)
        .map(char::from)
        .collect()
}

/// The Argon2id PHC string of `password` (slow: call it off the runtime).
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (slow: off the
/// runtime). A damaged hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash nobody's password matches, checked for unknown users so that
/// their logins cost the same as known users'.
static DUMMY: LazyLock<String> =
    LazyLock::new(|| hash_password(&generate_password()).unwrap_or_default());

/// Makes and checks credentials against the store.
#[derive(Clone)]
pub struct Credentials {
    store: Arc<Store>,
}

impl Credentials {
    pub fn new(store: Arc<Store>) -> Credentials {
        Credentials { store }
    }

    /// A new record for `password` (hashed here: slow).
    pub fn record(password: &str, now: u64) -> Result<CredentialRecord, CredentialError> {
        Ok(CredentialRecord {
            created: now,
            hash: hash_password(password)?,
            usage: 0,
            last_used: 0,
            grant: None,
        })
    }

    /// Checks a login (`username` must be a whole address). Blocking:
    /// call it on the blocking pool.
    pub fn check(&self, username: &str, password: &str) -> Result<Login, CredentialError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Ok(Login::Refused);
        }
        let Ok((local, domain)) = parse_username(username, None) else {
            verify_password(&DUMMY, password);
            return Ok(Login::Refused);
        };
        let Some(record) = self.store.credential_get(&domain, &local)? else {
            verify_password(&DUMMY, password);
            return Ok(Login::Refused);
        };
        if !verify_password(&record.hash, password) {
            return Ok(Login::Refused);
        }
        if let Some(grant) = &record.grant
            && !self.grant_holds(&domain, &grant.signer, &grant.owner)?
        {
            return Ok(Login::GrantLapsed { local, domain });
        }
        Ok(Login::Accepted { local, domain })
    }

    /// Whether a wallet's grant on `domain` still holds: the name has the
    /// owner it had at the grant, it has not expired (by the chain's clock),
    /// and the signer is that owner or a maintainer the owner permits.
    pub fn grant_holds(
        &self,
        domain: &str,
        signer: &str,
        owner: &str,
    ) -> Result<bool, CredentialError> {
        let Some(name) = self.store.chain_name(domain)? else {
            return Ok(false);
        };
        if !name.owner.eq_ignore_ascii_case(owner) || name.expires <= self.store.expiry_now() {
            return Ok(false);
        }
        if signer.eq_ignore_ascii_case(&name.owner) {
            return Ok(true);
        }
        Ok(name.maintainer_allowed && self.store.chain_is_maintainer(&name.tld, signer)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_an_address_or_a_local_part_at_the_given_domain() {
        assert_eq!(
            parse_username("Hello@Fsociety.Country", None).unwrap(),
            ("hello".to_string(), "fsociety.country".to_string())
        );
        assert_eq!(
            parse_username("hello", Some("fsociety.country")).unwrap(),
            ("hello".to_string(), "fsociety.country".to_string())
        );
        assert!(parse_username("hello", None).is_err());
        assert!(parse_username("hello@other.test", Some("fsociety.country")).is_err());
        assert!(parse_username("he llo", Some("a.test")).is_err());
        assert!(parse_username("a@b@c.test", None).is_err());
    }

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct"));
        assert!(verify_password(&phc, "correct horse battery"));
        assert!(!verify_password(&phc, "correct horse batterx"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(
            phc,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
    }

    #[test]
    fn generated_passwords_are_long_random_and_acceptable() {
        let a = generate_password();
        assert_eq!(a.len(), GENERATED_LEN);
        assert_ne!(a, generate_password());
        check_password(&a).unwrap();
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(check_password("twelve chars\u{7}").is_err());
    }

    #[test]
    fn a_login_needs_the_right_password_of_a_known_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let creds = Credentials::new(store.clone());
        store
            .credential_put(
                "a.test",
                "me",
                &Credentials::record("a long password", 1).unwrap(),
            )
            .unwrap();
        assert_eq!(
            creds.check("ME@a.test", "a long password").unwrap(),
            Login::Accepted {
                local: "me".into(),
                domain: "a.test".into()
            }
        );
        assert_eq!(
            creds.check("me@a.test", "a long passwore").unwrap(),
            Login::Refused
        );
        assert_eq!(
            creds.check("you@a.test", "a long password").unwrap(),
            Login::Refused
        );
        assert_eq!(
            creds.check("me", "a long password").unwrap(),
            Login::Refused
        );
    }

    #[test]
    fn a_granted_credential_lapses_without_its_name_on_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let creds = Credentials::new(store.clone());
        let mut record = Credentials::record("a long password", 1).unwrap();
        record.grant = Some(crate::store::Grant {
            signer: "0xaa".into(),
            owner: "0xaa".into(),
        });
        store
            .credential_put("fsociety.country", "hello", &record)
            .unwrap();
        // The watcher knows no such name: the grant does not hold.
        assert_eq!(
            creds
                .check("hello@fsociety.country", "a long password")
                .unwrap(),
            Login::GrantLapsed {
                local: "hello".into(),
                domain: "fsociety.country".into()
            }
        );
    }
}
