use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certctl_sdk::http::Method;
use certctl_sdk::testkit::{self, MockHttp, MockKv, MockResponse};
use certctl_sdk::{PluginError, Progress};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::fake_ca::{self, CHAIN_A, CHAIN_B, DIRECTORY, Seen};
use super::*;
use crate::AcmeIssuer;
use crate::account::ACCOUNT_KV_KEY;
use crate::order::{MAX_ROUNDS, Phase, order_key};

fn b64json(text: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("json")
}

/// Every POST used the nonce the previous answer handed out (the previous request is always a
/// HEAD newNonce or a POST), and carried `url` = its own URL.
fn assert_nonces_chained(log: &[Seen]) {
    for (i, seen) in log.iter().enumerate() {
        if seen.method != Method::Post {
            continue;
        }
        let previous = i.checked_sub(1).map(|p| &log[p]).expect("a request before the POST");
        assert_eq!(
            seen.protected["nonce"].as_str(),
            previous.issued_nonce.as_deref(),
            "request {i} ({}) does not use the nonce of request {}",
            seen.path,
            i - 1
        );
        assert_eq!(seen.protected["url"], format!("{}{}", fake_ca::BASE, seen.path));
    }
}

/// newAccount carries the JWK and no kid; everything else the account URL as kid and no JWK.
fn assert_jwk_then_kid(log: &[Seen], account_url: &str) {
    for seen in log.iter().filter(|s| s.method == Method::Post) {
        if seen.path == "/new-account" {
            assert!(
                seen.protected.get("jwk").is_some() && seen.protected.get("kid").is_none(),
                "{seen:?}"
            );
        } else {
            assert_eq!(seen.protected["kid"], account_url, "{seen:?}");
            assert!(seen.protected.get("jwk").is_none(), "{seen:?}");
        }
    }
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn http01_happy_path() {
    let h = Harness::new(r#", "contact": ["mailto:ops@example.com"]"#);
    let progress = h.begin(&["example.com", "www.example.com"]).expect("begin");
    let Progress::Pending { after_ms, .. } = &progress else {
        panic!("pending expected");
    };
    assert_eq!(*after_ms, 1_000);
    let state = state_of(&progress);
    assert_eq!(state.phase, Phase::Presented);
    assert_eq!(state.authorizations.len(), 2);
    assert_eq!(state.order_url, "https://ca.test/order/0");
    assert_eq!(state.account_url, "https://ca.test/acct/1");
    assert_eq!(state.csr, URL_SAFE_NO_PAD.encode(CSR));
    assert_eq!(
        paths(&[
            "GET /dir",
            "HEAD /nonce",
            "POST /new-account",
            "POST /new-order",
            "POST /authz/0",
            "POST /authz/1"
        ]),
        h.ca.paths()
    );
    // The host serves each token with the key authorization token.thumbprint.
    let jwk = h.ca.log()[2].protected["jwk"].clone();
    let presented = h.host.presented.borrow().clone();
    assert_eq!(presented.len(), 2);
    assert_eq!(presented[0].kind, "http-01");
    assert_eq!(presented[0].name, "token-0-http");
    assert_eq!(
        presented[0].value,
        format!("token-0-http.{}", fake_ca::thumbprint(&jwk))
    );

    let (chain, waits) = h.finish(progress);
    assert_eq!(chain.expect("issued"), CHAIN_A);
    assert_eq!(waits, [1_000, 1_000], "no Retry-After: a second");
    assert_eq!(
        h.ca.paths(),
        paths(&[
            "GET /dir",
            "HEAD /nonce",
            "POST /new-account",
            "POST /new-order",
            "POST /authz/0",
            "POST /authz/1",
            // resume 1: both visible; ask the CA to validate
            "HEAD /nonce",
            "POST /authz/0",
            "POST /chall/0/http-01",
            "POST /authz/1",
            "POST /chall/1/http-01",
            // resume 2: valid; finalize, issued at once
            "HEAD /nonce",
            "POST /authz/0",
            "POST /authz/1",
            "POST /order/0",
            "POST /finalize/0",
            "POST /cert/0",
        ])
    );
    let log = h.ca.log();
    assert!(log.iter().all(|s| s.status < 300), "{log:?}");
    assert_nonces_chained(&log);
    assert_jwk_then_kid(&log, "https://ca.test/acct/1");
    let new_account = &log[2];
    assert_eq!(new_account.protected["alg"], "ES256");
    assert_eq!(
        new_account.payload,
        json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.com"]})
    );
    assert_eq!(
        h.ca.order_payloads(),
        [
            json!({"identifiers": [{"type": "dns", "value": "example.com"}, {"type": "dns", "value": "www.example.com"}]})
        ]
    );
    let challenge_posts: Vec<&Seen> = log.iter().filter(|s| s.path.starts_with("/chall/")).collect();
    assert!(challenge_posts.iter().all(|s| s.payload == json!({})));
    assert!(
        log.iter()
            .filter(|s| s.path.starts_with("/authz/") || s.path.starts_with("/cert/") || s.path.starts_with("/order/"))
            .all(|s| s.payload.is_null()),
        "POST-as-GET has an empty payload"
    );
    assert_eq!(h.ca.state.borrow().csr_of(0), Some(URL_SAFE_NO_PAD.encode(CSR)));
    // Challenges cleaned up, the order forgotten, the account kept.
    assert!(h.host.all_cleaned());
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
    assert_eq!(
        h.host.kv_json(ACCOUNT_KV_KEY),
        json!({"directory_url": DIRECTORY, "key_id": "key-1", "account_url": "https://ca.test/acct/1"})
    );
    assert_eq!(h.host.generated.get(), 1);
    assert_eq!(h.ca.state.borrow().account_key_id(0), "key-1");
}

#[test]
fn dns01_happy_path_with_a_wildcard() {
    let h = Harness::new(r#", "challenge": "dns-01", "dns_solver": "pdns""#);
    h.ca.set(|ca| {
        ca.processing_polls = 1;
        ca.retry_after = Some("3".into());
    });
    let progress = h.begin(&["*.example.com", "example.com"]).expect("begin");
    let presented = h.host.presented.borrow().clone();
    let kinds: Vec<(&str, &str)> = presented.iter().map(|p| (p.kind, p.name.as_str())).collect();
    // Both under the same name: the wildcard's authorization is for example.com.
    assert_eq!(kinds, [("dns-01", "example.com"), ("dns-01", "example.com")]);
    assert_ne!(presented[0].value, presented[1].value);
    let state = state_of(&progress);
    let names: Vec<&str> = state.authorizations.iter().map(|a| a.identifier.as_str()).collect();
    assert_eq!(names, ["*.example.com", "example.com"]);

    let (chain, waits) = h.finish(progress);
    assert_eq!(chain.expect("issued"), CHAIN_A);
    assert_eq!(
        waits,
        [1_000, 1_000, 3_000, 3_000],
        "the order's Retry-After is honoured"
    );
    assert_eq!(
        h.ca.order_payloads(),
        [json!({"identifiers": [{"type": "dns", "value": "*.example.com"}, {"type": "dns", "value": "example.com"}]})]
    );
    assert!(
        h.ca.paths().contains(&"POST /chall/0/dns-01".to_string())
            && h.ca.paths().contains(&"POST /chall/1/dns-01".to_string())
    );
    assert_eq!(h.ca.paths().last().map(String::as_str), Some("POST /cert/0"));
    assert_nonces_chained(&h.ca.log());
    assert!(h.host.all_cleaned());
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
}

#[test]
fn the_fake_ca_refuses_bad_signatures() {
    // The happy paths pass because the signatures verify, not because nothing is checked.
    let h = Harness::new("");
    h.host.corrupt_signatures.set(true);
    let e = h.begin(&["example.com"]).expect_err("refused");
    assert_eq!(
        e,
        PluginError::Permanent("the CA refused newAccount (HTTP 400, malformed): JWS verification error".into())
    );
}

#[test]
fn rs256_accounts_sign_with_rsa() {
    let h = Harness::new(r#", "account_key": "rsa-2048""#);
    assert_eq!(h.issue(&["192.0.2.10"]).expect("issued"), CHAIN_A);
    let log = h.ca.log();
    assert_eq!(log[2].protected["alg"], "RS256");
    assert_eq!(log[2].protected["jwk"]["kty"], "RSA");
    assert!(
        log.iter()
            .filter(|s| s.method == Method::Post)
            .all(|s| s.protected["alg"] == "RS256")
    );
    assert_eq!(
        h.ca.order_payloads()[0]["identifiers"],
        json!([{"type": "ip", "value": "192.0.2.10"}])
    );
    assert_nonces_chained(&log);
}

#[test]
fn the_account_is_reused_and_a_new_directory_gets_a_new_one() {
    let mut h = Harness::new("");
    h.issue(&["example.com"]).expect("first");
    let before = h.ca.log().len();
    h.issue(&["example.com"]).expect("second");
    let second: Vec<String> = h.ca.paths()[before..].to_vec();
    assert!(!second.contains(&"POST /new-account".to_string()), "{second:?}");
    assert_eq!(&second[..3], ["GET /dir", "HEAD /nonce", "POST /new-order"]);
    assert_eq!((h.host.generated.get(), h.ca.accounts()), (1, 1));

    // Another directory URL: a new key and a new account.
    h.config = parse_config(&format!(r#"{{"directory_url": "{DIRECTORY}?v=2"}}"#)).expect("config");
    h.issue(&["example.com"]).expect("third");
    assert_eq!((h.host.generated.get(), h.ca.accounts()), (2, 2));
    assert_eq!(
        h.host.kv_json(ACCOUNT_KV_KEY),
        json!({"directory_url": format!("{DIRECTORY}?v=2"), "key_id": "key-2", "account_url": "https://ca.test/acct/2"})
    );
}

#[test]
fn a_bad_nonce_is_retried_with_the_fresh_one() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    h.ca.set(|ca| ca.reject_nonces = 2);
    let progress = h.resume(&state_bytes(&progress)).expect("resumed after two badNonce");
    let log = h.ca.log();
    let tail: Vec<(String, u16)> = log[5..].iter().map(|s| (s.path.clone(), s.status)).collect();
    assert_eq!(
        tail,
        [
            ("/nonce".to_string(), 200),
            ("/authz/0".to_string(), 400),
            ("/authz/0".to_string(), 400),
            ("/authz/0".to_string(), 200),
            ("/chall/0/http-01".to_string(), 200)
        ]
    );
    // Each retry used the nonce of the badNonce answer before it.
    assert_nonces_chained(&log);
    assert!(
        testkit::logs()
            .iter()
            .any(|l| l.message.contains("refused the nonce of authorization"))
    );
    assert_eq!(h.finish(progress).0.expect("issued"), CHAIN_A);

    // A third refusal in a row gives up, as a temporary failure.
    drop(h);
    let h = Harness::new("");
    h.ca.set(|ca| ca.reject_nonces = 3);
    let e = h.begin(&["example.com"]).expect_err("badNonce thrice");
    assert!(
        matches!(&e, PluginError::Transient(m) if m.contains("badNonce") && m.contains("newAccount")),
        "{e:?}"
    );
    let attempts = h.ca.paths().iter().filter(|p| *p == "POST /new-account").count();
    assert_eq!(attempts, 3);
}

#[test]
fn rate_limits_carry_retry_after() {
    let h = Harness::new("");
    h.ca.set(|ca| ca.rate_limit_new_order = Some("120".into()));
    assert_eq!(h.begin(&["example.com"]), Err(PluginError::RateLimited(Some(120))));
    assert!(
        testkit::logs()
            .iter()
            .any(|l| l.message.contains("rateLimited") && l.message.contains("too many new orders recently"))
    );
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY], "no order remembered");

    // An HTTP date: seconds from now (the fake host's clock).
    h.ca.set(|ca| ca.rate_limit_new_order = Some("Thu, 01 Jan 2026 00:10:00 GMT".into()));
    assert_eq!(h.begin(&["example.com"]), Err(PluginError::RateLimited(Some(600))));
}

#[test]
fn an_invalid_authorization_fails_with_the_detail_and_cleans_up() {
    let h = Harness::new("");
    h.ca.set(|ca| ca.fail_validation = true);
    let progress = h.begin(&["example.com", "www.example.com"]).expect("begin");
    assert!(h.host.kv.borrow().contains_key(&order_key(CSR)));
    let (result, _) = h.finish(progress);
    let e = result.expect_err("invalid");
    let PluginError::Permanent(message) = &e else {
        panic!("permanent expected, got {e:?}");
    };
    assert!(
        message.starts_with("the CA could not validate example.com: http-01: unauthorized: The key authorization file"),
        "{message}"
    );
    assert!(h.host.all_cleaned(), "{:?}", h.host.presented.borrow());
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY], "the order is forgotten");
    assert!(!h.ca.paths().iter().any(|p| p.starts_with("POST /finalize")));
}

#[test]
fn a_wrong_key_authorization_is_what_the_ca_rejects() {
    // The fake CA validates against what the host presented: a different account key's
    // thumbprint does not validate (the happy paths prove the right one does).
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    h.host.presented.borrow_mut()[0].value.push('x');
    let e = h.finish(progress).0.expect_err("mismatch");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.contains("did not match")),
        "{e:?}"
    );
    assert!(h.host.all_cleaned());
}

#[test]
fn not_ready_challenges_wait_without_calling_the_ca() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    h.host.not_ready.set(2);
    let sent = h.mock.requests().len();
    let again = h.resume(&state_bytes(&progress)).expect("pending");
    let again = h.resume(&state_bytes(&again)).expect("pending");
    assert_eq!(
        h.mock.requests().len(),
        sent,
        "no request while the host cannot see the challenge"
    );
    let state = state_of(&again);
    assert_eq!((state.phase, state.rounds), (Phase::Presented, 2));
    assert!(!state.authorizations[0].ready);
    assert_eq!(h.finish(again).0.expect("issued"), CHAIN_A);
    assert_eq!(h.host.ready_calls.get(), 3);
}

#[test]
fn giving_up_after_max_rounds_cleans_up() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    let mut state = state_of(&progress);
    state.rounds = MAX_ROUNDS;
    h.host.not_ready.set(1);
    let e = h
        .resume(&serde_json::to_vec(&state).expect("json"))
        .expect_err("gave up");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.contains("never became visible")),
        "{e:?}"
    );
    assert!(h.host.all_cleaned());
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
}

#[test]
fn a_repeated_begin_continues_the_same_order() {
    let h = Harness::new("");
    // The host crashed after begin, before saving the pending state: begin runs again.
    let lost = h.begin(&["example.com"]).expect("begin");
    assert_eq!(
        String::from_utf8(h.host.kv.borrow()[&order_key(CSR)].clone()).expect("url"),
        "https://ca.test/order/0"
    );
    let before = h.ca.log().len();
    let progress = h.begin(&["example.com"]).expect("begin again");
    assert_eq!(
        h.ca.paths()[before..],
        paths(&["GET /dir", "HEAD /nonce", "POST /order/0", "POST /authz/0"])
    );
    assert_eq!(state_of(&progress).order_url, state_of(&lost).order_url);
    assert_eq!(h.ca.state.borrow().order_count(), 1);
    assert_eq!(h.finish(progress).0.expect("issued"), CHAIN_A);
    // The first presentation was not cleaned by the plugin (its handle was lost with the
    // state; the host sweeps it); the second was.
    let cleaned: Vec<bool> = h.host.presented.borrow().iter().map(|p| p.cleaned).collect();
    assert_eq!(cleaned, [false, true]);
    assert_eq!(h.host.kv_keys(), [ACCOUNT_KV_KEY]);
}

#[test]
fn a_begin_repeated_after_validation_started_does_not_post_the_challenge_again() {
    let h = Harness::new("");
    h.ca.set(|ca| ca.validation_polls = 1);
    let progress = h.begin(&["example.com"]).expect("begin");
    // Crash after the CA was asked to validate.
    h.resume(&state_bytes(&progress)).expect("responded");
    let before = h.ca.log().len();
    let progress = h.begin(&["example.com"]).expect("begin again");
    let state = state_of(&progress);
    assert!(state.authorizations[0].responded, "the challenge is processing already");
    let (chain, _) = h.finish(progress);
    assert_eq!(chain.expect("issued"), CHAIN_A);
    let after: Vec<String> = h.ca.paths()[before..].to_vec();
    assert!(!after.iter().any(|p| p.starts_with("POST /chall/")), "{after:?}");
    assert!(h.ca.log().iter().all(|s| s.status < 300));
}

#[test]
fn a_resume_repeated_after_a_transient_failure_does_not_post_the_challenge_again() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com", "www.example.com"]).expect("begin");
    let state = state_bytes(&progress);
    // The second challenge POST gets no answer: the host retries the same state later.
    h.mock
        .expect(Method::Post, "https://ca.test/chall/1/http-01")
        .respond(MockResponse::connection_refused());
    let e = h.resume(&state).expect_err("no answer");
    assert!(e.is_retryable(), "{e:?}");
    assert!(!h.host.all_cleaned(), "transient: the challenges stay for the retry");
    assert!(h.host.kv.borrow().contains_key(&order_key(CSR)));
    let progress = h.resume(&state).expect("retried");
    assert_eq!(h.finish(progress).0.expect("issued"), CHAIN_A);
    let posts = h.ca.paths().iter().filter(|p| *p == "POST /chall/0/http-01").count();
    assert_eq!(posts, 1, "the first challenge was not posted twice");
    assert!(h.ca.log().iter().all(|s| s.status < 300));
}

#[test]
fn a_remembered_order_the_ca_forgot_is_replaced() {
    let h = Harness::new("");
    h.host.kv_set(&order_key(CSR), b"https://ca.test/order/99").expect("kv");
    let progress = h.begin(&["example.com"]).expect("begin");
    assert_eq!(state_of(&progress).order_url, "https://ca.test/order/0");
    assert!(h.ca.paths().contains(&"POST /order/99".to_string()));
    assert!(h.ca.paths().contains(&"POST /new-order".to_string()));
}

#[test]
fn external_account_binding() {
    let key = b"eab-mac-key-0123456789".to_vec();
    let encoded = URL_SAFE_NO_PAD.encode(&key);
    let h = Harness::new(&format!(r#", "eab_kid": "kid-7", "eab_hmac_key": "{encoded}""#));
    h.ca.set(|ca| ca.require_eab = Some(("kid-7".into(), key.clone())));
    assert_eq!(h.issue(&["example.com"]).expect("issued"), CHAIN_A);
    let new_account =
        h.ca.log()
            .into_iter()
            .find(|s| s.path == "/new-account")
            .expect("newAccount");
    let eab = &new_account.payload["externalAccountBinding"];
    let protected = b64json(eab["protected"].as_str().expect("protected"));
    assert_eq!(
        protected,
        json!({"alg": "HS256", "kid": "kid-7", "url": "https://ca.test/new-account"})
    );
    assert!(protected.get("nonce").is_none());
    assert_eq!(
        b64json(eab["payload"].as_str().expect("payload")),
        new_account.protected["jwk"]
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(
        format!(
            "{}.{}",
            eab["protected"].as_str().expect("p"),
            eab["payload"].as_str().expect("p")
        )
        .as_bytes(),
    );
    mac.verify_slice(
        &URL_SAFE_NO_PAD
            .decode(eab["signature"].as_str().expect("sig"))
            .expect("b64"),
    )
    .expect("the MAC verifies");

    // Without the credentials: refused before anything is created.
    drop(h);
    let h = Harness::new("");
    h.ca.set(|ca| ca.require_eab = Some(("kid-7".into(), key.clone())));
    let e = h.begin(&["example.com"]).expect_err("eab needed");
    assert!(
        matches!(&e, PluginError::InvalidConfig(m) if m.starts_with("config.eab_kid: the CA requires External Account Binding"))
    );
    assert_eq!(h.host.generated.get(), 0);
    assert_eq!(h.ca.paths(), ["GET /dir"]);

    // A wrong MAC key: the CA's refusal is an authentication failure.
    drop(h);
    let h = Harness::new(&format!(
        r#", "eab_kid": "kid-7", "eab_hmac_key": "{}""#,
        URL_SAFE_NO_PAD.encode(b"wrong")
    ));
    h.ca.set(|ca| ca.require_eab = Some(("kid-7".into(), key)));
    let e = h.begin(&["example.com"]).expect_err("bad mac");
    assert!(
        matches!(&e, PluginError::Auth(m) if m.contains("external account binding")),
        "{e:?}"
    );
    // The key stays, remembered for the next attempt.
    assert_eq!(
        h.host.kv_json(ACCOUNT_KV_KEY),
        json!({"directory_url": DIRECTORY, "key_id": "key-1", "account_url": null})
    );
}

#[test]
fn the_preferred_chain_is_chosen_by_the_top_issuer() {
    let h = Harness::new(r#", "preferred_chain": "Fake Root B""#);
    h.ca.set(|ca| ca.alternates = true);
    assert_eq!(h.issue(&["example.com"]).expect("issued"), CHAIN_B);
    assert_eq!(
        h.ca.paths()[h.ca.paths().len() - 2..],
        paths(&["POST /cert/0", "POST /cert/0/alt/1"])
    );

    drop(h);
    let h = Harness::new(r#", "preferred_chain": "Fake Root A""#);
    h.ca.set(|ca| ca.alternates = true);
    assert_eq!(h.issue(&["example.com"]).expect("issued"), CHAIN_A);
    assert!(
        !h.ca.paths().iter().any(|p| p.contains("/alt/")),
        "the default matches: no alternate fetched"
    );

    drop(h);
    let h = Harness::new(r#", "preferred_chain": "Some Other Root""#);
    h.ca.set(|ca| ca.alternates = true);
    assert_eq!(h.issue(&["example.com"]).expect("issued"), CHAIN_A);
    assert!(
        testkit::logs()
            .iter()
            .any(|l| l.message.contains("offered: Fake Root A, Fake Root B"))
    );
    let accept = h
        .mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/cert/0")
        .expect("cert");
    assert_eq!(accept.header("accept"), Some("application/pem-certificate-chain"));
}

#[test]
fn profiles_must_be_offered() {
    let h = Harness::new(r#", "profile": "shortlived""#);
    h.ca.set(|ca| ca.profiles = vec!["classic".into(), "shortlived".into()]);
    h.issue(&["example.com"]).expect("issued");
    assert_eq!(h.ca.order_payloads()[0]["profile"], "shortlived");

    drop(h);
    let h = Harness::new(r#", "profile": "tlsserver""#);
    h.ca.set(|ca| ca.profiles = vec!["classic".into(), "shortlived".into()]);
    assert_eq!(
        h.begin(&["example.com"]),
        Err(PluginError::InvalidConfig(
            "config.profile: the CA does not offer the profile \"tlsserver\" (known profiles: classic, shortlived)"
                .into()
        ))
    );
    assert_eq!(h.ca.paths(), ["GET /dir"], "nothing created");

    drop(h);
    let h = Harness::new(r#", "profile": "classic""#);
    let e = h.begin(&["example.com"]).expect_err("no profiles");
    assert!(
        matches!(&e, PluginError::InvalidConfig(m) if m.ends_with("(the CA offers no profiles)")),
        "{e:?}"
    );

    // The request's profile wins over the configured one.
    drop(h);
    let h = Harness::new(r#", "profile": "classic""#);
    h.ca.set(|ca| ca.profiles = vec!["classic".into(), "shortlived".into()]);
    let mut req = request(&["example.com"]);
    req.profile = Some("shortlived".into());
    crate::order::begin(&h.host, &h.config, &req).expect("begin");
    assert_eq!(h.ca.order_payloads()[0]["profile"], "shortlived");
    req.profile = Some("nope".into());
    let e = crate::order::begin(&h.host, &h.config, &req).expect_err("unknown");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.contains("\"nope\"")),
        "{e:?}"
    );
}

#[test]
fn the_cas_refusals_of_an_order_are_permanent_with_the_detail() {
    let h = Harness::new("");
    let e = h.begin(&["bad.invalid"]).expect_err("refused");
    assert_eq!(
        e,
        PluginError::Permanent(
            "the CA refused newOrder (HTTP 400, rejectedIdentifier): Invalid identifiers requested: bad.invalid".into()
        )
    );
}

#[test]
fn an_account_the_ca_forgot_is_registered_again_with_the_same_key() {
    let h = Harness::new("");
    h.issue(&["example.com"]).expect("issued");
    h.ca.forget_accounts();
    let e = h.begin(&["example.com"]).expect_err("unknown account");
    assert!(
        matches!(&e, PluginError::Auth(m) if m.contains("accountDoesNotExist") && m.contains("registers the account again")),
        "{e:?}"
    );
    assert_eq!(
        h.host.kv_json(ACCOUNT_KV_KEY),
        json!({"directory_url": DIRECTORY, "key_id": "key-1", "account_url": null})
    );
    h.issue(&["example.com"]).expect("issued with a new account");
    assert_eq!(h.host.generated.get(), 1, "same key");
    assert_eq!(h.host.kv_json(ACCOUNT_KV_KEY)["account_url"], "https://ca.test/acct/1");
}

#[test]
fn revocation_uses_the_account() {
    let h = Harness::new("");
    let chain = h.issue(&["example.com"]).expect("issued");
    crate::revoke::revoke(&h.host, &h.config, &chain, 4).expect("revoked");
    let leaf = crate::der::pem_blocks(&chain, "CERTIFICATE").expect("pem").remove(0);
    let revoked = h.ca.state.borrow().revoked.clone();
    assert_eq!(revoked, [(URL_SAFE_NO_PAD.encode(&leaf), Some(4))]);
    let post =
        h.ca.log()
            .into_iter()
            .find(|s| s.path == "/revoke-cert")
            .expect("revokeCert");
    assert_eq!(post.protected["kid"], "https://ca.test/acct/1");
    // Revoked already: done.
    crate::revoke::revoke(&h.host, &h.config, &chain, 4).expect("revoked already");
    assert_nonces_chained(&h.ca.log());

    // Reason 0 (unspecified) is sent as no reason.
    drop(h);
    let h = Harness::new("");
    let chain = h.issue(&["example.com"]).expect("issued");
    crate::revoke::revoke(&h.host, &h.config, &chain, 0).expect("revoked");
    assert_eq!(h.ca.state.borrow().revoked[0].1, None);

    // No account at this directory: nothing to sign with.
    drop(h);
    let h = Harness::new("");
    let e = crate::revoke::revoke(&h.host, &h.config, CHAIN_A, 1).expect_err("no account");
    assert!(matches!(e, PluginError::NotFound(_)), "{e:?}");
    assert_eq!(h.host.generated.get(), 0);
    let e = crate::revoke::revoke(&h.host, &h.config, "not pem", 1).expect_err("no pem");
    assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
}

#[test]
fn network_failures_are_transient_and_keep_the_order() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    h.mock
        .expect(Method::Head, "https://ca.test/nonce")
        .respond(MockResponse::connection_refused());
    let e = h.resume(&state_bytes(&progress)).expect_err("refused");
    assert_eq!(
        e,
        PluginError::Transient("HEAD https://ca.test: connection refused".into())
    );
    assert!(!h.host.all_cleaned());
    assert!(h.host.kv.borrow().contains_key(&order_key(CSR)));
    // A 503 is transient too.
    h.mock
        .expect(Method::Get, DIRECTORY)
        .respond(MockResponse::new(503).body("down for maintenance"));
    let e = h.begin(&["example.com"]).expect_err("503");
    assert!(
        matches!(&e, PluginError::Transient(m) if m.contains("down for maintenance")),
        "{e:?}"
    );
}

#[test]
fn a_wrong_directory_url_is_a_configuration_error() {
    let h = Harness::new("");
    h.mock.expect(Method::Get, DIRECTORY).respond(MockResponse::new(404));
    let e = h.begin(&["example.com"]).expect_err("404");
    assert!(
        matches!(&e, PluginError::InvalidConfig(m) if m.starts_with("config.directory_url:")),
        "{e:?}"
    );
    h.mock
        .expect(Method::Get, DIRECTORY)
        .respond(MockResponse::json(200, &json!({"hello": "world"})));
    let e = h.begin(&["example.com"]).expect_err("not a directory");
    assert!(
        matches!(&e, PluginError::InvalidConfig(m) if m.contains("not an ACME directory")),
        "{e:?}"
    );
}

#[test]
fn unreadable_states_are_refused() {
    let h = Harness::new("");
    assert!(matches!(h.resume(b"{}"), Err(PluginError::Permanent(_))));
    let progress = h.begin(&["example.com"]).expect("begin");
    let mut state: Value = serde_json::from_slice(&state_bytes(&progress)).expect("json");
    state["version"] = json!(9);
    let e = h
        .resume(&serde_json::to_vec(&state).expect("json"))
        .expect_err("version");
    assert!(
        matches!(&e, PluginError::Permanent(m) if m.contains("state version 9")),
        "{e:?}"
    );
}

#[test]
fn the_state_is_json_with_what_resume_needs() {
    let h = Harness::new("");
    let progress = h.begin(&["example.com"]).expect("begin");
    let state: Value = serde_json::from_slice(&state_bytes(&progress)).expect("json");
    assert_eq!(
        state,
        json!({
            "version": 1,
            "new_nonce": "https://ca.test/nonce",
            "key_id": "key-1",
            "account_url": "https://ca.test/acct/1",
            "order_url": "https://ca.test/order/0",
            "order_key": order_key(CSR),
            "csr": URL_SAFE_NO_PAD.encode(CSR),
            "challenge": "http-01",
            "phase": "presented",
            "authorizations": [{
                "url": "https://ca.test/authz/0",
                "identifier": "example.com",
                "challenge_url": "https://ca.test/chall/0/http-01",
                "handle": 1,
                "ready": false,
                "responded": false
            }],
            "rounds": 0
        })
    );
}

// Through the export glue, as the host calls the plugin.

const CONFIG: &str = r#"{"directory_url": "https://acme.example.test/directory"}"#;

#[test]
fn check_request_has_no_side_effects() {
    let mock = MockHttp::install();
    let store = MockKv::install();
    let issuer = testkit::issuer::<AcmeIssuer>(CONFIG);
    issuer
        .check_request(&request(&["example.com", "192.0.2.1", "2001:db8::1"]))
        .expect("accepted");
    assert_eq!(
        issuer.check_request(&request(&["*.example.com"])),
        Err(PluginError::Permanent(
            "*.example.com: wildcards need dns-01 or dns-persist-01 (this issuer is configured for http-01)".into()
        ))
    );
    let dns = testkit::issuer::<AcmeIssuer>(
        r#"{"directory_url": "https://acme.example.test/directory", "challenge": "dns-01", "dns_solver": "pdns"}"#,
    );
    dns.check_request(&request(&["*.example.com", "example.com"]))
        .expect("wildcards with dns-01");
    assert!(matches!(
        dns.check_request(&request(&["192.0.2.1"])),
        Err(PluginError::Permanent(_))
    ));
    assert!(matches!(
        issuer.check_request(&request(&["ops@example.com"])),
        Err(PluginError::Permanent(_))
    ));
    assert!(mock.requests().is_empty(), "no network");
    assert!(store.entries().is_empty(), "no kv writes");
}

#[test]
fn validate_config_names_the_key() {
    assert_eq!(testkit::issuer::<AcmeIssuer>(CONFIG).validate_config(), Ok(()));
    assert_eq!(
        testkit::issuer::<AcmeIssuer>("{}").validate_config(),
        Err(PluginError::InvalidConfig("config.directory_url: required".into()))
    );
    assert_eq!(
        testkit::issuer::<AcmeIssuer>(
            r#"{"directory_url": "https://acme.example.test/directory", "challenge": "dns-01"}"#
        )
        .validate_config()
        .map_err(|e| e.to_string().split(':').take(2).collect::<Vec<_>>().join(":")),
        Err("invalid configuration: config.dns_solver".into())
    );
    // Every call checks the configuration first.
    let issuer = testkit::issuer::<AcmeIssuer>(r#"{"directory_url": "http://acme.example.test/"}"#);
    assert!(matches!(
        issuer.begin(&request(&["example.com"])),
        Err(PluginError::InvalidConfig(_))
    ));
}
