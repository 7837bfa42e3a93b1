//! Write certctl plugins in Rust: DNS-01 solvers, notifiers and issuers, built as WebAssembly
//! components against the plugin contract `certctl:plugin@0.1.0` (the WIT in `wit/`).
//!
//! A plugin is a `cdylib` crate that implements one trait and registers it:
//!
//! | kind | SDK feature | trait | macro |
//! | --- | --- | --- | --- |
//! | DNS-01 solver | `dns-solver` | [`DnsSolver`] | [`register_dns_solver!`] |
//! | notifier | `notifier` | [`Notifier`] | [`register_notifier!`] |
//! | issuer | `issuer` | [`Issuer`] | [`register_issuer!`] |
//!
//! Enable exactly one kind feature per plugin crate: a component must implement every export its
//! bindings declare, so two kinds in one component do not link. For the same reason, build each
//! plugin with its own `cargo build -p NAME --target wasm32-wasip2` (Cargo unifies the features
//! of all packages built by one command).
//!
//! # A DNS solver
//!
//! ```no_run
//! # #[cfg(feature = "dns-solver")]
//! # mod example {
//! use certctl_sdk::{DnsRecord, DnsSolver, PluginError, http, log};
//! use serde::Deserialize;
//!
//! /// Configuration keys, as the operator writes them (secrets arrive resolved).
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     api_url: String,
//!     api_token: String,
//! }
//!
//! struct ExampleDns;
//!
//! impl DnsSolver for ExampleDns {
//!     type Config = Config;
//!
//!     // `validate_config` is inherited: it parses `Config` and names the offending key.
//!     fn check_config(config: &Config) -> Result<(), PluginError> {
//!         // https://, or http:// to this machine only: "config.api_url: must start with https://..."
//!         http::check_endpoint("config.api_url", &config.api_url)
//!     }
//!
//!     fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
//!         log::info(format!("adding a TXT value at {}", record.fqdn));
//!         http::post(format!("{}/zones/{}/txt", config.api_url, record.zone))
//!             .bearer_auth(&config.api_token)
//!             .json(&serde_json::json!({
//!                 "name": record.relative_name(),
//!                 "value": record.value,
//!                 "ttl": record.ttl,
//!             }))?
//!             .send()?
//!             .error_for_status()?; // 401 -> Auth, 429 -> RateLimited, 5xx -> Transient, ...
//!         Ok(())
//!     }
//!
//!     fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
//!         let url = format!("{}/zones/{}/txt/{}", config.api_url, record.zone, record.value);
//!         match http::delete(url).bearer_auth(&config.api_token).send()?.error_for_status() {
//!             Ok(_) | Err(PluginError::NotFound(_)) => Ok(()), // already gone is success
//!             Err(e) => Err(e),
//!         }
//!     }
//! }
//!
//! certctl_sdk::register_dns_solver!(ExampleDns);
//! # }
//! ```
//!
//! With `crate-type = ["cdylib"]` and `certctl-sdk = { ..., features = ["dns-solver"] }` in its
//! `Cargo.toml`, `cargo build --release --target wasm32-wasip2` gives the component. It ships
//! with a `NAME.toml` manifest (kind, contract version, requested hosts, config keys); see
//! `plugins/webhook` and `plugins/httpreq` in the certctl repository for complete plugins.
//!
//! # What the host guarantees, and expects
//!
//! - Every call runs in a fresh instance with the configuration passed in: keep nothing in
//!   statics between calls. Issuers keep state in [`kv`] or in [`Progress::Pending`].
//! - Errors are typed ([`PluginError`]) so the host can retry, wait or alert; a panic, a memory
//!   or CPU overrun ends the call as a trap.
//! - Outbound HTTP ([`http`]) reaches only what the operator granted to the instance; nothing
//!   else leaves the sandbox: no files, no environment, no sockets.
//! - Notifiers may send e-mail ([`mail`]) through the SMTP relay the operator configured on the
//!   server, when their manifest declares `mail = true` under `[capabilities]`; the host owns
//!   the relay, its credentials, TLS and the sender address.
//! - [`log`] lines and stdout/stderr are attached to the call's trace, capped.
//!
//! # Helpers
//!
//! What the shipped plugins share, for yours too: [`http::check_endpoint`] for a configured URL,
//! [`PluginError::message`] to word a more precise error around one from
//! [`http::status_error`], [`text::truncate`] to a channel's limit and [`text::snippet`] of a
//! body for a message, [`time::rfc3339`] for event times, and [`dns::unquote_txt`] to read TXT
//! content as DNS APIs return it.
//!
//! # Testing natively
//!
//! `cargo test` runs a plugin's unit tests natively, against the mock host in `testkit`
//! (not compiled for `wasm32`): recorded HTTP exchanges, an in-memory [`kv`], an outbox for
//! [`mail`], captured [`log`] lines, calls made the way the host makes them, and the DNS-solver
//! conformance rules.

// The docs link to every kind's items; they resolve when all kind features are on (as on
// docs.rs, see Cargo.toml), and are plain text otherwise.
#![cfg_attr(
    not(all(feature = "dns-solver", feature = "notifier", feature = "issuer")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod bindings;
mod config;
pub mod dns;
mod error;
pub mod http;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testkit;
pub mod text;
pub mod time;
mod types;

#[cfg(feature = "dns-solver")]
mod dns_solver;
#[cfg(feature = "issuer")]
mod issuer;
#[cfg(feature = "notifier")]
mod notifier;

pub use config::config;
#[cfg(feature = "dns-solver")]
pub use dns_solver::DnsSolver;
pub use error::PluginError;
#[cfg(feature = "issuer")]
pub use issuer::{IssueRequest, Issuer, Progress, RenewalWindow, challenge, keystore, kv};
#[cfg(feature = "notifier")]
pub use notifier::{Notifier, mail};
pub use types::{DnsRecord, Event, Severity};

/// What the registration macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "dns-solver")]
    pub use crate::bindings::dns_solver as dns_solver_bindings;
    #[cfg(feature = "dns-solver")]
    pub use crate::bindings::dns_solver::export_dns_solver;
    #[cfg(feature = "dns-solver")]
    pub use crate::dns_solver::DnsSolverExport;

    #[cfg(feature = "notifier")]
    pub use crate::bindings::notifier as notifier_bindings;
    #[cfg(feature = "notifier")]
    pub use crate::bindings::notifier::export_notifier;
    #[cfg(feature = "notifier")]
    pub use crate::notifier::NotifierExport;

    #[cfg(feature = "issuer")]
    pub use crate::bindings::issuer as issuer_bindings;
    #[cfg(feature = "issuer")]
    pub use crate::bindings::issuer::export_issuer;
    #[cfg(feature = "issuer")]
    pub use crate::issuer::IssuerExport;
}

/// Without the `dns-solver` feature, say which feature is missing.
#[cfg(not(feature = "dns-solver"))]
#[macro_export]
macro_rules! register_dns_solver {
    ($plugin:ty) => {
        compile_error!("register_dns_solver! needs the `dns-solver` feature of certctl-sdk");
    };
}

/// Without the `notifier` feature, say which feature is missing.
#[cfg(not(feature = "notifier"))]
#[macro_export]
macro_rules! register_notifier {
    ($plugin:ty) => {
        compile_error!("register_notifier! needs the `notifier` feature of certctl-sdk");
    };
}

/// Without the `issuer` feature, say which feature is missing.
#[cfg(not(feature = "issuer"))]
#[macro_export]
macro_rules! register_issuer {
    ($plugin:ty) => {
        compile_error!("register_issuer! needs the `issuer` feature of certctl-sdk");
    };
}
