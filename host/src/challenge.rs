//! The challenge broker behind `host-challenge`: issuer plugins (ACME) ask the host to present
//! dns-01 and http-01 challenges, so they never hold DNS credentials or open ports.
//!
//! - dns-01: the host computes the TXT value (`base64url(SHA-256(key authorization))`), finds the
//!   zone (SOA query through the configured resolvers), records the challenge, and calls the
//!   `present` of the DNS-solver instance the issuer's configuration names (`dns_solver`).
//!   `ready` asks every authoritative server of the zone itself (no recursion).
//! - http-01: the host records the token and serves it on its plain-HTTP challenge listener;
//!   any replica can answer, since the answer comes from the database.
//!
//! Every challenge is a row before anything is published; `cleanup` (or the scheduler, for
//! challenges an order left behind) removes exactly what was published.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::dns;
use crate::model::{InstanceKind, Timestamp};
use crate::plugins::registry::{ConfigProblem, Registry};
use crate::plugins::{PluginFailure, v0_1};
use crate::store::Store;
use crate::store::challenges::{Challenge, NewChallenge};

/// Where the broker listens and whom it asks (`CERTCTL_ACME_HTTP01_ADDRESS`, `CERTCTL_DNS_*`).
#[derive(Debug, Clone)]
pub struct ChallengeSettings {
    /// The plain-HTTP listener for http-01; `None`: http-01 is not offered.
    pub http01_address: Option<SocketAddr>,
    /// Recursive resolvers for SOA/NS/A lookups; empty: `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    /// The port authoritative servers are asked on (53; another for test servers).
    pub nameserver_port: u16,
    /// Per DNS query.
    pub timeout: Duration,
    /// TTL of published TXT records.
    pub ttl: u32,
}

impl Default for ChallengeSettings {
    fn default() -> Self {
        ChallengeSettings {
            http01_address: None,
            resolvers: Vec::new(),
            nameserver_port: 53,
            timeout: Duration::from_secs(5),
            ttl: 60,
        }
    }
}

pub struct ChallengeBroker {
    store: Store,
    settings: ChallengeSettings,
    /// Set once the registry exists (the registry holds the broker; this breaks the cycle).
    registry: OnceLock<Weak<Registry>>,
}

fn transient(m: impl Into<String>) -> PluginFailure {
    PluginFailure::Transient(m.into())
}

fn db(e: crate::store::StoreError) -> PluginFailure {
    PluginFailure::Transient(format!("database: {e}"))
}

/// The dns-01 TXT value of a key authorization (RFC 8555 §8.4).
pub fn dns01_value(key_authorization: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(key_authorization.as_bytes()))
}

impl ChallengeBroker {
    pub fn new(store: Store, settings: ChallengeSettings) -> ChallengeBroker {
        ChallengeBroker {
            store,
            settings,
            registry: OnceLock::new(),
        }
    }

    /// Connects the broker to the registry that calls DNS-solver plugins.
    pub fn attach(&self, registry: &Arc<Registry>) {
        let _ = self.registry.set(Arc::downgrade(registry));
    }

    fn registry(&self) -> Result<Arc<Registry>, PluginFailure> {
        self.registry
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| transient("the plugin registry is shutting down"))
    }

    fn resolvers(&self) -> Result<Vec<SocketAddr>, PluginFailure> {
        if self.settings.resolvers.is_empty() {
            dns::system_resolvers().map_err(PluginFailure::InvalidConfig)
        } else {
            Ok(self.settings.resolvers.clone())
        }
    }

    /// Asks the resolvers in turn until one answers.
    async fn resolve(&self, name: &str, rtype: u16) -> Result<dns::Response, PluginFailure> {
        let mut last = String::from("no resolver configured");
        for server in self.resolvers()? {
            match dns::query(server, name, rtype, true, self.settings.timeout).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(transient(format!("DNS lookup of {name} failed: {last}")))
    }

    /// The zone holding `fqdn`: the owner of the SOA in the answer or authority section.
    async fn zone_of(&self, fqdn: &str) -> Result<String, PluginFailure> {
        let resp = self.resolve(fqdn, dns::SOA).await?;
        resp.answers
            .iter()
            .chain(resp.authority.iter())
            .find(|r| r.rtype == dns::SOA)
            .map(|r| r.name.clone())
            .ok_or_else(|| PluginFailure::NotFound(format!("no DNS zone found for {fqdn} (no SOA record)")))
    }

    /// The DNS-solver instance and its resolved configuration for an issuer instance.
    async fn solver_of(&self, issuer_id: &str) -> Result<(crate::model::PluginInstance, String), PluginFailure> {
        let issuer = self
            .store
            .get_instance(InstanceKind::Issuer, issuer_id)
            .await
            .map_err(db)?
            .ok_or_else(|| PluginFailure::NotFound(format!("issuer instance {issuer_id}")))?;
        let name = issuer.config["dns_solver"].as_str().ok_or_else(|| {
            PluginFailure::InvalidConfig(format!(
                "config.dns_solver: issuer {} uses dns-01 but names no DNS-solver instance",
                issuer.name
            ))
        })?;
        let solver = self
            .store
            .get_instance_by_name(InstanceKind::DnsSolver, name)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                PluginFailure::InvalidConfig(format!(
                    "config.dns_solver: no DNS-solver instance named {name:?} (see GET /api/v1/dns-solvers)"
                ))
            })?;
        let config = self.solver_config(&solver)?;
        Ok((solver, config))
    }

    /// The solver instance's configuration, secrets resolved.
    fn solver_config(&self, solver: &crate::model::PluginInstance) -> Result<String, PluginFailure> {
        self.registry()?.instance_config(solver).map_err(|p| match p {
            ConfigProblem::NotLoaded(_) => transient(p.to_string()),
            ConfigProblem::Invalid(m) => PluginFailure::InvalidConfig(format!("DNS solver {}: {m}", solver.name)),
        })
    }

    pub async fn present_dns(
        &self,
        issuer_id: &str,
        identifier: &str,
        key_authorization: &str,
    ) -> Result<u64, PluginFailure> {
        let name = identifier
            .trim_start_matches("*.")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let fqdn = format!("_acme-challenge.{name}");
        let (solver, config) = self.solver_of(issuer_id).await?;
        let zone = self.zone_of(&fqdn).await?;
        let value = dns01_value(key_authorization);
        let id = self
            .store
            .insert_challenge(&NewChallenge {
                instance_id: issuer_id.to_string(),
                kind: "dns-01",
                identifier: identifier.to_string(),
                zone: Some(zone.clone()),
                fqdn: Some(fqdn.clone()),
                value: Some(value.clone()),
                solver_id: Some(solver.id.clone()),
                ..NewChallenge::default()
            })
            .await
            .map_err(db)?;
        let record = v0_1::DnsRecord {
            zone,
            fqdn,
            value,
            ttl: self.settings.ttl,
        };
        let outcome = self.registry()?.dns(&solver.plugin, &config, &record, true).await;
        match outcome.result {
            Ok(Ok(())) => {
                self.store.set_challenge_state(id, "present", None).await.map_err(db)?;
                handle(id)
            }
            Ok(Err(f)) => {
                self.store
                    .set_challenge_state(id, "failed", Some(&f.to_string()))
                    .await
                    .map_err(db)?;
                Err(f)
            }
            Err(e) => {
                // The solver may have published before it failed: keep the row for cleanup.
                let message = format!("DNS solver {} failed: {e}", solver.name);
                self.store
                    .set_challenge_state(id, "presenting", Some(&message))
                    .await
                    .map_err(db)?;
                Err(transient(message))
            }
        }
    }

    pub async fn present_http(
        &self,
        issuer_id: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<u64, PluginFailure> {
        if self.settings.http01_address.is_none() {
            return Err(PluginFailure::InvalidConfig(
                "http-01 needs the challenge listener: set CERTCTL_ACME_HTTP01_ADDRESS (e.g. 0.0.0.0:80)".into(),
            ));
        }
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(PluginFailure::Permanent(format!(
                "{token:?} is not an ACME token (base64url characters only)"
            )));
        }
        let id = self
            .store
            .insert_challenge(&NewChallenge {
                instance_id: issuer_id.to_string(),
                kind: "http-01",
                identifier: token.to_string(),
                token: Some(token.to_string()),
                key_authorization: Some(key_authorization.to_string()),
                ..NewChallenge::default()
            })
            .await
            .map_err(db)?;
        self.store.set_challenge_state(id, "present", None).await.map_err(db)?;
        handle(id)
    }

    async fn challenge(&self, issuer_id: &str, handle: u64) -> Result<Challenge, PluginFailure> {
        let id = i64::try_from(handle).map_err(|_| PluginFailure::NotFound(format!("challenge {handle}")))?;
        self.store
            .get_challenge(issuer_id, id)
            .await
            .map_err(db)?
            .ok_or_else(|| PluginFailure::NotFound(format!("challenge {handle}")))
    }

    pub async fn ready(&self, issuer_id: &str, handle: u64) -> Result<bool, PluginFailure> {
        let c = self.challenge(issuer_id, handle).await?;
        if c.state != "present" {
            return Err(PluginFailure::Permanent(format!(
                "challenge {handle} is {}, not presented",
                c.state
            )));
        }
        match c.kind.as_str() {
            "http-01" => self.http_ready(&c).await,
            _ => self.dns_ready(&c).await,
        }
    }

    async fn http_ready(&self, c: &Challenge) -> Result<bool, PluginFailure> {
        let Some(mut addr) = self.settings.http01_address else {
            return Ok(false);
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let url = format!(
            "http://{addr}/.well-known/acme-challenge/{}",
            c.token.as_deref().unwrap_or_default()
        );
        let served = async { reqwest::get(&url).await?.text().await };
        match tokio::time::timeout(self.settings.timeout, served).await {
            Ok(Ok(body)) => Ok(Some(body.as_str()) == c.key_authorization.as_deref()),
            Ok(Err(_)) | Err(_) => Ok(false),
        }
    }

    /// True when every authoritative server of the zone answers the TXT value.
    async fn dns_ready(&self, c: &Challenge) -> Result<bool, PluginFailure> {
        let (zone, fqdn, value) = (
            c.zone.as_deref().unwrap_or_default(),
            c.fqdn.as_deref().unwrap_or_default(),
            c.value.as_deref().unwrap_or_default(),
        );
        let ns = self.resolve(zone, dns::NS).await?;
        let names: Vec<String> = ns
            .answers
            .iter()
            .filter(|r| r.rtype == dns::NS)
            .filter_map(|r| match &r.data {
                dns::Data::Name(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(transient(format!("no NS records for zone {zone}")));
        }
        for ns_name in names {
            let mut addresses = Vec::new();
            for rtype in [dns::A, dns::AAAA] {
                if let Ok(r) = self.resolve(&ns_name, rtype).await {
                    addresses.extend(r.answers.iter().filter_map(|a| match a.data {
                        dns::Data::Ip(ip) => Some(ip),
                        _ => None,
                    }));
                }
            }
            if addresses.is_empty() {
                return Err(transient(format!("name server {ns_name} of {zone} has no address")));
            }
            for ip in addresses {
                let server = SocketAddr::new(ip, self.settings.nameserver_port);
                let answer = match dns::query(server, fqdn, dns::TXT, false, self.settings.timeout).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(%server, error = %e, "propagation check: no answer yet");
                        return Ok(false);
                    }
                };
                let has = answer
                    .answers
                    .iter()
                    .any(|r| r.data == dns::Data::Txt(value.to_string()));
                if !has {
                    tracing::debug!(%server, %fqdn, "propagation check: value not there yet");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    pub async fn cleanup(&self, issuer_id: &str, handle: u64) -> Result<(), PluginFailure> {
        let c = self.challenge(issuer_id, handle).await?;
        self.clean(&c).await
    }

    /// Removes what a challenge published (twice is fine).
    pub async fn clean(&self, c: &Challenge) -> Result<(), PluginFailure> {
        if c.state == "cleaned" {
            return Ok(());
        }
        if c.kind == "dns-01" && c.state != "failed" {
            let solver_id = c.solver_id.as_deref().unwrap_or_default();
            let solver = self
                .store
                .get_instance(InstanceKind::DnsSolver, solver_id)
                .await
                .map_err(db)?
                .ok_or_else(|| {
                    transient(format!(
                        "DNS-solver instance {solver_id} was deleted; remove the record by hand"
                    ))
                })?;
            let config = self.solver_config(&solver)?;
            let record = v0_1::DnsRecord {
                zone: c.zone.clone().unwrap_or_default(),
                fqdn: c.fqdn.clone().unwrap_or_default(),
                value: c.value.clone().unwrap_or_default(),
                ttl: self.settings.ttl,
            };
            match self
                .registry()?
                .dns(&solver.plugin, &config, &record, false)
                .await
                .result
            {
                Ok(Ok(())) => {}
                Ok(Err(f)) => return Err(f),
                Err(e) => return Err(transient(format!("DNS solver {} failed: {e}", solver.name))),
            }
        }
        self.store.set_challenge_state(c.id, "cleaned", None).await.map_err(db)
    }

    /// Cleans up challenges older than `age` that were never cleaned (a crash, an abandoned
    /// order). Returns how many were cleaned.
    pub async fn clean_stale(&self, now: Timestamp, age: Duration) -> usize {
        let before = Timestamp(now.0 - age.as_secs() as i64);
        let stale = match self.store.stale_challenges(before).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list stale challenges");
                return 0;
            }
        };
        let mut cleaned = 0;
        for c in stale {
            match self.clean(&c).await {
                Ok(()) => cleaned += 1,
                Err(e) => tracing::warn!(challenge = c.id, error = %e, "stale challenge not cleaned yet"),
            }
        }
        cleaned
    }

    /// The plain-HTTP responder for `/.well-known/acme-challenge/{token}`.
    pub fn responder(self: Arc<Self>) -> Router {
        Router::new()
            .route("/.well-known/acme-challenge/{token}", get(serve_token))
            .with_state(self)
    }

    pub fn http01_address(&self) -> Option<SocketAddr> {
        self.settings.http01_address
    }
}

fn handle(id: i64) -> Result<u64, PluginFailure> {
    u64::try_from(id).map_err(|_| transient("negative challenge id"))
}

async fn serve_token(State(broker): State<Arc<ChallengeBroker>>, Path(token): Path<String>) -> (StatusCode, String) {
    match broker.store.http_challenge(&token).await {
        Ok(Some(key_authorization)) => (StatusCode::OK, key_authorization),
        Ok(None) => (StatusCode::NOT_FOUND, "no such challenge\n".to_string()),
        Err(e) => {
            tracing::error!(error = %e, "challenge lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again\n".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns01_value_is_base64url_sha256() {
        // RFC 8555 §8.4: the digest of the key authorization, base64url without padding.
        let v = super::dns01_value("token.thumbprint");
        assert_eq!(v.len(), 43);
        assert!(!v.contains('=') && !v.contains('+') && !v.contains('/'));
    }
}
