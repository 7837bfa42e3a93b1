//! Shared fixtures: databases on both dialects, an app with one key per role.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use certctl::api::{self, AppState, AuthSettings};
use certctl::auth::{ApiKeyHash, Role};
use certctl::challenge::{ChallengeBroker, ChallengeSettings};
use certctl::config::{AuthType, EncryptionKey, NamedKey};
use certctl::keystore::Keystore;
use certctl::lifecycle::Lifecycle;
use certctl::metrics::Metrics;
use certctl::plugins::grants::Grants;
use certctl::plugins::registry::{Registry, Services};
use certctl::plugins::sandbox::Limits;
use certctl::plugins::{Pooling, Runtime, RuntimeSettings};
use certctl::store::Store;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{Connection, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The admin URL of the PostgreSQL server the test script started.
pub fn postgres_admin_url() -> String {
    std::env::var("CERTCTL_TEST_POSTGRES_URL")
        .expect("CERTCTL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL")
}

/// A fresh, empty database: a SQLite file in a temp dir, or a new PostgreSQL database.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("certctl.db").display()),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("certctl_test_{}", uuid::Uuid::now_v7().simple());
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .expect("connect to test PostgreSQL");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                conn.close().await.expect("close");
                match admin.rfind('/') {
                    Some(i) => format!("{}/{name}", &admin[..i]),
                    None => panic!("CERTCTL_TEST_POSTGRES_URL has no database part: {admin}"),
                }
            }
        };
        TestDb { url, dir }
    }

    /// Connected and migrated.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

/// The agent bootstrap token the test app accepts.
pub const AGENT_BOOTSTRAP_TOKEN: &str = "test-bootstrap-token-0123456789abcdef";

/// The plain API keys the test app accepts, by role.
pub const KEYS: &[(&str, &str, Role)] = &[
    ("admin-key", "test-admin-key-0123456789", Role::Admin),
    ("operator-key", "test-operator-key-0123456789", Role::Operator),
    ("viewer-key", "test-viewer-key-0123456789", Role::Viewer),
    ("agent-key", "test-agent-key-0123456789", Role::Agent),
    ("metrics-key", "test-metrics-key-0123456789", Role::Metrics),
];

pub fn key_of(role: Role) -> &'static str {
    KEYS.iter()
        .find(|(_, _, r)| *r == role)
        .map(|(_, k, _)| *k)
        .expect("role has a key")
}

pub struct TestApp {
    pub router: Router,
    pub store: Store,
    pub lifecycle: Arc<Lifecycle>,
    pub db: TestDb,
}

pub const MAX_BODY: usize = 64 * 1024;

/// One compiled-artifact cache for the apps of this test process, so each component is compiled
/// once per run rather than once per test (the state dir of scripts/test.sh, removed after).
pub fn artifact_cache() -> std::path::PathBuf {
    let base = std::env::var("CERTCTL_TEST_STATE").map_or_else(|_| std::env::temp_dir(), std::path::PathBuf::from);
    base.join(format!("artifacts-{}", std::process::id()))
}

/// A plugin registry over `dirs` (loaded once), with test-sized limits.
pub fn registry(dirs: Vec<std::path::PathBuf>, grants: Grants, metrics: Arc<Metrics>, limits: Limits) -> Arc<Registry> {
    let runtime = Runtime::new(RuntimeSettings {
        limits,
        pooling: Pooling::Auto,
        cache_dir: None,
        ca_bundle: None,
    })
    .expect("plugin runtime");
    let registry = Arc::new(Registry::new(runtime, dirs, grants, metrics));
    registry.reload();
    registry
}

impl TestApp {
    /// An app without plugins.
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with_plugins(backend, Vec::new(), Grants::default()).await
    }

    /// An app with the plugins of `dirs` loaded, and host services (keystore, kv) for their
    /// instances. The scheduler does not run: tests drive the lifecycle's scans and job runner.
    pub async fn with_plugins(backend: Backend, dirs: Vec<std::path::PathBuf>, grants: Grants) -> TestApp {
        TestApp::with_challenges(backend, dirs, grants, ChallengeSettings::default()).await
    }

    /// As `with_plugins`, with a challenge broker configured by `challenges`.
    pub async fn with_challenges(
        backend: Backend,
        dirs: Vec<std::path::PathBuf>,
        grants: Grants,
        challenges: ChallengeSettings,
    ) -> TestApp {
        TestApp::with_options(backend, dirs, grants, challenges, None).await
    }

    /// Everything configurable: plugins, grants, the challenge broker, and an extra CA bundle
    /// plugins trust for outbound HTTPS (a test ACME server's certificate).
    pub async fn with_options(
        backend: Backend,
        dirs: Vec<std::path::PathBuf>,
        grants: Grants,
        challenges: ChallengeSettings,
        plugin_ca_bundle: Option<std::path::PathBuf>,
    ) -> TestApp {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let keystore = Arc::new(Keystore::new(store.clone(), &EncryptionKey([7; 32])).expect("keystore"));
        let runtime = Runtime::new(RuntimeSettings {
            limits: Limits::default(),
            pooling: Pooling::Auto,
            cache_dir: Some(artifact_cache()),
            ca_bundle: plugin_ca_bundle,
        })
        .expect("plugin runtime");
        let broker = Arc::new(ChallengeBroker::new(store.clone(), challenges));
        let plugins = Arc::new(
            Registry::new(runtime, dirs, grants, metrics.clone()).with_services(Services {
                store: store.clone(),
                keystore: keystore.clone(),
                mailer: None,
                challenges: Some(broker.clone()),
            }),
        );
        broker.attach(&plugins);
        plugins.reload();
        let lifecycle = Arc::new(Lifecycle::new(
            store.clone(),
            plugins.clone(),
            keystore,
            metrics.clone(),
        ));
        let state = AppState {
            store: store.clone(),
            plugins,
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
            auth: Arc::new(AuthSettings {
                mode: AuthType::ApiKey,
                env_keys: KEYS
                    .iter()
                    .map(|(name, key, role)| NamedKey {
                        name: name.to_string(),
                        hash: ApiKeyHash::of(key),
                        role: *role,
                    })
                    .collect(),
                agent_bootstrap: Some(ApiKeyHash::of(AGENT_BOOTSTRAP_TOKEN)),
            }),
            max_body_bytes: MAX_BODY,
            web_dir: None,
        };
        TestApp {
            router: api::router(state),
            store,
            lifecycle,
            db,
        }
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("request")).await
    }

    /// A request without a key, answered as raw bytes (binary bodies such as CRLs).
    pub async fn raw(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        use tower::ServiceExt;
        let req = Request::builder().uri(path).body(Body::empty()).expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, bytes.to_vec())
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        use tower::ServiceExt;
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(key_of(Role::Admin)), body).await
    }

    /// Creates an issuer and returns its id.
    /// A local-ca issuer instance written straight to the store (the plugin need not be
    /// loaded: the API checks configurations against loaded plugins).
    pub async fn issuer(&self, name: &str) -> String {
        self.store
            .create_instance(
                certctl::model::InstanceKind::Issuer,
                name,
                "local-ca",
                &serde_json::json!({}),
                certctl::store::AuditEntry::new("tester", "fixture", "issuer", ""),
            )
            .await
            .expect("fixture issuer")
            .id
    }

    /// Declares a certificate and returns its id.
    pub async fn certificate(&self, name: &str, common_name: &str) -> String {
        let (status, body) = self
            .admin(
                "POST",
                "/api/v1/certificates",
                Some(serde_json::json!({"name": name, "common_name": common_name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }
}

/// Runs each listed async test function against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )+
        }
    };
}
