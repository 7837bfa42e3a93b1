//! A notifier that misbehaves on request, for the host's containment tests and benchmarks.
//! `notify` reads `{"mode": ...}` from its configuration; README.md lists what each mode tries
//! and what the host must do about it. Never ship it.

use std::hint::black_box;
use std::io::Write;

use certctl_sdk::{Event, Notifier, PluginError, http, log};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Ok,
    Loop,
    Memory,
    Recursion,
    Panic,
    LogFlood,
    StdoutFlood,
    Http,
    HttpMany,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    /// For `http` and `http-many`.
    #[serde(default)]
    url: Option<String>,
    /// For `http-many`: how many sequential GETs.
    #[serde(default)]
    count: Option<u32>,
}

const MIB: usize = 1024 * 1024;

struct Misbehave;

impl Notifier for Misbehave {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        if matches!(config.mode, Mode::Http | Mode::HttpMany) && config.url.is_none() {
            return Err(PluginError::invalid_config("config.url: required by the http modes"));
        }
        Ok(())
    }

    fn notify(config: &Config, _event: &Event) -> Result<(), PluginError> {
        match config.mode {
            Mode::Ok => Ok(()),
            Mode::Loop => spin(),
            Mode::Memory => hog_memory(),
            Mode::Recursion => {
                let depth = recurse(black_box(0));
                Err(PluginError::permanent(format!("recursion ended at depth {depth}")))
            }
            Mode::Panic => panic!("misbehave: panicking on purpose"),
            Mode::LogFlood => {
                let line = "x".repeat(1024);
                for _ in 0..1_000_000 {
                    log::info(black_box(&line));
                }
                Ok(())
            }
            Mode::StdoutFlood => {
                flood(&mut std::io::stdout(), "stdout")?;
                flood(&mut std::io::stderr(), "stderr")
            }
            Mode::Http => get(config.url.as_deref().unwrap_or_default()),
            Mode::HttpMany => {
                let url = config.url.as_deref().unwrap_or_default();
                let count = config.count.unwrap_or(1);
                let mut failures = 0u32;
                let mut first = None;
                for _ in 0..count {
                    if let Err(e) = get(url) {
                        failures += 1;
                        first.get_or_insert(match e {
                            PluginError::Transient(message) => message,
                            other => other.to_string(),
                        });
                    }
                }
                match first {
                    None => Ok(()),
                    Some(e) => Err(PluginError::transient(format!(
                        "{failures} of {count} requests failed; first: {e}"
                    ))),
                }
            }
            Mode::Error => Err(PluginError::rate_limited(Some(7))),
        }
    }
}

certctl_sdk::register_notifier!(Misbehave);

/// Burns CPU until the host stops it.
fn spin() -> Result<(), PluginError> {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Allocates and touches 1 GiB in 1 MiB chunks, keeping all of it alive.
fn hog_memory() -> Result<(), PluginError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..1024 {
        let chunk = vec![(i % 251) as u8 + 1; MIB];
        chunks.push(black_box(chunk));
    }
    let touched: usize = chunks.iter().map(|c| usize::from(c[MIB - 1])).sum();
    Err(PluginError::permanent(format!(
        "allocated 1 GiB without being stopped ({touched})"
    )))
}

/// Recurses until the stack runs out; the frame's buffer and `black_box` keep it from being
/// turned into a loop.
#[allow(unconditional_recursion, reason = "the point of the recursion mode")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 256]);
    let deeper = recurse(black_box(depth + 1));
    deeper.wrapping_add(u64::from(frame[(depth % 256) as usize]))
}

/// Writes 100 MB in 1 MiB blocks.
fn flood(out: &mut dyn Write, name: &str) -> Result<(), PluginError> {
    let block = vec![b'y'; MIB];
    let mut written = 0usize;
    while written < 100 * 1000 * 1000 {
        out.write_all(&block)
            .map_err(|e| PluginError::transient(format!("writing {name} failed after {written} bytes: {e}")))?;
        written += block.len();
    }
    out.flush()
        .map_err(|e| PluginError::transient(format!("flushing {name} failed: {e}")))
}

fn get(url: &str) -> Result<(), PluginError> {
    http::get(url).send()?.error_for_status()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_their_config() {
        assert!(Misbehave::validate_config(r#"{"mode": "log-flood"}"#).is_ok());
        assert!(Misbehave::validate_config(r#"{"mode": "http-many", "url": "http://x", "count": 5}"#).is_ok());
        match Misbehave::validate_config(r#"{"mode": "http"}"#) {
            Err(PluginError::InvalidConfig(m)) => assert!(m.starts_with("config.url"), "{m}"),
            other => panic!("{other:?}"),
        }
        match Misbehave::validate_config(r#"{"mode": "explode"}"#) {
            Err(PluginError::InvalidConfig(m)) => assert!(m.starts_with("config.mode: unknown variant"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
