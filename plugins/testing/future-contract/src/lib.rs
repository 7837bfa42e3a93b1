//! A notifier built against `certctl:plugin@9.9.0` (see `wit/`), a contract version no host
//! runs. The host must refuse to load it and name the version; if it ever loads, its calls
//! succeed so that a wrongly loaded component is noticed by the refusal test, not by a crash.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "notifier-plugin",
    });
}

use bindings::exports::certctl::plugin::notifier::{Event, Guest, PluginError};

struct FutureContract;

impl Guest for FutureContract {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }

    fn notify(_config: String, _event: Event) -> Result<(), PluginError> {
        Ok(())
    }
}

bindings::export!(FutureContract with_types_in bindings);
