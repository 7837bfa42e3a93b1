//! A certctl DNS-01 solver that publishes TXT records with RFC 2136 dynamic updates signed with
//! TSIG (RFC 8945), for BIND 9, Knot, PowerDNS or any server that accepts such updates. Each call
//! sends one UPDATE through the host (`host-dns`): `present` adds exactly the challenge's TXT
//! record, `cleanup` deletes exactly that record. See README.md.

use std::hash::{BuildHasher, Hasher};
use std::net::Ipv6Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certctl_sdk::dns::{self, Transport};
use certctl_sdk::{DnsRecord, DnsSolver, PluginError, log};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Sha256, Sha512};

/// Seconds of clock difference a signature tolerates (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// TTLs are at most 2^31 - 1 (RFC 2181, section 8).
const MAX_TTL: u32 = 2_147_483_647;

const OPCODE_UPDATE: u8 = 5;
const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;

/// RCODEs (RFC 1035, RFC 2136) and TSIG errors (RFC 8945).
const NOERROR: u16 = 0;
const FORMERR: u16 = 1;
const SERVFAIL: u16 = 2;
const NOTIMP: u16 = 4;
const REFUSED: u16 = 5;
const NOTAUTH: u16 = 9;
const NOTZONE: u16 = 10;
const BADSIG: u16 = 16;
const BADKEY: u16 = 17;
const BADTIME: u16 = 18;
const BADTRUNC: u16 = 22;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The server that accepts updates: `HOST:PORT`, `HOST` (port 53) or `[v6]:PORT`.
    server: String,
    /// The TSIG key's name, as in the server's `key` statement.
    tsig_key_name: String,
    /// The key's secret, base64.
    tsig_secret: String,
    #[serde(default)]
    tsig_algorithm: Algorithm,
    /// The zone to update; the challenge's zone when absent.
    #[serde(default)]
    zone: Option<String>,
    /// TTL of the TXT record; the challenge's TTL when absent.
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    transport: TransportName,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Algorithm {
    #[default]
    HmacSha256,
    HmacSha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TransportName {
    #[default]
    Udp,
    Tcp,
}

struct Rfc2136;

impl DnsSolver for Rfc2136 {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        check_server(&config.server)?;
        let key_name = Name::parse(&config.tsig_key_name)
            .map_err(|why| PluginError::invalid_config(format!("config.tsig_key_name: {why}")))?;
        if key_name.labels.is_empty() {
            return Err(PluginError::invalid_config(
                "config.tsig_key_name: must be the key's name, e.g. certctl.",
            ));
        }
        secret(config)?;
        if let Some(zone) = &config.zone {
            Name::parse(zone).map_err(|why| PluginError::invalid_config(format!("config.zone: {why}")))?;
        }
        if let Some(ttl) = config.ttl
            && ttl > MAX_TTL
        {
            return Err(PluginError::invalid_config(format!(
                "config.ttl: must be at most {MAX_TTL} seconds"
            )));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let update = Update::new(config, record)?;
        let ttl = config.ttl.unwrap_or(record.ttl).min(MAX_TTL);
        update.send(CLASS_IN, ttl)?;
        log::info(format!(
            "{}: added the TXT record (zone {}, TTL {ttl}); other values at the name stay",
            update.name, update.zone
        ));
        Ok(())
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let update = Update::new(config, record)?;
        // Class NONE, TTL 0: delete this RR from the RRset (RFC 2136, section 2.5.4); a record
        // that is not there is silently ignored by the server.
        update.send(CLASS_NONE, 0)?;
        log::info(format!(
            "{}: deleted the TXT record (zone {}) if it was there",
            update.name, update.zone
        ));
        Ok(())
    }
}

certctl_sdk::register_dns_solver!(Rfc2136);

/// `HOST:PORT`, `HOST`, `[v6]:PORT` or `[v6]`, as `host-dns` takes it.
fn check_server(server: &str) -> Result<(), PluginError> {
    let invalid = |why: &str| PluginError::invalid_config(format!("config.server: {why}"));
    let form = "must be HOST:PORT or HOST (port 53), e.g. 127.0.0.1:5354 or [2001:db8::53]:53";
    if server.contains("://") {
        return Err(invalid(
            "must be HOST:PORT (e.g. 127.0.0.1:5354), not a URL; the operator grants it as dns://HOST:PORT",
        ));
    }
    if server.is_empty()
        || server
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(invalid(form));
    }
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(|| invalid(form))?;
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(invalid("has no IPv6 address in the brackets"));
        }
        match after {
            "" => (address, None),
            _ => (address, Some(after.strip_prefix(':').ok_or_else(|| invalid(form))?)),
        }
    } else {
        match server.matches(':').count() {
            0 => (server, None),
            1 => server
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .ok_or_else(|| invalid(form))?,
            _ => return Err(invalid("an IPv6 address goes in brackets: [2001:db8::53]:53")),
        }
    };
    if host.is_empty() {
        return Err(invalid(form));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(invalid("the port must be a number from 1 to 65535"));
    }
    Ok(())
}

/// The decoded TSIG secret. Messages never repeat it.
fn secret(config: &Config) -> Result<Vec<u8>, PluginError> {
    let secret = BASE64.decode(config.tsig_secret.trim()).map_err(|_| {
        PluginError::invalid_config(
            "config.tsig_secret: not base64; give the secret of the key as tsig-keygen prints it",
        )
    })?;
    if secret.is_empty() {
        return Err(PluginError::invalid_config("config.tsig_secret: is empty"));
    }
    Ok(secret)
}

/// One UPDATE of one TXT record, signed with one key.
struct Update<'a> {
    config: &'a Config,
    key: Key,
    /// `example.com.`, for messages.
    zone: String,
    zone_name: Name,
    /// `_acme-challenge.www.example.com.`, for messages.
    name: String,
    record_name: Name,
    /// The TXT RDATA of the value.
    rdata: Vec<u8>,
}

impl<'a> Update<'a> {
    fn new(config: &'a Config, record: &DnsRecord) -> Result<Update<'a>, PluginError> {
        let key = Key {
            name: Name::parse(&config.tsig_key_name)
                .map_err(|why| PluginError::invalid_config(format!("config.tsig_key_name: {why}")))?,
            algorithm: config.tsig_algorithm,
            secret: secret(config)?,
        };
        let (zone_text, zone_key) = match &config.zone {
            Some(zone) => (zone.as_str(), "config.zone"),
            None => (record.zone.as_str(), "the challenge's zone"),
        };
        let zone_name =
            Name::parse(zone_text).map_err(|why| PluginError::invalid_config(format!("{zone_key}: {why}")))?;
        let record_name = Name::parse(&record.fqdn)
            .map_err(|why| PluginError::permanent(format!("the challenge name {:?}: {why}", record.fqdn)))?;
        let zone = zone_name.to_string();
        let name = record_name.to_string();
        if !record_name.is_within(&zone_name) {
            let message = format!("{name} is not in zone {zone}");
            return Err(match config.zone {
                Some(_) => PluginError::invalid_config(format!(
                    "config.zone: {message}; leave it out to use the zone the host picks"
                )),
                None => PluginError::permanent(message),
            });
        }
        Ok(Update {
            config,
            key,
            zone,
            zone_name,
            name,
            record_name,
            rdata: txt_rdata(record.value.as_bytes()),
        })
    }

    /// Sends the UPDATE adding (class IN) or deleting (class NONE) the record, and reads the
    /// answer.
    fn send(&self, class: u16, ttl: u32) -> Result<(), PluginError> {
        let id = random_id();
        let mut message = update_message(id, &self.zone_name, &self.record_name, class, ttl, &self.rdata);
        let request_mac = self.key.sign(&mut message, unix_time())?;
        let transport = match self.config.transport {
            TransportName::Udp => Transport::Udp,
            TransportName::Tcp => Transport::Tcp,
        };
        let answer = dns::exchange(&self.config.server, &message, transport)?;
        let response = Response::parse(&answer).map_err(|why| {
            PluginError::transient(format!(
                "the answer of {} is not a DNS message that can be read: {why}",
                self.config.server
            ))
        })?;
        if response.id != id || response.flags & 0x8000 == 0 || response.opcode() != OPCODE_UPDATE {
            return Err(PluginError::transient(format!(
                "the answer of {} is not the answer to the UPDATE sent",
                self.config.server
            )));
        }
        self.outcome(&answer, &response, &request_mac)
    }

    fn outcome(&self, answer: &[u8], response: &Response, request_mac: &[u8]) -> Result<(), PluginError> {
        let server = &self.config.server;
        let key = &self.key.name;
        if let Some(tsig) = &response.tsig
            && tsig.error != NOERROR
        {
            return Err(match tsig.error {
                BADKEY => PluginError::auth(format!(
                    "{server} does not know key {key} (TSIG BADKEY): check tsig_key_name and tsig_algorithm ({}) \
                     against the server's key statement",
                    self.key.algorithm.name()
                )),
                BADSIG => PluginError::auth(format!(
                    "{server} rejected the signature of key {key} (TSIG BADSIG): check tsig_secret and tsig_algorithm"
                )),
                BADTIME => PluginError::auth(format!(
                    "{server} rejected the time of the signature (TSIG BADTIME): clock skew of more than {FUDGE} s \
                     between certctl and the server{}",
                    tsig.server_time()
                        .map(|t| format!(" (server time {t}, ours {})", unix_time()))
                        .unwrap_or_default()
                )),
                BADTRUNC => PluginError::auth(format!(
                    "{server} refused the signature's truncated MAC (TSIG BADTRUNC)"
                )),
                other => PluginError::auth(format!("{server} refused the TSIG signature (TSIG error {other})")),
            });
        }
        // An answer that says yes must be signed by the key; a refusal may come unsigned (a
        // server signs only when it verified the request), and is checked when it is signed.
        let signed = response.tsig.as_ref().is_some_and(|tsig| !tsig.mac.is_empty());
        if signed || response.rcode() == NOERROR {
            self.key.verify(answer, response, request_mac).map_err(|why| {
                PluginError::transient(format!(
                    "the answer of {server} does not carry a valid signature of key {key}: {why}"
                ))
            })?;
        }
        let zone = &self.zone;
        let name = &self.name;
        Err(match response.rcode() {
            NOERROR => return Ok(()),
            NOTAUTH => PluginError::auth(format!(
                "{server} answered NOTAUTH: it is not authoritative for zone {zone} (or not the primary), or did \
                 not accept key {key}"
            )),
            REFUSED => PluginError::auth(format!(
                "{server} answered REFUSED: the key {key} may not update {name} TXT in zone {zone}: check \
                 update-policy (e.g. grant {key} zonesub TXT;)"
            )),
            NOTZONE => PluginError::invalid_config(format!(
                "config.zone: {server} answered NOTZONE: {name} is not in zone {zone}"
            )),
            SERVFAIL => PluginError::transient(format!("{server} answered SERVFAIL to the update of {name}")),
            FORMERR => PluginError::permanent(format!(
                "{server} answered FORMERR: it could not read the update of {name}"
            )),
            NOTIMP => PluginError::permanent(format!("{server} answered NOTIMP: it does not accept dynamic updates")),
            other => PluginError::permanent(format!("{server} refused the update of {name} with RCODE {other}")),
        })
    }
}

/// A TSIG key.
struct Key {
    name: Name,
    algorithm: Algorithm,
    secret: Vec<u8>,
}

impl Algorithm {
    /// The algorithm's name in TSIG records (RFC 8945, section 6).
    fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256.",
            Algorithm::HmacSha512 => "hmac-sha512.",
        }
    }

    fn wire_name(self) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in self.name().trim_end_matches('.').split('.') {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        wire
    }

    fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
        }
    }

    /// HMAC of the concatenation of `parts`.
    fn mac(self, secret: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, PluginError> {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, PluginError> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret)
                .map_err(|_| PluginError::invalid_config("config.tsig_secret: not usable as an HMAC key"))?;
            for part in parts {
                mac.update(part);
            }
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Algorithm::HmacSha256 => run::<Hmac<Sha256>>(secret, parts),
            Algorithm::HmacSha512 => run::<Hmac<Sha512>>(secret, parts),
        }
    }
}

impl Key {
    /// The TSIG variables (RFC 8945, section 4.3.3): key name and algorithm name in canonical
    /// form, class ANY, TTL 0, time signed, fudge, error, other data.
    fn variables(&self, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
        let mut v = self.name.canonical();
        put_u16(&mut v, CLASS_ANY);
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&self.algorithm.wire_name());
        put_u48(&mut v, time);
        put_u16(&mut v, fudge);
        put_u16(&mut v, error);
        put_u16(&mut v, other.len() as u16);
        v.extend_from_slice(other);
        v
    }

    /// Appends the TSIG RR signing `message` (which has no additional records yet) at `time`,
    /// and returns the MAC.
    fn sign(&self, message: &mut Vec<u8>, time: u64) -> Result<Vec<u8>, PluginError> {
        let original_id = [message[0], message[1]];
        let mac = self
            .algorithm
            .mac(&self.secret, &[message, &self.variables(time, FUDGE, NOERROR, &[])])?;
        let mut rdata = self.algorithm.wire_name();
        put_u48(&mut rdata, time);
        put_u16(&mut rdata, FUDGE);
        put_u16(&mut rdata, mac.len() as u16);
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&original_id);
        put_u16(&mut rdata, NOERROR);
        put_u16(&mut rdata, 0);
        message.extend_from_slice(&self.name.canonical());
        put_u16(message, TYPE_TSIG);
        put_u16(message, CLASS_ANY);
        message.extend_from_slice(&0u32.to_be_bytes());
        put_u16(message, rdata.len() as u16);
        message.extend_from_slice(&rdata);
        let arcount = u16::from_be_bytes([message[10], message[11]]) + 1;
        message[10..12].copy_from_slice(&arcount.to_be_bytes());
        Ok(mac)
    }

    /// Checks the TSIG of an answer (RFC 8945, section 4.3.3 and 5.4.2): the MAC over the
    /// request's MAC (size and MAC), the answer without its TSIG RR (with the original id and
    /// ARCOUNT less one), and the answer's TSIG variables; then the time.
    fn verify(&self, answer: &[u8], response: &Response, request_mac: &[u8]) -> Result<(), String> {
        let tsig = response.tsig.as_ref().ok_or("the answer is not signed")?;
        if tsig.name != self.name.canonical() {
            return Err("it is signed with another key".into());
        }
        if tsig.algorithm != self.algorithm.wire_name() {
            return Err("it is signed with another algorithm".into());
        }
        if tsig.mac.len() != self.algorithm.mac_len() {
            return Err(format!("its MAC has {} bytes", tsig.mac.len()));
        }
        let mut unsigned = answer[..response.tsig_start].to_vec();
        unsigned[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
        let arcount = u16::from_be_bytes([unsigned[10], unsigned[11]]).saturating_sub(1);
        unsigned[10..12].copy_from_slice(&arcount.to_be_bytes());
        let mut request_mac_size = Vec::new();
        put_u16(&mut request_mac_size, request_mac.len() as u16);
        let variables = self.variables(tsig.time, tsig.fudge, tsig.error, &tsig.other);
        let expected = self
            .algorithm
            .mac(&self.secret, &[&request_mac_size, request_mac, &unsigned, &variables])
            .map_err(|e| e.to_string())?;
        // Both are the algorithm's full length; a MAC is public, the secret is what matters.
        if !constant_time_eq(&expected, &tsig.mac) {
            return Err("the MAC does not match".into());
        }
        if unix_time().abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(format!(
                "it was signed at {} (Unix time), more than {} s from our clock ({}): clock skew",
                tsig.time,
                tsig.fudge,
                unix_time()
            ));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An UPDATE (RFC 2136, section 2) for `zone` with no prerequisites and one update RR:
/// `name TXT` with `class` and `ttl` (IN: add; NONE with TTL 0: delete this RR).
fn update_message(id: u16, zone: &Name, name: &Name, class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(128 + rdata.len());
    put_u16(&mut m, id);
    put_u16(&mut m, u16::from(OPCODE_UPDATE) << 11);
    put_u16(&mut m, 1); // ZOCOUNT
    put_u16(&mut m, 0); // PRCOUNT
    put_u16(&mut m, 1); // UPCOUNT
    put_u16(&mut m, 0); // ADCOUNT
    m.extend_from_slice(&zone.wire());
    put_u16(&mut m, TYPE_SOA);
    put_u16(&mut m, CLASS_IN);
    m.extend_from_slice(&name.wire());
    put_u16(&mut m, TYPE_TXT);
    put_u16(&mut m, class);
    m.extend_from_slice(&ttl.to_be_bytes());
    put_u16(&mut m, rdata.len() as u16);
    m.extend_from_slice(rdata);
    m
}

/// TXT RDATA: the value as character-strings of at most 255 bytes (one empty string for an
/// empty value).
fn txt_rdata(value: &[u8]) -> Vec<u8> {
    if value.is_empty() {
        return vec![0];
    }
    let mut rdata = Vec::with_capacity(value.len() + value.len() / 255 + 1);
    for chunk in value.chunks(255) {
        rdata.push(chunk.len() as u8);
        rdata.extend_from_slice(chunk);
    }
    rdata
}

fn put_u16(buffer: &mut Vec<u8>, value: u16) {
    buffer.extend_from_slice(&value.to_be_bytes());
}

fn put_u48(buffer: &mut Vec<u8>, value: u64) {
    buffer.extend_from_slice(&value.to_be_bytes()[2..]);
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A message id nobody can guess (std's hasher keys come from the system's random source).
fn random_id() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_time());
    hasher.finish() as u16
}

/// A domain name as labels (without the root label). No escapes: challenge names, zones and key
/// names are letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    labels: Vec<Vec<u8>>,
}

impl Name {
    fn parse(text: &str) -> Result<Name, String> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return if text.is_empty() {
                Err("is empty".into())
            } else {
                Ok(Name { labels: Vec::new() })
            };
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(format!("{text:?} is not a domain name (spaces or escapes in it)"));
        }
        let labels: Vec<Vec<u8>> = trimmed.split('.').map(|l| l.as_bytes().to_vec()).collect();
        if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            return Err(format!(
                "{text:?} is not a domain name (an empty label, or one longer than 63 bytes)"
            ));
        }
        let name = Name { labels };
        if name.wire().len() > 255 {
            return Err(format!("{text:?} is longer than 255 bytes in wire form"));
        }
        Ok(name)
    }

    /// Uncompressed wire form, as written.
    fn wire(&self) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in &self.labels {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        wire
    }

    /// Canonical wire form (RFC 4034, section 6.2): uncompressed, lower case.
    fn canonical(&self) -> Vec<u8> {
        self.wire().to_ascii_lowercase()
    }

    fn is_within(&self, zone: &Name) -> bool {
        self.labels.len() >= zone.labels.len()
            && self.labels[self.labels.len() - zone.labels.len()..]
                .iter()
                .zip(&zone.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            write!(f, "{}.", String::from_utf8_lossy(label))?;
        }
        Ok(())
    }
}

/// What is read of an answer: the header and the TSIG RR, if any.
#[derive(Debug)]
struct Response {
    id: u16,
    flags: u16,
    tsig: Option<TsigRecord>,
    /// Where the TSIG RR starts (the end of the message when there is none).
    tsig_start: usize,
}

#[derive(Debug)]
struct TsigRecord {
    /// Owner name, canonical wire form.
    name: Vec<u8>,
    /// Algorithm name, canonical wire form.
    algorithm: Vec<u8>,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

impl TsigRecord {
    /// The server's clock, which a BADTIME answer carries in its other data.
    fn server_time(&self) -> Option<u64> {
        let bytes: [u8; 6] = self.other.as_slice().try_into().ok()?;
        let mut time = [0u8; 8];
        time[2..].copy_from_slice(&bytes);
        Some(u64::from_be_bytes(time))
    }
}

impl Response {
    fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    fn rcode(&self) -> u16 {
        self.flags & 0xf
    }

    fn parse(bytes: &[u8]) -> Result<Response, String> {
        let mut r = Reader { bytes, pos: 0 };
        let id = r.u16()?;
        let flags = r.u16()?;
        let zocount = r.u16()?;
        let counts = [r.u16()?, r.u16()?];
        let arcount = r.u16()?;
        for _ in 0..zocount {
            r.name()?;
            r.take(4)?;
        }
        for _ in 0..u32::from(counts[0]) + u32::from(counts[1]) {
            r.name()?;
            r.take(8)?;
            let length = r.u16()?;
            r.take(usize::from(length))?;
        }
        let mut tsig = None;
        let mut tsig_start = bytes.len();
        for index in 0..arcount {
            let start = r.pos;
            let name = r.name()?;
            let kind = r.u16()?;
            r.take(6)?;
            let length = usize::from(r.u16()?);
            let end = r.pos + length;
            if kind != TYPE_TSIG {
                r.take(length)?;
                continue;
            }
            if index + 1 != arcount {
                return Err("the TSIG record is not the last record".into());
            }
            let algorithm = r.name()?;
            let time = r.u48()?;
            let fudge = r.u16()?;
            let mac_size = usize::from(r.u16()?);
            let mac = r.take(mac_size)?.to_vec();
            let original_id = r.u16()?;
            let error = r.u16()?;
            let other_size = usize::from(r.u16()?);
            let other = r.take(other_size)?.to_vec();
            if r.pos != end {
                return Err("the TSIG record's length does not match its content".into());
            }
            tsig_start = start;
            tsig = Some(TsigRecord {
                name,
                algorithm,
                time,
                fudge,
                mac,
                original_id,
                error,
                other,
            });
        }
        if r.pos != bytes.len() {
            return Err("bytes after the last record".into());
        }
        Ok(Response {
            id,
            flags,
            tsig,
            tsig_start,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or("the message ends early")?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u48(&mut self) -> Result<u64, String> {
        let b = self.take(6)?;
        let mut time = [0u8; 8];
        time[2..].copy_from_slice(b);
        Ok(u64::from_be_bytes(time))
    }

    /// A name, following compression pointers, in canonical wire form.
    fn name(&mut self) -> Result<Vec<u8>, String> {
        let mut name = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        for _ in 0..128 {
            let length = *self.bytes.get(pos).ok_or("the message ends in a name")?;
            match length {
                0 => {
                    name.push(0);
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    if name.len() > 255 {
                        return Err("a name is longer than 255 bytes".into());
                    }
                    return Ok(name.to_ascii_lowercase());
                }
                1..=63 => {
                    let label = self
                        .bytes
                        .get(pos..pos + 1 + usize::from(length))
                        .ok_or("the message ends in a name")?;
                    name.extend_from_slice(label);
                    pos += 1 + usize::from(length);
                }
                0xc0..=0xff => {
                    let low = *self.bytes.get(pos + 1).ok_or("the message ends in a name")?;
                    if !jumped {
                        self.pos = pos + 2;
                    }
                    jumped = true;
                    pos = usize::from(u16::from_be_bytes([length & 0x3f, low]));
                }
                _ => return Err("a name has an unknown label type".into()),
            }
        }
        Err("a name has too many labels or a compression loop".into())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use certctl_sdk::testkit::{self, MockDns, MockResponse, conformance};
    use serde_json::{Value, json};

    use super::*;

    const SERVER: &str = "127.0.0.1:5354";
    const KEY_NAME: &str = "certctl.";
    /// `tsig-keygen -a hmac-sha256 certctl.` output format: 32 random bytes, base64.
    const SECRET_B64: &str = "Xv7Zk8VZcqBSBQzXWwx0bNmkTLOXsHP9gMv4hyu5Gjw=";
    const ZONE: &str = "example.test";
    const FQDN: &str = "_acme-challenge.www.example.test";

    fn config() -> Value {
        json!({"server": SERVER, "tsig_key_name": KEY_NAME, "tsig_secret": SECRET_B64})
    }

    fn record(value: &str) -> DnsRecord {
        testkit::dns_record(ZONE, FQDN, value)
    }

    /// How the fake answers an update it verified.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        /// Applies it and answers NOERROR, signed.
        Apply,
        /// Answers this RCODE, signed, without applying anything.
        Rcode(u16),
        /// Applies it and answers NOERROR with a MAC that is one bit off.
        BadMac,
        /// Applies it and answers NOERROR without a TSIG record.
        Unsigned,
    }

    /// A fake RFC 2136 primary for one zone and one key: it reads the UPDATE (no compression
    /// needed: the plugin writes none), checks the TSIG like a server (RFC 8945, section 5.2),
    /// applies the update section to its records and answers signed. Written apart from the
    /// plugin's code, from the RFCs.
    struct Fake {
        zone: String,
        key_name: String,
        secret: Vec<u8>,
        /// `hmac-sha256` or `hmac-sha512`.
        algorithm: &'static str,
        /// Seconds added to the fake's clock.
        clock_offset: i64,
        answer: Answer,
        /// TXT RDATA by lower-case owner name without the trailing dot.
        records: BTreeMap<String, Vec<Vec<u8>>>,
        /// (owner, class, ttl) of every update RR applied.
        applied: Vec<(String, u16, u32)>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                zone: ZONE.into(),
                key_name: "certctl".into(),
                secret: BASE64.decode(SECRET_B64).expect("base64"),
                algorithm: "hmac-sha256",
                clock_offset: 0,
                answer: Answer::Apply,
                records: BTreeMap::new(),
                applied: Vec::new(),
            }
        }

        fn values(&self, fqdn: &str) -> Vec<String> {
            self.records
                .get(&fqdn.to_ascii_lowercase())
                .map(|set| {
                    set.iter()
                        .map(|rdata| {
                            let mut text = Vec::new();
                            let mut rest = &rdata[..];
                            while let Some((&len, tail)) = rest.split_first() {
                                text.extend_from_slice(&tail[..usize::from(len)]);
                                rest = &tail[usize::from(len)..];
                            }
                            String::from_utf8(text).expect("UTF-8")
                        })
                        .collect()
                })
                .unwrap_or_default()
        }

        fn now(&self) -> u64 {
            (unix_time() as i64 + self.clock_offset) as u64
        }

        fn hmac(&self, data: &[u8]) -> Vec<u8> {
            match self.algorithm {
                "hmac-sha256" => {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("key");
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                _ => {
                    let mut mac = Hmac::<Sha512>::new_from_slice(&self.secret).expect("key");
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
            }
        }

        /// `a.b.` as labels, lower case, uncompressed.
        fn wire(name: &str) -> Vec<u8> {
            let mut out = Vec::new();
            for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
                out.push(label.len() as u8);
                out.extend(label.to_ascii_lowercase().bytes());
            }
            out.push(0);
            out
        }

        /// TSIG variables as RFC 8945 section 4.3.3 lists them.
        fn tsig_variables(&self, time: u64, error: u16, other: &[u8]) -> Vec<u8> {
            let mut v = Fake::wire(&self.key_name);
            v.extend(255u16.to_be_bytes());
            v.extend(0u32.to_be_bytes());
            v.extend(Fake::wire(self.algorithm));
            v.extend(&time.to_be_bytes()[2..]);
            v.extend(300u16.to_be_bytes());
            v.extend(error.to_be_bytes());
            v.extend((other.len() as u16).to_be_bytes());
            v.extend(other);
            v
        }

        fn handle(&mut self, message: &[u8]) -> Vec<u8> {
            let be16 = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
            let be32 = |at: usize| u32::from_be_bytes(message[at..at + 4].try_into().expect("4"));
            let id = be16(0);
            assert_eq!((be16(2) >> 11) & 0xf, 5, "opcode UPDATE");
            assert_eq!(be16(2) & 0x87ff, 0, "no other flags in a request");
            let (zocount, prcount, upcount, adcount) = (be16(4), be16(6), be16(8), be16(10));
            assert_eq!((zocount, prcount, adcount), (1, 0, 1));
            let read_name = |pos: &mut usize| -> String {
                let mut labels = Vec::new();
                loop {
                    let len = usize::from(message[*pos]);
                    assert!(len < 64, "no compression expected");
                    *pos += 1;
                    if len == 0 {
                        break;
                    }
                    labels.push(String::from_utf8(message[*pos..*pos + len].to_vec()).expect("ASCII"));
                    *pos += len;
                }
                labels.join(".")
            };
            let mut pos = 12;
            let zone = read_name(&mut pos);
            assert_eq!((be16(pos), be16(pos + 2)), (6, 1), "zone section: SOA IN");
            pos += 4;
            let zone_end = pos;
            let mut updates = Vec::new();
            for _ in 0..upcount {
                let name = read_name(&mut pos);
                let (kind, class, ttl, len) = (be16(pos), be16(pos + 2), be32(pos + 4), usize::from(be16(pos + 8)));
                pos += 10;
                updates.push((name, kind, class, ttl, message[pos..pos + len].to_vec()));
                pos += len;
            }
            // The TSIG RR.
            let tsig_start = pos;
            let key_name = read_name(&mut pos);
            assert_eq!(
                (be16(pos), be16(pos + 2), be32(pos + 4)),
                (250, 255, 0),
                "TSIG, ANY, TTL 0"
            );
            let rdlen = usize::from(be16(pos + 8));
            pos += 10;
            assert_eq!(pos + rdlen, message.len(), "TSIG is the last RR");
            let algorithm = read_name(&mut pos);
            let time = u64::from_be_bytes([
                0,
                0,
                message[pos],
                message[pos + 1],
                message[pos + 2],
                message[pos + 3],
                message[pos + 4],
                message[pos + 5],
            ]);
            let fudge = be16(pos + 6);
            let mac_len = usize::from(be16(pos + 8));
            let mac = message[pos + 10..pos + 10 + mac_len].to_vec();
            pos += 10 + mac_len;
            assert_eq!(be16(pos), id, "original id");
            assert_eq!((be16(pos + 2), be16(pos + 4)), (0, 0), "error 0, no other data");
            assert_eq!(fudge, 300);

            let zone_section = message[12..zone_end].to_vec();
            if !key_name.eq_ignore_ascii_case(self.key_name.trim_end_matches('.')) || algorithm != self.algorithm {
                return self.respond(id, &zone_section, 9, None, 17, &[]);
            }
            let mut signed = message[..tsig_start].to_vec();
            signed[10..12].copy_from_slice(&0u16.to_be_bytes());
            signed.extend(self.tsig_variables(time, 0, &[]));
            if self.hmac(&signed) != mac {
                return self.respond(id, &zone_section, 9, None, 16, &[]);
            }
            if self.now().abs_diff(time) > u64::from(fudge) {
                let now = self.now().to_be_bytes()[2..].to_vec();
                return self.respond(id, &zone_section, 9, Some(&mac), 18, &now);
            }
            if !zone.eq_ignore_ascii_case(&self.zone) {
                return self.respond(id, &zone_section, 9, Some(&mac), 0, &[]);
            }
            if let Answer::Rcode(rcode) = self.answer {
                return self.respond(id, &zone_section, rcode, Some(&mac), 0, &[]);
            }
            let suffix = format!(".{}", self.zone);
            if updates
                .iter()
                .any(|(name, ..)| !name.to_ascii_lowercase().ends_with(&suffix))
            {
                return self.respond(id, &zone_section, 10, Some(&mac), 0, &[]);
            }
            for (name, kind, class, ttl, rdata) in updates {
                assert_eq!(kind, 16, "TXT");
                let set = self.records.entry(name.to_ascii_lowercase()).or_default();
                match class {
                    // RFC 2136 3.4.2.2: a duplicate RR is ignored.
                    1 if !set.contains(&rdata) => set.push(rdata),
                    1 => {}
                    // RFC 2136 3.4.2.4: delete this RR; a missing one is ignored.
                    254 => {
                        assert_eq!(ttl, 0, "a deletion has TTL 0");
                        set.retain(|r| *r != rdata);
                    }
                    other => panic!("unexpected class {other}"),
                }
                self.applied.push((name, class, ttl));
            }
            self.records.retain(|_, set| !set.is_empty());
            self.respond(id, &zone_section, 0, Some(&mac), 0, &[])
        }

        /// An answer with `rcode`, signed over `request_mac` when there is one (RFC 8945,
        /// section 4.3.3), or with an empty MAC and `error` (BADKEY, BADSIG).
        fn respond(
            &self,
            id: u16,
            zone_section: &[u8],
            rcode: u16,
            request_mac: Option<&[u8]>,
            error: u16,
            other: &[u8],
        ) -> Vec<u8> {
            let mut answer = Vec::new();
            answer.extend(id.to_be_bytes());
            answer.extend((0x8000u16 | (5 << 11) | rcode).to_be_bytes());
            answer.extend([0, 1, 0, 0, 0, 0, 0, 0]);
            answer.extend(zone_section);
            if self.answer == Answer::Unsigned && rcode == 0 {
                return answer;
            }
            let time = self.now();
            let mac = match request_mac {
                Some(request_mac) => {
                    let mut digest = (request_mac.len() as u16).to_be_bytes().to_vec();
                    digest.extend(request_mac);
                    digest.extend(&answer);
                    digest.extend(self.tsig_variables(time, error, other));
                    let mut mac = self.hmac(&digest);
                    if self.answer == Answer::BadMac {
                        mac[0] ^= 1;
                    }
                    mac
                }
                None => Vec::new(),
            };
            let mut rdata = Fake::wire(self.algorithm);
            rdata.extend(&time.to_be_bytes()[2..]);
            rdata.extend(300u16.to_be_bytes());
            rdata.extend((mac.len() as u16).to_be_bytes());
            rdata.extend(&mac);
            rdata.extend(id.to_be_bytes());
            rdata.extend(error.to_be_bytes());
            rdata.extend((other.len() as u16).to_be_bytes());
            rdata.extend(other);
            answer.extend(Fake::wire(&self.key_name));
            answer.extend([0, 250, 0, 255, 0, 0, 0, 0]);
            answer.extend((rdata.len() as u16).to_be_bytes());
            answer.extend(rdata);
            answer[11] = 1;
            answer
        }
    }

    /// Installs `fake` as the server behind `host-dns`.
    fn serve(fake: Fake) -> (Rc<RefCell<Fake>>, MockDns) {
        let fake = Rc::new(RefCell::new(fake));
        let server = Rc::clone(&fake);
        let dns = MockDns::install(move |to, message, _transport| {
            assert_eq!(to, SERVER);
            Ok(server.borrow_mut().handle(message))
        });
        (fake, dns)
    }

    fn with_answer(answer: Answer) -> Fake {
        Fake { answer, ..Fake::new() }
    }

    #[test]
    fn conformance() {
        let (fake, _dns) = serve(Fake::new());
        let lookup = {
            let fake = Rc::clone(&fake);
            move |fqdn: &str| fake.borrow().values(fqdn)
        };
        // No HTTP: every exchange goes through host-dns.
        let provider = conformance::FakeDnsProvider::new(|_| MockResponse::new(599), lookup);
        conformance::dns_solver::<Rfc2136>(&config().to_string(), ZONE, provider);
        assert!(fake.borrow().records.is_empty());
    }

    #[test]
    fn present_adds_one_record_and_cleanup_deletes_exactly_it() {
        let (fake, dns) = serve(Fake::new());
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        assert_eq!(plugin.present(&record("token")), Ok(()));
        assert_eq!(fake.borrow().values(FQDN), ["token"]);
        assert_eq!(fake.borrow().applied, [(FQDN.to_string(), 1, 60)]);
        assert_eq!(plugin.cleanup(&record("token")), Ok(()));
        assert_eq!(fake.borrow().applied[1], (FQDN.to_string(), 254, 0));
        assert!(fake.borrow().values(FQDN).is_empty());
        let seen = dns.seen();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter()
                .all(|(server, _, transport)| server == SERVER && *transport == Transport::Udp)
        );
        let logs = testkit::logs();
        assert!(
            logs[0].message.contains("_acme-challenge.www.example.test.: added"),
            "{logs:?}"
        );
    }

    #[test]
    fn ttl_zone_transport_and_sha512_from_the_configuration() {
        let secret = BASE64.encode([7u8; 64]);
        let fake = Fake {
            zone: "www.example.test".into(),
            algorithm: "hmac-sha512",
            secret: vec![7u8; 64],
            ..Fake::new()
        };
        let (fake, dns) = serve(fake);
        let config = json!({"server": SERVER, "tsig_key_name": "CertCtl", "tsig_secret": secret,
            "tsig_algorithm": "hmac-sha512", "zone": "www.example.test.", "ttl": 30, "transport": "tcp"});
        let plugin = testkit::dns_solver::<Rfc2136>(config.to_string());
        assert_eq!(plugin.present(&record("token")), Ok(()));
        assert_eq!(fake.borrow().applied, [(FQDN.to_string(), 1, 30)]);
        assert_eq!(dns.seen()[0].2, Transport::Tcp);
        // A name outside the configured zone is not sent.
        let elsewhere = testkit::dns_record(ZONE, "_acme-challenge.example.test", "token");
        let message = testkit::assert_invalid_config(
            plugin.present(&elsewhere),
            "config.zone: _acme-challenge.example.test. is not in zone www.example.test.",
        );
        assert!(!message.contains(&secret));
        assert_eq!(dns.seen().len(), 1);
    }

    #[test]
    fn values_longer_than_255_bytes_are_split_into_strings() {
        let (fake, _dns) = serve(Fake::new());
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        let long = "x".repeat(300);
        assert_eq!(plugin.present(&record(&long)), Ok(()));
        assert_eq!(fake.borrow().values(FQDN), [long]);
        let rdata = &fake.borrow().records[FQDN][0];
        assert_eq!((rdata[0], rdata[256]), (255, 45));
    }

    #[test]
    fn a_wrong_secret_or_key_is_auth() {
        let (_fake, _dns) = serve(Fake {
            secret: b"another secret".to_vec(),
            ..Fake::new()
        });
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        match plugin.present(&record("token")) {
            Err(PluginError::Auth(message)) => {
                assert!(
                    message.contains("BADSIG") && message.contains("tsig_secret"),
                    "{message}"
                );
                assert!(!message.contains(SECRET_B64));
            }
            other => panic!("expected auth, got {other:?}"),
        }
        drop(_dns);
        let (_fake, _dns) = serve(Fake {
            key_name: "other-key.".into(),
            ..Fake::new()
        });
        match plugin.cleanup(&record("token")) {
            Err(PluginError::Auth(message)) => {
                assert!(message.contains("does not know key certctl."), "{message}");
            }
            other => panic!("expected auth, got {other:?}"),
        }
        drop(_dns);
        let (_fake, _dns) = serve(Fake {
            algorithm: "hmac-sha512",
            ..Fake::new()
        });
        assert!(matches!(plugin.present(&record("token")), Err(PluginError::Auth(m)) if m.contains("BADKEY")));
    }

    #[test]
    fn clock_skew_is_auth() {
        let (fake, _dns) = serve(Fake {
            clock_offset: 301,
            ..Fake::new()
        });
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        match plugin.present(&record("token")) {
            Err(PluginError::Auth(message)) => assert!(message.contains("clock skew"), "{message}"),
            other => panic!("expected auth, got {other:?}"),
        }
        assert!(fake.borrow().records.is_empty());
    }

    #[test]
    fn response_codes_are_mapped() {
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        let outcome = |answer: Answer| {
            let (_fake, _dns) = serve(with_answer(answer));
            plugin.present(&record("token"))
        };
        match outcome(Answer::Rcode(REFUSED)) {
            Err(PluginError::Auth(m)) => assert!(m.contains("REFUSED") && m.contains("update-policy"), "{m}"),
            other => panic!("REFUSED: {other:?}"),
        }
        testkit::assert_invalid_config(
            outcome(Answer::Rcode(NOTZONE)),
            "config.zone: 127.0.0.1:5354 answered NOTZONE",
        );
        assert!(matches!(outcome(Answer::Rcode(NOTAUTH)), Err(PluginError::Auth(m)) if m.contains("NOTAUTH")));
        assert!(matches!(outcome(Answer::Rcode(SERVFAIL)), Err(PluginError::Transient(m)) if m.contains("SERVFAIL")));
        assert!(matches!(outcome(Answer::Rcode(FORMERR)), Err(PluginError::Permanent(m)) if m.contains("FORMERR")));
        assert!(matches!(outcome(Answer::Rcode(NOTIMP)), Err(PluginError::Permanent(_))));
        // The fake is not authoritative for another zone.
        let (_fake, _dns) = serve(Fake {
            zone: "other.test".into(),
            ..Fake::new()
        });
        assert!(matches!(plugin.present(&record("token")), Err(PluginError::Auth(m)) if m.contains("NOTAUTH")));
    }

    #[test]
    fn an_answer_without_a_valid_signature_is_transient() {
        let plugin = testkit::dns_solver::<Rfc2136>(config().to_string());
        for answer in [Answer::BadMac, Answer::Unsigned] {
            let (_fake, _dns) = serve(with_answer(answer));
            match plugin.present(&record("token")) {
                Err(PluginError::Transient(m)) => {
                    assert!(m.contains("does not carry a valid signature of key certctl."), "{m}");
                }
                other => panic!("{answer:?}: {other:?}"),
            }
        }
        // An answer to another message, or garbage.
        for answer in [vec![0u8; 12], vec![1, 2, 3]] {
            let _dns = MockDns::install(move |_, _, _| Ok(answer.clone()));
            assert!(matches!(
                plugin.cleanup(&record("token")),
                Err(PluginError::Transient(_))
            ));
        }
        // What the host reports passes through: not granted is auth, no answer transient.
        let _dns = MockDns::install(|_, _, _| Err(PluginError::auth("dns://127.0.0.1:5354 is not granted")));
        assert_eq!(
            plugin.present(&record("token")),
            Err(PluginError::auth("dns://127.0.0.1:5354 is not granted"))
        );
    }

    /// The request's bytes and MAC for fixed inputs, written out by hand from RFC 2136 and
    /// RFC 8945, and the MAC computed independently with openssl over exactly those bytes.
    #[test]
    fn tsig_test_vector() {
        let key = Key {
            name: Name::parse("CertCtl.").expect("name"),
            algorithm: Algorithm::HmacSha256,
            secret: BASE64.decode(SECRET_B64).expect("base64"),
        };
        let zone = Name::parse("example.test").expect("zone");
        let name = Name::parse("_acme-challenge.example.test").expect("name");
        let mut message = update_message(0x1234, &zone, &name, CLASS_IN, 60, &txt_rdata(b"token"));
        let unsigned = message.clone();
        let mac = key.sign(&mut message, 1_700_000_000).expect("sign");
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let unspaced = |text: &str| text.split_whitespace().collect::<String>();
        // Header: id 1234, opcode 5, ZO 1, PR 0, UP 1, AD 0. Zone: example.test SOA IN.
        // Update: _acme-challenge.example.test TXT IN 60, RDATA "token".
        let expected_unsigned = "1234 2800 0001 0000 0001 0000 \
            076578616d706c650474657374 00 0006 0001 \
            0f5f61636d652d6368616c6c656e6765 076578616d706c650474657374 00 0010 0001 0000003c 0006 05746f6b656e";
        assert_eq!(hex(&unsigned), unspaced(expected_unsigned));
        // TSIG variables: certctl. (canonical: lower case) ANY, TTL 0, hmac-sha256., time signed
        // 1700000000, fudge 300, error 0, other len 0.
        let variables = "076365727463746c00 00ff 00000000 0b686d61632d73686132353600 00006553f100 012c 0000 0000";
        assert_eq!(hex(&key.variables(1_700_000_000, FUDGE, 0, &[])), unspaced(variables));
        assert_eq!(hex(&mac), OPENSSL_MAC);
        // The TSIG RR: certctl. TSIG ANY 0, RDLENGTH 61: hmac-sha256., time, fudge, MAC size 32,
        // MAC, original id 1234, error 0, other len 0.
        let tsig = format!(
            "076365727463746c00 00fa 00ff 00000000 003d 0b686d61632d73686132353600 00006553f100 012c 0020 \
             {OPENSSL_MAC} 1234 0000 0000"
        );
        assert_eq!(hex(&message[unsigned.len()..]), unspaced(&tsig));
        assert_eq!(&message[10..12], [0, 1]);
    }

    /// `echo "$expected_unsigned$variables" | xxd -r -p | openssl dgst -sha256 -mac HMAC -macopt
    /// hexkey:$(echo Xv7Zk8VZcqBSBQzXWwx0bNmkTLOXsHP9gMv4hyu5Gjw= | base64 -d | xxd -p -c 64)`
    const OPENSSL_MAC: &str = "ca7c7f694a11a57acc4260b72ed21161ce246d5214735b220905f91c3a2331aa";

    #[test]
    fn compressed_names_in_answers_are_read() {
        // A header, the zone section, and a TSIG RR whose owner points at offset 12.
        let mut answer = vec![0x12, 0x34, 0xa8, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        answer.extend(Fake::wire("certctl"));
        answer.extend([0, 6, 0, 1, 0xc0, 12, 0, 250, 0, 255, 0, 0, 0, 0]);
        let rdata = [
            Fake::wire("hmac-sha256"),
            vec![0, 0, 0, 0, 0, 1, 1, 44, 0, 0, 0x12, 0x34, 0, 17, 0, 0],
        ]
        .concat();
        answer.extend((rdata.len() as u16).to_be_bytes());
        answer.extend(&rdata);
        let response = Response::parse(&answer).expect("parses");
        let tsig = response.tsig.as_ref().expect("a TSIG record");
        assert_eq!(tsig.name, Fake::wire("certctl"));
        assert_eq!((tsig.error, response.tsig_start, response.opcode()), (BADKEY, 25, 5));
        // A pointer loop is refused, not followed forever.
        let mut looping = answer[..12].to_vec();
        looping.extend([0xc0, 12, 0, 6, 0, 1]);
        assert!(Response::parse(&looping).is_err());
        // Counts larger than the message are an error, not an overflow.
        assert!(Response::parse(&[0x12, 0x34, 0xa8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]).is_err());
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::dns_solver::<Rfc2136>(config.to_string()).validate_config();
        let with = |key: &str, value: Value| {
            let mut c = config();
            c[key] = value;
            c
        };
        for good in [
            config(),
            with("server", json!("ns1.example.test")),
            with("server", json!("[2001:db8::53]:53")),
            with("server", json!("[::1]")),
            with("tsig_key_name", json!("certctl")),
            with("tsig_algorithm", json!("hmac-sha512")),
            with("zone", json!("example.test.")),
            with("ttl", json!(60)),
            with("transport", json!("tcp")),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let mut missing = config();
        missing.as_object_mut().expect("object").remove("tsig_secret");
        let cases = [
            (missing, "config.tsig_secret: required"),
            (
                with("server", json!("dns://127.0.0.1:5354")),
                "config.server: must be HOST:PORT (e.g. 127.0.0.1:5354), not a URL",
            ),
            (with("server", json!("")), "config.server: must be HOST:PORT or HOST"),
            (with("server", json!("127.0.0.1:0")), "config.server: the port must be"),
            (with("server", json!("127.0.0.1:x")), "config.server: the port must be"),
            (
                with("server", json!("2001:db8::53")),
                "config.server: an IPv6 address goes in brackets",
            ),
            (with("server", json!("[nope]:53")), "config.server: has no IPv6 address"),
            (with("tsig_key_name", json!("")), "config.tsig_key_name: is empty"),
            (
                with("tsig_key_name", json!(".")),
                "config.tsig_key_name: must be the key's name",
            ),
            (
                with("tsig_key_name", json!("a..b")),
                "config.tsig_key_name: \"a..b\" is not a domain name",
            ),
            (
                with("tsig_secret", json!("not base64!")),
                "config.tsig_secret: not base64",
            ),
            (with("tsig_secret", json!("")), "config.tsig_secret: is empty"),
            (
                with("tsig_algorithm", json!("hmac-md5")),
                "config.tsig_algorithm: unknown variant `hmac-md5`",
            ),
            (
                with("zone", json!("exa mple.test")),
                "config.zone: \"exa mple.test\" is not a domain name",
            ),
            (
                with("ttl", json!(2_147_483_648u64)),
                "config.ttl: must be at most 2147483647",
            ),
            (
                with("transport", json!("quic")),
                "config.transport: unknown variant `quic`",
            ),
            (with("port", json!(53)), "config.port: unknown key"),
        ];
        for (config, expected) in cases {
            let message = testkit::assert_invalid_config(check(config), expected);
            assert!(!message.contains(SECRET_B64), "the secret leaked: {message}");
        }
        // The same checks run before every call, so nothing is sent with a bad configuration.
        let dns = MockDns::install(|_, _, _| panic!("nothing may be sent"));
        let bad = testkit::dns_solver::<Rfc2136>(with("ttl", json!(-1)).to_string());
        assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
        assert!(matches!(bad.cleanup(&record("v")), Err(PluginError::InvalidConfig(_))));
        assert!(dns.seen().is_empty());
    }
}
