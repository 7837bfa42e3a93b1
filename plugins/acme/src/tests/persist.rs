//! dns-persist-01 (draft-ietf-acme-dns-persist-01): authorizations offering the challenge with
//! its `issuer-domain-names` (a wildcard one among them) against the fake CA, which validates
//! the `_validation-persist` record the fake host published, and the CA's malformed challenges.

use certctl_sdk::PluginError;
use certctl_sdk::testkit::{self, MockHttp, MockKv};
use serde_json::{Value, json};

use super::*;
use crate::AcmeIssuer;
use crate::account::ACCOUNT_KV_KEY;
use crate::config::ChallengeType;
use crate::order::{MAX_ROUNDS, order_key};

const CONFIG: &str = r#", "challenge": "dns-persist-01""#;
const ACCOUNT: &str = "https://ca.test/acct/1";

/// A harness for dns-persist-01 whose CA offers the challenge with `issuers` as its
/// `issuer-domain-names`.
fn harness(issuers: Value) -> Harness {
    let h = Harness::new(CONFIG);
    h.ca.set(|ca| ca.persist_issuers = Some(issuers));
    h
}

fn call(identifier: &str, wildcard: bool) -> PersistCall {
    PersistCall {
        identifier: identifier.into(),
        issuer_domain_names: vec!["authority.example".into(), "ca.example.net".into()],
        account_uri: ACCOUNT.into(),
        wildcard,
    }
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dns_persist_01_with_a_wildcard() {
    let h = harness(json!(["authority.example", "ca.example.net"]));
    let progress = h
        .begin(&["*.example.com", "example.com", "www.example.com"])
        .expect("begin");
    // The wildcard's authorization is for example.com, flagged `wildcard`.
    assert_eq!(
        *h.host.persist_calls.borrow(),
        [
            call("example.com", true),
            call("example.com", false),
            call("www.example.com", false)
        ]
    );
    let values: Vec<(String, String)> = h
        .host
        .presented
        .borrow()
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    assert_eq!(
        values,
        [
            (
                "example.com".to_string(),
                format!("authority.example; accounturi={ACCOUNT}; policy=wildcard")
            ),
            (
                "example.com".to_string(),
                format!("authority.example; accounturi={ACCOUNT}")
            ),
            (
                "www.example.com".to_string(),
                format!("authority.example; accounturi={ACCOUNT}")
            ),
        ]
    );
    let state = state_of(&progress);
    assert_eq!(state.challenge, ChallengeType::DnsPersist01);
    let challenges: Vec<&str> = state.authorizations.iter().map(|a| a.challenge_url.as_str()).collect();
    assert_eq!(
        challenges,
        [
            "https://ca.test/chall/0/dns-persist-01",
            "https://ca.test/chall/1/dns-persist-01",
            "https://ca.test/chall/2/dns-persist-01"
        ]
    );
    let names: Vec<&str> = state.authorizations.iter().map(|a| a.identifier.as_str()).collect();
    assert_eq!(names, ["*.example.com", "example.com", "www.example.com"]);

    let (chain, waits) = h.finish(progress);
    assert_eq!(chain.expect("issued"), fake_ca::CHAIN_A);
    assert_eq!(waits, [1_000, 1_000]);
    assert_eq!(
        h.ca.paths(),
        paths(&[
            "GET /dir",
            "HEAD /nonce",
            "POST /new-account",
            "POST /new-order",
            "POST /authz/0",
            "POST /authz/1",
            "POST /authz/2",
            // resume 1: visible; ask the CA to validate each
            "HEAD /nonce",
            "POST /authz/0",
            "POST /chall/0/dns-persist-01",
            "POST /authz/1",
            "POST /chall/1/dns-persist-01",
            "POST /authz/2",
            "POST /chall/2/dns-persist-01",
            // resume 2: valid; finalize
            "HEAD /nonce",
            "POST /authz/0",
            "POST /authz/1",
            "POST /authz/2",
            "POST /order/0",
            "POST /finalize/0",
            "POST /cert/0",
        ])
    );
    let log = h.ca.log();
    assert!(log.iter().all(|s| s.status < 300), "{log:?}");
    assert!(
        log.iter()
            .filter(|s| s.path.starts_with("/chall/"))
            .all(|s| s.payload == json!({}))
    );
    // The handles are closed (the host keeps the records), the order forgotten.
    assert!(h.host.all_cleaned());
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
}

#[test]
fn the_ca_checks_the_record() {
    // The fake CA validates what the host published: without policy=wildcard the wildcard's
    // record does not do (the happy path proves that the right record does).
    let h = harness(json!(["authority.example", "ca.example.net"]));
    let progress = h.begin(&["*.example.com"]).expect("begin");
    h.host.presented.borrow_mut()[0].value = format!("authority.example; accounturi={ACCOUNT}");
    let e = h.finish(progress).0.expect_err("invalid");
    assert_eq!(
        e,
        PluginError::Permanent(
            "the CA could not validate *.example.com: dns-persist-01: unauthorized: No valid TXT record found at \
             _validation-persist.example.com"
                .into()
        )
    );
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY], "the order is forgotten");
}

#[test]
fn a_ca_without_dns_persist_01_is_refused_with_what_it_offers() {
    let h = Harness::new(CONFIG);
    let e = h.begin(&["example.com"]).expect_err("not offered");
    assert_eq!(
        e,
        PluginError::Permanent(
            "the CA offers no dns-persist-01 challenge for example.com (it offers http-01, dns-01)".into()
        )
    );
    assert!(h.host.persist_calls.borrow().is_empty());
    assert!(
        !h.host.kv.borrow().contains_key(&order_key(CSR)),
        "the order is forgotten"
    );

    drop(h);
    let h = Harness::new(CONFIG);
    let e = h.begin(&["*.example.com"]).expect_err("not offered");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.ends_with("for *.example.com (it offers dns-01)")),
        "{e:?}"
    );
}

#[test]
fn malformed_issuer_domain_names_are_the_cas_error() {
    let eleven: Vec<String> = (0..11).map(|i| format!("ca{i}.example")).collect();
    for (issuers, why) in [
        (Value::Null, "it has no issuer-domain-names"),
        (json!([]), "issuer-domain-names is empty"),
        (json!(eleven), "issuer-domain-names has 11 entries"),
        (
            json!("authority.example"),
            "issuer-domain-names is \"authority.example\", not an array",
        ),
        (
            json!(["authority.example", 42]),
            "issuer-domain-names holds 42, not a string",
        ),
        (
            json!(["authority.example."]),
            "\"authority.example.\" in issuer-domain-names is not a domain name (A-labels, no trailing dot)",
        ),
        (
            json!(["bücher.example"]),
            "\"bücher.example\" in issuer-domain-names is not a domain name (A-labels, no trailing dot)",
        ),
        (
            json!([""]),
            "\"\" in issuer-domain-names is not a domain name (A-labels, no trailing dot)",
        ),
    ] {
        let h = harness(issuers);
        let e = h.begin(&["example.com"]).expect_err("malformed");
        assert_eq!(
            e,
            PluginError::Permanent(format!(
                "the CA's dns-persist-01 challenge for example.com is malformed: {why} \
                 (draft-ietf-acme-dns-persist-01 asks for 1 to 10 issuer domain names)"
            ))
        );
        assert!(h.host.persist_calls.borrow().is_empty(), "nothing presented");
        assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
    }
}

#[test]
fn issuer_domain_names_are_lowercased() {
    let ten: Vec<String> = (0..10).map(|i| format!("CA{i}.Example")).collect();
    let h = harness(json!(ten));
    h.begin(&["example.com"]).expect("ten names are allowed");
    let expected: Vec<String> = (0..10).map(|i| format!("ca{i}.example")).collect();
    assert_eq!(h.host.persist_calls.borrow()[0].issuer_domain_names, expected);
}

#[test]
fn a_record_awaiting_approval_is_waited_for_without_calling_the_ca() {
    let h = harness(json!(["authority.example"]));
    let progress = h.begin(&["example.com"]).expect("begin");
    h.host.not_ready.set(2);
    let sent = h.mock.requests().len();
    let again = h.resume(&state_bytes(&progress)).expect("pending");
    let again = h.resume(&state_bytes(&again)).expect("pending");
    assert_eq!(
        h.mock.requests().len(),
        sent,
        "no request while the record is not there"
    );
    assert!(
        testkit::logs()
            .iter()
            .any(|l| l.message.contains("waits for the operator's approval"))
    );
    assert_eq!(h.finish(again).0.expect("issued"), fake_ca::CHAIN_A);

    // Never approved: the plugin gives up, saying what to check.
    drop(h);
    let h = harness(json!(["authority.example"]));
    let progress = h.begin(&["example.com"]).expect("begin");
    let mut state = state_of(&progress);
    state.rounds = MAX_ROUNDS;
    h.host.not_ready.set(1);
    let e = h
        .resume(&serde_json::to_vec(&state).expect("json"))
        .expect_err("gave up");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.contains("_validation-persist records never became visible")),
        "{e:?}"
    );
}

#[test]
fn check_request_with_dns_persist_01() {
    let mock = MockHttp::install();
    let store = MockKv::install();
    let issuer = testkit::issuer::<AcmeIssuer>(
        r#"{"directory_url": "https://acme.example.test/directory", "challenge": "dns-persist-01"}"#,
    );
    assert_eq!(issuer.validate_config(), Ok(()), "no dns_solver needed");
    issuer
        .check_request(&request(&["*.example.com", "example.com"]))
        .expect("wildcards");
    assert_eq!(
        issuer.check_request(&request(&["192.0.2.1"])),
        Err(PluginError::Permanent(
            "192.0.2.1: IP addresses cannot be validated with dns-persist-01 (RFC 8738); use challenge http-01".into()
        ))
    );
    assert!(mock.requests().is_empty() && store.entries().is_empty());
}
