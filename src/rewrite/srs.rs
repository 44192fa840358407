//! Sender Rewriting Scheme (SRS): rewrites the envelope sender of forwarded
//! mail into an address of the relay's SRS domain, so SPF passes downstream,
//! and turns such addresses back into the original sender when a bounce
//! comes back. The format is byte-for-byte that of libsrs2 as shipped in
//! postsrsd, so the two can share secrets and reverse each other's
//! addresses:
//!
//! - `SRS0=HHHH=TT=orig-domain=orig-local@srs-domain` for ordinary senders;
//! - `SRS1=HHHH=first-domain==opaque@srs-domain` for senders that already are
//!   SRS addresses of another forwarder (`SRS0=opaque@first-domain`, or an
//!   `SRS1` one, whose inner part is re-signed), so bounces go back to the
//!   first forwarder directly;
//! - `TT`: the day number (`unix_secs / 86400`) mod 1024 as two characters of
//!   `ABCDEFGHIJKLMNOPQRSTUVWXYZ234567`, most significant first;
//! - `HHHH`: the first `hash_length` characters of the standard base64
//!   (`A-Za-z0-9+/`, what postsrsd emits) of HMAC-SHA1(secret, data), where
//!   data is the ASCII-lowercased concatenation, without separators, of
//!   `TT ‖ orig-domain ‖ orig-local` (SRS0) or `first-domain ‖ opaque`
//!   (SRS1, `opaque` keeping its leading separator). Past the 27 characters
//!   the 20-byte MAC yields, libsrs2 pads with `A`, and so do we.
//!
//! Reversal accepts any case in the whole address (the MAC covers lowercased
//! data, the hash is compared case-insensitively, as libsrs2 does), `-_` for
//! `+/`, `=`, `-` or `+` after the tag, a hash of at least `hash_length`
//! characters (longer ones, as a forwarder configured with a longer hash
//! mints, must match on every character), and any configured secret
//! (rotation: the first signs). The domain of an SRS address is not checked
//! (routing decided that it is ours), again like libsrs2. A timestamp is
//! valid while `(today - TT) mod 1024 <= max_age in whole days`: an address
//! minted on day D is accepted through day D + 21 with the default 21 days,
//! and, as in libsrs2, a timestamp "in the future" counts as almost 1024
//! days old.

use aws_lc_rs::hmac;
use base64::Engine;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

const DAY_SECS: u64 = 86_400;
/// Distinct timestamps: two base32 characters.
const TIME_SLOTS: u64 = 1024;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Separators libsrs2 accepts after the `SRS0`/`SRS1` tag.
const TAG_SEPARATORS: &[u8] = b"=-+";
/// Longest hash: 27 characters of the 20-byte MAC plus libsrs2's `A` pad.
const MAX_HASH: usize = 28;

#[derive(Debug, thiserror::Error)]
pub enum SrsError {
    #[error("not an SRS address")]
    NotSrs,
    #[error("malformed SRS address")]
    Malformed,
    #[error("SRS address hash does not verify")]
    BadHash,
    #[error("SRS address has expired")]
    Expired,
    #[error("SRS secrets: {0}")]
    Secrets(String),
}

/// An SRS signer/verifier: the SRS domain, the secrets (the first signs, all
/// verify), the hash length and the maximum age. Cheap to clone.
#[derive(Clone)]
pub struct Srs {
    inner: Arc<Inner>,
}

struct Inner {
    domain: String,
    keys: Vec<hmac::Key>,
    hash_length: usize,
    /// Shortest hash accepted on reversal (at most `hash_length`).
    min_hash_length: usize,
    max_age_days: u64,
}

impl fmt::Debug for Srs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srs")
            .field("domain", &self.inner.domain)
            .field("secrets", &self.inner.keys.len())
            .field("hash_length", &self.inner.hash_length)
            .field("max_age_days", &self.inner.max_age_days)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Srs0,
    Srs1,
}

/// `SRS0`/`SRS1` (any case) followed by a separator at the start of `local`.
fn srs_tag(local: &str) -> Option<Tag> {
    let head = local.as_bytes().get(..5)?;
    if !head[..3].eq_ignore_ascii_case(b"SRS") || !TAG_SEPARATORS.contains(&head[4]) {
        return None;
    }
    match head[3] {
        b'0' => Some(Tag::Srs0),
        b'1' => Some(Tag::Srs1),
        _ => None,
    }
}

/// The day-number timestamp of `unix_secs`: two base32 characters.
fn timestamp(unix_secs: u64) -> [u8; 2] {
    let day = unix_secs / DAY_SECS;
    [
        BASE32[((day >> 5) & 31) as usize],
        BASE32[(day & 31) as usize],
    ]
}

/// The day number (mod 1024) of a two-character timestamp, any case.
fn parse_timestamp(stamp: &str) -> Option<u64> {
    let bytes = stamp.as_bytes();
    if bytes.len() != 2 {
        return None;
    }
    let mut then = 0u64;
    for b in bytes {
        let value = BASE32.iter().position(|c| *c == b.to_ascii_uppercase())?;
        then = (then << 5) | value as u64;
    }
    Some(then)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Srs {
    /// An SRS instance for `domain`. The first secret signs, all verify.
    /// `hash_length` is clamped to 1..=28; `max_age` counts in whole days
    /// (the timestamp's resolution), rounded down.
    ///
    /// # Panics
    /// If `secrets` is empty (`from_config` never passes none).
    pub fn new(domain: &str, secrets: Vec<Vec<u8>>, hash_length: usize, max_age: Duration) -> Srs {
        assert!(!secrets.is_empty(), "SRS needs at least one secret");
        let keys = secrets
            .iter()
            .map(|s| hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s))
            .collect();
        Srs {
            inner: Arc::new(Inner {
                domain: domain.to_string(),
                keys,
                hash_length: hash_length.clamp(1, MAX_HASH),
                min_hash_length: hash_length.clamp(1, MAX_HASH),
                max_age_days: max_age.as_secs() / DAY_SECS,
            }),
        }
    }

    /// This instance, accepting on reversal hashes down to `min` characters
    /// (clamped to 1..=`hash_length`): addresses minted before the hash
    /// length was raised still come back.
    pub fn with_min_hash_length(self, min: usize) -> Srs {
        let inner = &self.inner;
        Srs {
            inner: Arc::new(Inner {
                domain: inner.domain.clone(),
                keys: inner.keys.clone(),
                hash_length: inner.hash_length,
                min_hash_length: min.clamp(1, inner.hash_length),
                max_age_days: inner.max_age_days,
            }),
        }
    }

    /// The instance the configuration describes: the secrets of
    /// `srs.secrets` followed by those of `srs.secrets_file` (one a line,
    /// taken verbatim as postsrsd does; blank lines and `#` comments
    /// skipped), or with neither, the one in data_dir/srs.secret, generated
    /// (random, 0600) on first use.
    pub fn from_config(config: &crate::config::Config) -> Result<Srs, SrsError> {
        let mut secrets: Vec<Vec<u8>> = config
            .srs
            .secrets
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        if let Some(file) = &config.srs.secrets_file {
            secrets.extend(read_secret_file(file)?);
        }
        if secrets.is_empty() {
            secrets = generated_secret(&generated_secret_path(config))?;
        }
        Ok(Srs::new(
            config.srs_domain(),
            secrets,
            config.srs.hash_length,
            config.srs.max_age.0,
        )
        .with_min_hash_length(config.srs_hash_min_length()))
    }

    /// The SRS domain (right-hand side of the addresses minted).
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// `sender` rewritten into an SRS address of ours, timestamped now.
    pub fn forward(&self, sender: &str) -> String {
        self.forward_at(sender, now_secs())
    }

    /// `sender` rewritten into an SRS address of ours, timestamped with the
    /// day of `unix_secs`. Returned unchanged: the null sender and anything
    /// without a non-empty local part and domain around its last `@`,
    /// senders already in the SRS domain (libsrs2 without "always rewrite"),
    /// and senders whose domain holds `=` (not representable).
    pub fn forward_at(&self, sender: &str, unix_secs: u64) -> String {
        let Some((local, host)) = sender.rsplit_once('@') else {
            return sender.to_string();
        };
        if local.is_empty()
            || host.is_empty()
            || host.contains('=')
            || host.eq_ignore_ascii_case(&self.inner.domain)
        {
            return sender.to_string();
        }
        let alias = &self.inner.domain;
        match srs_tag(local) {
            Some(Tag::Srs1) => {
                // SRS1=hash=first-host=opaque: re-sign the inner part.
                if let Some((_, rest)) = local[5..].split_once('=')
                    && let Some((first_host, opaque)) = rest.split_once('=')
                    && !first_host.is_empty()
                    && !opaque.is_empty()
                {
                    let hash = self.hash_text(0, &[first_host.as_bytes(), opaque.as_bytes()]);
                    return format!("SRS1={hash}={first_host}={opaque}@{alias}");
                }
            }
            Some(Tag::Srs0) => {
                // The opaque part keeps the separator after the tag.
                let opaque = &local[4..];
                let hash = self.hash_text(0, &[host.as_bytes(), opaque.as_bytes()]);
                return format!("SRS1={hash}={host}={opaque}@{alias}");
            }
            None => {}
        }
        let stamp = timestamp(unix_secs);
        let hash = self.hash_text(0, &[&stamp, host.as_bytes(), local.as_bytes()]);
        let stamp = std::str::from_utf8(&stamp).unwrap_or("AA");
        format!("SRS0={hash}={stamp}={host}={local}@{alias}")
    }

    /// The address an SRS address of ours stands for, checked now.
    pub fn reverse(&self, address: &str) -> Result<String, SrsError> {
        self.reverse_at(address, now_secs())
    }

    /// The address an SRS address of ours stands for, checked at
    /// `unix_secs`: for SRS0 the original sender, for SRS1 the SRS0 address
    /// at the first forwarder's domain.
    pub fn reverse_at(&self, address: &str, unix_secs: u64) -> Result<String, SrsError> {
        let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
        let tag = srs_tag(local).ok_or(SrsError::NotSrs)?;
        let rest = &local[5..];
        match tag {
            Tag::Srs0 => {
                let (hash, rest) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                let (stamp, rest) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                let (host, user) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                if hash.is_empty() || host.is_empty() || user.is_empty() {
                    return Err(SrsError::Malformed);
                }
                let then = parse_timestamp(stamp).ok_or(SrsError::Malformed)?;
                self.verify(hash, &[stamp.as_bytes(), host.as_bytes(), user.as_bytes()])?;
                let today = (unix_secs / DAY_SECS) % TIME_SLOTS;
                let age = (today + TIME_SLOTS - then) % TIME_SLOTS;
                if age > self.inner.max_age_days {
                    return Err(SrsError::Expired);
                }
                Ok(format!("{user}@{host}"))
            }
            Tag::Srs1 => {
                let (hash, rest) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                let (host, opaque) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                if hash.is_empty() || host.is_empty() || opaque.is_empty() {
                    return Err(SrsError::Malformed);
                }
                self.verify(hash, &[host.as_bytes(), opaque.as_bytes()])?;
                Ok(format!("SRS0{opaque}@{host}"))
            }
        }
    }

    /// True when the local part (left of the last `@`) starts with `SRS0` or
    /// `SRS1`, any case, followed by `=`, `-` or `+`.
    pub fn is_srs_address(address: &str) -> bool {
        let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
        srs_tag(local).is_some()
    }

    /// libsrs2's hash with secret `index`: base64 of the MAC of the
    /// lowercased parts, 28 characters (the last one the `A` pad).
    fn full_hash(&self, index: usize, parts: &[&[u8]]) -> [u8; MAX_HASH] {
        let mut ctx = hmac::Context::with_key(&self.inner.keys[index]);
        for part in parts {
            ctx.update(&part.to_ascii_lowercase());
        }
        let tag = ctx.sign();
        // 20 bytes and a zero byte: 28 characters, no padding; the 28th is
        // the `A` libsrs2 produces when it reads past the digest.
        let mut input = [0u8; 21];
        input[..20].copy_from_slice(tag.as_ref());
        let mut out = [0u8; MAX_HASH];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(input, &mut out)
            .unwrap_or(0);
        debug_assert_eq!(written, MAX_HASH);
        out
    }

    fn hash_text(&self, index: usize, parts: &[&[u8]]) -> String {
        let full = self.full_hash(index, parts);
        String::from_utf8_lossy(&full[..self.inner.hash_length]).into_owned()
    }

    /// Checks `presented` against every secret: at least `min_hash_length`
    /// characters, all matching, any case, `-_` standing for `+/`.
    fn verify(&self, presented: &str, parts: &[&[u8]]) -> Result<(), SrsError> {
        let len = presented.len();
        if len < self.inner.min_hash_length || len > MAX_HASH {
            return Err(SrsError::BadHash);
        }
        let normalized: Vec<u8> = presented
            .bytes()
            .map(|b| match b {
                b'-' => b'+',
                b'_' => b'/',
                b => b.to_ascii_lowercase(),
            })
            .collect();
        let mut ok = subtle::Choice::from(0);
        for index in 0..self.inner.keys.len() {
            let expected = self.full_hash(index, parts).to_ascii_lowercase();
            ok |= expected[..len].ct_eq(&normalized);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(SrsError::BadHash)
        }
    }
}

/// Path of the secret generated when none is configured.
pub fn generated_secret_path(config: &crate::config::Config) -> PathBuf {
    config.data_dir.join("srs.secret")
}

/// The secrets of a file: one a line, verbatim but for the line end (as
/// postsrsd reads its secret file), blank lines and `#` comments skipped.
fn read_secret_file(path: &Path) -> Result<Vec<Vec<u8>>, SrsError> {
    let text = crate::files::read_secret_string(path).map_err(|e| {
        SrsError::Secrets(format!(
            "cannot read SRS secret file {}: {e}",
            path.display()
        ))
    })?;
    let secrets: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() {
        return Err(SrsError::Secrets(format!(
            "SRS secret file {} holds no secret",
            path.display()
        )));
    }
    if secrets.iter().any(|s| s.len() < 8) {
        tracing::warn!(path = %path.display(), "an SRS secret is shorter than 8 characters");
    }
    Ok(secrets)
}

/// The secret in `path`, created (random, 0600) if there is none yet. The
/// file is written aside and linked into place, so concurrent first uses
/// agree on one secret.
fn generated_secret(path: &Path) -> Result<Vec<Vec<u8>>, SrsError> {
    // The relay's own: made 0600 if an older version left it wider.
    let own = |path: &Path| {
        crate::files::restrict_own_file(path)
            .map_err(|e| SrsError::Secrets(format!("cannot restrict {}: {e}", path.display())))?;
        read_secret_file(path)
    };
    if path.exists() {
        return own(path);
    }
    let secret = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let write_error = |e: String| {
        SrsError::Secrets(format!(
            "cannot write generated SRS secret {}: {e}",
            path.display()
        ))
    };
    match crate::files::write_secret_new(path, format!("{secret}\n").as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return own(path),
        written => written.map_err(|e| write_error(e.to_string()))?,
    }
    tracing::info!(path = %path.display(), "generated an SRS secret");
    Ok(vec![secret.into_bytes()])
}

#[cfg(test)]
#[path = "srs_tests.rs"]
mod tests;
