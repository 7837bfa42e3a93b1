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
//! - dns-persist-01: the host checks `_validation-persist.<domain>` on the authoritative
//!   servers; a record that already authorises the account is used with no DNS write. Otherwise
//!   the record waits for the operator's approval (`POST /api/v1/dns-persist/{id}/approve`),
//!   is then published once through the DNS solver, and is never cleaned up.
//!
//! Every challenge is a row before anything is published; `cleanup` (or the scheduler, for
//! challenges an order left behind) removes exactly what was published. Solver calls for one
//! record name are serialised (apex and wildcard of a name share it), in this process and, on
//! PostgreSQL, across replicas.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dns;
use crate::model::{InstanceKind, Timestamp};
use crate::plugins::registry::{ConfigProblem, Registry};
use crate::plugins::{CallOutcome, PluginFailure, v0_1};
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
    /// One lock per record name, so two values at one name never race in a solver's
    /// read-modify-write.
    names: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An issuer's `cname_policy` for dns-01 records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CnamePolicy {
    None,
    Follow,
}

/// What a dns-persist-01 record must say, kept with its row (`detail`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistDetail {
    pub issuer_domain_names: Vec<String>,
    pub account_uri: String,
    pub wildcard: bool,
}

/// Why an approval did not publish a dns-persist-01 record.
#[derive(Debug)]
pub enum ApprovalError {
    NotFound,
    /// The record is not awaiting approval (its state).
    NotAwaiting(String),
    /// Publishing failed; the record still awaits approval.
    Failed(PluginFailure),
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
            names: Mutex::new(HashMap::new()),
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

    /// An issuer instance of the call.
    async fn issuer(&self, issuer_id: &str) -> Result<crate::model::PluginInstance, PluginFailure> {
        self.store
            .get_instance(InstanceKind::Issuer, issuer_id)
            .await
            .map_err(db)?
            .ok_or_else(|| PluginFailure::NotFound(format!("issuer instance {issuer_id}")))
    }

    /// The issuer's `cname_policy`: `none` (default) or `follow`.
    fn cname_policy(issuer: &crate::model::PluginInstance) -> Result<CnamePolicy, PluginFailure> {
        match issuer.config.get("cname_policy").and_then(|v| v.as_str()) {
            None | Some("none") => Ok(CnamePolicy::None),
            Some("follow") => Ok(CnamePolicy::Follow),
            Some(other) => Err(PluginFailure::InvalidConfig(format!(
                "config.cname_policy: {other:?} is not none or follow"
            ))),
        }
    }

    /// Where a CNAME chain from `fqdn` ends (at most 8 links): delegated validation publishes
    /// the record there. A CNAME that a wildcard record synthesised is refused: it would send
    /// every name's challenge to one place nobody chose for it.
    async fn follow_cname(&self, fqdn: &str) -> Result<String, PluginFailure> {
        let mut name = fqdn.to_string();
        for _ in 0..8 {
            let answer = self.resolve(&name, dns::CNAME).await?;
            let Some(target) = answer.answers.iter().find_map(|r| match (&r.data, r.rtype) {
                (dns::Data::Name(t), dns::CNAME) if r.name.eq_ignore_ascii_case(&name) => Some(t.clone()),
                _ => None,
            }) else {
                return Ok(name);
            };
            // A sibling nobody created: if it has the same CNAME, a wildcard made both.
            let parent = name.split_once('.').map_or("", |(_, p)| p);
            let probe = format!("_certctl-probe-{:016x}.{parent}", rand::random::<u64>());
            let synthesised = self.resolve(&probe, dns::CNAME).await?.answers.iter().any(|r| {
                r.rtype == dns::CNAME && matches!(&r.data, dns::Data::Name(t) if t.eq_ignore_ascii_case(&target))
            });
            if synthesised {
                return Err(PluginFailure::Permanent(format!(
                    "{name} is a CNAME to {target} that a wildcard record synthesised (the made-up name \
                     {probe} gets the same answer); refusing to follow it: create an explicit CNAME at \
                     {name}, or set the issuer's cname_policy to none"
                )));
            }
            tracing::info!(from = %name, to = %target, "dns-01: following CNAME");
            name = target.trim_end_matches('.').to_ascii_lowercase();
        }
        Err(PluginFailure::Permanent(format!(
            "the CNAME chain from {fqdn} is longer than 8 links"
        )))
    }

    /// The DNS-solver instance and its resolved configuration for an issuer instance.
    async fn solver_of(
        &self,
        issuer: &crate::model::PluginInstance,
    ) -> Result<(crate::model::PluginInstance, String), PluginFailure> {
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

    /// A solver's `present` or `cleanup` of `record`, holding the lock of its name.
    async fn publish(
        &self,
        solver: &crate::model::PluginInstance,
        config: &str,
        record: &v0_1::DnsRecord,
        present: bool,
    ) -> Result<CallOutcome<()>, PluginFailure> {
        let local = {
            let mut names = self
                .names
                .lock()
                .map_err(|_| transient("challenge name locks poisoned"))?;
            names.retain(|_, m| Arc::strong_count(m) > 1);
            names.entry(record.fqdn.clone()).or_default().clone()
        };
        let _held = local.lock().await;
        let cluster = self
            .store
            .lock(crate::store::locks::key_for(&format!("dns-record:{}", record.fqdn)))
            .await
            .map_err(db)?;
        let outcome = self.registry()?.dns(&solver.plugin, config, record, present).await;
        cluster.release().await;
        Ok(outcome)
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
        let issuer = self.issuer(issuer_id).await?;
        let (solver, config) = self.solver_of(&issuer).await?;
        let fqdn = match Self::cname_policy(&issuer)? {
            CnamePolicy::None => format!("_acme-challenge.{name}"),
            CnamePolicy::Follow => self.follow_cname(&format!("_acme-challenge.{name}")).await?,
        };
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
        let outcome = self.publish(&solver, &config, &record, true).await?;
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
        if c.kind == "dns-persist-01" {
            return self.persist_ready(&c).await;
        }
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
        let value = c.value.as_deref().unwrap_or_default();
        self.on_every_server(
            c.zone.as_deref().unwrap_or_default(),
            c.fqdn.as_deref().unwrap_or_default(),
            |values| values.iter().any(|v| v == value),
        )
        .await
    }

    /// True when every authoritative server of `zone` answers TXT values at `fqdn` that `accept`
    /// takes; false when one does not (yet), or does not answer.
    async fn on_every_server(
        &self,
        zone: &str,
        fqdn: &str,
        accept: impl Fn(&[String]) -> bool,
    ) -> Result<bool, PluginFailure> {
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
                let values: Vec<String> = answer
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        dns::Data::Txt(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                if !accept(&values) {
                    tracing::debug!(%server, %fqdn, "propagation check: not there yet");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// dns-persist-01: asks for `_validation-persist.<identifier>` authorising `account_uri` at
    /// one of `issuer_domain_names`. A record already published that satisfies the draft's
    /// rules is used as it is; otherwise the row waits for the operator's approval.
    pub async fn present_persist(
        &self,
        issuer_id: &str,
        identifier: &str,
        issuer_domain_names: &[String],
        account_uri: &str,
        wildcard: bool,
    ) -> Result<u64, PluginFailure> {
        let issuers: Vec<String> = issuer_domain_names
            .iter()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        if issuers.is_empty() {
            return Err(PluginFailure::Permanent(format!(
                "dns-persist-01 for {identifier}: the CA listed no issuer domain names"
            )));
        }
        if let Some(bad) = issuers
            .iter()
            .find(|n| crate::persist::parse(&format!("{n}; accounturi=x")).is_err())
        {
            return Err(PluginFailure::Permanent(format!(
                "dns-persist-01 for {identifier}: {bad:?} is not an issuer domain name"
            )));
        }
        if account_uri.is_empty() || !account_uri.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';') {
            return Err(PluginFailure::Permanent(format!(
                "dns-persist-01 for {identifier}: {account_uri:?} cannot be an accounturi value"
            )));
        }
        let domain = identifier
            .trim_start_matches("*.")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let fqdn = format!("_validation-persist.{domain}");
        let zone = self.zone_of(&fqdn).await?;
        let detail = PersistDetail {
            issuer_domain_names: issuers,
            account_uri: account_uri.to_string(),
            wildcard,
        };
        let value = crate::persist::record_value(&detail.issuer_domain_names[0], account_uri, wildcard);
        // The solver is only needed to publish, after approval; a record published by hand
        // needs none.
        let solver_id = match self.solver_of(&self.issuer(issuer_id).await?).await {
            Ok((solver, _)) => Some(solver.id),
            Err(_) => None,
        };
        let id = self
            .store
            .insert_challenge(&NewChallenge {
                instance_id: issuer_id.to_string(),
                kind: "dns-persist-01",
                identifier: identifier.to_string(),
                zone: Some(zone.clone()),
                fqdn: Some(fqdn.clone()),
                value: Some(value.clone()),
                solver_id,
                detail: Some(serde_json::to_string(&detail).map_err(|e| transient(e.to_string()))?),
                ..NewChallenge::default()
            })
            .await
            .map_err(db)?;
        if self.persist_satisfied(&zone, &fqdn, &detail).await? {
            tracing::info!(%fqdn, "dns-persist-01: the record is already there; no DNS write");
            self.store.set_challenge_state(id, "present", None).await.map_err(db)?;
        } else {
            let waiting = format!(
                "awaiting approval: POST /api/v1/dns-persist/{id}/approve publishes {fqdn} TXT \"{value}\" \
                 through the issuer's DNS solver (or publish it yourself)"
            );
            tracing::warn!(challenge = id, %fqdn, "dns-persist-01 record {waiting}");
            self.store
                .set_challenge_state(id, "awaiting_approval", Some(&waiting))
                .await
                .map_err(db)?;
        }
        handle(id)
    }

    async fn persist_satisfied(&self, zone: &str, fqdn: &str, d: &PersistDetail) -> Result<bool, PluginFailure> {
        let now = Timestamp::now().0;
        self.on_every_server(zone, fqdn, |values| {
            values
                .iter()
                .any(|v| crate::persist::satisfies(v, &d.issuer_domain_names, &d.account_uri, d.wildcard, now))
        })
        .await
    }

    /// Ready once every authoritative server answers a satisfying record: published after
    /// approval, or by the operator by hand.
    async fn persist_ready(&self, c: &Challenge) -> Result<bool, PluginFailure> {
        if c.state == "cleaned" || c.state == "failed" {
            return Err(PluginFailure::Permanent(format!("challenge {} is {}", c.id, c.state)));
        }
        let detail: PersistDetail = serde_json::from_str(c.detail.as_deref().unwrap_or_default())
            .map_err(|e| PluginFailure::Permanent(format!("challenge {}: unreadable detail: {e}", c.id)))?;
        let ready = self
            .persist_satisfied(
                c.zone.as_deref().unwrap_or_default(),
                c.fqdn.as_deref().unwrap_or_default(),
                &detail,
            )
            .await?;
        if ready && c.state != "present" {
            self.store
                .set_challenge_state(c.id, "present", None)
                .await
                .map_err(db)?;
        }
        Ok(ready)
    }

    /// The operator's approval: publishes a waiting dns-persist-01 record through the issuer's
    /// DNS solver, once.
    pub async fn approve_persist(&self, id: i64) -> Result<Challenge, ApprovalError> {
        let fail = ApprovalError::Failed;
        if !self.store.take_persist_approval(id).await.map_err(|e| fail(db(e)))? {
            return match self.store.challenge_by_id(id).await.map_err(|e| fail(db(e)))? {
                Some(c) if c.kind == "dns-persist-01" => Err(ApprovalError::NotAwaiting(c.state)),
                _ => Err(ApprovalError::NotFound),
            };
        }
        let c = self
            .store
            .challenge_by_id(id)
            .await
            .map_err(|e| fail(db(e)))?
            .ok_or(ApprovalError::NotFound)?;
        match self.publish_persist(&c).await {
            Ok(()) => {
                self.store
                    .set_challenge_state(id, "present", None)
                    .await
                    .map_err(|e| fail(db(e)))?;
                let mut c = c;
                c.state = "present".into();
                c.last_error = None;
                Ok(c)
            }
            Err(f) => {
                let message = format!("approved, but not published: {f}");
                self.store
                    .set_challenge_state(id, "awaiting_approval", Some(&message))
                    .await
                    .map_err(|e| fail(db(e)))?;
                Err(fail(f))
            }
        }
    }

    async fn publish_persist(&self, c: &Challenge) -> Result<(), PluginFailure> {
        let solver_id = c.solver_id.as_deref().ok_or_else(|| {
            PluginFailure::InvalidConfig(format!(
                "the issuer names no DNS-solver instance (config.dns_solver): publish {} TXT \"{}\" yourself",
                c.fqdn.as_deref().unwrap_or_default(),
                c.value.as_deref().unwrap_or_default()
            ))
        })?;
        let solver = self
            .store
            .get_instance(InstanceKind::DnsSolver, solver_id)
            .await
            .map_err(db)?
            .ok_or_else(|| PluginFailure::InvalidConfig(format!("DNS-solver instance {solver_id} was deleted")))?;
        let config = self.solver_config(&solver)?;
        let record = v0_1::DnsRecord {
            zone: c.zone.clone().unwrap_or_default(),
            fqdn: c.fqdn.clone().unwrap_or_default(),
            value: c.value.clone().unwrap_or_default(),
            // Long-lived: the record is meant to stay.
            ttl: 3600,
        };
        match self.publish(&solver, &config, &record, true).await?.result {
            Ok(result) => result,
            Err(e) => Err(transient(format!("DNS solver {} failed: {e}", solver.name))),
        }
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
        // A dns-persist-01 record stays: that is the point of it. Only its row is closed.
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
            match self.publish(&solver, &config, &record, false).await?.result {
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
