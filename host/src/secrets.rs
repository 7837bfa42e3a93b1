//! Secret configuration values of plugin instances.
//!
//! A key the plugin's manifest marks `secret` holds a reference, never the secret itself:
//! `env:NAME` (an environment variable of the server) or `file:/path` (e.g. a mounted
//! Kubernetes Secret). The host resolves references just before a call and hands the values
//! only to that call; the API shows the references, never the values. Literal values are
//! refused, so no secret is ever stored in the database in clear.

use crate::plugins::manifest::Manifest;

/// Replaces secret references in `config` by their values; returns the JSON text for the call.
/// Errors name the key and say what is wrong.
pub fn resolve(manifest: &Manifest, config: &serde_json::Value) -> Result<String, (String, String)> {
    let mut resolved = config.clone();
    for key in manifest.secret_keys() {
        let field = format!("config.{key}");
        let Some(value) = resolved.get_mut(key) else { continue };
        let Some(reference) = value.as_str() else {
            return Err((field, "a secret is given as a string env:NAME or file:/path".into()));
        };
        let secret = if let Some(var) = reference.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                (
                    field.clone(),
                    format!("environment variable {var} is not set on the server"),
                )
            })?
        } else if let Some(path) = reference.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| (field.clone(), format!("cannot read secret file {path}: {e}")))?
        } else {
            return Err((
                field,
                "secret values are references, not the secret itself: use env:NAME or file:/path".into(),
            ));
        };
        *value = serde_json::Value::String(secret);
    }
    serde_json::to_string(&resolved).map_err(|e| ("config".into(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
name = "p"
kind = "notifier"
version = "0.1.0"
contract = "0.1.0"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[config.url]
type = "string"
[config.token]
type = "string"
secret = true
"#,
            "p",
        )
        .expect("manifest")
    }

    #[test]
    fn references_resolve_and_literals_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        let config = serde_json::json!({"url": "https://x", "token": format!("file:{}", path.display())});
        let out = resolve(&manifest(), &config).expect("resolves");
        assert!(out.contains("\"token\":\"s3cret\""), "{out}");

        let (field, msg) = resolve(&manifest(), &serde_json::json!({"token": "s3cret"})).expect_err("literal");
        assert_eq!(field, "config.token");
        assert!(msg.contains("env:NAME"), "{msg}");
        let (_, msg) = resolve(
            &manifest(),
            &serde_json::json!({"token": "env:CERTCTL_TEST_SURELY_UNSET"}),
        )
        .expect_err("unset");
        assert!(msg.contains("CERTCTL_TEST_SURELY_UNSET"), "{msg}");
    }
}
