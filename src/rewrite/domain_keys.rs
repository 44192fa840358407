//! DKIM keys of the domains mail is sent as (authenticated submission):
//! one Ed25519 and one RSA-2048 key per domain, generated on demand into
//! `data_dir/dkim-domains/<domain>/{ed25519,rsa}.pem` (directory 0700,
//! files 0600), loaded into a bounded cache, and the `DKIM-Signature:`
//! fields of `d=<domain>` they make, with the TXT records to publish.
//!
//! Selectors are fixed, [`ED25519_SELECTOR`] and [`RSA_SELECTOR`]: the
//! same names as the relay's generated keys, but under the sending
//! domain (`eas-rsa._domainkey.<domain>`), so they never meet the relay's
//! own records unless a domain is the relay's DKIM domain itself.
//!
//! A domain name is hostile input: only its normalized form (lower-case
//! ASCII host name, [`crate::address::parse_domain_name`]) names a
//! directory, and the path is checked to be a direct child of the key
//! directory. Keys are kept when the domain is removed: a later re-add
//! reuses them, so the records already published stay valid.
//!
//! Generation is atomic across processes (the server and a CLI command
//! may both generate): both keys are written into a fresh hidden
//! directory, which is then renamed to the domain's name; a rename onto
//! an existing key directory fails, and the loser uses the winner's keys.
//! Within a process, concurrent calls for one domain generate once.

use crate::address::parse_domain_name;
use crate::config::{Config, KeyAlgorithm};
use crate::rewrite::keys::{self, DkimKeyError, KeyPair};
use crate::rewrite::sign::{base64, dkim_signatures, header_fields, now_tag};
use mail_auth::common::crypto::{DkimKey, HashAlgorithm};
use mail_auth::dkim::Canonicalization;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Selector of a sending domain's Ed25519 key.
pub const ED25519_SELECTOR: &str = "eas-ed25519";
/// Selector of a sending domain's RSA key.
pub const RSA_SELECTOR: &str = "eas-rsa";
/// Directory under data_dir holding one directory per domain.
pub const DIR_NAME: &str = "dkim-domains";
/// Domains whose keys are held in memory at once.
const CACHE_ENTRIES: usize = 4096;

/// (selector, algorithm, file name) of each key of a domain, in the
/// order the signatures are added and the records listed.
const KEYS: [(&str, KeyAlgorithm, &str); 2] = [
    (ED25519_SELECTOR, KeyAlgorithm::Ed25519, "ed25519.pem"),
    (RSA_SELECTOR, KeyAlgorithm::Rsa, "rsa.pem"),
];

/// Why a domain's keys cannot be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum DomainKeyError {
    #[error("`{domain}` is not a domain name: {reason}")]
    BadDomain { domain: String, reason: String },
    #[error("DKIM keys of {domain} in {path}: {source}")]
    Io {
        domain: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "DKIM key directory {0} is incomplete (a key file is missing); move it away so the keys are generated again"
    )]
    Incomplete(PathBuf),
    #[error(transparent)]
    Key(#[from] DkimKeyError),
    #[error("signing with the DKIM keys of {domain}: {source}")]
    Sign {
        domain: String,
        source: mail_auth::Error,
    },
}

/// A domain's keys, loaded.
struct Loaded {
    /// (selector, key) in [`KEYS`] order.
    pairs: Vec<(&'static str, KeyPair)>,
    /// (selector, signing key) in the same order.
    signing: Vec<(String, DkimKey)>,
}

/// The sending domains' DKIM keys. One per process; cheap to share
/// (`Arc`). `ensure` generates RSA keys and blocks: call it from a
/// blocking thread. `sign` and `public_records` read files the first time
/// a domain is used, then only memory.
pub struct DomainKeys {
    dir: PathBuf,
    /// `[dkim].headers`, deduplicated.
    headers: Vec<String>,
    cache: Mutex<HashMap<String, Arc<Loaded>>>,
    /// One lock per domain being generated, so a domain is generated once.
    generating: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Locks a mutex whose data a panicking holder cannot leave inconsistent
/// (a map of whole entries, or no data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DomainKeys {
    /// The keys under `config.data_dir`, signing `config.dkim.headers`.
    pub fn new(config: &Config) -> DomainKeys {
        DomainKeys::at(config.data_dir.join(DIR_NAME), &config.dkim.headers)
    }

    /// The keys under `dir` (one directory per domain).
    pub fn at(dir: PathBuf, headers: &[String]) -> DomainKeys {
        let mut unique: Vec<String> = Vec::new();
        for h in headers {
            if !unique.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                unique.push(h.clone());
            }
        }
        DomainKeys {
            dir,
            headers: unique,
            cache: Mutex::new(HashMap::new()),
            generating: Mutex::new(HashMap::new()),
        }
    }

    /// The directory holding the domains' key directories.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The normalized domain and its key directory; refuses anything that
    /// is not a host name, and any path that is not a direct child of the
    /// key directory (defence in depth: a host name has no '/', no empty
    /// label and so no "." or "..").
    fn locate(&self, domain: &str) -> Result<(String, PathBuf), DomainKeyError> {
        let bad = |reason: String| DomainKeyError::BadDomain {
            domain: domain.chars().take(300).collect(),
            reason,
        };
        let name = parse_domain_name(domain).map_err(|e| bad(e.to_string()))?;
        if name.starts_with('.') || name.contains(['/', '\\', '\0']) {
            return Err(bad("not a host name".into()));
        }
        let path = self.dir.join(&name);
        if path.parent() != Some(self.dir.as_path())
            || path.file_name().and_then(|n| n.to_str()) != Some(name.as_str())
        {
            return Err(bad("not a plain directory name".into()));
        }
        Ok((name, path))
    }

    /// Makes sure `domain` has keys: true when this call generated them,
    /// false when they existed (or another process made them meanwhile).
    /// Blocks for the RSA key generation (up to a second or so).
    pub fn ensure(&self, domain: &str) -> Result<bool, DomainKeyError> {
        let (name, path) = self.locate(domain)?;
        let gate = {
            let mut generating = lock(&self.generating);
            generating.entry(name.clone()).or_default().clone()
        };
        let result = {
            let _one_at_a_time = lock(&gate);
            self.generate_unless_present(&name, &path)
        };
        let mut generating = lock(&self.generating);
        // Ours and the map's: nobody else waits on this gate (clones are
        // taken under the map's lock, which we hold).
        if Arc::strong_count(&gate) == 2 {
            generating.remove(&name);
        }
        result
    }

    fn generate_unless_present(&self, name: &str, path: &Path) -> Result<bool, DomainKeyError> {
        if present(path)? {
            return Ok(false);
        }
        let io_err = |path: &Path, source: io::Error| DomainKeyError::Io {
            domain: name.to_string(),
            path: path.to_path_buf(),
            source,
        };
        crate::files::create_private_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let tmp = self.dir.join(format!(
            ".new-{name}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        // Hidden (a host name never starts with '.'), random, created here
        // alone: `create_private_dir` does not complain about an existing
        // directory, so refuse one explicitly.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let placed = (|| {
            for (_, algorithm, file) in KEYS {
                keys::generate(algorithm, &tmp.join(file))?;
            }
            sync_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
            match std::fs::rename(&tmp, path) {
                Ok(()) => {
                    sync_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
                    Ok(true)
                }
                // Another process placed its keys first: use them.
                Err(_) if present(path)? => Ok(false),
                Err(e) => Err(io_err(path, e)),
            }
        })();
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        if matches!(placed, Ok(true)) {
            tracing::info!(
                domain = name,
                path = %path.display(),
                "generated the domain's DKIM keys; publish their records (eas-relay dns records)"
            );
        }
        placed
    }

    /// Whether `domain` has keys.
    pub fn has_keys(&self, domain: &str) -> Result<bool, DomainKeyError> {
        let (name, path) = self.locate(domain)?;
        if lock(&self.cache).contains_key(&name) {
            return Ok(true);
        }
        present(&path)
    }

    /// The domain's keys, from the cache or its files; None when it has
    /// none. Absence is not cached: keys made by another process (a CLI
    /// command) are seen at the next call.
    fn load(&self, domain: &str) -> Result<Option<(String, Arc<Loaded>)>, DomainKeyError> {
        let (name, path) = self.locate(domain)?;
        if let Some(loaded) = lock(&self.cache).get(&name) {
            return Ok(Some((name, loaded.clone())));
        }
        if !present(&path)? {
            return Ok(None);
        }
        let mut pairs = Vec::with_capacity(KEYS.len());
        let mut signing = Vec::with_capacity(KEYS.len());
        for (selector, algorithm, file) in KEYS {
            let file = path.join(file);
            // The relay's own secret: made 0600 if something widened it.
            let pem =
                crate::files::read_own_secret(&file).map_err(|source| DkimKeyError::Read {
                    key: format!("(generated key of {name})"),
                    path: file.clone(),
                    source,
                })?;
            let pair =
                KeyPair::from_pem(&pem, algorithm).map_err(|reason| DkimKeyError::Invalid {
                    key: format!("(generated key of {name})"),
                    path: file.clone(),
                    reason,
                })?;
            let key = pair.signing_key().map_err(|reason| DkimKeyError::Invalid {
                key: format!("(generated key of {name})"),
                path: file.clone(),
                reason,
            })?;
            signing.push((selector.to_string(), key));
            pairs.push((selector, pair));
        }
        let loaded = Arc::new(Loaded { pairs, signing });
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_ENTRIES {
            // Bounded: drop an arbitrary eighth (hash order); they are
            // read again from disk when next used.
            let mut seen = 0;
            cache.retain(|_, _| {
                seen += 1;
                seen > CACHE_ENTRIES / 8
            });
        }
        cache.insert(name.clone(), loaded.clone());
        Ok(Some((name, loaded)))
    }

    /// The `DKIM-Signature:` fields (CRLF-terminated, Ed25519 then RSA) of
    /// `d=<domain>` to put on top of `message` (header and body); None
    /// when the domain has no keys.
    pub fn sign(&self, domain: &str, message: &[u8]) -> Result<Option<Vec<u8>>, DomainKeyError> {
        let (_, body_start) = header_fields(message);
        let header = message.get(..body_start).unwrap_or(message);
        let body = message.get(body_start..).unwrap_or_default();
        let body_hash = HashAlgorithm::Sha256
            .hash(Canonicalization::Relaxed.canonical_body(body, 0))
            .as_ref()
            .to_vec();
        self.sign_parts(domain, header, &body_hash)
    }

    /// [`DomainKeys::sign`] for a message whose body is not in memory:
    /// `header` is its header section, `body_hash` the relaxed SHA-256
    /// hash of its body (as [`crate::rewrite::pipeline::Arrived`] has it).
    pub fn sign_parts(
        &self,
        domain: &str,
        header: &[u8],
        body_hash: &[u8],
    ) -> Result<Option<Vec<u8>>, DomainKeyError> {
        let Some((name, loaded)) = self.load(domain)? else {
            return Ok(None);
        };
        let (fields, _) = header_fields(header);
        dkim_signatures(
            &name,
            &loaded.signing,
            &self.headers,
            &fields,
            &base64(body_hash),
            &now_tag(),
        )
        .map(Some)
        .map_err(|source| DomainKeyError::Sign {
            domain: name,
            source,
        })
    }

    /// The TXT records to publish for `domain`'s keys, as (owner name
    /// without the final dot, e.g. `eas-ed25519._domainkey.example.org`,
    /// TXT value); empty when the domain has no keys.
    pub fn public_records(&self, domain: &str) -> Result<Vec<(String, String)>, DomainKeyError> {
        let Some((name, loaded)) = self.load(domain)? else {
            return Ok(Vec::new());
        };
        Ok(loaded
            .pairs
            .iter()
            .map(|(selector, pair)| {
                (
                    format!("{selector}._domainkey.{name}"),
                    keys::txt_record(pair),
                )
            })
            .collect())
    }
}

/// Whether the key directory at `path` holds the keys: false when it does
/// not exist; an error when it holds some key files but not all.
fn present(path: &Path) -> Result<bool, DomainKeyError> {
    let mut found = 0;
    for (_, _, file) in KEYS {
        match std::fs::symlink_metadata(path.join(file)) {
            Ok(_) => found += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {}
            Err(source) => {
                return Err(DomainKeyError::Io {
                    domain: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    match found {
        0 => Ok(false),
        n if n == KEYS.len() => Ok(true),
        _ => Err(DomainKeyError::Incomplete(path.to_path_buf())),
    }
}

/// Makes a directory's entries durable (a renamed key directory survives
/// a crash).
fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
#[path = "domain_keys_tests.rs"]
mod tests;
