//! From `[cluster]` to a pool of connections: the URL (inline, or read
//! from its private file), parsed and checked; TLS with rustls when
//! `sslmode` asks for it, trusting only `ca_file`'s certificates when one
//! is given (a private CA) or else the system's roots; the pool with its
//! deadlines. Nothing here is logged with the password: see `error.rs`.

use super::error::{ClusterError, Secret, Target};
use crate::config::{ClusterConfig, SslMode, check_database_url, redacted};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::Host;

/// Largest URL file and CA file read: a line, a few certificates.
const MAX_URL_BYTES: usize = 4096;

/// What a dedicated connection outside the pool is opened with (the
/// change feed's, which must see its notifications).
pub(crate) struct Direct {
    pub pg: tokio_postgres::Config,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Deadline of opening it and of each statement the feed runs.
    pub timeout: Duration,
}

/// Everything needed to open connections, checked.
pub(crate) struct Settings {
    pub pg: tokio_postgres::Config,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    pub target: Target,
    pub connect_timeout: Duration,
    pub pool_size: usize,
}

/// The database URL of `config`: `database_url`, or the content of
/// `database_url_file` (a secret file: private to the relay's user)
/// without surrounding white space.
fn database_url(config: &ClusterConfig) -> Result<String, ClusterError> {
    let Some(path) = &config.database_url_file else {
        if config.database_url.is_empty() {
            return Err(ClusterError::Url {
                url: "\"\"".into(),
                reason: "set cluster.database_url or cluster.database_url_file".into(),
            });
        }
        return Ok(config.database_url.clone());
    };
    let fail = |reason: String| ClusterError::UrlFile {
        path: path.clone(),
        reason,
    };
    let text = crate::files::read_secret_string(path).map_err(|e| fail(e.to_string()))?;
    if text.len() > MAX_URL_BYTES {
        return Err(fail(format!("larger than {MAX_URL_BYTES} bytes")));
    }
    let url = text.trim();
    if url.is_empty() {
        return Err(fail("the file holds no URL".into()));
    }
    if url.contains(['\n', '\r']) {
        return Err(fail("the file must hold the URL alone, on one line".into()));
    }
    Ok(url.to_string())
}

/// `url` with `sslmode=verify-ca|verify-full` written as `require`, which
/// is what the driver knows; we verify the certificate and host name in
/// every TLS mode.
fn driver_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let params: Vec<&str> = query
        .split('&')
        .map(|p| match p {
            "sslmode=verify-ca" | "sslmode=verify-full" => "sslmode=require",
            other => other,
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The PEM certificates of `ca_file`: at least one, nothing unparsable.
fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    crate::tls::read_ca_file(path)
        .map(|(_, certs)| certs)
        .map_err(|reason| ClusterError::CaFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// The rustls client of TLS to PostgreSQL: `ca_file`'s certificates alone
/// when given, else the system's roots.
fn tls_connector(
    ca_file: Option<&Path>,
    target: &Target,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ClusterError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_ca(path)? {
                roots.add(cert).map_err(|e| ClusterError::CaFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(ClusterError::Tls {
            target: target.shown.clone(),
            reason: "no trusted root certificate on this system: install the CA certificates or set cluster.ca_file".into(),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Tls {
            target: target.shown.clone(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Where `pg` connects, for messages (`host:port`, or the socket's dir).
fn shown_target(pg: &tokio_postgres::Config) -> Option<String> {
    let host = match pg.get_hosts().first()? {
        Host::Tcp(name) => name.clone(),
        Host::Unix(dir) => dir.display().to_string(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Reads and checks `[cluster]`'s connection settings (the URL file, the
/// URL, the CA file); opens nothing.
pub(crate) fn settings(config: &ClusterConfig) -> Result<Settings, ClusterError> {
    let url = database_url(config)?;
    let bad = |reason: String| ClusterError::Url {
        url: format!("{:?}", redacted(&url)),
        reason,
    };
    let mode = check_database_url(&url).map_err(bad)?;
    // The driver's parse errors name the option, never its value; the
    // scrub below is for a password that would still appear.
    let mut pg = tokio_postgres::Config::from_str(&driver_url(&url)).map_err(|e| {
        let reason = e.to_string();
        let reason = match std::error::Error::source(&e) {
            Some(s) => format!("{reason}: {s}"),
            None => reason,
        };
        bad(reason)
    })?;
    let secret = Secret::new(pg.get_password());
    let bad = |reason: &str| ClusterError::Url {
        url: format!("{:?}", redacted(&url)),
        reason: secret.scrub(reason.to_string()),
    };
    let shown = shown_target(&pg).ok_or_else(|| bad("names no host"))?;
    let user = pg
        .get_user()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("names no user (postgres://user:password@host/database)"))?
        .to_string();
    let database = pg.get_dbname().unwrap_or(&user).to_string();
    if pg.get_application_name().is_none() {
        pg.application_name("eas-relay");
    }
    pg.connect_timeout(config.connect_timeout.0);
    let target = Target {
        shown,
        user,
        database,
        secret: secret.clone(),
    };
    let tls = match mode {
        SslMode::Disable => {
            if config.ca_file.is_some() {
                return Err(bad(
                    "cluster.ca_file is set but the URL has no sslmode=require: nothing would check the certificate",
                ));
            }
            // No sslmode means the driver's `prefer`; with no TLS
            // connector that is plain TCP. Said explicitly.
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        SslMode::Require => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(tls_connector(config.ca_file.as_deref(), &target)?)
        }
    };
    Ok(Settings {
        pg,
        tls,
        target,
        connect_timeout: config.connect_timeout.0,
        pool_size: config.pool_size,
    })
}

/// The pool of `settings`: at most `pool_size` connections; getting one
/// waits at most twice the connect deadline (opening it includes TLS and
/// the login); a connection handed out again is checked with a round trip
/// (one that died with a server restart is replaced, not handed out).
pub(crate) fn pool(settings: &Settings) -> Result<Pool, ClusterError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let manager = match &settings.tls {
        Some(tls) => Manager::from_config(settings.pg.clone(), tls.clone(), manager_config),
        None => Manager::from_config(settings.pg.clone(), tokio_postgres::NoTls, manager_config),
    };
    let limit = settings.connect_timeout.saturating_mul(2);
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(limit))
        .wait_timeout(Some(limit))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| ClusterError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_become_the_drivers_require() {
        assert_eq!(
            driver_url("postgres://h/d?a=1&sslmode=verify-full"),
            "postgres://h/d?a=1&sslmode=require"
        );
        assert_eq!(driver_url("postgres://h/d"), "postgres://h/d");
    }

    fn config(url: &str) -> ClusterConfig {
        ClusterConfig {
            database_url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn settings_check_the_url_without_showing_the_password() {
        let s = settings(&config("postgres://eas:s3cret@db.example:6543/relay")).unwrap();
        assert_eq!(s.target.shown, "db.example:6543");
        assert_eq!(s.target.user, "eas");
        assert_eq!(s.target.database, "relay");
        assert!(s.tls.is_none());
        assert_eq!(
            s.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        for url in [
            "postgres://eas:s3cret@db/relay?port=notaport",
            "postgres://:s3cret@db/relay",
            "postgres://eas:s3cret@db/relay?sslmode=prefer",
        ] {
            let e = settings(&config(url)).err().expect(url).to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("cluster.database_url"), "{e}");
        }
    }

    #[test]
    fn the_url_file_is_a_private_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.url");
        std::fs::write(&path, "postgres://eas:s3cret@db/relay\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = ClusterConfig {
            database_url_file: Some(path.clone()),
            ..Default::default()
        };
        let e = settings(&c).err().expect("a 0644 URL file").to_string();
        assert!(
            e.contains("cluster.database_url_file") && e.contains("0644"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = settings(&c).unwrap();
        assert_eq!(s.target.user, "eas");
        std::fs::write(&path, "\n").unwrap();
        let e = settings(&c).err().expect("an empty URL file").to_string();
        assert!(e.contains("holds no URL"), "{e}");
    }
}
