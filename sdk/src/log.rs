//! Logging into the host's trace of the current call (`host-log`).
//!
//! Lines are attached to the call's span and shown to operators, for example in the report of
//! `POST /api/v1/notifiers/{id}/test`. The host caps their size and number per call: log what
//! helps to diagnose a failure, never a secret. Outside a WebAssembly host (native unit tests)
//! lines go to stderr, and are kept per thread for tests to assert on (see
//! `certctl_sdk::testkit::logs`).

use std::fmt::Display;

/// Very detailed diagnostics.
pub fn trace(message: impl Display) {
    write(Level::Trace, &message.to_string());
}

/// Diagnostics.
pub fn debug(message: impl Display) {
    write(Level::Debug, &message.to_string());
}

/// Normal progress worth keeping in the call's trace.
pub fn info(message: impl Display) {
    write(Level::Info, &message.to_string());
}

/// Something unexpected that the plugin handled.
pub fn warn(message: impl Display) {
    write(Level::Warn, &message.to_string());
}

/// A failure, usually right before returning the matching [`PluginError`](crate::PluginError).
pub fn error(message: impl Display) {
    write(Level::Error, &message.to_string());
}

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// [`trace`].
    Trace,
    /// [`debug`].
    Debug,
    /// [`info`].
    Info,
    /// [`warn`].
    Warn,
    /// [`error`].
    Error,
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    use crate::bindings::base::certctl::plugin::host_log;
    let level = match level {
        Level::Trace => host_log::Level::Trace,
        Level::Debug => host_log::Level::Debug,
        Level::Info => host_log::Level::Info,
        Level::Warn => host_log::Level::Warn,
        Level::Error => host_log::Level::Error,
    };
    host_log::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
    crate::testkit::capture_log(level, message);
}
