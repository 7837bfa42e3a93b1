//! A certctl DNS-01 solver for Cloudflare DNS, through the Cloudflare API v4: one TXT record per
//! challenge value, created only when no record at the name has the value yet, and deleted by id
//! on cleanup. See README.md.

use std::fmt::{self, Write as _};
use std::time::Duration;

use certctl_sdk::dns::unquote_txt;
use certctl_sdk::http::{self, Response};
use certctl_sdk::{DnsRecord, DnsSolver, PluginError, log};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::json;

const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// Cloudflare's TTLs: 1 means "automatic"; otherwise 60 to 86400 seconds, from 30 on Enterprise
/// zones.
const DEFAULT_TTL: u32 = 120;
const AUTOMATIC_TTL: u32 = 1;
const MIN_TTL: u32 = 30;
const MAX_TTL: u32 = 86_400;

/// How long to wait for each answer: a call makes up to three requests, and the host's default
/// limit for a whole call is 30 s.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Records per page when listing the TXT records at a name, and the most pages read (a name
/// with more than 2000 TXT records is not a challenge name).
const PER_PAGE: u32 = 100;
const MAX_PAGES: u32 = 20;

/// Error codes for a token that is wrong or may not do this: 6003 invalid request headers (a
/// malformed token), 9109 unauthorized to access requested resource, 10000 authentication
/// error, 10001 unable to authenticate request.
const AUTH_CODES: &[u64] = &[6003, 9109, 10000, 10001];
/// 81057 the record already exists, 81058 an identical record already exists.
const EXISTS_CODES: &[u64] = &[81057, 81058];
/// 7003 "could not route to ..., perhaps your object identifier is invalid?": no such zone id.
const NO_ROUTE_CODE: u64 = 7003;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// An API token with DNS:Edit on the zone, and Zone:Read unless `zone_id` is set.
    api_token: String,
    /// The zone's id: skips looking the zone up by name.
    #[serde(default)]
    zone_id: Option<String>,
    /// The API's base URL.
    #[serde(default)]
    api_url: Option<String>,
    /// TTL of the records: 1 (automatic) or 30 to 86400 seconds.
    #[serde(default)]
    ttl: Option<u32>,
}

struct Cloudflare;

impl DnsSolver for Cloudflare {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let token = &config.api_token;
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PluginError::invalid_config(
                "config.api_token: must be an API token (not empty, no spaces or line breaks)",
            ));
        }
        if let Some(id) = &config.zone_id
            && !(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(PluginError::invalid_config(
                "config.zone_id: must be the zone's ID (32 hexadecimal digits, on the zone's Overview page), not \
                 its name",
            ));
        }
        if let Some(url) = &config.api_url {
            // https://, or http:// to this machine only (a local test server).
            http::check_endpoint("config.api_url", url)?;
            if url.contains(['?', '#']) {
                return Err(PluginError::invalid_config(
                    "config.api_url: must be the API's base URL, without a query or fragment",
                ));
            }
        }
        if let Some(ttl) = config.ttl
            && ttl != AUTOMATIC_TTL
            && !(MIN_TTL..=MAX_TTL).contains(&ttl)
        {
            return Err(PluginError::invalid_config(format!(
                "config.ttl: must be 1 (automatic) or {MIN_TTL} to {MAX_TTL} seconds (60 and up unless the zone is \
                 on an Enterprise plan)"
            )));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let api = Api::new(config);
        let zone = api.zone(&record.zone)?;
        let name = record.fqdn.trim_end_matches('.');
        if api
            .txt_records(&zone, name)?
            .iter()
            .any(|r| holds(&r.content, &record.value))
        {
            log::info(format!("{name}: a TXT record with the value exists already"));
            return Ok(());
        }
        let ttl = config.ttl.unwrap_or(DEFAULT_TTL);
        if api.create(&zone, name, &record.value, ttl)? {
            log::info(format!("{name}: created a TXT record with the value in zone {zone}"));
        } else {
            log::info(format!("{name}: Cloudflare has a TXT record with the value already"));
        }
        Ok(())
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        match remove(&Api::new(config), record) {
            // No zone, no record: what cleanup is for is done.
            Err(PluginError::NotFound(message)) => {
                log::warn(format!("{message}: nothing to clean up"));
                Ok(())
            }
            other => other,
        }
    }
}

certctl_sdk::register_dns_solver!(Cloudflare);

fn remove(api: &Api<'_>, record: &DnsRecord) -> Result<(), PluginError> {
    let zone = api.zone(&record.zone)?;
    let name = record.fqdn.trim_end_matches('.');
    let records = api.txt_records(&zone, name)?;
    let matching: Vec<&TxtRecord> = records.iter().filter(|r| holds(&r.content, &record.value)).collect();
    if matching.is_empty() {
        log::info(format!("{name}: no TXT record has the value: nothing to remove"));
        return Ok(());
    }
    for found in &matching {
        api.delete(&zone, &found.id)?;
    }
    log::info(format!(
        "{name}: deleted {} with the value, {} left at the name",
        txt_records(matching.len()),
        txt_records(records.len() - matching.len())
    ));
    Ok(())
}

fn txt_records(n: usize) -> String {
    match n {
        1 => "1 TXT record".into(),
        n => format!("{n} TXT records"),
    }
}

/// A zone and its id.
struct Zone {
    name: String,
    id: String,
}

impl fmt::Display for Zone {
    /// `example.com (id 023e105f4ecef8ad9ca31a8372d0c353)`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (id {})", self.name, self.id)
    }
}

/// Cloudflare's answer: `{"success", "errors", "messages", "result", "result_info"}`.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

/// One of Cloudflare's `errors`, with the more precise ones it may chain.
#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_chain: Vec<ApiMessage>,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: u32,
}

#[derive(Deserialize)]
struct ZoneAnswer {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct TxtRecord {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: String,
}

struct Api<'a> {
    config: &'a Config,
    /// The base URL without a trailing `/`.
    base: &'a str,
}

impl<'a> Api<'a> {
    fn new(config: &'a Config) -> Api<'a> {
        let base = config.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        Api {
            config,
            base: base.trim_end_matches('/'),
        }
    }

    fn send(&self, request: http::Request) -> Result<Response, PluginError> {
        request
            .bearer_auth(&self.config.api_token)
            .header("Accept", "application/json")
            .timeout(TIMEOUT)
            .send()
    }

    /// The zone's id: configured, or looked up by name (`GET /zones?name=`), which needs
    /// Zone:Read.
    fn zone(&self, name: &str) -> Result<Zone, PluginError> {
        let name = name.trim_end_matches('.');
        if let Some(id) = &self.config.zone_id {
            return Ok(Zone {
                name: name.to_string(),
                id: id.clone(),
            });
        }
        let url = format!("{}/zones?name={}", self.base, encode(name));
        let response = self.send(http::get(url))?;
        let zones: Vec<ZoneAnswer> = check(&response, name)?.result.unwrap_or_default();
        match zones.into_iter().find(|z| z.name.eq_ignore_ascii_case(name)) {
            Some(zone) => Ok(Zone {
                name: name.to_string(),
                id: zone.id,
            }),
            None => Err(PluginError::not_found(format!(
                "Cloudflare zone {name}: the API token sees no zone of that name (it needs Zone:Read on it, or set \
                 config.zone_id)"
            ))),
        }
    }

    /// The TXT records at `name`, by the name filter and checked again here.
    fn txt_records(&self, zone: &Zone, name: &str) -> Result<Vec<TxtRecord>, PluginError> {
        let mut records = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}/zones/{}/dns_records?type=TXT&name={}&per_page={PER_PAGE}&page={page}",
                self.base,
                encode(&zone.id),
                encode(name)
            );
            let response = self.send(http::get(url))?;
            let answer: Envelope<Vec<TxtRecord>> = check(&response, &zone.to_string())?;
            let pages = answer.result_info.map_or(1, |info| info.total_pages);
            records.extend(
                answer
                    .result
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(name)),
            );
            if page >= pages {
                break;
            }
        }
        Ok(records)
    }

    /// Creates the record; `false` when Cloudflare says it has it already.
    fn create(&self, zone: &Zone, name: &str, value: &str, ttl: u32) -> Result<bool, PluginError> {
        let url = format!("{}/zones/{}/dns_records", self.base, encode(&zone.id));
        let body = json!({"type": "TXT", "name": name, "content": quote(value), "ttl": ttl});
        let response = self.send(http::post(url).json(&body)?)?;
        if !response.is_success() && error_codes(&response).iter().any(|c| EXISTS_CODES.contains(c)) {
            return Ok(false);
        }
        check::<IgnoredAny>(&response, &zone.to_string())?;
        Ok(true)
    }

    /// Deletes a record by id; one that is gone already (404) is fine.
    fn delete(&self, zone: &Zone, id: &str) -> Result<(), PluginError> {
        let url = format!("{}/zones/{}/dns_records/{}", self.base, encode(&zone.id), encode(id));
        let response = self.send(http::delete(url))?;
        if response.status() == 404 {
            log::debug(format!("record {id} was deleted already"));
            return Ok(());
        }
        check::<IgnoredAny>(&response, &zone.to_string())?;
        Ok(())
    }
}

/// A 2xx answer with `"success": true`, or the error Cloudflare's answer means (see
/// [`refusal`]).
fn check<T: DeserializeOwned>(response: &Response, zone: &str) -> Result<Envelope<T>, PluginError> {
    if let Some(error) = http::status_error(response) {
        return Err(refusal(response, error, zone));
    }
    let envelope: Envelope<T> = response.json()?;
    if !envelope.success {
        return Err(PluginError::permanent(format!(
            "Cloudflare answered {} without success: {}",
            response.status(),
            describe(&envelope.errors)
        )));
    }
    Ok(envelope)
}

/// What a refusal means, from the status and Cloudflare's error codes: 429 waits for
/// `Retry-After`, 408 and 5xx retry; 401, 403 or an authentication code is `auth`; 404 or "no
/// route" (a zone id that is not one) is `not-found` naming the zone; 400 is `permanent` with
/// Cloudflare's errors; anything else as [`http::status_error`] says.
fn refusal(response: &Response, error: PluginError, zone: &str) -> PluginError {
    let errors = serde_json::from_slice::<Envelope<IgnoredAny>>(response.body())
        .map(|envelope| envelope.errors)
        .unwrap_or_default();
    let status = response.status();
    let has = |codes: &[u64]| errors.iter().any(|e| codes.contains(&e.code));
    let detail = match errors.is_empty() {
        true => error.message(),
        false => format!("Cloudflare answered {status}: {}", describe(&errors)),
    };
    match status {
        408 | 429 | 500..=599 => error,
        401 | 403 => token_refused(&detail, zone),
        _ if has(AUTH_CODES) => token_refused(&detail, zone),
        404 => PluginError::not_found(format!("Cloudflare zone {zone}: {detail}")),
        _ if has(&[NO_ROUTE_CODE]) => PluginError::not_found(format!("Cloudflare zone {zone}: {detail}")),
        400 if !errors.is_empty() => {
            PluginError::permanent(format!("Cloudflare refused the change in zone {zone}: {detail}"))
        }
        _ => error,
    }
}

fn token_refused(detail: &str, zone: &str) -> PluginError {
    PluginError::auth(format!(
        "Cloudflare zone {zone}: {detail} (the API token needs DNS:Edit on the zone, and Zone:Read unless \
         config.zone_id is set)"
    ))
}

/// The codes of Cloudflare's `errors` in an answer.
fn error_codes(response: &Response) -> Vec<u64> {
    serde_json::from_slice::<Envelope<IgnoredAny>>(response.body())
        .map(|envelope| envelope.errors.iter().map(|e| e.code).collect())
        .unwrap_or_default()
}

/// `81058 An identical record already exists.; 6003 Invalid request headers (6111 Invalid
/// format for Authorization header)`.
fn describe(errors: &[ApiMessage]) -> String {
    let mut text = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{} {}", error.code, error.message);
        if !error.error_chain.is_empty() {
            let _ = write!(text, " ({})", describe(&error.error_chain));
        }
    }
    if text.is_empty() {
        text.push_str("no errors given");
    }
    text
}

/// `text` for a URL's path segment or query value: bytes other than letters, digits and
/// `-._~` percent-encoded.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// The value as TXT content the way Cloudflare documents it: one quoted character-string, `"`
/// and `\` escaped (Cloudflare splits strings longer than 255 bytes itself).
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Whether TXT content holds `value`: quoted character-strings (`"abc" "def"` is `abcdef`) as
/// Cloudflare documents content now, or the bare value, as records created before that have it.
fn holds(content: &str, value: &str) -> bool {
    match unquote_txt(content) {
        Some(text) => text == value.as_bytes(),
        None => content == value,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use certctl_sdk::http::Method;
    use certctl_sdk::log::Level;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse, RecordedRequest, conformance};
    use serde::Serialize;
    use serde_json::Value;

    use super::*;

    const TOKEN: &str = "cf-test-token-0123456789abcdefghijklmnop";
    const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
    const NAME: &str = "_acme-challenge.www.example.test";
    const ZONES_URL: &str = "https://api.cloudflare.com/client/v4/zones?name=example.test";
    const RECORDS_URL: &str = "https://api.cloudflare.com/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records";

    fn list_url(page: u32) -> String {
        format!("{RECORDS_URL}?type=TXT&name={NAME}&per_page=100&page={page}")
    }

    fn config(extra: Value) -> String {
        let mut config = json!({"api_token": TOKEN});
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        config.to_string()
    }

    fn record(value: &str) -> DnsRecord {
        testkit::dns_record("example.test", NAME, value)
    }

    /// A successful answer in Cloudflare's envelope.
    fn answer(result: Value) -> MockResponse {
        MockResponse::json(
            200,
            &json!({"success": true, "errors": [], "messages": [], "result": result}),
        )
    }

    /// A list answer, page `page` of `pages`.
    fn listed(result: Vec<Value>, page: u32, pages: u32) -> MockResponse {
        MockResponse::json(
            200,
            &json!({"success": true, "errors": [], "messages": [], "result": result,
                "result_info": {"page": page, "per_page": 100, "count": result.len(), "total_count": result.len(), "total_pages": pages}}),
        )
    }

    /// A refusal in Cloudflare's envelope.
    fn refused(status: u16, errors: Value) -> MockResponse {
        MockResponse::json(
            status,
            &json!({"success": false, "errors": errors, "messages": [], "result": null}),
        )
    }

    fn zone_found() -> MockResponse {
        listed(
            vec![json!({"id": ZONE_ID, "name": "example.test", "status": "active", "paused": false, "type": "full"})],
            1,
            1,
        )
    }

    fn txt_record(id: &str, content: &str) -> Value {
        json!({
            "id": id, "zone_id": ZONE_ID, "zone_name": "example.test", "name": NAME, "type": "TXT",
            "content": content, "proxiable": false, "proxied": false, "ttl": 120, "settings": {}, "meta": {},
            "comment": null, "tags": [], "created_on": "2026-11-28T10:00:00Z", "modified_on": "2026-11-28T10:00:00Z"
        })
    }

    fn messages() -> Vec<String> {
        testkit::logs().into_iter().map(|l| l.message).collect()
    }

    #[test]
    fn present_finds_the_zone_and_creates_the_record() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONES_URL)
            .header("authorization", format!("Bearer {TOKEN}"))
            .respond(zone_found());
        mock.expect(Method::Get, list_url(1))
            .header("authorization", format!("Bearer {TOKEN}"))
            .respond(listed(vec![txt_record("a1", "\"apex-value\"")], 1, 1));
        mock.expect(Method::Post, RECORDS_URL)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .json_body(&json!({"type": "TXT", "name": NAME, "content": "\"wildcard-value\"", "ttl": 120}))
            .respond(answer(txt_record("b2", "\"wildcard-value\"")));

        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert_eq!(dns.present(&record("wildcard-value")), Ok(()));
        assert!(mock.requests().iter().all(|r| r.timeout == Some(TIMEOUT)));
        assert_eq!(
            messages(),
            [format!(
                "{NAME}: created a TXT record with the value in zone example.test (id {ZONE_ID})"
            )]
        );
    }

    #[test]
    fn a_configured_zone_id_api_url_and_ttl_are_used() {
        let mock = MockHttp::install();
        let records = format!("http://127.0.0.1:8787/client/v4/zones/{ZONE_ID}/dns_records");
        mock.expect(
            Method::Get,
            format!("{records}?type=TXT&name={NAME}&per_page=100&page=1"),
        )
        .respond(listed(vec![], 1, 0));
        mock.expect(Method::Post, records)
            .json_body(&json!({"type": "TXT", "name": NAME, "content": "\"token\"", "ttl": 1}))
            .respond(answer(txt_record("c3", "\"token\"")));
        let dns = testkit::dns_solver::<Cloudflare>(config(
            json!({"zone_id": ZONE_ID, "api_url": "http://127.0.0.1:8787/client/v4/", "ttl": 1}),
        ));
        assert_eq!(dns.present(&record("token")), Ok(()));
    }

    #[test]
    fn present_of_a_value_already_there_creates_nothing() {
        for content in ["\"token\"", "\"tok\" \"en\"", "token"] {
            let mock = MockHttp::install();
            mock.expect(Method::Get, ZONES_URL).respond(zone_found());
            mock.expect(Method::Get, list_url(1)).respond(listed(
                vec![txt_record("a1", "\"other\""), txt_record("b2", content)],
                1,
                1,
            ));
            let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
            assert_eq!(dns.present(&record("token")), Ok(()), "{content}");
            assert_eq!(
                testkit::take_logs()[0].message,
                format!("{NAME}: a TXT record with the value exists already")
            );
        }
    }

    #[test]
    fn a_record_that_appeared_meanwhile_is_success() {
        for (code, message) in [
            (81058, "An identical record already exists."),
            (81057, "Record already exists."),
        ] {
            let mock = MockHttp::install();
            mock.expect(Method::Get, ZONES_URL).respond(zone_found());
            mock.expect(Method::Get, list_url(1)).respond(listed(vec![], 1, 1));
            mock.expect(Method::Post, RECORDS_URL)
                .respond(refused(400, json!([{"code": code, "message": message}])));
            let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
            assert_eq!(dns.present(&record("token")), Ok(()));
            assert_eq!(
                testkit::take_logs()[0].message,
                format!("{NAME}: Cloudflare has a TXT record with the value already")
            );
        }
    }

    #[test]
    fn listing_follows_the_pages() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONES_URL).respond(zone_found());
        mock.expect(Method::Get, list_url(1))
            .respond(listed(vec![txt_record("a1", "\"one\"")], 1, 2));
        mock.expect(Method::Get, list_url(2))
            .respond(listed(vec![txt_record("b2", "\"token\"")], 2, 2));
        mock.expect(Method::Delete, format!("{RECORDS_URL}/b2"))
            .respond(answer(json!({"id": "b2"})));
        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
    }

    #[test]
    fn cleanup_deletes_every_record_with_the_value_and_nothing_else() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONES_URL).respond(zone_found());
        // The name filter is checked again: a record at another name is never touched.
        let mut elsewhere = txt_record("x9", "\"token\"");
        elsewhere["name"] = json!("_acme-challenge.example.test");
        mock.expect(Method::Get, list_url(1)).respond(listed(
            vec![
                txt_record("a1", "\"apex-value\""),
                txt_record("b2", "\"token\""),
                txt_record("c3", "token"),
                elsewhere,
            ],
            1,
            1,
        ));
        mock.expect(Method::Delete, format!("{RECORDS_URL}/b2"))
            .respond(answer(json!({"id": "b2"})));
        // Deleted by someone else in between: fine.
        mock.expect(Method::Delete, format!("{RECORDS_URL}/c3"))
            .respond(refused(
                404,
                json!([{"code": 81044, "message": "Record does not exist."}]),
            ));
        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
        assert_eq!(
            messages(),
            [
                "record c3 was deleted already".to_string(),
                format!("{NAME}: deleted 2 TXT records with the value, 1 TXT record left at the name")
            ]
        );
    }

    #[test]
    fn cleanup_of_what_is_not_there_succeeds_without_deleting() {
        let mock = MockHttp::install();
        mock.expect(Method::Get, ZONES_URL).times(2).respond(zone_found());
        mock.expect(Method::Get, list_url(1))
            .respond(listed(vec![txt_record("a1", "\"other\"")], 1, 1));
        mock.expect(Method::Get, list_url(1)).respond(listed(vec![], 1, 0));
        mock.expect(Method::Get, ZONES_URL).respond(listed(vec![], 1, 0));
        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "value absent");
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "no record at the name");
        assert_eq!(dns.cleanup(&record("token")), Ok(()), "no zone");
        assert!(mock.requests().iter().all(|r| r.method == Method::Get));
        let logs = testkit::logs();
        assert_eq!(
            (logs[2].level, logs[2].message.as_str()),
            (
                Level::Warn,
                "Cloudflare zone example.test: the API token sees no zone of that name (it needs Zone:Read on it, or \
                 set config.zone_id): nothing to clean up"
            )
        );
    }

    #[test]
    fn cloudflares_answers_map_to_what_the_host_should_do() {
        let auth_hint = "(the API token needs DNS:Edit on the zone, and Zone:Read unless config.zone_id is set)";
        // (answer to the zone lookup, answer to the listing, expected error)
        let cases = [
            (
                refused(403, json!([{"code": 10000, "message": "Authentication error"}])),
                None,
                PluginError::Auth(format!(
                    "Cloudflare zone example.test: Cloudflare answered 403: 10000 Authentication error {auth_hint}"
                )),
            ),
            (
                refused(
                    400,
                    json!([{"code": 6003, "message": "Invalid request headers",
                        "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]}]),
                ),
                None,
                PluginError::Auth(format!(
                    "Cloudflare zone example.test: Cloudflare answered 400: 6003 Invalid request headers (6111 \
                     Invalid format for Authorization header) {auth_hint}"
                )),
            ),
            (
                MockResponse::new(401),
                None,
                PluginError::Auth(format!(
                    "Cloudflare zone example.test: GET https://api.cloudflare.com answered 401 Unauthorized \
                     {auth_hint}"
                )),
            ),
            (
                zone_found(),
                Some(refused(
                    403,
                    json!([{"code": 9109, "message": "Unauthorized to access requested resource"}]),
                )),
                PluginError::Auth(format!(
                    "Cloudflare zone example.test (id {ZONE_ID}): Cloudflare answered 403: 9109 Unauthorized to \
                     access requested resource {auth_hint}"
                )),
            ),
            (
                listed(vec![], 1, 0),
                None,
                PluginError::NotFound(
                    "Cloudflare zone example.test: the API token sees no zone of that name (it needs Zone:Read on \
                     it, or set config.zone_id)"
                        .into(),
                ),
            ),
            (
                zone_found(),
                Some(refused(
                    404,
                    json!([{"code": 1001, "message": "Invalid zone identifier"}]),
                )),
                PluginError::NotFound(format!(
                    "Cloudflare zone example.test (id {ZONE_ID}): Cloudflare answered 404: 1001 Invalid zone \
                     identifier"
                )),
            ),
            (
                zone_found(),
                Some(refused(
                    400,
                    json!([{"code": 1004, "message": "DNS Validation Error",
                        "error_chain": [{"code": 9005, "message": "Content for TXT record is invalid."}]}]),
                )),
                PluginError::Permanent(format!(
                    "Cloudflare refused the change in zone example.test (id {ZONE_ID}): Cloudflare answered 400: \
                     1004 DNS Validation Error (9005 Content for TXT record is invalid.)"
                )),
            ),
            (
                MockResponse::new(400).body("<html>bad request</html>"),
                None,
                PluginError::Permanent(
                    "GET https://api.cloudflare.com answered 400 Bad Request: <html>bad request</html>".into(),
                ),
            ),
            (
                refused(
                    429,
                    json!([{"code": 971, "message": "Please wait and consider throttling your request speed"}]),
                )
                .header("Retry-After", "30"),
                None,
                PluginError::RateLimited(Some(30)),
            ),
            (
                zone_found(),
                Some(MockResponse::new(429)),
                PluginError::RateLimited(None),
            ),
            (
                refused(
                    500,
                    json!([{"code": 10002, "message": "An unknown error has occurred"}]),
                ),
                None,
                PluginError::Transient(
                    "GET https://api.cloudflare.com answered 500 Internal Server Error: {\"errors\":[{\"code\":10002,\
                     \"message\":\"An unknown error has occurred\"}],\"messages\":[],\"result\":null,\"success\":false}"
                        .into(),
                ),
            ),
            (
                zone_found(),
                Some(MockResponse::new(502)),
                PluginError::Transient("GET https://api.cloudflare.com answered 502 Bad Gateway".into()),
            ),
            (
                MockResponse::connection_refused(),
                None,
                PluginError::Transient("GET https://api.cloudflare.com: connection refused".into()),
            ),
            (
                MockResponse::request_denied(),
                None,
                PluginError::Transient(
                    "GET https://api.cloudflare.com: HTTP request denied: the destination is not granted to this \
                     plugin instance"
                        .into(),
                ),
            ),
            (
                refused(200, json!([{"code": 1000, "message": "odd"}])),
                None,
                PluginError::Permanent("Cloudflare answered 200 without success: 1000 odd".into()),
            ),
            (
                MockResponse::new(200).body("<html>a proxy's login page</html>"),
                None,
                PluginError::Permanent(
                    "GET https://api.cloudflare.com answered 200 with a body that is not the expected JSON \
                     (expected value at line 1 column 1): <html>a proxy's login page</html>"
                        .into(),
                ),
            ),
        ];
        for (lookup, listing, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Get, ZONES_URL).respond(lookup);
            if let Some(listing) = listing {
                mock.expect(Method::Get, list_url(1)).respond(listing);
            }
            let got = testkit::dns_solver::<Cloudflare>(config(json!({}))).present(&record("token"));
            assert_eq!(got, Err(expected));
            assert!(
                !got.expect_err("an error").to_string().contains(TOKEN),
                "the token leaked"
            );
        }
    }

    #[test]
    fn a_wrong_zone_id_is_not_found_and_write_failures_are_reported() {
        let mock = MockHttp::install();
        let other = "0123456789abcdef0123456789abcdef";
        let other_records = format!("https://api.cloudflare.com/client/v4/zones/{other}/dns_records");
        mock.expect(
            Method::Get,
            format!("{other_records}?type=TXT&name={NAME}&per_page=100&page=1"),
        )
        .respond(refused(
            400,
            json!([
                {"code": 7003, "message": format!("Could not route to /client/v4/zones/{other}/dns_records, perhaps your object identifier is invalid?")},
                {"code": 7000, "message": "No route for that URI"}
            ]),
        ));
        let wrong = testkit::dns_solver::<Cloudflare>(config(json!({"zone_id": other})));
        assert_eq!(
            wrong.present(&record("token")),
            Err(PluginError::NotFound(format!(
                "Cloudflare zone example.test (id {other}): Cloudflare answered 400: 7003 Could not route to \
                 /client/v4/zones/{other}/dns_records, perhaps your object identifier is invalid?; 7000 No route for \
                 that URI"
            )))
        );

        mock.expect(Method::Get, ZONES_URL).times(2).respond(zone_found());
        mock.expect(Method::Get, list_url(1))
            .times(2)
            .respond(listed(vec![txt_record("a1", "\"token\"")], 1, 1));
        mock.expect(Method::Delete, format!("{RECORDS_URL}/a1"))
            .respond(refused(
                403,
                json!([{"code": 10000, "message": "Authentication error"}]),
            ));
        mock.expect(Method::Delete, format!("{RECORDS_URL}/a1"))
            .respond(MockResponse::timeout());
        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert!(matches!(dns.cleanup(&record("token")), Err(PluginError::Auth(_))));
        assert_eq!(
            dns.cleanup(&record("token")),
            Err(PluginError::Transient(
                "DELETE https://api.cloudflare.com: no complete answer within 10.0 s".into()
            ))
        );
    }

    /// A record as the fake keeps it and answers with it.
    #[derive(Debug, Clone, Serialize)]
    struct Stored {
        id: String,
        zone_id: String,
        zone_name: String,
        name: String,
        #[serde(rename = "type")]
        kind: String,
        content: String,
        ttl: u32,
        proxied: bool,
    }

    /// The parts of the Cloudflare API v4 this plugin uses, answering with Cloudflare's envelope,
    /// status codes and error codes: bearer tokens (6003 for a malformed Authorization header,
    /// 10000 for a wrong token), `GET /zones?name=`, listing records with exact `type`, `name`
    /// and `content` filters and pages, creating (81058 for an identical record, 1004/9021 for
    /// a bad TTL), deleting by id (81044 for one that is not there), 7003 for an id that routes
    /// nowhere, 9109 for a zone the token cannot reach.
    struct FakeCloudflare {
        /// (id, name)
        zones: Vec<(String, String)>,
        records: Vec<Stored>,
        next_id: u32,
    }

    impl FakeCloudflare {
        fn new() -> FakeCloudflare {
            FakeCloudflare {
                zones: vec![
                    (ZONE_ID.into(), "example.test".into()),
                    ("0123456789abcdef0123456789abcdef".into(), "other.test".into()),
                ],
                records: Vec::new(),
                next_id: 1,
            }
        }

        fn handle(&mut self, request: &RecordedRequest) -> MockResponse {
            let bearer = request.header("authorization").and_then(|a| a.strip_prefix("Bearer "));
            match bearer {
                Some(TOKEN) => {}
                Some(token) if !token.is_empty() && !token.contains(' ') => {
                    return refused(403, json!([{"code": 10000, "message": "Authentication error"}]));
                }
                _ => {
                    return refused(
                        400,
                        json!([{"code": 6003, "message": "Invalid request headers",
                            "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]}]),
                    );
                }
            }
            let path = request.path();
            let query = query(&request.url);
            let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            let no_route = || {
                refused(
                    400,
                    json!([
                        {"code": 7003, "message": format!("Could not route to {path}, perhaps your object identifier is invalid?")},
                        {"code": 7000, "message": "No route for that URI"}
                    ]),
                )
            };
            let segments: Vec<&str> = match path.strip_prefix("/client/v4/") {
                Some(rest) => rest.split('/').collect(),
                None => return no_route(),
            };
            if let ["zones", id, "dns_records", ..] = segments.as_slice() {
                if !(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())) {
                    return no_route();
                }
                if !self.zones.iter().any(|(zone, _)| zone == id) {
                    return refused(
                        403,
                        json!([{"code": 9109, "message": "Unauthorized to access requested resource"}]),
                    );
                }
            }
            match (request.method, segments.as_slice()) {
                (Method::Get, ["zones"]) => {
                    let zones: Vec<Value> = self
                        .zones
                        .iter()
                        .filter(|(_, name)| param("name").is_none_or(|n| n.eq_ignore_ascii_case(name)))
                        .map(|(id, name)| json!({"id": id, "name": name, "status": "active"}))
                        .collect();
                    paged(zones, 1, 20)
                }
                (Method::Get, ["zones", zone, "dns_records"]) => {
                    let found: Vec<Value> = self
                        .records
                        .iter()
                        .filter(|r| r.zone_id == *zone)
                        .filter(|r| param("type").is_none_or(|t| t == r.kind))
                        .filter(|r| param("name").is_none_or(|n| n.eq_ignore_ascii_case(&r.name)))
                        .filter(|r| param("content").is_none_or(|c| c == r.content))
                        .map(|r| json!(r))
                        .collect();
                    let number = |key: &str, default: usize| param(key).and_then(|v| v.parse().ok()).unwrap_or(default);
                    paged(found, number("page", 1), number("per_page", 100))
                }
                (Method::Post, ["zones", zone, "dns_records"]) => self.create(zone, request),
                (Method::Delete, ["zones", zone, "dns_records", id]) => {
                    match self.records.iter().position(|r| r.zone_id == *zone && r.id == *id) {
                        Some(i) => {
                            self.records.remove(i);
                            answer(json!({"id": id}))
                        }
                        None => refused(404, json!([{"code": 81044, "message": "Record does not exist."}])),
                    }
                }
                _ => no_route(),
            }
        }

        fn create(&mut self, zone: &str, request: &RecordedRequest) -> MockResponse {
            let invalid = |code: u64, message: &str| {
                refused(
                    400,
                    json!([{"code": 1004, "message": "DNS Validation Error", "error_chain": [{"code": code, "message": message}]}]),
                )
            };
            let Ok(body) = request.json::<Value>() else {
                return refused(400, json!([{"code": 9207, "message": "Request body is invalid."}]));
            };
            let zone_name = self
                .zones
                .iter()
                .find(|(id, _)| id == zone)
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            let (Some(kind), Some(name), Some(content)) =
                (body["type"].as_str(), body["name"].as_str(), body["content"].as_str())
            else {
                return invalid(9000, "DNS name, type and content are required.");
            };
            let name = name.to_ascii_lowercase();
            if name != zone_name && !name.ends_with(&format!(".{zone_name}")) {
                return invalid(9011, "Name is not within the zone.");
            }
            let ttl = body["ttl"].as_u64().unwrap_or(1);
            if ttl != 1 && !(60..=86_400).contains(&ttl) {
                return invalid(
                    9021,
                    "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                );
            }
            if self
                .records
                .iter()
                .any(|r| r.zone_id == zone && r.kind == kind && r.name == name && r.content == content)
            {
                return refused(
                    400,
                    json!([{"code": 81058, "message": "An identical record already exists."}]),
                );
            }
            let stored = Stored {
                id: format!("{:032x}", self.next_id),
                zone_id: zone.to_string(),
                zone_name,
                name,
                kind: kind.to_string(),
                content: content.to_string(),
                ttl: u32::try_from(ttl).unwrap_or(1),
                proxied: false,
            };
            self.next_id += 1;
            self.records.push(stored.clone());
            answer(json!(stored))
        }

        /// The TXT values Cloudflare's servers answer with at `fqdn`.
        fn served(&self, fqdn: &str) -> Vec<String> {
            self.records
                .iter()
                .filter(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(fqdn))
                .map(|r| {
                    // The plugin writes one quoted string; unquote it independently of unquote_txt.
                    let inner = r.content.strip_prefix('"').and_then(|c| c.strip_suffix('"'));
                    inner.unwrap_or(&r.content).replace("\\\"", "\"").replace("\\\\", "\\")
                })
                .collect()
        }
    }

    /// A page of a list, with Cloudflare's `result_info`.
    fn paged(all: Vec<Value>, page: usize, per_page: usize) -> MockResponse {
        let total = all.len();
        let result: Vec<Value> = all
            .into_iter()
            .skip((page.max(1) - 1) * per_page)
            .take(per_page)
            .collect();
        MockResponse::json(
            200,
            &json!({"success": true, "errors": [], "messages": [], "result": result, "result_info": {
                "page": page, "per_page": per_page, "count": result.len(), "total_count": total,
                "total_pages": total.div_ceil(per_page.max(1))
            }}),
        )
    }

    /// The query of a URL as decoded pairs.
    fn query(url: &str) -> Vec<(String, String)> {
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
                    (b'+', _) => {
                        bytes.push(b' ');
                        rest = tail;
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

    fn serve(fake: &Rc<RefCell<FakeCloudflare>>) -> MockHttp {
        let mock = MockHttp::install();
        let state = Rc::clone(fake);
        mock.fallback(move |request| state.borrow_mut().handle(request));
        mock
    }

    #[test]
    fn conforms_against_cloudflare() {
        for extra in [json!({}), json!({"zone_id": ZONE_ID, "ttl": 60})] {
            let fake = Rc::new(RefCell::new(FakeCloudflare::new()));
            let (handler, reader) = (Rc::clone(&fake), Rc::clone(&fake));
            let provider = conformance::FakeDnsProvider::new(
                move |request| handler.borrow_mut().handle(request),
                move |fqdn| reader.borrow().served(fqdn),
            );
            conformance::dns_solver::<Cloudflare>(&config(extra), "example.test", provider);
        }
    }

    #[test]
    fn records_of_others_at_the_name_survive_a_present_and_cleanup() {
        let mut fake = FakeCloudflare::new();
        for (id, content) in [("a1", "\"someone-else\""), ("b2", "v=legacy unquoted")] {
            fake.records.push(Stored {
                id: id.into(),
                zone_id: ZONE_ID.into(),
                zone_name: "example.test".into(),
                name: NAME.into(),
                kind: "TXT".into(),
                content: content.into(),
                ttl: 300,
                proxied: false,
            });
        }
        let before = format!("{:?}", fake.records);
        let fake = Rc::new(RefCell::new(fake));
        let _mock = serve(&fake);
        let dns = testkit::dns_solver::<Cloudflare>(config(json!({})));
        assert_eq!(dns.present(&record("token")), Ok(()));
        assert_eq!(
            fake.borrow().served(NAME),
            ["someone-else", "v=legacy unquoted", "token"]
        );
        assert_eq!(dns.cleanup(&record("token")), Ok(()));
        assert_eq!(format!("{:?}", fake.borrow().records), before);
    }

    #[test]
    fn the_fake_answers_as_cloudflare_does() {
        let fake = Rc::new(RefCell::new(FakeCloudflare::new()));
        let _mock = serve(&fake);
        let send = |request: http::Request| {
            let answer = request.send().expect("answered");
            let body: Value = answer.json().expect("JSON");
            (answer.status(), body)
        };
        let codes = |body: &Value| -> Vec<u64> {
            body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["code"].as_u64())
                .collect()
        };
        let create = |content: &str, ttl: u32| {
            send(
                http::post(RECORDS_URL)
                    .bearer_auth(TOKEN)
                    .json(&json!({"type": "TXT", "name": NAME, "content": content, "ttl": ttl}))
                    .expect("JSON"),
            )
        };

        let (status, body) = send(http::get(ZONES_URL));
        assert_eq!((status, codes(&body)), (400, vec![6003]));
        let (status, body) = send(http::get(ZONES_URL).bearer_auth("wrong"));
        assert_eq!((status, codes(&body)), (403, vec![10000]));
        let (status, body) = send(http::get(ZONES_URL).bearer_auth(TOKEN));
        assert_eq!((status, body["result"][0]["id"].as_str()), (200, Some(ZONE_ID)));

        let (status, created) = create("\"token\"", 120);
        assert_eq!((status, created["success"].as_bool()), (200, Some(true)));
        let (status, body) = create("\"token\"", 120);
        assert_eq!((status, codes(&body)), (400, vec![81058]));
        let (status, body) = create("\"other\"", 20);
        assert_eq!((status, codes(&body)), (400, vec![1004]));
        assert_eq!(body["errors"][0]["error_chain"][0]["code"], 9021);

        let filtered = |content: &str| {
            let url = format!("{}&content={}", list_url(1), encode(content));
            send(http::get(url).bearer_auth(TOKEN)).1["result"]
                .as_array()
                .map_or(0, Vec::len)
        };
        assert_eq!(
            (filtered("\"token\""), filtered("token")),
            (1, 0),
            "content is matched exactly"
        );

        let id = created["result"]["id"].as_str().expect("an id");
        let (status, _) = send(http::delete(format!("{RECORDS_URL}/{id}")).bearer_auth(TOKEN));
        assert_eq!(status, 200);
        let (status, body) = send(http::delete(format!("{RECORDS_URL}/{id}")).bearer_auth(TOKEN));
        assert_eq!((status, codes(&body)), (404, vec![81044]));
        let (status, body) =
            send(http::get("https://api.cloudflare.com/client/v4/zones/example.test/dns_records").bearer_auth(TOKEN));
        assert_eq!((status, codes(&body)), (400, vec![7003, 7000]));
        let (status, body) = send(
            http::get("https://api.cloudflare.com/client/v4/zones/ffffffffffffffffffffffffffffffff/dns_records")
                .bearer_auth(TOKEN),
        );
        assert_eq!((status, codes(&body)), (403, vec![9109]));
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::dns_solver::<Cloudflare>(config.to_string()).validate_config();
        for good in [
            json!({"api_token": TOKEN}),
            json!({"api_token": TOKEN, "zone_id": ZONE_ID, "ttl": 1}),
            json!({"api_token": TOKEN, "api_url": "https://api.cloudflare.com/client/v4", "ttl": 86400}),
            json!({"api_token": TOKEN, "api_url": "http://localhost:8787/client/v4", "ttl": 30}),
            json!({"api_token": TOKEN, "api_url": "http://[::1]:8787"}),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let cases = [
            (json!({}), "config.api_token: required"),
            (json!({"api_token": ""}), "config.api_token: must be an API token"),
            (
                json!({"api_token": "Bearer x"}),
                "config.api_token: must be an API token",
            ),
            (
                json!({"api_token": TOKEN, "zone_id": "example.test"}),
                "config.zone_id: must be the zone's ID",
            ),
            (
                json!({"api_token": TOKEN, "zone_id": format!("{ZONE_ID}0")}),
                "config.zone_id: must be the zone's ID",
            ),
            (
                json!({"api_token": TOKEN, "api_url": "http://api.cloudflare.com/client/v4"}),
                "config.api_url: must start with https://",
            ),
            (
                json!({"api_token": TOKEN, "api_url": "api.cloudflare.com"}),
                "config.api_url: must start with https://",
            ),
            (
                json!({"api_token": TOKEN, "api_url": "https://user:pw@api.cloudflare.com"}),
                "config.api_url: the host part is not a host name",
            ),
            (
                json!({"api_token": TOKEN, "api_url": "https://api.cloudflare.com/client/v4?x=1"}),
                "config.api_url: must be the API's base URL",
            ),
            (
                json!({"api_token": TOKEN, "ttl": 0}),
                "config.ttl: must be 1 (automatic) or 30 to 86400",
            ),
            (json!({"api_token": TOKEN, "ttl": 29}), "config.ttl: must be 1"),
            (json!({"api_token": TOKEN, "ttl": 86401}), "config.ttl: must be 1"),
            (
                json!({"api_token": TOKEN, "api_key": "x"}),
                "config.api_key: unknown key",
            ),
        ];
        for (config, expected) in cases {
            let message = testkit::assert_invalid_config(check(config), expected);
            assert!(!message.contains(TOKEN), "the token leaked: {message}");
        }
        let _mock = MockHttp::install();
        let bad = testkit::dns_solver::<Cloudflare>(json!({"api_token": TOKEN, "ttl": 5}).to_string());
        assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
        assert!(matches!(bad.cleanup(&record("v")), Err(PluginError::InvalidConfig(_))));
    }

    #[test]
    fn txt_content_is_quoted_and_matched_in_both_forms() {
        assert_eq!(
            quote("LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"),
            "\"LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM\""
        );
        assert_eq!(quote("say \"hi\" \\ bye"), r#""say \"hi\" \\ bye""#);
        for value in ["token", "say \"hi\" \\ bye", "café"] {
            assert!(holds(&quote(value), value), "{value:?}");
            assert!(holds(value, value) || value.contains('"'), "{value:?} unquoted");
        }
        assert!(holds(r#""tok" "en""#, "token"));
        assert!(holds(r#""caf\195\169""#, "café"));
        assert!(!holds("\"token\"", "\"token\""));
        assert!(!holds("\"other\"", "token"));
        assert!(!holds("tok en", "token"));
        assert_eq!(
            encode("_acme-challenge.www.example.test"),
            "_acme-challenge.www.example.test"
        );
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
