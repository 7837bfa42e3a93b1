//! API keys, roles and permissions.
//!
//! A key is never stored or logged in clear: only its SHA-256 is kept, and comparisons against
//! configured keys are constant-time. Roles are fixed sets of permissions; handlers ask for a
//! permission, never for a role.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// Prefix of every key certctl generates, so leaked keys are easy to find with secret scanners.
pub const KEY_PREFIX: &str = "cck_";

/// SHA-256 of an API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyHash(pub [u8; 32]);

impl ApiKeyHash {
    pub fn of(key: &str) -> Self {
        ApiKeyHash(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &ApiKeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHash(..)")
    }
}

/// A fresh random key: `cck_` + 32 random bytes, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What a caller may do. Routes name the permission they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Permission {
    #[serde(rename = "certificates.read")]
    CertificatesRead,
    #[serde(rename = "certificates.write")]
    CertificatesWrite,
    #[serde(rename = "issuers.read")]
    IssuersRead,
    #[serde(rename = "issuers.write")]
    IssuersWrite,
    #[serde(rename = "audit.read")]
    AuditRead,
    #[serde(rename = "keys.manage")]
    KeysManage,
    #[serde(rename = "metrics.read")]
    MetricsRead,
    /// List plugins; read DNS-solver and notifier instances.
    #[serde(rename = "plugins.read")]
    PluginsRead,
    /// Manage DNS-solver and notifier instances and run their test actions.
    #[serde(rename = "plugins.write")]
    PluginsWrite,
    #[serde(rename = "jobs.read")]
    JobsRead,
    /// Cancel and retry jobs.
    #[serde(rename = "jobs.write")]
    JobsWrite,
    /// Private key material: download server-generated keys, import CA keys. Admin only.
    #[serde(rename = "private-keys.manage")]
    PrivateKeys,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CertificatesRead => "certificates.read",
            Permission::CertificatesWrite => "certificates.write",
            Permission::IssuersRead => "issuers.read",
            Permission::IssuersWrite => "issuers.write",
            Permission::AuditRead => "audit.read",
            Permission::KeysManage => "keys.manage",
            Permission::MetricsRead => "metrics.read",
            Permission::PluginsRead => "plugins.read",
            Permission::PluginsWrite => "plugins.write",
            Permission::JobsRead => "jobs.read",
            Permission::JobsWrite => "jobs.write",
            Permission::PrivateKeys => "private-keys.manage",
        }
    }
}

/// A named set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including key management.
    Admin,
    /// Manages certificates and issuers; reads audit and metrics.
    Operator,
    /// Reads certificates, issuers and the audit log.
    Viewer,
    /// A node agent. Agents reach only their own work (agent endpoints come with the agent).
    Agent,
    /// Scrapes Prometheus metrics and nothing else.
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Metrics => "metrics",
        }
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                CertificatesRead,
                CertificatesWrite,
                IssuersRead,
                IssuersWrite,
                AuditRead,
                KeysManage,
                MetricsRead,
                PluginsRead,
                PluginsWrite,
                JobsRead,
                JobsWrite,
                PrivateKeys,
            ],
            Role::Operator => &[
                CertificatesRead,
                CertificatesWrite,
                IssuersRead,
                IssuersWrite,
                AuditRead,
                MetricsRead,
                PluginsRead,
                PluginsWrite,
                JobsRead,
                JobsWrite,
            ],
            Role::Viewer => &[CertificatesRead, IssuersRead, AuditRead, PluginsRead, JobsRead],
            Role::Agent => &[],
            Role::Metrics => &[MetricsRead],
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            "metrics" => Ok(Role::Metrics),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator, viewer, agent or metrics"
            )),
        }
    }
}

/// Who is calling: the key's name and role. Recorded as the actor of audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Set for an agent's own credential: the agent it is bound to. Agent endpoints answer
    /// only for that agent.
    pub agent_id: Option<String>,
}

/// The prefix of agents' own credentials (issued at registration, one per agent).
pub const AGENT_CREDENTIAL_PREFIX: &str = "cca_";

/// A new agent credential.
pub fn generate_agent_credential() -> String {
    let key = generate_key();
    format!("{AGENT_CREDENTIAL_PREFIX}{}", &key[KEY_PREFIX.len()..])
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_prefixed_and_long() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
    }

    #[test]
    fn hash_matches_only_the_same_key() {
        let h = ApiKeyHash::of("cck_one");
        assert!(h.matches(&ApiKeyHash::of("cck_one")));
        assert!(!h.matches(&ApiKeyHash::of("cck_two")));
        assert_eq!(h.to_hex().len(), 64);
    }

    #[test]
    fn metrics_role_reads_metrics_only() {
        assert!(Role::Metrics.allows(Permission::MetricsRead));
        assert!(!Role::Metrics.allows(Permission::CertificatesRead));
        assert!(!Role::Viewer.allows(Permission::MetricsRead));
        assert!(!Role::Operator.allows(Permission::KeysManage));
        assert!(Role::Admin.allows(Permission::KeysManage));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Admin, Role::Operator, Role::Viewer, Role::Agent, Role::Metrics] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
