//! Agents (registration, per-agent credentials, heartbeats, retirement), the work an agent
//! pulls (CSRs to send, deployments to run) and the certificates agents discover.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{AuditEntry, Store, StoreError, insert_audit, json_col, new_id, to_json};
use crate::auth::ApiKeyHash;
use crate::model::{Agent, Discovery, Timestamp};

/// What an agent says about itself (registration and heartbeats).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// Online means a heartbeat within this many seconds (`certctl_agent_online`).
pub const ONLINE_SECS: i64 = 300;

const AGENT_COLUMNS: &str =
    "id, name, hostname, os, arch, version, ips, last_heartbeat, retired_at, credential_rotated_at, created_at";

fn agent_from_row(r: &AnyRow, now: Timestamp) -> Result<Agent, StoreError> {
    let last: Option<i64> = r.try_get("last_heartbeat")?;
    let ips: Option<String> = r.try_get("ips")?;
    Ok(Agent {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hostname: r.try_get("hostname")?,
        os: r.try_get("os")?,
        arch: r.try_get("arch")?,
        version: r.try_get("version")?,
        ips: match ips {
            Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("agents.ips: {e}")))?,
            None => Vec::new(),
        },
        last_heartbeat: last.map(Timestamp),
        online: last.is_some_and(|t| t >= now.0 - ONLINE_SECS),
        retired_at: r.try_get::<Option<i64>, _>("retired_at")?.map(Timestamp),
        credential_rotated_at: r.try_get::<Option<i64>, _>("credential_rotated_at")?.map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

/// A certificate an agent must send a CSR for (an issuance or renewal waiting for it).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CsrWork {
    pub job_id: String,
    pub certificate_id: String,
    pub common_name: String,
    pub sans: Vec<String>,
    pub key_type: String,
}

/// A deployment an agent must run: the certificate version and where it goes.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeployWork {
    pub job_id: String,
    pub certificate_id: String,
    pub version_id: String,
    /// The deployment target (files, commands, verification) as declared on the certificate.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// PEM, leaf first.
    pub chain_pem: String,
}

impl Store {
    /// Registers `name`, or rotates the credential of the live agent of that name (an agent that
    /// lost its state). Returns the agent and whether it is new. A retired name cannot come back.
    pub async fn register_agent(
        &self,
        name: &str,
        info: &AgentInfo,
        credential: &ApiKeyHash,
        audit: AuditEntry,
    ) -> Result<(Agent, bool), StoreError> {
        let now = Timestamp::now();
        // Writes only (SQLite: a read first could not upgrade its lock beside another writer).
        let mut tx = self.pool.begin().await?;
        let new_id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO agents (id, name, hostname, os, arch, version, ips, credential_hash, \
             credential_rotated_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(new_id.as_str())
        .bind(name)
        .bind(info.hostname.as_deref())
        .bind(info.os.as_deref())
        .bind(info.arch.as_deref())
        .bind(info.version.as_deref())
        .bind(to_json(&info.ips)?)
        .bind(credential.to_hex())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let (id, created) = if inserted.rows_affected() == 1 {
            (new_id, true)
        } else {
            let rotated = sqlx::query(
                "UPDATE agents SET credential_hash = $1, credential_rotated_at = $2, hostname = $3, os = $4, \
                 arch = $5, version = $6, ips = $7 WHERE name = $8 AND retired_at IS NULL RETURNING id",
            )
            .bind(credential.to_hex())
            .bind(now.0)
            .bind(info.hostname.as_deref())
            .bind(info.os.as_deref())
            .bind(info.arch.as_deref())
            .bind(info.version.as_deref())
            .bind(to_json(&info.ips)?)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            match rotated {
                Some(row) => (row.try_get::<String, _>("id")?, false),
                None => {
                    return Err(StoreError::InUse(format!(
                        "agent {name} was retired; register the node under another name"
                    )));
                }
            }
        };
        insert_audit(
            &mut tx,
            &AuditEntry {
                target_id: id.clone(),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        let agent = self
            .get_agent(&id, now)
            .await?
            .ok_or_else(|| StoreError::Corrupt("agent vanished after registration".into()))?;
        Ok((agent, created))
    }

    /// The agent holding a credential (retired agents too: they are told they are retired).
    pub async fn agent_by_credential(&self, hash: &ApiKeyHash) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE credential_hash = $1"
        ))
        .bind(hash.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| agent_from_row(&r, Timestamp::now())).transpose()
    }

    pub async fn get_agent(&self, id: &str, now: Timestamp) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| agent_from_row(&r, now)).transpose()
    }

    /// Every agent, by name.
    pub async fn list_agents(&self, now: Timestamp) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| agent_from_row(r, now)).collect()
    }

    /// Records a heartbeat of a live agent; false when it is retired or unknown.
    pub async fn heartbeat(&self, id: &str, info: &AgentInfo, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET last_heartbeat = $1, hostname = $2, os = $3, arch = $4, version = $5, ips = $6 \
             WHERE id = $7 AND retired_at IS NULL",
        )
        .bind(now.0)
        .bind(info.hostname.as_deref())
        .bind(info.os.as_deref())
        .bind(info.arch.as_deref())
        .bind(info.version.as_deref())
        .bind(to_json(&info.ips)?)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Retires an agent: its credential answers 410 from now on, its certificates keep their
    /// versions but lose their agent. False when it was not a live agent.
    pub async fn retire_agent(&self, id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE agents SET retired_at = $1 WHERE id = $2 AND retired_at IS NULL")
            .bind(Timestamp::now().0)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE certificates SET agent_id = NULL WHERE agent_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Issuances and renewals of this agent's certificates that wait for its CSR.
    pub async fn agent_csr_work(&self, agent_id: &str) -> Result<Vec<CsrWork>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id AS job_id, c.id AS certificate_id, c.common_name, c.sans, c.key_type FROM jobs j \
             JOIN certificates c ON c.id = j.certificate_id WHERE c.agent_id = $1 AND j.state = 'awaiting_csr' \
             ORDER BY j.created_at, j.id LIMIT 100",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CsrWork {
                    job_id: r.try_get("job_id")?,
                    certificate_id: r.try_get("certificate_id")?,
                    common_name: r.try_get("common_name")?,
                    sans: json_col(r, "sans")?,
                    key_type: r.try_get("key_type")?,
                })
            })
            .collect()
    }

    /// Pending deployments of this agent's certificates, with the chain and the target.
    pub async fn agent_deploy_work(&self, agent_id: &str, now: Timestamp) -> Result<Vec<DeployWork>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id AS job_id, c.id AS certificate_id, c.deploy, v.id AS version_id, v.chain_pem \
             FROM jobs j JOIN certificates c ON c.id = j.certificate_id \
             JOIN certificate_versions v ON v.id = c.current_version_id \
             WHERE c.agent_id = $1 AND j.kind = 'deployment' AND j.state = 'pending' AND j.run_after <= $2 \
             AND c.deploy IS NOT NULL ORDER BY j.run_after, j.id LIMIT 100",
        )
        .bind(agent_id)
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeployWork {
                    job_id: r.try_get("job_id")?,
                    certificate_id: r.try_get("certificate_id")?,
                    version_id: r.try_get("version_id")?,
                    target: json_col(r, "deploy")?,
                    chain_pem: r.try_get("chain_pem")?,
                })
            })
            .collect()
    }

    /// Records an agent's deployment result on its job: `completed`, or `failed` with the error
    /// (the agent rolled back). The report (steps, outputs) goes into the job's payload. Returns
    /// the job's new state, or `None` when the job is not a pending deployment of this agent.
    pub async fn finish_deployment(
        &self,
        job_id: &str,
        agent_id: &str,
        report: &serde_json::Value,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<crate::model::JobState>, StoreError> {
        use crate::model::JobState;
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Completed
        };
        // Write first (SQLite: a read first could not upgrade its lock beside another writer).
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, attempts = attempts + 1, error_class = $2, error_message = $3, \
             updated_at = $4 WHERE id = $5 AND kind = 'deployment' AND state = 'pending' \
             AND certificate_id IN (SELECT id FROM certificates WHERE agent_id = $6)",
        )
        .bind(state.as_str())
        .bind(error.map(|_| crate::model::ErrorClass::Deployment.as_str()))
        .bind(error)
        .bind(now.0)
        .bind(job_id)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT payload FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut payload: serde_json::Value = json_col(&row, "payload")?;
        payload["report"] = report.clone();
        sqlx::query("UPDATE jobs SET payload = $1 WHERE id = $2")
            .bind(to_json(&payload)?)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(state))
    }

    /// Records what an agent found: new findings are `new`, known ones get `last_seen`.
    /// Returns how many were new.
    pub async fn upsert_discoveries(
        &self,
        agent_id: &str,
        found: &[crate::model::Found],
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut new = 0;
        for f in found {
            let updated = sqlx::query(
                "UPDATE discoveries SET last_seen = $1 WHERE agent_id = $2 AND path = $3 AND index_in_file = $4 \
                 AND fingerprint_sha256 = $5",
            )
            .bind(now.0)
            .bind(agent_id)
            .bind(f.path.as_str())
            .bind(i64::from(f.index_in_file))
            .bind(f.fingerprint_sha256.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() > 0 {
                continue;
            }
            sqlx::query(
                "INSERT INTO discoveries (id, agent_id, path, index_in_file, fingerprint_sha256, serial, subject, \
                 issuer, sans, not_before, not_after, is_ca, state, first_seen, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'new', $13, $13)",
            )
            .bind(new_id())
            .bind(agent_id)
            .bind(f.path.as_str())
            .bind(i64::from(f.index_in_file))
            .bind(f.fingerprint_sha256.as_str())
            .bind(f.serial.as_str())
            .bind(f.subject.as_str())
            .bind(f.issuer.as_str())
            .bind(to_json(&f.sans)?)
            .bind(f.not_before)
            .bind(f.not_after)
            .bind(i64::from(f.is_ca))
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            new += 1;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Discoveries, newest sighting first; `state` filters (new, claimed, dismissed).
    pub async fn list_discoveries(&self, state: Option<&str>) -> Result<Vec<Discovery>, StoreError> {
        let filter = if state.is_some() { "WHERE d.state = $1" } else { "" };
        let sql = format!(
            "SELECT d.*, a.name AS agent_name FROM discoveries d JOIN agents a ON a.id = d.agent_id {filter} \
             ORDER BY d.last_seen DESC, d.id LIMIT 1000"
        );
        let mut query = sqlx::query(&sql);
        if let Some(state) = state {
            query = query.bind(state);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(discovery_from_row).collect()
    }

    /// Triage: `claimed` (with the certificate that now manages it) or `dismissed`. False when
    /// there is no such discovery.
    pub async fn set_discovery_state(
        &self,
        id: &str,
        state: &str,
        certificate_id: Option<&str>,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE discoveries SET state = $1, certificate_id = $2 WHERE id = $3")
            .bind(state)
            .bind(certificate_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}

fn discovery_from_row(r: &AnyRow) -> Result<Discovery, StoreError> {
    Ok(Discovery {
        id: r.try_get("id")?,
        agent_id: r.try_get("agent_id")?,
        agent_name: r.try_get("agent_name")?,
        path: r.try_get("path")?,
        index_in_file: u32::try_from(r.try_get::<i64, _>("index_in_file")?)
            .map_err(|e| StoreError::Corrupt(format!("discoveries.index_in_file: {e}")))?,
        fingerprint_sha256: r.try_get("fingerprint_sha256")?,
        serial: r.try_get("serial")?,
        subject: r.try_get("subject")?,
        issuer: r.try_get("issuer")?,
        sans: json_col(r, "sans")?,
        not_before: Timestamp(r.try_get("not_before")?),
        not_after: Timestamp(r.try_get("not_after")?),
        is_ca: r.try_get::<i64, _>("is_ca")? != 0,
        state: r.try_get("state")?,
        certificate_id: r.try_get("certificate_id")?,
        first_seen: Timestamp(r.try_get("first_seen")?),
        last_seen: Timestamp(r.try_get("last_seen")?),
    })
}
