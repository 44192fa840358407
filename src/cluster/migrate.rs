//! The schema of the shared database: versioned SQL migrations
//! (`migrations/V<n>__<name>.sql`, embedded in the binary by `refinery`),
//! applied at start under a session advisory lock, so that N nodes starting
//! at once migrate once: the first takes the lock and applies what is
//! missing, in one transaction; the others wait for it, then find nothing
//! to do. A database migrated by a newer binary (a migration unknown here)
//! or whose applied migration differs from ours is refused, never changed.

use super::{ClusterError, Db};
use deadpool_postgres::Object;
use refinery::error::Kind;

mod embedded {
    refinery::embed_migrations!("src/cluster/migrations");
}

/// Key of the session advisory lock held while migrating ("eas_migr").
pub const MIGRATION_LOCK: i64 = 0x6561_735f_6d69_6772;

/// Refinery's table of applied migrations, named for this program.
pub const HISTORY_TABLE: &str = "eas_schema_history";

impl Db {
    /// Applies the embedded migrations the database lacks; returns their
    /// names (`V1__init`), empty when it was up to date.
    pub async fn migrate(&self) -> Result<Vec<String>, ClusterError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(&e))?;
        let outcome = self.run_locked(&mut client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        if outcome.is_err() || unlocked.is_err() {
            // The lock belongs to the session: ending it (this connection
            // leaves the pool and closes) releases the lock whatever state
            // a failed run left the connection in.
            drop(Object::take(client));
        }
        if outcome.is_ok() {
            // Ignored when already set: another task migrated meanwhile.
            let _ = self.schema.set(());
        }
        outcome
    }

    /// Migrates the schema unless this process already did (writes call
    /// it first: the offline CLI has no start that would have).
    pub(crate) async fn ensure_schema(&self) -> Result<(), ClusterError> {
        self.schema
            .get_or_try_init(|| async { self.migrate().await.map(|_| ()) })
            .await
            .map(|_| ())
    }

    async fn run_locked(&self, client: &mut Object) -> Result<Vec<String>, ClusterError> {
        let report = embedded::migrations::runner()
            .set_grouped(true)
            .set_migration_table_name(HISTORY_TABLE)
            .run_async(&mut ***client)
            .await
            .map_err(|e| self.migration_error(e))?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect())
    }

    fn migration_error(&self, e: refinery::Error) -> ClusterError {
        match e.kind() {
            Kind::MissingVersion(m) => ClusterError::SchemaNewer {
                version: m.to_string(),
            },
            Kind::DivergentVersion(applied, ours) => ClusterError::SchemaDiverged {
                version: applied.to_string(),
                reason: format!("the database applied {applied}, this binary has {ours}"),
            },
            Kind::Connection(what, source) => {
                match source.downcast_ref::<tokio_postgres::Error>() {
                    Some(pg) => match self.error(pg) {
                        ClusterError::Query { code, reason } => {
                            ClusterError::Migration(format!("{what}: {reason} (SQLSTATE {code})"))
                        }
                        other => other,
                    },
                    None => ClusterError::Migration(
                        self.target.secret.scrub(format!("{what}: {source}")),
                    ),
                }
            }
            other => ClusterError::Migration(self.target.secret.scrub(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_migrations_are_versioned_and_v1_is_the_schema() {
        let runner = embedded::migrations::runner();
        let all = runner.get_migrations();
        assert!(!all.is_empty());
        let first = all.iter().find(|m| m.version() == 1).expect("V1");
        assert_eq!(first.name(), "init");
        let sql = first.sql().expect("embedded SQL");
        for table in [
            "domains",
            "static_aliases",
            "chain_reveals",
            "suspensions",
            "dns_work",
            "delivery_log",
            "changes",
            "nodes",
        ] {
            assert!(
                sql.contains(&format!("CREATE TABLE {table} (")),
                "V1 lacks {table}"
            );
        }
        // The lock keys of this file and of eas_record_change differ.
        assert!(sql.contains("pg_advisory_xact_lock(7305246924098530919)"));
        assert_ne!(MIGRATION_LOCK, 7305246924098530919);
    }
}
