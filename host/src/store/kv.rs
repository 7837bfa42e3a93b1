//! `host-kv`: a small key-value store per plugin instance.

use sqlx::Row;

use super::{Store, StoreError};
use crate::model::Timestamp;

/// Limits documented in wit/host.wit.
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KEYS: i64 = 1024;

impl Store {
    pub async fn kv_get(&self, instance_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM plugin_kv WHERE instance_id = $1 AND key = $2")
            .bind(instance_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<Vec<u8>, _>(0).map_err(StoreError::from))
            .transpose()
    }

    /// Stores `value`; `Ok(Err(reason))` when a limit would be exceeded.
    pub async fn kv_set(&self, instance_id: &str, key: &str, value: &[u8]) -> Result<Result<(), String>, StoreError> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(Err(format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len())));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        // Write first, then count: a read before the write would make two concurrent writers on
        // SQLite fail to upgrade their read locks (SQLITE_BUSY) instead of waiting their turn.
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO plugin_kv (instance_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(instance_id)
        .bind(key)
        .bind(value.to_vec())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM plugin_kv WHERE instance_id = $1")
            .bind(instance_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        // Only a new key raises the count, so over the limit means this key was one too many.
        if count > MAX_KEYS {
            tx.rollback().await?;
            return Ok(Err(format!(
                "this instance already has {MAX_KEYS} keys; delete some first"
            )));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    pub async fn kv_delete(&self, instance_id: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM plugin_kv WHERE instance_id = $1 AND key = $2")
            .bind(instance_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether an instance has stored nothing yet (its first call).
    pub async fn kv_is_empty(&self, instance_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM plugin_kv WHERE instance_id = $1")
            .bind(instance_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? == 0)
    }
}
