//! Submission credentials: one record per `local@domain` username (its
//! Argon2id hash as a PHC string, never the password), how often it was
//! used, and for a credential a wallet granted, who signed the grant; and
//! the nonces of wallet-signed grants and revocations already used, so
//! that a signature counts once. Removing a domain removes its
//! credentials (`aliases::domain_remove_in`).

use super::db::{Store, StoreError, decode, encode, get_decoded};
use super::tables::{CREDENTIAL_NONCES, CREDENTIALS, alias_key};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

/// One credential. The username is the key (`local@domain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// Unix seconds.
    pub created: u64,
    /// Argon2id PHC string (`$argon2id$v=19$m=…`).
    pub hash: String,
    /// Messages sent with it.
    #[serde(default)]
    pub usage: u64,
    /// Unix seconds of the last message sent with it; 0: never.
    #[serde(default)]
    pub last_used: u64,
    /// Set when a wallet granted it (a chain-governed name): it works only
    /// while `signer` owns the name (or is a permitted maintainer) and the
    /// name has not expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

/// Who granted a credential with a wallet signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// 0x-hex address, lower case.
    pub signer: String,
    /// The owner of the name when the grant was accepted (0x-hex, lower
    /// case): a transfer after it ends the credential even if the signer
    /// was a maintainer.
    pub owner: String,
}

/// The end of a key range holding every key of `domain` (`domain\0…`).
fn domain_range(domain: &str) -> (String, String) {
    (alias_key(domain, ""), format!("{domain}\u{1}"))
}

impl Store {
    pub fn credential_get(
        &self,
        domain: &str,
        local: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        get_decoded(
            &txn.open_table(CREDENTIALS)?,
            "credentials",
            &alias_key(domain, local),
        )
    }

    /// The credentials of `domain`, by local part.
    pub fn credential_list(
        &self,
        domain: &str,
    ) -> Result<Vec<(String, CredentialRecord)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CREDENTIALS)?;
        let (start, end) = domain_range(domain);
        let mut out = Vec::new();
        for item in table.range(start.as_str()..end.as_str())? {
            let (k, v) = item?;
            let key = k.value();
            let local = key.split_once('\0').map(|(_, l)| l).unwrap_or(key);
            out.push((local.to_string(), decode("credentials", key, v.value())?));
        }
        Ok(out)
    }

    /// Writes a credential; true when it is new.
    pub fn credential_put(
        &self,
        domain: &str,
        local: &str,
        record: &CredentialRecord,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let new = txn
            .open_table(CREDENTIALS)?
            .insert(alias_key(domain, local).as_str(), encode(record).as_slice())?
            .is_none();
        txn.commit()?;
        Ok(new)
    }

    /// Removes a credential; false when there was none.
    pub fn credential_remove(&self, domain: &str, local: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let found = txn
            .open_table(CREDENTIALS)?
            .remove(alias_key(domain, local).as_str())?
            .is_some();
        txn.commit()?;
        Ok(found)
    }

    /// Counts `messages` sent with a credential at `now` (unix seconds);
    /// false when it no longer exists.
    pub fn credential_note_use(
        &self,
        domain: &str,
        local: &str,
        messages: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let key = alias_key(domain, local);
        let txn = self.db().begin_write()?;
        let found = {
            let mut table = txn.open_table(CREDENTIALS)?;
            let current: Option<CredentialRecord> = get_decoded(&table, "credentials", &key)?;
            match current {
                Some(mut record) => {
                    record.usage = record.usage.saturating_add(messages);
                    record.last_used = now;
                    table.insert(key.as_str(), encode(&record).as_slice())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(found)
    }

    /// Records the nonce of a wallet signature valid until `expires` (unix
    /// seconds); false when it was used before (a replay). Nonces whose
    /// signatures have expired by `now` are forgotten in the same
    /// transaction (their signatures are refused as expired anyway), so
    /// the table holds only what can still be replayed.
    pub fn credential_nonce_use(
        &self,
        signer: &str,
        nonce: &str,
        expires: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let key = format!("{}\0{nonce}", signer.to_ascii_lowercase());
        let txn = self.db().begin_write()?;
        let fresh = {
            let mut table = txn.open_table(CREDENTIAL_NONCES)?;
            table.retain(|_, until| until >= now)?;
            if table.get(key.as_str())?.is_some() {
                false
            } else {
                table.insert(key.as_str(), expires)?;
                true
            }
        };
        txn.commit()?;
        Ok(fresh)
    }
}

/// Removes every credential of `domain` in `txn` (the domain is going).
pub(crate) fn domain_credentials_remove_in(
    txn: &redb::WriteTransaction,
    domain: &str,
) -> Result<(), StoreError> {
    let (start, end) = domain_range(domain);
    txn.open_table(CREDENTIALS)?
        .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        super::super::db::temp_store()
    }

    fn record(hash: &str) -> CredentialRecord {
        CredentialRecord {
            created: 1,
            hash: hash.into(),
            usage: 0,
            last_used: 0,
            grant: None,
        }
    }

    #[test]
    fn credentials_are_per_domain_and_removed_with_it() {
        let (_d, s) = store();
        assert!(s.credential_put("a.test", "x", &record("h1")).unwrap());
        assert!(!s.credential_put("a.test", "x", &record("h2")).unwrap());
        s.credential_put("a.testb", "y", &record("h3")).unwrap();
        let listed = s.credential_list("a.test").unwrap();
        assert_eq!(listed, vec![("x".to_string(), record("h2"))]);
        assert!(s.credential_note_use("a.test", "x", 2, 50).unwrap());
        let got = s.credential_get("a.test", "x").unwrap().unwrap();
        assert_eq!((got.usage, got.last_used), (2, 50));
        s.domain_add("a.test", super::super::Source::Static)
            .unwrap();
        assert!(s.domain_remove("a.test").unwrap());
        assert!(s.credential_get("a.test", "x").unwrap().is_none());
        assert!(s.credential_get("a.testb", "y").unwrap().is_some());
        assert!(!s.credential_remove("a.test", "x").unwrap());
        assert!(!s.credential_note_use("a.test", "x", 1, 60).unwrap());
    }

    #[test]
    fn a_replayed_grant_nonce_is_refused_until_its_signature_expires() {
        let (_d, s) = store();
        assert!(s.credential_nonce_use("0xAB", "n1", 100, 10).unwrap());
        assert!(!s.credential_nonce_use("0xab", "n1", 100, 20).unwrap());
        assert!(s.credential_nonce_use("0xab", "n2", 100, 20).unwrap());
        // Past its expiry the nonce is forgotten (the signature is refused
        // as expired before its nonce is looked at).
        assert!(s.credential_nonce_use("0xab", "n1", 300, 101).unwrap());
    }
}
