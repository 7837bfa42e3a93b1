//! Plugin instances declared in `CERTCTL_INSTANCES_FILE` (as the Helm chart renders them).

use serde_json::{Value, json};

use crate::common::{Backend, TestApp};
use crate::sandbox::shipped_dir;
use certctl::declared::apply;
use certctl::plugins::grants::Grants;

fn file(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

async fn webhook_url(app: &TestApp, name: &str) -> Value {
    let (_, list) = app.admin("GET", "/api/v1/notifiers", None).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .find(|i| i["name"] == name)
        .map(|i| i["config"]["url"].clone())
        .unwrap_or(Value::Null)
}

/// Created when missing, replaced when different, left alone when equal; each declaration is
/// checked like an API request and a bad one does not stop the others.
async fn declared_instances_are_created_updated_and_checked(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir()], Grants::default()).await;
    let plugins = app.lifecycle.plugins.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("instances.json");
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, "s3cret-from-a-kubernetes-secret").expect("secret");
    let mut declared = json!({
        "issuers": [{"name": "internal", "plugin": "local-ca", "config": {}}],
        "notifiers": [{"name": "hooks", "plugin": "webhook",
                       "config": {"url": "https://hooks.example.test/a",
                                  "secret": format!("file:{}", secret.display())}}]
    });
    let first = apply(&app.store, &plugins, &path, &file(&declared))
        .await
        .expect("applied");
    assert_eq!(first.errors, Vec::<String>::new());
    assert_eq!(first.created, vec!["notifier hooks", "issuer internal"]);
    let again = apply(&app.store, &plugins, &path, &file(&declared))
        .await
        .expect("applied");
    assert_eq!((again.created.len(), again.updated.len(), again.unchanged), (0, 0, 2));

    declared["notifiers"][0]["config"]["url"] = json!("https://hooks.example.test/b");
    let changed = apply(&app.store, &plugins, &path, &file(&declared))
        .await
        .expect("applied");
    assert_eq!(changed.updated, vec!["notifier hooks"]);
    assert_eq!(webhook_url(&app, "hooks").await, "https://hooks.example.test/b");
    let (_, audit) = app.admin("GET", "/api/v1/audit?actor=instances-file", None).await;
    let actions: Vec<String> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["actor"] == "instances-file")
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    for action in ["notifier.create", "issuer.create", "notifier.update"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }

    // Bad declarations: each named, the good one beside them still applied.
    let bad = json!({
        "issuers": [{"name": "internal", "plugin": "acme", "config": {}}],
        "notifiers": [
            {"name": "hooks", "plugin": "webhook", "config": {"url": "https://hooks.example.test/c"}},
            {"name": "twice", "plugin": "webhook", "config": {"url": "https://x.example.test"}},
            {"name": "twice", "plugin": "webhook", "config": {"url": "https://x.example.test"}},
            {"name": "nosuch", "plugin": "carrier-pigeon", "config": {}},
            {"name": "typo", "plugin": "webhook", "config": {"ulr": "https://x.example.test"}},
            {"name": "lost-secret", "plugin": "webhook",
             "config": {"url": "https://x.example.test", "secret": "file:/nonexistent/secret"}},
            {"name": "Bad Name!", "plugin": "webhook", "config": {"url": "https://x.example.test"}}
        ]
    });
    let result = apply(&app.store, &plugins, &path, &file(&bad)).await.expect("parsed");
    assert_eq!(result.updated, vec!["notifier hooks"], "{result:?}");
    assert_eq!(result.created, vec!["notifier twice"], "{result:?}");
    let errors = result.errors.join("\n");
    for expected in [
        "issuers[0] (issuer \"internal\"): exists with plugin \"local-ca\", declared with \"acme\"",
        "notifiers[2] (notifier \"twice\"): declared twice",
        "notifiers[3] (notifier \"nosuch\"): plugin: no notifier plugin named \"carrier-pigeon\"",
        "notifiers[4] (notifier \"typo\"): config.ulr",
        "notifiers[5] (notifier \"lost-secret\"): config.secret",
        "notifiers[6] (notifier \"Bad Name!\"): name",
    ] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
    assert_eq!(result.errors.len(), 6, "{errors}");

    // A file that does not parse names the place.
    let broken = br#"{"issuers": [{"name": "x", "plugin": "local-ca", "confg": {}}]}"#;
    let error = apply(&app.store, &plugins, &path, broken)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("CERTCTL_INSTANCES_FILE") && error.contains("issuers[0]") && error.contains("confg"),
        "{error}"
    );
    let error = apply(&app.store, &plugins, &path, br#"{"notifers": []}"#)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("notifers"), "{error}");
}

crate::on_both_backends!(declared_instances_are_created_updated_and_checked);

/// Through the binary: a wrong declaration stops the server at start with the reason; a good
/// file is applied, and a new version of it (swapped as Kubernetes swaps a ConfigMap) is
/// applied without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_applies_the_instances_file_and_follows_its_changes() {
    use crate::server::{client, free_port};
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let plugins = d.join("plugins");
    crate::sandbox::copy_shipped(&plugins, &["webhook"]);
    // The chart's layout: the file is reached through a `..data` symlink that is swapped.
    let config_dir = d.join("config");
    let write_version = |n: u32, value: &Value| {
        let version = config_dir.join(format!("..v{n}"));
        std::fs::create_dir_all(&version).expect("mkdir");
        std::fs::write(version.join("instances.json"), file(value)).expect("write");
        let tmp = config_dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..v{n}"), &tmp).expect("symlink");
        std::fs::rename(&tmp, config_dir.join("..data")).expect("swap");
    };
    write_version(
        1,
        &json!({"notifiers": [{"name": "hooks", "plugin": "webhook", "config": {"ulr": "https://a.example.test"}}]}),
    );
    std::os::unix::fs::symlink("..data/instances.json", config_dir.join("instances.json")).expect("link");
    let port = free_port();
    let server = |log: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_certctl-server"))
            .env_clear()
            .env("CERTCTL_DATA_DIR", d.join("data"))
            .env("CERTCTL_SERVER_PORT", port.to_string())
            .env("CERTCTL_PLUGIN_DIRS", &plugins)
            .env("CERTCTL_INSTANCES_FILE", config_dir.join("instances.json"))
            .env("CERTCTL_API_KEYS_NAMED", "ops:declared-test-admin-key:admin")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("certctl-server")
    };
    let log = d.join("first.log");
    let status = server(&log).wait().expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "a wrong declaration stops the server:\n{text}");
    assert!(
        text.contains("CERTCTL_INSTANCES_FILE") && text.contains("notifiers[0]") && text.contains("config.ulr"),
        "{text}"
    );

    write_version(
        2,
        &json!({"notifiers": [{"name": "hooks", "plugin": "webhook", "config": {"url": "https://a.example.test"}}]}),
    );
    let log = d.join("second.log");
    let mut running = crate::agents::KillOnDrop(server(&log));
    let ca = d.join("data/tls/ca.crt");
    let url = format!("https://127.0.0.1:{port}");
    let admin = "declared-test-admin-key".to_string();
    let mut up = false;
    for _ in 0..600 {
        if ca.exists() && client(&ca).get(format!("{url}/ready")).send().await.is_ok() {
            up = true;
            break;
        }
        if let Ok(Some(status)) = running.0.try_wait() {
            panic!(
                "the server exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "no server:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let notifier_url = || {
        let (ca, url, admin) = (ca.clone(), url.clone(), admin.clone());
        async move {
            let list: Value = client(&ca)
                .get(format!("{url}/api/v1/notifiers"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            list["items"]
                .as_array()
                .and_then(|l| l.iter().find(|i| i["name"] == "hooks"))
                .map(|i| i["config"]["url"].clone())
                .unwrap_or(Value::Null)
        }
    };
    assert_eq!(notifier_url().await, "https://a.example.test");

    write_version(
        3,
        &json!({"notifiers": [{"name": "hooks", "plugin": "webhook", "config": {"url": "https://b.example.test"}}]}),
    );
    let mut seen = Value::Null;
    for _ in 0..300 {
        seen = notifier_url().await;
        if seen == "https://b.example.test" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        "https://b.example.test",
        "the new version was applied without a restart:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
