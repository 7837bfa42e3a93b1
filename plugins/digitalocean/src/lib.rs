//! A certctl DNS-01 solver for DigitalOcean DNS, through the Domain Records resource of the
//! DigitalOcean API v2: one TXT record per challenge value, created only when no record at the
//! name has the value yet, and deleted by id on cleanup. See README.md.

use std::fmt::Write as _;
use std::time::Duration;

use certctl_sdk::http::{self, Response};
use certctl_sdk::{DnsRecord, DnsSolver, PluginError, log};
use serde::Deserialize;
use serde_json::json;

const DEFAULT_API_URL: &str = "https://api.digitalocean.com";

/// TTLs: DigitalOcean accepts 30 seconds and up; more than a day makes no sense for a challenge.
const DEFAULT_TTL: u32 = 60;
const MIN_TTL: u32 = 30;
const MAX_TTL: u32 = 86_400;

/// How long to wait for each answer: a call makes a few requests, and the host's default limit
/// for a whole call is 30 s.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Records per page when listing the TXT records at a name (DigitalOcean's maximum), and the
/// most pages read (a name with more than 2000 TXT records is not a challenge name).
const PER_PAGE: u32 = 200;
const MAX_PAGES: u32 = 10;

/// What the access scopes of the token must allow, for messages.
const TOKEN_NEEDS: &str = "config.api_token must be a valid DigitalOcean API token with read and write access to \
                           Domains (custom scopes: domain:read and domain:update)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// An API token with read and write access to Domains.
    api_token: String,
    /// The domain as registered at DigitalOcean, when it is not the zone the host picked.
    #[serde(default)]
    domain: Option<String>,
    /// The API's base URL, without `/v2`.
    #[serde(default)]
    api_url: Option<String>,
    /// TTL of the records: 30 to 86400 seconds.
    #[serde(default)]
    ttl: Option<u32>,
}

struct DigitalOcean;

impl DnsSolver for DigitalOcean {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let token = &config.api_token;
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PluginError::invalid_config(
                "config.api_token: must be a DigitalOcean API token (not empty, no spaces or line breaks)",
            ));
        }
        if let Some(domain) = &config.domain
            && !is_domain_name(domain)
        {
            return Err(PluginError::invalid_config(
                "config.domain: must be the domain's name as DigitalOcean lists it under Networking > Domains \
                 (example.com), not a URL",
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
            if url.trim_end_matches('/').ends_with("/v2") {
                return Err(PluginError::invalid_config(
                    "config.api_url: must be the API's base URL without /v2 (default https://api.digitalocean.com)",
                ));
            }
        }
        if let Some(ttl) = config.ttl
            && !(MIN_TTL..=MAX_TTL).contains(&ttl)
        {
            return Err(PluginError::invalid_config(format!(
                "config.ttl: must be {MIN_TTL} (DigitalOcean's minimum) to {MAX_TTL} seconds"
            )));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let api = Api::new(config);
        let name = Name::of(config, record)?;
        if api.txt_records(&name)?.iter().any(|r| holds(r, &record.value)) {
            log::info(format!("{}: a TXT record with the value exists already", name.fqdn));
            return Ok(());
        }
        let ttl = config.ttl.unwrap_or(DEFAULT_TTL);
        let id = api.create(&name, &record.value, ttl)?;
        log::info(format!(
            "{}: created TXT record {id} with the value in domain {}",
            name.fqdn, name.domain
        ));
        Ok(())
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let name = Name::of(config, record)?;
        match remove(&Api::new(config), &name, &record.value) {
            // No domain, no record: what cleanup is for is done.
            Err(PluginError::NotFound(message)) => {
                log::warn(format!("{message}: nothing to clean up"));
                Ok(())
            }
            other => other,
        }
    }
}

certctl_sdk::register_dns_solver!(DigitalOcean);

fn remove(api: &Api<'_>, name: &Name, value: &str) -> Result<(), PluginError> {
    let records = api.txt_records(name)?;
    let matching: Vec<&TxtRecord> = records.iter().filter(|r| holds(r, value)).collect();
    if matching.is_empty() {
        log::info(format!("{}: no TXT record has the value: nothing to remove", name.fqdn));
        return Ok(());
    }
    for found in &matching {
        api.delete(name, found.id)?;
    }
    log::info(format!(
        "{}: deleted {} with the value, {} left at the name",
        name.fqdn,
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

/// Whether a record holds exactly the challenge value: DigitalOcean keeps TXT data as it was
/// given, without quotes.
fn holds(record: &TxtRecord, value: &str) -> bool {
    record.data.as_deref() == Some(value)
}

/// Whether `name` is a domain name (letters, digits, `-` and `_` in labels of 1 to 63, at most
/// 253 in all), with or without a trailing dot.
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// Where a record goes: the DigitalOcean domain, the record's fully qualified name (the listing's
/// `name` filter) and its name relative to the domain (`name` when creating; `@` at the apex).
#[derive(Debug, PartialEq, Eq)]
struct Name {
    domain: String,
    fqdn: String,
    relative: String,
}

impl Name {
    fn of(config: &Config, record: &DnsRecord) -> Result<Name, PluginError> {
        let fqdn = record.fqdn.trim_end_matches('.').to_ascii_lowercase();
        let domain = config.domain.as_deref().unwrap_or(&record.zone);
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let relative = if fqdn == domain {
            Some("@")
        } else {
            fqdn.strip_suffix(domain.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .filter(|prefix| !prefix.is_empty())
        };
        match (relative, &config.domain) {
            (Some(relative), _) => Ok(Name {
                relative: relative.to_string(),
                domain,
                fqdn,
            }),
            (None, Some(_)) => Err(PluginError::invalid_config(format!(
                "config.domain: {fqdn} is not within the domain {domain}; set it to the DigitalOcean domain that \
                 holds the name, or leave it out to use the zone certctl picks"
            ))),
            (None, None) => Err(PluginError::permanent(format!(
                "{fqdn} is not within the zone {domain} it was given for"
            ))),
        }
    }
}

/// A page of `GET /v2/domains/{domain}/records`.
#[derive(Deserialize)]
struct Listing {
    domain_records: Vec<TxtRecord>,
    #[serde(default)]
    links: Links,
}

#[derive(Default, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Pages,
}

#[derive(Default, Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

/// The answer to `POST /v2/domains/{domain}/records`.
#[derive(Deserialize)]
struct Created {
    domain_record: TxtRecord,
}

#[derive(Debug, Deserialize)]
struct TxtRecord {
    id: u64,
    #[serde(rename = "type")]
    kind: String,
    /// Relative to the domain; `@` at the apex.
    name: String,
    #[serde(default)]
    data: Option<String>,
}

/// DigitalOcean's error body: `{"id": "not_found", "message": "...", "request_id": "..."}`.
#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    request_id: Option<String>,
}

struct Api<'a> {
    token: &'a str,
    /// The base URL without a trailing `/`.
    base: &'a str,
}

impl<'a> Api<'a> {
    fn new(config: &'a Config) -> Api<'a> {
        let base = config.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        Api {
            token: &config.api_token,
            base: base.trim_end_matches('/'),
        }
    }

    fn send(&self, request: http::Request) -> Result<Response, PluginError> {
        request
            .bearer_auth(self.token)
            .header("Accept", "application/json")
            .timeout(TIMEOUT)
            .send()
    }

    fn records_url(&self, domain: &str) -> String {
        format!("{}/v2/domains/{}/records", self.base, encode(domain))
    }

    /// The TXT records at the name, by the listing's filters and checked again here. Pages
    /// follow while the answer links a next one, by page number on this API's URL: the link's
    /// own origin is not where the token goes.
    fn txt_records(&self, name: &Name) -> Result<Vec<TxtRecord>, PluginError> {
        let mut records = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}?type=TXT&name={}&per_page={PER_PAGE}&page={page}",
                self.records_url(&name.domain),
                encode(&name.fqdn)
            );
            let response = self.send(http::get(url))?;
            let listing: Listing = check(&response, &name.domain)?.json()?;
            records.extend(
                listing
                    .domain_records
                    .into_iter()
                    .filter(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(&name.relative)),
            );
            if listing.links.pages.next.is_none() {
                return Ok(records);
            }
        }
        log::warn(format!(
            "{}: more than {MAX_PAGES} pages of TXT records; only the first {} were read",
            name.fqdn,
            MAX_PAGES * PER_PAGE
        ));
        Ok(records)
    }

    /// Creates the record; its id.
    fn create(&self, name: &Name, value: &str, ttl: u32) -> Result<u64, PluginError> {
        let body = json!({"type": "TXT", "name": name.relative, "data": value, "ttl": ttl});
        let response = self.send(http::post(self.records_url(&name.domain)).json(&body)?)?;
        let created: Created = check(&response, &name.domain)?.json()?;
        Ok(created.domain_record.id)
    }

    /// Deletes a record by id; one that is gone already (404) is fine.
    fn delete(&self, name: &Name, id: u64) -> Result<(), PluginError> {
        let url = format!("{}/{id}", self.records_url(&name.domain));
        let response = self.send(http::delete(url))?;
        if response.status() == 404 {
            log::debug(format!("record {id} was deleted already"));
            return Ok(());
        }
        check(&response, &name.domain)?;
        Ok(())
    }
}

/// The response if it is 2xx, otherwise the error DigitalOcean's answer means (see [`refusal`]).
fn check<'r>(response: &'r Response, domain: &str) -> Result<&'r Response, PluginError> {
    match http::status_error(response) {
        None => Ok(response),
        Some(error) => Err(refusal(response, error, domain)),
    }
}

/// What a refusal means, by status, worded with DigitalOcean's `id` and `message` when the body
/// has them: 429 waits (see [`wait`]); 408 and 5xx retry; 401 or 403 is `auth`, naming the
/// token's scopes; 404 is `not-found` naming the domain; other statuses (422
/// `unprocessable_entity`, 400 `bad_request`) are `permanent`.
fn refusal(response: &Response, error: PluginError, domain: &str) -> PluginError {
    let status = response.status();
    let answer = serde_json::from_slice::<ApiError>(response.body())
        .ok()
        .filter(|e| !e.id.is_empty() || !e.message.is_empty());
    let detail = match &answer {
        None => error.message(),
        Some(e) => {
            let mut detail = format!("DigitalOcean answered {status} {}: {}", e.id, e.message);
            if let Some(request) = &e.request_id {
                let _ = write!(detail, " (request id {request})");
            }
            detail
        }
    };
    match status {
        429 => PluginError::rate_limited(wait(response)),
        408 | 500..=599 if answer.is_some() => {
            PluginError::transient(format!("DigitalOcean domain {domain}: {detail}"))
        }
        408 | 500..=599 => error,
        401 | 403 => PluginError::auth(format!("DigitalOcean domain {domain}: {detail} ({TOKEN_NEEDS})")),
        404 => PluginError::not_found(format!(
            "DigitalOcean domain {domain}: {detail} (the domain must be in the token's DigitalOcean team; when the \
             zone certctl picks is not the domain as registered at DigitalOcean, set config.domain)"
        )),
        _ if answer.is_some() => {
            PluginError::permanent(format!("DigitalOcean refused the change in domain {domain}: {detail}"))
        }
        _ => error,
    }
}

/// Seconds to wait after a 429: `Retry-After`, which DigitalOcean sends when the burst limit
/// (250 requests a minute) was hit; otherwise, when `ratelimit-remaining` is 0 (the hourly
/// limit), until `ratelimit-reset`, the Unix time when the oldest request of the hour expires,
/// counted from the answer's `Date` (DigitalOcean's clock: a plugin has none). `None` when the
/// answer does not say.
fn wait(response: &Response) -> Option<u32> {
    if let Some(seconds) = response.retry_after() {
        return Some(seconds);
    }
    if response.header("ratelimit-remaining")?.trim() != "0" {
        return None;
    }
    let reset: u64 = response.header("ratelimit-reset")?.trim().parse().ok()?;
    let now = http_date(response.header("date")?)?;
    u32::try_from(reset.saturating_sub(now).max(1)).ok()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the Unix epoch of an HTTP date as servers send it (`Sun, 06 Nov 1994 08:49:37
/// GMT`, RFC 9110's IMF-fixdate); `None` for anything else.
fn http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let (month, _) = (1u64..).zip(MONTHS).find(|(_, name)| name == month)?;
    let year: u64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hours, minutes, seconds) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some() || !(1..=31).contains(&day) || year < 1970 || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    // Howard Hinnant's `days_from_civil`, with years starting in March.
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hours * 3600 + minutes * 60 + seconds)
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

#[cfg(test)]
mod tests;
