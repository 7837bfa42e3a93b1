//! The certificate lifecycle: issuance and renewal jobs, revocation, CRLs, events and the
//! scheduler that drives them.
//!
//! Everything slow runs as a job (see `store::jobs`): the API answers at once with the job,
//! the job runner leases due jobs, calls the issuer plugin, and records the outcome. An issuer
//! that needs time (an ACME order) returns `pending` with its state; the job sleeps with that
//! state in its payload and resumes later, on any replica, after a restart too.

pub mod crl;
pub mod events;
pub mod scheduler;
pub mod x509;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::keystore::Keystore;
use crate::metrics::Metrics;
use crate::model::{
    Certificate, CertificateVersion, ErrorClass, EventKind, InstanceKind, Job, JobKind, JobState, KeyGeneration,
    PluginInstance, RevocationReason, Severity, Timestamp,
};
use crate::plugins::registry::{ConfigProblem, IssuerAnswer, Registry};
use crate::plugins::{CallError, CallOutcome, PluginFailure, v0_1};
use crate::store::jobs::{JobFailure, NewJob};
use crate::store::lifecycle::NewVersion;
use crate::store::{AuditEntry, Store, StoreError};

/// The time the lifecycle runs on: the real clock, shifted by an offset that tests advance to
/// prove renewal and alerts without waiting days.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.0.load(Ordering::Relaxed))
    }

    /// Moves this clock forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

/// Why a lifecycle request was refused; the API maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 422, naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 404
    #[error("{0} not found")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 503: the issuer plugin could not answer (trap, timeout, not loaded).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> Refusal {
    Refusal::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// What an issuance or renewal job carries between attempts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssuancePayload {
    /// The CSR (PEM) from an agent or the API; absent for server-side key generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// The keystore id of the server-generated key, kept across attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The issuer's opaque state (base64) while it is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_state: Option<String>,
    /// Progress, oldest first, for people watching the job.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The version this job stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Who asked for it.
    #[serde(default)]
    pub requested_by: String,
}

/// One step of a job's progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub at: String,
    pub step: String,
    pub message: String,
}

impl IssuancePayload {
    fn step(&mut self, now: Timestamp, step: &str, message: impl Into<String>) {
        self.steps.push(Step {
            at: now.to_rfc3339(),
            step: step.to_string(),
            message: message.into(),
        });
        // A long ACME order could pile up steps; keep the newest.
        if self.steps.len() > 50 {
            self.steps.remove(0);
        }
    }
}

/// A failed attempt, classified for retries and metrics.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    pub retry: bool,
    /// Seconds to wait at least (rate limits).
    pub wait: Option<i64>,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>, retry: bool) -> Failure {
        Failure {
            class,
            message: message.into(),
            retry,
            wait: None,
        }
    }

    fn store(e: StoreError) -> Failure {
        Failure::new(ErrorClass::Other, format!("database: {e}"), true)
    }

    /// Classifies a plugin call outcome that did not succeed.
    pub fn of_call<T>(result: Result<Result<T, PluginFailure>, CallError>) -> Result<T, Failure> {
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => Err(Failure::of_plugin(f)),
            Err(e) => Err(match e {
                CallError::CpuBudget | CallError::WallTimeout(_) => {
                    Failure::new(ErrorClass::Timeout, e.to_string(), true)
                }
                CallError::Memory | CallError::Trap(_) => Failure::new(ErrorClass::PluginTrap, e.to_string(), true),
                CallError::NotLoaded(_) | CallError::WrongKind { .. } | CallError::Host(_) => {
                    Failure::new(ErrorClass::Other, e.to_string(), true)
                }
            }),
        }
    }

    pub fn of_plugin(f: PluginFailure) -> Failure {
        let message = f.to_string();
        match f {
            PluginFailure::InvalidConfig(_) => Failure::new(ErrorClass::Validation, message, false),
            PluginFailure::Auth(_) => Failure::new(ErrorClass::Auth, message, false),
            PluginFailure::NotFound(_) => Failure::new(ErrorClass::Upstream, message, false),
            PluginFailure::RateLimited(wait) => Failure {
                wait: wait.map(i64::from),
                ..Failure::new(ErrorClass::RateLimited, message, true)
            },
            PluginFailure::Transient(_) => Failure::new(ErrorClass::Upstream, message, true),
            PluginFailure::Permanent(_) => Failure::new(ErrorClass::Validation, message, false),
        }
    }
}

/// How a job attempt ended, when it did not fail.
enum Ended {
    Completed,
    /// Put back to sleep until the given time (an issuer's `pending`).
    Deferred,
}

/// Runs the lifecycle for one server process.
pub struct Lifecycle {
    pub store: Store,
    pub plugins: Arc<Registry>,
    pub keystore: Arc<Keystore>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// This replica's name on the leases it holds.
    owner: String,
    wake: Notify,
    /// First issuances per process, one at a time (see `issue_once`).
    first_issuance: tokio::sync::Mutex<()>,
}

/// Lease length: a job whose runner died becomes due again after this.
const LEASE_SECS: i64 = 300;
/// How long an issuer pauses after a rate limit that named no wait.
const RATE_LIMIT_PAUSE_SECS: i64 = 300;
/// Jobs taken per lease round.
const LEASE_BATCH: i64 = 16;

impl Lifecycle {
    pub fn new(store: Store, plugins: Arc<Registry>, keystore: Arc<Keystore>, metrics: Arc<Metrics>) -> Lifecycle {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "certctl".to_string());
        Lifecycle {
            store,
            plugins,
            keystore,
            metrics,
            clock: Clock::default(),
            owner: format!("{host}/{}", uuid::Uuid::now_v7()),
            wake: Notify::new(),
            first_issuance: tokio::sync::Mutex::new(()),
        }
    }

    /// Wakes the job runner (a job was just enqueued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    async fn issuer_of(&self, cert: &Certificate) -> Result<PluginInstance, Refusal> {
        let issuer_id = cert.issuer_id.as_deref().ok_or_else(|| {
            invalid(
                "issuer_id",
                "the certificate has no issuer: set issuer_id with PATCH /api/v1/certificates/{id}",
            )
        })?;
        self.store
            .get_instance(InstanceKind::Issuer, issuer_id)
            .await?
            .ok_or_else(|| invalid("issuer_id", format!("issuer {issuer_id} no longer exists")))
    }

    /// The instance's configuration with its secrets resolved, ready for a call.
    fn resolved_config(&self, instance: &PluginInstance) -> Result<String, Failure> {
        self.plugins.instance_config(instance).map_err(|p| match p {
            ConfigProblem::NotLoaded(_) => Failure::new(ErrorClass::Other, p.to_string(), true),
            ConfigProblem::Invalid(_) => Failure::new(ErrorClass::Validation, p.to_string(), false),
        })
    }

    fn job_kind_for(cert: &Certificate) -> JobKind {
        if cert.current_version_id.is_some() {
            JobKind::Renewal
        } else {
            JobKind::Issuance
        }
    }

    /// Opens an issuance or renewal job for a certificate: waiting for its agent's CSR, or due
    /// now for server-side keys. `Conflict` names the job already open.
    pub async fn request_issuance(&self, cert: &Certificate, actor: &str) -> Result<Job, Refusal> {
        self.issuer_of(cert).await?;
        if let Some(open) = self.store.open_issuance(&cert.id).await? {
            return Err(Refusal::Conflict(format!(
                "job {} ({}) is already {} for this certificate",
                open.id, open.kind, open.state
            )));
        }
        let state = match cert.key_generation {
            KeyGeneration::Server => cert.renewal.ready_state(),
            KeyGeneration::Agent => JobState::AwaitingCsr,
        };
        let payload = IssuancePayload {
            requested_by: actor.to_string(),
            ..IssuancePayload::default()
        };
        let job = NewJob {
            state,
            ..NewJob::now(
                Self::job_kind_for(cert),
                Some(&cert.id),
                json!(payload),
                i64::from(cert.renewal.max_attempts),
            )
        };
        let job = self.store.enqueue_job(&job).await?.ok_or_else(|| {
            Refusal::Conflict("another issuance for this certificate was opened at the same moment".into())
        })?;
        self.store
            .record_audit(
                AuditEntry::new(actor, &format!("job.{}", job.kind), "certificate", &cert.id)
                    .with_detail(json!({"job_id": job.id, "state": job.state})),
            )
            .await?;
        self.wake();
        Ok(job)
    }

    /// Accepts a CSR for a certificate whose key lives with its agent (or the caller): checks
    /// it here and with the issuer's policy, then hands it to the open job (or opens one).
    /// Answers at once; issuance runs as the job.
    pub async fn submit_csr(&self, cert_id: &str, csr_text: &str, actor: &str) -> Result<Job, Refusal> {
        let cert = self
            .store
            .get_certificate(cert_id)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("certificate {cert_id}")))?;
        if cert.key_generation == KeyGeneration::Server {
            return Err(Refusal::Conflict(
                "this certificate's key is generated by the server (key_generation server): ask for a renewal \
                 instead of sending a CSR"
                    .into(),
            ));
        }
        let issuer = self.issuer_of(&cert).await?;
        let csr = x509::check_csr(csr_text).map_err(|m| invalid("csr", m))?;
        if csr.key_type != cert.key_type {
            return Err(invalid(
                "csr",
                format!(
                    "the CSR's key is {} but the certificate declares key_type {}",
                    csr.key_type, cert.key_type
                ),
            ));
        }
        let extra: Vec<&String> = csr.names.iter().filter(|n| !cert.sans.contains(n)).collect();
        let missing: Vec<&String> = cert.sans.iter().filter(|n| !csr.names.contains(n)).collect();
        if !extra.is_empty() || !missing.is_empty() {
            return Err(invalid(
                "csr",
                format!(
                    "the CSR's names must be the certificate's names {:?}: missing {missing:?}, not declared {extra:?}",
                    cert.sans
                ),
            ));
        }
        let config = self
            .resolved_config(&issuer)
            .map_err(|f| invalid("issuer_id", f.message))?;
        let request = issue_request(&cert, csr.der.clone(), None);
        let outcome = self
            .plugins
            .issuer_check(&issuer.plugin, &issuer.id, &config, &request)
            .await;
        match outcome.result {
            Ok(Ok(_)) => {}
            Ok(Err(f)) => {
                return Err(invalid(
                    "csr",
                    format!("issuer {} refused the request: {f}", issuer.name),
                ));
            }
            Err(e) => {
                return Err(Refusal::Unavailable(format!(
                    "issuer {} could not check the request: {e}",
                    issuer.name
                )));
            }
        }

        let payload = IssuancePayload {
            csr_pem: Some(csr_text.to_string()),
            requested_by: actor.to_string(),
            ..IssuancePayload::default()
        };
        let job = match self.store.open_issuance(&cert.id).await? {
            Some(open) if open.state == JobState::AwaitingCsr => {
                let mut merged: IssuancePayload = serde_json::from_value(open.payload.clone()).unwrap_or_default();
                merged.csr_pem = payload.csr_pem.clone();
                merged.step(self.clock.now(), "csr", format!("CSR received from {actor}"));
                if !self
                    .store
                    .supply_csr(&open.id, &json!(merged), cert.renewal.ready_state())
                    .await?
                {
                    return Err(Refusal::Conflict(format!(
                        "job {} stopped waiting for a CSR meanwhile; look at it with GET /api/v1/jobs/{}",
                        open.id, open.id
                    )));
                }
                self.store
                    .get_job(&open.id)
                    .await?
                    .ok_or_else(|| Refusal::NotFound(format!("job {}", open.id)))?
            }
            Some(open) => {
                return Err(Refusal::Conflict(format!(
                    "job {} ({}) is already {} for this certificate; cancel it first to send another CSR",
                    open.id, open.kind, open.state
                )));
            }
            None => {
                let mut payload = payload;
                payload.step(self.clock.now(), "csr", format!("CSR received from {actor}"));
                let job = NewJob {
                    state: cert.renewal.ready_state(),
                    ..NewJob::now(
                        Self::job_kind_for(&cert),
                        Some(&cert.id),
                        json!(payload),
                        i64::from(cert.renewal.max_attempts),
                    )
                };
                self.store.enqueue_job(&job).await?.ok_or_else(|| {
                    Refusal::Conflict("another issuance for this certificate was opened at the same moment".into())
                })?
            }
        };
        self.store
            .record_audit(
                AuditEntry::new(actor, "certificate.csr", "certificate", &cert.id)
                    .with_detail(json!({"job_id": job.id, "key_type": csr.key_type, "names": csr.names})),
            )
            .await?;
        self.wake();
        Ok(job)
    }

    /// Revokes the current version: recorded at once, the CRL regenerated, the issuer told by
    /// a revocation job, and a `revoked` event sent.
    pub async fn revoke(
        &self,
        cert_id: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<CertificateVersion, Refusal> {
        let cert = self
            .store
            .get_certificate(cert_id)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("certificate {cert_id}")))?;
        let audit = AuditEntry::new(actor, "certificate.revoke", "certificate", cert_id)
            .with_detail(json!({"reason": reason, "version_id": cert.current_version_id}));
        let version = self
            .store
            .revoke_current(cert_id, reason, audit)
            .await?
            .ok_or_else(|| {
                Refusal::Conflict(format!(
                    "certificate {} has no version to revoke (never issued, or already revoked)",
                    cert.name
                ))
            })?;
        if let Some(open) = self.store.open_issuance(cert_id).await? {
            let audit = AuditEntry::new(actor, "job.cancel", "job", &open.id)
                .with_detail(json!({"why": "certificate revoked"}));
            self.store.cancel_job(&open.id, audit).await?;
        }
        if let Some(issuer_id) = &version.issuer_id
            && let Err(e) = crl::regenerate(self, issuer_id).await
        {
            tracing::error!(issuer = %issuer_id, error = %e, "CRL not regenerated after a revocation; the scheduler retries");
        }
        let job = NewJob {
            dedup_key: Some(format!("revoke:{}", version.id)),
            ..NewJob::now(
                JobKind::Revocation,
                Some(cert_id),
                json!({"version_id": version.id, "reason": reason}),
                i64::from(cert.renewal.max_attempts),
            )
        };
        self.store.enqueue_job(&job).await?;
        events::emit(
            self,
            events::Event::certificate(
                &cert,
                EventKind::Revoked,
                Severity::Warning,
                format!("certificate {} was revoked ({reason})", cert.name),
                &version.id,
            )
            .with("serial", &version.serial)
            .with("reason", reason.as_str()),
        )
        .await;
        self.wake();
        Ok(version)
    }

    /// Leases and runs due jobs until none are left. Returns how many ran.
    pub async fn run_due_jobs(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let jobs = self
                .store
                .lease_jobs(&self.owner, LEASE_BATCH, LEASE_SECS, self.clock.now())
                .await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            total += jobs.len();
            let mut set = tokio::task::JoinSet::new();
            for job in jobs {
                let this = self.clone();
                set.spawn(async move { this.run_job(job).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    async fn run_job(&self, job: Job) {
        let span = tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
        let _enter = span.enter();
        let result = match job.kind {
            JobKind::Issuance | JobKind::Renewal => self.run_issuance(&job).await,
            JobKind::Revocation => self.run_revocation(&job).await,
            JobKind::Notification => events::deliver(self, &job).await,
            JobKind::Deployment => Err(Failure::new(
                ErrorClass::Other,
                "deployment jobs are pulled by the agent of their certificate, never run by the server",
                false,
            )),
        };
        match result {
            Ok(Ended::Completed) => match self.store.complete_job(&job.id, &self.owner).await {
                Ok(true) => self.metrics.job_completed_total.inc(),
                Ok(false) => tracing::warn!("lease lost before completion; another replica took the job over"),
                Err(e) => tracing::error!(error = %e, "could not record job completion"),
            },
            Ok(Ended::Deferred) => {}
            Err(failure) => self.record_failure(&job, failure).await,
        }
    }

    async fn record_failure(&self, job: &Job, failure: Failure) {
        tracing::warn!(class = %failure.class, retry = failure.retry, "job attempt failed: {}", failure.message);
        let record = JobFailure {
            class: failure.class,
            message: &failure.message,
            retry: failure.retry,
            wait_at_least: failure.wait,
            now: self.clock.now(),
        };
        let state = match self.store.fail_job(&job.id, &self.owner, &record).await {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "could not record the job failure");
                return;
            }
        };
        let final_failure = state == JobState::Failed;
        if final_failure {
            self.metrics.job_failed_total.inc();
        }
        match job.kind {
            JobKind::Issuance | JobKind::Renewal => self.issuance_failed(job, &failure, final_failure).await,
            JobKind::Notification => events::delivery_failed(self, job, &failure, final_failure).await,
            _ => {}
        }
    }

    async fn issuance_failed(&self, job: &Job, failure: &Failure, final_failure: bool) {
        let Some(cert_id) = &job.certificate_id else { return };
        let Ok(Some(cert)) = self.store.get_certificate(cert_id).await else {
            return;
        };
        let plugin = self.issuer_plugin_name(&cert).await;
        self.metrics
            .issuance_failures_total
            .with_label_values(&[&plugin, failure.class.as_str()])
            .inc();
        if !final_failure {
            return;
        }
        self.metrics
            .issuance_total
            .with_label_values(&[&plugin, "failed"])
            .inc();
        if cert.current_version_id.is_none()
            && let Err(e) = self.store.mark_failed(cert_id).await
        {
            tracing::error!(error = %e, "could not mark the certificate failed");
        }
        if matches!(failure.class, ErrorClass::PluginTrap | ErrorClass::Timeout)
            && let Ok(issuer) = self.issuer_of(&cert).await
        {
            events::emit(
                self,
                events::Event::plugin_failing(&issuer, &job.id, &failure.message, None),
            )
            .await;
        }
        let (kind_word, severity) = match job.kind {
            JobKind::Renewal => ("renewal", Severity::Critical),
            _ => ("issuance", Severity::Warning),
        };
        events::emit(
            self,
            events::Event::certificate(
                &cert,
                EventKind::RenewalFailed,
                severity,
                format!(
                    "{kind_word} of {} failed after {} attempt(s): {}",
                    cert.name, job.attempts, failure.message
                ),
                &job.id,
            )
            .with("job_id", &job.id)
            .with("error_class", failure.class.as_str()),
        )
        .await;
    }

    async fn issuer_plugin_name(&self, cert: &Certificate) -> String {
        match self.issuer_of(cert).await {
            Ok(i) => i.plugin,
            Err(_) => "unknown".to_string(),
        }
    }

    async fn run_issuance(&self, job: &Job) -> Result<Ended, Failure> {
        let cert_id = job
            .certificate_id
            .as_deref()
            .ok_or_else(|| Failure::new(ErrorClass::Validation, "issuance job without a certificate", false))?;
        let cert = self
            .store
            .get_certificate(cert_id)
            .await
            .map_err(Failure::store)?
            .ok_or_else(|| {
                Failure::new(
                    ErrorClass::Validation,
                    format!("certificate {cert_id} was deleted"),
                    false,
                )
            })?;
        let issuer = self
            .issuer_of(&cert)
            .await
            .map_err(|r| Failure::new(ErrorClass::Validation, r.to_string(), false))?;
        let config = self.resolved_config(&issuer)?;
        let mut payload: IssuancePayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| Failure::new(ErrorClass::Other, format!("job payload: {e}"), false))?;
        let now = self.clock.now();

        // The CSR: the one supplied, or one made here for a server-generated key.
        let csr = match (&payload.csr_pem, cert.key_generation) {
            (Some(pem), _) => {
                x509::check_csr(pem).map_err(|m| Failure::new(ErrorClass::Validation, format!("csr: {m}"), false))?
            }
            (None, KeyGeneration::Server) => self.server_csr(&cert, &mut payload, job).await?,
            (None, KeyGeneration::Agent) => {
                return Err(Failure::new(
                    ErrorClass::Validation,
                    "no CSR: this certificate's agent must send one (POST /api/v1/certificates/{id}/csr)",
                    false,
                ));
            }
        };

        // One rate limit holds for every order of the issuer: wait it out without an attempt.
        if let Some(until) = issuer.paused_until.filter(|u| *u > now) {
            payload.step(
                now,
                "wait",
                format!(
                    "issuer {} is rate-limited by its CA until {}: {}",
                    issuer.name,
                    until.to_rfc3339(),
                    issuer.paused_reason.as_deref().unwrap_or("no reason given")
                ),
            );
            self.store
                .defer_job(&job.id, &self.owner, &json!(payload), until)
                .await
                .map_err(Failure::store)?;
            return Ok(Ended::Deferred);
        }

        let outcome = match payload.issuer_state.as_deref() {
            Some(state) => {
                let state = B64
                    .decode(state)
                    .map_err(|e| Failure::new(ErrorClass::Other, format!("stored issuer state: {e}"), false))?;
                payload.step(now, "resume", format!("resuming with issuer {}", issuer.name));
                self.plugins
                    .issuer_resume(&issuer.plugin, &issuer.id, &config, &state)
                    .await
            }
            None => {
                payload.step(
                    now,
                    "order",
                    format!("asking issuer {} ({})", issuer.name, issuer.plugin),
                );
                let replaces = self.store.current_chain(&cert.id).await.map_err(Failure::store)?;
                let request = issue_request(&cert, csr.der.clone(), replaces);
                self.issue_once(&issuer, &config, &request).await?
            }
        };
        let answer = Failure::of_call(outcome.result).inspect_err(|f| {
            payload.step(now, "failed", f.message.clone());
        });
        let answer = match answer {
            Ok(a) => a,
            Err(f) => {
                if f.class == ErrorClass::RateLimited {
                    let wait = f.wait.unwrap_or(RATE_LIMIT_PAUSE_SECS).max(1);
                    self.store
                        .pause_instance(&issuer.id, Timestamp(now.0 + wait), &f.message)
                        .await
                        .map_err(Failure::store)?;
                }
                // Keep the steps (and a generated key id) for the next attempt.
                let _ = self.store.save_job_payload(&job.id, &self.owner, &json!(payload)).await;
                return Err(f);
            }
        };
        let chain = match answer {
            IssuerAnswer::Progress(v0_1::issuer::Progress::Issued(chain)) => chain,
            IssuerAnswer::Progress(v0_1::issuer::Progress::Pending(p)) => {
                payload.issuer_state = Some(B64.encode(&p.state));
                payload.step(now, "wait", format!("issuer asked to resume in {} ms", p.after_ms));
                let run_after = Timestamp(now.0 + (i64::from(p.after_ms) + 999) / 1000);
                self.store
                    .defer_job(&job.id, &self.owner, &json!(payload), run_after)
                    .await
                    .map_err(Failure::store)?;
                return Ok(Ended::Deferred);
            }
            IssuerAnswer::Done | IssuerAnswer::Renewal(_) => {
                return Err(Failure::new(
                    ErrorClass::Other,
                    "issuer answered without a certificate",
                    true,
                ));
            }
        };
        let leaf = x509::check_issued(&chain, &csr.spki, &cert.sans)
            .map_err(|m| Failure::new(ErrorClass::Upstream, m, false))?;
        let renewed = cert.current_version_id.is_some();
        let audit = AuditEntry::new(
            "scheduler",
            if renewed {
                "certificate.renewed"
            } else {
                "certificate.issued"
            },
            "certificate",
            &cert.id,
        )
        .with_detail(json!({"job_id": job.id, "serial": leaf.serial, "not_after": leaf.not_after.to_rfc3339()}));
        let version = NewVersion {
            serial: leaf.serial.clone(),
            fingerprint_sha256: leaf.fingerprint_sha256.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            chain_pem: leaf.chain_pem.clone(),
            issuer_id: Some(issuer.id.clone()),
            key_id: payload.key_id.clone(),
        };
        let version_id = self
            .store
            .add_version(&cert.id, &version, &cert.renewal, audit)
            .await
            .map_err(Failure::store)?;
        payload.version_id = Some(version_id.clone());
        payload.issuer_state = None;
        // The agent that holds the key deploys the new version (it pulls the job).
        if cert.agent_id.is_some() && cert.deploy.is_some() {
            let deployment = NewJob {
                dedup_key: Some(format!("deploy:{version_id}")),
                ..NewJob::now(
                    JobKind::Deployment,
                    Some(&cert.id),
                    json!({"version_id": version_id}),
                    i64::from(cert.renewal.max_attempts),
                )
            };
            self.store.enqueue_job(&deployment).await.map_err(Failure::store)?;
        }
        payload.step(
            now,
            "issued",
            format!("serial {} valid until {}", leaf.serial, leaf.not_after.to_rfc3339()),
        );
        let _ = self.store.save_job_payload(&job.id, &self.owner, &json!(payload)).await;
        self.metrics
            .issuance_total
            .with_label_values(&[&issuer.plugin, "issued"])
            .inc();
        self.metrics
            .issuance_duration_seconds
            .with_label_values(&[&issuer.plugin])
            .observe((Timestamp::now().0 - job.created_at.0).max(0) as f64);
        let (kind, summary) = if renewed {
            (EventKind::Renewed, format!("certificate {} was renewed", cert.name))
        } else {
            (EventKind::Issued, format!("certificate {} was issued", cert.name))
        };
        events::emit(
            self,
            events::Event::certificate(&cert, kind, Severity::Info, summary, &version_id)
                .with("serial", &leaf.serial)
                .with("not_after", &leaf.not_after.to_rfc3339()),
        )
        .await;
        Ok(Ended::Completed)
    }

    /// `begin`, serialised for an issuer instance's first issuance: a plugin that creates its
    /// CA (or ACME account) on first use keeps it in host-kv, which has no compare-and-set, so
    /// two first issuances must not race. Across replicas the database lock does it.
    async fn issue_once(
        &self,
        issuer: &PluginInstance,
        config: &str,
        request: &v0_1::issuer::IssueRequest,
    ) -> Result<CallOutcome<IssuerAnswer>, Failure> {
        let fresh = self.store.kv_is_empty(&issuer.id).await.map_err(Failure::store)?;
        if !fresh {
            return Ok(self
                .plugins
                .issuer_begin(&issuer.plugin, &issuer.id, config, request)
                .await);
        }
        let _local = self.first_issuance.lock().await;
        let lock = self
            .store
            .lock(crate::store::locks::key_for(&issuer.id))
            .await
            .map_err(Failure::store)?;
        let outcome = self
            .plugins
            .issuer_begin(&issuer.plugin, &issuer.id, config, request)
            .await;
        lock.release().await;
        Ok(outcome)
    }

    /// Generates (once per job) the server-side key and a CSR for the certificate's names.
    async fn server_csr(
        &self,
        cert: &Certificate,
        payload: &mut IssuancePayload,
        job: &Job,
    ) -> Result<x509::CheckedCsr, Failure> {
        let key_id = match &payload.key_id {
            Some(id) => id.clone(),
            None => {
                let info = self
                    .keystore
                    .generate(&format!("certificate:{}", cert.id), cert.key_type)
                    .await
                    .map_err(|e| Failure::new(ErrorClass::Other, format!("key generation: {e}"), true))?;
                payload.key_id = Some(info.id.clone());
                payload.step(
                    self.clock.now(),
                    "key",
                    format!("generated a {} key on the server", cert.key_type),
                );
                self.store
                    .save_job_payload(&job.id, &self.owner, &json!(payload))
                    .await
                    .map_err(Failure::store)?;
                info.id
            }
        };
        let (_, pair) = self
            .keystore
            .key_pair(&key_id)
            .await
            .map_err(|e| Failure::new(ErrorClass::Other, format!("keystore: {e}"), true))?;
        let mut params = rcgen::CertificateParams::new(cert.sans.clone())
            .map_err(|e| Failure::new(ErrorClass::Validation, format!("names: {e}"), false))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cert.common_name.clone());
        let csr = params
            .serialize_request(&pair)
            .and_then(|c| c.pem())
            .map_err(|e| Failure::new(ErrorClass::Other, format!("building the CSR: {e}"), false))?;
        x509::check_csr(&csr).map_err(|m| Failure::new(ErrorClass::Other, format!("own CSR: {m}"), false))
    }

    async fn run_revocation(&self, job: &Job) -> Result<Ended, Failure> {
        let cert_id = job.certificate_id.as_deref().unwrap_or_default();
        let version_id = job.payload["version_id"].as_str().unwrap_or_default();
        let reason: RevocationReason = serde_json::from_value(job.payload["reason"].clone())
            .map_err(|e| Failure::new(ErrorClass::Validation, format!("reason: {e}"), false))?;
        let Some((version, _)) = self
            .store
            .get_version(cert_id, version_id)
            .await
            .map_err(Failure::store)?
        else {
            return Ok(Ended::Completed);
        };
        let Some(issuer_id) = &version.issuer_id else {
            return Ok(Ended::Completed);
        };
        let issuer = self
            .store
            .get_instance(InstanceKind::Issuer, issuer_id)
            .await
            .map_err(Failure::store)?
            .ok_or_else(|| Failure::new(ErrorClass::Validation, format!("issuer {issuer_id} was deleted"), false))?;
        let config = self.resolved_config(&issuer)?;
        let leaf = x509::pem_blocks(&version.chain_pem)
            .into_iter()
            .next()
            .unwrap_or_default();
        let outcome = self
            .plugins
            .issuer_revoke(&issuer.plugin, &issuer.id, &config, &leaf, reason.code())
            .await;
        Failure::of_call(outcome.result)?;
        Ok(Ended::Completed)
    }
}

/// The issue request for a certificate: its declared names in the host's normal form, its
/// profile, and on a renewal the chain it replaces (ACME `replaces`, RFC 9773).
fn issue_request(cert: &Certificate, csr: Vec<u8>, replaces: Option<String>) -> v0_1::issuer::IssueRequest {
    v0_1::issuer::IssueRequest {
        csr,
        names: cert.sans.clone(),
        validity_days: None,
        profile: cert.profile.clone(),
        replaces,
    }
}
