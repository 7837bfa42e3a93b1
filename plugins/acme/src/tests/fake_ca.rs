//! A Pebble-like ACME server behind the SDK's `MockHttp`: stateful (accounts, orders,
//! authorizations, challenges, certificates), strict like Pebble (every JWS is verified — nonce,
//! url, jwk/kid, signature with the account's key — and a challenge may be posted only while
//! pending), with knobs for the failures the tests need. It validates a challenge by looking at
//! what the fake host presented. Optionally it offers ACME Renewal Information (RFC 9773: a
//! `renewalInfo` directory entry, `replaces` in newOrder, `alreadyReplaced`) and dns-persist-01
//! challenges (draft-ietf-acme-dns-persist-01).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certctl_sdk::http::Method;
use certctl_sdk::testkit::{MockHttp, MockResponse, RecordedRequest};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{FakeHost, FakeKey, Presented};

pub const BASE: &str = "https://ca.test";
pub const DIRECTORY: &str = "https://ca.test/dir";
pub const CHAIN_A: &str = include_str!("../../testdata/chain-a.pem");
pub const CHAIN_B: &str = include_str!("../../testdata/chain-b.pem");

/// One request as the CA saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The protected header of a POST.
    pub protected: Value,
    /// The payload of a POST (`Value::Null` for POST-as-GET).
    pub payload: Value,
    /// The nonce the answer carried.
    pub issued_nonce: Option<String>,
    pub status: u16,
}

struct Account {
    url: String,
    jwk: Value,
    key_id: String,
}

struct Order {
    account: String,
    identifiers: Vec<Value>,
    authorizations: Vec<usize>,
    profile: Option<String>,
    replaces: Option<String>,
    finalized: bool,
    csr: Option<String>,
    processing_left: u32,
}

struct Authz {
    identifier: String,
    kind: String,
    wildcard: bool,
    status: &'static str,
    challenges: Vec<Challenge>,
    /// Polls until a challenge being processed is decided.
    deciding_in: u32,
}

struct Challenge {
    kind: &'static str,
    token: String,
    status: &'static str,
    error: Option<Value>,
}

/// The CA's state and knobs.
#[derive(Default)]
pub struct State {
    keys: Rc<RefCell<std::collections::BTreeMap<String, FakeKey>>>,
    presented: Rc<RefCell<Vec<Presented>>>,
    nonce_counter: u32,
    nonces: BTreeSet<String>,
    accounts: Vec<Account>,
    orders: Vec<Order>,
    authzs: Vec<Authz>,
    pub revoked: Vec<(String, Option<u64>)>,
    pub log: Vec<Seen>,
    /// Refuse the next N nonces with badNonce.
    pub reject_nonces: u32,
    /// External Account Binding required: (kid, MAC key).
    pub require_eab: Option<(String, Vec<u8>)>,
    /// `meta.profiles`.
    pub profiles: Vec<String>,
    /// Answer newOrder with rateLimited and this Retry-After.
    pub rate_limit_new_order: Option<String>,
    /// Validation fails whatever was presented.
    pub fail_validation: bool,
    /// Authorization polls before a challenge being processed is decided.
    pub validation_polls: u32,
    /// Order polls after finalize before the certificate is there (0: finalize answers valid).
    pub processing_polls: u32,
    /// Retry-After on orders being processed and on authorizations being validated.
    pub retry_after: Option<String>,
    /// Serve chain B as an alternate of chain A.
    pub alternates: bool,
    /// ACME Renewal Information: `renewalInfo` in the directory (unknown certificates are a
    /// 404; tests answer known ones with expectations), `replaces` accepted in newOrder.
    pub ari: bool,
    /// The certificates (ARI identifiers) a newOrder named in `replaces`; naming one again is
    /// `alreadyReplaced`.
    pub replaced: BTreeSet<String>,
    /// Offer a dns-persist-01 challenge in every authorization, with this
    /// `issuer-domain-names` (`Null`: the field left out).
    pub persist_issuers: Option<Value>,
}

#[derive(Clone)]
pub struct FakeCa {
    pub state: Rc<RefCell<State>>,
}

impl FakeCa {
    /// Answers every request on `mock` that no expectation answers.
    pub fn install(mock: &MockHttp, host: &FakeHost) -> FakeCa {
        let state = Rc::new(RefCell::new(State {
            keys: Rc::clone(&host.keys),
            presented: Rc::clone(&host.presented),
            ..State::default()
        }));
        let handler = Rc::clone(&state);
        mock.fallback(move |request| handler.borrow_mut().answer(request));
        FakeCa { state }
    }

    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.borrow_mut());
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.borrow().log.clone()
    }

    /// `METHOD /path` of every request, in order.
    pub fn paths(&self) -> Vec<String> {
        self.state
            .borrow()
            .log
            .iter()
            .map(|s| format!("{} {}", s.method.as_str(), s.path))
            .collect()
    }

    /// Forgets every account (as a restarted Pebble does).
    pub fn forget_accounts(&self) {
        self.state.borrow_mut().accounts.clear();
    }

    pub fn order_payloads(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|s| s.path == "/new-order" && s.status == 201)
            .map(|s| s.payload)
            .collect()
    }

    pub fn accounts(&self) -> usize {
        self.state.borrow().accounts.len()
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The JWK of a fake key, computed from the key itself.
pub fn jwk_of(key: &FakeKey) -> Value {
    match key {
        FakeKey::P256(k) => {
            let point = k.verifying_key().to_sec1_point(false);
            let bytes = point.as_bytes();
            json!({"crv": "P-256", "kty": "EC", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..65])})
        }
        FakeKey::Rsa(k) => {
            use rsa::traits::PublicKeyParts;
            json!({"e": b64(k.e_bytes()), "kty": "RSA", "n": b64(k.n_bytes())})
        }
    }
}

/// RFC 7638 thumbprint of an EC or RSA JWK.
pub fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap_or(""),
            jwk["x"].as_str().unwrap_or(""),
            jwk["y"].as_str().unwrap_or("")
        ),
        _ => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap_or(""),
            jwk["n"].as_str().unwrap_or("")
        ),
    };
    b64(Sha256::digest(canonical.as_bytes()))
}

/// Verifies a JWS signature with a fake key: ES256 as r || s, RS256 PKCS#1 v1.5.
pub fn verify(key: &FakeKey, alg: &str, input: &[u8], signature: &[u8]) -> bool {
    match (key, alg) {
        (FakeKey::P256(k), "ES256") => {
            use p256::ecdsa::signature::Verifier;
            let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
                return false;
            };
            k.verifying_key().verify(input, &signature).is_ok()
        }
        (FakeKey::Rsa(k), "RS256") => rsa::PublicKey::from(k.as_ref())
            .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input), signature)
            .is_ok(),
        _ => false,
    }
}

/// An answer being built (a `MockResponse` keeps its parts private).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn ok() -> Answer {
        Answer::new(200)
    }

    fn json(status: u16, value: &Value) -> Answer {
        let mut answer = Answer::new(status).header("Content-Type", "application/json");
        answer.body = value.to_string().into_bytes();
        answer
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: &str) -> Answer {
        self.body = body.as_bytes().to_vec();
        self
    }

    fn with_status(mut self, status: u16) -> Answer {
        self.status = status;
        self
    }

    fn into_mock(self) -> MockResponse {
        let mut response = MockResponse::new(self.status).body(self.body);
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response
    }
}

fn problem(status: u16, kind: &str, detail: &str) -> Answer {
    let mut answer = Answer::new(status).header("Content-Type", "application/problem+json");
    answer.body = json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": status})
        .to_string()
        .into_bytes();
    answer
}

/// A `_validation-persist` TXT value (draft-ietf-acme-dns-persist-01 §4.1): an issue-value
/// whose issuer domain name is one of `issuers`, whose `accounturi` is `account`, and with
/// `policy=wildcard` (case-insensitive) for a wildcard authorization. Unknown parameters are
/// ignored.
fn persist_record_valid(value: &str, issuers: &[String], account: &str, wildcard: bool) -> bool {
    let mut parts = value.split(';');
    let issuer = parts.next().unwrap_or("").trim();
    let mut accounturi = None;
    let mut policy = None;
    for parameter in parts {
        let Some((tag, value)) = parameter.trim().split_once('=') else {
            return false;
        };
        match tag {
            "accounturi" => accounturi = Some(value.to_string()),
            "policy" => policy = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    issuers.iter().any(|i| i == issuer)
        && accounturi.as_deref() == Some(account)
        && (!wildcard || policy.as_deref() == Some("wildcard"))
}

/// A verified POST.
struct Post {
    header: Value,
    /// `None`: POST-as-GET.
    payload: Option<Value>,
    /// The account (index) of a kid request.
    account: Option<usize>,
}

impl State {
    fn url(path: &str) -> String {
        format!("{BASE}{path}")
    }

    fn new_nonce(&mut self) -> String {
        self.nonce_counter += 1;
        let nonce = format!("nonce-{}", self.nonce_counter);
        self.nonces.insert(nonce.clone());
        nonce
    }

    fn answer(&mut self, request: &RecordedRequest) -> MockResponse {
        let path = request.path().to_string();
        let mut seen = Seen {
            method: request.method,
            path: path.clone(),
            protected: Value::Null,
            payload: Value::Null,
            issued_nonce: None,
            status: 0,
        };
        let response = if request.method == Method::Post {
            match self.verify_post(request) {
                Ok(post) => {
                    seen.protected = post.header.clone();
                    seen.payload = post.payload.clone().unwrap_or(Value::Null);
                    self.route_post(&path, &post)
                }
                Err((response, header)) => {
                    seen.protected = header;
                    response
                }
            }
        } else {
            self.route_get(request.method, &path)
        };
        // Like Pebble: a nonce on every POST answer and on newNonce.
        let response = if request.method == Method::Post || path == "/nonce" {
            let nonce = self.new_nonce();
            seen.issued_nonce = Some(nonce.clone());
            response.header("Replay-Nonce", nonce)
        } else {
            response
        };
        seen.status = response.status;
        self.log.push(seen);
        response.into_mock()
    }

    fn route_get(&mut self, method: Method, path: &str) -> Answer {
        match (method, path) {
            (Method::Get, "/dir") => {
                let mut meta = json!({
                    "termsOfService": Self::url("/terms"),
                    "externalAccountRequired": self.require_eab.is_some(),
                });
                if !self.profiles.is_empty() {
                    meta["profiles"] = self
                        .profiles
                        .iter()
                        .map(|p| (p.clone(), json!(format!("the {p} profile"))))
                        .collect();
                }
                let mut directory = json!({
                    "newNonce": Self::url("/nonce"),
                    "newAccount": Self::url("/new-account"),
                    "newOrder": Self::url("/new-order"),
                    "revokeCert": Self::url("/revoke-cert"),
                    "keyChange": Self::url("/rollover-account-key"),
                    "meta": meta,
                });
                if self.ari {
                    directory["renewalInfo"] = json!(Self::url("/renewal-info"));
                }
                Answer::json(200, &directory)
            }
            // As Boulder: a certificate the CA does not know.
            (Method::Get, path) if self.ari && path.starts_with("/renewal-info/") => {
                problem(404, "malformed", "Certificate not found")
            }
            (Method::Head, "/nonce") => Answer::new(200),
            (Method::Get, "/nonce") => Answer::new(204),
            _ => Answer::new(404),
        }
    }

    /// Pebble's checks, in Pebble's order.
    fn verify_post(&mut self, request: &RecordedRequest) -> Result<Post, (Answer, Value)> {
        let fail = |r: Answer| (r, Value::Null);
        if request.header("content-type") != Some("application/jose+json") {
            return Err(fail(problem(
                415,
                "malformed",
                "Content-Type must be application/jose+json",
            )));
        }
        let body: Value = request
            .json()
            .map_err(|_| fail(problem(400, "malformed", "Parse error reading JWS")))?;
        let (Some(protected), Some(payload), Some(signature)) = (
            body["protected"].as_str(),
            body["payload"].as_str(),
            body["signature"].as_str(),
        ) else {
            return Err(fail(problem(400, "malformed", "not a flattened JWS")));
        };
        let header: Value = unb64(protected)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| fail(problem(400, "malformed", "protected header is not base64url JSON")))?;
        let with = |r: Answer| (r, header.clone());
        let nonce = header["nonce"].as_str().unwrap_or("").to_string();
        if !self.nonces.remove(&nonce) {
            return Err(with(problem(
                400,
                "badNonce",
                &format!("JWS has an invalid anti-replay nonce: {nonce:?}"),
            )));
        }
        if self.reject_nonces > 0 {
            self.reject_nonces -= 1;
            return Err(with(problem(
                400,
                "badNonce",
                &format!("JWS has an invalid anti-replay nonce: {nonce:?}"),
            )));
        }
        if header["url"].as_str() != Some(request.url.as_str()) {
            return Err(with(problem(400, "malformed", "JWS header parameter 'url' incorrect")));
        }
        let alg = header["alg"].as_str().unwrap_or("").to_string();
        let new_account = request.path() == "/new-account";
        let (jwk, account) = match (header.get("jwk"), header.get("kid")) {
            (Some(jwk), None) if new_account => (jwk.clone(), None),
            (None, Some(kid)) if !new_account => {
                let kid = kid.as_str().unwrap_or("");
                match self.accounts.iter().position(|a| a.url == kid) {
                    Some(i) => (self.accounts[i].jwk.clone(), Some(i)),
                    None => {
                        return Err(with(problem(
                            400,
                            "accountDoesNotExist",
                            "URL in JWS 'kid' field does not correspond to an account",
                        )));
                    }
                }
            }
            _ => {
                return Err(with(problem(
                    400,
                    "malformed",
                    "jwk on newAccount, kid elsewhere, never both",
                )));
            }
        };
        let keys = self.keys.borrow();
        let Some(key) = keys.values().find(|k| jwk_of(k) == jwk) else {
            return Err(with(problem(400, "badPublicKey", "unknown key")));
        };
        let signature = unb64(signature).unwrap_or_default();
        if !verify(key, &alg, format!("{protected}.{payload}").as_bytes(), &signature) {
            return Err(with(problem(400, "malformed", "JWS verification error")));
        }
        drop(keys);
        let payload = if payload.is_empty() {
            None
        } else {
            Some(
                unb64(payload)
                    .and_then(|p| serde_json::from_slice(&p).ok())
                    .ok_or_else(|| with(problem(400, "malformed", "payload is not base64url JSON")))?,
            )
        };
        Ok(Post {
            header,
            payload,
            account,
        })
    }

    fn route_post(&mut self, path: &str, post: &Post) -> Answer {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let index = |i: usize| parts.get(i).and_then(|p| p.parse::<usize>().ok());
        match (parts.as_slice(), &post.payload) {
            (["new-account"], Some(payload)) => self.new_account(post, payload),
            (["new-order"], Some(payload)) => self.new_order(post, payload),
            (["order", _], None) => match index(1).filter(|&i| i < self.orders.len()) {
                Some(i) => self.order_response(i, true),
                None => Answer::new(404),
            },
            (["authz", _], None) => match index(1).filter(|&i| i < self.authzs.len()) {
                Some(i) => self.authz_response(i),
                None => Answer::new(404),
            },
            (["chall", _, _], Some(payload)) => match index(1).filter(|&i| i < self.authzs.len()) {
                Some(i) if *payload == json!({}) => self.respond_challenge(i, parts[2]),
                Some(_) => problem(400, "malformed", "challenge initiation POST JWS body was not \"{}\""),
                None => Answer::new(404),
            },
            (["finalize", _], Some(payload)) => match index(1).filter(|&i| i < self.orders.len()) {
                Some(i) => self.finalize(i, payload),
                None => Answer::new(404),
            },
            (["cert", _], None) => self.certificate(index(1), false),
            (["cert", _, "alt", "1"], None) => self.certificate(index(1), true),
            (["revoke-cert"], Some(payload)) => {
                let certificate = payload["certificate"].as_str().unwrap_or("").to_string();
                if self.revoked.iter().any(|(c, _)| *c == certificate) {
                    return problem(400, "alreadyRevoked", "Certificate has already been revoked.");
                }
                self.revoked.push((certificate, payload["reason"].as_u64()));
                Answer::ok()
            }
            _ => problem(405, "malformed", "method or payload not allowed here"),
        }
    }

    fn new_account(&mut self, post: &Post, payload: &Value) -> Answer {
        let jwk = post.header["jwk"].clone();
        if let Some(account) = self.accounts.iter().find(|a| a.jwk == jwk) {
            return Answer::json(200, &json!({"status": "valid"})).header("Location", account.url.clone());
        }
        if payload["termsOfServiceAgreed"] != json!(true) {
            return problem(
                403,
                "userActionRequired",
                "Provided account did not agree to the terms of service",
            );
        }
        if let Some((kid, key)) = &self.require_eab {
            let eab = &payload["externalAccountBinding"];
            let (Some(protected), Some(inner), Some(signature)) = (
                eab["protected"].as_str(),
                eab["payload"].as_str(),
                eab["signature"].as_str(),
            ) else {
                return problem(
                    403,
                    "externalAccountRequired",
                    "newAccount requests must include externalAccountBinding",
                );
            };
            let header: Value = unb64(protected)
                .and_then(|h| serde_json::from_slice(&h).ok())
                .unwrap_or(Value::Null);
            if header["kid"].as_str() != Some(kid.as_str())
                || header["alg"] != "HS256"
                || header.get("nonce").is_some()
                || header["url"] != post.header["url"]
            {
                return problem(400, "malformed", "bad external account binding header");
            }
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
            mac.update(format!("{protected}.{inner}").as_bytes());
            if mac.verify_slice(&unb64(signature).unwrap_or_default()).is_err() {
                return problem(403, "unauthorized", "external account binding JWS verification error");
            }
            let bound: Value = unb64(inner)
                .and_then(|p| serde_json::from_slice(&p).ok())
                .unwrap_or(Value::Null);
            if bound != jwk {
                return problem(
                    400,
                    "badPublicKey",
                    "external account binding payload key does not match",
                );
            }
        }
        let keys = self.keys.borrow();
        let key_id = keys
            .iter()
            .find(|(_, k)| jwk_of(k) == jwk)
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        drop(keys);
        let url = Self::url(&format!("/acct/{}", self.accounts.len() + 1));
        self.accounts.push(Account {
            url: url.clone(),
            jwk,
            key_id,
        });
        Answer::json(201, &json!({"status": "valid", "contact": payload["contact"]})).header("Location", url)
    }

    fn new_order(&mut self, post: &Post, payload: &Value) -> Answer {
        if let Some(retry_after) = &self.rate_limit_new_order {
            return problem(429, "rateLimited", "too many new orders recently")
                .header("Retry-After", retry_after.clone());
        }
        let profile = payload["profile"].as_str().map(str::to_string);
        if let Some(p) = &profile
            && !self.profiles.contains(p)
        {
            return problem(
                400,
                "invalidProfile",
                &format!("Order includes unrecognized profile name {p:?}"),
            );
        }
        let identifiers: Vec<Value> = payload["identifiers"].as_array().cloned().unwrap_or_default();
        if identifiers.is_empty() {
            return problem(400, "malformed", "Order included no identifiers");
        }
        let replaces = match payload.get("replaces") {
            None => None,
            Some(_) if !self.ari => return problem(400, "malformed", "this CA does not offer renewal information"),
            Some(Value::String(id)) if self.replaced.contains(id) => {
                return problem(
                    409,
                    "alreadyReplaced",
                    &format!(
                        "cannot indicate an order replaces certificate {id:?}, which already has a replacement order"
                    ),
                );
            }
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return problem(400, "malformed", "replaces is not a string"),
        };
        let mut authorizations = Vec::new();
        for identifier in &identifiers {
            let value = identifier["value"].as_str().unwrap_or("");
            let kind = identifier["type"].as_str().unwrap_or("").to_string();
            if value.ends_with(".invalid") {
                return problem(
                    400,
                    "rejectedIdentifier",
                    &format!("Invalid identifiers requested: {value}"),
                );
            }
            let (wildcard, base) = match value.strip_prefix("*.") {
                Some(base) => (true, base),
                None => (false, value),
            };
            let id = self.authzs.len();
            let mut challenges = vec![Challenge {
                kind: "dns-01",
                token: format!("token-{id}-dns"),
                status: "pending",
                error: None,
            }];
            if !wildcard {
                challenges.insert(
                    0,
                    Challenge {
                        kind: "http-01",
                        token: format!("token-{id}-http"),
                        status: "pending",
                        error: None,
                    },
                );
            }
            if self.persist_issuers.is_some() {
                challenges.push(Challenge {
                    kind: "dns-persist-01",
                    token: String::new(),
                    status: "pending",
                    error: None,
                });
            }
            self.authzs.push(Authz {
                identifier: base.to_string(),
                kind,
                wildcard,
                status: "pending",
                challenges,
                deciding_in: 0,
            });
            authorizations.push(id);
        }
        let account = post.account.map(|i| self.accounts[i].url.clone()).unwrap_or_default();
        if let Some(id) = &replaces {
            self.replaced.insert(id.clone());
        }
        self.orders.push(Order {
            account,
            identifiers,
            authorizations,
            profile,
            replaces,
            finalized: false,
            csr: None,
            processing_left: 0,
        });
        let i = self.orders.len() - 1;
        self.order_response(i, false)
            .with_status(201)
            .header("Location", Self::url(&format!("/order/{i}")))
    }

    fn order_status(&self, i: usize) -> &'static str {
        let order = &self.orders[i];
        let statuses: Vec<&str> = order.authorizations.iter().map(|&a| self.authzs[a].status).collect();
        if statuses.contains(&"invalid") {
            "invalid"
        } else if statuses.iter().any(|s| *s != "valid") {
            "pending"
        } else if !order.finalized {
            "ready"
        } else if order.processing_left > 0 {
            "processing"
        } else {
            "valid"
        }
    }

    /// The order as JSON; a poll counts down processing.
    fn order_response(&mut self, i: usize, poll: bool) -> Answer {
        let mut status = self.order_status(i);
        if poll && status == "processing" {
            self.orders[i].processing_left -= 1;
        } else if poll {
            status = self.order_status(i);
        }
        let order = &self.orders[i];
        let mut body = json!({
            "status": status,
            "identifiers": order.identifiers,
            "authorizations": order.authorizations.iter().map(|a| Self::url(&format!("/authz/{a}"))).collect::<Vec<_>>(),
            "finalize": Self::url(&format!("/finalize/{i}")),
        });
        if let Some(profile) = &order.profile {
            body["profile"] = json!(profile);
        }
        // RFC 9773 §5: reflected in the order.
        if let Some(replaces) = &order.replaces {
            body["replaces"] = json!(replaces);
        }
        if status == "valid" {
            body["certificate"] = json!(Self::url(&format!("/cert/{i}")));
        }
        if status == "invalid" {
            body["error"] =
                json!({"type": "urn:ietf:params:acme:error:unauthorized", "detail": "an authorization failed"});
        }
        let response = Answer::json(200, &body);
        match (&self.retry_after, status) {
            (Some(r), "processing") => response.header("Retry-After", r.clone()),
            _ => response,
        }
    }

    fn authz_response(&mut self, i: usize) -> Answer {
        let mut retry = false;
        if self.authzs[i].status == "pending" && self.authzs[i].challenges.iter().any(|c| c.status == "processing") {
            if self.authzs[i].deciding_in > 0 {
                self.authzs[i].deciding_in -= 1;
                retry = true;
            } else {
                self.decide(i);
            }
        }
        let account = self.account_of(i);
        let authz = &self.authzs[i];
        let challenges: Vec<Value> = authz
            .challenges
            .iter()
            .filter(|c| authz.status == "pending" || c.status != "pending")
            .map(|c| {
                let mut v = json!({
                    "type": c.kind,
                    "url": Self::url(&format!("/chall/{i}/{}", c.kind)),
                    "token": c.token,
                    "status": c.status,
                });
                if c.kind == "dns-persist-01" {
                    // draft-ietf-acme-dns-persist-01 §3.1: no token; the issuer domain names
                    // and the account URI the record must carry.
                    if let Some(fields) = v.as_object_mut() {
                        fields.remove("token");
                    }
                    if let Some(issuers) = self.persist_issuers.clone().filter(|v| !v.is_null()) {
                        v["issuer-domain-names"] = issuers;
                    }
                    v["accounturi"] = json!(account);
                }
                if let Some(e) = &c.error {
                    v["error"] = e.clone();
                }
                v
            })
            .collect();
        let mut body = json!({
            "status": authz.status,
            "identifier": {"type": authz.kind, "value": authz.identifier},
            "challenges": challenges,
        });
        if authz.wildcard {
            body["wildcard"] = json!(true);
        }
        let response = Answer::json(200, &body);
        match (&self.retry_after, retry) {
            (Some(r), true) => response.header("Retry-After", r.clone()),
            _ => response,
        }
    }

    /// The URL of the account that ordered authorization `i`.
    fn account_of(&self, i: usize) -> String {
        let order = self.orders.iter().find(|o| o.authorizations.contains(&i));
        order.map(|o| o.account.clone()).unwrap_or_default()
    }

    /// Validates the challenge being processed against what the host presented.
    fn decide(&mut self, i: usize) {
        let account = self.account_of(i);
        let account_jwk = self.accounts.iter().find(|a| a.url == account).map(|a| a.jwk.clone());
        let thumbprint = account_jwk.as_ref().map(thumbprint).unwrap_or_default();
        let issuers: Vec<String> = match &self.persist_issuers {
            Some(Value::Array(list)) => list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let presented = self.presented.borrow();
        let authz = &mut self.authzs[i];
        let (identifier, wildcard) = (authz.identifier.clone(), authz.wildcard);
        for challenge in authz.challenges.iter_mut().filter(|c| c.status == "processing") {
            let (found, detail) = if challenge.kind == "dns-persist-01" {
                // The record stays when its handle is cleaned up: any one ever presented counts.
                let found = presented.iter().any(|p| {
                    p.kind == "dns-persist-01"
                        && p.name == identifier
                        && persist_record_valid(&p.value, &issuers, &account, wildcard)
                });
                let detail = format!("No valid TXT record found at _validation-persist.{identifier}");
                (found, detail)
            } else {
                let expected = format!("{}.{thumbprint}", challenge.token);
                let found = presented.iter().any(|p| {
                    !p.cleaned
                        && p.kind == challenge.kind
                        && p.value == expected
                        && match challenge.kind {
                            "http-01" => p.name == challenge.token,
                            _ => p.name == identifier,
                        }
                });
                let detail =
                    format!("The key authorization file from the server did not match this challenge {expected:?}");
                (found, detail)
            };
            if found && !self.fail_validation {
                challenge.status = "valid";
                authz.status = "valid";
            } else {
                challenge.status = "invalid";
                challenge.error = Some(json!({
                    "type": "urn:ietf:params:acme:error:unauthorized",
                    "detail": detail,
                    "status": 403,
                }));
                authz.status = "invalid";
            }
        }
    }

    fn respond_challenge(&mut self, i: usize, kind: &str) -> Answer {
        let validation_polls = self.validation_polls;
        let authz = &mut self.authzs[i];
        let Some(challenge) = authz.challenges.iter_mut().find(|c| c.kind == kind) else {
            return Answer::new(404);
        };
        if challenge.status != "pending" || authz.status != "pending" {
            return problem(
                400,
                "malformed",
                &format!(
                    "Cannot update challenge with status {}, only status pending",
                    challenge.status
                ),
            );
        }
        challenge.status = "processing";
        authz.deciding_in = validation_polls;
        Answer::json(
            200,
            &json!({"type": kind, "url": Self::url(&format!("/chall/{i}/{kind}")), "token": challenge.token, "status": "processing"}),
        )
        .header("Link", format!("<{}>;rel=\"up\"", Self::url(&format!("/authz/{i}"))))
    }

    fn finalize(&mut self, i: usize, payload: &Value) -> Answer {
        if self.order_status(i) != "ready" {
            return problem(403, "orderNotReady", "Order's status is not ready");
        }
        let Some(csr) = payload["csr"].as_str() else {
            return problem(400, "badCSR", "no CSR");
        };
        let processing = self.processing_polls;
        let order = &mut self.orders[i];
        order.finalized = true;
        order.csr = Some(csr.to_string());
        order.processing_left = processing;
        let response = self.order_response(i, false);
        match (&self.retry_after, processing) {
            (Some(r), 1..) => response.header("Retry-After", r.clone()),
            _ => response,
        }
    }

    fn certificate(&mut self, i: Option<usize>, alternate: bool) -> Answer {
        let Some(i) = i.filter(|&i| i < self.orders.len() && self.order_status(i) == "valid") else {
            return Answer::new(404);
        };
        let (chain, link) = if alternate {
            (CHAIN_B, Some(Self::url(&format!("/cert/{i}"))))
        } else {
            (CHAIN_A, self.alternates.then(|| Self::url(&format!("/cert/{i}/alt/1"))))
        };
        let mut response = Answer::new(200)
            .header("Content-Type", "application/pem-certificate-chain; charset=utf-8")
            .header("Link", format!("<{}>;rel=\"index\"", Self::url("/dir")))
            .body(chain);
        if let Some(link) = link {
            response = response.header("Link", format!("<{link}>;rel=\"alternate\""));
        }
        response
    }

    /// The CSR the order was finalized with.
    pub fn csr_of(&self, i: usize) -> Option<String> {
        self.orders.get(i).and_then(|o| o.csr.clone())
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    pub fn account_key_id(&self, i: usize) -> String {
        self.accounts[i].key_id.clone()
    }
}
