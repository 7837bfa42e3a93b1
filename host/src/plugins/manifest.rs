//! Plugin manifests (`NAME.toml` beside `NAME.wasm`) and the config schema they declare.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::InstanceKind;

/// The contract versions this host can run.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub kind: InstanceKind,
    pub version: String,
    /// The `certctl:plugin` contract version the component was built against.
    pub contract: String,
    #[serde(default)]
    pub description: String,
    /// Hex SHA-256 of the `.wasm` file.
    pub sha256: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Configuration keys the plugin accepts.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigField>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Hosts the plugin asks to reach: `https://api.example.com`, `https://*.example.com`, or
    /// `*` for "whatever the operator grants".
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
    /// The plugin sends e-mail through the server's SMTP relay (`host-mail`; notifiers only).
    #[serde(default)]
    pub mail: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    String,
    Integer,
    Boolean,
    StringList,
    StringMap,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Secret values are stored encrypted, resolved by the host and never shown back.
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: String,
}

/// Plugin names: 1-64 lower-case letters, digits or '-'.
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Manifest {
    /// Parses and checks a manifest. `stem` is the `.wasm` file name without extension.
    pub fn parse(text: &str, stem: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| format!("invalid manifest: {}", e.message()))?;
        if !is_plugin_name(&m.name) {
            return Err(format!(
                "manifest name {:?} is invalid: use 1-64 lower-case letters, digits or '-'",
                m.name
            ));
        }
        if m.name != stem {
            return Err(format!(
                "manifest name {:?} does not match the file name {stem:?}.wasm",
                m.name
            ));
        }
        if m.sha256.len() != 64 || !m.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("manifest sha256 must be 64 hex characters".into());
        }
        for host in &m.capabilities.outbound_hosts {
            if host != "*" {
                super::grants::HostPattern::parse(host).map_err(|e| format!("capabilities.outbound_hosts: {e}"))?;
            }
        }
        Ok(m)
    }

    /// Checks an instance configuration against the declared keys: every key known, required
    /// keys present, values of the declared type. Errors name the key.
    pub fn check_config(&self, config: &serde_json::Value) -> Result<(), (String, String)> {
        let Some(obj) = config.as_object() else {
            return Err(("config".into(), "must be a JSON object".into()));
        };
        for key in obj.keys() {
            // Host-reserved: the instance's own CA bundle, for plugins that call out.
            if key == super::registry::CA_BUNDLE_KEY
                && !self.config.contains_key(key)
                && !self.capabilities.outbound_hosts.is_empty()
            {
                if !obj[key].is_string() {
                    return Err((format!("config.{key}"), "must be a string (PEM, or file:/path)".into()));
                }
                continue;
            }
            if !self.config.contains_key(key) {
                let known: Vec<&str> = self.config.keys().map(String::as_str).collect();
                return Err((
                    format!("config.{key}"),
                    format!("unknown key for plugin {}; known keys: {}", self.name, known.join(", ")),
                ));
            }
        }
        for (key, field) in &self.config {
            let field_name = format!("config.{key}");
            match obj.get(key) {
                None | Some(serde_json::Value::Null) if field.required => {
                    return Err((field_name, format!("required by plugin {}", self.name)));
                }
                None | Some(serde_json::Value::Null) => {}
                Some(v) => {
                    let ok = match field.kind {
                        FieldType::String => v.is_string(),
                        FieldType::Integer => v.is_i64() || v.is_u64(),
                        FieldType::Boolean => v.is_boolean(),
                        FieldType::StringList => v.as_array().is_some_and(|a| a.iter().all(|x| x.is_string())),
                        FieldType::StringMap => v.as_object().is_some_and(|m| m.values().all(|x| x.is_string())),
                    };
                    if !ok {
                        return Err((field_name, format!("must be of type {:?}", field.kind).to_lowercase()));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.config.iter().filter(|(_, f)| f.secret).map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "webhook"
kind = "notifier"
version = "0.1.0"
contract = "0.1.0"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[capabilities]
outbound_hosts = ["*"]
[config.url]
type = "string"
required = true
[config.secret]
type = "string"
secret = true
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD, "webhook").expect("parses");
        assert_eq!(m.kind, InstanceKind::Notifier);
        assert_eq!(m.secret_keys().collect::<Vec<_>>(), vec!["secret"]);
    }

    #[test]
    fn refuses_mismatched_names_and_unknown_keys() {
        assert!(
            Manifest::parse(GOOD, "other")
                .expect_err("mismatch")
                .contains("file name")
        );
        let extra = format!("{GOOD}\nfoo = 1\n");
        assert!(Manifest::parse(&extra, "webhook").is_err());
    }

    #[test]
    fn config_is_checked_by_key() {
        let m = Manifest::parse(GOOD, "webhook").expect("parses");
        assert!(m.check_config(&serde_json::json!({"url": "https://x"})).is_ok());
        let (field, _) = m.check_config(&serde_json::json!({})).expect_err("missing");
        assert_eq!(field, "config.url");
        let (field, _) = m.check_config(&serde_json::json!({"url": 5})).expect_err("type");
        assert_eq!(field, "config.url");
        let (field, msg) = m
            .check_config(&serde_json::json!({"url": "x", "colour": 1}))
            .expect_err("unknown");
        assert_eq!(field, "config.colour");
        assert!(msg.contains("url"), "{msg}");
    }
}
