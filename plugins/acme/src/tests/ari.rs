//! ACME Renewal Information (RFC 9773): the renewal window of a certificate, replayed from the
//! RFC's own example exchange, and `replaces` on a renewal's newOrder against the fake CA.

use certctl_sdk::http::Method;
use certctl_sdk::testkit::{self, MockResponse};
use certctl_sdk::{IssueRequest, Issuer, PluginError, Progress, RenewalWindow};
use serde_json::{Value, json};

use super::fake_ca::{CHAIN_A, DIRECTORY};
use super::*;
use crate::AcmeIssuer;
use crate::renewal::{certificate_id, renewal_info};

/// RFC 9773 §4.1: the unique identifier of the example certificate (Appendix A).
const RFC_ID: &str = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
const RFC_URL: &str = "https://ca.test/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
/// The leaf of CHAIN_A: AKI keyIdentifier A1:74:07:99:71:EB:0F:82:45:0E:06:01:FC:D4:98:05:F5:F0:F6:01,
/// serial 42.
const CHAIN_A_ID: &str = "oXQHmXHrD4JFDgYB_NSYBfXw9gE.Kg";
/// 2025-01-02T04:00:00Z and 2025-01-03T04:00:00Z.
const RFC_START: u64 = 1_735_790_400;
const RFC_END: u64 = 1_735_876_800;

/// RFC 9773 §4.2's example answer, without its Retry-After.
fn rfc_body() -> Value {
    json!({
        "suggestedWindow": {
            "start": "2025-01-02T04:00:00Z",
            "end": "2025-01-03T04:00:00Z"
        },
        "explanationURL": "https://acme.example.com/docs/ari"
    })
}

/// A harness whose CA offers renewal information.
fn with_ari() -> Harness {
    let h = Harness::new("");
    h.ca.set(|ca| ca.ari = true);
    h
}

/// The renewal info of the RFC's certificate, the CA answering `answer` for it.
fn window(h: &Harness, answer: MockResponse) -> Result<Option<RenewalWindow>, PluginError> {
    h.mock.expect(Method::Get, RFC_URL).respond(answer);
    renewal_info(&h.host, &h.config, RFC_9773_CERTIFICATE)
}

fn retry_after_of(header: Option<&str>) -> u32 {
    let h = with_ari();
    let mut answer = MockResponse::json(200, &rfc_body());
    if let Some(value) = header {
        answer = answer.header("Retry-After", value);
    }
    window(&h, answer).expect("answered").expect("a window").retry_after
}

fn logged(needle: &str) -> bool {
    testkit::logs().iter().any(|l| l.message.contains(needle))
}

#[test]
fn certificate_ids_follow_rfc_9773() {
    assert_eq!(certificate_id(RFC_9773_CERTIFICATE), Ok(Some(RFC_ID.to_string())));
    // The leaf (the first certificate) of a chain.
    assert_eq!(certificate_id(CHAIN_A), Ok(Some(CHAIN_A_ID.to_string())));
    assert!(matches!(certificate_id("no PEM here"), Err(PluginError::Permanent(_))));
    assert!(matches!(
        certificate_id("-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"),
        Err(PluginError::Permanent(m)) if m.contains("not a DER X.509 certificate")
    ));
}

#[test]
fn the_rfc_9773_exchange() {
    let h = with_ari();
    h.mock
        .expect(Method::Get, RFC_URL)
        .header("accept", "application/json")
        .respond(MockResponse::json(200, &rfc_body()).header("Retry-After", "21600"));
    let window = renewal_info(&h.host, &h.config, RFC_9773_CERTIFICATE).expect("answered");
    assert_eq!(
        window,
        Some(RenewalWindow {
            start: RFC_START,
            end: RFC_END,
            retry_after: 21_600,
            explanation_url: Some("https://acme.example.com/docs/ari".into()),
        })
    );
    // An unauthenticated GET: no nonce, no account, no JWS.
    let requests = h.mock.requests();
    let sent: Vec<(Method, &str)> = requests.iter().map(|r| (r.method, r.url.as_str())).collect();
    assert_eq!(sent, [(Method::Get, DIRECTORY), (Method::Get, RFC_URL)]);
    assert!(requests[1].body.is_empty() && requests[1].header("content-type").is_none());
    assert!(
        requests[1]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("certctl-acme/"))
    );
    assert_eq!(h.host.generated.get(), 0);
    assert!(h.host.kv_keys().is_empty());
    assert!(logged(
        "the CA suggests renewing aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE between 2025-01-02T04:00:00Z and \
         2025-01-03T04:00:00Z (see https://acme.example.com/docs/ari)"
    ));
}

#[test]
fn windows_with_fractions_and_offsets() {
    let h = with_ari();
    let answer = MockResponse::json(
        200,
        &json!({"suggestedWindow": {"start": "2025-01-02T06:00:00.123456+02:00", "end": "2025-01-02T23:00:00.5-05:00"}}),
    );
    let w = window(&h, answer).expect("answered").expect("a window");
    assert_eq!((w.start, w.end, w.explanation_url), (RFC_START, RFC_END, None));
}

#[test]
fn retry_after_forms_and_limits() {
    assert_eq!(retry_after_of(Some("21600")), 21_600);
    assert_eq!(retry_after_of(Some("3600")), 3_600);
    assert_eq!(retry_after_of(None), 21_600, "absent: six hours");
    assert_eq!(retry_after_of(Some("soon")), 21_600, "invalid: six hours");
    assert_eq!(retry_after_of(Some("30")), 60, "at least a minute");
    assert_eq!(retry_after_of(Some("0")), 60);
    assert_eq!(retry_after_of(Some("172800")), 86_400, "at most a day");
    // An HTTP date, from the fake host's clock (2026-01-01T00:00:00Z).
    assert_eq!(retry_after_of(Some("Thu, 01 Jan 2026 02:00:00 GMT")), 7_200);
    assert_eq!(retry_after_of(Some("Wed, 31 Dec 2025 00:00:00 GMT")), 60, "in the past");
    assert_eq!(retry_after_of(Some("Sat, 10 Jan 2026 00:00:00 GMT")), 86_400);
}

#[test]
fn a_directory_without_renewal_info_has_no_window() {
    let h = Harness::new("");
    assert_eq!(renewal_info(&h.host, &h.config, RFC_9773_CERTIFICATE), Ok(None));
    assert_eq!(h.ca.paths(), ["GET /dir"]);
}

#[test]
fn a_certificate_the_ca_does_not_know_has_no_window() {
    // The fake CA answers as Boulder does: 404 with a problem document.
    let h = with_ari();
    assert_eq!(renewal_info(&h.host, &h.config, RFC_9773_CERTIFICATE), Ok(None));
    assert_eq!(h.ca.paths(), ["GET /dir", &format!("GET /renewal-info/{RFC_ID}")]);
    assert!(logged(&format!(
        "the CA has no renewal information for the certificate {RFC_ID} (HTTP 404"
    )));
    // A bare 404 too.
    assert_eq!(window(&h, MockResponse::new(404)), Ok(None));
}

#[test]
fn a_certificate_without_an_authority_key_identifier_has_no_window() {
    // The RFC's certificate with its AKI extension's OID changed into another extension's
    // (2.5.29.35 -> 2.5.29.36, policyConstraints): same size, no AKI.
    let mut der = crate::der::pem_blocks(RFC_9773_CERTIFICATE, "CERTIFICATE")
        .expect("pem")
        .remove(0);
    let at = der
        .windows(5)
        .position(|w| w == [0x06, 0x03, 0x55, 0x1d, 0x23])
        .expect("the AKI OID");
    der[at + 4] = 0x24;
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    assert_eq!(certificate_id(&pem), Ok(None));
    let h = with_ari();
    assert_eq!(renewal_info(&h.host, &h.config, &pem), Ok(None));
    assert_eq!(h.ca.paths(), ["GET /dir"], "nothing to ask");
    assert!(logged("the certificate has no Authority Key Identifier"));
}

#[test]
fn invalid_windows_are_no_answer() {
    // RFC 9773 §4.2: a window that ends before, or when, it starts is as good as no answer.
    let h = with_ari();
    for (start, end) in [
        ("2025-01-03T04:00:00Z", "2025-01-02T04:00:00Z"),
        ("2025-01-02T04:00:00Z", "2025-01-02T04:00:00Z"),
    ] {
        let answer = MockResponse::json(200, &json!({"suggestedWindow": {"start": start, "end": end}}));
        let e = window(&h, answer).expect_err("invalid");
        assert!(
            matches!(&e, PluginError::Transient(m) if m.contains("ends (") && m.contains("before or when it starts")),
            "{e:?}"
        );
    }
    let answer = MockResponse::json(
        200,
        &json!({"suggestedWindow": {"start": "tomorrow", "end": "2025-01-02T04:00:00Z"}}),
    );
    let e = window(&h, answer).expect_err("not a time");
    assert!(
        matches!(&e, PluginError::Transient(m) if m.contains("suggestedWindow.start") && m.contains("\"tomorrow\"")),
        "{e:?}"
    );
    let e = window(
        &h,
        MockResponse::json(200, &json!({"explanationURL": "https://x.test"})),
    )
    .expect_err("no window");
    assert!(
        matches!(&e, PluginError::Transient(m) if m.contains("renewalInfo")),
        "{e:?}"
    );
}

#[test]
fn failures_of_the_ca_keep_their_class() {
    let h = with_ari();
    let e = window(&h, MockResponse::new(503).body("maintenance")).expect_err("503");
    assert!(
        matches!(&e, PluginError::Transient(m) if m.contains("renewalInfo")),
        "{e:?}"
    );
    let limited = MockResponse::json(
        429,
        &json!({"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"}),
    )
    .header("Retry-After", "600");
    assert_eq!(window(&h, limited), Err(PluginError::RateLimited(Some(600))));
    let e = window(&h, MockResponse::connection_refused()).expect_err("no answer");
    assert!(e.is_retryable(), "{e:?}");
}

#[test]
fn renewal_info_through_the_export_glue() {
    let h = with_ari();
    h.mock
        .expect(Method::Get, RFC_URL)
        .respond(MockResponse::json(200, &rfc_body()).header("Retry-After", "43200"));
    let window = AcmeIssuer::renewal_info(&h.config, RFC_9773_CERTIFICATE).expect("answered");
    assert_eq!(
        window.map(|w| (w.start, w.end, w.retry_after)),
        Some((RFC_START, RFC_END, 43_200))
    );
}

/// A renewal of the certificates in `replaces`.
fn renewal(names: &[&str], replaces: &str) -> IssueRequest {
    IssueRequest {
        replaces: Some(replaces.to_string()),
        ..request(names)
    }
}

fn renew(h: &Harness, replaces: &str) -> Result<String, PluginError> {
    let progress = crate::order::begin(&h.host, &h.config, &renewal(&["example.com"], replaces))?;
    match progress {
        Progress::Issued(chain) => Ok(chain),
        pending => h.finish(pending).0,
    }
}

#[test]
fn renewals_name_the_certificate_they_replace() {
    let h = with_ari();
    let chain = h.issue(&["example.com"]).expect("first issuance");
    assert_eq!(renew(&h, &chain).expect("renewed"), CHAIN_A);
    let orders = h.ca.order_payloads();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        orders[0],
        json!({"identifiers": [{"type": "dns", "value": "example.com"}]}),
        "a first issuance replaces nothing"
    );
    assert_eq!(
        orders[1],
        json!({"identifiers": [{"type": "dns", "value": "example.com"}], "replaces": CHAIN_A_ID})
    );
    assert!(logged(&format!("replacing the certificate {CHAIN_A_ID}")));
}

#[test]
fn without_renewal_info_renewals_send_no_replaces() {
    // The fake CA refuses `replaces` when it offers no renewalInfo: the renewal passing proves
    // none was sent (RFC 9773 §5: SHOULD NOT).
    let h = Harness::new("");
    renew(&h, CHAIN_A).expect("renewed");
    assert_eq!(
        h.ca.order_payloads(),
        [json!({"identifiers": [{"type": "dns", "value": "example.com"}]})]
    );
}

#[test]
fn an_already_replaced_certificate_is_ordered_again_without_replaces() {
    let h = with_ari();
    h.ca.set(|ca| {
        ca.replaced.insert(CHAIN_A_ID.to_string());
    });
    assert_eq!(renew(&h, CHAIN_A).expect("renewed"), CHAIN_A);
    let new_orders: Vec<(u16, Value)> =
        h.ca.log()
            .into_iter()
            .filter(|s| s.path == "/new-order")
            .map(|s| (s.status, s.payload))
            .collect();
    assert_eq!(
        new_orders,
        [
            (
                409,
                json!({"identifiers": [{"type": "dns", "value": "example.com"}], "replaces": CHAIN_A_ID})
            ),
            (201, json!({"identifiers": [{"type": "dns", "value": "example.com"}]})),
        ]
    );
    assert!(logged("(HTTP 409, alreadyReplaced)") && logged("ordering again without replaces"));
    assert!(!logged("replacing the certificate"));
    assert_eq!(h.ca.state.borrow().order_count(), 1);
}

#[test]
fn other_refusals_of_replaces_are_retried_too_but_not_other_errors() {
    // Boulder refuses a `replaces` it cannot tie to the account with `malformed`.
    let h = with_ari();
    // (An answer without a Replay-Nonce: the retry fetches a fresh nonce.)
    h.mock
        .expect(Method::Post, "https://ca.test/new-order")
        .respond(MockResponse::json(
            400,
            &json!({"type": "urn:ietf:params:acme:error:malformed",
                "detail": "Could not validate ARI 'replaces' field :: certificate not found"}),
        ));
    assert_eq!(renew(&h, CHAIN_A).expect("renewed"), CHAIN_A);
    assert!(logged("(HTTP 400, malformed): Could not validate ARI 'replaces' field"));
    assert_eq!(
        h.ca.order_payloads(),
        [json!({"identifiers": [{"type": "dns", "value": "example.com"}]})]
    );

    // A refusal that is not about the link fails the renewal as it would any order.
    drop(h);
    let h = with_ari();
    h.ca.set(|ca| ca.rate_limit_new_order = Some("60".into()));
    assert_eq!(renew(&h, CHAIN_A), Err(PluginError::RateLimited(Some(60))));
    let attempts = h.ca.paths().iter().filter(|p| *p == "POST /new-order").count();
    assert_eq!(attempts, 1);
}

#[test]
fn a_replaced_certificate_that_cannot_be_read_is_not_named() {
    let h = with_ari();
    renew(&h, "not a certificate").expect("renewed");
    assert_eq!(
        h.ca.order_payloads(),
        [json!({"identifiers": [{"type": "dns", "value": "example.com"}]})]
    );
    assert!(logged("the replaced certificate cannot be read"));
}
