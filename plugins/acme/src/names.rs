//! The names of a request as ACME identifiers (RFC 8555 §9.7.7 `dns`, RFC 8738 `ip`), and what
//! the configured challenge can validate.

use std::net::IpAddr;

use certctl_sdk::PluginError;
use serde::Serialize;

use crate::config::ChallengeType;

/// An order identifier, serialised as ACME writes it: `{"type": "dns", "value": "example.com"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Identifier {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) value: String,
}

/// The identifiers for `names`, in order, without duplicates: DNS names (optionally `*.`) and IP
/// addresses. Refuses what the CA could not validate with `challenge`: wildcards need a DNS
/// challenge (dns-01, dns-persist-01), IP addresses cannot use one. Errors are
/// [`PluginError::Permanent`]; nothing is called.
pub(crate) fn identifiers(names: &[String], challenge: ChallengeType) -> Result<Vec<Identifier>, PluginError> {
    if names.is_empty() {
        return Err(PluginError::permanent("the request names nothing to certify"));
    }
    let mut out: Vec<Identifier> = Vec::new();
    for name in names {
        let identifier = identifier(name, challenge)?;
        if !out.contains(&identifier) {
            out.push(identifier);
        }
    }
    Ok(out)
}

fn identifier(name: &str, challenge: ChallengeType) -> Result<Identifier, PluginError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        if challenge.is_dns() {
            return Err(PluginError::permanent(format!(
                "{name}: IP addresses cannot be validated with {} (RFC 8738); use challenge http-01",
                challenge.as_str()
            )));
        }
        return Ok(Identifier {
            kind: "ip",
            value: ip.to_string(),
        });
    }
    if name.contains('@') {
        return Err(PluginError::permanent(format!(
            "{name}: ACME certifies DNS names and IP addresses only"
        )));
    }
    let lower = name.to_ascii_lowercase();
    let (wildcard, base) = match lower.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, lower.as_str()),
    };
    if !is_dns_name(base) {
        return Err(PluginError::permanent(format!(
            "{name:?} is neither a DNS name nor an IP address (internationalised names need their xn-- form)"
        )));
    }
    if wildcard && !challenge.is_dns() {
        return Err(PluginError::permanent(format!(
            "{name}: wildcards need dns-01 or dns-persist-01 (this issuer is configured for http-01)"
        )));
    }
    Ok(Identifier {
        kind: "dns",
        value: lower,
    })
}

/// LDH labels of 1 to 63 characters, at most 253 in all, no trailing dot.
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn refused(list: &[&str], challenge: ChallengeType) -> String {
        match identifiers(&names(list), challenge) {
            Err(PluginError::Permanent(m)) => m,
            other => panic!("{list:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn dns_names_and_ips_become_identifiers() {
        let ids = identifiers(
            &names(&[
                "Example.com",
                "www.example.com",
                "192.0.2.1",
                "2001:DB8::1",
                "example.com",
            ]),
            ChallengeType::Http01,
        )
        .expect("valid");
        let got: Vec<(&str, &str)> = ids.iter().map(|i| (i.kind, i.value.as_str())).collect();
        assert_eq!(
            got,
            [
                ("dns", "example.com"),
                ("dns", "www.example.com"),
                ("ip", "192.0.2.1"),
                ("ip", "2001:db8::1")
            ]
        );
        assert_eq!(
            serde_json::to_value(&ids[0]).expect("json"),
            serde_json::json!({"type": "dns", "value": "example.com"})
        );
        let ids = identifiers(&names(&["*.example.com", "example.com"]), ChallengeType::Dns01).expect("valid");
        assert_eq!(ids[0].value, "*.example.com");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            refused(&["example.com", "*.example.com"], ChallengeType::Http01),
            "*.example.com: wildcards need dns-01 or dns-persist-01 (this issuer is configured for http-01)"
        );
        assert!(refused(&["192.0.2.1"], ChallengeType::Dns01).contains("cannot be validated with dns-01"));
        assert_eq!(
            refused(&["192.0.2.1"], ChallengeType::DnsPersist01),
            "192.0.2.1: IP addresses cannot be validated with dns-persist-01 (RFC 8738); use challenge http-01"
        );
        let ids = identifiers(&names(&["*.example.com"]), ChallengeType::DnsPersist01).expect("wildcard");
        assert_eq!(ids[0].value, "*.example.com");
        assert!(refused(&["ops@example.com"], ChallengeType::Http01).contains("DNS names and IP addresses only"));
        assert_eq!(
            refused(&[], ChallengeType::Http01),
            "the request names nothing to certify"
        );
        for bad in [
            "exa mple.com",
            "example.com.",
            "-x.example.com",
            "x-.example.com",
            "a..b",
            "*.*.example.com",
            "www.*.example.com",
            "bücher.example",
            "_acme.example.com",
            "",
        ] {
            assert!(
                refused(&[bad], ChallengeType::Dns01).contains("is neither a DNS name nor an IP address"),
                "{bad}"
            );
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert!(refused(&[&long_label], ChallengeType::Http01).contains("neither"));
    }
}
