//! Prometheus metrics. Gauges describe the fleet and are read from the store at scrape time;
//! counters count events as they happen and only ever go up.
//!
//! `certctl_certificate_total` and `certctl_agent_total` keep the names of the system certctl
//! re-implements, but they are counts that can go down, not counters. A gauge may not end in
//! `_total` (promtool's lint refuses it), so these two are exposed as `untyped`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::store::FleetCounts;

pub struct Metrics {
    registry: Registry,
    certificate_expiring_soon: IntGauge,
    certificate_expired: IntGauge,
    certificate_revoked: IntGauge,
    agent_online: IntGauge,
    job_pending: IntGauge,
    /// Incremented by the job runner when a job completes.
    pub job_completed_total: IntCounter,
    /// Incremented by the job runner when a job fails for good.
    pub job_failed_total: IntCounter,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub auth_failures_total: IntCounterVec,
    pub plugin_calls_total: IntCounterVec,
    pub plugin_call_duration_seconds: HistogramVec,
    pub plugin_traps_total: IntCounterVec,
    pub issuance_total: IntCounterVec,
    pub issuance_duration_seconds: HistogramVec,
    pub issuance_failures_total: IntCounterVec,
    pub expiry_alerts_total: IntCounterVec,
    pub notifications_total: IntCounterVec,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "certctl_http_requests_total",
                "HTTP requests served, by route and status.",
            ),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(http_requests_total.clone()))?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("certctl_http_request_duration_seconds", "HTTP request latency.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["method", "route"],
        )?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        let auth_failures_total = IntCounterVec::new(
            Opts::new("certctl_auth_failures_total", "Refused API requests, by reason."),
            &["reason"],
        )?;
        registry.register(Box::new(auth_failures_total.clone()))?;
        let plugin_calls_total = IntCounterVec::new(
            Opts::new(
                "certctl_plugin_calls_total",
                "Plugin calls, by outcome (ok, plugin_error, timeout, memory, trap, host_error).",
            ),
            &["plugin", "kind", "op", "outcome"],
        )?;
        registry.register(Box::new(plugin_calls_total.clone()))?;
        let plugin_call_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "certctl_plugin_call_duration_seconds",
                "Plugin call duration, instantiation included.",
            )
            .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["plugin", "kind", "op"],
        )?;
        registry.register(Box::new(plugin_call_duration_seconds.clone()))?;
        let plugin_traps_total = IntCounterVec::new(
            Opts::new(
                "certctl_plugin_traps_total",
                "Plugin calls stopped by the sandbox, by reason (timeout, memory, trap).",
            ),
            &["plugin", "reason"],
        )?;
        registry.register(Box::new(plugin_traps_total.clone()))?;
        let issuance_total = IntCounterVec::new(
            Opts::new(
                "certctl_issuance_total",
                "Issuance and renewal jobs finished, by issuer plugin and outcome (issued, failed).",
            ),
            &["issuer_type", "outcome"],
        )?;
        registry.register(Box::new(issuance_total.clone()))?;
        let issuance_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "certctl_issuance_duration_seconds",
                "Time from an issuance job's creation to the stored certificate.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0]),
            &["issuer_type"],
        )?;
        registry.register(Box::new(issuance_duration_seconds.clone()))?;
        let issuance_failures_total = IntCounterVec::new(
            Opts::new(
                "certctl_issuance_failures_total",
                "Failed issuance attempts (each retry counts), by issuer plugin and error class.",
            ),
            &["issuer_type", "error_class"],
        )?;
        registry.register(Box::new(issuance_failures_total.clone()))?;
        let expiry_alerts_total = IntCounterVec::new(
            Opts::new(
                "certctl_expiry_alerts_total",
                "Expiry alert deliveries, by notifier plugin, threshold in days and result \
                 (delivered, retrying, dead_letter).",
            ),
            &["channel", "threshold", "result"],
        )?;
        registry.register(Box::new(expiry_alerts_total.clone()))?;
        let notifications_total = IntCounterVec::new(
            Opts::new(
                "certctl_notifications_total",
                "Notification delivery attempts, by notifier plugin, event and result \
                 (delivered, retrying, dead_letter).",
            ),
            &["channel", "event", "result"],
        )?;
        registry.register(Box::new(notifications_total.clone()))?;
        Ok(Metrics {
            certificate_expiring_soon: gauge(
                &registry,
                "certctl_certificate_expiring_soon",
                "Issued certificates expiring within 30 days.",
            )?,
            certificate_expired: gauge(
                &registry,
                "certctl_certificate_expired",
                "Issued certificates past notAfter.",
            )?,
            certificate_revoked: gauge(&registry, "certctl_certificate_revoked", "Revoked certificates.")?,
            agent_online: gauge(
                &registry,
                "certctl_agent_online",
                "Agents with a heartbeat in the last 5 minutes.",
            )?,
            job_pending: gauge(&registry, "certctl_job_pending", "Jobs waiting to run.")?,
            job_completed_total: counter(&registry, "certctl_job_completed_total", "Jobs completed.")?,
            job_failed_total: counter(
                &registry,
                "certctl_job_failed_total",
                "Jobs failed after their last retry.",
            )?,
            http_requests_total,
            http_request_duration_seconds,
            auth_failures_total,
            plugin_calls_total,
            plugin_call_duration_seconds,
            plugin_traps_total,
            issuance_total,
            issuance_duration_seconds,
            issuance_failures_total,
            expiry_alerts_total,
            notifications_total,
            registry,
        })
    }

    /// Sets the fleet gauges and renders everything in the Prometheus text format.
    pub fn render(&self, counts: &FleetCounts) -> Result<String, prometheus::Error> {
        self.certificate_expiring_soon.set(counts.expiring_soon);
        self.certificate_expired.set(counts.expired);
        self.certificate_revoked.set(counts.revoked);
        self.agent_online.set(counts.agents_online);
        self.job_pending.set(counts.jobs_pending);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        let mut text = String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        for (name, help, value) in [
            (
                "certctl_certificate_total",
                "Managed certificates.",
                counts.certificates,
            ),
            ("certctl_agent_total", "Registered, not retired agents.", counts.agents),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help} Untyped: a count that can go down, under its historical name.\n\
                 # TYPE {name} untyped\n{name} {value}\n"
            ));
        }
        Ok(text)
    }
}
