//! `config check`: the config parses, and what parsing cannot tell, which
//! `serve` would otherwise only hit at start (or never): the certificate
//! and keys load, the secret files of SRS and activation are readable and
//! private, `outbound.tls = "verified"` has trusted roots to verify with;
//! and a warning when the config file itself, readable by every user of
//! the machine, holds secrets inline.

use crate::config::{Config, ConfigError, TlsPolicy};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn shown(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// `srs.secrets_file`, `chain.activation_secret_file`,
/// `dns_provisioning.redis_password_file` and `cluster.database_url_file`
/// can be read as `serve` reads them (present, private, owned by the
/// relay's user or root).
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
    if let Some(file) = &config.dns_provisioning.redis_password_file {
        crate::files::read_secret_string(file).map_err(|e| ConfigError::Invalid {
            key: "dns_provisioning.redis_password_file".into(),
            value: shown(file),
            reason: format!("cannot read the Redis password: {e}"),
        })?;
    }
    cluster_settings(config)
}

/// `[cluster]`'s database URL (or its file: present, private) and CA file
/// can be used as a node would use them; nothing is connected to.
fn cluster_settings(config: &Config) -> Result<(), ConfigError> {
    use crate::cluster::ClusterError;
    let cluster = &config.cluster;
    if cluster.database_url.is_empty() && cluster.database_url_file.is_none() {
        return Ok(());
    }
    let Err(e) = crate::cluster::check(cluster) else {
        return Ok(());
    };
    let url = || format!("{:?}", crate::config::redacted(&cluster.database_url));
    let (key, value) = match &e {
        ClusterError::UrlFile { path, .. } => ("cluster.database_url_file", shown(path)),
        ClusterError::CaFile { path, .. } => ("cluster.ca_file", shown(path)),
        ClusterError::Tls { .. } => match &cluster.ca_file {
            Some(path) => ("cluster.ca_file", shown(path)),
            None => ("cluster.database_url", url()),
        },
        _ => match &cluster.database_url_file {
            Some(path) => ("cluster.database_url_file", shown(path)),
            None => ("cluster.database_url", url()),
        },
    };
    // The error's own text (the URL in it redacted) says why.
    Err(ConfigError::Invalid {
        key: key.into(),
        value,
        reason: e.to_string(),
    })
}

/// Whether a database URL holds a password: `user:password@` or a
/// `password=` parameter.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let userinfo_password = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    userinfo_password || url.contains("password=")
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
        // postgres://user:password@host or ?password=: a password in the URL.
        (
            "cluster.database_url",
            url_has_password(&config.cluster.database_url),
        ),
        // redis://user:password@host: a password in the URL.
        (
            "dns_provisioning.redis_url",
            config.dns_provisioning.redis_url.contains('@'),
        ),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

/// A warning when `path` may be read by every user of the machine and
/// holds secrets inline. A warning, not a refusal: configs under /etc are
/// often 0644, and refusing would stop such a relay on upgrade.
pub(super) fn inline_secrets_exposed(path: &Path, config: &Config) -> Option<String> {
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

/// `config check [FILE]`: exit 0 when the config is usable as `serve` would
/// use it, 2 (saying what is wrong) otherwise.
pub(super) fn config_check(path: Option<&PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("eas-relay: config check needs a file (argument or --config)");
        return ExitCode::from(2);
    };
    match Config::load(path).and_then(|config| check_files(&config).map(|()| config)) {
        Ok(config) => {
            if let Some(warning) = inline_secrets_exposed(path, &config) {
                eprintln!("warning: {warning}");
            }
            out!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// What parsing cannot tell: whether the files the config names can be
/// used as `serve` will use them (certificate and key, admin key file).
fn check_files(config: &Config) -> Result<(), ConfigError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key)
        && config.smtp.starttls
    {
        use crate::tls::TlsError;
        match crate::tls::server_config(Some(cert), Some(key), &config.data_dir, &config.hostname) {
            Ok(_) => {}
            Err(TlsError::Load { what, reason, .. }) => {
                let (name, path) = match what {
                    "key" => ("tls.key", key),
                    _ => ("tls.cert", cert),
                };
                return Err(ConfigError::Invalid {
                    key: name.into(),
                    value: shown(path),
                    reason: format!("cannot read the TLS {what}: {reason}"),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    key: "tls.key".into(),
                    value: shown(key),
                    reason: e.to_string(),
                });
            }
        }
    }
    secret_files(config)?;
    outbound_roots(config)?;
    if let Some(file) = &config.http.admin_keys_file
        && let Err(e) = crate::api::keys::load_keys(config, false)
    {
        return Err(ConfigError::Invalid {
            key: "http.admin_keys_file".into(),
            value: shown(file),
            reason: e.to_string(),
        });
    }
    if let (Some(file), crate::config::TlsPolicy::Verified) =
        (&config.outbound.tls_ca_file, config.outbound.tls)
        && let Err(e) = crate::tls::verifying_client_config(Some(file))
    {
        return Err(ConfigError::Invalid {
            key: "outbound.tls_ca_file".into(),
            value: shown(file),
            reason: e.to_string(),
        });
    }
    if let Some(file) = &config.dns_provisioning.redis_ca_file
        && let Err(e) = crate::provision::load_ca(file)
    {
        return Err(ConfigError::Invalid {
            key: "dns_provisioning.redis_ca_file".into(),
            value: shown(file),
            reason: e.to_string(),
        });
    }
    // Configured DKIM keys must load (generated ones are made at start).
    if !config.dkim.keys.is_empty() {
        use crate::rewrite::keys::{DkimKeyError, load};
        match load(config) {
            Ok(_) => {}
            Err(DkimKeyError::Read { key, path, source }) => {
                return Err(ConfigError::Invalid {
                    key,
                    value: shown(&path),
                    reason: format!("cannot read the DKIM key: {source}"),
                });
            }
            Err(DkimKeyError::Invalid { key, path, reason }) => {
                return Err(ConfigError::Invalid {
                    key,
                    value: shown(&path),
                    reason: format!("not a usable DKIM key: {reason}"),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    key: "dkim.keys".into(),
                    value: "(keys)".into(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}
