//! A certctl DNS-01 solver for the PowerDNS Authoritative Server's HTTP API (v1). PowerDNS
//! replaces a whole rrset at a time, so each call reads the zone, adds or removes exactly one
//! value of the TXT set at the challenge name, and writes the set back with one PATCH (or
//! deletes it with the last value). See README.md.

use std::fmt::Write as _;
use std::time::Duration;

use certctl_sdk::dns::unquote_txt;
use certctl_sdk::http::{self, Response};
use certctl_sdk::{DnsRecord, DnsSolver, PluginError, log};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DEFAULT_SERVER_ID: &str = "localhost";

/// How long to wait for each answer of PowerDNS: a call makes two requests, and the host's
/// default limit for a whole call is 30 s.
const TIMEOUT: Duration = Duration::from_secs(10);

/// PowerDNS keeps TTLs as signed 32-bit integers.
const MAX_TTL: u32 = 2_147_483_647;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where the API listens (`webserver-address`, `webserver-port`): `http://127.0.0.1:8081`.
    api_url: String,
    /// The server's `api-key`, sent as `X-API-Key`.
    api_key: String,
    /// The server id in API paths; PowerDNS only knows `localhost`.
    #[serde(default)]
    server_id: Option<String>,
    /// TTL of the TXT set; the host's challenge TTL when absent.
    #[serde(default)]
    ttl: Option<u32>,
}

struct PowerDns;

impl DnsSolver for PowerDns {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        check_api_url(&config.api_url)?;
        if config.api_key.is_empty() || config.api_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PluginError::invalid_config(
                "config.api_key: must be the server's api-key (not empty, no spaces or line breaks)",
            ));
        }
        if let Some(server_id) = &config.server_id
            && !is_path_segment(server_id)
        {
            return Err(PluginError::invalid_config(
                "config.server_id: must be a server id such as localhost (letters, digits, '-', '_', '.')",
            ));
        }
        if let Some(ttl) = config.ttl
            && !(1..=MAX_TTL).contains(&ttl)
        {
            return Err(PluginError::invalid_config(format!(
                "config.ttl: must be between 1 and {MAX_TTL} seconds"
            )));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let target = Target::new(config, record);
        let mut records = target.read()?.records;
        match records.iter_mut().find(|r| holds(r, &record.value)) {
            Some(existing) if !existing.disabled => {
                log::info(format!("{}: the value is in the TXT set already", target.name));
                return Ok(());
            }
            Some(disabled) => disabled.disabled = false,
            None => records.push(Record {
                content: quote(&record.value),
                disabled: false,
            }),
        }
        let ttl = config.ttl.unwrap_or(record.ttl);
        target.write(&replace(&target.name, ttl, &records))?;
        log::info(format!(
            "{}: added the value to the TXT set ({})",
            target.name,
            values(records.len())
        ));
        Ok(())
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let target = Target::new(config, record);
        match remove(&target, config, record) {
            // No zone, no value: what cleanup is for is done.
            Err(PluginError::NotFound(message)) => {
                log::warn(format!("{message}: nothing to clean up"));
                Ok(())
            }
            other => other,
        }
    }
}

certctl_sdk::register_dns_solver!(PowerDns);

fn remove(target: &Target<'_>, config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
    let set = target.read()?;
    let before = set.records.len();
    let rest: Vec<Record> = set.records.into_iter().filter(|r| !holds(r, &record.value)).collect();
    if rest.len() == before {
        log::info(format!(
            "{}: the value is not in the TXT set: nothing to remove",
            target.name
        ));
        return Ok(());
    }
    if rest.is_empty() {
        target.write(&delete(&target.name))?;
        log::info(format!("{}: removed the value, the last of the TXT set", target.name));
    } else {
        // The set keeps its TTL.
        let ttl = set.ttl.or(config.ttl).unwrap_or(record.ttl);
        target.write(&replace(&target.name, ttl, &rest))?;
        log::info(format!(
            "{}: removed the value from the TXT set ({} left)",
            target.name,
            values(rest.len())
        ));
    }
    Ok(())
}

fn values(n: usize) -> String {
    match n {
        1 => "1 value".into(),
        n => format!("{n} values"),
    }
}

/// One zone of one PowerDNS server, and the challenge name in it.
struct Target<'a> {
    config: &'a Config,
    server_id: &'a str,
    /// `example.com.`
    zone: String,
    /// `<api_url>/api/v1/servers/<server_id>/zones/<zone id>`
    zone_url: String,
    /// `_acme-challenge.www.example.com.`
    name: String,
}

/// The TXT set at the challenge name; no records when there is none.
#[derive(Debug, Default)]
struct TxtSet {
    ttl: Option<u32>,
    records: Vec<Record>,
}

/// One record of an rrset, as the API reads and writes it. TXT `content` is in zone-file
/// format: quoted character strings (`"abc"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// The part of `GET .../zones/{zone_id}` used here.
#[derive(Deserialize)]
struct ZoneAnswer {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

#[derive(Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<Record>,
}

impl<'a> Target<'a> {
    fn new(config: &'a Config, record: &DnsRecord) -> Target<'a> {
        let server_id = config.server_id.as_deref().unwrap_or(DEFAULT_SERVER_ID);
        let zone = absolute(&record.zone);
        let zone_url = format!(
            "{}/api/v1/servers/{server_id}/zones/{}",
            base_url(&config.api_url),
            zone_id(&zone)
        );
        Target {
            config,
            server_id,
            zone,
            zone_url,
            name: absolute(&record.fqdn),
        }
    }

    fn request(&self, request: http::Request) -> http::Request {
        request
            .header("X-API-Key", &self.config.api_key)
            .header("Accept", "application/json")
            .timeout(TIMEOUT)
    }

    /// Reads the whole zone: the rrset filter (`rrset_name`, `rrset_type`) of PowerDNS 4.6 and
    /// later leaves disabled records out (PowerDNS issue 11473), and a REPLACE written from
    /// such a read would delete them.
    fn read(&self) -> Result<TxtSet, PluginError> {
        let response = self.request(http::get(&self.zone_url)).send()?;
        self.check(&response)?;
        let zone: ZoneAnswer = response.json()?;
        Ok(zone
            .rrsets
            .into_iter()
            .find(|set| set.kind == "TXT" && set.name.eq_ignore_ascii_case(&self.name))
            .map(|set| TxtSet {
                ttl: set.ttl,
                records: set.records,
            })
            .unwrap_or_default())
    }

    fn write(&self, change: &Value) -> Result<(), PluginError> {
        let response = self.request(http::patch(&self.zone_url)).json(change)?.send()?;
        self.check(&response)
    }

    /// PowerDNS's answers (its API documentation, and as 4.7 gives them): 2xx is success;
    /// `401 Unauthorized` (plain text) for a wrong or missing key; `404 Not Found` (plain text)
    /// when the server id or the zone does not exist; `422 {"error": ...}` for a change it
    /// refuses; 400 for a malformed request; `500 {"error": ...}` when its backend fails.
    fn check(&self, response: &Response) -> Result<(), PluginError> {
        let Some(error) = http::status_error(response) else {
            return Ok(());
        };
        Err(match response.status() {
            401 | 403 => PluginError::auth(format!(
                "{} (check config.api_key against the server's api-key)",
                error.message()
            )),
            404 => PluginError::not_found(format!(
                "PowerDNS server {:?} has no zone {} ({})",
                self.server_id,
                self.zone,
                error.message()
            )),
            422 => match refusal(response) {
                Some(why) => PluginError::permanent(format!(
                    "PowerDNS refused the change to the TXT set at {}: {why}",
                    self.name
                )),
                None => error,
            },
            _ => error,
        })
    }
}

/// PowerDNS's `{"error": "..."}`.
fn refusal(response: &Response) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
    }
    serde_json::from_slice::<ErrorAnswer>(response.body())
        .ok()
        .map(|answer| answer.error)
        .filter(|error| !error.is_empty())
}

/// A PATCH body replacing the TXT set at `name` with `records`.
fn replace(name: &str, ttl: u32, records: &[Record]) -> Value {
    json!({"rrsets": [{"name": name, "type": "TXT", "ttl": ttl, "changetype": "REPLACE", "records": records}]})
}

/// A PATCH body deleting the TXT set at `name`.
fn delete(name: &str) -> Value {
    json!({"rrsets": [{"name": name, "type": "TXT", "changetype": "DELETE"}]})
}

/// `http://` or `https://`, a host, no credentials, query or fragment.
fn check_api_url(url: &str) -> Result<(), PluginError> {
    let invalid = |why: &str| PluginError::invalid_config(format!("config.api_url: {why}"));
    let must_be_http = "must start with http:// or https://, e.g. http://127.0.0.1:8081";
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid(must_be_http))?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(invalid(must_be_http));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.is_empty() {
        return Err(invalid("has no host"));
    }
    if authority.contains('@') || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "is not a plain URL (credentials or spaces in it); the key goes in config.api_key",
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid(
            "must be the API's base URL, without a query or fragment, e.g. http://127.0.0.1:8081",
        ));
    }
    Ok(())
}

/// `api_url` without a trailing `/` or `/api/v1`: both forms are what operators copy.
fn base_url(api_url: &str) -> &str {
    let url = api_url.trim_end_matches('/');
    url.strip_suffix("/api/v1").unwrap_or(url)
}

fn is_path_segment(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A name with exactly one trailing dot, as the API wants names.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The zone's id in API paths, derived from its name as PowerDNS does (`apiZoneNameToId`):
/// bytes other than letters, digits, `.` and `-` become `=XX` (`_x.example.com.` is
/// `=5Fx.example.com.`, `0/26.2.0.192.in-addr.arpa.` is `0=2F26.2.0.192.in-addr.arpa.`), and the
/// root is `=2E`.
fn zone_id(zone: &str) -> String {
    if zone == "." {
        return "=2E".into();
    }
    let mut id = String::with_capacity(zone.len());
    for byte in zone.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-' {
            id.push(char::from(byte));
        } else {
            let _ = write!(id, "={byte:02X}");
        }
    }
    id
}

/// Whether `record` is the TXT value `value`, in whatever way its content is written.
fn holds(record: &Record, value: &str) -> bool {
    unquote_txt(&record.content).as_deref() == Some(value.as_bytes())
}

/// `value` as one TXT character-string in zone-file format: quoted, `"` and `\` escaped, bytes
/// outside printable ASCII as `\DDD`.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' | b'\\' => {
                quoted.push('\\');
                quoted.push(char::from(byte));
            }
            0x20..=0x7e => quoted.push(char::from(byte)),
            _ => {
                let _ = write!(quoted, "\\{byte:03}");
            }
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use certctl_sdk::http::Method;
    use certctl_sdk::log::Level;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse, RecordedRequest, conformance};

    use super::*;

    const KEY: &str = "pdns-api-key";
    const API: &str = "http://127.0.0.1:8081";
    const ZONE_URL: &str = "http://127.0.0.1:8081/api/v1/servers/localhost/zones/example.test.";
    const NAME: &str = "_acme-challenge.www.example.test.";

    fn config() -> String {
        json!({"api_url": API, "api_key": KEY}).to_string()
    }

    fn record(value: &str) -> DnsRecord {
        testkit::dns_record("example.test", "_acme-challenge.www.example.test", value)
    }

    fn txt(content: &str) -> Value {
        json!({"content": content, "disabled": false})
    }

    /// A zone as `GET .../zones/example.test.` answers it, with a TXT set at `NAME` if
    /// `records` is not empty.
    fn zone(ttl: u32, records: &[Value]) -> MockResponse {
        let mut rrsets = vec![
            json!({"comments": [], "name": "example.test.", "type": "SOA", "ttl": 3600, "records": [
                txt("ns1.example.test. hostmaster.example.test. 2026112801 10800 3600 604800 3600")
            ]}),
            json!({"comments": [], "name": "www.example.test.", "type": "TXT", "ttl": 300, "records": [txt("\"unrelated\"")]}),
            json!({"comments": [], "name": NAME, "type": "A", "ttl": 300, "records": [txt("192.0.2.1")]}),
        ];
        if !records.is_empty() {
            rrsets.push(json!({"comments": [], "name": NAME, "type": "TXT", "ttl": ttl, "records": records}));
        }
        MockResponse::json(
            200,
            &json!({"id": "example.test.", "name": "example.test.", "kind": "Native", "serial": 2026112801, "rrsets": rrsets}),
        )
    }

    fn replaced(ttl: u32, records: &[Value]) -> Value {
        json!({"rrsets": [{"name": NAME, "type": "TXT", "ttl": ttl, "changetype": "REPLACE", "records": records}]})
    }

    /// An error as PowerDNS answers it to `Accept: application/json`: `{"error": "..."}`, with
    /// its spacing.
    fn pdns_error(status: u16, error: &str) -> MockResponse {
        MockResponse::new(status)
            .header("content-type", "application/json")
            .body(format!("{{\"error\": {}}}", json!(error)))
    }

    fn messages() -> Vec<String> {
        testkit::logs().into_iter().map(|l| l.message).collect()
    }

    #[test]
    fn present_adds_the_value_to_the_set_and_keeps_the_others() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL)
            .header("x-api-key", KEY)
            .respond(zone(120, &[txt("\"apex-value\"")]));
        mock.expect(Method::Patch, ZONE_URL)
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .json_body(&replaced(60, &[txt("\"apex-value\""), txt("\"wildcard-value\"")]))
            .respond(MockResponse::new(204));

        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.present(&record("wildcard-value")), Ok(()));
        assert!(mock.requests().iter().all(|r| r.timeout == Some(TIMEOUT)));
        assert_eq!(
            messages(),
            ["_acme-challenge.www.example.test.: added the value to the TXT set (2 values)"]
        );
    }

    #[test]
    fn present_creates_the_set_with_the_configured_ttl() {
        let mock = MockHttp::install();
        // A trailing /api/v1/ on the URL is not doubled; the zone id of `_x.example.test` is
        // escaped as PowerDNS escapes it.
        let url = "https://pdns.internal:8443/api/v1/servers/ns1/zones/=5Fx.example.test.";
        mock.expect(Method::Get, url).respond(MockResponse::json(
            200,
            &json!({"id": "=5Fx.example.test.", "name": "_x.example.test.", "rrsets": []}),
        ));
        mock.expect(Method::Patch, url)
            .json_body(&json!({"rrsets": [{
                "name": "_acme-challenge._x.example.test.", "type": "TXT", "ttl": 300, "changetype": "REPLACE",
                "records": [{"content": "\"token\"", "disabled": false}]
            }]}))
            .respond(MockResponse::new(204));
        let dns = testkit::dns_solver::<PowerDns>(
            json!({"api_url": "https://pdns.internal:8443/api/v1/", "api_key": KEY, "server_id": "ns1", "ttl": 300})
                .to_string(),
        );
        let challenge = testkit::dns_record("_x.example.test", "_acme-challenge._x.example.test", "token");
        assert_eq!(dns.present(&challenge), Ok(()));
        assert_eq!(
            messages(),
            ["_acme-challenge._x.example.test.: added the value to the TXT set (1 value)"]
        );
    }

    #[test]
    fn present_of_a_value_already_there_changes_nothing() {
        let mock = MockHttp::install();
        // Names compare without regard to case, and `"tok" "en"` is the value `token`.
        mock.expect(Method::Get, ZONE_URL).respond(MockResponse::json(
            200,
            &json!({"name": "example.test.", "rrsets": [{
                "name": "_ACME-Challenge.www.example.test.", "type": "TXT", "ttl": 60,
                "records": [txt("\"other\""), txt("\"tok\" \"en\"")]
            }]}),
        ));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.present(&record("token")), Ok(()));
        assert_eq!(mock.requests().len(), 1, "no PATCH");
        assert_eq!(
            messages(),
            ["_acme-challenge.www.example.test.: the value is in the TXT set already"]
        );
    }

    #[test]
    fn present_enables_a_disabled_copy_of_the_value() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL).respond(zone(
            60,
            &[
                json!({"content": "\"token\"", "disabled": true}),
                json!({"content": "\"kept-disabled\"", "disabled": true}),
            ],
        ));
        mock.expect(Method::Patch, ZONE_URL)
            .json_body(&replaced(
                60,
                &[
                    txt("\"token\""),
                    json!({"content": "\"kept-disabled\"", "disabled": true}),
                ],
            ))
            .respond(MockResponse::new(204));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.present(&record("token")), Ok(()));
    }

    #[test]
    fn cleanup_writes_back_the_other_values_with_the_sets_ttl() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL).respond(zone(
            300,
            &[
                txt("\"apex-value\""),
                txt("\"wildcard-value\""),
                json!({"content": "\"disabled\"", "disabled": true}),
            ],
        ));
        mock.expect(Method::Patch, ZONE_URL)
            .json_body(&replaced(
                300,
                &[
                    txt("\"apex-value\""),
                    json!({"content": "\"disabled\"", "disabled": true}),
                ],
            ))
            .respond(MockResponse::new(204));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.cleanup(&record("wildcard-value")), Ok(()));
        assert_eq!(
            messages(),
            ["_acme-challenge.www.example.test.: removed the value from the TXT set (2 values left)"]
        );
    }

    #[test]
    fn cleanup_of_the_last_value_deletes_the_set() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL)
            .respond(zone(60, &[txt("\"token\"")]));
        mock.expect(Method::Patch, ZONE_URL)
            .json_body(&json!({"rrsets": [{"name": NAME, "type": "TXT", "changetype": "DELETE"}]}))
            .respond(MockResponse::new(204));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
        assert_eq!(
            messages(),
            ["_acme-challenge.www.example.test.: removed the value, the last of the TXT set"]
        );
    }

    #[test]
    fn cleanup_of_what_is_not_there_succeeds_without_writing() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL)
            .respond(zone(60, &[txt("\"other\"")]));
        mock.expect(Method::Get, ZONE_URL).respond(zone(60, &[]));
        mock.expect(Method::Get, ZONE_URL).respond(pdns_error(404, "Not Found"));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "value absent");
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "no TXT set");
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "no zone");
        assert!(mock.requests().iter().all(|r| r.method == Method::Get));
        let logs = testkit::logs();
        assert_eq!(logs.len(), 3);
        assert_eq!(
            (logs[2].level, logs[2].message.as_str()),
            (
                Level::Warn,
                "PowerDNS server \"localhost\" has no zone example.test. (GET http://127.0.0.1:8081 answered 404 \
                 Not Found: {\"error\": \"Not Found\"}): nothing to clean up"
            )
        );
    }

    #[test]
    fn powerdns_answers_map_to_what_the_host_should_do() {
        let unauthorized =
            || pdns_error(401, "Unauthorized").header("www-authenticate", "X-API-Key realm=\"PowerDNS\"");
        let cases = [
            (
                unauthorized(),
                None,
                PluginError::Auth(
                    "GET http://127.0.0.1:8081 answered 401 Unauthorized: {\"error\": \"Unauthorized\"} (check \
                     config.api_key against the server's api-key)"
                        .into(),
                ),
            ),
            (
                pdns_error(404, "Not Found"),
                None,
                PluginError::NotFound(
                    "PowerDNS server \"localhost\" has no zone example.test. (GET http://127.0.0.1:8081 answered \
                     404 Not Found: {\"error\": \"Not Found\"})"
                        .into(),
                ),
            ),
            (
                zone(60, &[]),
                Some(pdns_error(
                    422,
                    "RRset _acme-challenge.www.example.test. IN TXT: Name is out of zone",
                )),
                PluginError::Permanent(
                    "PowerDNS refused the change to the TXT set at _acme-challenge.www.example.test.: RRset \
                     _acme-challenge.www.example.test. IN TXT: Name is out of zone"
                        .into(),
                ),
            ),
            (
                zone(60, &[]),
                Some(MockResponse::new(422).body("<html>unprocessable</html>")),
                PluginError::Permanent(
                    "PATCH http://127.0.0.1:8081 answered 422 Unprocessable Content: <html>unprocessable</html>".into(),
                ),
            ),
            (
                zone(60, &[]),
                Some(unauthorized()),
                PluginError::Auth(
                    "PATCH http://127.0.0.1:8081 answered 401 Unauthorized: {\"error\": \"Unauthorized\"} (check \
                     config.api_key against the server's api-key)"
                        .into(),
                ),
            ),
            (
                pdns_error(400, "Bad Request"),
                None,
                PluginError::Permanent(
                    "GET http://127.0.0.1:8081 answered 400 Bad Request: {\"error\": \"Bad Request\"}".into(),
                ),
            ),
            (
                pdns_error(500, "GSQLBackend unable to list records"),
                None,
                PluginError::Transient(
                    "GET http://127.0.0.1:8081 answered 500 Internal Server Error: {\"error\": \"GSQLBackend unable \
                     to list records\"}"
                        .into(),
                ),
            ),
            (
                zone(60, &[]),
                Some(MockResponse::new(503)),
                PluginError::Transient("PATCH http://127.0.0.1:8081 answered 503 Service Unavailable".into()),
            ),
            (
                MockResponse::connection_refused(),
                None,
                PluginError::Transient("GET http://127.0.0.1:8081: connection refused".into()),
            ),
            (
                MockResponse::request_denied(),
                None,
                PluginError::Transient(
                    "GET http://127.0.0.1:8081: HTTP request denied: the destination is not granted to this plugin \
                     instance"
                        .into(),
                ),
            ),
            (
                MockResponse::new(200).body("<html>a proxy's login page</html>"),
                None,
                PluginError::Permanent(
                    "GET http://127.0.0.1:8081 answered 200 with a body that is not the expected JSON (expected \
                     value at line 1 column 1): <html>a proxy's login page</html>"
                        .into(),
                ),
            ),
        ];
        for (read, written, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Get, ZONE_URL).respond(read);
            if let Some(written) = written {
                mock.expect(Method::Patch, ZONE_URL).respond(written);
            }
            let got = testkit::dns_solver::<PowerDns>(config()).present(&record("token"));
            assert_eq!(got, Err(expected));
            assert!(!got.expect_err("an error").to_string().contains(KEY), "the key leaked");
        }
    }

    #[test]
    fn cleanup_reports_failures_except_a_zone_that_is_gone() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONE_URL)
            .respond(pdns_error(401, "Unauthorized"));
        mock.expect(Method::Get, ZONE_URL)
            .times(3)
            .respond(zone(60, &[txt("\"token\"")]));
        mock.expect(Method::Patch, ZONE_URL).respond(pdns_error(
            422,
            "RRset _acme-challenge.www.example.test. IN TXT: Conflicts with pre-existing RRset",
        ));
        mock.expect(Method::Patch, ZONE_URL).respond(MockResponse::timeout());
        // Deleted between the read and the write.
        mock.expect(Method::Patch, ZONE_URL)
            .respond(pdns_error(404, "Not Found"));
        let dns = testkit::dns_solver::<PowerDns>(config());
        assert!(matches!(dns.cleanup(&record("token")), Err(PluginError::Auth(_))));
        assert_eq!(
            dns.cleanup(&record("token")),
            Err(PluginError::Permanent(
                "PowerDNS refused the change to the TXT set at _acme-challenge.www.example.test.: RRset \
                 _acme-challenge.www.example.test. IN TXT: Conflicts with pre-existing RRset"
                    .into()
            ))
        );
        assert_eq!(
            dns.cleanup(&record("token")),
            Err(PluginError::Transient(
                "PATCH http://127.0.0.1:8081: no complete answer within 10.0 s".into()
            ))
        );
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
    }

    /// The parts of a PowerDNS Authoritative Server's HTTP API this plugin uses, answering as
    /// pdns-server 4.7.3 answers (each answer below was checked against one): `X-API-Key`, zone
    /// ids with or without the trailing dot and `=XX` escapes, case-insensitive names, PATCH with
    /// REPLACE (the whole set, TTL required, TXT content quoted, no duplicates; no records
    /// deletes) and DELETE (also of a set that is not there), plain-text 401/404, 422 with
    /// `{"error": ...}`.
    struct FakePowerDns {
        /// TXT sets by zone (lower case, trailing dot), then by name (lower case, trailing dot).
        zones: BTreeMap<String, BTreeMap<String, (u32, Vec<Record>)>>,
    }

    impl FakePowerDns {
        fn new() -> FakePowerDns {
            FakePowerDns {
                zones: BTreeMap::from([("example.test.".to_string(), BTreeMap::new())]),
            }
        }

        fn handle(&mut self, request: &RecordedRequest) -> MockResponse {
            // Errors are JSON to clients that accept it (as this plugin does), plain text otherwise.
            let wants_json = request.header("accept").is_some_and(|a| a.contains("application/json"));
            let text = |status: u16, error: &str| match wants_json {
                true => pdns_error(status, error),
                false => MockResponse::new(status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(error.to_string()),
            };
            if request.header("x-api-key") != Some(KEY) {
                return text(401, "Unauthorized").header("www-authenticate", "X-API-Key realm=\"PowerDNS\"");
            }
            let Some(id) = request.path().strip_prefix("/api/v1/servers/localhost/zones/") else {
                return text(404, "Not Found");
            };
            let zone = unescape_zone_id(id);
            let Some(sets) = self.zones.get_mut(&zone) else {
                return text(404, "Not Found");
            };
            match request.method {
                Method::Get => {
                    let mut rrsets = vec![json!({"comments": [], "name": zone, "type": "SOA", "ttl": 3600,
                        "records": [txt(&format!("ns1.{zone} hostmaster.{zone} 1 10800 3600 604800 3600"))]})];
                    for (name, (ttl, records)) in sets.iter() {
                        rrsets
                            .push(json!({"comments": [], "name": name, "type": "TXT", "ttl": ttl, "records": records}));
                    }
                    MockResponse::json(
                        200,
                        &json!({"id": id, "name": zone, "kind": "Native", "rrsets": rrsets}),
                    )
                }
                Method::Patch => {
                    let Ok(body) = request.json::<Value>() else {
                        return text(400, "Bad Request");
                    };
                    let Some(changes) = body["rrsets"].as_array() else {
                        return text(400, "Bad Request");
                    };
                    // All or nothing, as PowerDNS applies a PATCH in one transaction.
                    let mut changed = sets.clone();
                    for change in changes {
                        if let Err(error) = apply(&zone, &mut changed, change) {
                            return pdns_error(422, &error);
                        }
                    }
                    *sets = changed;
                    MockResponse::new(204)
                }
                _ => text(405, "Method Not Allowed"),
            }
        }

        /// The TXT values at `fqdn` that the server answers queries with: enabled records only.
        fn served(&self, fqdn: &str) -> Vec<String> {
            let name = format!("{}.", fqdn.to_ascii_lowercase());
            self.zones
                .values()
                .filter_map(|sets| sets.get(&name))
                .flat_map(|(_, records)| records.iter().filter(|r| !r.disabled))
                .map(|r| {
                    // The plugin writes one quoted string; unquote it independently of unquote_txt.
                    let inner = r.content.strip_prefix('"').and_then(|c| c.strip_suffix('"'));
                    inner.unwrap_or(&r.content).replace("\\\"", "\"").replace("\\\\", "\\")
                })
                .collect()
        }
    }

    fn unescape_zone_id(id: &str) -> String {
        let mut name = String::new();
        let mut rest = id;
        while let Some((before, after)) = rest.split_once('=') {
            name.push_str(before);
            let code = after
                .get(..2)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .unwrap_or(b'?');
            name.push(char::from(code));
            rest = after.get(2..).unwrap_or("");
        }
        name.push_str(rest);
        absolute(&name.to_ascii_lowercase())
    }

    /// One rrset change, with PowerDNS 4.7's checks and messages.
    fn apply(zone: &str, sets: &mut BTreeMap<String, (u32, Vec<Record>)>, change: &Value) -> Result<(), String> {
        let name = change["name"].as_str().unwrap_or_default();
        if !name.ends_with('.') {
            return Err(format!("DNS Name '{name}' is not canonical"));
        }
        let key = name.to_ascii_lowercase();
        if key != zone && !key.ends_with(&format!(".{zone}")) {
            return Err(format!("RRset {name} IN TXT: Name is out of zone"));
        }
        if change["type"] != "TXT" {
            return Err("this fake knows TXT sets only".into());
        }
        match change["changetype"].as_str() {
            Some("DELETE") => {
                sets.remove(&key);
                Ok(())
            }
            Some("REPLACE") => {
                let ttl = change["ttl"]
                    .as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or("Key 'ttl' not an Integer or not present")?;
                let records: Vec<Record> =
                    serde_json::from_value(change["records"].clone()).map_err(|e| format!("records: {e}"))?;
                for (i, r) in records.iter().enumerate() {
                    if !(r.content.len() >= 2 && r.content.starts_with('"') && r.content.ends_with('"')) {
                        return Err(format!(
                            "Record {name}/TXT '{}': Not in expected format (parsed as '\"{}\"')",
                            r.content, r.content
                        ));
                    }
                    if records[..i].iter().any(|earlier| earlier.content == r.content) {
                        return Err(format!(
                            "Duplicate record in RRset {name} IN TXT with content \"{}\"",
                            r.content
                        ));
                    }
                }
                if records.is_empty() {
                    sets.remove(&key);
                } else {
                    sets.insert(key, (ttl, records));
                }
                Ok(())
            }
            _ => Err("Changetype not understood".into()),
        }
    }

    /// Installs a `MockHttp` answered by `fake`.
    fn serve(fake: &Rc<RefCell<FakePowerDns>>) -> MockHttp {
        let mock = MockHttp::install();
        let state = Rc::clone(fake);
        mock.fallback(move |request| state.borrow_mut().handle(request));
        mock
    }

    #[test]
    fn conforms_against_a_powerdns_server() {
        let fake = Rc::new(RefCell::new(FakePowerDns::new()));
        let (handler, reader) = (Rc::clone(&fake), Rc::clone(&fake));
        let provider = conformance::FakeDnsProvider::new(
            move |request| handler.borrow_mut().handle(request),
            move |fqdn| reader.borrow().served(fqdn),
        );
        conformance::dns_solver::<PowerDns>(&config(), "example.test", provider);
    }

    #[test]
    fn records_of_others_at_the_name_survive_a_present_and_cleanup() {
        let others = vec![
            Record {
                content: "\"someone-else\"".into(),
                disabled: false,
            },
            Record {
                content: "\"kept\" \"disabled\"".into(),
                disabled: true,
            },
        ];
        let mut fake = FakePowerDns::new();
        fake.zones
            .get_mut("example.test.")
            .expect("zone")
            .insert(NAME.into(), (600, others.clone()));
        let fake = Rc::new(RefCell::new(fake));
        let _mock = serve(&fake);

        let dns = testkit::dns_solver::<PowerDns>(config());
        assert_eq!(dns.present(&record("token")), Ok(()));
        assert_eq!(
            fake.borrow().served("_acme-challenge.www.example.test"),
            ["someone-else", "token"]
        );
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
        // The records are back as they were, the disabled one included; the set has one TTL,
        // and present gave it the challenge's.
        assert_eq!(fake.borrow().zones["example.test."][NAME], (60, others));
    }

    #[test]
    fn the_fake_answers_as_powerdns_does() {
        let fake = Rc::new(RefCell::new(FakePowerDns::new()));
        let _mock = serve(&fake);
        let send = |request: http::Request| {
            let answer = request.send().expect("answered");
            (answer.status(), answer.text())
        };
        let patch = |body: Value| {
            send(
                http::patch(ZONE_URL)
                    .header("X-API-Key", KEY)
                    .json(&body)
                    .expect("JSON"),
            )
        };

        assert_eq!(send(http::get(ZONE_URL)), (401, "Unauthorized".into()));
        let other_zone = "http://127.0.0.1:8081/api/v1/servers/localhost/zones/other.test.";
        assert_eq!(
            send(http::get(other_zone).header("X-API-Key", KEY)),
            (404, "Not Found".into())
        );
        assert_eq!(
            send(
                http::get(other_zone)
                    .header("X-API-Key", KEY)
                    .header("Accept", "application/json")
            ),
            (404, "{\"error\": \"Not Found\"}".into())
        );
        assert_eq!(
            patch(replaced(60, &[txt("token")])),
            (
                422,
                "{\"error\": \"Record _acme-challenge.www.example.test./TXT 'token': Not in expected format \
                 (parsed as '\\\"token\\\"')\"}"
                    .into()
            )
        );
        assert_eq!(patch(replaced(60, &[txt("\"a\""), txt("\"a\"")])).0, 422);
        assert_eq!(
            patch(
                json!({"rrsets": [{"name": "x.other.test.", "type": "TXT", "ttl": 1, "changetype": "REPLACE", "records": []}]})
            ),
            (
                422,
                "{\"error\": \"RRset x.other.test. IN TXT: Name is out of zone\"}".into()
            )
        );
        assert_eq!(
            patch(json!({"rrsets": [{"name": NAME, "type": "TXT", "changetype": "REPLACE", "records": []}]})),
            (422, "{\"error\": \"Key 'ttl' not an Integer or not present\"}".into())
        );
        assert_eq!(patch(delete(NAME)), (204, String::new()), "deleting nothing is fine");
        assert_eq!(patch(replaced(60, &[txt("\"token\"")])).0, 204);
        // The zone id without its trailing dot, in upper case, with an escape: the same zone.
        let zone_url = "http://127.0.0.1:8081/api/v1/servers/localhost/zones/EXAMPLE=2Etest";
        let (status, body) = send(http::get(zone_url).header("X-API-Key", KEY));
        assert_eq!(status, 200);
        assert!(body.contains("\"token\\\""), "{body}");
        assert_eq!(fake.borrow().served("_ACME-challenge.www.example.test"), ["token"]);
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::dns_solver::<PowerDns>(config.to_string()).validate_config();
        for good in [
            json!({"api_url": API, "api_key": KEY}),
            json!({"api_url": "https://pdns.internal/api/v1", "api_key": KEY, "server_id": "localhost", "ttl": 60}),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let cases = [
            (json!({"api_key": KEY}), "config.api_url: required"),
            (json!({"api_url": API}), "config.api_key: required"),
            (
                json!({"api_url": "127.0.0.1:8081", "api_key": KEY}),
                "config.api_url: must start with http:// or https://",
            ),
            (
                json!({"api_url": "ftp://pdns", "api_key": KEY}),
                "config.api_url: must start with http:// or https://",
            ),
            (
                json!({"api_url": "http://", "api_key": KEY}),
                "config.api_url: has no host",
            ),
            (
                json!({"api_url": "http://admin:pw@pdns:8081", "api_key": KEY}),
                "config.api_url: is not a plain URL",
            ),
            (
                json!({"api_url": "http://pdns:8081/?api-key=x", "api_key": KEY}),
                "config.api_url: must be the API's base URL",
            ),
            (json!({"api_url": API, "api_key": ""}), "config.api_key: must be"),
            (
                json!({"api_url": API, "api_key": "a\r\nX-Other: b"}),
                "config.api_key: must be",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "server_id": "local/host"}),
                "config.server_id: must be a server id",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "server_id": ".."}),
                "config.server_id: must be a server id",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "ttl": 0}),
                "config.ttl: must be between 1 and 2147483647",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "ttl": 2_147_483_648u64}),
                "config.ttl: must be between 1",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "ttl": "60"}),
                "config.ttl: invalid type",
            ),
            (
                json!({"api_url": API, "api_key": KEY, "zone": "x"}),
                "config.zone: unknown key",
            ),
        ];
        for (config, expected) in cases {
            let message = testkit::assert_invalid_config(check(config), expected);
            assert!(!message.contains(KEY), "the key leaked: {message}");
        }
        // The same checks run before every call, so nothing is sent with a bad configuration.
        let _mock = MockHttp::install();
        let bad = testkit::dns_solver::<PowerDns>(json!({"api_url": API, "api_key": KEY, "ttl": 0}).to_string());
        assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
        assert!(matches!(bad.cleanup(&record("v")), Err(PluginError::InvalidConfig(_))));
    }

    #[test]
    fn zone_ids_are_escaped_as_powerdns_escapes_them() {
        assert_eq!(zone_id("example.com."), "example.com.");
        assert_eq!(zone_id("xn--bcher-kva.example."), "xn--bcher-kva.example.");
        assert_eq!(zone_id("_x.example.com."), "=5Fx.example.com.");
        assert_eq!(zone_id("0/26.2.0.192.in-addr.arpa."), "0=2F26.2.0.192.in-addr.arpa.");
        assert_eq!(zone_id("."), "=2E");
        assert_eq!(absolute("example.com"), "example.com.");
        assert_eq!(absolute("example.com."), "example.com.");
        assert_eq!(base_url("http://pdns:8081/"), "http://pdns:8081");
        assert_eq!(base_url("http://pdns:8081/api/v1/"), "http://pdns:8081");
        assert_eq!(base_url("https://proxy.internal/pdns"), "https://proxy.internal/pdns");
    }

    #[test]
    fn txt_content_is_quoted_and_read_in_zone_file_format() {
        assert_eq!(
            quote("LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"),
            "\"LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM\""
        );
        assert_eq!(quote("say \"hi\" \\ bye"), r#""say \"hi\" \\ bye""#);
        assert_eq!(quote("café\n"), r#""caf\195\169\010""#);
        // What the plugin writes, it reads back (the reading itself is the SDK's, tested there).
        for value in ["token", "say \"hi\" \\ bye", "café\n", ""] {
            assert_eq!(
                unquote_txt(&quote(value)).as_deref(),
                Some(value.as_bytes()),
                "{value:?}"
            );
        }
        let stored = Record {
            content: "\"tok\" \"en\"".into(),
            disabled: true,
        };
        assert!(holds(&stored, "token"));
        assert!(!holds(&stored, "tok"));
    }
}
