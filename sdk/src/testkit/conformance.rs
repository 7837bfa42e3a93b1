//! The DNS-solver conformance suite, natively: the rules the host checks against real providers
//! (`certctl plugin test`), run against a fake of the provider's API behind [`MockHttp`].
//!
//! The rules, in order, on `_certctl-conformance.<zone>`:
//!
//! 1. cleanup of a record that was never presented succeeds
//! 2. present publishes the value
//! 3. present twice leaves one value (idempotent)
//! 4. a second value at the same name is added, not swapped in
//! 5. cleanup removes exactly its own value
//! 6. cleanup of a value already gone succeeds
//! 7. cleanup of the last value leaves nothing
//!
//! Together they make a solver safe for an apex + wildcard order (two values at one name) and
//! for the host's retries. The fake must behave like the provider, including how it answers a
//! name or value it does not have: that is what rules 1 and 6 test.

use std::cell::RefCell;
use std::fmt;
use std::fmt::Write as _;

use super::{MockHttp, MockResponse, RecordedRequest};
use crate::{DnsRecord, DnsSolver};

/// The rules, worded as the host words them (host/src/plugins/conformance.rs).
pub(crate) const RULES: [&str; 7] = [
    "cleanup of a record that was never presented succeeds",
    "present publishes the value",
    "present twice leaves one value (idempotent)",
    "a second value at the same name is added, not swapped in",
    "cleanup removes exactly its own value",
    "cleanup of a value already gone succeeds",
    "cleanup of the last value leaves nothing",
];

/// A stateful fake of a DNS provider's API: `handle` answers the solver's HTTP requests and
/// changes the fake's record set; `lookup` reads the TXT values at a name from that record set
/// (what the provider's authoritative servers would answer). Share the record set between the
/// two closures with an `Rc<RefCell<...>>`.
pub struct FakeDnsProvider {
    handle: Box<dyn FnMut(&RecordedRequest) -> MockResponse>,
    lookup: Box<Lookup>,
}

/// Reads the TXT values at an FQDN.
type Lookup = dyn Fn(&str) -> Vec<String>;

impl FakeDnsProvider {
    /// A fake from its request handler and its lookup of the TXT values at an FQDN (without a
    /// trailing dot, as in [`DnsRecord::fqdn`]).
    pub fn new(
        handle: impl FnMut(&RecordedRequest) -> MockResponse + 'static,
        lookup: impl Fn(&str) -> Vec<String> + 'static,
    ) -> FakeDnsProvider {
        FakeDnsProvider {
            handle: Box::new(handle),
            lookup: Box::new(lookup),
        }
    }
}

impl fmt::Debug for FakeDnsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeDnsProvider").finish_non_exhaustive()
    }
}

/// One rule of the suite and whether the plugin kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The rule, worded as in the host's report.
    pub rule: &'static str,
    /// Whether the plugin kept it.
    pub passed: bool,
    /// Why not: the plugin's error, or the TXT values expected and found.
    pub detail: String,
}

/// Runs the suite against `T` with `config` (JSON) on `_certctl-conformance.<zone>`, with
/// `provider` answering every HTTP request, and panics with a report of every rule if one is
/// broken.
///
/// It installs its own [`MockHttp`], so none may be installed on the thread.
///
/// ```
/// # #[cfg(feature = "dns-solver")] {
/// use std::cell::RefCell;
/// use std::collections::BTreeMap;
/// use std::rc::Rc;
///
/// use certctl_sdk::testkit::{MockResponse, conformance};
/// use certctl_sdk::{DnsRecord, DnsSolver, PluginError, http};
///
/// /// Speaks to an API with `PUT /txt/<fqdn>/<value>` and `DELETE /txt/<fqdn>/<value>`.
/// struct TxtApi;
///
/// impl DnsSolver for TxtApi {
///     type Config = serde_json::Value;
///
///     fn present(_: &Self::Config, r: &DnsRecord) -> Result<(), PluginError> {
///         http::put(format!("https://txt.example.test/txt/{}/{}", r.fqdn, r.value)).send()?.error_for_status()?;
///         Ok(())
///     }
///
///     fn cleanup(_: &Self::Config, r: &DnsRecord) -> Result<(), PluginError> {
///         let url = format!("https://txt.example.test/txt/{}/{}", r.fqdn, r.value);
///         match http::delete(url).send()?.error_for_status() {
///             Ok(_) | Err(PluginError::NotFound(_)) => Ok(()),
///             Err(e) => Err(e),
///         }
///     }
/// }
///
/// // The provider's state: TXT values by name.
/// let records: Rc<RefCell<BTreeMap<String, Vec<String>>>> = Rc::default();
/// let state = Rc::clone(&records);
/// let api = move |request: &certctl_sdk::testkit::RecordedRequest| {
///     let mut records = state.borrow_mut();
///     let Some(("", rest)) = request.path().split_once("/txt/") else {
///         return MockResponse::new(404);
///     };
///     let Some((fqdn, value)) = rest.split_once('/') else {
///         return MockResponse::new(404);
///     };
///     let values = records.entry(fqdn.to_string()).or_default();
///     match request.method {
///         http::Method::Put if !values.iter().any(|v| v == value) => values.push(value.to_string()),
///         http::Method::Put => {}
///         http::Method::Delete if values.iter().any(|v| v == value) => values.retain(|v| v != value),
///         http::Method::Delete => return MockResponse::new(404),
///         _ => return MockResponse::new(405),
///     }
///     MockResponse::new(204)
/// };
/// let lookup = move |fqdn: &str| records.borrow().get(fqdn).cloned().unwrap_or_default();
///
/// conformance::dns_solver::<TxtApi>("{}", "example.test", conformance::FakeDnsProvider::new(api, lookup));
/// # }
/// ```
///
/// # Panics
/// If the plugin broke a rule (the message lists every rule, what went wrong, and the requests
/// the plugin sent), or a `MockHttp` is installed on this thread already.
#[track_caller]
pub fn dns_solver<T: DnsSolver>(config: &str, zone: &str, provider: FakeDnsProvider) {
    let (checks, requests) = run_with_requests::<T>(config, zone, provider);
    let broken = checks.iter().filter(|c| !c.passed).count();
    if broken == 0 {
        return;
    }
    let mut report = format!(
        "DNS-solver conformance of {}: {broken} of {} rules broken, on _certctl-conformance.{zone}",
        std::any::type_name::<T>(),
        checks.len()
    );
    for check in &checks {
        if check.passed {
            let _ = write!(report, "\n  ok      {}", check.rule);
        } else {
            let _ = write!(report, "\n  BROKEN  {}: {}", check.rule, check.detail);
        }
    }
    report.push_str("\nrequests the plugin sent, in order:");
    for request in &requests {
        let _ = write!(report, "\n  {} {}", request.method.as_str(), request.url);
        if !request.body.is_empty() {
            let _ = write!(report, " {}", request.text());
        }
    }
    panic!("{report}");
}

/// Runs the suite like [`dns_solver`], and returns the outcome of each rule instead of panicking.
///
/// # Panics
/// If a `MockHttp` is installed on this thread already.
pub fn run_dns_solver<T: DnsSolver>(config: &str, zone: &str, provider: FakeDnsProvider) -> Vec<Check> {
    run_with_requests::<T>(config, zone, provider).0
}

fn run_with_requests<T: DnsSolver>(
    config: &str,
    zone: &str,
    provider: FakeDnsProvider,
) -> (Vec<Check>, Vec<RecordedRequest>) {
    let FakeDnsProvider { handle, lookup } = provider;
    let http = MockHttp::install();
    http.fallback(handle);
    let plugin = super::dns_solver::<T>(config);

    let fqdn = format!("_certctl-conformance.{zone}");
    let record = |value: &str| DnsRecord {
        zone: zone.to_string(),
        fqdn: fqdn.clone(),
        value: value.to_string(),
        ttl: 60,
    };
    let first = "conformance-a";
    let second = "conformance-b";
    let checks = RefCell::new(Vec::new());

    let call = |value: &str, present: bool| {
        let outcome = if present {
            plugin.present(&record(value))
        } else {
            plugin.cleanup(&record(value))
        };
        outcome.map_err(|e| e.to_string())
    };
    let values = || {
        let mut v = lookup(&fqdn);
        v.sort();
        v
    };
    let check = |rule: &'static str, result: Result<(), String>| {
        checks.borrow_mut().push(Check {
            rule,
            passed: result.is_ok(),
            detail: result.err().unwrap_or_default(),
        });
    };
    let expect = |got: Vec<String>, want: &[&str]| -> Result<(), String> {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("TXT values at {fqdn}: expected {want:?}, found {got:?}"))
        }
    };

    check(RULES[0], call(first, false));
    check(RULES[1], call(first, true).and_then(|()| expect(values(), &[first])));
    check(RULES[2], call(first, true).and_then(|()| expect(values(), &[first])));
    check(
        RULES[3],
        call(second, true).and_then(|()| expect(values(), &[first, second])),
    );
    check(RULES[4], call(first, false).and_then(|()| expect(values(), &[second])));
    check(RULES[5], call(first, false));
    check(RULES[6], call(second, false).and_then(|()| expect(values(), &[])));

    let requests = http.requests();
    (checks.into_inner(), requests)
}
