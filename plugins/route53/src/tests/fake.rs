//! A stateful fake of the parts of the Route 53 API the plugin uses, answering with the XML
//! documents, status codes and error codes Route 53 documents (and moto 5 reproduces):
//!
//! - SigV4 checked on every request: `MissingAuthenticationToken` without an Authorization
//!   header, `InvalidClientTokenId` for an unknown access key or a wrong or missing session
//!   token, `SignatureDoesNotMatch` when the signature is not the one for the request as it
//!   arrived (host from the URL, query canonicalised, body hashed);
//! - `ListHostedZonesByName` from a name in Route 53's order (labels reversed), public and
//!   private zones;
//! - `ListResourceRecordSets` from a name and type: the sets at or after them, so a name
//!   without a TXT set answers with the next set;
//! - `ChangeResourceRecordSets`, all or nothing: CREATE of an existing set, DELETE of a missing
//!   set or with other values or TTL, a name outside the zone, an unquoted or too long string:
//!   `InvalidChangeBatch`; a missing TTL: `InvalidInput`; an unknown zone: `NoSuchHostedZone`;
//! - `GetChange`: PENDING for the first `pending_polls` polls, then INSYNC; `NoSuchChange`.

use certctl_sdk::http::Method;
use certctl_sdk::testkit::{MockResponse, RecordedRequest};

use crate::{clock, sigv4, xml};

pub(crate) const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub(crate) const TEMP_KEY_ID: &str = "ASIAIOSFODNN7EXAMPLE";
pub(crate) const TEMP_SECRET: &str = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY";
pub(crate) const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//+sessiontoken=";
pub(crate) const ZONE_ID: &str = "Z1D633PJN98FT9";
pub(crate) const PRIVATE_ZONE_ID: &str = "Z0PRIVATE3XAMPLE";
pub(crate) const SUBZONE_ID: &str = "Z2WWW7EXAMPLE";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

pub(crate) struct FakeZone {
    pub(crate) id: String,
    /// With the trailing dot.
    pub(crate) name: String,
    pub(crate) private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSet {
    pub(crate) zone_id: String,
    /// Lower case, with the trailing dot, as Route 53 answers.
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) ttl: u32,
    pub(crate) values: Vec<String>,
    pub(crate) set_identifier: Option<String>,
}

pub(crate) struct FakeRoute53 {
    pub(crate) zones: Vec<FakeZone>,
    pub(crate) sets: Vec<StoredSet>,
    /// (change id, GetChange polls left before it is INSYNC)
    changes: Vec<(String, u32)>,
    /// How many GetChange answers say PENDING before INSYNC, for new changes.
    pub(crate) pending_polls: u32,
    next_change: u32,
}

impl FakeRoute53 {
    /// example.test as a public and a private zone, and www.example.test delegated to a zone of
    /// its own; no record sets.
    pub(crate) fn new() -> FakeRoute53 {
        let zone = |id: &str, name: &str, private: bool| FakeZone {
            id: id.into(),
            name: name.into(),
            private,
        };
        FakeRoute53 {
            zones: vec![
                zone(SUBZONE_ID, "www.example.test.", false),
                zone(PRIVATE_ZONE_ID, "example.test.", true),
                zone(ZONE_ID, "example.test.", false),
                zone("Z3OTHER4EXAMPLE", "other.test.", false),
            ],
            sets: Vec::new(),
            changes: Vec::new(),
            pending_polls: 1,
            next_change: 1,
        }
    }

    /// Adds a TXT record set.
    pub(crate) fn with_set(mut self, zone_id: &str, name: &str, ttl: u32, values: &[&str]) -> FakeRoute53 {
        self.sets.push(StoredSet {
            zone_id: zone_id.into(),
            name: name.into(),
            kind: "TXT".into(),
            ttl,
            values: values.iter().map(|v| v.to_string()).collect(),
            set_identifier: None,
        });
        self
    }

    pub(crate) fn handle(&mut self, request: &RecordedRequest) -> MockResponse {
        if let Err(refusal) = authenticate(request) {
            return refusal;
        }
        let path = request.path().to_string();
        let Some(route) = path.strip_prefix("/2013-04-01/") else {
            return MockResponse::new(404);
        };
        let query = query(&request.url);
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let segments: Vec<&str> = route.split('/').collect();
        match (request.method, segments.as_slice()) {
            (Method::Get, ["hostedzonesbyname"]) => self.zones_by_name(param("dnsname"), param("maxitems")),
            (Method::Get, ["hostedzone", id, "rrset"]) => {
                self.list_sets(id, param("name"), param("type"), param("maxitems"))
            }
            (Method::Post, ["hostedzone", id, "rrset", ""]) => self.change(id, &request.text()),
            (Method::Get, ["change", id]) => self.get_change(id),
            _ => MockResponse::new(404),
        }
    }

    fn zones_by_name(&self, dnsname: Option<&str>, maxitems: Option<&str>) -> MockResponse {
        let max: usize = maxitems.and_then(|m| m.parse().ok()).unwrap_or(100);
        let start = dnsname.map(|n| order_key(&absolute(n))).unwrap_or_default();
        let mut zones: Vec<&FakeZone> = self.zones.iter().filter(|z| order_key(&z.name) >= start).collect();
        zones.sort_by_key(|z| order_key(&z.name));
        let truncated = zones.len() > max;
        let zones_xml: String = zones
            .iter()
            .take(max)
            .map(|z| {
                format!(
                    "<HostedZone><Id>/hostedzone/{}</Id><Name>{}</Name><CallerReference>ref-{}</CallerReference>\
                     <Config><Comment>fake</Comment><PrivateZone>{}</PrivateZone></Config>\
                     <ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone>",
                    z.id, z.name, z.id, z.private
                )
            })
            .collect();
        let next = match zones.get(max) {
            Some(z) if truncated => format!(
                "<NextDNSName>{}</NextDNSName><NextHostedZoneId>{}</NextHostedZoneId>",
                z.name, z.id
            ),
            _ => String::new(),
        };
        let dnsname = dnsname
            .map(|n| format!("<DNSName>{}</DNSName>", xml::escape(n)))
            .unwrap_or_default();
        ok(format!(
            "<ListHostedZonesByNameResponse xmlns=\"{XMLNS}\"><HostedZones>{zones_xml}</HostedZones>{dnsname}\
             <IsTruncated>{truncated}</IsTruncated>{next}<MaxItems>{max}</MaxItems></ListHostedZonesByNameResponse>"
        ))
    }

    fn list_sets(&self, zone_id: &str, name: Option<&str>, kind: Option<&str>, maxitems: Option<&str>) -> MockResponse {
        if !self.zones.iter().any(|z| z.id == zone_id) {
            return no_such_zone(zone_id);
        }
        if kind.is_some() && name.is_none() {
            return error(400, "InvalidInput", "The input is not valid");
        }
        let max: usize = maxitems.and_then(|m| m.parse().ok()).unwrap_or(300);
        let start = (
            name.map(|n| order_key(&absolute(n))).unwrap_or_default(),
            kind.unwrap_or_default().to_string(),
        );
        let mut sets: Vec<&StoredSet> = self
            .sets
            .iter()
            .filter(|s| s.zone_id == zone_id && (order_key(&s.name), s.kind.clone()) >= start)
            .collect();
        sets.sort_by_key(|s| (order_key(&s.name), s.kind.clone()));
        let sets_xml: String = sets.iter().take(max).map(|s| set_xml(s)).collect();
        let next = match sets.get(max) {
            Some(s) => format!(
                "<IsTruncated>true</IsTruncated><NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
                s.name, s.kind
            ),
            None => "<IsTruncated>false</IsTruncated>".into(),
        };
        ok(format!(
            "<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets>{sets_xml}</ResourceRecordSets>\
             {next}<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"
        ))
    }

    fn change(&mut self, zone_id: &str, body: &str) -> MockResponse {
        let Some(zone) = self.zones.iter().find(|z| z.id == zone_id) else {
            return no_such_zone(zone_id);
        };
        let Ok(request) = xml::parse(body) else {
            return error(400, "MalformedInput", "Unexpected complex element termination");
        };
        if request.name != "ChangeResourceRecordSetsRequest" {
            return error(400, "MalformedInput", "Unexpected element");
        }
        let changes: Vec<&xml::Element> = request
            .at(&["ChangeBatch", "Changes"])
            .into_iter()
            .flat_map(|c| c.children("Change"))
            .collect();
        if changes.is_empty() {
            return error(
                400,
                "InvalidInput",
                "1 validation error detected: Value '[]' at 'changeBatch.changes' failed to satisfy constraint: Member must have length greater than or equal to 1",
            );
        }
        // All or nothing: applied to a copy.
        let mut sets = self.sets.clone();
        let mut problems = Vec::new();
        for change in changes {
            let action = change.text_at(&["Action"]).unwrap_or_default();
            let name =
                absolute(change.text_at(&["ResourceRecordSet", "Name"]).unwrap_or_default()).to_ascii_lowercase();
            let kind = change
                .text_at(&["ResourceRecordSet", "Type"])
                .unwrap_or_default()
                .to_string();
            let ttl = change
                .text_at(&["ResourceRecordSet", "TTL"])
                .and_then(|t| t.parse::<u32>().ok());
            let values: Vec<String> = change
                .at(&["ResourceRecordSet", "ResourceRecords"])
                .into_iter()
                .flat_map(|r| r.children("ResourceRecord"))
                .filter_map(|r| r.child("Value"))
                .map(|v| v.text.clone())
                .collect();
            let (Some(ttl), false) = (ttl, values.is_empty()) else {
                return error(
                    400,
                    "InvalidInput",
                    &format!(
                        "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or \
                         TrafficPolicyInstanceId], but found none in Change with [Action={action}, Name={name}, \
                         Type={kind}, SetIdentifier=null]"
                    ),
                );
            };
            if kind != "TXT" {
                return error(400, "InvalidInput", "this fake keeps TXT record sets only");
            }
            if name != zone.name && !name.ends_with(&format!(".{}", zone.name)) {
                problems.push(format!(
                    "RRSet with DNS name {name} is not permitted in zone {}",
                    zone.name
                ));
                continue;
            }
            for value in &values {
                match decode(value) {
                    None => problems.push(format!(
                        "Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be enclosed in \
                         quotation marks) encountered with '{value}''"
                    )),
                    Some(strings) if strings.iter().any(|s| s.len() > 255) => problems.push(format!(
                        "Invalid Resource Record: 'FATAL problem: CharacterStringTooLong (Value is too long) \
                         encountered with '{value}''"
                    )),
                    Some(_) => {}
                }
            }
            let existing = sets
                .iter()
                .position(|s| s.zone_id == zone_id && s.name == name && s.kind == kind);
            let what = format!("[name='{name}', type='{kind}']");
            match (action, existing) {
                ("CREATE", Some(_)) => {
                    problems.push(format!(
                        "Tried to create resource record set {what} but it already exists"
                    ));
                }
                ("CREATE" | "UPSERT", found) => {
                    let set = StoredSet {
                        zone_id: zone_id.into(),
                        name,
                        kind,
                        ttl,
                        values,
                        set_identifier: None,
                    };
                    match found {
                        Some(i) => sets[i] = set,
                        None => sets.push(set),
                    }
                }
                ("DELETE", None) => {
                    problems.push(format!(
                        "Tried to delete resource record set {what} but it was not found"
                    ));
                }
                ("DELETE", Some(i)) => {
                    let (mut have, mut gone) = (sets[i].values.clone(), values);
                    have.sort();
                    gone.sort();
                    if sets[i].ttl != ttl || have != gone {
                        problems.push(format!(
                            "Tried to delete resource record set {what} but the values provided do not match the \
                             current values"
                        ));
                    } else {
                        sets.remove(i);
                    }
                }
                (other, _) => {
                    return error(
                        400,
                        "InvalidInput",
                        &format!("Invalid XML ; cvc-enumeration-valid: Value '{other}' is not facet-valid"),
                    );
                }
            }
        }
        if !problems.is_empty() {
            return error(400, "InvalidChangeBatch", &format!("[{}]", problems.join(", ")));
        }
        self.sets = sets;
        let id = format!("C{:012}", self.next_change);
        self.next_change += 1;
        self.changes.push((id.clone(), self.pending_polls));
        ok(format!(
            "<ChangeResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/{id}</Id><Status>PENDING\
             </Status><SubmittedAt>{}</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>",
            certctl_sdk::time::rfc3339(clock::unix_time())
        ))
    }

    fn get_change(&mut self, id: &str) -> MockResponse {
        let Some((_, pending)) = self.changes.iter_mut().find(|(c, _)| c == id) else {
            return error(
                404,
                "NoSuchChange",
                &format!("A change with the specified change ID does not exist: {id}"),
            );
        };
        let status = if *pending > 0 {
            *pending -= 1;
            "PENDING"
        } else {
            "INSYNC"
        };
        ok(format!(
            "<GetChangeResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/{id}</Id><Status>{status}</Status>\
             <SubmittedAt>{}</SubmittedAt></ChangeInfo></GetChangeResponse>",
            certctl_sdk::time::rfc3339(clock::unix_time())
        ))
    }

    /// The TXT values Route 53's servers answer with at `fqdn`.
    pub(crate) fn served(&self, fqdn: &str) -> Vec<String> {
        let name = absolute(fqdn).to_ascii_lowercase();
        self.sets
            .iter()
            .filter(|s| s.kind == "TXT" && s.name == name)
            .flat_map(|s| s.values.iter())
            .map(|v| decode(v).map_or_else(|| format!("(unreadable {v})"), |strings| strings.concat()))
            .collect()
    }
}

/// The SigV4 check Route 53 makes, with the credentials it knows.
fn authenticate(request: &RecordedRequest) -> Result<(), MockResponse> {
    let header = request.header("authorization").unwrap_or_default();
    let Some(fields) = header.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(error(403, "MissingAuthenticationToken", "Missing Authentication Token"));
    };
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_default()
    };
    let credential: Vec<&str> = field("Credential").split('/').collect();
    let [key_id, date, "us-east-1", "route53", "aws4_request"] = credential.as_slice() else {
        return Err(error(
            400,
            "IncompleteSignature",
            "Credential should be scoped to a valid region and to route53",
        ));
    };
    let token = request.header("x-amz-security-token");
    let secret = match (*key_id, token) {
        (KEY_ID, None) => SECRET,
        (TEMP_KEY_ID, Some(TOKEN)) => TEMP_SECRET,
        _ => {
            return Err(error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ));
        }
    };
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    if !amz_date.starts_with(date) || amz_date != sigv4::amz_date(clock::unix_time()) {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            &format!("Signature expired or not yet current: {amz_date}"),
        ));
    }
    let authority = request
        .url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let signed_names: Vec<&str> = field("SignedHeaders").split(';').collect();
    let mut signed = Vec::new();
    for name in &signed_names {
        let value = match *name {
            "host" => Some(authority),
            other => request.header(other),
        };
        match value {
            Some(value) => signed.push((*name, value)),
            None => return Err(signature_mismatch()),
        }
    }
    if !signed_names.contains(&"host") || !signed_names.contains(&"x-amz-date") {
        return Err(signature_mismatch());
    }
    if token.is_some() && !signed_names.contains(&"x-amz-security-token") {
        return Err(signature_mismatch());
    }
    let pairs = query(&request.url);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expected = sigv4::authorization(
        &sigv4::Request {
            method: request.method.as_str(),
            path: request.path(),
            query: &sigv4::query(&pairs),
            headers: &signed,
            body: &request.body,
        },
        &sigv4::Credentials {
            access_key_id: key_id,
            secret_access_key: secret,
        },
        "us-east-1",
        "route53",
        amz_date,
    )
    .map_err(|_| signature_mismatch())?;
    if expected != header {
        return Err(signature_mismatch());
    }
    Ok(())
}

fn signature_mismatch() -> MockResponse {
    error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details.",
    )
}

fn set_xml(set: &StoredSet) -> String {
    let values: String = set
        .values
        .iter()
        .map(|v| format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", xml::escape(v)))
        .collect();
    let identifier = set
        .set_identifier
        .as_ref()
        .map(|i| format!("<SetIdentifier>{i}</SetIdentifier><Weight>10</Weight>"))
        .unwrap_or_default();
    format!(
        "<ResourceRecordSet><Name>{}</Name><Type>{}</Type>{identifier}<TTL>{}</TTL><ResourceRecords>{values}\
         </ResourceRecords></ResourceRecordSet>",
        set.name, set.kind, set.ttl
    )
}

/// A 200 answer with an XML document.
pub(crate) fn ok(document: String) -> MockResponse {
    MockResponse::new(200)
        .header("content-type", "text/xml")
        .header("x-amzn-requestid", "0b4e2c47-5c07-4f1b-9f0e-6c0d5ee0a2b1")
        .body(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{document}"))
}

/// Route 53's error document.
pub(crate) fn error(status: u16, code: &str, message: &str) -> MockResponse {
    MockResponse::new(status)
        .header("content-type", "text/xml")
        .body(format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{}</Message></Error><RequestId>5f2b4f3e-1a7c-4b0e-8f55-8d1b2c7a9e10</RequestId></ErrorResponse>",
            xml::escape(message)
        ))
}

fn no_such_zone(id: &str) -> MockResponse {
    error(404, "NoSuchHostedZone", &format!("No hosted zone found with ID: {id}"))
}

/// `name.`
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// Route 53's order of names: labels reversed (`test.example.www`), lower case.
fn order_key(name: &str) -> String {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').rev().collect();
    labels.join(".").to_ascii_lowercase()
}

/// The strings of a TXT record, read independently of the plugin: `"..."` groups with `\"`,
/// `\\` and three-digit octal escapes.
fn decode(value: &str) -> Option<Vec<String>> {
    let mut strings = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let mut bytes = Vec::new();
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()? {
                    (_, d) if d.is_digit(8) => {
                        let (_, d2) = chars.next()?;
                        let (_, d3) = chars.next()?;
                        bytes.push(u8::from_str_radix(&format!("{d}{d2}{d3}"), 8).ok()?);
                    }
                    (_, c) => bytes.extend(c.to_string().bytes()),
                },
                (_, c) => bytes.extend(c.to_string().bytes()),
            }
        };
        strings.push(String::from_utf8(bytes).ok()?);
        rest = rest[end + 2..].trim_start();
    }
    Some(strings)
}

/// The query of a URL as decoded pairs.
pub(crate) fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let decode = |text: &str| {
        let mut bytes = Vec::new();
        let mut rest = text.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            match (first, tail.get(..2).and_then(|hex| std::str::from_utf8(hex).ok())) {
                (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                    bytes.push(u8::from_str_radix(hex, 16).unwrap_or_default());
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(first);
                    rest = tail;
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}
