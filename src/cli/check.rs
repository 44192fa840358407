//! The checks of `config check` that `serve` would otherwise only hit at
//! start (or never): the secret files of SRS and activation are readable
//! and private, `outbound.tls = "verified"` has trusted roots to verify
//! with, and a warning when the config file itself, readable by every user
//! of the machine, holds secrets inline.

use crate::config::{Config, ConfigError, TlsPolicy};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn shown(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// `srs.secrets_file` and `chain.activation_secret_file` can be read as
/// `serve` reads them (present, private, owned by the relay's user or root).
pub(super) fn secret_files(config: &Config) -> Result<(), ConfigError> {
    if let Some(file) = &config.srs.secrets_file {
        // With a file configured nothing is generated: this only reads.
        if let Err(e) = crate::rewrite::srs::Srs::from_config(config) {
            return Err(ConfigError::Invalid {
                key: "srs.secrets_file".into(),
                value: shown(file),
                reason: e.to_string(),
            });
        }
    }
    if let Some(file) = &config.chain.activation_secret_file {
        let text = crate::files::read_secret_string(file).map_err(|e| ConfigError::Invalid {
            key: "chain.activation_secret_file".into(),
            value: shown(file),
            reason: format!("cannot read the activation secret: {e}"),
        })?;
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "chain.activation_secret_file".into(),
                value: shown(file),
                reason: "the file holds no secret".into(),
            });
        }
    }
    Ok(())
}

/// `outbound.tls = "verified"` without `outbound.tls_ca_file` needs the
/// system's roots: refused here, as `serve` would refuse to start.
pub(super) fn outbound_roots(config: &Config) -> Result<(), ConfigError> {
    if config.outbound.tls != TlsPolicy::Verified || config.outbound.tls_ca_file.is_some() {
        return Ok(());
    }
    crate::tls::verifying_client_config(None)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            key: "outbound.tls".into(),
            value: "\"verified\"".into(),
            reason: e.to_string(),
        })
}

/// The config keys that hold a secret inline and are set.
fn inline_secrets(config: &Config) -> Vec<&'static str> {
    [
        ("http.admin_keys", !config.http.admin_keys.is_empty()),
        ("srs.secrets", !config.srs.secrets.is_empty()),
        (
            "chain.activation_secret",
            !config.chain.activation_secret.is_empty(),
        ),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

/// A warning when `path` may be read by every user of the machine and
/// holds secrets inline. A warning, not a refusal: configs under /etc are
/// often 0644, and refusing would stop such a relay on upgrade.
pub fn inline_secrets_exposed(path: &Path, config: &Config) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    let keys = inline_secrets(config);
    (mode & 0o004 != 0 && !keys.is_empty()).then(|| {
        format!(
            "{} is readable by every user (mode {mode:04o}) and holds {} inline: chmod 600 (or 640 root:<relay group>) the file, or move them to the *_file keys",
            path.display(),
            keys.join(", ")
        )
    })
}
