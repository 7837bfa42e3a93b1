//! The job queue. Jobs are leased: a replica takes up to N due jobs in one statement, marking
//! them running with its name and a lease expiry. On PostgreSQL the selection uses
//! `FOR UPDATE SKIP LOCKED`, so replicas never take the same job; on SQLite the single writer
//! serialises leasing. A lease that expires (the replica died) makes the job due again. Only
//! the holder of the current lease can complete or fail a job.

use rand::Rng;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Dialect, PageRequest, Store, StoreError, enum_col, json_col, new_id, paginate, to_json};
use crate::model::{ErrorClass, Job, JobKind, JobState, Page, Timestamp};

const JOB_COLUMNS: &str = "id, kind, state, certificate_id, payload, attempts, max_attempts, run_after, \
                           lease_owner, lease_expires_at, error_class, error_message, dedup_key, created_at, updated_at";

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    /// `pending`, or `awaiting_csr` for an issuance that waits for its agent's CSR.
    pub state: JobState,
    pub certificate_id: Option<String>,
    pub payload: serde_json::Value,
    pub max_attempts: i64,
    pub run_after: Timestamp,
    /// A job with the same key is never created twice.
    pub dedup_key: Option<String>,
}

impl NewJob {
    /// A pending job of `kind`, due now.
    pub fn now(kind: JobKind, certificate_id: Option<&str>, payload: serde_json::Value, max_attempts: i64) -> NewJob {
        NewJob {
            kind,
            state: JobState::Pending,
            certificate_id: certificate_id.map(str::to_string),
            payload,
            max_attempts,
            run_after: Timestamp::now(),
            dedup_key: None,
        }
    }
}

/// A failed attempt, as the job runner classified it.
#[derive(Debug, Clone)]
pub struct JobFailure<'a> {
    pub class: ErrorClass,
    pub message: &'a str,
    /// Worth another attempt (if any remain).
    pub retry: bool,
    /// Seconds to wait at least before the next attempt (a rate limit's `Retry-After`).
    pub wait_at_least: Option<i64>,
    /// The runner's clock; the backoff counts from here.
    pub now: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub certificate_id: Option<String>,
}

fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let error_class: Option<String> = row.try_get("error_class")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: enum_col(row, "kind")?,
        state: enum_col(row, "state")?,
        certificate_id: row.try_get("certificate_id")?,
        payload: json_col(row, "payload")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_after: Timestamp(row.try_get("run_after")?),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get::<Option<i64>, _>("lease_expires_at")?.map(Timestamp),
        error_class: error_class
            .map(|c| {
                c.parse()
                    .map_err(|e: String| StoreError::Corrupt(format!("column error_class: {e}")))
            })
            .transpose()?,
        error_message: row.try_get("error_message")?,
        dedup_key: row.try_get("dedup_key")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// Seconds to wait before attempt `attempts + 1`: 30 s doubling per attempt, capped at one
/// hour, with ±20 % jitter so that failed jobs do not retry in lockstep.
pub fn backoff_secs(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    let base = (30_i64 << exp).min(3600);
    let jitter = rand::rng().random_range(-(base / 5)..=(base / 5));
    (base + jitter).max(1)
}

impl Store {
    /// Enqueues a job. `None` when it would duplicate a job with the same dedup key, or a
    /// second open issuance/renewal of one certificate.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<Option<Job>, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let row = sqlx::query(&format!(
            "INSERT INTO jobs (id, kind, state, certificate_id, payload, attempts, max_attempts, run_after, \
             dedup_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $9) \
             ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(job.kind.as_str())
        .bind(job.state.as_str())
        .bind(job.certificate_id.as_deref())
        .bind(to_json(&job.payload)?)
        .bind(job.max_attempts)
        .bind(job.run_after.0)
        .bind(job.dedup_key.as_deref())
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    /// The open (not finished) issuance or renewal of a certificate, if any.
    pub async fn open_issuance(&self, certificate_id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE certificate_id = $1 AND kind IN ('issuance', 'renewal') \
             AND state IN ('pending', 'running', 'awaiting_csr', 'awaiting_approval')"
        ))
        .bind(certificate_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    /// Gives a job that waits for a CSR its payload and moves it on (`pending`, or
    /// `awaiting_approval`). False if the job is no longer waiting (cancelled, or another CSR
    /// came first).
    pub async fn supply_csr(&self, id: &str, payload: &serde_json::Value, next: JobState) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let done = sqlx::query(
            "UPDATE jobs SET state = $4, payload = $1, run_after = $2, updated_at = $2 \
             WHERE id = $3 AND state = 'awaiting_csr'",
        )
        .bind(to_json(payload)?)
        .bind(now.0)
        .bind(id)
        .bind(next.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Saves a running job's payload (its progress) while it keeps its lease.
    pub async fn save_job_payload(
        &self,
        id: &str,
        owner: &str,
        payload: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET payload = $1, updated_at = $2 WHERE id = $3 AND state = 'running' AND lease_owner = $4",
        )
        .bind(to_json(payload)?)
        .bind(Timestamp::now().0)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a running job back to sleep until `run_after` without counting the attempt (an
    /// issuer asked to be resumed later). False if `owner` lost the lease.
    pub async fn defer_job(
        &self,
        id: &str,
        owner: &str,
        payload: &serde_json::Value,
        run_after: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'pending', payload = $1, run_after = $2, attempts = attempts - 1, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $4 AND state = 'running' AND lease_owner = $5",
        )
        .bind(to_json(payload)?)
        .bind(run_after.0)
        .bind(Timestamp::now().0)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished jobs (completed or cancelled) last changed before `before`. Failed jobs
    /// stay: they are the dead letters an operator may still retry.
    pub async fn delete_finished_jobs(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM jobs WHERE state IN ('completed', 'cancelled') AND updated_at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes up to `limit` due jobs (pending and due, or running with an expired lease) for
    /// `owner`, for `lease_secs` seconds. Each attempt counts.
    pub async fn lease_jobs(
        &self,
        owner: &str,
        limit: i64,
        lease_secs: i64,
        now: Timestamp,
    ) -> Result<Vec<Job>, StoreError> {
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
             updated_at = $3 WHERE id IN (SELECT id FROM jobs WHERE kind <> 'deployment' AND \
             ((state = 'pending' AND run_after <= $3) OR (state = 'running' AND lease_expires_at < $3)) \
             ORDER BY run_after, id LIMIT $4 {lock}) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(owner)
        .bind(now.0 + lease_secs)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Marks a job completed. False if `owner` no longer holds its lease (it expired and
    /// another replica took it over).
    pub async fn complete_job(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'completed', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND lease_owner = $3",
        )
        .bind(Timestamp::now().0)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: back to pending after a backoff (at least `wait_at_least`
    /// seconds) when `retry` and attempts remain, otherwise failed for good. Returns the new
    /// state, or `None` if `owner` no longer holds the lease.
    pub async fn fail_job(
        &self,
        id: &str,
        owner: &str,
        failure: &JobFailure<'_>,
    ) -> Result<Option<JobState>, StoreError> {
        let row = sqlx::query(
            "SELECT attempts, max_attempts FROM jobs WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (attempts, max): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let next = if failure.retry && attempts < max {
            JobState::Pending
        } else {
            JobState::Failed
        };
        let wait = backoff_secs(attempts).max(failure.wait_at_least.unwrap_or(0));
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, run_after = $2, lease_owner = NULL, lease_expires_at = NULL, \
             error_class = $3, error_message = $4, updated_at = $5 \
             WHERE id = $6 AND state = 'running' AND lease_owner = $7",
        )
        .bind(next.as_str())
        .bind(failure.now.0 + wait)
        .bind(failure.class.as_str())
        .bind(failure.message)
        .bind(Timestamp::now().0)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(next))
    }

    /// Cancels a job that has not finished. Returns the job and whether this call cancelled
    /// it (false: it had already finished), or `None` if there is no such job.
    pub async fn cancel_job(&self, id: &str, audit: super::AuditEntry) -> Result<Option<(Job, bool)>, StoreError> {
        self.transition(
            id,
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state IN ('pending', 'running', 'awaiting_csr', 'awaiting_approval')",
            audit,
        )
        .await
    }

    /// Lets a job that waits for approval run. Returns the job and whether this call approved
    /// it, or `None` if there is no such job.
    pub async fn approve_job(&self, id: &str, audit: super::AuditEntry) -> Result<Option<(Job, bool)>, StoreError> {
        self.transition(
            id,
            "UPDATE jobs SET state = 'pending', run_after = $1, updated_at = $1 WHERE id = $2 \
             AND state = 'awaiting_approval'",
            audit,
        )
        .await
    }

    /// Puts a failed or cancelled job back in the queue with a fresh set of attempts. Returns
    /// the job and whether this call re-queued it, or `None` if there is no such job.
    pub async fn retry_job(&self, id: &str, audit: super::AuditEntry) -> Result<Option<(Job, bool)>, StoreError> {
        self.transition(
            id,
            "UPDATE jobs SET state = 'pending', attempts = 0, run_after = $1, error_class = NULL, \
             error_message = NULL, updated_at = $1 WHERE id = $2 AND state IN ('failed', 'cancelled')",
            audit,
        )
        .await
    }

    /// Runs a state change (`$1` = now, `$2` = id) and audits it in the same transaction when it
    /// changed a row.
    async fn transition(
        &self,
        id: &str,
        sql: &str,
        audit: super::AuditEntry,
    ) -> Result<Option<(Job, bool)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql)
            .bind(Timestamp::now().0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::InUse(
                    "another issuance or renewal of this certificate is open; cancel it first".to_string(),
                ),
                _ => StoreError::Database(e),
            })?;
        let changed = done.rows_affected() == 1;
        if changed {
            super::insert_audit(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(self.get_job(id).await?.map(|j| (j, changed)))
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    /// Newest first.
    pub async fn list_jobs(&self, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, StoreError> {
        let mut q = super::Query::new(&format!("SELECT {JOB_COLUMNS} FROM jobs"));
        if let Some(state) = filter.state {
            q.and("state = ?", vec![super::Bind::Text(state.as_str().into())]);
        }
        if let Some(kind) = filter.kind {
            q.and("kind = ?", vec![super::Bind::Text(kind.as_str().into())]);
        }
        if let Some(cert) = &filter.certificate_id {
            q.and("certificate_id = ?", vec![super::Bind::Text(cert.clone())]);
        }
        if let Some(cursor) = &page.cursor {
            q.and("id < ?", vec![super::Bind::Text(cursor.clone())]);
        }
        q.tail(" ORDER BY id DESC LIMIT ?", super::Bind::Int(i64::from(page.limit) + 1));
        let rows = q.fetch_all(&self.pool).await?;
        let items = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |j| j.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for _ in 0..100 {
            let first = backoff_secs(1);
            assert!((24..=36).contains(&first), "{first}");
            let third = backoff_secs(3);
            assert!((96..=144).contains(&third), "{third}");
            assert!(backoff_secs(30) <= 4320);
        }
    }
}
