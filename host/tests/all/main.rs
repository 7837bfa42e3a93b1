//! All integration tests in one binary (one link step, shared fixtures).
//! PostgreSQL tests need CERTCTL_TEST_POSTGRES_URL, which scripts/test.sh sets.

mod acme;
pub mod agents;
mod api;
mod browser;
pub mod challenges;
mod common;
mod conformance;
mod dashboard;
mod declared;
mod keystore;
pub mod lifecycle;
mod local_ca;
mod notifiers;
mod plugins;
mod renewal_info;
pub mod sandbox;
pub mod server;
mod store;
