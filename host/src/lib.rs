//! certctl: TLS certificate lifecycle platform. The binaries in `src/bin` are thin; everything
//! lives here so tests can drive it.

pub mod agent;
pub mod api;
pub mod auth;
pub mod challenge;
pub mod cli;
pub mod config;
pub mod declared;
pub mod dns;
pub mod keystore;
pub mod lifecycle;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod persist;
pub mod plugins;
pub mod scaffold;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
