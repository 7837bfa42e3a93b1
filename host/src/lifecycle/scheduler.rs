//! The scheduler's loops. Each periodic scan runs on one replica at a time (a database lock on
//! PostgreSQL); the job runner runs on every replica (jobs are leased) and is also woken at
//! once when a job is enqueued. Every scan is a public function, so tests drive them with the
//! lifecycle's clock instead of waiting.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::events::{self, Event};
use super::{IssuancePayload, Lifecycle, crl};
use crate::config::SchedulerSettings;
use crate::model::{EventKind, JobKind, JobState, Severity, Timestamp};
use crate::store::StoreError;
use crate::store::jobs::NewJob;
use crate::store::locks::key_for;

/// Certificates enqueued per round of the renewal scan.
const RENEWAL_BATCH: i64 = 500;
/// Renewal windows asked for per renewal scan (one issuer call each); the rest wait for the
/// next scan.
const RENEWAL_INFO_BATCH: i64 = 200;
/// When an issuer offers no renewal information, ask again after this long.
const RENEWAL_INFO_NONE_SECS: i64 = 7 * 86_400;
/// After a failed renewal-info call, ask again after this long.
const RENEWAL_INFO_RETRY_SECS: i64 = 3_600;
/// Expiry alerts look this far ahead at most (the largest allowed threshold).
const ALERT_HORIZON_DAYS: i64 = 366;

/// Enqueues renewals for every certificate inside its renewal window (server-side keys: due
/// now; agent keys: waiting for the agent's CSR), then refreshes CRLs that are due. Returns the
/// number of renewals enqueued.
pub async fn renewal_scan(lc: &Lifecycle) -> Result<usize, StoreError> {
    renewal_info_scan(lc).await?;
    let now = lc.clock.now();
    let mut enqueued = 0;
    loop {
        let due = lc.store.due_renewals(now, RENEWAL_BATCH).await?;
        let round = due.len();
        for cert in due {
            let state = if cert.key_generation == "server" {
                cert.renewal.ready_state()
            } else {
                JobState::AwaitingCsr
            };
            let payload = IssuancePayload {
                requested_by: "scheduler".to_string(),
                ..IssuancePayload::default()
            };
            let job = NewJob {
                state,
                ..NewJob::now(
                    JobKind::Renewal,
                    Some(&cert.id),
                    json!(payload),
                    i64::from(cert.renewal.max_attempts),
                )
            };
            if lc.store.enqueue_job(&job).await?.is_some() {
                enqueued += 1;
            }
        }
        if (round as i64) < RENEWAL_BATCH {
            break;
        }
    }
    if enqueued > 0 {
        tracing::info!(enqueued, "renewals enqueued");
        lc.wake();
    }
    for issuer in lc
        .store
        .crls_due(Timestamp(now.0 + crl::CRL_REFRESH_MARGIN_SECS))
        .await?
    {
        if let Err(e) = crl::regenerate(lc, &issuer).await {
            tracing::debug!(issuer = %issuer, error = %e, "no CRL for this issuer");
        }
    }
    Ok(enqueued)
}

/// Asks issuers for the CA's suggested renewal window (ACME Renewal Information, RFC 9773) of
/// certificates that are due to be asked, and moves their renewal date into the window: a
/// uniformly random point of it (RFC 9773 §4.2), or now when the window is already open past
/// that point. An issuer without renewal information answers none and keeps the host's own
/// schedule. Returns the number of windows recorded.
pub async fn renewal_info_scan(lc: &Lifecycle) -> Result<usize, StoreError> {
    use crate::plugins::registry::IssuerAnswer;
    use crate::store::lifecycle::RenewalInfoAnswer;

    let now = lc.clock.now();
    let due = lc.store.renewal_info_due(now, RENEWAL_INFO_BATCH).await?;
    let mut windows = 0;
    for cert in due {
        let issuer = match lc
            .store
            .get_instance(crate::model::InstanceKind::Issuer, &cert.issuer_id)
            .await?
        {
            Some(i) => i,
            None => continue,
        };
        let answer = match lc.resolved_config(&issuer) {
            Ok(config) => {
                lc.plugins
                    .issuer_renewal_info(&issuer.plugin, &issuer.id, &config, &cert.chain_pem)
                    .await
                    .result
            }
            Err(f) => {
                tracing::debug!(issuer = %issuer.name, error = %f.message, "renewal info: issuer not usable");
                lc.store
                    .set_renewal_info(
                        &cert.certificate_id,
                        &cert.version_id,
                        &RenewalInfoAnswer {
                            window: None,
                            renew_at: None,
                            next_check: Timestamp(now.0 + RENEWAL_INFO_RETRY_SECS),
                        },
                    )
                    .await?;
                continue;
            }
        };
        let record = match answer {
            Ok(Ok(IssuerAnswer::Renewal(Some(w)))) => match window_answer(&cert, &w, now) {
                Ok(a) => {
                    windows += 1;
                    a
                }
                Err(problem) => {
                    tracing::warn!(certificate = %cert.certificate_id, issuer = %issuer.name, "{problem}");
                    RenewalInfoAnswer {
                        window: None,
                        renew_at: None,
                        next_check: Timestamp(now.0 + RENEWAL_INFO_RETRY_SECS),
                    }
                }
            },
            Ok(Ok(_)) => RenewalInfoAnswer {
                window: None,
                // Back to the host's own schedule, should the CA have stopped offering one.
                renew_at: cert.renewal.renew_at(cert.not_before, cert.not_after),
                next_check: Timestamp(now.0 + RENEWAL_INFO_NONE_SECS),
            },
            Ok(Err(f)) => {
                tracing::warn!(certificate = %cert.certificate_id, issuer = %issuer.name, error = %f,
                    "renewal info: the issuer failed; asking again later");
                let wait = match f {
                    crate::plugins::PluginFailure::RateLimited(Some(s)) => i64::from(s),
                    _ => RENEWAL_INFO_RETRY_SECS,
                };
                RenewalInfoAnswer {
                    window: None,
                    renew_at: None,
                    next_check: Timestamp(now.0 + wait),
                }
            }
            Err(e) => {
                tracing::warn!(certificate = %cert.certificate_id, issuer = %issuer.name, error = %e,
                    "renewal info: the issuer call failed; asking again later");
                RenewalInfoAnswer {
                    window: None,
                    renew_at: None,
                    next_check: Timestamp(now.0 + RENEWAL_INFO_RETRY_SECS),
                }
            }
        };
        lc.store
            .set_renewal_info(&cert.certificate_id, &cert.version_id, &record)
            .await?;
    }
    Ok(windows)
}

/// The renewal date inside a CA's window (RFC 9773 §4.2), or why the window is unusable.
fn window_answer(
    cert: &crate::store::lifecycle::RenewalInfoDue,
    w: &crate::plugins::v0_1::issuer::RenewalWindow,
    now: Timestamp,
) -> Result<crate::store::lifecycle::RenewalInfoAnswer, String> {
    use rand::Rng;
    let start = i64::try_from(w.start).map_err(|_| format!("renewal window start {} out of range", w.start))?;
    let end = i64::try_from(w.end).map_err(|_| format!("renewal window end {} out of range", w.end))?;
    if end <= start {
        return Err(format!(
            "the CA's renewal window ends ({end}) before it starts ({start}); ignored"
        ));
    }
    let window = (Timestamp(start), Timestamp(end));
    // The same window as last time keeps the point chosen then (`None`: leave renew_at);
    // a new or moved window gets a new point.
    let renew_at = if cert.window == Some(window) {
        None
    } else {
        let chosen = rand::rng().random_range(start..end);
        // A point already past renews now; one past notAfter is no use either.
        Some(Timestamp(chosen.max(now.0).min(cert.not_after.0)))
    };
    Ok(crate::store::lifecycle::RenewalInfoAnswer {
        window: Some(crate::model::RenewalWindow {
            start: Timestamp(start),
            end: Timestamp(end),
            explanation_url: w.explanation_url.clone(),
        }),
        renew_at: renew_at.filter(|_| cert.renewal.auto_renew),
        next_check: Timestamp(now.0 + i64::from(w.retry_after.max(60))),
    })
}

/// Sends an `expiring` alert at the most urgent threshold each certificate has crossed (once
/// per version and threshold), and `expired` when it is past notAfter. Returns alerts raised.
pub async fn alert_scan(lc: &Lifecycle) -> Result<usize, StoreError> {
    let now = lc.clock.now();
    let certs = lc.store.expiring_before(now.plus_days(ALERT_HORIZON_DAYS)).await?;
    let mut raised = 0;
    for c in certs {
        let left = c.not_after.0 - now.0;
        let crossed = c
            .renewal
            .alert_days
            .iter()
            .copied()
            .filter(|days| left <= i64::from(*days) * 86_400)
            .min();
        let Some(threshold) = crossed else { continue };
        let Some(cert) = lc.store.get_certificate(&c.id).await? else {
            continue;
        };
        let (summary, severity, occurrence, threshold) = if left <= 0 {
            (
                format!("certificate {} expired at {}", c.name, c.not_after.to_rfc3339()),
                Severity::Critical,
                format!("expired:{}", c.version_id),
                None,
            )
        } else {
            (
                format!(
                    "certificate {} expires in {} day(s), at {}",
                    c.name,
                    (left + 86_399) / 86_400,
                    c.not_after.to_rfc3339()
                ),
                if threshold <= 7 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!("{}:{threshold}", c.version_id),
                Some(threshold),
            )
        };
        let mut event = Event::certificate(&cert, EventKind::Expiring, severity, summary, &occurrence)
            .with("not_after", &c.not_after.to_rfc3339());
        if let Some(t) = threshold {
            event = event.with("threshold_days", &t.to_string());
        }
        event.threshold = threshold;
        events::emit(lc, event).await;
        raised += 1;
    }
    Ok(raised)
}

/// Raises `agent_offline` once per agent and silence (last heartbeat older than five minutes).
pub async fn agent_scan(lc: &Lifecycle) -> Result<usize, StoreError> {
    let now = lc.clock.now();
    let offline = lc.store.offline_agents(now).await?;
    let count = offline.len();
    for (id, name, last) in offline {
        let event = Event {
            kind: EventKind::AgentOffline,
            severity: Severity::Warning,
            summary: format!("agent {name} has sent no heartbeat since {}", last.to_rfc3339()),
            subject: name,
            dedup_key: format!("certctl:agent:{id}"),
            occurrence: format!("agent_offline:{id}:{}", last.0),
            certificate_id: None,
            threshold: None,
            occurred_at: now.0,
            detail: vec![("agent_id".to_string(), id)],
            exclude_notifier: None,
        };
        events::emit(lc, event).await;
    }
    Ok(count)
}

/// Deletes finished jobs (and so delivered notifications) older than the retention, and
/// removes ACME challenges an order left presented for more than a day (a crash, an abandoned
/// order). Returns the jobs deleted.
pub async fn cleanup(lc: &Lifecycle, retention_days: u32) -> Result<u64, StoreError> {
    let now = lc.clock.now();
    if let Some(broker) = lc.plugins.services().and_then(|s| s.challenges.clone()) {
        let cleaned = broker.clean_stale(now, Duration::from_secs(86_400)).await;
        if cleaned > 0 {
            tracing::info!(cleaned, "stale ACME challenges cleaned up");
        }
    }
    let before = Timestamp(now.0 - i64::from(retention_days) * 86_400);
    lc.store.delete_finished_jobs(before).await
}

/// Runs `scan` under the cluster lock `name`, skipping the round if another replica holds it.
async fn locked<F, Fut, T>(lc: &Lifecycle, name: &str, scan: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
    T: std::fmt::Debug,
{
    let lock = match lc.store.try_lock(key_for(&format!("certctl-scan:{name}"))).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::debug!(scan = name, "another replica is running this scan");
            return;
        }
        Err(e) => {
            tracing::warn!(scan = name, error = %e, "scan skipped: database unavailable");
            return;
        }
    };
    match scan().await {
        Ok(result) => tracing::debug!(scan = name, ?result, "scan done"),
        Err(e) => tracing::error!(scan = name, error = %e, "scan failed"),
    }
    lock.release().await;
}

fn every(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Starts every loop. Dropping (aborting) the handles stops them.
pub fn spawn(lc: Arc<Lifecycle>, settings: &SchedulerSettings) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    let runner = lc.clone();
    let job_interval = settings.job_interval;
    handles.push(tokio::spawn(async move {
        loop {
            if let Err(e) = runner.run_due_jobs().await {
                tracing::warn!(error = %e, "job runner: database unavailable");
            }
            tokio::select! {
                _ = tokio::time::sleep(job_interval) => {}
                _ = runner.woken() => {}
            }
        }
    }));
    let scans: [(&'static str, Duration); 4] = [
        ("renewal", settings.renewal_interval),
        ("alerts", settings.alert_interval),
        ("agents", settings.agent_health_interval),
        ("cleanup", settings.cleanup_interval),
    ];
    let retention = settings.retention_days;
    for (name, period) in scans {
        let lc = lc.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = every(period);
            loop {
                tick.tick().await;
                match name {
                    "renewal" => locked(&lc, name, || renewal_scan(&lc)).await,
                    "alerts" => locked(&lc, name, || alert_scan(&lc)).await,
                    "agents" => locked(&lc, name, || agent_scan(&lc)).await,
                    _ => locked(&lc, name, || cleanup(&lc, retention)).await,
                }
            }
        }));
    }
    handles
}
