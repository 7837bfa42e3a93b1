//! Embedded schema migrations, one list per dialect.
//!
//! Each migration runs in its own transaction and is recorded with a checksum. A migration that
//! changed after it was applied, or a database newer than this binary, is refused with a message
//! saying so. On PostgreSQL, concurrent migrators (several replicas, or a Helm hook racing a pod)
//! are serialised by an advisory lock held for the whole run.

use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Row};

use super::{Dialect, Store, StoreError};
use crate::model::Timestamp;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "keys",
        sql: include_str!("../../../migrations/sqlite/0002_keys.sql"),
    },
    Migration {
        version: 3,
        name: "lifecycle",
        sql: include_str!("../../../migrations/sqlite/0003_lifecycle.sql"),
    },
    Migration {
        version: 4,
        name: "challenges",
        sql: include_str!("../../../migrations/sqlite/0004_challenges.sql"),
    },
    Migration {
        version: 5,
        name: "acme",
        sql: include_str!("../../../migrations/sqlite/0005_acme.sql"),
    },
    Migration {
        version: 6,
        name: "agents",
        sql: include_str!("../../../migrations/sqlite/0006_agents.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "keys",
        sql: include_str!("../../../migrations/postgres/0002_keys.sql"),
    },
    Migration {
        version: 3,
        name: "lifecycle",
        sql: include_str!("../../../migrations/postgres/0003_lifecycle.sql"),
    },
    Migration {
        version: 4,
        name: "challenges",
        sql: include_str!("../../../migrations/postgres/0004_challenges.sql"),
    },
    Migration {
        version: 5,
        name: "acme",
        sql: include_str!("../../../migrations/postgres/0005_acme.sql"),
    },
    Migration {
        version: 6,
        name: "agents",
        sql: include_str!("../../../migrations/postgres/0006_agents.sql"),
    },
];

/// Advisory lock key for migrations ("certctl" + 1).
const MIGRATION_LOCK_KEY: i64 = 0x6365_7274_6374_6c01;

pub fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Where the database schema stands relative to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest version applied in the database (0 for an empty database).
    pub applied: i64,
    /// Highest version this binary knows.
    pub latest: i64,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.applied == self.latest
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)";

async fn applied<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(conn: E) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect()
}

fn check_history(dialect: Dialect, applied: &[(i64, String)]) -> Result<(), StoreError> {
    let known = migrations(dialect);
    let latest = known.last().map_or(0, |m| m.version);
    for (version, sum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Schema(format!(
                    "the database schema is at version {version}, newer than this certctl \
                     knows (up to {latest}); run a newer certctl or restore a matching backup"
                )));
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::Schema(format!(
                    "migration {} ({}) differs from the one applied to this database; \
                     migrations must never be edited once released",
                    m.version, m.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Store {
    /// Reports the schema version without changing anything.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let exists: i64 = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?
            }
            Dialect::Postgres => {
                sqlx::query("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'schema_migrations' AND table_schema = current_schema()")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?
            }
        };
        let applied = if exists > 0 {
            applied(&mut *conn).await?
        } else {
            Vec::new()
        };
        check_history(self.dialect, &applied)?;
        Ok(SchemaStatus {
            applied: applied.last().map_or(0, |(v, _)| *v),
            latest: migrations(self.dialect).last().map_or(0, |m| m.version),
        })
    }

    /// Applies every pending migration. Returns the versions applied by this call.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            // Unlock even when migrating failed; a failed unlock closes the connection instead.
            if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await
            {
                tracing::warn!(error = %e, "could not release the migration lock; dropping the connection");
                conn.detach();
            }
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut PoolConnection<Any>) -> Result<Vec<i64>, StoreError> {
        sqlx::query(CREATE_TABLE).execute(&mut **conn).await?;
        let done = applied(&mut **conn).await?;
        check_history(self.dialect, &done)?;
        let mut newly = Vec::new();
        for m in migrations(self.dialect) {
            if done.iter().any(|(v, _)| *v == m.version) {
                continue;
            }
            tracing::info!(version = m.version, name = m.name, "applying migration");
            let mut tx = sqlx::Connection::begin(&mut **conn).await?;
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Schema(format!("migration {} ({}) failed: {e}", m.version, m.name)))?;
            sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(checksum(m.sql))
                .bind(Timestamp::now().0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            newly.push(m.version);
        }
        Ok(newly)
    }
}
