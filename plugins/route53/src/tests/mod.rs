//! The plugin against Route 53's documented requests and answers (replayed with `MockHttp`), and
//! against [`fake::FakeRoute53`] for the conformance suite and the cases that need state.

mod fake;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use certctl_sdk::http::Method;
use certctl_sdk::log::Level;
use certctl_sdk::testkit::{self, MockHttp, MockResponse, conformance};
use certctl_sdk::{DnsRecord, PluginError};
use serde_json::{Value, json};

use self::fake::{
    FakeRoute53, KEY_ID, PRIVATE_ZONE_ID, SECRET, SUBZONE_ID, StoredSet, TEMP_KEY_ID, TEMP_SECRET, TOKEN, ZONE_ID,
    error, ok,
};
use crate::api::{Api, TIMEOUT};
use crate::{Route53, clock};

const API: &str = "https://route53.amazonaws.com/2013-04-01";
const NAME: &str = "_acme-challenge.www.example.test";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
/// The fake clock's start, as `x-amz-date`.
const AMZ_DATE: &str = "20270115T080000Z";

fn zones_url() -> String {
    format!("{API}/hostedzonesbyname?dnsname=example.test.&maxitems=10")
}

fn list_url(zone: &str) -> String {
    format!("{API}/hostedzone/{zone}/rrset?maxitems=1&name={NAME}.&type=TXT")
}

fn change_url(zone: &str) -> String {
    format!("{API}/hostedzone/{zone}/rrset/")
}

fn get_change_url(id: &str) -> String {
    format!("{API}/change/{id}")
}

fn config(extra: Value) -> String {
    let mut config = json!({"access_key_id": KEY_ID, "secret_access_key": SECRET});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config.to_string()
}

fn record(value: &str) -> DnsRecord {
    testkit::dns_record("example.test", NAME, value)
}

fn messages() -> Vec<String> {
    testkit::logs().into_iter().map(|l| l.message).collect()
}

/// A `ListHostedZonesByName` answer, as in the API reference.
fn zones_answer(zones: &[(&str, &str, bool)]) -> MockResponse {
    let zones: String = zones
        .iter()
        .map(|(id, name, private)| {
            format!(
                "<HostedZone><Id>/hostedzone/{id}</Id><Name>{name}</Name><CallerReference>2017-03-01T11:22:14Z\
                 </CallerReference><Config><Comment>certctl</Comment><PrivateZone>{private}</PrivateZone></Config>\
                 <ResourceRecordSetCount>7</ResourceRecordSetCount></HostedZone>"
            )
        })
        .collect();
    ok(format!(
        "<ListHostedZonesByNameResponse xmlns=\"{XMLNS}\"><HostedZones>{zones}</HostedZones><DNSName>example.test.\
         </DNSName><IsTruncated>false</IsTruncated><MaxItems>10</MaxItems></ListHostedZonesByNameResponse>"
    ))
}

fn zone_found() -> MockResponse {
    zones_answer(&[(ZONE_ID, "example.test.", false)])
}

/// A `ListResourceRecordSets` answer with one set (name, type, TTL, values), or none.
fn sets_answer(set: Option<(&str, &str, u32, &[&str])>) -> MockResponse {
    let sets = set.map_or_else(String::new, |(name, kind, ttl, values)| {
        let values: String = values
            .iter()
            .map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>"))
            .collect();
        format!(
            "<ResourceRecordSet><Name>{name}</Name><Type>{kind}</Type><TTL>{ttl}</TTL><ResourceRecords>{values}\
             </ResourceRecords></ResourceRecordSet>"
        )
    });
    ok(format!(
        "<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets>{sets}</ResourceRecordSets>\
         <IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"
    ))
}

fn change_answer(response: &str, id: &str, status: &str) -> MockResponse {
    ok(format!(
        "<{response} xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/{id}</Id><Status>{status}</Status><SubmittedAt>\
         2027-01-15T08:00:00.000Z</SubmittedAt></ChangeInfo></{response}>"
    ))
}

fn submitted(id: &str) -> MockResponse {
    change_answer("ChangeResourceRecordSetsResponse", id, "PENDING")
}

fn change_status(id: &str, status: &str) -> MockResponse {
    change_answer("GetChangeResponse", id, status)
}

/// The request body of one change, as the plugin writes it.
fn batch(action: &str, comment: &str, ttl: u32, values: &[&str]) -> String {
    let values: String = values
        .iter()
        .map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch>\
         <Comment>{comment}</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{NAME}.</Name>\
         <Type>TXT</Type><TTL>{ttl}</TTL><ResourceRecords>{values}</ResourceRecords></ResourceRecordSet></Change>\
         </Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    )
}

const ADD: &str = "certctl: add a DNS-01 challenge value";
const REMOVE: &str = "certctl: remove a DNS-01 challenge value";

fn serve(fake: &Rc<RefCell<FakeRoute53>>) -> MockHttp {
    let mock = MockHttp::install();
    let state = Rc::clone(fake);
    mock.fallback(move |request| state.borrow_mut().handle(request));
    mock
}

#[test]
fn present_finds_the_zone_adds_the_value_and_waits_for_insync() {
    let mock = MockHttp::install();
    // Signed exactly as botocore signs the same request (see sigv4.rs for the signer's tests).
    mock.expect(Method::Get, zones_url())
        .header("x-amz-date", AMZ_DATE)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20270115/us-east-1/route53/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=f02b7abcb4a785263bb915199fa1f2568e309534f94963b7f48e160aafa9a83e",
        )
        .respond(zones_answer(&[
            (ZONE_ID, "example.test.", false),
            (SUBZONE_ID, "www.example.test.", false),
        ]));
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .header("content-type", "application/xml")
        .body(batch("UPSERT", ADD, 60, &["\"wildcard-value\""]))
        .respond(submitted("C2682N5HXP0BZ4"));
    mock.expect(Method::Get, get_change_url("C2682N5HXP0BZ4"))
        .header("x-amz-date", "20270115T080002Z")
        .respond(change_status("C2682N5HXP0BZ4", "PENDING"));
    mock.expect(Method::Get, get_change_url("C2682N5HXP0BZ4"))
        .header("x-amz-date", "20270115T080004Z")
        .respond(change_status("C2682N5HXP0BZ4", "INSYNC"));

    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.present(&record("wildcard-value")), Ok(()));
    assert_eq!(clock::take_waits(), [Duration::from_secs(2); 2]);
    let requests = mock.requests();
    assert!(requests.iter().all(|r| r.timeout == Some(TIMEOUT)));
    assert!(requests.iter().all(|r| r.header("x-amz-security-token").is_none()));
    assert_eq!(
        messages(),
        [
            format!(
                "{NAME}: added the value to the TXT record set in hosted zone example.test ({ZONE_ID}), now 1 value; \
                 change C2682N5HXP0BZ4"
            ),
            "change C2682N5HXP0BZ4 is INSYNC".to_string(),
        ]
    );
}

#[test]
fn session_credentials_send_and_sign_the_token() {
    // The credentials botocore signed with in sigv4.rs.
    let token = "FwoGZXIvYXdzEXAMPLE//session+token=";
    let signed = "AWS4-HMAC-SHA256 Credential=ASIAIOSFODNN7EXAMPLE/20270115/us-east-1/route53/aws4_request, \
                  SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=";
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url())
        .header("x-amz-security-token", token)
        .respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID))
        .header("x-amz-security-token", token)
        .respond(sets_answer(None));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .header("x-amz-security-token", token)
        .respond(submitted("C2682N5HXP0BZ4"));
    // botocore's signature of this GetChange with these credentials, after one wait of 2 s.
    mock.expect(Method::Get, get_change_url("C2682N5HXP0BZ4"))
        .header("x-amz-security-token", token)
        .header(
            "authorization",
            format!("{signed}0217b9cbd837f461d42223f451cdef0a6ca1fc54248f0d0b5e45aa301c93d9a2"),
        )
        .respond(change_status("C2682N5HXP0BZ4", "INSYNC"));
    let dns = testkit::dns_solver::<Route53>(config(
        json!({"access_key_id": TEMP_KEY_ID, "secret_access_key": SECRET, "session_token": token}),
    ));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.header("authorization").is_some_and(|a| a.starts_with(signed)))
    );
}

#[test]
fn a_value_already_in_the_set_changes_nothing() {
    for existing in ["\"token\"", "\"tok\" \"en\"", "token"] {
        let mock = MockHttp::install();
        mock.expect(Method::Get, zones_url()).respond(zone_found());
        mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
            &format!("{NAME}."),
            "TXT",
            60,
            &["\"other\"", existing],
        ))));
        let dns = testkit::dns_solver::<Route53>(config(json!({})));
        assert_eq!(dns.present(&record("token")), Ok(()), "{existing}");
        assert_eq!(
            testkit::take_logs()[0].message,
            format!("{NAME}: the TXT record set has the value already")
        );
        drop(mock);
    }
}

#[test]
fn present_merges_with_the_values_there_and_keeps_the_ttl() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    // Route 53 spells names in lower case; the set keeps its TTL of 300.
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        "_acme-challenge.WWW.example.test.",
        "TXT",
        300,
        &["\"apex-value\"", "\"v=spf1 -all\""],
    ))));
    let body = batch(
        "UPSERT",
        ADD,
        300,
        &["\"apex-value\"", "\"v=spf1 -all\"", "\"wildcard-value\""],
    )
    .replace("<Name>_acme-challenge.www", "<Name>_acme-challenge.WWW");
    mock.expect(Method::Post, change_url(ZONE_ID))
        .body(body)
        .respond(submitted("C1"));
    mock.expect(Method::Get, get_change_url("C1"))
        .respond(change_status("C1", "INSYNC"));
    let dns = testkit::dns_solver::<Route53>(config(json!({"ttl": 120})));
    assert_eq!(dns.present(&record("wildcard-value")), Ok(()));
    assert_eq!(
        messages()[0],
        format!(
            "{NAME}: added the value to the TXT record set in hosted zone example.test ({ZONE_ID}), now 3 values; \
             change C1"
        )
    );
}

#[test]
fn the_next_set_in_route53s_order_is_not_the_one_at_the_name() {
    // Route 53 lists from the name on: without a TXT set at the name, the next set comes back.
    for (name, kind) in [
        ("_acme-challenge.xyz.example.test.", "TXT"),
        ("_acme-challenge.www.example.test.", "TXTX"),
        ("www.example.test.", "A"),
    ] {
        let mock = MockHttp::install();
        mock.expect(Method::Get, zones_url()).respond(zone_found());
        mock.expect(Method::Get, list_url(ZONE_ID))
            .respond(sets_answer(Some((name, kind, 300, &["\"token\""]))));
        mock.expect(Method::Post, change_url(ZONE_ID))
            .body(batch("UPSERT", ADD, 60, &["\"token\""]))
            .respond(change_answer("ChangeResourceRecordSetsResponse", "C1", "INSYNC"));
        let dns = testkit::dns_solver::<Route53>(config(json!({})));
        assert_eq!(dns.present(&record("token")), Ok(()), "{name} {kind}");
        assert_eq!(messages()[1], "change C1 is INSYNC");
        assert_eq!(clock::take_waits(), []);
        testkit::take_logs();
    }
}

#[test]
fn a_configured_zone_url_ttl_and_poll_count_are_used() {
    let mock = MockHttp::install();
    let api = "http://127.0.0.1:5999/route53/2013-04-01";
    mock.expect(
        Method::Get,
        format!("{api}/hostedzone/{ZONE_ID}/rrset?maxitems=1&name={NAME}.&type=TXT"),
    )
    .respond(sets_answer(None));
    mock.expect(Method::Post, format!("{api}/hostedzone/{ZONE_ID}/rrset/"))
        .body(batch("UPSERT", ADD, 3600, &["\"token\""]))
        .respond(submitted("C1"));
    mock.expect(Method::Get, format!("{api}/change/C1"))
        .times(3)
        .respond(change_status("C1", "PENDING"));
    let dns = testkit::dns_solver::<Route53>(config(json!({
        "hosted_zone_id": format!("/hostedzone/{ZONE_ID}"),
        "api_url": "http://127.0.0.1:5999/route53/",
        "ttl": 3600,
        "propagation_polls": 3,
    })));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert_eq!(clock::take_waits(), [Duration::from_secs(2); 3]);
    assert_eq!(
        messages()[1],
        "change C1 is PENDING after 3 polls 2 s apart; the server's propagation check waits for it"
    );
}

#[test]
fn a_default_port_is_neither_sent_nor_signed() {
    // The request is the one botocore signs for route53.amazonaws.com.
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url())
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20270115/us-east-1/route53/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=f02b7abcb4a785263bb915199fa1f2568e309534f94963b7f48e160aafa9a83e",
        )
        .respond(zones_answer(&[]));
    let dns = testkit::dns_solver::<Route53>(config(json!({"api_url": "https://Route53.amazonaws.com:443/"})));
    assert!(matches!(dns.present(&record("token")), Err(PluginError::NotFound(_))));
}

#[test]
fn no_polls_when_asked_for_none() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
    mock.expect(Method::Post, change_url(ZONE_ID)).respond(submitted("C1"));
    let dns = testkit::dns_solver::<Route53>(config(json!({"propagation_polls": 0})));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert_eq!(clock::take_waits(), []);
    assert_eq!(
        messages()[1],
        "change C1 is PENDING after 0 polls 2 s apart; the server's propagation check waits for it"
    );
}

#[test]
fn a_failing_poll_is_left_to_the_propagation_check_unless_it_is_a_permission() {
    let setup = |poll: MockResponse| {
        let mock = MockHttp::install();
        mock.expect(Method::Get, zones_url()).respond(zone_found());
        mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
        mock.expect(Method::Post, change_url(ZONE_ID)).respond(submitted("C1"));
        mock.expect(Method::Get, get_change_url("C1")).respond(poll);
        mock
    };
    let dns = testkit::dns_solver::<Route53>(config(json!({})));

    let mock = setup(error(503, "ServiceUnavailable", "Service Unavailable"));
    assert_eq!(dns.present(&record("token")), Ok(()));
    let logs = testkit::take_logs();
    assert_eq!(
        (logs[1].level, logs[1].message.as_str()),
        (
            Level::Warn,
            "change C1: temporary failure: Route 53 answered 503 ServiceUnavailable: Service Unavailable; leaving the \
             rest to the server's propagation check"
        )
    );
    drop(mock);

    let mock = setup(MockResponse::timeout());
    assert_eq!(dns.present(&record("token")), Ok(()));
    drop(mock);

    let mock = setup(error(
        403,
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/certctl is not authorized to perform: route53:GetChange on resource: \
         arn:aws:route53:::change/C1",
    ));
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::Auth(
            "Route 53 answered 403 AccessDenied: User: arn:aws:iam::123456789012:user/certctl is not authorized to \
             perform: route53:GetChange on resource: arn:aws:route53:::change/C1 (the IAM policy of \
             config.access_key_id must allow route53:GetChange on arn:aws:route53:::change/*; the plugin's README \
             lists what it needs); or set config.propagation_polls to 0 not to ask"
                .into()
        ))
    );
    drop(mock);
}

#[test]
fn cleanup_deletes_the_set_when_the_value_was_its_last() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        &format!("{NAME}."),
        "TXT",
        120,
        &["\"tok\" \"en\""],
    ))));
    // DELETE names the set exactly as it is: its TTL and values as Route 53 has them.
    mock.expect(Method::Post, change_url(ZONE_ID))
        .body(batch("DELETE", REMOVE, 120, &["\"tok\" \"en\""]))
        .respond(submitted("C9"));
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(clock::take_waits(), [], "cleanup does not wait");
    assert_eq!(
        messages(),
        [format!(
            "{NAME}: deleted the TXT record set, the value was its last; change C9"
        )]
    );
}

#[test]
fn cleanup_writes_back_the_other_values() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        &format!("{NAME}."),
        "TXT",
        60,
        &["\"apex-value\"", "\"token\"", "token", "\"v=spf1 -all\""],
    ))));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .body(batch("UPSERT", REMOVE, 60, &["\"apex-value\"", "\"v=spf1 -all\""]))
        .respond(submitted("C9"));
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(
        messages(),
        [format!(
            "{NAME}: removed the value from the TXT record set, 2 values left; change C9"
        )]
    );
}

#[test]
fn cleanup_of_what_is_not_there_changes_nothing() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).times(2).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        &format!("{NAME}."),
        "TXT",
        60,
        &["\"other\""],
    ))));
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
    mock.expect(Method::Get, zones_url()).respond(zones_answer(&[]));
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "value absent");
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "no set at the name");
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "no zone");
    assert!(mock.requests().iter().all(|r| r.method == Method::Get));
    let logs = testkit::logs();
    assert_eq!(
        logs.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
        [
            format!("{NAME}: the TXT record set does not have the value: nothing to remove"),
            format!("{NAME}: no TXT record set: nothing to remove"),
            "Route 53 hosted zone example.test: the credentials see no hosted zone of that name (set \
             config.hosted_zone_id, or check that the zone exists in this AWS account): nothing to clean up"
                .to_string(),
        ]
    );
    assert_eq!(logs[2].level, Level::Warn);
}

#[test]
fn a_set_that_changed_before_the_delete_is_read_again() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        &format!("{NAME}."),
        "TXT",
        60,
        &["\"token\""],
    ))));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .body(batch("DELETE", REMOVE, 60, &["\"token\""]))
        .respond(error(
            400,
            "InvalidChangeBatch",
            &format!(
                "[Tried to delete resource record set [name='{NAME}.', type='TXT'] but the values provided do not \
                 match the current values]"
            ),
        ));
    // Meanwhile another order added its value.
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(Some((
        &format!("{NAME}."),
        "TXT",
        60,
        &["\"token\"", "\"other\""],
    ))));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .body(batch("UPSERT", REMOVE, 60, &["\"other\""]))
        .respond(submitted("C2"));
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(
        messages()[0],
        format!(
            "{NAME}: Route 53 refused the change in hosted zone example.test ({ZONE_ID}): [Tried to delete resource \
             record set [name='{NAME}.', type='TXT'] but the values provided do not match the current values]; \
             reading the record set again"
        )
    );

    // Refused every time: given up after three attempts, with Route 53's message.
    mock.expect(Method::Get, zones_url()).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID))
        .times(3)
        .respond(sets_answer(Some((&format!("{NAME}."), "TXT", 60, &["\"token\""]))));
    let refusal = format!("[Tried to delete resource record set [name='{NAME}.', type='TXT'] but it was not found]");
    mock.expect(Method::Post, change_url(ZONE_ID))
        .times(3)
        .respond(invalid_change_batch(&[&refusal]));
    assert_eq!(
        dns.cleanup(&record("token")),
        Err(PluginError::Permanent(format!(
            "Route 53 refused the change in hosted zone example.test ({ZONE_ID}): {refusal}"
        )))
    );
}

/// ChangeResourceRecordSets' other error document, `<InvalidChangeBatch><Messages>`.
fn invalid_change_batch(messages: &[&str]) -> MockResponse {
    let messages: String = messages.iter().map(|m| format!("<Message>{m}</Message>")).collect();
    MockResponse::new(400).body(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InvalidChangeBatch xmlns=\"{XMLNS}\"><Messages>{messages}\
         </Messages><RequestId>b25f48e8-84fd-11e6-80d9-574e0c4664cb</RequestId></InvalidChangeBatch>"
    ))
}

#[test]
fn zones_are_matched_by_exact_name_public_first() {
    let lookup = |zones: &[(&str, &str, bool)]| {
        let mock = MockHttp::install();
        mock.expect(Method::Get, zones_url()).respond(zones_answer(zones));
        mock.expect_prefix(Method::Get, format!("{API}/hostedzone/"))
            .always()
            .respond(sets_answer(Some((&format!("{NAME}."), "TXT", 60, &["\"token\""]))));
        let got = testkit::dns_solver::<Route53>(config(json!({}))).present(&record("token"));
        let listed = mock.requests().get(1).map(|r| r.url.clone());
        (got, listed)
    };
    // The answer starts at the name and goes on in Route 53's order; case and dot do not matter.
    let (got, listed) = lookup(&[
        (PRIVATE_ZONE_ID, "example.test.", true),
        (ZONE_ID, "EXAMPLE.test", false),
        (SUBZONE_ID, "www.example.test.", false),
    ]);
    assert_eq!((got, listed), (Ok(()), Some(list_url(ZONE_ID))));
    testkit::take_logs();

    let (got, listed) = lookup(&[
        (PRIVATE_ZONE_ID, "example.test.", true),
        (SUBZONE_ID, "www.example.test.", false),
    ]);
    assert_eq!((got, listed), (Ok(()), Some(list_url(PRIVATE_ZONE_ID))));
    assert_eq!(
        (testkit::logs()[0].level, testkit::logs()[0].message.as_str()),
        (
            Level::Warn,
            "Route 53 hosted zone example.test (Z0PRIVATE3XAMPLE) is private: only resolvers in its VPCs see the \
             records"
        )
    );

    let (got, _) = lookup(&[
        ("ZA", "example.test.", false),
        ("ZB", "example.test.", false),
        ("ZC", "example.test.", true),
    ]);
    assert_eq!(
        got,
        Err(PluginError::Permanent(
            "Route 53 has 2 public hosted zones named example.test (ZA, ZB): set config.hosted_zone_id to the one the \
             domain is delegated to"
                .into()
        ))
    );
    let (got, _) = lookup(&[("ZA", "example.test.", true), ("ZB", "example.test.", true)]);
    assert!(matches!(got, Err(PluginError::Permanent(m)) if m.starts_with("Route 53 has 2 private hosted zones")));
    let (got, _) = lookup(&[
        (SUBZONE_ID, "www.example.test.", false),
        ("ZX", "example.test.example.", false),
    ]);
    assert!(matches!(got, Err(PluginError::NotFound(_))));
}

#[test]
fn record_sets_with_a_routing_policy_are_left_alone() {
    let fake = FakeRoute53::new().with_set(ZONE_ID, &format!("{NAME}."), 60, &["\"weighted\""]);
    let fake = Rc::new(RefCell::new(fake));
    fake.borrow_mut().sets[0].set_identifier = Some("blue".into());
    let _mock = serve(&fake);
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    let refused = Err(PluginError::Permanent(format!(
        "Route 53 hosted zone example.test ({ZONE_ID}): the TXT records at {NAME}. have a routing policy (set \
         identifier \"blue\"); this plugin manages simple record sets only"
    )));
    assert_eq!(dns.present(&record("token")), refused);
    assert_eq!(dns.cleanup(&record("weighted")), refused);
    assert_eq!(fake.borrow().served(NAME), ["weighted"]);
}

#[test]
fn route53s_refusals_map_to_what_the_host_should_do() {
    let iam = "(the IAM policy of config.access_key_id must allow route53:ListHostedZonesByName; the plugin's README \
               lists what it needs)";
    let cases = [
        (
            error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            PluginError::Auth(
                "Route 53 answered 403 InvalidClientTokenId: The security token included in the request is invalid. \
                 (check config.access_key_id: AWS does not know it, or it is inactive; temporary credentials \
                 (ASIA...) also need config.session_token)"
                    .into(),
            ),
        ),
        (
            error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS \
                 Secret Access Key and signing method. Consult the service documentation for details.",
            ),
            PluginError::Auth(
                "Route 53 answered 403 SignatureDoesNotMatch: The request signature we calculated does not match the \
                 signature you provided. Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details. (check config.secret_access_key: it must be the secret of \
                 config.access_key_id)"
                    .into(),
            ),
        ),
        (
            error(
                403,
                "SignatureDoesNotMatch",
                "Signature expired: 20270115T080000Z is now earlier than 20270115T080600Z (20270115T081100Z - 5 min.)",
            ),
            PluginError::Auth(
                "Route 53 answered 403 SignatureDoesNotMatch: Signature expired: 20270115T080000Z is now earlier than \
                 20270115T080600Z (20270115T081100Z - 5 min.) (the server's clock is off: AWS accepts signatures made \
                 within 5 minutes of its own time)"
                    .into(),
            ),
        ),
        (
            error(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            PluginError::Auth(
                "Route 53 answered 403 ExpiredToken: The security token included in the request is expired \
                 (config.session_token has expired: configure fresh temporary credentials, or an IAM user's access \
                 key without a session token)"
                    .into(),
            ),
        ),
        (
            error(
                403,
                "AccessDenied",
                "User: arn:aws:iam::123456789012:user/certctl is not authorized to perform: \
                 route53:ListHostedZonesByName because no identity-based policy allows the \
                 route53:ListHostedZonesByName action",
            ),
            PluginError::Auth(format!(
                "Route 53 answered 403 AccessDenied: User: arn:aws:iam::123456789012:user/certctl is not authorized \
                 to perform: route53:ListHostedZonesByName because no identity-based policy allows the \
                 route53:ListHostedZonesByName action {iam}"
            )),
        ),
        (
            MockResponse::new(403).body("<html><body>Forbidden by proxy</body></html>"),
            PluginError::Auth(format!(
                "GET https://route53.amazonaws.com answered 403 Forbidden: <html><body>Forbidden by proxy</body></html> \
                 {iam}"
            )),
        ),
        (
            // moto's shape, with the `Errors` list.
            MockResponse::new(403).body(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch\
                 </Code><Message>The request signature we calculated does not match the signature you provided.\
                 </Message><Type>Sender</Type></Error></Errors></ErrorResponse>",
            ),
            PluginError::Auth(
                "Route 53 answered 403 SignatureDoesNotMatch: The request signature we calculated does not match the \
                 signature you provided. (check config.secret_access_key: it must be the secret of \
                 config.access_key_id)"
                    .into(),
            ),
        ),
        (
            error(400, "Throttling", "Rate exceeded"),
            PluginError::RateLimited(None),
        ),
        (
            error(400, "Throttling", "Rate exceeded").header("Retry-After", "3"),
            PluginError::RateLimited(Some(3)),
        ),
        (
            error(
                400,
                "PriorRequestNotComplete",
                "The request was rejected because Route 53 was still processing a prior request.",
            ),
            PluginError::RateLimited(None),
        ),
        (MockResponse::new(429), PluginError::RateLimited(None)),
        (
            error(400, "InvalidDomainName", "example..test is not a valid domain name"),
            PluginError::Permanent(
                "Route 53 answered 400 InvalidDomainName: example..test is not a valid domain name \
                 (ListHostedZonesByName)"
                    .into(),
            ),
        ),
        (
            MockResponse::new(400).body("bad request"),
            PluginError::Permanent("GET https://route53.amazonaws.com answered 400 Bad Request: bad request".into()),
        ),
        (
            error(
                500,
                "InternalFailure",
                "We encountered an internal error. Please try again.",
            ),
            PluginError::Transient(
                "Route 53 answered 500 InternalFailure: We encountered an internal error. Please try again.".into(),
            ),
        ),
        (
            MockResponse::new(502),
            PluginError::Transient("GET https://route53.amazonaws.com answered 502 Bad Gateway".into()),
        ),
        (
            MockResponse::connection_refused(),
            PluginError::Transient("GET https://route53.amazonaws.com: connection refused".into()),
        ),
        (
            MockResponse::timeout(),
            PluginError::Transient("GET https://route53.amazonaws.com: no complete answer within 10.0 s".into()),
        ),
        (
            MockResponse::request_denied(),
            PluginError::Transient(
                "GET https://route53.amazonaws.com: HTTP request denied: the destination is not granted to this \
                 plugin instance"
                    .into(),
            ),
        ),
        (
            MockResponse::new(200).body("<html><body>a proxy's login page</body>"),
            PluginError::Permanent(
                "Route 53 answered ListHostedZonesByName with 200 and a body that is not XML (<html> is not closed): \
                 <html><body>a proxy's login page</body>"
                    .into(),
            ),
        ),
        (
            ok("<ListBucketResult><Name>x</Name></ListBucketResult>".into()),
            PluginError::Permanent(
                "Route 53 answered ListHostedZonesByName with <ListBucketResult> instead of \
                 <ListHostedZonesByNameResponse> (is config.api_url the Route 53 API?)"
                    .into(),
            ),
        ),
    ];
    for (answer, expected) in cases {
        let mock = MockHttp::install();
        mock.expect(Method::Get, zones_url()).respond(answer);
        let got = testkit::dns_solver::<Route53>(config(json!({}))).present(&record("token"));
        assert_eq!(got, Err(expected));
        let text = format!("{got:?}");
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        drop(mock);
    }
}

#[test]
fn refusals_name_the_zone_and_the_key_to_check() {
    let session = json!({"access_key_id": TEMP_KEY_ID, "secret_access_key": TEMP_SECRET, "session_token": TOKEN});
    let mock = MockHttp::install();
    mock.expect(Method::Get, zones_url()).respond(error(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    ));
    let got = testkit::dns_solver::<Route53>(config(session.clone())).present(&record("token"));
    assert_eq!(
        got,
        Err(PluginError::Auth(
            "Route 53 answered 403 InvalidClientTokenId: The security token included in the request is invalid. \
             (check config.access_key_id and config.session_token: temporary credentials need both, from the same \
             issue)"
                .into()
        ))
    );
    assert!(!format!("{got:?}").contains(TOKEN) && !format!("{got:?}").contains(TEMP_SECRET));

    // A configured zone that is not there: not-found naming the key; cleanup: nothing to do.
    let missing = "Z9NOSUCHZONE";
    mock.expect(Method::Get, list_url(missing)).times(2).respond(error(
        404,
        "NoSuchHostedZone",
        &format!("No hosted zone found with ID: {missing}"),
    ));
    let dns = testkit::dns_solver::<Route53>(config(json!({"hosted_zone_id": missing})));
    let expected = format!(
        "Route 53 hosted zone example.test ({missing}): Route 53 answered 404 NoSuchHostedZone: No hosted zone found \
         with ID: {missing} (check config.hosted_zone_id)"
    );
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::NotFound(expected.clone()))
    );
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(
        testkit::take_logs()[0].message,
        format!("{expected}: nothing to clean up")
    );

    // Reading the set, and changing it, name the zone's ARN in the IAM hint.
    mock.expect(Method::Get, zones_url()).times(2).respond(zone_found());
    mock.expect(Method::Get, list_url(ZONE_ID))
        .respond(error(403, "AccessDenied", "denied"));
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::Auth(format!(
            "Route 53 answered 403 AccessDenied: denied (the IAM policy of config.access_key_id must allow \
             route53:ListResourceRecordSets on arn:aws:route53:::hostedzone/{ZONE_ID}; the plugin's README lists \
             what it needs)"
        )))
    );
    mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
    mock.expect(Method::Post, change_url(ZONE_ID))
        .respond(error(403, "AccessDenied", "denied"));
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::Auth(format!(
            "Route 53 answered 403 AccessDenied: denied (the IAM policy of config.access_key_id must allow \
             route53:ChangeResourceRecordSets on arn:aws:route53:::hostedzone/{ZONE_ID}; the plugin's README lists \
             what it needs)"
        )))
    );

    // A change Route 53 refuses, in either of its error documents.
    for (answer, messages) in [
        (
            error(
                400,
                "InvalidChangeBatch",
                "[RRSet with DNS name _acme-challenge.www.example.test. is not permitted in zone other.test.]",
            ),
            "[RRSet with DNS name _acme-challenge.www.example.test. is not permitted in zone other.test.]",
        ),
        (
            invalid_change_batch(&["Invalid Resource Record: 'FATAL problem: X'", "Another\n   problem"]),
            "Invalid Resource Record: 'FATAL problem: X'; Another problem",
        ),
    ] {
        mock.expect(Method::Get, zones_url()).respond(zone_found());
        mock.expect(Method::Get, list_url(ZONE_ID)).respond(sets_answer(None));
        mock.expect(Method::Post, change_url(ZONE_ID)).respond(answer);
        assert_eq!(
            dns.present(&record("token")),
            Err(PluginError::Permanent(format!(
                "Route 53 refused the change in hosted zone example.test ({ZONE_ID}): {messages}"
            )))
        );
    }
}

#[test]
fn conforms_against_route53() {
    for extra in [
        json!({}),
        json!({"hosted_zone_id": ZONE_ID, "ttl": 300, "propagation_polls": 0}),
        json!({"access_key_id": TEMP_KEY_ID, "secret_access_key": TEMP_SECRET, "session_token": TOKEN}),
    ] {
        let fake = Rc::new(RefCell::new(FakeRoute53::new()));
        let (handler, reader) = (Rc::clone(&fake), Rc::clone(&fake));
        let provider = conformance::FakeDnsProvider::new(
            move |request| handler.borrow_mut().handle(request),
            move |fqdn| reader.borrow().served(fqdn),
        );
        conformance::dns_solver::<Route53>(&config(extra), "example.test", provider);
        assert!(
            fake.borrow().sets.is_empty(),
            "cleanup of the last value deletes the set"
        );
    }
    // In a delegated zone of its own.
    let fake = Rc::new(RefCell::new(FakeRoute53::new()));
    let (handler, reader) = (Rc::clone(&fake), Rc::clone(&fake));
    let provider = conformance::FakeDnsProvider::new(
        move |request| handler.borrow_mut().handle(request),
        move |fqdn| reader.borrow().served(fqdn),
    );
    conformance::dns_solver::<Route53>(&config(json!({})), "www.example.test", provider);
}

#[test]
fn records_of_others_at_the_name_survive_a_present_and_cleanup() {
    let fake = FakeRoute53::new().with_set(
        ZONE_ID,
        &format!("{NAME}."),
        300,
        &["\"someone-else\"", "\"v=legacy\" \"split\"", "\"caf\\303\\251\""],
    );
    let before = fake.sets.clone();
    let fake = Rc::new(RefCell::new(fake));
    let _mock = serve(&fake);
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert_eq!(
        fake.borrow().served(NAME),
        ["someone-else", "v=legacysplit", "café", "token"]
    );
    assert_eq!(fake.borrow().sets[0].ttl, 300);
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(fake.borrow().sets, before);
}

#[test]
fn long_values_are_split_into_strings_route53_accepts() {
    let fake = Rc::new(RefCell::new(FakeRoute53::new()));
    let _mock = serve(&fake);
    let dns = testkit::dns_solver::<Route53>(config(json!({})));
    let long = "x".repeat(700);
    assert_eq!(dns.present(&record(&long)), Ok(()));
    assert_eq!(fake.borrow().served(NAME), std::slice::from_ref(&long));
    assert_eq!(fake.borrow().sets[0].values[0].matches("\" \"").count(), 2);
    assert_eq!(dns.present(&record(&long)), Ok(()), "found again, split");
    assert_eq!(dns.cleanup(&record(&long)), Ok(()));
    assert!(fake.borrow().sets.is_empty());
}

#[test]
fn the_fake_answers_as_route53_does() {
    let fake = Rc::new(RefCell::new(FakeRoute53::new().with_set(
        ZONE_ID,
        "www.example.test.",
        300,
        &["\"a\""],
    )));
    let _mock = serve(&fake);
    let cfg = |key: &str, secret: &str, token: Option<&str>| crate::Config {
        access_key_id: key.into(),
        secret_access_key: secret.into(),
        session_token: token.map(str::to_string),
        hosted_zone_id: None,
        api_url: None,
        ttl: None,
        propagation_polls: None,
    };
    let good = cfg(KEY_ID, SECRET, None);
    let zone = crate::api::Zone {
        id: ZONE_ID.into(),
        name: "example.test".into(),
    };

    // Credentials and signatures.
    assert!(Api::new(&good).zone("example.test").is_ok());
    assert!(
        Api::new(&cfg(TEMP_KEY_ID, TEMP_SECRET, Some(TOKEN)))
            .zone("example.test")
            .is_ok()
    );
    for (config, expected) in [
        (cfg("AKIAUNKNOWN0EXAMPLE", SECRET, None), "InvalidClientTokenId"),
        (cfg(KEY_ID, "wrong", None), "SignatureDoesNotMatch"),
        (cfg(TEMP_KEY_ID, TEMP_SECRET, None), "InvalidClientTokenId"),
        (cfg(TEMP_KEY_ID, TEMP_SECRET, Some("other")), "InvalidClientTokenId"),
    ] {
        let got = Api::new(&config).zone("example.test").map(|_| ());
        assert!(
            matches!(&got, Err(PluginError::Auth(m)) if m.contains(expected)),
            "{expected}: {got:?}"
        );
    }
    let unsigned = certctl_sdk::http::get(zones_url()).send().expect("answered");
    assert!(unsigned.text().contains("<Code>MissingAuthenticationToken</Code>"));
    let tampered = certctl_sdk::http::get(zones_url().replace("maxitems=10", "maxitems=11"))
        .header("x-amz-date", AMZ_DATE)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20270115/us-east-1/route53/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=f02b7abcb4a785263bb915199fa1f2568e309534f94963b7f48e160aafa9a83e",
        )
        .send()
        .expect("answered");
    assert!(tampered.text().contains("<Code>SignatureDoesNotMatch</Code>"));

    // Zones from the name on, in Route 53's order; both example.test zones, then the subzone.
    assert_eq!(
        Api::new(&good).zone("example.test").map(|z| z.id),
        Ok(ZONE_ID.to_string())
    );
    assert_eq!(
        Api::new(&good).zone("www.example.test").map(|z| z.id),
        Ok(SUBZONE_ID.to_string())
    );

    // Sets from the name on: the next one when there is none at the name.
    let other = Api::new(&good).txt_set(&zone, "_acme-challenge.example.test");
    assert_eq!(
        other,
        Ok(None),
        "the answer was www.example.test's set, which is not at the name"
    );
    let www = Api::new(&good).txt_set(&zone, "www.example.test").expect("listed");
    assert_eq!(
        www,
        Some(crate::api::RecordSet {
            name: "www.example.test.".into(),
            ttl: 300,
            values: vec!["\"a\"".into()]
        })
    );

    // Changes, all or nothing.
    let set = |name: &str, ttl: u32, values: &[&str]| crate::api::RecordSet {
        name: name.into(),
        ttl,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let change = |action, set: &crate::api::RecordSet| {
        Api::new(&good)
            .change(&zone, action, set, "test")
            .map(|r| r.map_err(|r| format!("{r:?}")))
    };
    use crate::api::Action::{Delete, Upsert};
    for (action, rrset, expected) in [
        (
            Delete,
            set("www.example.test.", 60, &["\"a\""]),
            "values provided do not match",
        ),
        (
            Delete,
            set("www.example.test.", 300, &["\"b\""]),
            "values provided do not match",
        ),
        (
            Delete,
            set("nothing.example.test.", 300, &["\"a\""]),
            "but it was not found",
        ),
        (
            Upsert,
            set("www.other.test.", 300, &["\"a\""]),
            "is not permitted in zone example.test.",
        ),
        (
            Upsert,
            set("x.example.test.", 300, &["unquoted"]),
            "Value should be enclosed in quotation marks",
        ),
        (
            Upsert,
            set("x.example.test.", 300, &[&format!("\"{}\"", "y".repeat(256))]),
            "Value is too long",
        ),
        (Upsert, set("x.example.test.", 300, &[]), "InvalidInput"),
    ] {
        let got = change(action, &rrset).expect("answered");
        assert!(matches!(&got, Err(r) if r.contains(expected)), "{expected}: {got:?}");
    }
    let submitted = change(Upsert, &set("x.example.test.", 60, &["\"1\"", "\"2\""]))
        .expect("answered")
        .expect("applied");
    assert_eq!(submitted.status, "PENDING");
    assert_eq!(fake.borrow().served("x.example.test"), ["1", "2"]);
    assert_eq!(
        Api::new(&good).get_change(&submitted.id).map(|c| c.status),
        Ok("PENDING".into())
    );
    assert_eq!(
        Api::new(&good).get_change(&submitted.id).map(|c| c.status),
        Ok("INSYNC".into())
    );
    assert!(
        matches!(Api::new(&good).get_change("CNOSUCH"), Err(PluginError::NotFound(m)) if m.contains("NoSuchChange"))
    );
    let deleted = change(Delete, &set("x.example.test.", 60, &["\"2\"", "\"1\""])).expect("answered");
    assert!(deleted.is_ok(), "values in any order: {deleted:?}");
    assert_eq!(
        fake.borrow().sets,
        [StoredSet {
            zone_id: ZONE_ID.into(),
            name: "www.example.test.".into(),
            kind: "TXT".into(),
            ttl: 300,
            values: vec!["\"a\"".into()],
            set_identifier: None
        }]
    );
    let nowhere = crate::api::Zone {
        id: "ZNOSUCH".into(),
        name: "example.test".into(),
    };
    assert!(matches!(
        Api::new(&good).txt_set(&nowhere, "x.example.test"),
        Err(PluginError::NotFound(m)) if m.contains("NoSuchHostedZone")
    ));
}

#[test]
fn config_is_checked_by_key() {
    let check = |extra: Value| testkit::dns_solver::<Route53>(config(extra)).validate_config();
    for good in [
        json!({}),
        json!({"access_key_id": "testing", "secret_access_key": "testing"}),
        json!({"access_key_id": TEMP_KEY_ID, "session_token": TOKEN, "hosted_zone_id": ZONE_ID}),
        json!({"hosted_zone_id": format!("/hostedzone/{ZONE_ID}"), "ttl": 1, "propagation_polls": 0}),
        json!({"api_url": "https://route53.amazonaws.com", "ttl": 86400, "propagation_polls": 10}),
        json!({"api_url": "http://127.0.0.1:5999"}),
        json!({"api_url": "http://localhost:5999/"}),
        json!({"api_url": "http://[::1]:5999"}),
    ] {
        assert_eq!(check(good.clone()), Ok(()), "{good}");
    }
    let bare = |config: Value| testkit::dns_solver::<Route53>(config.to_string()).validate_config();
    testkit::assert_invalid_config(bare(json!({})), "config.access_key_id: required");
    testkit::assert_invalid_config(
        bare(json!({"access_key_id": KEY_ID})),
        "config.secret_access_key: required",
    );
    let cases = [
        (
            json!({"access_key_id": ""}),
            "config.access_key_id: must be an AWS access key ID",
        ),
        (
            json!({"access_key_id": "AKIA EXAMPLE"}),
            "config.access_key_id: must be an AWS access key ID",
        ),
        (
            json!({"access_key_id": format!("AWS_ACCESS_KEY_ID={KEY_ID}")}),
            "config.access_key_id: must be",
        ),
        (
            json!({"access_key_id": "A".repeat(129)}),
            "config.access_key_id: must be",
        ),
        (
            json!({"secret_access_key": ""}),
            "config.secret_access_key: must be the access key's secret",
        ),
        (
            json!({"secret_access_key": format!("{SECRET}\n")}),
            "config.secret_access_key: must be",
        ),
        (
            json!({"session_token": ""}),
            "config.session_token: must be the session token",
        ),
        (json!({"session_token": "a b"}), "config.session_token: must be"),
        (
            json!({"hosted_zone_id": "example.test"}),
            "config.hosted_zone_id: must be the hosted zone's ID",
        ),
        (
            json!({"hosted_zone_id": "/hostedzone/"}),
            "config.hosted_zone_id: must be",
        ),
        (
            json!({"hosted_zone_id": "Z".repeat(33)}),
            "config.hosted_zone_id: must be",
        ),
        (
            json!({"api_url": "http://route53.amazonaws.com"}),
            "config.api_url: must start with https://",
        ),
        (
            json!({"api_url": "route53.amazonaws.com"}),
            "config.api_url: must start with https://",
        ),
        (
            json!({"api_url": "https://user:pw@route53.amazonaws.com"}),
            "config.api_url: the host part is not",
        ),
        (
            json!({"api_url": "https://route53.amazonaws.com/?x=1"}),
            "config.api_url: must be the API's base URL",
        ),
        (json!({"ttl": 0}), "config.ttl: must be 1 to 86400 seconds"),
        (json!({"ttl": 86401}), "config.ttl: must be 1 to 86400 seconds"),
        (json!({"ttl": -1}), "config.ttl: "),
        (
            json!({"propagation_polls": 11}),
            "config.propagation_polls: must be 0 to 10",
        ),
        (json!({"region": "eu-west-1"}), "config.region: unknown key"),
    ];
    for (extra, expected) in cases {
        let message = testkit::assert_invalid_config(check(extra), expected);
        assert!(!message.contains(SECRET), "the secret leaked: {message}");
    }
    let _mock = MockHttp::install();
    let bad = testkit::dns_solver::<Route53>(config(json!({"ttl": 0})));
    assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
    assert!(matches!(bad.cleanup(&record("v")), Err(PluginError::InvalidConfig(_))));
}
