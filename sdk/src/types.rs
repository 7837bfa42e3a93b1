//! The records plugins receive, as SDK-owned Rust types.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::bindings::base::certctl::plugin::types as wit;

/// One TXT record value for a DNS-01 challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The zone the host picked for `fqdn`, without a trailing dot: `example.com`.
    pub zone: String,
    /// The record name, fully qualified, without a trailing dot: `_acme-challenge.www.example.com`.
    pub fqdn: String,
    /// The TXT value, without quotes.
    pub value: String,
    /// Time to live in seconds.
    pub ttl: u32,
}

impl DnsRecord {
    /// `fqdn` relative to `zone` (`_acme-challenge.www` for `_acme-challenge.www.example.com` in
    /// `example.com`), as many provider APIs want it; `@` when the name is the zone apex.
    pub fn relative_name(&self) -> &str {
        if self.fqdn.eq_ignore_ascii_case(&self.zone) {
            return "@";
        }
        let fqdn_len = self.fqdn.len();
        let zone_len = self.zone.len();
        if fqdn_len > zone_len + 1
            && self.fqdn.is_char_boundary(fqdn_len - zone_len - 1)
            && self.fqdn[fqdn_len - zone_len..].eq_ignore_ascii_case(&self.zone)
            && self.fqdn.as_bytes()[fqdn_len - zone_len - 1] == b'.'
        {
            &self.fqdn[..fqdn_len - zone_len - 1]
        } else {
            &self.fqdn
        }
    }
}

impl From<wit::DnsRecord> for DnsRecord {
    fn from(r: wit::DnsRecord) -> Self {
        DnsRecord {
            zone: r.zone,
            fqdn: r.fqdn,
            value: r.value,
            ttl: r.ttl,
        }
    }
}

impl From<DnsRecord> for wit::DnsRecord {
    fn from(r: DnsRecord) -> Self {
        wit::DnsRecord {
            zone: r.zone,
            fqdn: r.fqdn,
            value: r.value,
            ttl: r.ttl,
        }
    }
}

/// How bad an [`Event`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something went as planned (issued, renewed, test).
    Info,
    /// Needs attention soon (expiring, a failed attempt that will be retried).
    Warning,
    /// Needs attention now (expired, renewal given up, agent offline).
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wit::Severity> for Severity {
    fn from(s: wit::Severity) -> Self {
        match s {
            wit::Severity::Info => Severity::Info,
            wit::Severity::Warning => Severity::Warning,
            wit::Severity::Critical => Severity::Critical,
        }
    }
}

impl From<Severity> for wit::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => wit::Severity::Info,
            Severity::Warning => wit::Severity::Warning,
            Severity::Critical => wit::Severity::Critical,
        }
    }
}

/// Something that happened, for notifiers.
///
/// Serialises (with `serde_json`) to the shape notifiers usually send:
/// `{"kind", "severity", "summary", "subject", "dedup_key", "occurred_at", "detail": {k: v}}`,
/// with `detail` as an object in the host's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `issued`, `renewed`, `renewal_failed`, `expiring`, `revoked`, `agent_offline`,
    /// `plugin_failing` or `test`.
    pub kind: String,
    /// How bad it is.
    pub severity: Severity,
    /// One line for humans.
    pub summary: String,
    /// What it is about: a certificate, an agent or a plugin instance name.
    pub subject: String,
    /// Stays the same for the same condition, so a channel can deduplicate and resolve.
    pub dedup_key: String,
    /// Seconds since the Unix epoch.
    pub occurred_at: u64,
    /// Further facts, as ordered key/value pairs.
    #[serde(serialize_with = "detail_as_object")]
    pub detail: Vec<(String, String)>,
}

impl Event {
    /// The first detail value with this key.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.detail.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn detail_as_object<S: Serializer>(detail: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(detail.len()))?;
    for (i, (k, v)) in detail.iter().enumerate() {
        // A repeated key keeps its first value: JSON objects should not repeat keys.
        if detail[..i].iter().all(|(earlier, _)| earlier != k) {
            map.serialize_entry(k, v)?;
        }
    }
    map.end()
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            kind: e.kind,
            severity: e.severity.into(),
            summary: e.summary,
            subject: e.subject,
            dedup_key: e.dedup_key,
            occurred_at: e.occurred_at,
            detail: e.detail,
        }
    }
}

impl From<Event> for wit::Event {
    fn from(e: Event) -> Self {
        wit::Event {
            kind: e.kind,
            severity: e.severity.into(),
            summary: e.summary,
            subject: e.subject,
            dedup_key: e.dedup_key,
            occurred_at: e.occurred_at,
            detail: e.detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(zone: &str, fqdn: &str) -> DnsRecord {
        DnsRecord {
            zone: zone.into(),
            fqdn: fqdn.into(),
            value: "v".into(),
            ttl: 60,
        }
    }

    #[test]
    fn relative_names() {
        assert_eq!(
            record("example.com", "_acme-challenge.www.example.com").relative_name(),
            "_acme-challenge.www"
        );
        assert_eq!(record("example.com", "example.com").relative_name(), "@");
        assert_eq!(
            record("Example.COM", "_acme-challenge.example.com").relative_name(),
            "_acme-challenge"
        );
        assert_eq!(
            record("ample.com", "_acme-challenge.example.com").relative_name(),
            "_acme-challenge.example.com"
        );
    }

    #[test]
    fn events_serialise_with_detail_as_an_object() {
        let event = Event {
            kind: "expiring".into(),
            severity: Severity::Warning,
            summary: "web expires in 7 days".into(),
            subject: "web".into(),
            dedup_key: "web-7".into(),
            occurred_at: 1_800_000_000,
            detail: vec![("days_left".into(), "7".into()), ("days_left".into(), "8".into())],
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "expiring", "severity": "warning", "summary": "web expires in 7 days",
                "subject": "web", "dedup_key": "web-7", "occurred_at": 1_800_000_000u64,
                "detail": {"days_left": "7"}
            })
        );
        assert_eq!(event.detail("days_left"), Some("7"));
    }
}
