//! The DNS-solver conformance suite (cert-manager's rules for DNS01 webhooks, adapted): run
//! against a real provider, it proves a solver is safe for apex + wildcard orders and for
//! retries. It needs a way to read the TXT values at a name — the provider's authoritative
//! servers (`dig`, see `certctl plugin test`) or, in tests, the provider's own state.

use std::future::Future;

use serde::Serialize;

use super::registry::Registry;
use super::v0_1::DnsRecord;

/// One rule of the suite and whether the plugin kept it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// Runs the suite with `plugin` (a loaded dns-solver) and `config` (JSON, secrets resolved)
/// on `_certctl-conformance.<zone>`. `lookup` returns the TXT values currently published at a
/// name; `settle` is awaited after each change (propagation delay of the provider).
pub async fn dns_solver<L, F>(registry: &Registry, plugin: &str, config: &str, zone: &str, lookup: L) -> Vec<Check>
where
    L: Fn(String) -> F,
    F: Future<Output = Result<Vec<String>, String>>,
{
    let fqdn = format!("_certctl-conformance.{zone}");
    let record = |value: &str| DnsRecord {
        zone: zone.to_string(),
        fqdn: fqdn.clone(),
        value: value.to_string(),
        ttl: 60,
    };
    let first = format!("conformance-a-{}", crate::auth::generate_key());
    let second = format!("conformance-b-{}", crate::auth::generate_key());
    let mut checks = Vec::new();

    let call = async |value: &str, present: bool| {
        let outcome = registry.dns(plugin, config, &record(value), present).await;
        match outcome.result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(f.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let values = async || {
        let mut v = lookup(fqdn.clone()).await?;
        v.sort();
        Ok::<_, String>(v)
    };
    let mut check = |rule: &'static str, result: Result<(), String>| {
        checks.push(Check {
            rule,
            passed: result.is_ok(),
            detail: result.err().unwrap_or_default(),
        });
    };

    let expect = |got: Result<Vec<String>, String>, want: &[&str]| -> Result<(), String> {
        let got = got?;
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("TXT values at {fqdn}: expected {want:?}, found {got:?}"))
        }
    };

    check(
        "cleanup of a record that was never presented succeeds",
        call(&first, false).await,
    );
    check(
        "present publishes the value",
        match call(&first, true).await {
            Ok(()) => expect(values().await, &[&first]),
            Err(e) => Err(e),
        },
    );
    check(
        "present twice leaves one value (idempotent)",
        match call(&first, true).await {
            Ok(()) => expect(values().await, &[&first]),
            Err(e) => Err(e),
        },
    );
    check(
        "a second value at the same name is added, not swapped in",
        match call(&second, true).await {
            Ok(()) => expect(values().await, &[&first, &second]),
            Err(e) => Err(e),
        },
    );
    check(
        "cleanup removes exactly its own value",
        match call(&first, false).await {
            Ok(()) => expect(values().await, &[&second]),
            Err(e) => Err(e),
        },
    );
    check("cleanup of a value already gone succeeds", call(&first, false).await);
    check(
        "cleanup of the last value leaves nothing",
        match call(&second, false).await {
            Ok(()) => expect(values().await, &[]),
            Err(e) => Err(e),
        },
    );
    checks
}
