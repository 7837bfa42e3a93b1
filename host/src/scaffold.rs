//! `certctl plugin new`: a ready-to-build plugin project on the SDK.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::model::InstanceKind;

const GITIGNORE: &str = "/target\n/dist\n";

fn cargo_toml(name: &str, kind: InstanceKind, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A plugin builds on its own, outside any other workspace.
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
# Exactly one kind feature per plugin.
certctl-sdk = {{ path = "{sdk}", features = ["{kind}"] }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# Small components: optimise for size, one codegen unit, LTO, no symbols.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#,
        sdk = sdk.display(),
        kind = kind.as_str(),
    )
}

fn lib_rs(name: &str, kind: InstanceKind) -> String {
    let type_name: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    match kind {
        InstanceKind::DnsSolver => format!(
            r#"//! {name}: a certctl DNS-01 solver. Replace the example API calls with your provider's.

use certctl_sdk::{{DnsRecord, DnsSolver, PluginError, http, log}};
use serde::Deserialize;

/// The instance configuration, as operators write it (secrets arrive resolved).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    /// Base URL of the provider's API, e.g. https://dns.example.com/api.
    pub api_url: String,
    /// API token (declared `secret = true` in manifest.toml).
    pub api_token: String,
}}

pub struct {type_name};

impl DnsSolver for {type_name} {{
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {{
        if !config.api_url.starts_with("https://") {{
            return Err(PluginError::invalid_config("config.api_url: must start with https://"));
        }}
        Ok(())
    }}

    /// Adds the value; presenting it again must not add a second copy, and other values at
    /// the same name must stay.
    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {{
        log::info(format!("adding a TXT value at {{}}", record.fqdn));
        http::post(format!("{{}}/zones/{{}}/txt", config.api_url, record.zone))
            .bearer_auth(&config.api_token)
            .json(&serde_json::json!({{"name": record.fqdn, "value": record.value, "ttl": record.ttl}}))?
            .send()?
            .error_for_status()?;
        Ok(())
    }}

    /// Removes exactly this value; a value already gone is success.
    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {{
        let url = format!("{{}}/zones/{{}}/txt/{{}}/{{}}", config.api_url, record.zone, record.fqdn, record.value);
        match http::delete(url).bearer_auth(&config.api_token).send()?.error_for_status() {{
            Ok(_) | Err(PluginError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }}
    }}
}}

certctl_sdk::register_dns_solver!({type_name});
"#
        ),
        InstanceKind::Notifier => format!(
            r#"//! {name}: a certctl notifier. Replace the example request with your channel's.

use certctl_sdk::{{Event, Notifier, PluginError, http}};
use serde::Deserialize;

/// The instance configuration, as operators write it (secrets arrive resolved).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    /// Where to send events.
    pub url: String,
}}

pub struct {type_name};

impl Notifier for {type_name} {{
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {{
        if !config.url.starts_with("https://") {{
            return Err(PluginError::invalid_config("config.url: must start with https://"));
        }}
        Ok(())
    }}

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {{
        http::post(config.url.as_str())
            .json(&serde_json::json!({{"text": format!("[{{}}] {{}}", event.severity.as_str(), event.summary)}}))?
            .send()?
            .error_for_status()?;
        Ok(())
    }}
}}

certctl_sdk::register_notifier!({type_name});
"#
        ),
        InstanceKind::Issuer => format!(
            r#"//! {name}: a certctl issuer. `begin` starts an issuance; return `Progress::Pending` with
//! an opaque state to be called again through `resume`, or `Progress::Issued` with the chain.

use certctl_sdk::{{IssueRequest, Issuer, PluginError, Progress}};
use serde::Deserialize;

/// The instance configuration, as operators write it (secrets arrive resolved).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    /// Base URL of the CA's API.
    pub api_url: String,
}}

pub struct {type_name};

impl Issuer for {type_name} {{
    type Config = Config;

    fn begin(config: &Config, request: &IssueRequest) -> Result<Progress, PluginError> {{
        let _ = (config, request);
        Err(PluginError::permanent("{name}: issuance is not written yet"))
    }}
}}

certctl_sdk::register_issuer!({type_name});
"#
        ),
    }
}

fn manifest(name: &str, kind: InstanceKind) -> String {
    let (description, hosts, config) = match kind {
        InstanceKind::DnsSolver => (
            "DNS-01 through the Example DNS API",
            r#"["https://dns.example.com"]"#,
            "[config.api_url]\ntype = \"string\"\nrequired = true\ndescription = \"Base URL of the provider's API\"\n\n\
             [config.api_token]\ntype = \"string\"\nrequired = true\nsecret = true\ndescription = \"API token\"\n",
        ),
        InstanceKind::Notifier => (
            "Sends events to a chat channel",
            r#"["*"]"#,
            "[config.url]\ntype = \"string\"\nrequired = true\ndescription = \"Where to send events\"\n",
        ),
        InstanceKind::Issuer => (
            "Issues certificates from the Example CA",
            r#"["*"]"#,
            "[config.api_url]\ntype = \"string\"\nrequired = true\ndescription = \"Base URL of the CA's API\"\n",
        ),
    };
    format!(
        "name = \"{name}\"\nkind = \"{kind}\"\nversion = \"0.1.0\"\ncontract = \"{contract}\"\n\
         description = \"{description}\"\n\n[capabilities]\noutbound_hosts = {hosts}\n\n{config}",
        kind = kind.as_str(),
        contract = crate::plugins::v0_1::CONTRACT,
    )
}

fn build_sh(name: &str) -> String {
    let file = name.replace('-', "_");
    format!(
        r#"#!/usr/bin/env bash
# Builds dist/{name}.wasm and dist/{name}.toml (manifest.toml plus the sha256 the host checks).
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --target wasm32-wasip2
target=${{CARGO_TARGET_DIR:-target}}
mkdir -p dist
cp "$target/wasm32-wasip2/release/{file}.wasm" dist/{name}.wasm
sum=$(sha256sum dist/{name}.wasm | cut -d' ' -f1)
{{ sed -n '1,/^\[/{{/^\[/!p}}' manifest.toml; echo "sha256 = \"$sum\""; echo; sed -n '/^\[/,$p' manifest.toml; }} > dist/{name}.toml
echo "dist/{name}.wasm ($(wc -c < dist/{name}.wasm) bytes), dist/{name}.toml"
"#
    )
}

fn readme(name: &str, kind: InstanceKind) -> String {
    format!(
        "# {name}\n\nA certctl {kind} plugin.\n\n```sh\n./build.sh                              # dist/{name}.wasm + dist/{name}.toml\n\
         certctl plugin validate dist/{name}.wasm  # the checks the server runs on load\n```\n\n\
         Then copy both files into the server's plugin directory (`CERTCTL_PLUGIN_DIRS`) and grant the\n\
         hosts it calls in the grants file (`CERTCTL_PLUGIN_GRANTS`). See docs/plugin-authors in the\n\
         certctl repository.\n",
        kind = kind.as_str(),
    )
}

/// Writes a new plugin project `dir/name`. Refuses to overwrite anything.
pub fn new_plugin(dir: &Path, name: &str, kind: InstanceKind, sdk: &Path) -> anyhow::Result<PathBuf> {
    // A crate name too, so it must also start with a letter.
    let ok = crate::plugins::manifest::is_plugin_name(name) && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        return Err(anyhow!(
            "plugin name {name:?} is invalid: start with a letter, then lower-case letters, digits or '-'"
        ));
    }
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("--sdk {}: no such directory", sdk.display()))?;
    if !sdk.join("Cargo.toml").exists() {
        return Err(anyhow!(
            "--sdk {}: not the certctl-sdk crate (no Cargo.toml)",
            sdk.display()
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(anyhow!(
            "{} already exists; choose another name or directory",
            root.display()
        ));
    }
    std::fs::create_dir_all(root.join("src")).with_context(|| format!("cannot create {}", root.display()))?;
    let files = [
        ("Cargo.toml", cargo_toml(name, kind, &sdk)),
        ("src/lib.rs", lib_rs(name, kind)),
        ("manifest.toml", manifest(name, kind)),
        ("build.sh", build_sh(name)),
        ("README.md", readme(name, kind)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    for (file, text) in files {
        std::fs::write(root.join(file), text).with_context(|| format!("cannot write {}", root.join(file).display()))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("build.sh"), std::fs::Permissions::from_mode(0o755))?;
    Ok(root)
}
