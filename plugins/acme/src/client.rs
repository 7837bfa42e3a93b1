//! Talking to the CA: the directory, nonces, JWS-signed POSTs (with the badNonce retry of RFC
//! 8555 §6.5), problem documents (RFC 7807, RFC 8555 §6.7) as typed plugin errors, `Retry-After`
//! and `Link` headers, RFC 3339 timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use certctl_sdk::http::{self, Method, Request, Response};
use certctl_sdk::{PluginError, log, text};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::account;
use crate::jws::AccountKey;
use crate::services::Services;

pub(crate) const USER_AGENT: &str = concat!("certctl-acme/", env!("CARGO_PKG_VERSION"));
/// Per request; a CA that takes longer is retried later.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a request refused with badNonce is sent again with the fresh nonce.
const BAD_NONCE_RETRIES: usize = 2;
const ERROR_NAMESPACE: &str = "urn:ietf:params:acme:error:";

/// The directory (RFC 8555 §7.1.1), what this plugin uses of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Directory {
    pub(crate) new_nonce: String,
    pub(crate) new_account: String,
    pub(crate) new_order: String,
    #[serde(default)]
    pub(crate) revoke_cert: Option<String>,
    /// ACME Renewal Information (RFC 9773), when the CA offers it.
    #[serde(default)]
    pub(crate) renewal_info: Option<String>,
    #[serde(default)]
    pub(crate) meta: Meta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    #[serde(default)]
    pub(crate) external_account_required: bool,
    /// Profile name -> description (draft-ietf-acme-profiles).
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Value>,
}

impl Directory {
    /// `now` (seconds since the epoch) reads a `Retry-After` date.
    pub(crate) fn fetch(url: &str, now: u64) -> Result<Directory, PluginError> {
        let response = http::get(url)
            .header("User-Agent", USER_AGENT)
            .timeout(TIMEOUT)
            .send()?;
        if !response.is_success() {
            return Err(
                match Problem::from_response("the directory", &response, now).into_error() {
                    // The server answers, but not with a directory: the URL is wrong.
                    PluginError::Permanent(m) | PluginError::NotFound(m) => {
                        PluginError::invalid_config(format!("config.directory_url: {m}"))
                    }
                    other => other,
                },
            );
        }
        serde_json::from_slice(response.body()).map_err(|e| {
            PluginError::invalid_config(format!(
                "config.directory_url: the answer is not an ACME directory ({e})"
            ))
        })
    }
}

/// A problem document the CA answered with, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The request, for messages: `newOrder`, `finalize`, ...
    pub(crate) what: String,
    pub(crate) status: u16,
    /// The ACME error type without its namespace (`rateLimited`), or the full type when it is
    /// not an ACME one; empty when the answer was no problem document.
    pub(crate) kind: String,
    pub(crate) detail: String,
    /// `identifier: type: detail` of each subproblem.
    pub(crate) subproblems: Vec<String>,
    /// `Retry-After`, in seconds.
    pub(crate) retry_after: Option<u32>,
}

/// A problem document as JSON (also the `error` of orders, authorizations and challenges).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ProblemBody {
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) detail: String,
    #[serde(default)]
    pub(crate) subproblems: Vec<SubproblemBody>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SubproblemBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    identifier: Option<IdentifierBody>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IdentifierBody {
    #[serde(default)]
    pub(crate) value: String,
}

impl ProblemBody {
    /// `type: detail [identifier: type: detail; ...]`, for messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = match (short_type(&self.kind), self.detail.trim()) {
            ("", "") => "no detail given".to_string(),
            ("", detail) => detail.to_string(),
            (kind, "") => kind.to_string(),
            (kind, detail) => format!("{kind}: {detail}"),
        };
        let subproblems = self.subproblem_lines();
        if !subproblems.is_empty() {
            text.push_str(&format!(" [{}]", subproblems.join("; ")));
        }
        text
    }

    fn subproblem_lines(&self) -> Vec<String> {
        self.subproblems
            .iter()
            .map(|s| {
                let identifier = s.identifier.as_ref().map_or("", |i| i.value.as_str());
                format!("{identifier}: {}: {}", short_type(&s.kind), s.detail.trim())
            })
            .collect()
    }
}

fn short_type(kind: &str) -> &str {
    kind.strip_prefix(ERROR_NAMESPACE).unwrap_or(kind)
}

impl Problem {
    /// The problem in a non-2xx answer (or the start of its body when it is no problem document).
    /// `now` (seconds since the epoch) reads a `Retry-After` date.
    pub(crate) fn from_response(what: &str, response: &Response, now: u64) -> Problem {
        let body: ProblemBody = serde_json::from_slice(response.body()).unwrap_or_default();
        let detail = if body.kind.is_empty() && body.detail.is_empty() {
            text::snippet(&response.text())
        } else {
            body.detail.trim().to_string()
        };
        Problem {
            what: what.to_string(),
            status: response.status(),
            kind: short_type(&body.kind).to_string(),
            detail,
            subproblems: body.subproblem_lines(),
            retry_after: retry_after(response, now),
        }
    }

    /// Whether this is the ACME error `kind` (`badNonce`).
    pub(crate) fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }

    pub(crate) fn message(&self) -> String {
        let mut text = format!("the CA refused {} (HTTP {}", self.what, self.status);
        if !self.kind.is_empty() {
            text.push_str(&format!(", {}", self.kind));
        }
        text.push(')');
        if !self.detail.is_empty() {
            text.push_str(&format!(": {}", self.detail));
        }
        if !self.subproblems.is_empty() {
            text.push_str(&format!(" [{}]", self.subproblems.join("; ")));
        }
        text
    }

    /// The plugin error for this problem: rateLimited waits, the CA's own failures are retried,
    /// refused credentials are `auth`, the rest will not succeed by repeating it.
    pub(crate) fn into_error(self) -> PluginError {
        let message = self.message();
        match self.kind.as_str() {
            "rateLimited" => {
                log::warn(&message);
                PluginError::RateLimited(self.retry_after)
            }
            _ if self.status >= 500 => PluginError::Transient(message),
            "serverInternal" | "badNonce" => PluginError::Transient(message),
            "unauthorized" | "accountDoesNotExist" | "externalAccountRequired" | "userActionRequired" => {
                PluginError::Auth(message)
            }
            "" => match self.status {
                429 => {
                    log::warn(&message);
                    PluginError::RateLimited(self.retry_after)
                }
                401 | 403 => PluginError::Auth(message),
                404 => PluginError::NotFound(message),
                408 => PluginError::Transient(message),
                _ => PluginError::Permanent(message),
            },
            _ => PluginError::Permanent(message),
        }
    }
}

/// A request that failed: the CA's problem, or no usable answer.
#[derive(Debug)]
pub(crate) enum AcmeError {
    Problem(Problem),
    Plugin(PluginError),
}

impl From<PluginError> for AcmeError {
    fn from(e: PluginError) -> Self {
        AcmeError::Plugin(e)
    }
}

impl From<AcmeError> for PluginError {
    fn from(e: AcmeError) -> Self {
        match e {
            AcmeError::Problem(p) => p.into_error(),
            AcmeError::Plugin(e) => e,
        }
    }
}

/// Signed requests with one account key, and the nonce the CA handed out last.
pub(crate) struct Client<'h, H: Services> {
    host: &'h H,
    new_nonce: String,
    key: AccountKey,
    /// The account URL; `None` until the account exists (newAccount carries the JWK instead).
    kid: Option<String>,
    nonce: Option<String>,
}

impl<'h, H: Services> Client<'h, H> {
    pub(crate) fn new(host: &'h H, new_nonce: &str, key: AccountKey, kid: Option<String>) -> Client<'h, H> {
        Client {
            host,
            new_nonce: new_nonce.to_string(),
            key,
            kid,
            nonce: None,
        }
    }

    pub(crate) fn host(&self) -> &'h H {
        self.host
    }

    pub(crate) fn key(&self) -> &AccountKey {
        &self.key
    }

    pub(crate) fn set_kid(&mut self, kid: String) {
        self.kid = Some(kid);
    }

    pub(crate) fn now(&self) -> u64 {
        self.host.now()
    }

    /// POSTs `payload` as a JWS.
    pub(crate) fn post(&mut self, what: &str, url: &str, payload: &Value) -> Result<Response, AcmeError> {
        self.send(what, url, Some(payload), None)
    }

    /// POST-as-GET (RFC 8555 §6.3).
    pub(crate) fn post_as_get(&mut self, what: &str, url: &str) -> Result<Response, AcmeError> {
        self.send(what, url, None, None)
    }

    /// POST-as-GET with an `Accept` header.
    pub(crate) fn post_as_get_accepting(&mut self, what: &str, url: &str, accept: &str) -> Result<Response, AcmeError> {
        self.send(what, url, None, Some(accept))
    }

    fn send(
        &mut self,
        what: &str,
        url: &str,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<Response, AcmeError> {
        let mut retries = 0;
        loop {
            let nonce = self.nonce()?;
            let jws = self.key.sign(self.host, url, &nonce, self.kid.as_deref(), payload)?;
            let mut request = http::post(url)
                .header("Content-Type", "application/jose+json")
                .header("User-Agent", USER_AGENT)
                .timeout(TIMEOUT);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            let response = request.body(jws.to_string()).send()?;
            // Every answer to a POST carries the next nonce, errors included (§6.5).
            self.nonce = response.header("replay-nonce").map(str::to_string);
            if response.is_success() {
                return Ok(response);
            }
            let mut problem = Problem::from_response(what, &response, self.host.now());
            if problem.is("badNonce") && retries < BAD_NONCE_RETRIES {
                retries += 1;
                log::info(format!(
                    "the CA refused the nonce of {what} ({}); sending it again with a fresh one",
                    problem.detail
                ));
                continue;
            }
            if problem.is("accountDoesNotExist")
                && let Some(kid) = &self.kid
                && account::forget(self.host, kid)
            {
                problem
                    .detail
                    .push_str(" (the next issuance registers the account again, with the same key)");
            }
            return Err(AcmeError::Problem(problem));
        }
    }

    /// The nonce from the last answer, or a fresh one from newNonce.
    fn nonce(&mut self) -> Result<String, PluginError> {
        if let Some(nonce) = self.nonce.take() {
            return Ok(nonce);
        }
        let response = Request::new(Method::Head, &self.new_nonce)
            .header("User-Agent", USER_AGENT)
            .timeout(TIMEOUT)
            .send()?;
        if !response.is_success() {
            return Err(Problem::from_response("newNonce", &response, self.host.now()).into_error());
        }
        response
            .header("replay-nonce")
            .map(str::to_string)
            .ok_or_else(|| PluginError::transient("the CA answered newNonce without a Replay-Nonce"))
    }
}

/// The JSON body of a CA answer. A body that does not parse is a glitch worth retrying.
pub(crate) fn json<T: DeserializeOwned>(what: &str, response: &Response) -> Result<T, PluginError> {
    serde_json::from_slice(response.body()).map_err(|e| {
        PluginError::transient(format!(
            "the CA's answer to {what} is not the expected JSON ({e}): {}",
            text::snippet(&response.text())
        ))
    })
}

/// The `Location` header (account and order URLs).
pub(crate) fn location(what: &str, response: &Response) -> Result<String, PluginError> {
    response
        .header("location")
        .map(str::to_string)
        .ok_or_else(|| PluginError::permanent(format!("the CA's answer to {what} has no Location header")))
}

/// `Retry-After` in seconds: a number of seconds, or an HTTP date (IMF-fixdate) minus `now`.
pub(crate) fn retry_after(response: &Response, now: u64) -> Option<u32> {
    let value = response.header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(seconds);
    }
    let at = http_date(value)?;
    Some(u32::try_from(at.saturating_sub(now)).unwrap_or(u32::MAX))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` as seconds since the epoch.
fn http_date(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = i64::try_from(MONTHS.iter().position(|m| m == month)?).ok()? + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    u64::try_from(epoch_seconds(year, month, day, *h, *m, *s)?).ok()
}

/// An RFC 3339 timestamp (`2025-01-02T04:00:00Z`, `2025-01-02T06:00:00.5+02:00`) as seconds
/// since the epoch; a fraction of a second is dropped.
pub(crate) fn rfc3339(value: &str) -> Option<u64> {
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = value.get(from..to)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let separators = value.as_bytes();
    if separators.len() < 20
        || separators[4] != b'-'
        || separators[7] != b'-'
        || !matches!(separators[10], b'T' | b't')
        || separators[13] != b':'
        || separators[16] != b':'
    {
        return None;
    }
    let local = epoch_seconds(
        digits(0, 4)?,
        digits(5, 7)?,
        digits(8, 10)?,
        digits(11, 13)?,
        digits(14, 16)?,
        digits(17, 19)?,
    )?;
    let mut rest = value.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = rest[1..].split_once(':')?;
            if hours.len() != 2
                || minutes.len() != 2
                || !(hours.bytes().chain(minutes.bytes())).all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    u64::try_from(local - offset).ok()
}

/// Seconds since 1970-01-01T00:00:00 of a proleptic Gregorian date and time, checked (a leap
/// second, `60`, counts as the next second).
fn epoch_seconds(year: i64, month: i64, day: i64, h: i64, m: i64, s: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..=60).contains(&s) {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// The targets of the `Link` headers with relation `rel`, resolved against `base` (the URL the
/// answer came from).
pub(crate) fn links(response: &Response, rel: &str, base: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (name, value) in response.headers() {
        if !name.eq_ignore_ascii_case("link") {
            continue;
        }
        // `<url>; rel="alternate", <url2>; rel="index"`
        let mut rest = value.as_str();
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let target = &rest[open + 1..open + close];
            rest = &rest[open + close + 1..];
            let params = &rest[..rest.find('<').unwrap_or(rest.len())];
            let has_rel = params.split(';').any(|param| {
                let Some((key, value)) = param.split_once('=') else {
                    return false;
                };
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_end_matches(',')
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case(rel))
            });
            if has_rel {
                found.push(resolve(base, target));
            }
        }
    }
    found
}

/// A URL reference resolved against `base`: absolute, absolute path, or relative path.
fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("https://") || reference.starts_with("http://") {
        return reference.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    if reference.starts_with('/') {
        return format!("{origin}{reference}");
    }
    let path = &rest[authority_end..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let directory = if directory.is_empty() { "/" } else { directory };
    format!("{origin}{directory}{reference}")
}

#[cfg(test)]
mod tests {
    use certctl_sdk::testkit::{MockHttp, MockResponse};
    use serde_json::json;

    use super::*;

    /// A real `Response`, through the SDK client and a mock.
    fn response(mock: &MockHttp, answer: MockResponse) -> Response {
        mock.expect(Method::Get, "https://ca.test/x").respond(answer);
        http::get("https://ca.test/x").send().expect("answered")
    }

    fn problem(status: u16, kind: &str, detail: &str) -> MockResponse {
        MockResponse::json(
            status,
            &json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail}),
        )
    }

    fn error_of(answer: MockResponse) -> PluginError {
        let mock = MockHttp::install();
        let r = response(&mock, answer);
        Problem::from_response("newOrder", &r, 1_000).into_error()
    }

    #[test]
    fn problems_map_to_plugin_errors() {
        assert_eq!(
            error_of(problem(429, "rateLimited", "too many").header("Retry-After", "120")),
            PluginError::RateLimited(Some(120))
        );
        assert_eq!(
            error_of(problem(429, "rateLimited", "too many")),
            PluginError::RateLimited(None)
        );
        for kind in [
            "unauthorized",
            "accountDoesNotExist",
            "externalAccountRequired",
            "userActionRequired",
        ] {
            assert!(
                matches!(error_of(problem(403, kind, "no")), PluginError::Auth(_)),
                "{kind}"
            );
        }
        for kind in [
            "malformed",
            "rejectedIdentifier",
            "badCSR",
            "caa",
            "unsupportedIdentifier",
            "invalidProfile",
        ] {
            assert!(
                matches!(error_of(problem(400, kind, "no")), PluginError::Permanent(_)),
                "{kind}"
            );
        }
        assert!(matches!(
            error_of(problem(500, "serverInternal", "oops")),
            PluginError::Transient(_)
        ));
        assert!(matches!(
            error_of(problem(503, "malformed", "busy")),
            PluginError::Transient(_)
        ));
        assert!(matches!(
            error_of(MockResponse::new(502).body("<html>bad gateway</html>")),
            PluginError::Transient(_)
        ));
        assert!(matches!(error_of(MockResponse::new(404)), PluginError::NotFound(_)));
        assert_eq!(
            error_of(MockResponse::json(
                400,
                &json!({
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "Error creating new order",
                    "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                                     "detail": "not allowed", "identifier": {"type": "dns", "value": "bad.example"}}]
                })
            )),
            PluginError::Permanent(
                "the CA refused newOrder (HTTP 400, rejectedIdentifier): Error creating new order \
                 [bad.example: rejectedIdentifier: not allowed]"
                    .into()
            )
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mock = MockHttp::install();
        let r = response(&mock, MockResponse::ok().header("Retry-After", " 30 "));
        assert_eq!(retry_after(&r, 0), Some(30));
        // 2026-01-01T00:00:00Z is 1767225600.
        let r = response(
            &mock,
            MockResponse::ok().header("Retry-After", "Thu, 01 Jan 2026 00:01:30 GMT"),
        );
        assert_eq!(retry_after(&r, 1_767_225_600), Some(90));
        assert_eq!(retry_after(&r, 1_767_225_700), Some(0), "a date in the past: now");
        let r = response(
            &mock,
            MockResponse::ok().header("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&r, 784_111_777 - 7), Some(7));
        let r = response(&mock, MockResponse::ok().header("Retry-After", "soon"));
        assert_eq!(retry_after(&r, 0), None);
        let r = response(&mock, MockResponse::ok());
        assert_eq!(retry_after(&r, 0), None);
        assert_eq!(http_date("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
        assert_eq!(http_date("Tue, 29 Feb 2028 12:00:00 UTC"), None);
        assert_eq!(http_date("Tue, 29 Foo 2028 12:00:00 GMT"), None);
        assert_eq!(http_date("Mon, 29 Feb 2027 12:00:00 GMT"), None, "not a leap year");
    }

    #[test]
    fn rfc_3339_timestamps() {
        // RFC 9773 §4.2's example window.
        assert_eq!(rfc3339("2025-01-02T04:00:00Z"), Some(1_735_790_400));
        assert_eq!(rfc3339("2025-01-03T04:00:00Z"), Some(1_735_876_800));
        for same in [
            "2025-01-02T04:00:00.000Z",
            "2025-01-02T04:00:00.999999999Z",
            "2025-01-02t04:00:00z",
            "2025-01-02T06:00:00+02:00",
            "2025-01-01T23:00:00-05:00",
            "2025-01-02T09:30:00.25+05:30",
            "2025-01-02T04:00:00+00:00",
            "2025-01-02T04:00:00-00:00",
        ] {
            assert_eq!(rfc3339(same), Some(1_735_790_400), "{same}");
        }
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2028-02-29T12:00:00Z"), Some(1_835_438_400));
        assert_eq!(rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_800), "a leap second");
        for bad in [
            "",
            "2025-01-02",
            "2025-01-02T04:00:00",
            "2025-01-02 04:00:00Z",
            "2025-1-02T04:00:00Z",
            "2025-01-02T04:00Z",
            "2025-01-02T04:00:00.Z",
            "2025-01-02T04:00:00ZZ",
            "2025-01-02T04:00:00+2:00",
            "2025-01-02T04:00:00+0200",
            "2025-01-02T04:00:00+24:00",
            "2025-13-02T04:00:00Z",
            "2025-02-29T04:00:00Z",
            "2025-04-31T04:00:00Z",
            "2025-01-02T24:00:00Z",
            "2025-01-02T04:60:00Z",
            "+025-01-02T04:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2025-01-02T04:00:00€",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn link_headers_are_parsed_and_resolved() {
        let mock = MockHttp::install();
        let r = response(
            &mock,
            MockResponse::ok()
                .header("Link", "<https://ca.test/dir>;rel=\"index\"")
                .header("Link", "<https://ca.test/cert/1/alternate/1>; rel=\"alternate\"")
                .header("Link", "</cert/1/alternate/2>;rel=alternate, <3>; rel=\"alternate up\""),
        );
        assert_eq!(
            links(&r, "alternate", "https://ca.test/cert/1?x"),
            [
                "https://ca.test/cert/1/alternate/1",
                "https://ca.test/cert/1/alternate/2",
                "https://ca.test/cert/3"
            ]
        );
        assert_eq!(links(&r, "index", "https://ca.test/cert/1"), ["https://ca.test/dir"]);
        assert!(links(&r, "up", "https://ca.test/cert/1").len() == 1);
    }
}
