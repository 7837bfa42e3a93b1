//! Certificate versions, revocation, CRLs, the scheduler's scans and notification routes.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{AuditEntry, Store, StoreError, enum_col, insert_audit, json_col, new_id, to_json};
use crate::model::{
    CertState, CertificateVersion, EventKind, NotificationRoute, RenewalPolicy, RevocationReason, Severity, Timestamp,
};

/// An issued certificate, parsed, ready to be stored as a version.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub chain_pem: String,
    pub issuer_id: Option<String>,
    /// The keystore id of a server-generated private key.
    pub key_id: Option<String>,
}

const VERSION_COLUMNS: &str = "id, certificate_id, serial, fingerprint_sha256, not_before, not_after, chain_pem, \
                               issuer_id, key_id, revoked_at, revocation_reason, created_at";

fn version_from_row(row: &AnyRow) -> Result<(CertificateVersion, Option<String>), StoreError> {
    let key_id: Option<String> = row.try_get("key_id")?;
    let reason = row
        .try_get::<Option<i64>, _>("revocation_reason")?
        .map(|code| {
            RevocationReason::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("column revocation_reason: unknown code {code}")))
        })
        .transpose()?;
    let version = CertificateVersion {
        id: row.try_get("id")?,
        certificate_id: row.try_get("certificate_id")?,
        serial: row.try_get("serial")?,
        fingerprint_sha256: row.try_get("fingerprint_sha256")?,
        not_before: Timestamp(row.try_get("not_before")?),
        not_after: Timestamp(row.try_get("not_after")?),
        issuer_id: row.try_get("issuer_id")?,
        server_key: key_id.is_some(),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
        revocation_reason: reason,
        chain_pem: row.try_get("chain_pem")?,
        created_at: Timestamp(row.try_get("created_at")?),
    };
    Ok((version, key_id))
}

/// A certificate the renewal scan found due.
#[derive(Debug, Clone)]
pub struct DueRenewal {
    pub id: String,
    pub key_generation: String,
    pub renewal: RenewalPolicy,
}

/// An issued certificate whose CA's renewal window (RFC 9773) is due to be asked for.
#[derive(Debug, Clone)]
pub struct RenewalInfoDue {
    pub certificate_id: String,
    pub version_id: String,
    /// The issuer instance that signed the current version.
    pub issuer_id: String,
    pub chain_pem: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub renewal: RenewalPolicy,
    /// The window recorded last time, if any.
    pub window: Option<(Timestamp, Timestamp)>,
}

/// What the CA said about a certificate's renewal (RFC 9773), to record.
#[derive(Debug, Clone)]
pub struct RenewalInfoAnswer {
    pub window: Option<crate::model::RenewalWindow>,
    /// The new renewal date; `None` keeps it.
    pub renew_at: Option<Timestamp>,
    pub next_check: Timestamp,
}

/// An issued certificate near its expiry, for the alert scan.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub id: String,
    pub name: String,
    pub not_after: Timestamp,
    pub version_id: String,
    pub renewal: RenewalPolicy,
}

/// One revoked serial for a CRL.
#[derive(Debug, Clone)]
pub struct RevokedSerial {
    pub serial: String,
    pub revoked_at: Timestamp,
    pub reason: RevocationReason,
}

/// A stored CRL.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    pub number: i64,
    pub this_update: Timestamp,
    pub next_update: Timestamp,
    pub der: Vec<u8>,
}

/// A notification route to create or replace.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub notifier_id: String,
    pub events: Vec<EventKind>,
    pub min_severity: Severity,
}

const ROUTE_COLUMNS: &str = "id, name, notifier_id, events, min_severity, created_at, updated_at";

fn route_from_row(row: &AnyRow) -> Result<NotificationRoute, StoreError> {
    Ok(NotificationRoute {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        notifier_id: row.try_get("notifier_id")?,
        events: json_col(row, "events")?,
        min_severity: enum_col(row, "min_severity")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

impl Store {
    /// Records an issued certificate as the current version, marks the certificate issued and
    /// sets its renewal date from `renewal`, all in one transaction with the audit entry.
    pub async fn add_version(
        &self,
        certificate_id: &str,
        v: &NewVersion,
        renewal: &RenewalPolicy,
        audit: AuditEntry,
    ) -> Result<String, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO certificate_versions (id, certificate_id, serial, fingerprint_sha256, not_before, \
             not_after, chain_pem, issuer_id, key_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.as_str())
        .bind(certificate_id)
        .bind(v.serial.as_str())
        .bind(v.fingerprint_sha256.as_str())
        .bind(v.not_before.0)
        .bind(v.not_after.0)
        .bind(v.chain_pem.as_str())
        .bind(v.issuer_id.as_deref())
        .bind(v.key_id.as_deref())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE certificates SET state = $1, not_before = $2, not_after = $3, renew_at = $4, \
             current_version_id = $5, updated_at = $6, ari_window_start = NULL, ari_window_end = NULL, \
             ari_explanation_url = NULL, ari_next_check = NULL WHERE id = $7",
        )
        .bind(CertState::Issued.as_str())
        .bind(v.not_before.0)
        .bind(v.not_after.0)
        .bind(renewal.renew_at(v.not_before, v.not_after).map(|t| t.0))
        .bind(id.as_str())
        .bind(now.0)
        .bind(certificate_id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Versions of a certificate, newest first.
    pub async fn list_versions(&self, certificate_id: &str) -> Result<Vec<CertificateVersion>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate_id = $1 ORDER BY id DESC"
        ))
        .bind(certificate_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| version_from_row(r).map(|(v, _)| v)).collect()
    }

    /// One version of a certificate, with the keystore id of its server-generated key.
    pub async fn get_version(
        &self,
        certificate_id: &str,
        version_id: &str,
    ) -> Result<Option<(CertificateVersion, Option<String>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate_id = $1 AND id = $2"
        ))
        .bind(certificate_id)
        .bind(version_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| version_from_row(&r)).transpose()
    }

    /// Revokes the current version: the version records when and why, the certificate turns
    /// `revoked` and leaves the renewal schedule. Returns the version, or `None` if the
    /// certificate has no issued version that is not already revoked.
    pub async fn revoke_current(
        &self,
        certificate_id: &str,
        reason: RevocationReason,
        audit: AuditEntry,
    ) -> Result<Option<CertificateVersion>, StoreError> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE certificate_versions SET revoked_at = $1, revocation_reason = $2 \
             WHERE id = (SELECT current_version_id FROM certificates WHERE id = $3) AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(i64::from(reason.code()))
        .bind(certificate_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE certificates SET state = $1, renew_at = NULL, updated_at = $2 WHERE id = $3")
            .bind(CertState::Revoked.as_str())
            .bind(now.0)
            .bind(certificate_id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        let cert = self.get_certificate(certificate_id).await?;
        match cert.and_then(|c| c.current_version_id) {
            Some(v) => Ok(self.get_version(certificate_id, &v).await?.map(|(v, _)| v)),
            None => Ok(None),
        }
    }

    /// Marks a certificate whose first issuance failed for good.
    pub async fn mark_failed(&self, certificate_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE certificates SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(CertState::Failed.as_str())
            .bind(Timestamp::now().0)
            .bind(certificate_id)
            .bind(CertState::Pending.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every revoked serial an issuer instance signed, for its CRL. Expired certificates stay
    /// listed (RFC 5280 allows removing them; keeping them is the simple, safe choice).
    pub async fn revoked_serials(&self, issuer_id: &str) -> Result<Vec<RevokedSerial>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificate_versions \
             WHERE issuer_id = $1 AND revoked_at IS NOT NULL ORDER BY revoked_at, id",
        )
        .bind(issuer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let code: i64 = r.try_get("revocation_reason")?;
                Ok(RevokedSerial {
                    serial: r.try_get("serial")?,
                    revoked_at: Timestamp(r.try_get("revoked_at")?),
                    reason: RevocationReason::from_code(code)
                        .ok_or_else(|| StoreError::Corrupt(format!("column revocation_reason: unknown code {code}")))?,
                })
            })
            .collect()
    }

    /// The chain of the newest version an issuer instance signed (its CA sits above the leaf).
    pub async fn latest_chain_of_issuer(&self, issuer_id: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT chain_pem FROM certificate_versions WHERE issuer_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(issuer_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub async fn get_crl(&self, issuer_id: &str) -> Result<Option<StoredCrl>, StoreError> {
        let row = sqlx::query("SELECT number, this_update, next_update, der FROM crls WHERE issuer_id = $1")
            .bind(issuer_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(StoredCrl {
                number: r.try_get("number")?,
                this_update: Timestamp(r.try_get("this_update")?),
                next_update: Timestamp(r.try_get("next_update")?),
                der: r.try_get("der")?,
            })
        })
        .transpose()
    }

    /// Stores a CRL unless a newer one (higher number) is already stored.
    pub async fn put_crl(&self, issuer_id: &str, crl: &StoredCrl) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO crls (issuer_id, number, this_update, next_update, der) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, \
             next_update = excluded.next_update, der = excluded.der WHERE crls.number < excluded.number",
        )
        .bind(issuer_id)
        .bind(crl.number)
        .bind(crl.this_update.0)
        .bind(crl.next_update.0)
        .bind(crl.der.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Issuer instances whose CRL is missing or due for regeneration by `before`, among those
    /// that signed at least one stored version.
    pub async fn crls_due(&self, before: Timestamp) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT v.issuer_id FROM certificate_versions v LEFT JOIN crls c ON c.issuer_id = v.issuer_id \
             WHERE v.issuer_id IS NOT NULL AND (c.issuer_id IS NULL OR c.next_update <= $1)",
        )
        .bind(before.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Issued certificates whose renewal date has come and that have no open issuance or
    /// renewal, oldest renewal date first. One indexed range scan on `renew_at`.
    pub async fn due_renewals(&self, now: Timestamp, limit: i64) -> Result<Vec<DueRenewal>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.key_generation, c.renewal FROM certificates c WHERE c.renew_at <= $1 \
             AND c.state = 'issued' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.certificate_id = c.id \
             AND j.kind IN ('issuance', 'renewal') \
             AND j.state IN ('pending', 'running', 'awaiting_csr', 'awaiting_approval')) \
             ORDER BY c.renew_at LIMIT $2",
        )
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueRenewal {
                    id: r.try_get("id")?,
                    key_generation: r.try_get("key_generation")?,
                    renewal: json_col(r, "renewal")?,
                })
            })
            .collect()
    }

    /// Pauses an issuer instance until `until` (a rate limit its CA set); a later pause already
    /// recorded stays.
    pub async fn pause_instance(&self, id: &str, until: Timestamp, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE plugin_instances SET paused_until = $1, paused_reason = $2 \
             WHERE id = $3 AND (paused_until IS NULL OR paused_until < $1)",
        )
        .bind(until.0)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Issued, unrevoked current versions whose renewal window is due to be asked for (never
    /// asked, or past the CA's Retry-After), longest waiting first.
    pub async fn renewal_info_due(&self, now: Timestamp, limit: i64) -> Result<Vec<RenewalInfoDue>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, v.id AS version_id, v.issuer_id, v.chain_pem, v.not_before, v.not_after, c.renewal, \
             c.ari_window_start, c.ari_window_end \
             FROM certificates c JOIN certificate_versions v ON v.id = c.current_version_id \
             WHERE c.state = 'issued' AND v.issuer_id IS NOT NULL AND v.revoked_at IS NULL \
             AND (c.ari_next_check IS NULL OR c.ari_next_check <= $1) \
             ORDER BY COALESCE(c.ari_next_check, 0), c.id LIMIT $2",
        )
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RenewalInfoDue {
                    certificate_id: r.try_get("id")?,
                    version_id: r.try_get("version_id")?,
                    issuer_id: r.try_get("issuer_id")?,
                    chain_pem: r.try_get("chain_pem")?,
                    not_before: Timestamp(r.try_get("not_before")?),
                    not_after: Timestamp(r.try_get("not_after")?),
                    renewal: json_col(r, "renewal")?,
                    window: match (
                        r.try_get::<Option<i64>, _>("ari_window_start")?,
                        r.try_get::<Option<i64>, _>("ari_window_end")?,
                    ) {
                        (Some(s), Some(e)) => Some((Timestamp(s), Timestamp(e))),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    /// Records the CA's answer for a certificate, if `version_id` is still its current version
    /// (a renewal meanwhile makes the answer moot). Returns whether it was recorded.
    pub async fn set_renewal_info(
        &self,
        certificate_id: &str,
        version_id: &str,
        answer: &RenewalInfoAnswer,
    ) -> Result<bool, StoreError> {
        let w = answer.window.as_ref();
        let done = sqlx::query(
            "UPDATE certificates SET ari_window_start = $1, ari_window_end = $2, ari_explanation_url = $3, \
             ari_next_check = $4, renew_at = COALESCE($5, renew_at) WHERE id = $6 AND current_version_id = $7",
        )
        .bind(w.map(|w| w.start.0))
        .bind(w.map(|w| w.end.0))
        .bind(w.and_then(|w| w.explanation_url.as_deref()))
        .bind(answer.next_check.0)
        .bind(answer.renew_at.map(|t| t.0))
        .bind(certificate_id)
        .bind(version_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The chain of a certificate's current version, unless it was revoked: what a renewal
    /// replaces.
    pub async fn current_chain(&self, certificate_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT v.chain_pem FROM certificates c JOIN certificate_versions v ON v.id = c.current_version_id \
             WHERE c.id = $1 AND v.revoked_at IS NULL",
        )
        .bind(certificate_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Issued certificates expiring before `until`, for expiry alerts.
    pub async fn expiring_before(&self, until: Timestamp) -> Result<Vec<Expiring>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, not_after, current_version_id, renewal FROM certificates \
             WHERE state = 'issued' AND not_after <= $1 AND current_version_id IS NOT NULL ORDER BY not_after",
        )
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Expiring {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    not_after: Timestamp(r.try_get("not_after")?),
                    version_id: r.try_get("current_version_id")?,
                    renewal: json_col(r, "renewal")?,
                })
            })
            .collect()
    }

    /// Agents (not retired) whose last heartbeat is older than the online window: id, name,
    /// last heartbeat.
    pub async fn offline_agents(&self, now: Timestamp) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, last_heartbeat FROM agents WHERE retired_at IS NULL AND last_heartbeat IS NOT NULL \
             AND last_heartbeat < $1",
        )
        .bind(now.0 - super::AGENT_ONLINE_WINDOW_SECS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    Timestamp(r.try_get("last_heartbeat")?),
                ))
            })
            .collect()
    }

    // ---- notification routes ----

    pub async fn create_route(&self, spec: &RouteSpec, audit: AuditEntry) -> Result<NotificationRoute, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notification_routes (id, name, notifier_id, events, min_severity, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(spec.name.as_str())
        .bind(spec.notifier_id.as_str())
        .bind(to_json(&spec.events)?)
        .bind(spec.min_severity.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_unique(e, "name"))?;
        insert_audit(
            &mut tx,
            &AuditEntry {
                target_id: id.clone(),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        self.get_route(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("route vanished after insert".into()))
    }

    pub async fn get_route(&self, id: &str) -> Result<Option<NotificationRoute>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ROUTE_COLUMNS} FROM notification_routes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| route_from_row(&r)).transpose()
    }

    pub async fn list_routes(&self) -> Result<Vec<NotificationRoute>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ROUTE_COLUMNS} FROM notification_routes ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(route_from_row).collect()
    }

    pub async fn update_route(
        &self,
        id: &str,
        spec: &RouteSpec,
        audit: AuditEntry,
    ) -> Result<Option<NotificationRoute>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE notification_routes SET name = $1, notifier_id = $2, events = $3, min_severity = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(spec.name.as_str())
        .bind(spec.notifier_id.as_str())
        .bind(to_json(&spec.events)?)
        .bind(spec.min_severity.as_str())
        .bind(Timestamp::now().0)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_unique(e, "name"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        self.get_route(id).await
    }

    pub async fn delete_route(&self, id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM notification_routes WHERE id = $1")
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
