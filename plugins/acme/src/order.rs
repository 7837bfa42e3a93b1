//! One issuance as a state machine over `begin` and `resume` (RFC 8555 §7.4): calls are
//! stateless, so everything a later call needs travels in the pending state (JSON, [`State`]).
//!
//! ```text
//! begin:  newOrder {replaces?} (or the order of an earlier begin of the same CSR, from host-kv)
//!         -> fetch authorizations -> present challenges -> pending "presented"
//! resume: presented:  host-challenge.ready on each handle; not all ready -> pending (no HTTP)
//!                     all ready -> POST {} to each challenge -> pending "validating"
//!         validating: poll the authorizations; pending -> pending; invalid -> fail
//!                     all valid -> clean up -> the order: ready -> finalize -> "finalizing"
//!         finalizing: poll the order; processing -> pending; valid -> download -> issued
//! ```
//!
//! The order is always read back from the CA before acting on it, so a `resume` repeated with
//! the same state (the host retries transient failures so) or a `begin` repeated for the same
//! CSR (the host crashed before saving the state) picks up where the CA is. A failure that will
//! not be retried cleans up the challenges and forgets the order.

use certctl_sdk::{IssueRequest, PluginError, Progress, log};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::account;
use crate::chain;
use crate::client::{self, AcmeError, Client, Directory, IdentifierBody, Problem, ProblemBody};
use crate::config::{ChallengeType, Config};
use crate::jws::{AccountKey, b64};
use crate::names::{self, Identifier};
use crate::renewal;
use crate::services::Services;

/// The version of [`State`]; another one is refused.
const STATE_VERSION: u8 = 1;
/// Resumes of one order before giving up (about 40 minutes of readiness checks at the slowest).
pub(crate) const MAX_ROUNDS: u32 = 200;
/// The first wait after presenting the challenges.
const FIRST_WAIT_MS: u32 = 1_000;
/// At most this many `issuer-domain-names` in a dns-persist-01 challenge
/// (draft-ietf-acme-dns-persist-01 §3.1).
const MAX_ISSUER_DOMAIN_NAMES: usize = 10;

/// What a pending issuance carries from call to call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) version: u8,
    /// The CA's newNonce URL.
    pub(crate) new_nonce: String,
    /// The account key (host keystore) and the account URL (`kid`).
    pub(crate) key_id: String,
    pub(crate) account_url: String,
    pub(crate) order_url: String,
    /// The host-kv entry that remembers the order for a repeated `begin`.
    pub(crate) order_key: String,
    /// The CSR, base64url DER, for finalize.
    pub(crate) csr: String,
    pub(crate) challenge: ChallengeType,
    pub(crate) phase: Phase,
    /// The authorizations that needed a challenge.
    pub(crate) authorizations: Vec<Authorization>,
    /// Resumes so far.
    pub(crate) rounds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Challenges presented; waiting until the host sees them published.
    Presented,
    /// The CA was asked to validate; polling the authorizations.
    Validating,
    /// Finalized (or about to be); polling the order.
    Finalizing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Authorization {
    pub(crate) url: String,
    /// For messages: `example.com`, `*.example.com`, `192.0.2.1`.
    pub(crate) identifier: String,
    pub(crate) challenge_url: String,
    /// The host-challenge handle, until cleaned up.
    pub(crate) handle: Option<u64>,
    /// The host saw the challenge published.
    pub(crate) ready: bool,
    /// The CA was asked to validate (or was validating already).
    pub(crate) responded: bool,
}

#[derive(Debug, Deserialize)]
struct OrderBody {
    status: String,
    #[serde(default)]
    authorizations: Vec<String>,
    #[serde(default)]
    finalize: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    error: Option<ProblemBody>,
}

#[derive(Debug, Deserialize)]
struct AuthorizationBody {
    status: String,
    identifier: IdentifierBody,
    #[serde(default)]
    wildcard: bool,
    #[serde(default)]
    challenges: Vec<ChallengeBody>,
}

#[derive(Debug, Deserialize)]
struct ChallengeBody {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ProblemBody>,
    /// dns-persist-01: the names the record may authorise the account at (read and checked by
    /// [`issuer_domain_names`]; `Null` when absent).
    #[serde(default, rename = "issuer-domain-names")]
    issuer_domain_names: Value,
    /// dns-persist-01: the account URI the CA expects in the record.
    #[serde(default)]
    accounturi: Option<String>,
}

impl AuthorizationBody {
    fn name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier.value)
        } else {
            self.identifier.value.clone()
        }
    }

    /// The permanent error of an invalid authorization, with the CA's reason.
    fn failure(&self) -> PluginError {
        let cause = self
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref().map(|e| format!("{}: {}", c.kind, e.describe())))
            .unwrap_or_else(|| "the authorization is invalid (the CA gave no reason)".into());
        PluginError::permanent(format!("the CA could not validate {}: {cause}", self.name()))
    }
}

/// The host-kv key remembering the order of a CSR.
pub(crate) fn order_key(csr: &[u8]) -> String {
    let digest = Sha256::digest(csr);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("order:{hex}")
}

pub(crate) fn begin<H: Services>(host: &H, config: &Config, request: &IssueRequest) -> Result<Progress, PluginError> {
    let identifiers = names::identifiers(&request.names, config.challenge)?;
    if request.csr.is_empty() {
        return Err(PluginError::permanent("the request carries no CSR"));
    }
    let directory = Directory::fetch(&config.directory_url, host.now())?;
    let profile = profile(config, request, &directory)?;
    let replaces = replaces(request, &directory);
    let (mut client, account_url) = account::open(host, config, &directory)?;
    let mut state = State {
        version: STATE_VERSION,
        new_nonce: directory.new_nonce.clone(),
        key_id: client.key().key_id().to_string(),
        account_url,
        order_url: String::new(),
        order_key: order_key(&request.csr),
        csr: b64(&request.csr),
        challenge: config.challenge,
        phase: Phase::Presented,
        authorizations: Vec::new(),
        rounds: 0,
    };
    let result = open_order(
        &mut client,
        &directory,
        &mut state,
        &identifiers,
        profile.as_deref(),
        replaces.as_deref(),
    )
    .and_then(|order| advance(&mut client, config, &mut state, order, None));
    settle(host, &mut state, result)
}

pub(crate) fn resume<H: Services>(host: &H, config: &Config, state: &[u8]) -> Result<Progress, PluginError> {
    let mut state: State = serde_json::from_slice(state).map_err(|e| {
        PluginError::permanent(format!(
            "the state of the pending issuance cannot be read ({e}); start it again"
        ))
    })?;
    if state.version != STATE_VERSION {
        return Err(PluginError::permanent(format!(
            "the pending issuance was saved by another version of the plugin (state version {}); start it again",
            state.version
        )));
    }
    state.rounds += 1;
    let result = step(host, config, &mut state);
    settle(host, &mut state, result)
}

/// A failure that will not be retried ends the order: its challenges are cleaned up, and a
/// later `begin` opens a new one. Transient failures keep both, for the retry.
fn settle(
    host: &impl Services,
    state: &mut State,
    result: Result<Progress, PluginError>,
) -> Result<Progress, PluginError> {
    if let Err(e) = &result
        && !e.is_retryable()
    {
        cleanup(host, state);
        host.kv_delete(&state.order_key);
    }
    result
}

/// The profile for newOrder: the request's, else the configured one; either must be one the
/// directory lists.
fn profile(config: &Config, request: &IssueRequest, directory: &Directory) -> Result<Option<String>, PluginError> {
    let known = &directory.meta.profiles;
    let offered = || {
        if known.is_empty() {
            "the CA offers no profiles".to_string()
        } else {
            format!(
                "known profiles: {}",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    if let Some(wanted) = &request.profile {
        if known.contains_key(wanted) {
            return Ok(Some(wanted.clone()));
        }
        return Err(PluginError::permanent(format!(
            "the request asks for the ACME profile {wanted:?}, which the CA does not offer ({})",
            offered()
        )));
    }
    if let Some(wanted) = &config.profile {
        if known.contains_key(wanted) {
            return Ok(Some(wanted.clone()));
        }
        return Err(PluginError::invalid_config(format!(
            "config.profile: the CA does not offer the profile {wanted:?} ({})",
            offered()
        )));
    }
    Ok(None)
}

/// newOrder's `replaces` (RFC 9773 §5): on a renewal, the ARI identifier of the certificate it
/// replaces, when the CA offers renewal information. A certificate that cannot be named is left
/// out, with a log line: the link never fails a renewal.
fn replaces(request: &IssueRequest, directory: &Directory) -> Option<String> {
    let pem = request.replaces.as_deref()?;
    directory.renewal_info.as_ref()?;
    match renewal::certificate_id(pem) {
        Ok(Some(id)) => Some(id),
        Ok(None) => {
            log::info(
                "the replaced certificate has no Authority Key Identifier: the new order does not name it (replaces)",
            );
            None
        }
        Err(e) => {
            log::warn(format!(
                "the replaced certificate cannot be read ({e}): the new order does not name it (replaces)"
            ));
            None
        }
    }
}

/// Whether the CA refused newOrder for its `replaces`: `alreadyReplaced` (RFC 9773 §5, HTTP 409),
/// any other 409 Conflict, or a `malformed` about the field (Boulder: "Could not validate ARI
/// 'replaces' field").
fn refuses_replaces(problem: &Problem) -> bool {
    problem.is("alreadyReplaced")
        || problem.status == 409
        || (problem.is("malformed") && problem.detail.to_ascii_lowercase().contains("replaces"))
}

/// The order of an earlier `begin` of the same CSR, if the CA still has it usable; otherwise a
/// new order, remembered in host-kv.
fn open_order<H: Services>(
    client: &mut Client<'_, H>,
    directory: &Directory,
    state: &mut State,
    identifiers: &[Identifier],
    profile: Option<&str>,
    replaces: Option<&str>,
) -> Result<OrderBody, PluginError> {
    let host = client.host();
    if let Some(url) = host.kv_get(&state.order_key).and_then(|v| String::from_utf8(v).ok()) {
        match client.post_as_get("order", &url) {
            Ok(response) => {
                let order: OrderBody = client::json("order", &response)?;
                if order.status != "invalid" {
                    log::info(format!(
                        "continuing the order {url} (status {}) opened earlier for this CSR",
                        order.status
                    ));
                    state.order_url = url;
                    return Ok(order);
                }
                log::info(format!("the earlier order {url} is invalid; opening a new one"));
            }
            Err(e) => {
                let e = PluginError::from(e);
                if e.is_retryable() {
                    return Err(e);
                }
                log::info(format!(
                    "the earlier order {url} cannot be continued ({e}); opening a new one"
                ));
            }
        }
        host.kv_delete(&state.order_key);
    }
    let payload = |replaces: Option<&str>| {
        let mut payload = json!({"identifiers": identifiers});
        if let Some(profile) = profile {
            payload["profile"] = json!(profile);
        }
        if let Some(id) = replaces {
            payload["replaces"] = json!(id);
        }
        payload
    };
    let (response, replaced) = match client.post("newOrder", &directory.new_order, &payload(replaces)) {
        Err(AcmeError::Problem(problem)) if replaces.is_some() && refuses_replaces(&problem) => {
            log::warn(format!(
                "{}; ordering again without replaces (the renewal does not depend on the link)",
                problem.message()
            ));
            (client.post("newOrder", &directory.new_order, &payload(None))?, None)
        }
        result => (result?, replaces),
    };
    let url = client::location("newOrder", &response)?;
    host.kv_set(&state.order_key, url.as_bytes())?;
    log::info(format!(
        "opened the order {url} for {}{}",
        identifiers
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        replaced.map_or_else(String::new, |id| format!(", replacing the certificate {id}"))
    ));
    state.order_url = url;
    client::json("newOrder", &response)
}

/// One resume.
fn step<H: Services>(host: &H, config: &Config, state: &mut State) -> Result<Progress, PluginError> {
    if state.rounds > MAX_ROUNDS {
        return Err(PluginError::permanent(format!(
            "gave up on the order {} after {MAX_ROUNDS} checks; {}",
            state.order_url,
            match (state.phase, state.challenge) {
                (Phase::Presented, ChallengeType::DnsPersist01) =>
                    "the _validation-persist records never became visible: were they approved, and can the DNS solver \
                     publish them?",
                (Phase::Presented, _) =>
                    "the challenges never became visible: check the DNS solver or the HTTP challenge listener",
                (Phase::Validating, _) => "the CA never finished validating",
                (Phase::Finalizing, _) => "the CA never finished issuing",
            }
        )));
    }
    if state.phase == Phase::Presented {
        for i in 0..state.authorizations.len() {
            let authorization = &state.authorizations[i];
            if authorization.ready {
                continue;
            }
            if let Some(handle) = authorization.handle
                && !host.ready(handle)?
            {
                log::info(format!(
                    "the {} challenge for {} is not visible yet{}",
                    state.challenge.as_str(),
                    authorization.identifier,
                    if state.challenge == ChallengeType::DnsPersist01 {
                        " (a new _validation-persist record waits for the operator's approval)"
                    } else {
                        ""
                    }
                ));
                return pending(state, presented_wait(state));
            }
            state.authorizations[i].ready = true;
        }
    }
    let key = AccountKey::load(host, &state.key_id)?;
    let mut client = Client::new(host, &state.new_nonce, key, Some(state.account_url.clone()));
    match state.phase {
        Phase::Presented => {
            let retry = respond(&mut client, state)?;
            state.phase = Phase::Validating;
            pending(state, wait(state.rounds, retry))
        }
        Phase::Validating => match poll_authorizations(&mut client, state)? {
            Poll::Waiting(retry) => pending(state, wait(state.rounds, retry)),
            Poll::AllValid => {
                cleanup(host, state);
                let (order, retry) = fetch_order(&mut client, state)?;
                advance(&mut client, config, state, order, retry)
            }
        },
        Phase::Finalizing => {
            let (order, retry) = fetch_order(&mut client, state)?;
            advance(&mut client, config, state, order, retry)
        }
    }
}

/// Acts on the order as the CA has it.
fn advance<H: Services>(
    client: &mut Client<'_, H>,
    config: &Config,
    state: &mut State,
    order: OrderBody,
    retry: Option<u32>,
) -> Result<Progress, PluginError> {
    let host = client.host();
    match order.status.as_str() {
        "pending" => {
            present(client, state, &order)?;
            state.phase = if state.authorizations.is_empty() {
                Phase::Validating
            } else {
                Phase::Presented
            };
            pending(state, FIRST_WAIT_MS)
        }
        "ready" => {
            cleanup(host, state);
            let response = client.post("finalize", &order.finalize, &json!({"csr": state.csr}))?;
            let retry = client::retry_after(&response, client.now());
            let order: OrderBody = client::json("finalize", &response)?;
            state.phase = Phase::Finalizing;
            log::info(format!("finalized the order {}", state.order_url));
            match order.status.as_str() {
                "valid" => issued(client, config, state, &order),
                "invalid" => Err(order_failed(state, &order)),
                _ => pending(state, wait(state.rounds, retry)),
            }
        }
        "processing" => {
            cleanup(host, state);
            state.phase = Phase::Finalizing;
            pending(state, wait(state.rounds, retry))
        }
        "valid" => {
            cleanup(host, state);
            issued(client, config, state, &order)
        }
        "invalid" => Err(order_failed(state, &order)),
        other => Err(PluginError::permanent(format!(
            "the order {} has an unknown status {other:?}",
            state.order_url
        ))),
    }
}

fn order_failed(state: &State, order: &OrderBody) -> PluginError {
    let cause = order
        .error
        .as_ref()
        .map_or_else(|| "the CA gave no reason".to_string(), ProblemBody::describe);
    PluginError::permanent(format!("the order {} became invalid: {cause}", state.order_url))
}

/// Presents the configured challenge of every pending authorization of the order.
fn present<H: Services>(client: &mut Client<'_, H>, state: &mut State, order: &OrderBody) -> Result<(), PluginError> {
    let host = client.host();
    // Back to pending after validation (unusual): start the challenges again.
    cleanup(host, state);
    state.authorizations.clear();
    for url in &order.authorizations {
        let response = client.post_as_get("authorization", url)?;
        let authorization: AuthorizationBody = client::json("authorization", &response)?;
        let name = authorization.name();
        match authorization.status.as_str() {
            "valid" => continue,
            "pending" => {}
            "invalid" => return Err(authorization.failure()),
            other => {
                return Err(PluginError::permanent(format!(
                    "the authorization for {name} is {other}"
                )));
            }
        }
        let wanted = state.challenge.as_str();
        let Some(challenge) = authorization.challenges.iter().find(|c| c.kind == wanted) else {
            let offered: Vec<&str> = authorization.challenges.iter().map(|c| c.kind.as_str()).collect();
            return Err(PluginError::permanent(format!(
                "the CA offers no {wanted} challenge for {name} (it offers {})",
                offered.join(", ")
            )));
        };
        let handle = match state.challenge {
            ChallengeType::Http01 | ChallengeType::Dns01 => {
                // The token becomes a URL path on the host's listener: base64url only (RFC 8555
                // §8.3).
                if challenge.token.is_empty()
                    || !challenge
                        .token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(PluginError::permanent(format!(
                        "the CA sent a {wanted} token for {name} that is not base64url"
                    )));
                }
                let key_authorization = client.key().key_authorization(&challenge.token);
                if state.challenge == ChallengeType::Http01 {
                    host.present_http(&challenge.token, &key_authorization)?
                } else {
                    host.present_dns(&authorization.identifier.value, &key_authorization)?
                }
            }
            ChallengeType::DnsPersist01 => {
                let issuers = issuer_domain_names(challenge, &name)?;
                if let Some(uri) = &challenge.accounturi
                    && *uri != state.account_url
                {
                    log::warn(format!(
                        "the CA's dns-persist-01 challenge for {name} names the account URI {uri}; the record \
                         authorises this account's URL {}, which the draft has CAs accept",
                        state.account_url
                    ));
                }
                // The identifier of a wildcard authorization is the base domain; the record
                // covers the wildcard with policy=wildcard.
                host.present_persist(
                    &authorization.identifier.value,
                    &issuers,
                    &state.account_url,
                    authorization.wildcard,
                )?
            }
        };
        log::info(format!("presented the {wanted} challenge for {name}"));
        state.authorizations.push(Authorization {
            url: url.clone(),
            identifier: name,
            challenge_url: challenge.url.clone(),
            handle: Some(handle),
            ready: false,
            responded: challenge.status != "pending",
        });
    }
    Ok(())
}

/// The `issuer-domain-names` of a dns-persist-01 challenge (draft-ietf-acme-dns-persist-01
/// §3.1): one to ten domain names (A-labels, no trailing dot), lowercased (the CA must send them
/// so; DNS names compare case-insensitively). Anything else is the CA's error.
fn issuer_domain_names(challenge: &ChallengeBody, name: &str) -> Result<Vec<String>, PluginError> {
    let malformed = |why: String| {
        PluginError::permanent(format!(
            "the CA's dns-persist-01 challenge for {name} is malformed: {why} (draft-ietf-acme-dns-persist-01 asks \
             for 1 to {MAX_ISSUER_DOMAIN_NAMES} issuer domain names)"
        ))
    };
    let list = match &challenge.issuer_domain_names {
        Value::Array(list) => list,
        Value::Null => return Err(malformed("it has no issuer-domain-names".into())),
        other => return Err(malformed(format!("issuer-domain-names is {other}, not an array"))),
    };
    if list.is_empty() {
        return Err(malformed("issuer-domain-names is empty".into()));
    }
    if list.len() > MAX_ISSUER_DOMAIN_NAMES {
        return Err(malformed(format!("issuer-domain-names has {} entries", list.len())));
    }
    list.iter()
        .map(|value| {
            let Some(domain) = value.as_str() else {
                return Err(malformed(format!("issuer-domain-names holds {value}, not a string")));
            };
            let lower = domain.to_ascii_lowercase();
            if !names::is_dns_name(&lower) {
                return Err(malformed(format!(
                    "{domain:?} in issuer-domain-names is not a domain name (A-labels, no trailing dot)"
                )));
            }
            Ok(lower)
        })
        .collect()
}

/// Asks the CA to validate each challenge not asked yet. Reads the authorization first, so a
/// repeated call does not post to a challenge already under way (which CAs refuse).
fn respond<H: Services>(client: &mut Client<'_, H>, state: &mut State) -> Result<Option<u32>, PluginError> {
    let mut retry = None;
    for i in 0..state.authorizations.len() {
        if state.authorizations[i].responded {
            continue;
        }
        let url = state.authorizations[i].url.clone();
        let response = client.post_as_get("authorization", &url)?;
        let authorization: AuthorizationBody = client::json("authorization", &response)?;
        match authorization.status.as_str() {
            "pending" => {}
            "valid" => {
                state.authorizations[i].responded = true;
                continue;
            }
            "invalid" => return Err(authorization.failure()),
            other => {
                return Err(PluginError::permanent(format!(
                    "the authorization for {} is {other}",
                    authorization.name()
                )));
            }
        }
        let challenge_url = state.authorizations[i].challenge_url.clone();
        let untouched = authorization
            .challenges
            .iter()
            .find(|c| c.url == challenge_url)
            .is_none_or(|c| c.status == "pending");
        if untouched {
            let response = client.post("challenge", &challenge_url, &json!({}))?;
            retry = retry.max(client::retry_after(&response, client.now()));
            log::info(format!("asked the CA to validate {}", authorization.name()));
        }
        state.authorizations[i].responded = true;
    }
    Ok(retry)
}

enum Poll {
    AllValid,
    /// Still validating; the longest `Retry-After` the CA asked for.
    Waiting(Option<u32>),
}

fn poll_authorizations<H: Services>(client: &mut Client<'_, H>, state: &State) -> Result<Poll, PluginError> {
    let mut waiting = false;
    let mut retry = None;
    for authorization in &state.authorizations {
        let response = client.post_as_get("authorization", &authorization.url)?;
        let body: AuthorizationBody = client::json("authorization", &response)?;
        match body.status.as_str() {
            "valid" => {}
            "pending" => {
                waiting = true;
                retry = retry.max(client::retry_after(&response, client.now()));
            }
            "invalid" => return Err(body.failure()),
            other => {
                return Err(PluginError::permanent(format!(
                    "the authorization for {} is {other}",
                    body.name()
                )));
            }
        }
    }
    Ok(if waiting { Poll::Waiting(retry) } else { Poll::AllValid })
}

fn fetch_order<H: Services>(
    client: &mut Client<'_, H>,
    state: &State,
) -> Result<(OrderBody, Option<u32>), PluginError> {
    let response = client.post_as_get("order", &state.order_url)?;
    let retry = client::retry_after(&response, client.now());
    Ok((client::json("order", &response)?, retry))
}

fn issued<H: Services>(
    client: &mut Client<'_, H>,
    config: &Config,
    state: &State,
    order: &OrderBody,
) -> Result<Progress, PluginError> {
    let url = order.certificate.as_deref().ok_or_else(|| {
        PluginError::transient(format!(
            "the order {} is valid but names no certificate",
            state.order_url
        ))
    })?;
    let chain = chain::download(client, url, config.preferred_chain.as_deref())?;
    client.host().kv_delete(&state.order_key);
    log::info(format!("the order {} is complete", state.order_url));
    Ok(Progress::Issued(chain))
}

/// Removes what was presented. A failure is logged, not raised: the host cleans up forgotten
/// challenges itself.
fn cleanup(host: &impl Services, state: &mut State) {
    for authorization in &mut state.authorizations {
        if let Some(handle) = authorization.handle.take()
            && let Err(e) = host.cleanup(handle)
        {
            log::warn(format!(
                "cleaning up the challenge for {} failed ({e}); the host removes it later",
                authorization.identifier
            ));
        }
    }
}

fn pending(state: &State, after_ms: u32) -> Result<Progress, PluginError> {
    let state = serde_json::to_vec(state)
        .map_err(|e| PluginError::permanent(format!("cannot encode the pending state: {e}")))?;
    Ok(Progress::Pending { after_ms, state })
}

/// How long to wait for presented challenges to become visible: as [`wait`], except that a
/// dns-persist-01 record may first need the operator's approval, so its waits grow to a minute
/// (the [`MAX_ROUNDS`] then last almost three hours instead of forty minutes).
fn presented_wait(state: &State) -> u32 {
    match state.challenge {
        ChallengeType::DnsPersist01 if state.rounds >= 40 => 60_000,
        _ => wait(state.rounds, None),
    }
}

/// How long to wait: what the CA asked for (1 s to 1 h), else longer as the rounds go by.
fn wait(rounds: u32, retry_after: Option<u32>) -> u32 {
    match retry_after {
        Some(seconds) => seconds.clamp(1, 3_600) * 1_000,
        None if rounds < 10 => 1_000,
        None if rounds < 40 => 5_000,
        None => 15_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_follow_retry_after() {
        assert_eq!(wait(0, None), 1_000);
        assert_eq!(wait(10, None), 5_000);
        assert_eq!(wait(100, None), 15_000);
        assert_eq!(wait(0, Some(3)), 3_000);
        assert_eq!(wait(0, Some(0)), 1_000);
        assert_eq!(wait(0, Some(86_400)), 3_600_000);
    }

    #[test]
    fn persist_records_are_waited_for_longer() {
        let state = |challenge, rounds| State {
            version: STATE_VERSION,
            new_nonce: String::new(),
            key_id: String::new(),
            account_url: String::new(),
            order_url: String::new(),
            order_key: String::new(),
            csr: String::new(),
            challenge,
            phase: Phase::Presented,
            authorizations: Vec::new(),
            rounds,
        };
        assert_eq!(presented_wait(&state(ChallengeType::DnsPersist01, 0)), 1_000);
        assert_eq!(presented_wait(&state(ChallengeType::DnsPersist01, 39)), 5_000);
        assert_eq!(presented_wait(&state(ChallengeType::DnsPersist01, 40)), 60_000);
        assert_eq!(presented_wait(&state(ChallengeType::Dns01, 40)), 15_000);
        let total: u64 = (1..=MAX_ROUNDS)
            .map(|rounds| u64::from(presented_wait(&state(ChallengeType::DnsPersist01, rounds))))
            .sum();
        assert!((9_000_000..10_800_000).contains(&total), "{total} ms");
    }

    #[test]
    fn the_order_key_is_the_csr_digest() {
        assert_eq!(
            order_key(b"abc"),
            "order:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
