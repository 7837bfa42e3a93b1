//! What the operator allows each plugin: outbound hosts and private-network access.
//!
//! Grants come from a TOML file (`CERTCTL_PLUGIN_GRANTS`), keyed by plugin name:
//!
//! ```toml
//! [webhook]
//! outbound_hosts = ["https://hooks.example.com", "https://*.slack.com"]
//! allow_private_networks = false
//! ```
//!
//! A plugin that asks for specific hosts is refused at load unless each is granted. A plugin
//! that asks for `*` gets exactly what the operator grants (possibly nothing).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// `scheme://host[:port]`, where host may start with `*.` (one or more labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: String,
    /// Lower case; a leading `*.` is kept as the wildcard marker.
    host: String,
    port: Option<u16>,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} needs a scheme: https://host or http://host"))?;
        if !matches!(scheme, "https" | "http" | "dns") {
            return Err(format!(
                "{s:?}: scheme must be https or http (or dns, for DNS servers a solver sends messages to)"
            ));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() {
            return Err(format!("{s:?}: give scheme://host[:port] without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => match p.parse::<u16>() {
                Ok(port) => (h, Some(port)),
                Err(_) => return Err(format!("{s:?}: port {p:?} is not a number")),
            },
            _ => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let body = host.strip_prefix("*.").unwrap_or(&host);
        if body.is_empty() || body.contains('*') {
            return Err(format!("{s:?}: only a leading '*.' wildcard is allowed"));
        }
        Ok(HostPattern {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    fn default_port(&self) -> u16 {
        match self.scheme.as_str() {
            "https" => 443,
            "dns" => 53,
            _ => 80,
        }
    }

    /// Does a request to `scheme://host:port` match?
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if scheme != self.scheme || port != self.port.unwrap_or(self.default_port()) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.host.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.host.trim_start_matches('[').trim_end_matches(']'),
        }
    }

    /// Is every request this pattern allows also allowed by `other`?
    pub fn covered_by(&self, other: &HostPattern) -> bool {
        if self.scheme != other.scheme
            || self.port.unwrap_or(self.default_port()) != other.port.unwrap_or(other.default_port())
        {
            return false;
        }
        match (self.host.strip_prefix("*."), other.host.strip_prefix("*.")) {
            (None, _) => other.matches(&self.scheme, &self.host, self.port.unwrap_or(self.default_port())),
            (Some(mine), Some(theirs)) => mine == theirs || mine.ends_with(&format!(".{theirs}")),
            (Some(_), None) => false,
        }
    }
}

/// The operator's grant for one plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
    /// Allow loopback, private (RFC 1918, ULA), link-local and similar destinations. Off by
    /// default: a plugin must not reach the cloud metadata service or the cluster's insides.
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// Grants for all plugins, by plugin name.
#[derive(Debug, Clone, Default)]
pub struct Grants(pub BTreeMap<String, Grant>);

impl Grants {
    pub fn load(path: &Path) -> Result<Grants, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read plugin grants {}: {e}", path.display()))?;
        Grants::parse(&text).map_err(|e| format!("plugin grants {}: {e}", path.display()))
    }

    /// Adds the entries of `<dir>/default-grants.toml` (shipped with the built-in plugins) for
    /// plugins these grants do not mention; the operator's entry for a plugin always wins.
    pub fn add_defaults_from(&mut self, dir: &Path) -> Result<(), String> {
        let path = dir.join("default-grants.toml");
        if !path.is_file() {
            return Ok(());
        }
        for (plugin, grant) in Grants::load(&path)?.0 {
            self.0.entry(plugin).or_insert(grant);
        }
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Grants, String> {
        let map: BTreeMap<String, Grant> = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for (plugin, grant) in &map {
            for h in &grant.outbound_hosts {
                if h != "*" {
                    HostPattern::parse(h).map_err(|e| format!("[{plugin}] outbound_hosts: {e}"))?;
                }
            }
        }
        Ok(Grants(map))
    }
}

/// What one plugin may reach, after intersecting its request with the operator's grant.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// `None` means any host (the operator granted `*`).
    pub hosts: Option<Vec<HostPattern>>,
    pub allow_private_networks: bool,
}

impl Allowed {
    /// Intersects `requested` (from the manifest) with `grant`. Err names what is missing.
    pub fn resolve(plugin: &str, requested: &[String], grant: Option<&Grant>) -> Result<Allowed, String> {
        let empty = Grant::default();
        let grant = grant.unwrap_or(&empty);
        let granted_any = grant.outbound_hosts.iter().any(|h| h == "*");
        let granted: Vec<HostPattern> = grant
            .outbound_hosts
            .iter()
            .filter(|h| *h != "*")
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        let wants_any = requested.iter().any(|h| h == "*");
        let hosts = if wants_any {
            if granted_any { None } else { Some(granted) }
        } else {
            let mut allowed = Vec::new();
            for r in requested {
                let pattern = HostPattern::parse(r)?;
                if !granted_any && !granted.iter().any(|g| pattern.covered_by(g)) {
                    return Err(format!(
                        "plugin {plugin} asks to reach {r}, which is not granted; add it to \
                         [{plugin}] outbound_hosts in the plugin grants file (CERTCTL_PLUGIN_GRANTS)"
                    ));
                }
                allowed.push(pattern);
            }
            Some(allowed)
        };
        Ok(Allowed {
            hosts,
            allow_private_networks: grant.allow_private_networks,
        })
    }

    pub fn permits(&self, scheme: &str, host: &str, port: u16) -> bool {
        match &self.hosts {
            None => true,
            Some(list) => list.iter().any(|p| p.matches(scheme, host, port)),
        }
    }
}

/// Addresses a plugin may not reach unless private networks are granted.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 224
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let p = HostPattern::parse("https://*.example.com").expect("parse");
        assert!(p.matches("https", "api.example.com", 443));
        assert!(p.matches("https", "a.b.example.com", 443));
        assert!(!p.matches("https", "example.com", 443));
        assert!(!p.matches("https", "evilexample.com", 443));
        assert!(!p.matches("http", "api.example.com", 80));
        assert_eq!(p.to_string(), "https://*.example.com");
        let q = HostPattern::parse("http://127.0.0.1:8080").expect("parse");
        assert_eq!(q.to_string(), "http://127.0.0.1:8080");
        assert!(q.matches("http", "127.0.0.1", 8080));
        assert!(!q.matches("http", "127.0.0.1", 8081));
        assert!(HostPattern::parse("example.com").is_err());
        assert!(HostPattern::parse("https://ex*ample.com").is_err());
        assert!(HostPattern::parse("https://example.com/path").is_err());
    }

    #[test]
    fn requests_must_be_covered_by_grants() {
        let grant = Grant {
            outbound_hosts: vec!["https://*.example.com".into()],
            allow_private_networks: false,
        };
        let ok = Allowed::resolve("p", &["https://api.example.com".into()], Some(&grant)).expect("granted");
        assert!(ok.permits("https", "api.example.com", 443));
        assert!(
            !ok.permits("https", "other.example.com", 443),
            "only what was asked for"
        );
        let err = Allowed::resolve("p", &["https://api.other.com".into()], Some(&grant)).expect_err("refused");
        assert!(
            err.contains("https://api.other.com") && err.contains("CERTCTL_PLUGIN_GRANTS"),
            "{err}"
        );
        let any = Allowed::resolve("p", &["*".into()], Some(&grant)).expect("any");
        assert!(any.permits("https", "x.example.com", 443));
        assert!(!any.permits("https", "x.other.com", 443));
        let nothing = Allowed::resolve("p", &["*".into()], None).expect("nothing granted");
        assert!(!nothing.permits("https", "x.example.com", 443));
    }

    #[test]
    fn dns_servers_are_granted_with_the_dns_scheme() {
        let p = HostPattern::parse("dns://127.0.0.1:5354").expect("dns pattern");
        assert!(p.matches("dns", "127.0.0.1", 5354));
        assert!(!p.matches("dns", "127.0.0.1", 53));
        assert!(!p.matches("https", "127.0.0.1", 5354));
        assert!(
            HostPattern::parse("dns://ns1.example.com")
                .expect("default port")
                .matches("dns", "ns1.example.com", 53)
        );
        assert!(HostPattern::parse("ftp://example.com").is_err());
    }

    #[test]
    fn default_grants_fill_in_only_what_the_operator_left_out() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("default-grants.toml"),
            "[slack]\noutbound_hosts = [\"https://hooks.slack.com\"]\n[pagerduty]\noutbound_hosts = [\"https://events.pagerduty.com\"]\n",
        )
        .expect("write");
        let mut grants =
            Grants::parse("[pagerduty]\noutbound_hosts = [\"https://events.eu.pagerduty.com\"]\n").expect("parse");
        grants.add_defaults_from(dir.path()).expect("defaults");
        assert_eq!(grants.0["slack"].outbound_hosts, vec!["https://hooks.slack.com"]);
        assert_eq!(
            grants.0["pagerduty"].outbound_hosts,
            vec!["https://events.eu.pagerduty.com"],
            "the operator's entry wins"
        );
        assert!(Grants::default().add_defaults_from(&dir.path().join("missing")).is_ok());
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "192.168.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }
}
