//! Cluster-wide locks. On PostgreSQL a session advisory lock held on a dedicated connection
//! (several replicas share the database); on SQLite there is one server, and the lock is a
//! no-op beyond the caller's own in-process serialisation.

use sha2::{Digest, Sha256};
use sqlx::Any;
use sqlx::pool::PoolConnection;

use super::{Dialect, Store, StoreError};

/// A held lock. Release it with [`DbLock::release`]; dropping it instead closes its
/// connection, which also releases the lock.
pub struct DbLock {
    conn: Option<PoolConnection<Any>>,
    key: i64,
}

/// The lock key for a name: the first 8 bytes of its SHA-256.
pub fn key_for(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl Store {
    /// Waits for lock `key`.
    pub async fn lock(&self, key: i64) -> Result<DbLock, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(DbLock { conn: None, key });
        }
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(DbLock { conn: Some(conn), key })
    }

    /// Takes lock `key` if nobody holds it; `None` if another session does.
    pub async fn try_lock(&self, key: i64) -> Result<Option<DbLock>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(Some(DbLock { conn: None, key }));
        }
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        let taken: bool = sqlx::Row::try_get(&row, 0)?;
        Ok(taken.then_some(DbLock { conn: Some(conn), key }))
    }
}

impl DbLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take()
            && let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await
        {
            tracing::warn!(error = %e, "could not release a database lock; closing its connection");
            drop(conn.detach());
        }
    }
}

impl Drop for DbLock {
    fn drop(&mut self) {
        // Not released (a panic or a cancelled task): close the connection rather than return
        // it to the pool still holding the lock.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
