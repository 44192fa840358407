//! Why the shared database cannot be used ([`ClusterError`]), sorted into
//! what an operator must fix (a bad URL, a refused login, a schema this
//! binary does not know) and what passes by itself (the server down or
//! slow, a dropped connection): [`ClusterError::is_temporary`]. An error
//! not recognized is temporary, so a caller retries rather than gives up.
//!
//! No message carries the password: URLs are shown through
//! [`crate::config::redacted`], and the texts of the driver's errors pass
//! through [`Secret::scrub`] before they are kept.

use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL cannot be used (shown redacted).
    #[error("cluster.database_url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read cluster.database_url_file {path}: {reason}")]
    UrlFile { path: PathBuf, reason: String },
    #[error("cannot read cluster.ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// No connection: refused, reset, no route, name not resolved.
    #[error("PostgreSQL at {target} is unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("PostgreSQL at {target} did not answer within {limit:?}")]
    Timeout { target: String, limit: Duration },
    /// The TLS handshake failed (certificate not trusted, wrong host name,
    /// the server does not speak TLS).
    #[error("TLS with PostgreSQL at {target} failed: {reason}")]
    Tls { target: String, reason: String },
    /// The server refused the login (wrong password, unknown user, not
    /// allowed by pg_hba.conf).
    #[error("PostgreSQL at {target} refused the login of user {user:?}: {reason}")]
    Login {
        target: String,
        user: String,
        reason: String,
    },
    #[error("PostgreSQL at {target} has no database {database:?}")]
    NoDatabase { target: String, database: String },
    /// The database holds migrations this binary does not have: a newer
    /// node migrated it.
    #[error(
        "the database schema is newer than this eas-relay (it has migration {version}, unknown here): upgrade this node"
    )]
    SchemaNewer { version: String },
    /// A migration applied in the database differs from this binary's.
    #[error("migration {version} in the database differs from this eas-relay's: {reason}")]
    SchemaDiverged { version: String, reason: String },
    #[error("node id {0:?} is not a valid cluster.node_id")]
    NodeId(String),
    #[error("migrating the database failed: {0}")]
    Migration(String),
    /// A statement failed for a reason the server gave (SQLSTATE `code`).
    #[error("PostgreSQL refused a statement ({code}): {reason}")]
    Query { code: String, reason: String },
    /// Anything else (treated as temporary).
    #[error("PostgreSQL error: {0}")]
    Other(String),
}

impl ClusterError {
    /// Whether waiting and trying again may succeed without an operator.
    pub fn is_temporary(&self) -> bool {
        match self {
            ClusterError::Unreachable { .. }
            | ClusterError::Timeout { .. }
            | ClusterError::Other(_) => true,
            // Serialization failures, deadlocks, too many connections, the
            // server shutting down, a statement cancelled by its timeout:
            // classes 40, 53, 57 and 08; a lock not had within the write's
            // lock_timeout (55P03).
            ClusterError::Query { code, .. } => {
                ["40", "53", "57", "08"].iter().any(|c| code.starts_with(c)) || code == "55P03"
            }
            _ => false,
        }
    }

    /// Whether the server refused the write itself for a reason that does
    /// not pass by itself (a constraint, a schema changed by hand; or a
    /// node id the database would not take): the write is wrong, not the
    /// database away.
    pub fn is_refused_write(&self) -> bool {
        matches!(self, ClusterError::Query { .. } | ClusterError::NodeId(_)) && !self.is_temporary()
    }
}

/// The password of the URL in use, kept only to scrub it out of messages.
#[derive(Clone, Default)]
pub(crate) struct Secret(Option<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub(crate) fn new(password: Option<&[u8]>) -> Secret {
        Secret(
            password
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .filter(|p| !p.is_empty()),
        )
    }

    /// `text` with every occurrence of the password replaced by `***`
    /// (a driver that echoes a value must not leak it).
    pub(crate) fn scrub(&self, text: String) -> String {
        match &self.0 {
            Some(p) if text.contains(p.as_str()) => text.replace(p.as_str(), "***"),
            _ => text,
        }
    }
}

/// Where the pool connects, for messages: `host:port` and the login.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub shown: String,
    pub user: String,
    pub database: String,
    pub secret: Secret,
}

/// The error's text and the texts of its sources, joined (the driver's
/// top-level message alone, "error connecting to server", says little).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether `e` or one of its sources is rustls refusing the server (a
/// certificate not trusted, another host name, a protocol failure).
fn is_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether `e` or one of its sources is an I/O error (no connection, or
/// one lost, also in the middle of a TLS handshake).
fn is_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<std::io::Error>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// What the driver's own errors are, which it does not expose but names
/// at the start of its text.
enum DriverKind {
    /// The server refused TLS, or TLS could not start.
    Tls,
    /// No login can be made: "password missing", an authentication method
    /// or SCRAM exchange it cannot finish.
    Login,
}

fn driver_kind(e: &tokio_postgres::Error) -> Option<DriverKind> {
    let text = e.to_string();
    if text.starts_with("error performing TLS handshake") {
        Some(DriverKind::Tls)
    } else if text.starts_with("invalid configuration") || text.starts_with("authentication error")
    {
        Some(DriverKind::Login)
    } else {
        None
    }
}

impl Target {
    /// Sorts a driver error into a [`ClusterError`].
    pub(crate) fn classify(&self, e: &tokio_postgres::Error) -> ClusterError {
        let reason = self.secret.scrub(chain_text(e));
        let target = self.shown.clone();
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return ClusterError::Login {
                    target,
                    user: self.user.clone(),
                    reason,
                };
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return ClusterError::NoDatabase {
                    target,
                    database: self.database.clone(),
                };
            }
            return ClusterError::Query {
                code: code.code().to_string(),
                reason,
            };
        }
        if is_rustls(e) {
            return ClusterError::Tls { target, reason };
        }
        if is_io(e) || e.is_closed() {
            return ClusterError::Unreachable { target, reason };
        }
        match driver_kind(e) {
            Some(DriverKind::Tls) => ClusterError::Tls { target, reason },
            Some(DriverKind::Login) => ClusterError::Login {
                target,
                user: self.user.clone(),
                reason,
            },
            None => ClusterError::Other(reason),
        }
    }

    /// Sorts an error of the pool.
    pub(crate) fn classify_pool(
        &self,
        e: &deadpool_postgres::PoolError,
        limit: Duration,
    ) -> ClusterError {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(e) => self.classify(e),
            PoolError::Timeout(_) => ClusterError::Timeout {
                target: self.shown.clone(),
                limit,
            },
            other => ClusterError::Other(self.secret.scrub(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_scrubbed_and_never_printed() {
        let s = Secret::new(Some(b"s3cret"));
        assert_eq!(s.scrub("bad s3cret here".into()), "bad *** here");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(Secret::new(None).scrub("s3cret".into()), "s3cret");
        assert_eq!(Secret::new(Some(b"")).scrub("x".into()), "x");
    }

    #[test]
    fn what_passes_by_itself_is_temporary() {
        let t = || "db:5432".to_string();
        assert!(
            ClusterError::Unreachable {
                target: t(),
                reason: "refused".into()
            }
            .is_temporary()
        );
        assert!(ClusterError::Other("?".into()).is_temporary());
        let query = |code: &str| ClusterError::Query {
            code: code.into(),
            reason: String::new(),
        };
        assert!(query("40001").is_temporary());
        assert!(query("53300").is_temporary());
        assert!(query("57P01").is_temporary());
        assert!(!query("42P01").is_temporary());
        // A refused write is the statement's fault, not the database away.
        assert!(query("23514").is_refused_write());
        assert!(!query("40001").is_refused_write());
        assert!(
            !ClusterError::Unreachable {
                target: t(),
                reason: "refused".into()
            }
            .is_refused_write()
        );
        assert!(
            !ClusterError::Login {
                target: t(),
                user: "eas".into(),
                reason: String::new()
            }
            .is_temporary()
        );
        assert!(
            !ClusterError::SchemaNewer {
                version: "V2".into()
            }
            .is_temporary()
        );
    }
}
