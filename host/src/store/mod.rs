//! The only module that runs SQL.
//!
//! One `Store` API over two dialects. Queries are written once in portable SQL with `$N`
//! placeholders (both SQLite and PostgreSQL accept them) and run through sqlx's `Any` driver;
//! what really differs between the dialects (DDL, locking, catalog queries) is chosen by
//! [`Dialect`] at the call site. Every mutation that comes from the API takes its audit record
//! and writes both in one transaction, so the trail never misses a change that happened.

pub mod agents;
pub mod challenges;
pub mod jobs;
pub mod keys;
pub mod kv;
pub mod lifecycle;
pub mod locks;

pub use lifecycle::NewVersion;
pub mod migrate;
pub mod overview;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::auth::{ApiKeyHash, Role};
use crate::model::{
    ApiKeyInfo, AuditEvent, CertState, CertStatus, Certificate, EXPIRING_WINDOW_DAYS, InstanceKind, KeyGeneration,
    KeyType, Page, PluginInstance, RenewalPolicy, Timestamp,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint on a user-visible field was violated.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// A pagination cursor this list did not hand out (or one of another sort order).
    #[error("cursor {0:?} is not one this list returned (with this sort order)")]
    BadCursor(String),
    /// The row is referenced by others and cannot be removed.
    #[error("{0}")]
    InUse(String),
    #[error("database schema: {0}")]
    Schema(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    fn from_unique(e: sqlx::Error, field: &'static str) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { field },
            _ => StoreError::Database(e),
        }
    }
}

/// Something the API changed, for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn new(actor: &str, action: &str, target_type: &str, target_id: &str) -> Self {
        AuditEntry {
            actor: actor.to_string(),
            action: action.to_string(),
            target_type: target_type.to_string(),
            target_id: target_id.to_string(),
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A certificate as declared.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub name: String,
    pub common_name: String,
    pub sans: Vec<String>,
    pub key_type: KeyType,
    pub key_generation: KeyGeneration,
    pub issuer_id: Option<String>,
    pub renewal: RenewalPolicy,
    pub labels: BTreeMap<String, String>,
    pub profile: Option<String>,
    pub agent_id: Option<String>,
    pub deploy: Option<serde_json::Value>,
}

/// Changes to a certificate; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CertificatePatch {
    pub common_name: Option<String>,
    pub sans: Option<Vec<String>>,
    pub key_type: Option<KeyType>,
    pub issuer_id: Option<Option<String>>,
    pub renewal: Option<RenewalPolicy>,
    pub labels: Option<BTreeMap<String, String>>,
    pub profile: Option<Option<String>>,
    pub agent_id: Option<Option<String>>,
    pub deploy: Option<Option<serde_json::Value>>,
}

#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    pub status: Option<CertStatus>,
    pub issuer_id: Option<String>,
    /// Case-insensitive substring of the name, common name or SANs.
    pub search: Option<String>,
    /// notAfter at or after / before these times (certificates not yet issued have none).
    pub expires_after: Option<Timestamp>,
    pub expires_before: Option<Timestamp>,
    pub sort: CertSort,
}

/// The order of a certificate list; ties (and the default) go by id, i.e. creation order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertSort {
    #[default]
    Id,
    Name {
        descending: bool,
    },
    NotAfter {
        descending: bool,
    },
    CreatedAt {
        descending: bool,
    },
}

impl std::str::FromStr for CertSort {
    type Err = String;
    fn from_str(s: &str) -> Result<CertSort, String> {
        let (descending, key) = match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s),
        };
        match key {
            "name" => Ok(CertSort::Name { descending }),
            "not_after" => Ok(CertSort::NotAfter { descending }),
            "created_at" => Ok(CertSort::CreatedAt { descending }),
            _ => Err(format!(
                "{s:?} is not a sort order: name, not_after or created_at, with '-' in front for descending"
            )),
        }
    }
}

/// Not yet issued (no notAfter): last in either order.
const NO_NOT_AFTER_ASC: i64 = i64::MAX;
const NO_NOT_AFTER_DESC: i64 = i64::MIN;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

/// Cursor pagination: items after `cursor`, at most `limit`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: u32,
}

/// Gauges the metrics endpoint reads on every scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetCounts {
    pub certificates: i64,
    pub expiring_soon: i64,
    pub expired: i64,
    pub revoked: i64,
    pub agents: i64,
    pub agents_online: i64,
    pub jobs_pending: i64,
}

/// Agents whose last heartbeat is older than this are offline.
pub const AGENT_ONLINE_WINDOW_SECS: i64 = 300;

/// A bind value for dynamically built queries.
#[derive(Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds `WHERE` clauses with numbered placeholders.
pub(crate) struct Query {
    sql: String,
    has_where: bool,
    binds: Vec<Bind>,
}

impl Query {
    pub(crate) fn new(sql: &str) -> Self {
        Query {
            sql: sql.to_string(),
            has_where: false,
            binds: Vec::new(),
        }
    }

    /// Appends `clause` to the `WHERE` part; each `?` in it takes the next of `binds`.
    pub(crate) fn and(&mut self, clause: &str, binds: Vec<Bind>) {
        self.sql.push_str(if self.has_where { " AND " } else { " WHERE " });
        self.has_where = true;
        let mut binds = binds.into_iter();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                self.binds.extend(binds.next());
                self.sql.push_str(&format!("${}", self.binds.len()));
            }
            self.sql.push_str(part);
        }
    }

    pub(crate) fn tail(&mut self, sql: &str, bind: Bind) {
        self.binds.push(bind);
        self.sql.push_str(&sql.replace('?', &format!("${}", self.binds.len())));
    }

    pub(crate) async fn fetch_all(&self, pool: &AnyPool) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut q = sqlx::query(&self.sql);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q.fetch_all(pool).await
    }
}

fn like_pattern(s: &str) -> String {
    let escaped = s
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(crate) fn enum_col<T: std::str::FromStr<Err = String>>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const CERT_COLUMNS: &str = "id, name, common_name, sans, key_type, key_generation, issuer_id, state, renewal, \
                            labels, not_before, not_after, renew_at, current_version_id, profile, ari_window_start, \
                            ari_window_end, ari_explanation_url, agent_id, deploy, created_at, updated_at";

fn cert_from_row(row: &AnyRow, now: Timestamp) -> Result<Certificate, StoreError> {
    let state: CertState = enum_col(row, "state")?;
    let not_after = row.try_get::<Option<i64>, _>("not_after")?.map(Timestamp);
    Ok(Certificate {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        common_name: row.try_get("common_name")?,
        sans: json_col(row, "sans")?,
        key_type: enum_col(row, "key_type")?,
        key_generation: enum_col(row, "key_generation")?,
        issuer_id: row.try_get("issuer_id")?,
        status: CertStatus::derive(state, not_after, now),
        renewal: json_col(row, "renewal")?,
        labels: json_col(row, "labels")?,
        not_before: row.try_get::<Option<i64>, _>("not_before")?.map(Timestamp),
        not_after,
        renew_at: row.try_get::<Option<i64>, _>("renew_at")?.map(Timestamp),
        current_version_id: row.try_get("current_version_id")?,
        profile: row.try_get("profile")?,
        agent_id: row.try_get("agent_id")?,
        deploy: match row.try_get::<Option<String>, _>("deploy")? {
            Some(text) => {
                Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column deploy: {e}")))?)
            }
            None => None,
        },
        renewal_window: match (
            row.try_get::<Option<i64>, _>("ari_window_start")?,
            row.try_get::<Option<i64>, _>("ari_window_end")?,
        ) {
            (Some(start), Some(end)) => Some(crate::model::RenewalWindow {
                start: Timestamp(start),
                end: Timestamp(end),
                explanation_url: row.try_get("ari_explanation_url")?,
            }),
            _ => None,
        },
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

const INSTANCE_COLUMNS: &str = "id, kind, name, plugin, config, paused_until, paused_reason, created_at, updated_at";

fn instance_from_row(row: &AnyRow) -> Result<PluginInstance, StoreError> {
    Ok(PluginInstance {
        id: row.try_get("id")?,
        kind: enum_col(row, "kind")?,
        name: row.try_get("name")?,
        plugin: row.try_get("plugin")?,
        config: json_col(row, "config")?,
        paused_until: row.try_get::<Option<i64>, _>("paused_until")?.map(Timestamp),
        paused_reason: row.try_get("paused_reason")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at: Timestamp(row.try_get("at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        detail: json_col(row, "detail")?,
    })
}

fn api_key_from_row(row: &AnyRow) -> Result<ApiKeyInfo, StoreError> {
    Ok(ApiKeyInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: enum_col_role(row)?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn enum_col_role(row: &AnyRow) -> Result<Role, StoreError> {
    let text: String = row.try_get("role")?;
    text.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("column role: {e}")))
}

/// Splits `limit + 1` fetched rows into a page and the cursor of the next one.
pub(crate) fn paginate<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

async fn insert_audit(tx: &mut sqlx::AnyConnection, entry: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, target_type, target_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Timestamp::now().0)
    .bind(entry.actor.as_str())
    .bind(entry.action.as_str())
    .bind(entry.target_type.as_str())
    .bind(entry.target_id.as_str())
    .bind(to_json(&entry.detail)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The store: a connection pool and its dialect. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects to `url` (`sqlite:...` or `postgres://...`). For SQLite the file is created if
    /// missing and put in WAL mode.
    pub async fn connect(url: &str, max_conns: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let options = AnyPoolOptions::new()
            .max_connections(max_conns)
            .acquire_timeout(Duration::from_secs(10));
        let options = match dialect {
            // WAL lets readers run beside the one writer; the busy timeout makes a writer wait
            // for the lock instead of failing at once. synchronous = NORMAL is the documented
            // setting for WAL: commits no longer wait for an fsync each (a checkpoint does),
            // the database cannot be corrupted, and only a power loss (not a crash of the
            // server) can lose the last commits.
            Dialect::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => options,
        };
        let pool = options.connect(url).await?;
        Ok(Store { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- certificates ----

    pub async fn create_certificate(&self, new: &NewCertificate, audit: AuditEntry) -> Result<Certificate, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO certificates (id, name, common_name, sans, key_type, key_generation, issuer_id, state, \
             renewal, labels, not_after, created_at, updated_at, profile, agent_id, deploy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11, $12, $13, $14)",
        )
        .bind(id.as_str())
        .bind(new.name.as_str())
        .bind(new.common_name.as_str())
        .bind(to_json(&new.sans)?)
        .bind(new.key_type.as_str())
        .bind(new.key_generation.as_str())
        .bind(new.issuer_id.as_deref())
        .bind(CertState::Pending.as_str())
        .bind(to_json(&new.renewal)?)
        .bind(to_json(&new.labels)?)
        .bind(now.0)
        .bind(new.profile.as_deref())
        .bind(new.agent_id.as_deref())
        .bind(new.deploy.as_ref().map(to_json).transpose()?)
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
        self.get_certificate(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("certificate vanished after insert".into()))
    }

    pub async fn get_certificate(&self, id: &str) -> Result<Option<Certificate>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let now = Timestamp::now();
        row.map(|r| cert_from_row(&r, now)).transpose()
    }

    pub async fn list_certificates(
        &self,
        filter: &CertificateFilter,
        page: &PageRequest,
    ) -> Result<Page<Certificate>, StoreError> {
        let now = Timestamp::now();
        let soon = now.plus_days(EXPIRING_WINDOW_DAYS);
        let mut q = Query::new(&format!("SELECT {CERT_COLUMNS} FROM certificates"));
        if let Some(status) = filter.status {
            let issued = CertState::Issued.as_str().to_string();
            match status {
                CertStatus::Pending => q.and("state = ?", vec![Bind::Text(CertState::Pending.as_str().into())]),
                CertStatus::Revoked => q.and("state = ?", vec![Bind::Text(CertState::Revoked.as_str().into())]),
                CertStatus::Failed => q.and("state = ?", vec![Bind::Text(CertState::Failed.as_str().into())]),
                CertStatus::Active => q.and(
                    "state = ? AND (not_after IS NULL OR not_after > ?)",
                    vec![Bind::Text(issued), Bind::Int(soon.0)],
                ),
                CertStatus::Expiring => q.and(
                    "state = ? AND not_after > ? AND not_after <= ?",
                    vec![Bind::Text(issued), Bind::Int(now.0), Bind::Int(soon.0)],
                ),
                CertStatus::Expired => q.and(
                    "state = ? AND not_after <= ?",
                    vec![Bind::Text(issued), Bind::Int(now.0)],
                ),
            }
        }
        if let Some(issuer) = &filter.issuer_id {
            q.and("issuer_id = ?", vec![Bind::Text(issuer.clone())]);
        }
        if let Some(search) = &filter.search {
            let p = like_pattern(search);
            q.and(
                "(LOWER(name) LIKE ? ESCAPE '\\' OR LOWER(common_name) LIKE ? ESCAPE '\\' OR LOWER(sans) LIKE ? ESCAPE '\\')",
                vec![Bind::Text(p.clone()), Bind::Text(p.clone()), Bind::Text(p)],
            );
        }
        if let Some(t) = filter.expires_after {
            q.and("not_after >= ?", vec![Bind::Int(t.0)]);
        }
        if let Some(t) = filter.expires_before {
            q.and("not_after < ?", vec![Bind::Int(t.0)]);
        }
        // Keyset pagination on (sort key, id): the cursor is `key|id` (just `id` by default).
        let (key_sql, descending, text_key) = match filter.sort {
            CertSort::Id => ("id", false, true),
            CertSort::Name { descending } => ("name", descending, true),
            CertSort::NotAfter { descending: false } => ("COALESCE(not_after, 9223372036854775807)", false, false),
            CertSort::NotAfter { descending: true } => ("COALESCE(not_after, -9223372036854775808)", true, false),
            CertSort::CreatedAt { descending } => ("created_at", descending, false),
        };
        let (cmp, dir) = if descending { ("<", "DESC") } else { (">", "ASC") };
        if let Some(cursor) = &page.cursor {
            if filter.sort == CertSort::Id {
                q.and("id > ?", vec![Bind::Text(cursor.clone())]);
            } else {
                let bad = || StoreError::BadCursor(cursor.clone());
                let (key, id) = cursor.rsplit_once('|').ok_or_else(bad)?;
                let key = if text_key {
                    Bind::Text(key.to_string())
                } else {
                    Bind::Int(key.parse().map_err(|_| bad())?)
                };
                q.and(
                    &format!("({key_sql} {cmp} ? OR ({key_sql} = ? AND id {cmp} ?))"),
                    vec![key.clone(), key, Bind::Text(id.to_string())],
                );
            }
        }
        q.tail(
            &format!(" ORDER BY {key_sql} {dir}, id {dir} LIMIT ?"),
            Bind::Int(i64::from(page.limit) + 1),
        );
        let rows = q.fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|r| cert_from_row(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let sort = filter.sort;
        Ok(paginate(items, page.limit, |c| match sort {
            CertSort::Id => c.id.clone(),
            CertSort::Name { .. } => format!("{}|{}", c.name, c.id),
            CertSort::NotAfter { descending } => format!(
                "{}|{}",
                c.not_after.map_or(
                    if descending {
                        NO_NOT_AFTER_DESC
                    } else {
                        NO_NOT_AFTER_ASC
                    },
                    |t| t.0
                ),
                c.id
            ),
            CertSort::CreatedAt { .. } => format!("{}|{}", c.created_at.0, c.id),
        }))
    }

    pub async fn update_certificate(
        &self,
        id: &str,
        patch: &CertificatePatch,
        audit: AuditEntry,
    ) -> Result<Option<Certificate>, StoreError> {
        let Some(current) = self.get_certificate(id).await? else {
            return Ok(None);
        };
        let common_name = patch.common_name.as_ref().unwrap_or(&current.common_name);
        let sans = patch.sans.as_ref().unwrap_or(&current.sans);
        let key_type = patch.key_type.unwrap_or(current.key_type);
        let issuer_id = patch.issuer_id.as_ref().unwrap_or(&current.issuer_id);
        let renewal = patch.renewal.as_ref().unwrap_or(&current.renewal);
        let labels = patch.labels.as_ref().unwrap_or(&current.labels);
        let profile = patch.profile.as_ref().unwrap_or(&current.profile);
        let agent_id = patch.agent_id.as_ref().unwrap_or(&current.agent_id);
        let deploy = patch.deploy.as_ref().unwrap_or(&current.deploy);
        // A changed policy moves the renewal date of an issued certificate, unless the CA's
        // renewal window (RFC 9773) set it.
        let renew_at = match (current.status, current.not_before, current.not_after) {
            (CertStatus::Pending | CertStatus::Revoked | CertStatus::Failed, _, _) => current.renew_at,
            _ if current.renewal_window.is_some() && renewal.auto_renew => current.renew_at,
            (_, Some(nb), Some(na)) => renewal.renew_at(nb, na),
            _ => current.renew_at,
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE certificates SET common_name = $1, sans = $2, key_type = $3, issuer_id = $4, renewal = $5, \
             labels = $6, updated_at = $7, renew_at = $9, profile = $10, agent_id = $11, deploy = $12 WHERE id = $8",
        )
        .bind(common_name.as_str())
        .bind(to_json(sans)?)
        .bind(key_type.as_str())
        .bind(issuer_id.as_deref())
        .bind(to_json(renewal)?)
        .bind(to_json(labels)?)
        .bind(Timestamp::now().0)
        .bind(id)
        .bind(renew_at.map(|t| t.0))
        .bind(profile.as_deref())
        .bind(agent_id.as_deref())
        .bind(deploy.as_ref().map(to_json).transpose()?)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        self.get_certificate(id).await
    }

    /// Deletes a certificate with its versions and jobs. Returns false if there was none.
    pub async fn delete_certificate(&self, id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM certificates WHERE id = $1")
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

    // ---- plugin instances (issuers, DNS solvers, notifiers) ----

    pub async fn create_instance(
        &self,
        kind: InstanceKind,
        name: &str,
        plugin: &str,
        config: &serde_json::Value,
        audit: AuditEntry,
    ) -> Result<PluginInstance, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO plugin_instances (id, kind, name, plugin, config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(kind.as_str())
        .bind(name)
        .bind(plugin)
        .bind(to_json(config)?)
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
        self.get_instance(kind, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("instance vanished after insert".into()))
    }

    pub async fn get_instance(&self, kind: InstanceKind, id: &str) -> Result<Option<PluginInstance>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM plugin_instances WHERE kind = $1 AND id = $2"
        ))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| instance_from_row(&r)).transpose()
    }

    pub async fn get_instance_by_name(
        &self,
        kind: InstanceKind,
        name: &str,
    ) -> Result<Option<PluginInstance>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM plugin_instances WHERE kind = $1 AND name = $2"
        ))
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| instance_from_row(&r)).transpose()
    }

    pub async fn list_instances(
        &self,
        kind: InstanceKind,
        page: &PageRequest,
    ) -> Result<Page<PluginInstance>, StoreError> {
        let mut q = Query::new(&format!("SELECT {INSTANCE_COLUMNS} FROM plugin_instances"));
        q.and("kind = ?", vec![Bind::Text(kind.as_str().into())]);
        if let Some(cursor) = &page.cursor {
            q.and("id > ?", vec![Bind::Text(cursor.clone())]);
        }
        q.tail(" ORDER BY id LIMIT ?", Bind::Int(i64::from(page.limit) + 1));
        let rows = q.fetch_all(&self.pool).await?;
        let items = rows.iter().map(instance_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |i| i.id.clone()))
    }

    pub async fn update_instance(
        &self,
        kind: InstanceKind,
        id: &str,
        name: Option<&str>,
        config: Option<&serde_json::Value>,
        audit: AuditEntry,
    ) -> Result<Option<PluginInstance>, StoreError> {
        let Some(current) = self.get_instance(kind, id).await? else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE plugin_instances SET name = $1, config = $2, updated_at = $3 WHERE id = $4")
            .bind(name.unwrap_or(&current.name))
            .bind(to_json(config.unwrap_or(&current.config))?)
            .bind(Timestamp::now().0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_unique(e, "name"))?;
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        self.get_instance(kind, id).await
    }

    /// Deletes an instance. An issuer still named by certificates is refused with `InUse`.
    pub async fn delete_instance(&self, kind: InstanceKind, id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let users: i64 = sqlx::query("SELECT COUNT(*) FROM certificates WHERE issuer_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if users > 0 {
            return Err(StoreError::InUse(format!(
                "{} certificate(s) use this {kind}; point them at another issuer or delete them first",
                users
            )));
        }
        let done = sqlx::query("DELETE FROM plugin_instances WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
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

    // ---- API keys ----

    pub async fn create_api_key(
        &self,
        name: &str,
        hash: &ApiKeyHash,
        role: Role,
        audit: AuditEntry,
    ) -> Result<ApiKeyInfo, StoreError> {
        let id = new_id();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO api_keys (id, name, key_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str())
            .bind(name)
            .bind(hash.to_hex())
            .bind(role.as_str())
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
        Ok(ApiKeyInfo {
            id,
            name: name.to_string(),
            role,
            created_at: now,
        })
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, name, role, created_at FROM api_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    pub async fn count_api_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// The key with this hash, if any. The lookup is by hash, so timing reveals nothing of the key.
    pub async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyInfo>, StoreError> {
        let row = sqlx::query("SELECT id, name, role, created_at FROM api_keys WHERE key_hash = $1")
            .bind(hash.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| api_key_from_row(&r)).transpose()
    }

    pub async fn delete_api_key(&self, id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
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

    // ---- audit ----

    /// Records an action that changed nothing in the store (e.g. a test run of an instance).
    pub async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &entry).await
    }

    /// Newest first.
    pub async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        let mut q = Query::new("SELECT id, at, actor, action, target_type, target_id, detail FROM audit_events");
        for (col, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target_type", &filter.target_type),
            ("target_id", &filter.target_id),
        ] {
            if let Some(v) = value {
                q.and(&format!("{col} = ?"), vec![Bind::Text(v.clone())]);
            }
        }
        if let Some(cursor) = &page.cursor {
            let id: i64 = cursor
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("audit cursor {cursor:?} is not a number")))?;
            q.and("id < ?", vec![Bind::Int(id)]);
        }
        q.tail(" ORDER BY id DESC LIMIT ?", Bind::Int(i64::from(page.limit) + 1));
        let rows = q.fetch_all(&self.pool).await?;
        let items = rows.iter().map(audit_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |e| e.id.to_string()))
    }

    // ---- metrics ----

    pub async fn fleet_counts(&self, now: Timestamp) -> Result<FleetCounts, StoreError> {
        let soon = now.plus_days(EXPIRING_WINDOW_DAYS);
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM certificates), \
               (SELECT COUNT(*) FROM certificates WHERE state = 'issued' AND not_after > $1 AND not_after <= $2), \
               (SELECT COUNT(*) FROM certificates WHERE state = 'issued' AND not_after <= $1), \
               (SELECT COUNT(*) FROM certificates WHERE state = 'revoked'), \
               (SELECT COUNT(*) FROM agents WHERE retired_at IS NULL), \
               (SELECT COUNT(*) FROM agents WHERE retired_at IS NULL AND last_heartbeat >= $3), \
               (SELECT COUNT(*) FROM jobs WHERE state = 'pending')",
        )
        .bind(now.0)
        .bind(soon.0)
        .bind(now.0 - AGENT_ONLINE_WINDOW_SECS)
        .fetch_one(&self.pool)
        .await?;
        Ok(FleetCounts {
            certificates: row.try_get(0)?,
            expiring_soon: row.try_get(1)?,
            expired: row.try_get(2)?,
            revoked: row.try_get(3)?,
            agents: row.try_get(4)?,
            agents_online: row.try_get(5)?,
            jobs_pending: row.try_get(6)?,
        })
    }
}
