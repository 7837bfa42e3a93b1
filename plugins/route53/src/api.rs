//! The Route 53 REST API (version 2013-04-01) as the plugin uses it: four operations, XML
//! bodies, every request signed with SigV4 for `route53` in `us-east-1`, and what Route 53's
//! refusals mean for the host.

use std::fmt;
use std::time::Duration;

use certctl_sdk::http::{self, Method, Response};
use certctl_sdk::{PluginError, text};

use crate::xml::{self, Element};
use crate::{Config, clock, sigv4};

pub(crate) const DEFAULT_API_URL: &str = "https://route53.amazonaws.com";
/// Route 53 is a global service, signed for this region.
const REGION: &str = "us-east-1";
const SERVICE: &str = "route53";
const VERSION: &str = "2013-04-01";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// How long to wait for each answer: a call makes a few requests, and the host's default limit
/// for a whole call is 30 s.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Hosted zones asked for when looking one up by name: the answer starts at the name, so zones
/// of that name (a public and a private one, say) come first.
const ZONES_PER_LOOKUP: &str = "10";

/// Error codes that mean "slow down".
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// The operations the plugin calls, as IAM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    ListHostedZonesByName,
    ListResourceRecordSets,
    ChangeResourceRecordSets,
    GetChange,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::ListHostedZonesByName => "ListHostedZonesByName",
            Operation::ListResourceRecordSets => "ListResourceRecordSets",
            Operation::ChangeResourceRecordSets => "ChangeResourceRecordSets",
            Operation::GetChange => "GetChange",
        })
    }
}

/// A hosted zone: its ID (without `/hostedzone/`) and name (without the trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    pub(crate) id: String,
    pub(crate) name: String,
}

impl fmt::Display for Zone {
    /// `example.com (Z1D633PJN98FT9)`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.id)
    }
}

/// A TXT record set as Route 53 has it: the name as Route 53 spells it (with the trailing dot),
/// its TTL and its values in Route 53's order, each one TXT record in presentation format
/// (`"abc" "def"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSet {
    pub(crate) name: String,
    pub(crate) ttl: u32,
    pub(crate) values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Upsert,
    Delete,
}

/// A submitted change: its ID (without `/change/`) and status, `PENDING` or `INSYNC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeInfo {
    pub(crate) id: String,
    pub(crate) status: String,
}

impl ChangeInfo {
    pub(crate) fn in_sync(&self) -> bool {
        self.status == "INSYNC"
    }
}

/// A non-2xx answer: Route 53's error code and message when the body is one of its error
/// documents (`<ErrorResponse><Error><Code>`, or `<InvalidChangeBatch><Messages>` from
/// ChangeResourceRecordSets), and the SDK's reading of the status otherwise.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<u32>,
    /// [`http::status_error`] of the answer.
    plain: PluginError,
}

impl Refusal {
    /// Whether Route 53 refused a change batch as not applicable to the zone as it is now (for a
    /// DELETE: the record set is gone, or its values or TTL changed since it was read).
    pub(crate) fn is_invalid_change_batch(&self) -> bool {
        self.code == "InvalidChangeBatch"
    }

    /// `Route 53 answered 403 AccessDenied: User: ... is not authorized ...`.
    fn detail(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => self.plain.message(),
            (false, true) => format!("Route 53 answered {} {}", self.status, self.code),
            (false, false) => format!("Route 53 answered {} {}: {}", self.status, self.code, self.message),
        }
    }
}

pub(crate) struct Api<'a> {
    config: &'a Config,
    /// `https://route53.amazonaws.com`: scheme and authority.
    origin: String,
    /// `route53.amazonaws.com`, `127.0.0.1:5999`: the `host` header the request goes out with.
    authority: String,
    /// The path of a base URL with one (`/route53`), otherwise empty.
    prefix: String,
}

impl<'a> Api<'a> {
    pub(crate) fn new(config: &'a Config) -> Api<'a> {
        let base = config.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
        let scheme = scheme.to_ascii_lowercase();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        // The port the scheme implies is not part of the `host` header that goes out.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let authority = authority
            .strip_suffix(default_port)
            .unwrap_or(authority)
            .to_ascii_lowercase();
        Api {
            config,
            origin: format!("{scheme}://{authority}"),
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        }
    }

    /// The hosted zone named `name` (`ListHostedZonesByName`), unless `hosted_zone_id` is
    /// configured. Of several zones with the name, the public one; a private one only when it
    /// is the only one.
    pub(crate) fn zone(&self, name: &str) -> Result<Zone, PluginError> {
        let name = name.trim_end_matches('.');
        if let Some(id) = &self.config.hosted_zone_id {
            return Ok(Zone {
                id: zone_id(id).to_string(),
                name: name.to_string(),
            });
        }
        let operation = Operation::ListHostedZonesByName;
        let dnsname = format!("{name}.");
        let query = [("dnsname", dnsname.as_str()), ("maxitems", ZONES_PER_LOOKUP)];
        let answer = self
            .call(operation, Method::Get, "hostedzonesbyname", &query, Vec::new())?
            .map_err(|refusal| self.error(refusal, operation, None))?;
        let answer = expect(answer, "ListHostedZonesByNameResponse", operation)?;
        let named: Vec<(Zone, bool)> = answer
            .child("HostedZones")
            .into_iter()
            .flat_map(|zones| zones.children("HostedZone"))
            .filter(|zone| zone.text_at(&["Name"]).is_some_and(|n| same_name(n, name)))
            .filter_map(|zone| {
                let id = zone.text_at(&["Id"])?;
                let private = zone.text_at(&["Config", "PrivateZone"]) == Some("true");
                Some((
                    Zone {
                        id: zone_id(id).to_string(),
                        name: name.to_string(),
                    },
                    private,
                ))
            })
            .collect();
        let public: Vec<&Zone> = named.iter().filter(|(_, private)| !private).map(|(z, _)| z).collect();
        let private: Vec<&Zone> = named.iter().filter(|(_, private)| *private).map(|(z, _)| z).collect();
        let ambiguous = |several: &[&Zone], kind: &str| {
            let ids: Vec<&str> = several.iter().map(|z| z.id.as_str()).collect();
            PluginError::permanent(format!(
                "Route 53 has {} {kind} hosted zones named {name} ({}): set config.hosted_zone_id to the one the \
                 domain is delegated to",
                several.len(),
                ids.join(", ")
            ))
        };
        let chosen = match (public.as_slice(), private.as_slice()) {
            ([zone], _) => *zone,
            ([], [zone]) => {
                certctl_sdk::log::warn(format!(
                    "Route 53 hosted zone {zone} is private: only resolvers in its VPCs see the records"
                ));
                *zone
            }
            ([], []) => {
                return Err(PluginError::not_found(format!(
                    "Route 53 hosted zone {name}: the credentials see no hosted zone of that name (set \
                     config.hosted_zone_id, or check that the zone exists in this AWS account)"
                )));
            }
            ([], several) => return Err(ambiguous(several, "private")),
            (several, _) => return Err(ambiguous(several, "public")),
        };
        Ok(chosen.clone())
    }

    /// The TXT record set at `name` (`ListResourceRecordSets` from the name, one set), if there
    /// is one. Route 53 answers with the set at or after the name, so its name and type are
    /// checked here.
    pub(crate) fn txt_set(&self, zone: &Zone, name: &str) -> Result<Option<RecordSet>, PluginError> {
        let operation = Operation::ListResourceRecordSets;
        let path = format!("hostedzone/{}/rrset", sigv4::encode(&zone.id));
        let start = format!("{}.", name.trim_end_matches('.'));
        let query = [("name", start.as_str()), ("type", "TXT"), ("maxitems", "1")];
        let answer = self
            .call(operation, Method::Get, &path, &query, Vec::new())?
            .map_err(|refusal| self.error(refusal, operation, Some(zone)))?;
        let answer = expect(answer, "ListResourceRecordSetsResponse", operation)?;
        let Some(set) = answer
            .child("ResourceRecordSets")
            .into_iter()
            .flat_map(|sets| sets.children("ResourceRecordSet"))
            .find(|set| {
                set.text_at(&["Type"]) == Some("TXT") && set.text_at(&["Name"]).is_some_and(|n| same_name(n, name))
            })
        else {
            return Ok(None);
        };
        let set_name = set.text_at(&["Name"]).unwrap_or(&start).to_string();
        if let Some(identifier) = set.text_at(&["SetIdentifier"]) {
            return Err(PluginError::permanent(format!(
                "Route 53 hosted zone {zone}: the TXT records at {set_name} have a routing policy (set identifier \
                 {identifier:?}); this plugin manages simple record sets only"
            )));
        }
        let ttl = set.text_at(&["TTL"]).unwrap_or_default();
        let ttl = ttl.parse().map_err(|_| {
            PluginError::permanent(format!(
                "Route 53 hosted zone {zone}: the TXT record set at {set_name} has no usable TTL ({ttl:?})"
            ))
        })?;
        let values = set
            .child("ResourceRecords")
            .into_iter()
            .flat_map(|records| records.children("ResourceRecord"))
            .filter_map(|record| record.child("Value"))
            .map(|value| value.text.clone())
            .collect();
        Ok(Some(RecordSet {
            name: set_name,
            ttl,
            values,
        }))
    }

    /// Submits one change of one TXT record set (`ChangeResourceRecordSets`). A refusal comes
    /// back as is, for the caller to tell a stale DELETE from other errors ([`Api::error`]).
    pub(crate) fn change(
        &self,
        zone: &Zone,
        action: Action,
        set: &RecordSet,
        comment: &str,
    ) -> Result<Result<ChangeInfo, Refusal>, PluginError> {
        let operation = Operation::ChangeResourceRecordSets;
        let path = format!("hostedzone/{}/rrset/", sigv4::encode(&zone.id));
        let answer = match self.call(operation, Method::Post, &path, &[], change_batch(action, set, comment))? {
            Ok(answer) => answer,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let answer = expect(answer, "ChangeResourceRecordSetsResponse", operation)?;
        change_info(&answer, operation).map(Ok)
    }

    /// The status of a change (`GetChange`).
    pub(crate) fn get_change(&self, id: &str) -> Result<ChangeInfo, PluginError> {
        let operation = Operation::GetChange;
        let path = format!("change/{}", sigv4::encode(id));
        let answer = self
            .call(operation, Method::Get, &path, &[], Vec::new())?
            .map_err(|refusal| self.error(refusal, operation, None))?;
        let answer = expect(answer, "GetChangeResponse", operation)?;
        change_info(&answer, operation)
    }

    /// Sends a signed request to `/2013-04-01/<path>` and reads the answer: the XML of a 2xx
    /// answer, the refusal of another.
    fn call(
        &self,
        operation: Operation,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Result<Element, Refusal>, PluginError> {
        let response = self.send(method, &format!("{}/{VERSION}/{path}", self.prefix), query, body)?;
        if let Some(plain) = http::status_error(&response) {
            let (code, message) = error_document(response.body()).unwrap_or_default();
            return Ok(Err(Refusal {
                status: response.status(),
                code,
                message,
                retry_after: response.retry_after(),
                plain,
            }));
        }
        xml::parse(&response.text()).map(Ok).map_err(|e| {
            PluginError::permanent(format!(
                "Route 53 answered {operation} with {} and a body that is not XML ({e}): {}",
                response.status(),
                text::snippet(&response.text())
            ))
        })
    }

    fn send(&self, method: Method, path: &str, query: &[(&str, &str)], body: Vec<u8>) -> Result<Response, PluginError> {
        let query = sigv4::query(query);
        let amz_date = sigv4::amz_date(clock::unix_time());
        let token = self.config.session_token.as_deref();
        let mut signed = vec![("host", self.authority.as_str()), ("x-amz-date", amz_date.as_str())];
        if let Some(token) = token {
            signed.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            &sigv4::Request {
                method: method.as_str(),
                path,
                query: &query,
                headers: &signed,
                body: &body,
            },
            &sigv4::Credentials {
                access_key_id: &self.config.access_key_id,
                secret_access_key: &self.config.secret_access_key,
            },
            REGION,
            SERVICE,
            &amz_date,
        )?;
        let url = match query.is_empty() {
            true => format!("{}{path}", self.origin),
            false => format!("{}{path}?{query}", self.origin),
        };
        let mut request = http::Request::new(method, url)
            .header("X-Amz-Date", amz_date)
            .header("Authorization", authorization)
            .timeout(TIMEOUT);
        if let Some(token) = token {
            request = request.header("X-Amz-Security-Token", token);
        }
        if !body.is_empty() {
            request = request.header("Content-Type", "application/xml").body(body);
        }
        request.send()
    }

    /// What a refusal means for the host, worded for the operator:
    ///
    /// - throttling (`Throttling`, `PriorRequestNotComplete`, 429): `rate-limited`, with
    ///   `Retry-After` when sent;
    /// - refused credentials or permissions (`InvalidClientTokenId`, `SignatureDoesNotMatch`,
    ///   `ExpiredToken`, `AccessDenied`, any 401 or 403): `auth`, saying which key or which IAM
    ///   permission to check;
    /// - `NoSuchHostedZone`, `NoSuchChange`, 404: `not-found`, naming the zone;
    /// - `InvalidChangeBatch`: `permanent`, with Route 53's messages;
    /// - 5xx and 408: `transient`; other 4xx: `permanent`.
    pub(crate) fn error(&self, refusal: Refusal, operation: Operation, zone: Option<&Zone>) -> PluginError {
        let detail = refusal.detail();
        let code = refusal.code.as_str();
        if THROTTLED.contains(&code) || refusal.status == 429 {
            return PluginError::rate_limited(refusal.retry_after);
        }
        let clock = "the server's clock is off: AWS accepts signatures made within 5 minutes of its own time";
        let auth = |hint: &str| PluginError::auth(format!("{detail} ({hint})"));
        match code {
            "InvalidClientTokenId" | "UnrecognizedClientException" => {
                return auth(match self.config.session_token {
                    Some(_) => {
                        "check config.access_key_id and config.session_token: temporary credentials need both, \
                         from the same issue"
                    }
                    None => {
                        "check config.access_key_id: AWS does not know it, or it is inactive; temporary \
                         credentials (ASIA...) also need config.session_token"
                    }
                });
            }
            "SignatureDoesNotMatch" | "IncompleteSignature" | "InvalidSignatureException"
                if refusal.message.to_ascii_lowercase().contains("expired") =>
            {
                return auth(clock);
            }
            "SignatureDoesNotMatch" | "IncompleteSignature" | "InvalidSignatureException" => {
                return auth("check config.secret_access_key: it must be the secret of config.access_key_id");
            }
            "ExpiredToken" | "ExpiredTokenException" => {
                return auth(
                    "config.session_token has expired: configure fresh temporary credentials, or an IAM user's \
                     access key without a session token",
                );
            }
            "RequestExpired" | "RequestTimeTooSkewed" => return auth(clock),
            "NoSuchHostedZone" => {
                let hint = match self.config.hosted_zone_id {
                    Some(_) => " (check config.hosted_zone_id)",
                    None => "",
                };
                let zone = zone.map_or_else(String::new, |z| format!(" {z}"));
                return PluginError::not_found(format!("Route 53 hosted zone{zone}: {detail}{hint}"));
            }
            "InvalidChangeBatch" => {
                let zone = zone.map_or_else(String::new, |z| format!(" in hosted zone {z}"));
                return PluginError::permanent(format!("Route 53 refused the change{zone}: {}", refusal.message));
            }
            _ => {}
        }
        match refusal.status {
            401 | 403 => {
                let resource = match (operation, zone) {
                    (Operation::ListResourceRecordSets | Operation::ChangeResourceRecordSets, Some(zone)) => {
                        format!(" on arn:aws:route53:::hostedzone/{}", zone.id)
                    }
                    (Operation::GetChange, _) => " on arn:aws:route53:::change/*".into(),
                    _ => String::new(),
                };
                auth(&format!(
                    "the IAM policy of config.access_key_id must allow route53:{operation}{resource}; the plugin's \
                     README lists what it needs"
                ))
            }
            404 => PluginError::not_found(match zone {
                Some(zone) => format!("Route 53 hosted zone {zone}: {detail}"),
                None => detail,
            }),
            408 | 500..=599 => PluginError::transient(detail),
            _ if refusal.code.is_empty() => refusal.plain,
            _ => PluginError::permanent(match zone {
                Some(zone) => format!("{detail} ({operation} in hosted zone {zone})"),
                None => format!("{detail} ({operation})"),
            }),
        }
    }
}

/// The request body of one change to one TXT record set.
fn change_batch(action: Action, set: &RecordSet, comment: &str) -> Vec<u8> {
    let action = match action {
        Action::Upsert => "UPSERT",
        Action::Delete => "DELETE",
    };
    let records: String = set
        .values
        .iter()
        .map(|value| format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", xml::escape(value)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch>\
         <Comment>{}</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{}</Name>\
         <Type>TXT</Type><TTL>{}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>\
         </Changes></ChangeBatch></ChangeResourceRecordSetsRequest>",
        xml::escape(comment),
        xml::escape(&set.name),
        set.ttl
    )
    .into_bytes()
}

/// The answer's root element if it is `name`.
fn expect(answer: Element, name: &str, operation: Operation) -> Result<Element, PluginError> {
    if answer.name == name {
        return Ok(answer);
    }
    Err(PluginError::permanent(format!(
        "Route 53 answered {operation} with <{}> instead of <{name}> (is config.api_url the Route 53 API?)",
        answer.name
    )))
}

/// The `ChangeInfo` of a ChangeResourceRecordSets or GetChange answer.
fn change_info(answer: &Element, operation: Operation) -> Result<ChangeInfo, PluginError> {
    let id = answer.text_at(&["ChangeInfo", "Id"]);
    let status = answer.text_at(&["ChangeInfo", "Status"]);
    match (id, status) {
        (Some(id), Some(status)) if !id.is_empty() => Ok(ChangeInfo {
            id: id.strip_prefix("/change/").unwrap_or(id).to_string(),
            status: status.to_string(),
        }),
        _ => Err(PluginError::permanent(format!(
            "Route 53 answered {operation} without a ChangeInfo Id and Status"
        ))),
    }
}

/// The code and message of one of Route 53's error documents, the message on one line.
fn error_document(body: &[u8]) -> Option<(String, String)> {
    let root = xml::parse(&String::from_utf8_lossy(body)).ok()?;
    let one_line = |text: &str| text::truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "), 500);
    let (code, message) = match root.name.as_str() {
        // Route 53's own, and with the `Errors` list of the query APIs (moto answers so).
        "ErrorResponse" | "Response" => {
            let error = root.child("Error").or_else(|| root.at(&["Errors", "Error"]))?;
            (
                error.text_at(&["Code"])?,
                one_line(error.text_at(&["Message"]).unwrap_or_default()),
            )
        }
        // S3-style, without the envelope.
        "Error" => (
            root.text_at(&["Code"])?,
            one_line(root.text_at(&["Message"]).unwrap_or_default()),
        ),
        "InvalidChangeBatch" => {
            let messages: Vec<String> = root
                .child("Messages")
                .into_iter()
                .flat_map(|m| m.children("Message"))
                .map(|m| one_line(&m.text))
                .collect();
            ("InvalidChangeBatch", messages.join("; "))
        }
        _ => return None,
    };
    Some((code.to_string(), message))
}

/// A configured hosted zone ID without the `/hostedzone/` that API answers put before it.
pub(crate) fn zone_id(id: &str) -> &str {
    id.strip_prefix("/hostedzone/").unwrap_or(id)
}

/// Whether two DNS names are the same, ignoring case and a trailing dot.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}
