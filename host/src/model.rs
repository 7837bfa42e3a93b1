//! Domain types shared by the store and the API. Serde names are the API's JSON names.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use crate::auth::Role;

/// Seconds since the Unix epoch, UTC. Serialised as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    pub fn plus_days(self, days: i64) -> Self {
        Timestamp(self.0 + days * 86_400)
    }

    /// `2026-01-31T00:00:00Z` (any RFC 3339 offset).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Timestamp(t.unix_timestamp()))
            .map_err(|_| format!("{s:?} is not an RFC 3339 time such as 2026-01-31T00:00:00Z"))
    }

    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Defines a string enum with its wire names, `FromStr` listing the accepted values, and
/// `as_str`; used for every enum that is stored as text.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(format!("unknown value {other:?}: expected one of {}", Self::ALL.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Private key algorithm of a certificate.
    KeyType {
        EcdsaP256 = "ecdsa-p256",
        EcdsaP384 = "ecdsa-p384",
        Rsa2048 = "rsa-2048",
        Rsa3072 = "rsa-3072",
        Rsa4096 = "rsa-4096",
        Ed25519 = "ed25519",
    }
}

wire_enum! {
    /// Where the private key is generated: on the agent (default; the key never leaves the
    /// node) or on the server (agentless use; stored encrypted).
    KeyGeneration {
        Agent = "agent",
        Server = "server",
    }
}

wire_enum! {
    /// Stored lifecycle state of a certificate.
    CertState {
        Pending = "pending",
        Issued = "issued",
        Revoked = "revoked",
        Failed = "failed",
    }
}

wire_enum! {
    /// Status as users see it: the stored state, with `issued` split by expiry.
    CertStatus {
        /// Declared, no certificate issued yet.
        Pending = "pending",
        /// Issued, more than 30 days left.
        Active = "active",
        /// Issued, expires within 30 days.
        Expiring = "expiring",
        /// Issued, past its notAfter.
        Expired = "expired",
        Revoked = "revoked",
        Failed = "failed",
    }
}

wire_enum! {
    /// The three kinds of plugin instance.
    InstanceKind {
        Issuer = "issuer",
        DnsSolver = "dns-solver",
        Notifier = "notifier",
    }
}

wire_enum! {
    /// What a job does.
    JobKind {
        Issuance = "issuance",
        Renewal = "renewal",
        Revocation = "revocation",
        Deployment = "deployment",
        Notification = "notification",
    }
}

wire_enum! {
    /// Where a job is in its life: pending → running → (awaiting_csr | awaiting_approval) →
    /// completed | failed | cancelled.
    JobState {
        Pending = "pending",
        Running = "running",
        AwaitingCsr = "awaiting_csr",
        AwaitingApproval = "awaiting_approval",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

wire_enum! {
    /// Why a job attempt failed, for retries, alerts and metrics.
    ErrorClass {
        Timeout = "timeout",
        Auth = "auth",
        RateLimited = "rate_limited",
        Validation = "validation",
        Upstream = "upstream",
        Network = "network",
        PluginTrap = "plugin_trap",
        /// An agent's deployment failed (and was rolled back).
        Deployment = "deployment",
        Other = "other",
    }
}

/// A unit of background work, leased by one server replica at a time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub certificate_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Not run before this time.
    #[schema(value_type = String, format = DateTime)]
    pub run_after: Timestamp,
    pub lease_owner: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_expires_at: Option<Timestamp>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    /// Set on jobs that must not be created twice (e.g. one alert per threshold).
    pub dedup_key: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Days before notAfter inside which a certificate counts as expiring.
pub const EXPIRING_WINDOW_DAYS: i64 = 30;

impl CertStatus {
    pub fn derive(state: CertState, not_after: Option<Timestamp>, now: Timestamp) -> CertStatus {
        match (state, not_after) {
            (CertState::Pending, _) => CertStatus::Pending,
            (CertState::Revoked, _) => CertStatus::Revoked,
            (CertState::Failed, _) => CertStatus::Failed,
            (CertState::Issued, Some(t)) if t <= now => CertStatus::Expired,
            (CertState::Issued, Some(t)) if t <= now.plus_days(EXPIRING_WINDOW_DAYS) => CertStatus::Expiring,
            (CertState::Issued, _) => CertStatus::Active,
        }
    }
}

/// When and whether a certificate renews, how often a failed renewal is retried, and when
/// expiry alerts go out. The scheduler honours every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewalPolicy {
    /// Renew this many days before expiry. Unset: renew in the last third of the lifetime.
    #[serde(default)]
    pub renew_before_days: Option<u32>,
    /// Renew automatically (default true).
    #[serde(default = "default_true")]
    pub auto_renew: bool,
    /// Attempts per issuance or renewal job before it fails for good (default 5, 1 to 20).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Days before expiry at which an `expiring` alert goes out, once per threshold and
    /// version (default 30, 14, 7, 1).
    #[serde(default = "default_alert_days")]
    pub alert_days: Vec<u32>,
    /// Every issuance and renewal waits in `awaiting_approval` until someone approves it
    /// (`POST /api/v1/jobs/{id}/approve`); for agent keys, after the CSR arrived.
    #[serde(default)]
    pub require_approval: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_attempts() -> u32 {
    5
}

fn default_alert_days() -> Vec<u32> {
    vec![30, 14, 7, 1]
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            renew_before_days: None,
            auto_renew: true,
            max_attempts: default_max_attempts(),
            alert_days: default_alert_days(),
            require_approval: false,
        }
    }
}

impl RenewalPolicy {
    /// When a version valid from `not_before` to `not_after` is due for renewal: `renew_before_days`
    /// before expiry, or two thirds into its lifetime; `None` when auto-renew is off.
    /// The state a job that can run (it has its CSR or makes its own key) starts in.
    pub fn ready_state(&self) -> JobState {
        if self.require_approval {
            JobState::AwaitingApproval
        } else {
            JobState::Pending
        }
    }

    pub fn renew_at(&self, not_before: Timestamp, not_after: Timestamp) -> Option<Timestamp> {
        if !self.auto_renew {
            return None;
        }
        Some(match self.renew_before_days {
            Some(days) => Timestamp(not_after.0 - i64::from(days) * 86_400),
            None => Timestamp(not_after.0 - (not_after.0 - not_before.0) / 3),
        })
    }
}

/// A managed certificate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Certificate {
    pub id: String,
    pub name: String,
    pub common_name: String,
    pub sans: Vec<String>,
    pub key_type: KeyType,
    pub key_generation: KeyGeneration,
    pub issuer_id: Option<String>,
    pub status: CertStatus,
    pub renewal: RenewalPolicy,
    pub labels: BTreeMap<String, String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_after: Option<Timestamp>,
    /// When the scheduler renews it (unset: not issued yet, revoked, or auto-renew off).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub renew_at: Option<Timestamp>,
    /// The version in use.
    pub current_version_id: Option<String>,
    /// The issuer profile asked for (an ACME profile the CA's directory lists).
    pub profile: Option<String>,
    /// The agent that holds the key (sends the CSRs) and deploys the certificate.
    pub agent_id: Option<String>,
    /// Where the agent deploys it: files, check and reload commands, verification.
    #[schema(value_type = Option<Object>)]
    pub deploy: Option<serde_json::Value>,
    /// The CA's suggested renewal window for the current version (ACME Renewal Information,
    /// RFC 9773), when its issuer offers one; `renew_at` then lies inside it.
    pub renewal_window: Option<RenewalWindow>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A CA's suggested renewal window (RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RenewalWindow {
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub end: Timestamp,
    /// Why the CA moved the window (e.g. a revocation incident), if it said.
    pub explanation_url: Option<String>,
}

/// One issued certificate of a managed certificate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateVersion {
    pub id: String,
    pub certificate_id: String,
    /// Hex, as `openssl x509 -serial` prints it (upper case, no colons).
    pub serial: String,
    pub fingerprint_sha256: String,
    #[schema(value_type = String, format = DateTime)]
    pub not_before: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub not_after: Timestamp,
    /// The issuer instance that signed it.
    pub issuer_id: Option<String>,
    /// Whether the server holds its private key (server-side key generation).
    pub server_key: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    pub revocation_reason: Option<RevocationReason>,
    /// Leaf first, PEM.
    pub chain_pem: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

wire_enum! {
    /// RFC 5280 CRLReason (section 5.3.1); the code is what CRLs carry.
    RevocationReason {
        Unspecified = "unspecified",
        KeyCompromise = "key_compromise",
        CaCompromise = "ca_compromise",
        AffiliationChanged = "affiliation_changed",
        Superseded = "superseded",
        CessationOfOperation = "cessation_of_operation",
        CertificateHold = "certificate_hold",
        PrivilegeWithdrawn = "privilege_withdrawn",
        AaCompromise = "aa_compromise",
    }
}

impl RevocationReason {
    /// The RFC 5280 code (7 is unused; 8, removeFromCRL, only appears in delta CRLs).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    pub fn from_code(code: i64) -> Option<RevocationReason> {
        use RevocationReason::*;
        [
            Unspecified,
            KeyCompromise,
            CaCompromise,
            AffiliationChanged,
            Superseded,
            CessationOfOperation,
            CertificateHold,
            PrivilegeWithdrawn,
            AaCompromise,
        ]
        .into_iter()
        .find(|r| i64::from(r.code()) == code)
    }
}

wire_enum! {
    /// What happened, for notification routing. Plugins receive the same names in `event.kind`.
    EventKind {
        Issued = "issued",
        Renewed = "renewed",
        RenewalFailed = "renewal_failed",
        Expiring = "expiring",
        Revoked = "revoked",
        AgentOffline = "agent_offline",
        PluginFailing = "plugin_failing",
        Test = "test",
    }
}

wire_enum! {
    /// How serious an event is. Ordered: info < warning < critical.
    Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

impl Severity {
    pub fn rank(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }
}

/// Which events go to which notifier instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationRoute {
    pub id: String,
    pub name: String,
    pub notifier_id: String,
    /// Event kinds this route carries; empty means all.
    pub events: Vec<EventKind>,
    /// Events below this severity are not sent.
    pub min_severity: Severity,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A configured plugin instance (issuer, DNS solver or notifier).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginInstance {
    pub id: String,
    pub kind: InstanceKind,
    pub name: String,
    pub plugin: String,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// An issuer its CA told to slow down (a rate limit): its issuances wait until then,
    /// without spending attempts.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paused_until: Option<Timestamp>,
    /// What the CA said.
    pub paused_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// One entry of the append-only audit trail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of results. Pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_splits_issued_by_expiry() {
        let now = Timestamp(1_000_000_000);
        let s = |state, days: Option<i64>| CertStatus::derive(state, days.map(|d| now.plus_days(d)), now);
        assert_eq!(s(CertState::Issued, Some(90)), CertStatus::Active);
        assert_eq!(s(CertState::Issued, Some(30)), CertStatus::Expiring);
        assert_eq!(s(CertState::Issued, Some(0)), CertStatus::Expired);
        assert_eq!(s(CertState::Issued, Some(-1)), CertStatus::Expired);
        assert_eq!(s(CertState::Revoked, Some(90)), CertStatus::Revoked);
        assert_eq!(s(CertState::Pending, None), CertStatus::Pending);
    }

    #[test]
    fn timestamps_serialise_as_rfc3339() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn wire_enums_list_accepted_values_on_error() {
        let err = "rsa-1024".parse::<KeyType>().expect_err("refused");
        assert!(err.contains("ecdsa-p256") && err.contains("ed25519"), "{err}");
        assert_eq!("dns-solver".parse::<InstanceKind>(), Ok(InstanceKind::DnsSolver));
    }
}

/// A node agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub version: Option<String>,
    pub ips: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat: Option<Timestamp>,
    /// A heartbeat within the last 5 minutes.
    pub online: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<Timestamp>,
    /// When its credential was last issued (registration, or re-registration after lost state).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub credential_rotated_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A certificate an agent found on its node (what it reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Found {
    pub path: String,
    /// Position in a PEM bundle (0 for a single certificate).
    pub index_in_file: u32,
    /// Lower-case hex SHA-256 of the DER.
    pub fingerprint_sha256: String,
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
}

/// A discovered certificate, as the server keeps it for triage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Discovery {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub path: String,
    pub index_in_file: u32,
    pub fingerprint_sha256: String,
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub not_before: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub not_after: Timestamp,
    pub is_ca: bool,
    /// new, claimed or dismissed.
    pub state: String,
    /// The managed certificate it was claimed as.
    pub certificate_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
}
