//! Value checks for API input. Each returns a 422 naming the field and what is accepted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::ApiError;

/// Resource names: 1-128 characters of letters, digits, `.`, `_`, `-`.
pub fn resource_name(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{value:?} is not a valid name: use 1-128 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// A DNS name as it may appear in a certificate: lower-cased, labels of 1-63 letters, digits
/// and hyphens (not at either end), at most 253 characters, optionally one leading `*.`.
pub fn dns_name(field: &str, value: &str) -> Result<String, ApiError> {
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    let body = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !body.is_empty() && name.len() <= 253 && body.split('.').all(label_ok) {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "{value:?} is not a valid DNS name: labels of letters, digits and '-', separated by \
                 dots, at most 253 characters, optionally starting with '*.'"
            ),
        ))
    }
}

/// A subject alternative name: a DNS name or an IP address.
pub fn san(field: &str, value: &str) -> Result<String, ApiError> {
    match value.parse::<IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => dns_name(field, value),
    }
}

/// Labels: at most 64, keys like resource names up to 63 characters, values up to 255.
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > 64 {
        return Err(ApiError::invalid(field, "at most 64 labels"));
    }
    for (k, v) in labels {
        if k.len() > 63 {
            return Err(ApiError::invalid(
                &format!("{field}.{k}"),
                "label keys are at most 63 characters",
            ));
        }
        resource_name(&format!("{field}.{k}"), k)?;
        if v.len() > 255 {
            return Err(ApiError::invalid(
                &format!("{field}.{k}"),
                "label values are at most 255 characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("f", "WWW.Example.com.").expect("ok"), "www.example.com");
        assert!(dns_name("f", "*.example.com").is_ok());
        for bad in ["", "-a.com", "a..com", "a b.com", "*.", "a.*.com", &"a".repeat(64)] {
            assert!(dns_name("f", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sans_accept_ips() {
        assert_eq!(san("f", "::1").expect("ok"), "::1");
        assert_eq!(san("f", "10.0.0.1").expect("ok"), "10.0.0.1");
    }

    #[test]
    fn names() {
        assert!(resource_name("name", "web-prod_1.eu").is_ok());
        assert!(resource_name("name", "has space").is_err());
        assert!(resource_name("name", "").is_err());
    }
}
