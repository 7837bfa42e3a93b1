//! Events and their delivery. An event goes to every notification route that carries its
//! kind at its severity; each (occurrence, notifier) pair becomes one `notification` job, so
//! deliveries get the job queue's leasing, retries with backoff, and dead letters (a failed
//! job) for free, and the unique dedup key makes a repeated scan or a second replica a no-op.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{Ended, ErrorClass, Failure, Lifecycle};
use crate::model::{Certificate, EventKind, InstanceKind, Job, JobKind, JobState, PluginInstance, Severity, Timestamp};
use crate::plugins::v0_1;
use crate::store::jobs::NewJob;

/// Attempts per delivery before it is dead-lettered.
pub const DELIVERY_ATTEMPTS: i64 = 8;

/// Something that happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub severity: Severity,
    pub summary: String,
    /// What it is about: a certificate, agent or plugin instance name.
    pub subject: String,
    /// The condition, stable across occurrences (a renewal resolves an expiry incident).
    pub dedup_key: String,
    /// This occurrence: the same occurrence is delivered once per notifier.
    pub occurrence: String,
    pub certificate_id: Option<String>,
    /// For expiry alerts: the threshold in days.
    pub threshold: Option<u32>,
    pub occurred_at: i64,
    pub detail: Vec<(String, String)>,
    /// Not sent to this notifier (the one failing, for `plugin_failing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_notifier: Option<String>,
}

impl Event {
    /// An event about a certificate; `occurrence_id` makes this occurrence unique (a version,
    /// a job).
    pub fn certificate(
        cert: &Certificate,
        kind: EventKind,
        severity: Severity,
        summary: String,
        occurrence_id: &str,
    ) -> Event {
        Event {
            kind,
            severity,
            summary,
            subject: cert.name.clone(),
            dedup_key: format!("certctl:certificate:{}", cert.id),
            occurrence: format!("{kind}:{occurrence_id}"),
            certificate_id: Some(cert.id.clone()),
            threshold: None,
            occurred_at: Timestamp::now().0,
            detail: vec![
                ("certificate_id".to_string(), cert.id.clone()),
                ("names".to_string(), cert.sans.join(", ")),
            ],
            exclude_notifier: None,
        }
    }

    /// A plugin instance keeps failing: its job failed for good with `message`. `exclude` is the
    /// failing notifier itself, which would not deliver the news.
    pub fn plugin_failing(instance: &PluginInstance, job_id: &str, message: &str, exclude: Option<&str>) -> Event {
        Event {
            kind: EventKind::PluginFailing,
            severity: Severity::Warning,
            summary: format!(
                "{} instance {} ({}) failed: {message}",
                instance.kind, instance.name, instance.plugin
            ),
            subject: instance.name.clone(),
            dedup_key: format!("certctl:instance:{}", instance.id),
            occurrence: format!("plugin_failing:{job_id}"),
            certificate_id: None,
            threshold: None,
            occurred_at: Timestamp::now().0,
            detail: vec![
                ("instance_id".to_string(), instance.id.clone()),
                ("plugin".to_string(), instance.plugin.clone()),
                ("job_id".to_string(), job_id.to_string()),
            ],
            exclude_notifier: exclude.map(str::to_string),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Event {
        self.detail.push((key.to_string(), value.to_string()));
        self
    }

    fn to_wit(&self) -> v0_1::Event {
        v0_1::Event {
            kind: self.kind.as_str().to_string(),
            severity: match self.severity {
                Severity::Info => v0_1::Severity::Info,
                Severity::Warning => v0_1::Severity::Warning,
                Severity::Critical => v0_1::Severity::Critical,
            },
            summary: self.summary.clone(),
            subject: self.subject.clone(),
            dedup_key: self.dedup_key.clone(),
            occurred_at: u64::try_from(self.occurred_at).unwrap_or_default(),
            detail: self.detail.clone(),
        }
    }
}

/// What a notification job carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryPayload {
    route_id: String,
    notifier_id: String,
    /// The notifier's plugin, for metrics.
    channel: String,
    event: Event,
}

/// Sends `event` to every matching route. Failures to enqueue are logged: an event never
/// fails the work that caused it.
pub async fn emit(lc: &Lifecycle, event: Event) {
    let routes = match lc.store.list_routes().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, kind = %event.kind, "cannot read notification routes; event not sent");
            return;
        }
    };
    let mut queued = 0;
    for route in routes {
        if !(route.events.is_empty() || route.events.contains(&event.kind))
            || event.severity.rank() < route.min_severity.rank()
            || event.exclude_notifier.as_deref() == Some(route.notifier_id.as_str())
        {
            continue;
        }
        let channel = match lc.store.get_instance(InstanceKind::Notifier, &route.notifier_id).await {
            Ok(Some(n)) => n.plugin,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a notifier");
                continue;
            }
        };
        let payload = DeliveryPayload {
            route_id: route.id.clone(),
            notifier_id: route.notifier_id.clone(),
            channel,
            event: event.clone(),
        };
        let job = NewJob {
            dedup_key: Some(format!("{}|{}", event.occurrence, route.notifier_id)),
            ..NewJob::now(
                JobKind::Notification,
                event.certificate_id.as_deref(),
                json!(payload),
                DELIVERY_ATTEMPTS,
            )
        };
        match lc.store.enqueue_job(&job).await {
            Ok(Some(_)) => queued += 1,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot queue a notification"),
        }
    }
    if queued > 0 {
        tracing::info!(kind = %event.kind, subject = %event.subject, queued, "event queued for notifiers");
        lc.wake();
    }
}

fn payload_of(job: &Job) -> Result<DeliveryPayload, Failure> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| Failure::new(ErrorClass::Other, format!("notification payload: {e}"), false))
}

fn count(lc: &Lifecycle, p: &DeliveryPayload, result: &str) {
    lc.metrics
        .notifications_total
        .with_label_values(&[&p.channel, p.event.kind.as_str(), result])
        .inc();
    if p.event.kind == EventKind::Expiring {
        let threshold = p
            .event
            .threshold
            .map_or_else(|| "expired".to_string(), |t| t.to_string());
        lc.metrics
            .expiry_alerts_total
            .with_label_values(&[&p.channel, &threshold, result])
            .inc();
    }
}

/// Runs one notification job.
pub(super) async fn deliver(lc: &Lifecycle, job: &Job) -> Result<Ended, Failure> {
    let p = payload_of(job)?;
    let notifier = lc
        .store
        .get_instance(InstanceKind::Notifier, &p.notifier_id)
        .await
        .map_err(Failure::store)?
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::Validation,
                format!("notifier {} was deleted", p.notifier_id),
                false,
            )
        })?;
    let config = lc.resolved_config(&notifier)?;
    let outcome = lc
        .plugins
        .notify(&notifier.plugin, Some(&notifier.id), &config, &p.event.to_wit())
        .await;
    Failure::of_call(outcome.result)?;
    count(lc, &p, "delivered");
    Ok(Ended::Completed)
}

/// Counts a failed delivery attempt; a dead letter tells the other notifiers that this one is
/// failing (but a failed `plugin_failing` delivery does not, so failures cannot cascade).
pub(super) async fn delivery_failed(lc: &Lifecycle, job: &Job, failure: &Failure, final_failure: bool) {
    let Ok(p) = payload_of(job) else { return };
    count(lc, &p, if final_failure { "dead_letter" } else { "retrying" });
    if !final_failure || p.event.kind == EventKind::PluginFailing {
        return;
    }
    if let Ok(Some(notifier)) = lc.store.get_instance(InstanceKind::Notifier, &p.notifier_id).await {
        emit(
            lc,
            Event::plugin_failing(&notifier, &job.id, &failure.message, Some(&notifier.id)),
        )
        .await;
    }
}

/// A delivery as `/api/v1/notifications` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notification {
    /// The job id: retry a dead letter with `POST /api/v1/jobs/{id}/retry`.
    pub id: String,
    /// pending, delivering, retrying, delivered, dead_letter or cancelled.
    pub state: &'static str,
    pub event: EventKind,
    pub severity: Severity,
    pub summary: String,
    pub subject: String,
    pub threshold_days: Option<u32>,
    pub notifier_id: String,
    pub route_id: String,
    pub channel: String,
    pub certificate_id: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the next attempt runs, while pending or retrying.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// The notification view of a notification job; `None` for other jobs.
pub fn notification_of(job: &Job) -> Option<Notification> {
    if job.kind != JobKind::Notification {
        return None;
    }
    let p = payload_of(job).ok()?;
    let state = match job.state {
        JobState::Pending if job.attempts == 0 => "pending",
        JobState::Pending => "retrying",
        JobState::Running => "delivering",
        JobState::Completed => "delivered",
        JobState::Failed => "dead_letter",
        JobState::Cancelled | JobState::AwaitingCsr | JobState::AwaitingApproval => "cancelled",
    };
    Some(Notification {
        id: job.id.clone(),
        state,
        event: p.event.kind,
        severity: p.event.severity,
        summary: p.event.summary,
        subject: p.event.subject,
        threshold_days: p.event.threshold,
        notifier_id: p.notifier_id,
        route_id: p.route_id,
        channel: p.channel,
        certificate_id: job.certificate_id.clone(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        next_attempt_at: matches!(job.state, JobState::Pending).then_some(job.run_after),
        last_error: job.error_message.clone(),
        created_at: job.created_at,
        updated_at: job.updated_at,
    })
}
