//! dns-persist-01 records (draft-ietf-acme-dns-persist-01): the TXT value at
//! `_validation-persist.<domain>` that authorises one ACME account at one CA, once, for as long
//! as the record stays. The syntax is that of a CAA `issue` property value (RFC 8659 §4.2):
//!
//! ```text
//! issuer-domain-name [; tag=value]*      e.g.  ca.example; accounturi=https://ca.example/acct/1; policy=wildcard
//! ```
//!
//! The host writes such a record only with the operator's approval, and checks records that are
//! already there against the draft's rules before asking for one: the issuer domain name must be
//! one the CA lists in the challenge (compared case-insensitively), `accounturi` must be the
//! account's URI exactly, a wildcard name needs `policy=wildcard`, and a record past its
//! `persistUntil` no longer counts. Unknown parameters are ignored; a parameter given twice, or
//! a value that does not parse, makes the record unusable.

use std::collections::BTreeMap;

/// A parsed record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    /// Lowercased, without a trailing dot.
    pub issuer_domain_name: String,
    /// Tags lowercased, values as written.
    pub parameters: BTreeMap<String, String>,
}

/// The record the host proposes: the first issuer domain name the CA lists, the account, and
/// `policy=wildcard` when a wildcard name needs it.
pub fn record_value(issuer_domain_name: &str, account_uri: &str, wildcard: bool) -> String {
    let mut value = format!(
        "{}; accounturi={account_uri}",
        issuer_domain_name.trim_end_matches('.').to_ascii_lowercase()
    );
    if wildcard {
        value.push_str("; policy=wildcard");
    }
    value
}

/// Parses a TXT value; `Err` says why it is not a dns-persist-01 record.
pub fn parse(value: &str) -> Result<PersistRecord, String> {
    let mut parts = value.split(';');
    let issuer = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
    if issuer.is_empty() {
        return Err("no issuer domain name before the first ';'".into());
    }
    if !is_domain_name(issuer) {
        return Err(format!("{issuer:?} is not an issuer domain name"));
    }
    let mut parameters = BTreeMap::new();
    for part in parts {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            // `ca.example;` with nothing after the separator.
            continue;
        }
        let (tag, val) = part
            .split_once('=')
            .ok_or_else(|| format!("parameter {part:?} has no '='"))?;
        let (tag, val) = (tag.trim_matches([' ', '\t']), val.trim_matches([' ', '\t']));
        if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || tag.starts_with('-') {
            return Err(format!("{tag:?} is not a parameter tag"));
        }
        // RFC 8659: value = *(%x21-3A / %x3C-7E), printable ASCII without ';' or spaces.
        if !val.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';') {
            return Err(format!(
                "the value of {tag} has characters a parameter value cannot have"
            ));
        }
        if parameters.insert(tag.to_ascii_lowercase(), val.to_string()).is_some() {
            return Err(format!("parameter {tag} is given twice"));
        }
    }
    Ok(PersistRecord {
        issuer_domain_name: issuer.trim_end_matches('.').to_ascii_lowercase(),
        parameters,
    })
}

fn is_domain_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether a TXT value authorises `account_uri` at one of `issuer_domain_names` at time `now`
/// (seconds since the epoch), for a wildcard name if `wildcard`.
pub fn satisfies(value: &str, issuer_domain_names: &[String], account_uri: &str, wildcard: bool, now: i64) -> bool {
    let Ok(record) = parse(value) else {
        return false;
    };
    let issuer_listed = issuer_domain_names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&record.issuer_domain_name));
    let account = record.parameters.get("accounturi").map(String::as_str) == Some(account_uri);
    let policy = !wildcard
        || record
            .parameters
            .get("policy")
            .is_some_and(|p| p.eq_ignore_ascii_case("wildcard"));
    let current = match record.parameters.get("persistuntil") {
        None => true,
        Some(t) => t.parse::<i64>().is_ok_and(|until| until >= now),
    };
    issuer_listed && account && policy && current
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "https://ca.example/acme/acct/1234";

    fn names() -> Vec<String> {
        vec!["ca.example".to_string(), "ca-alt.example".to_string()]
    }

    #[test]
    fn the_proposed_record_is_the_drafts_syntax() {
        assert_eq!(
            record_value("CA.Example.", ACCOUNT, false),
            "ca.example; accounturi=https://ca.example/acme/acct/1234"
        );
        assert_eq!(
            record_value("ca.example", ACCOUNT, true),
            "ca.example; accounturi=https://ca.example/acme/acct/1234; policy=wildcard"
        );
        // What the host proposes satisfies the rules it checks.
        assert!(satisfies(
            &record_value("ca.example", ACCOUNT, true),
            &names(),
            ACCOUNT,
            true,
            0
        ));
        assert!(satisfies(
            &record_value("ca.example", ACCOUNT, false),
            &names(),
            ACCOUNT,
            false,
            0
        ));
    }

    #[test]
    fn parsing_follows_the_caa_value_syntax() {
        let r = parse(
            "  CA.example ;accounturi=https://ca.example/a/1 ;  Policy=Wildcard;persistUntil=1767225600;x-future=1",
        )
        .expect("parses");
        assert_eq!(r.issuer_domain_name, "ca.example");
        assert_eq!(r.parameters["accounturi"], "https://ca.example/a/1");
        assert_eq!(r.parameters["policy"], "Wildcard");
        assert_eq!(r.parameters["persistuntil"], "1767225600");
        assert_eq!(r.parameters["x-future"], "1");

        for (bad, why) in [
            ("", "no issuer"),
            ("; accounturi=x", "no issuer"),
            ("ca example; accounturi=x", "not an issuer domain name"),
            ("ca.example; accounturi", "has no '='"),
            ("ca.example; accounturi=a; accounturi=b", "given twice"),
            ("ca.example; account uri=a", "not a parameter tag"),
            ("ca.example; accounturi=a b", "characters"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_record_counts_only_for_a_listed_issuer_and_the_exact_account() {
        let ok = "ca-alt.example; accounturi=https://ca.example/acme/acct/1234";
        assert!(satisfies(ok, &names(), ACCOUNT, false, 0));
        assert!(satisfies(
            "CA-ALT.EXAMPLE.; ACCOUNTURI=https://ca.example/acme/acct/1234",
            &names(),
            ACCOUNT,
            false,
            0
        ));
        assert!(!satisfies(
            "other-ca.example; accounturi=https://ca.example/acme/acct/1234",
            &names(),
            ACCOUNT,
            false,
            0
        ));
        assert!(!satisfies(
            "ca.example; accounturi=https://ca.example/acme/acct/12345",
            &names(),
            ACCOUNT,
            false,
            0
        ));
        assert!(!satisfies(
            "ca.example; accounturi=HTTPS://ca.example/acme/acct/1234",
            &names(),
            ACCOUNT,
            false,
            0
        ));
        assert!(
            !satisfies("ca.example", &names(), ACCOUNT, false, 0),
            "accounturi is required"
        );
        assert!(!satisfies("v=spf1 -all", &names(), ACCOUNT, false, 0));
    }

    #[test]
    fn wildcards_need_the_wildcard_policy() {
        let plain = "ca.example; accounturi=https://ca.example/acme/acct/1234";
        assert!(!satisfies(plain, &names(), ACCOUNT, true, 0));
        assert!(satisfies(
            &format!("{plain}; policy=WILDCARD"),
            &names(),
            ACCOUNT,
            true,
            0
        ));
        assert!(!satisfies(
            &format!("{plain}; policy=subdomains"),
            &names(),
            ACCOUNT,
            true,
            0
        ));
        // A wildcard record also serves the plain name.
        assert!(satisfies(
            &format!("{plain}; policy=wildcard"),
            &names(),
            ACCOUNT,
            false,
            0
        ));
    }

    #[test]
    fn a_record_past_persist_until_no_longer_counts() {
        let until = "ca.example; accounturi=https://ca.example/acme/acct/1234; persistUntil=1000";
        assert!(satisfies(until, &names(), ACCOUNT, false, 999));
        assert!(satisfies(until, &names(), ACCOUNT, false, 1000));
        assert!(!satisfies(until, &names(), ACCOUNT, false, 1001));
        let garbled = "ca.example; accounturi=https://ca.example/acme/acct/1234; persistUntil=tomorrow";
        assert!(!satisfies(garbled, &names(), ACCOUNT, false, 0));
    }
}
