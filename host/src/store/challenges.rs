//! Rows of the challenge broker (`host-challenge`): one per presented challenge.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::model::Timestamp;

/// A presented (or presenting) challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: i64,
    pub instance_id: String,
    /// `dns-01` or `http-01`.
    pub kind: String,
    pub identifier: String,
    pub token: Option<String>,
    pub key_authorization: Option<String>,
    pub zone: Option<String>,
    pub fqdn: Option<String>,
    pub value: Option<String>,
    pub solver_id: Option<String>,
    /// dns-persist-01: what the record must say (JSON).
    pub detail: Option<String>,
    /// `presenting`, `present`, `cleaned`, `failed`, or `awaiting_approval` (a dns-persist-01
    /// record the operator has not approved yet).
    pub state: String,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// What to record before presenting.
#[derive(Debug, Clone, Default)]
pub struct NewChallenge {
    pub instance_id: String,
    pub kind: &'static str,
    pub identifier: String,
    pub token: Option<String>,
    pub key_authorization: Option<String>,
    pub zone: Option<String>,
    pub fqdn: Option<String>,
    pub value: Option<String>,
    pub solver_id: Option<String>,
    pub detail: Option<String>,
}

const COLUMNS: &str = "id, instance_id, kind, identifier, token, key_authorization, zone, fqdn, value, solver_id, \
                       detail, state, last_error, created_at";

fn from_row(r: &AnyRow) -> Result<Challenge, StoreError> {
    Ok(Challenge {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        kind: r.try_get("kind")?,
        identifier: r.try_get("identifier")?,
        token: r.try_get("token")?,
        key_authorization: r.try_get("key_authorization")?,
        zone: r.try_get("zone")?,
        fqdn: r.try_get("fqdn")?,
        value: r.try_get("value")?,
        solver_id: r.try_get("solver_id")?,
        detail: r.try_get("detail")?,
        state: r.try_get("state")?,
        last_error: r.try_get("last_error")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

impl Store {
    /// Records a challenge in state `presenting`; returns its id (the plugin's handle).
    pub async fn insert_challenge(&self, c: &NewChallenge) -> Result<i64, StoreError> {
        let now = Timestamp::now().0;
        let row = sqlx::query(
            "INSERT INTO challenges (instance_id, kind, identifier, token, key_authorization, zone, fqdn, value, \
             solver_id, detail, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'presenting', $11, $11) RETURNING id",
        )
        .bind(c.instance_id.as_str())
        .bind(c.kind)
        .bind(c.identifier.as_str())
        .bind(c.token.as_deref())
        .bind(c.key_authorization.as_deref())
        .bind(c.zone.as_deref())
        .bind(c.fqdn.as_deref())
        .bind(c.value.as_deref())
        .bind(c.solver_id.as_deref())
        .bind(c.detail.as_deref())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn set_challenge_state(&self, id: i64, state: &str, error: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE challenges SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4")
            .bind(state)
            .bind(error)
            .bind(Timestamp::now().0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A challenge of `instance_id`; another instance's handle is not found.
    pub async fn get_challenge(&self, instance_id: &str, id: i64) -> Result<Option<Challenge>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM challenges WHERE id = $1 AND instance_id = $2"
        ))
        .bind(id)
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// The key authorization served for an http-01 token, if presented.
    pub async fn http_challenge(&self, token: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT key_authorization FROM challenges WHERE token = $1 AND kind = 'http-01' AND state = 'present' \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Challenges still presented (or half-presented) that were created before `before`.
    pub async fn stale_challenges(&self, before: Timestamp) -> Result<Vec<Challenge>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM challenges WHERE state IN ('presenting', 'present', 'awaiting_approval') \
             AND created_at < $1 ORDER BY id"
        ))
        .bind(before.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// dns-persist-01 records the host was asked for, newest first; `state` filters.
    pub async fn persist_challenges(&self, state: Option<&str>) -> Result<Vec<Challenge>, StoreError> {
        let filter = if state.is_some() { "AND state = $1" } else { "" };
        let sql = format!(
            "SELECT {COLUMNS} FROM challenges WHERE kind = 'dns-persist-01' {filter} ORDER BY id DESC LIMIT 500"
        );
        let mut query = sqlx::query(&sql);
        if let Some(state) = state {
            query = query.bind(state);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Any instance's challenge by id (the operator's view).
    pub async fn challenge_by_id(&self, id: i64) -> Result<Option<Challenge>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM challenges WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Moves a dns-persist-01 record from `awaiting_approval` to `presenting`; false when it was
    /// not awaiting approval (approved twice, cleaned, another kind).
    pub async fn take_persist_approval(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE challenges SET state = 'presenting', updated_at = $1 \
             WHERE id = $2 AND kind = 'dns-persist-01' AND state = 'awaiting_approval'",
        )
        .bind(Timestamp::now().0)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
