//! Typed instance configuration.

use serde::de::DeserializeOwned;

use crate::PluginError;

/// Parses an instance configuration (the JSON the host passes, secrets already resolved) into
/// `T`. Errors are [`PluginError::InvalidConfig`] naming the key, the way the host names keys:
///
/// - `config.url: required` for a missing field,
/// - `config.timeout_seconds: invalid type: string "x", expected u32`,
/// - `config.colour: unknown key, expected one of `url`, `secret`` (with
///   `#[serde(deny_unknown_fields)]` on `T`).
///
/// An empty string counts as `{}`.
pub fn config<T: DeserializeOwned>(json: &str) -> Result<T, PluginError> {
    let text = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        describe(&path, e.into_inner())
    })?;
    de.end().map_err(|e| describe(".", e))?;
    Ok(parsed)
}

fn describe(path: &str, e: serde_json::Error) -> PluginError {
    if e.is_syntax() || e.is_eof() {
        return PluginError::InvalidConfig(format!("config: not valid JSON: {e}"));
    }
    // serde_path_to_error writes the root as `.` and an unknown position as `?`.
    let key = match path {
        "" | "." | "?" => "config".to_string(),
        _ => format!("config.{path}"),
    };
    // serde_json appends " at line L column C"; positions mean nothing to an operator who wrote
    // the configuration as a form or a YAML file.
    let text = e.to_string();
    let message = match text.rsplit_once(" at line ") {
        Some((m, _)) => m.to_string(),
        None => text,
    };
    if let Some(field) = backticked(&message, "missing field ") {
        // The path names the object the key is missing from.
        return PluginError::InvalidConfig(format!("{key}.{field}: required"));
    }
    if backticked(&message, "unknown field ").is_some() {
        // The path already ends with the unknown key.
        let known = message
            .split_once(", expected ")
            .map(|(_, rest)| format!(", expected {rest}"))
            .unwrap_or_default();
        return PluginError::InvalidConfig(format!("{key}: unknown key{known}"));
    }
    PluginError::InvalidConfig(format!("{key}: {message}"))
}

/// `missing field `url`` -> `url`.
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        url: String,
        #[serde(default)]
        timeout_seconds: Option<u32>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        depth: u8,
    }

    fn err(json: &str) -> String {
        match config::<Conf>(json) {
            Err(PluginError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_good_config() {
        let c: Conf = config(r#"{"url": "https://x", "timeout_seconds": 5}"#).expect("parses");
        assert_eq!(c.url, "https://x");
        assert_eq!(c.timeout_seconds, Some(5));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(err("{}"), "config.url: required");
        assert_eq!(err(""), "config.url: required");
        assert_eq!(
            err(r#"{"url": 5}"#),
            "config.url: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            err(r#"{"url": "x", "timeout_seconds": "soon"}"#),
            "config.timeout_seconds: invalid type: string \"soon\", expected u32"
        );
        assert!(err(r#"{"url": "x", "colour": 1}"#).starts_with("config.colour: unknown key, expected one of `url`"));
        assert_eq!(
            err(r#"{"url": "x", "headers": {"a": 1}}"#),
            "config.headers.a: invalid type: integer `1`, expected a string"
        );
        assert_eq!(err(r#"{"url": "x", "nested": {}}"#), "config.nested.depth: required");
        assert_eq!(
            err(r#"{"url": "x", "nested": {"depth": 300}}"#),
            "config.nested.depth: invalid value: integer `300`, expected u8"
        );
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        assert!(err("{").starts_with("config: not valid JSON"), "{}", err("{"));
        assert!(err(r#"{"url": "x"} trailing"#).starts_with("config: not valid JSON"));
    }
}
