//! Contract `certctl:plugin@0.1.0`: bindings and the host side of its imports. A later contract
//! version gets its own module beside this one, and the runtime dispatches on the version a
//! component declares, so plugins built against 0.1.0 keep working.

use super::sandbox::StoreState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "certctl:plugin/host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use generated::certctl::plugin::types::{DnsRecord, Event, PluginError, Severity};
use generated::certctl::plugin::{host_challenge, host_keystore, host_kv, host_log, types};
pub use generated::exports::certctl::plugin::{dns_solver, issuer, notifier};

pub const CONTRACT: &str = "0.1.0";

/// Adds the host's imports of this contract version to a linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    host_log::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_kv::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_keystore::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_challenge::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    types::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    Ok(())
}

impl types::Host for StoreState {}

impl host_log::Host for StoreState {
    async fn log(&mut self, level: host_log::Level, message: String) -> wasmtime::Result<()> {
        let level_name = match level {
            host_log::Level::Trace => "trace",
            host_log::Level::Debug => "debug",
            host_log::Level::Info => "info",
            host_log::Level::Warn => "warn",
            host_log::Level::Error => "error",
        };
        if self.log.push(level_name, &message) {
            match level {
                host_log::Level::Error => tracing::error!(plugin = %self.plugin, "{message}"),
                host_log::Level::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
                host_log::Level::Info => tracing::info!(plugin = %self.plugin, "{message}"),
                host_log::Level::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
                host_log::Level::Trace => tracing::trace!(plugin = %self.plugin, "{message}"),
            }
        }
        Ok(())
    }
}

// Issuer plugins arrive with the certificate lifecycle; until then the stores behind these
// imports are not wired, and the calls say so as typed errors instead of trapping.
const NOT_YET: &str = "this certctl server does not provide this host capability yet";

impl host_kv::Host for StoreState {
    async fn get(&mut self, _key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    async fn set(&mut self, _key: String, _value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(NOT_YET.to_string()))
    }

    async fn delete(&mut self, _key: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl host_keystore::Host for StoreState {
    async fn generate_key(
        &mut self,
        _algorithm: host_keystore::KeyAlgorithm,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }

    async fn public_key(&mut self, _key_id: String) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }

    async fn sign(&mut self, _key_id: String, _data: Vec<u8>) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }
}

impl host_challenge::Host for StoreState {
    async fn present_dns(&mut self, _identifier: String, _value: String) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }

    async fn present_http(
        &mut self,
        _token: String,
        _key_authorization: String,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }

    async fn wait_ready(&mut self, _handle: u64) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }

    async fn cleanup(&mut self, _handle: u64) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(Err(PluginError::Permanent(NOT_YET.into())))
    }
}
