//! The names a certificate may carry (DNS names, IP addresses, e-mail addresses) and the
//! `allowed_names` patterns they are checked against.

use std::fmt;
use std::net::IpAddr;

/// The longest local part of an e-mail address (RFC 5321 4.5.3.1.1), in bytes.
const MAX_LOCAL_PART: usize = 64;

/// A name to certify, normalised: DNS names lower-cased without a trailing dot, IP addresses in
/// their canonical form, e-mail addresses lower-cased (as the host compares them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A DNS name, possibly a wildcard (`*.example.com`).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// An e-mail address (an rfc822Name subjectAltName), `local@domain`.
    Email(String),
}

impl Name {
    /// Parses a requested name: an IP address, an e-mail address (anything with an `@`), or a
    /// DNS name with at most one leading `*.` (the rules the host applies when a certificate is
    /// declared).
    pub fn parse(value: &str) -> Result<Name, String> {
        let value = value.trim();
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(Name::Ip(ip));
        }
        if value.contains('@') {
            return email_address(value).map(Name::Email);
        }
        let name = value.strip_suffix('.').unwrap_or(value).to_ascii_lowercase();
        let body = name.strip_prefix("*.").unwrap_or(&name);
        if is_dns_name(body) && name.len() <= 253 {
            Ok(Name::Dns(name))
        } else {
            Err(format!(
                "{value:?} is not a DNS name (labels of letters, digits and '-', optionally starting with '*.') \
                 or an IP address"
            ))
        }
    }

    /// Whether this is an e-mail address (which a subject common name names only when the
    /// certificate has no other kind of name).
    pub fn is_email(&self) -> bool {
        matches!(self, Name::Email(_))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Dns(name) | Name::Email(name) => f.write_str(name),
            Name::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// An e-mail address, normalised: exactly one `@`, a local part of 1-64 printable ASCII
/// characters without spaces (an rfc822Name is an IA5String, so internationalised local parts
/// cannot be certified here), and a DNS domain (no wildcard); lower-cased as a whole, as the host
/// compares names (mail systems treat local parts case-insensitively in practice).
pub fn email_address(value: &str) -> Result<String, String> {
    let value = value.trim();
    let bad = |why: &str| Err(format!("{value:?} is not an e-mail address: {why}"));
    let Some((local, domain)) = value.split_once('@') else {
        return bad("no '@'");
    };
    if domain.contains('@') {
        return bad("more than one '@'");
    }
    if local.is_empty() {
        return bad("the part before '@' is empty");
    }
    if local.len() > MAX_LOCAL_PART {
        return bad("the part before '@' is longer than 64 characters");
    }
    if !local.chars().all(|c| c.is_ascii_graphic()) {
        return bad("the part before '@' may hold only printable ASCII characters, no spaces");
    }
    let domain = domain.to_ascii_lowercase();
    if !is_dns_domain(&domain) {
        return bad("the part after '@' is not a DNS name");
    }
    Ok(format!("{}@{domain}", local.to_ascii_lowercase()))
}

/// A DNS name without wildcard, at most 253 characters.
fn is_dns_domain(name: &str) -> bool {
    is_dns_name(name) && name.len() <= 253
}

/// Labels of 1-63 letters, digits and hyphens (not at either end), separated by dots.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// One entry of `allowed_names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `example.com`: exactly that name.
    Exact(String),
    /// `*.example.com`: any name below `example.com`, at any depth (`a.example.com`,
    /// `a.b.example.com`, and the wildcards `*.example.com` and `*.a.example.com`), but not
    /// `example.com` itself.
    Subdomains(String),
    /// `10.0.0.1`: exactly that address.
    Ip(IpAddr),
    /// `ops@example.com`: exactly that e-mail address (in any case).
    Email(String),
    /// `*@example.com`: any e-mail address at exactly `example.com` (not at its subdomains).
    EmailDomain(String),
}

impl Pattern {
    /// Whether `name` is allowed by this pattern.
    pub fn matches(&self, name: &Name) -> bool {
        match (self, name) {
            (Pattern::Exact(allowed), Name::Dns(name)) => allowed == name,
            (Pattern::Subdomains(parent), Name::Dns(name)) => {
                // A requested wildcard `*.a.example.com` stands for names below `a.example.com`:
                // the label `*` is just one more label here.
                name.strip_suffix(parent.as_str())
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
            (Pattern::Ip(allowed), Name::Ip(ip)) => allowed == ip,
            (Pattern::Email(allowed), Name::Email(address)) => allowed == address,
            (Pattern::EmailDomain(domain), Name::Email(address)) => {
                address.rsplit_once('@').is_some_and(|(_, d)| d == domain)
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;

    fn try_from(value: String) -> Result<Pattern, String> {
        let text = value.trim();
        if text.contains('/') {
            return Err(format!(
                "{value:?}: address ranges are not supported; list exact IP addresses, exact DNS names \
                 or \"*.domain\" patterns"
            ));
        }
        if let Some(domain) = text.strip_prefix("*@") {
            let domain = domain.to_ascii_lowercase();
            return if is_dns_domain(&domain) {
                Ok(Pattern::EmailDomain(domain))
            } else {
                Err(format!(
                    "{value:?}: after \"*@\" comes a DNS domain, e.g. \"*@example.com\""
                ))
            };
        }
        if text.contains('@') {
            return email_address(text)
                .map(Pattern::Email)
                .map_err(|e| format!("{e} (allowed are exact addresses, \"ops@example.com\", or \"*@example.com\")"));
        }
        match Name::parse(text) {
            Ok(Name::Ip(ip)) => Ok(Pattern::Ip(ip)),
            Ok(Name::Dns(name)) => match name.strip_prefix("*.") {
                Some(parent) => Ok(Pattern::Subdomains(parent.to_string())),
                None => Ok(Pattern::Exact(name)),
            },
            Ok(Name::Email(_)) | Err(_) => Err(format!(
                "{value:?} is not a DNS name, a \"*.domain\" pattern (any name below domain) or an IP address"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::try_from(text).map_err(serde::de::Error::custom)
    }
}

/// Whether `allowed` (empty means anything) allows `name`.
pub fn allowed(allowed: &[Pattern], name: &Name) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| p.matches(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).expect("valid name")
    }

    fn pattern(s: &str) -> Pattern {
        Pattern::try_from(s.to_string()).expect("valid pattern")
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(name("WWW.Example.COM."), Name::Dns("www.example.com".into()));
        assert_eq!(name("*.Example.com"), Name::Dns("*.example.com".into()));
        assert_eq!(name("192.0.2.10"), Name::Ip("192.0.2.10".parse().expect("ip")));
        assert_eq!(name("2001:DB8:0:0::1").to_string(), "2001:db8::1");
        for bad in [
            "", ".", "-a.com", "a-.com", "a..com", "a b.com", "*.", "a.*.com", "**.a.com", "é.com", "a_b.com",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Name::parse(&"a".repeat(64)).is_err());
        assert!(
            Name::parse(&format!("{}.com", vec!["a".repeat(63); 4].join("."))).is_err(),
            "over 253"
        );
    }

    #[test]
    fn subdomain_patterns_match_any_depth_but_not_the_apex() {
        let p = pattern("*.example.com");
        for ok in ["a.example.com", "a.b.example.com", "*.example.com", "*.a.example.com"] {
            assert!(p.matches(&name(ok)), "{ok} refused");
        }
        for refused in [
            "example.com",
            "badexample.com",
            "a.example.org",
            "example.com.evil.net",
            "192.0.2.1",
        ] {
            assert!(!p.matches(&name(refused)), "{refused} allowed");
        }
    }

    #[test]
    fn exact_patterns_match_only_that_name() {
        let p = pattern("Example.com.");
        assert!(p.matches(&name("example.com")));
        assert!(p.matches(&name("EXAMPLE.COM")));
        assert!(!p.matches(&name("www.example.com")));
        assert!(!p.matches(&name("*.example.com")));
    }

    #[test]
    fn ip_patterns_match_the_same_address_in_any_spelling() {
        let p = pattern("2001:db8::1");
        assert!(p.matches(&name("2001:DB8:0:0:0:0:0:1")));
        assert!(!p.matches(&name("2001:db8::2")));
        assert!(pattern("10.0.0.1").matches(&name("10.0.0.1")));
        assert!(!pattern("10.0.0.1").matches(&name("10.0.0.2")));
        // An IP address is not a DNS name, and the other way round.
        assert!(!pattern("10.0.0.1").matches(&name("a.example.com")));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        let err = Pattern::try_from("10.0.0.0/8".to_string()).expect_err("ranges");
        assert!(err.contains("ranges are not supported"), "{err}");
        for bad in ["*", "*.", "a.*.example.com", "exa mple.com", ""] {
            assert!(Pattern::try_from(bad.to_string()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_empty_list_allows_anything() {
        assert!(allowed(&[], &name("anything.test")));
        let list = [pattern("*.example.com"), pattern("example.com"), pattern("192.0.2.1")];
        assert!(allowed(&list, &name("example.com")));
        assert!(allowed(&list, &name("www.example.com")));
        assert!(allowed(&list, &name("192.0.2.1")));
        assert!(!allowed(&list, &name("192.0.2.2")));
        assert!(!allowed(&list, &name("example.org")));
    }

    #[test]
    fn e_mail_addresses_are_lower_cased() {
        assert_eq!(
            name(" Ops.Team+x@Example.COM "),
            Name::Email("ops.team+x@example.com".into())
        );
        assert_eq!(name("ops@example.com").to_string(), "ops@example.com");
        assert!(name("ops@example.com").is_email());
        assert!(!name("example.com").is_email());
        for (bad, why) in [
            ("@example.com", "empty"),
            ("ops@", "not a DNS name"),
            ("a@b@example.com", "more than one '@'"),
            ("o ps@example.com", "printable ASCII"),
            ("o\u{7}ps@example.com", "printable ASCII"),
            ("öps@example.com", "printable ASCII"),
            ("ops@*.example.com", "not a DNS name"),
            ("ops@example.com.", "not a DNS name"),
        ] {
            let err = Name::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(Name::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
        assert!(Name::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn e_mail_patterns_match_an_address_or_any_address_at_exactly_a_domain() {
        let domain = pattern("*@Example.com");
        assert_eq!(domain, Pattern::EmailDomain("example.com".into()));
        assert!(domain.matches(&name("ops@example.com")));
        assert!(domain.matches(&name("Anyone@EXAMPLE.com")));
        for refused in [
            "ops@sub.example.com",
            "ops@badexample.com",
            "example.com",
            "www.example.com",
        ] {
            assert!(!domain.matches(&name(refused)), "{refused} allowed");
        }
        let exact = pattern("Ops@Example.com");
        assert!(exact.matches(&name("ops@example.com")));
        assert!(exact.matches(&name("OPS@example.com")), "in any case");
        assert!(!exact.matches(&name("dev@example.com")));
        // DNS patterns do not allow addresses.
        assert!(!pattern("*.example.com").matches(&name("ops@a.example.com")));
        assert!(!pattern("example.com").matches(&name("ops@example.com")));
        for bad in [
            "*@",
            "*@*.example.com",
            "a@b@example.com",
            "@example.com",
            "*@exa mple.com",
        ] {
            assert!(Pattern::try_from(bad.to_string()).is_err(), "{bad:?} accepted");
        }
    }
}
