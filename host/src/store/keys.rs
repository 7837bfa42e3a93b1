//! Rows of the keystore. Sealing and unsealing happen in `keystore`; this only stores bytes.

use sqlx::Row;

use super::{Store, StoreError};
use crate::model::Timestamp;

/// A stored key: public part in clear, private part sealed.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub owner: String,
    pub algorithm: String,
    pub public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
}

impl Store {
    pub async fn insert_key(&self, id: &str, row: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO keys (id, owner, algorithm, public_key, private_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(row.owner.as_str())
        .bind(row.algorithm.as_str())
        .bind(row.public_key.clone())
        .bind(row.sealed_private_key.clone())
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query("SELECT owner, algorithm, public_key, private_key FROM keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(KeyRow {
                owner: r.try_get("owner")?,
                algorithm: r.try_get("algorithm")?,
                public_key: r.try_get("public_key")?,
                sealed_private_key: r.try_get("private_key")?,
            })
        })
        .transpose()
    }

    /// Ids and public keys (SubjectPublicKeyInfo DER) of the keys `owner` holds.
    pub async fn keys_of_owner(&self, owner: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query("SELECT id, public_key FROM keys WHERE owner = $1 ORDER BY id")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("public_key")?)))
            .collect()
    }
}
