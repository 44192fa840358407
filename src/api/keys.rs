//! Admin API keys: where they come from (config, a key file, or one
//! generated in data_dir/admin.key) and how a request proves it has one
//! (HTTP Basic `api:KEY`, also sent unencoded by some ImprovMX clients,
//! or `Authorization: Bearer KEY`), compared in constant time.

use crate::config::Config;
use base64::Engine;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("cannot read admin key file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("admin key file {0} holds no key")]
    Empty(PathBuf),
    #[error("cannot write generated admin key {0}: {1}")]
    Write(PathBuf, String),
}

/// Path of the key generated when none is configured.
pub(crate) fn generated_key_path(config: &Config) -> PathBuf {
    config.data_dir.join("admin.key")
}

/// The admin keys of this node. With none configured, the key in
/// data_dir/admin.key is used, created (0600) when `create` is set.
pub(crate) fn load_keys(config: &Config, create: bool) -> Result<Vec<String>, ApiKeyError> {
    let mut keys = config.http.admin_keys.clone();
    if let Some(file) = &config.http.admin_keys_file {
        keys.extend(read_key_file(file)?);
    }
    if !keys.is_empty() {
        return Ok(keys);
    }
    let path = generated_key_path(config);
    if path.exists() {
        // The relay's own: made 0600 if an older version left it wider.
        crate::files::restrict_own_file(&path).map_err(|e| ApiKeyError::Read(path.clone(), e))?;
        return read_key_file(&path);
    }
    if !create {
        return Ok(Vec::new());
    }
    let key: String = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    crate::tls::write_private(&path, format!("{key}\n").as_bytes())
        .map_err(|e| ApiKeyError::Write(path.clone(), e.to_string()))?;
    tracing::info!(path = %path.display(), "generated an admin API key");
    Ok(vec![key])
}

fn read_key_file(path: &Path) -> Result<Vec<String>, ApiKeyError> {
    let text = crate::files::read_secret_string(path)
        .map_err(|e| ApiKeyError::Read(path.to_path_buf(), e))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        return Err(ApiKeyError::Empty(path.to_path_buf()));
    }
    Ok(keys)
}

/// The key presented in an Authorization header, if any.
pub(crate) fn presented_key(header: &str) -> Option<String> {
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, credentials) = header.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| credentials.to_string());
    let (user, key) = decoded.split_once(':')?;
    (user == "api").then(|| key.to_string())
}

/// True when `presented` equals one of `keys` (constant time per key).
pub(crate) fn is_valid(presented: &str, keys: &[String]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for key in keys {
        ok |= presented.as_bytes().ct_eq(key.as_bytes());
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("api:secret");
        assert_eq!(
            presented_key(&format!("Basic {b64}")).as_deref(),
            Some("secret")
        );
        assert_eq!(presented_key("Basic api:secret").as_deref(), Some("secret"));
        assert_eq!(presented_key("BASIC api:secret").as_deref(), Some("secret"));
        assert_eq!(presented_key("bearer secret").as_deref(), Some("secret"));
        assert_eq!(presented_key("Bearer secret").as_deref(), Some("secret"));
        assert_eq!(presented_key("Basic user:secret"), None);
        assert_eq!(presented_key("Digest x"), None);
    }

    proptest::proptest! {
        /// Any Authorization header a client sends is parsed without a
        /// panic, and only `api` users yield a key.
        #[test]
        fn any_header_is_parsed_safely(header in "\\PC{0,80}") {
            if let Some(key) = presented_key(&header) {
                let lower = header.trim_start().to_ascii_lowercase();
                proptest::prop_assert!(lower.starts_with("bearer") || lower.starts_with("basic"));
                proptest::prop_assert!(header.contains(key.as_str()) || lower.starts_with("basic"));
            }
        }
    }

    #[test]
    fn key_comparison() {
        let keys = vec![
            "aaaaaaaaaaaaaaaa".to_string(),
            "bbbbbbbbbbbbbbbb".to_string(),
        ];
        assert!(is_valid("bbbbbbbbbbbbbbbb", &keys));
        assert!(!is_valid("bbbbbbbbbbbbbbb", &keys));
        assert!(!is_valid("", &keys));
        assert!(!is_valid("x", &[]));
    }

    #[test]
    fn generated_key_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert!(load_keys(&config, false).unwrap().is_empty());
        let first = load_keys(&config, true).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(load_keys(&config, false).unwrap(), first);
    }
}
