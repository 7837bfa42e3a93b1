//! The store suite: the same tests on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use certctl::auth::{ApiKeyHash, Role};
use certctl::model::{
    CertStatus, ErrorClass, InstanceKind, JobKind, JobState, KeyGeneration, KeyType, RenewalPolicy, Timestamp,
};
use certctl::store::jobs::{JobFailure, JobFilter, NewJob};
use certctl::store::{
    AuditEntry, AuditFilter, CertSort, CertificateFilter, CertificatePatch, NewCertificate, NewVersion, PageRequest,
    Store, StoreError,
};

use crate::common::{Backend, TestDb};

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new("tester", action, "certificate", "")
}

fn cert(name: &str) -> NewCertificate {
    NewCertificate {
        name: name.to_string(),
        common_name: format!("{name}.example.test"),
        sans: vec![format!("{name}.example.test")],
        key_type: KeyType::EcdsaP256,
        key_generation: KeyGeneration::Agent,
        issuer_id: None,
        renewal: RenewalPolicy::default(),
        labels: BTreeMap::from([("team".to_string(), "edge".to_string())]),
        profile: None,
        agent_id: None,
        deploy: None,
    }
}

fn page(limit: u32) -> PageRequest {
    PageRequest { cursor: None, limit }
}

async fn issue(store: &Store, id: &str, days_left: i64) {
    let now = Timestamp::now();
    store
        .add_version(
            id,
            &NewVersion {
                serial: "01".into(),
                fingerprint_sha256: "00".repeat(32),
                not_before: now.plus_days(-1),
                not_after: now.plus_days(days_left),
                chain_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
                issuer_id: None,
                key_id: None,
            },
            &Default::default(),
            audit("certificate.issue"),
        )
        .await
        .expect("add version");
}

async fn certificates_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = store
        .create_certificate(&cert("web"), audit("certificate.create"))
        .await
        .expect("create");
    assert_eq!(created.status, CertStatus::Pending);
    let got = store.get_certificate(&created.id).await.expect("get").expect("exists");
    assert_eq!(got.name, "web");
    assert_eq!(got.labels.get("team").map(String::as_str), Some("edge"));
    assert_eq!(got.renewal, RenewalPolicy::default());

    let patch = CertificatePatch {
        sans: Some(vec!["web.example.test".into(), "www.example.test".into()]),
        key_type: Some(KeyType::Rsa3072),
        ..CertificatePatch::default()
    };
    let updated = store
        .update_certificate(&created.id, &patch, audit("certificate.update"))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.sans.len(), 2);
    assert_eq!(updated.key_type, KeyType::Rsa3072);
    assert_eq!(updated.common_name, "web.example.test", "untouched fields stay");

    assert!(
        store
            .delete_certificate(&created.id, audit("certificate.delete"))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_certificate(&created.id, audit("certificate.delete"))
            .await
            .expect("delete again")
    );
    assert!(store.get_certificate(&created.id).await.expect("get").is_none());
}

async fn duplicate_names_conflict(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .create_certificate(&cert("dup"), audit("certificate.create"))
        .await
        .expect("first");
    let err = store
        .create_certificate(&cert("dup"), audit("certificate.create"))
        .await
        .expect_err("second");
    assert!(matches!(err, StoreError::Conflict { field: "name" }), "{err:?}");
    let key = ApiKeyHash::of("k1");
    store
        .create_api_key("ops", &key, Role::Operator, audit("api_key.create"))
        .await
        .expect("key");
    let err = store
        .create_api_key("ops", &ApiKeyHash::of("k2"), Role::Viewer, audit("api_key.create"))
        .await
        .expect_err("dup key name");
    assert!(matches!(err, StoreError::Conflict { field: "name" }), "{err:?}");
}

async fn failed_write_leaves_no_audit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .create_certificate(&cert("a"), audit("certificate.create"))
        .await
        .expect("first");
    let _ = store
        .create_certificate(&cert("a"), audit("certificate.create"))
        .await
        .expect_err("dup");
    let events = store
        .list_audit(&AuditFilter::default(), &page(100))
        .await
        .expect("audit");
    assert_eq!(events.items.len(), 1, "the refused insert must not be audited");
}

async fn pagination_visits_every_row_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    for i in 0..11 {
        store
            .create_certificate(&cert(&format!("c{i:02}")), audit("certificate.create"))
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut req = page(4);
    let mut pages = 0;
    loop {
        let p = store
            .list_certificates(&CertificateFilter::default(), &req)
            .await
            .expect("list");
        pages += 1;
        assert!(p.items.len() <= 4);
        seen.extend(p.items.into_iter().map(|c| c.name));
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 11, "{seen:?}");
}

async fn status_filters_follow_expiry(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut ids = BTreeMap::new();
    for (name, days) in [
        ("fresh", Some(90)),
        ("soon", Some(10)),
        ("gone", Some(-2)),
        ("new", None),
    ] {
        let c = store
            .create_certificate(&cert(name), audit("certificate.create"))
            .await
            .expect("create");
        if let Some(d) = days {
            issue(&store, &c.id, d).await;
        }
        ids.insert(name, c.id);
    }
    let names = |status| {
        let store = store.clone();
        async move {
            let filter = CertificateFilter {
                status: Some(status),
                ..CertificateFilter::default()
            };
            let p = store.list_certificates(&filter, &page(50)).await.expect("list");
            p.items.into_iter().map(|c| c.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(names(CertStatus::Active).await, vec!["fresh"]);
    assert_eq!(names(CertStatus::Expiring).await, vec!["soon"]);
    assert_eq!(names(CertStatus::Expired).await, vec!["gone"]);
    assert_eq!(names(CertStatus::Pending).await, vec!["new"]);
    let soon = store.get_certificate(&ids["soon"]).await.expect("get").expect("exists");
    assert_eq!(soon.status, CertStatus::Expiring);

    let counts = store.fleet_counts(Timestamp::now()).await.expect("counts");
    assert_eq!(
        (
            counts.certificates,
            counts.expiring_soon,
            counts.expired,
            counts.revoked
        ),
        (4, 1, 1, 0)
    );
}

/// Every sort order pages through every certificate once, in order (ties by id), with
/// not-yet-issued ones last either way; the expiry range keeps only issued ones inside it.
async fn sorted_pages_and_expiry_ranges(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // Two with the same expiry (a tie), two never issued.
    for (name, days) in [
        ("delta", Some(40)),
        ("alpha", Some(10)),
        ("echo", None),
        ("charlie", Some(40)),
        ("bravo", Some(70)),
        ("foxtrot", None),
        ("golf", Some(-3)),
    ] {
        let c = store
            .create_certificate(&cert(name), audit("certificate.create"))
            .await
            .expect("create");
        if let Some(d) = days {
            issue(&store, &c.id, d).await;
        }
    }
    let walk = |sort: CertSort, after: Option<i64>, before: Option<i64>| {
        let store = store.clone();
        async move {
            let filter = CertificateFilter {
                sort,
                expires_after: after.map(|d| Timestamp::now().plus_days(d)),
                expires_before: before.map(|d| Timestamp::now().plus_days(d)),
                ..CertificateFilter::default()
            };
            let mut req = page(2);
            let mut names = Vec::new();
            loop {
                let p = store.list_certificates(&filter, &req).await.expect("list");
                names.extend(p.items.into_iter().map(|c| c.name));
                match p.next_cursor {
                    Some(c) => req.cursor = Some(c),
                    None => break,
                }
            }
            names
        }
    };
    let all = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"];
    assert_eq!(walk(CertSort::Name { descending: false }, None, None).await, all);
    let mut reversed = all.to_vec();
    reversed.reverse();
    assert_eq!(walk(CertSort::Name { descending: true }, None, None).await, reversed);
    let by_expiry = walk(CertSort::NotAfter { descending: false }, None, None).await;
    assert_eq!(by_expiry[0..2], ["golf", "alpha"]);
    let tie: std::collections::BTreeSet<_> = by_expiry[2..4].iter().map(String::as_str).collect();
    assert_eq!(tie, ["charlie", "delta"].into_iter().collect());
    assert_eq!(by_expiry[4], "bravo");
    let unissued: std::collections::BTreeSet<_> = by_expiry[5..].iter().map(String::as_str).collect();
    assert_eq!(
        unissued,
        ["echo", "foxtrot"].into_iter().collect(),
        "never issued: last"
    );
    let latest_first = walk(CertSort::NotAfter { descending: true }, None, None).await;
    assert_eq!(latest_first[0], "bravo");
    assert_eq!(latest_first[3], "alpha");
    assert_eq!(latest_first[4], "golf");
    let unissued: std::collections::BTreeSet<_> = latest_first[5..].iter().map(String::as_str).collect();
    assert_eq!(
        unissued,
        ["echo", "foxtrot"].into_iter().collect(),
        "never issued: last here too"
    );
    assert_eq!(
        walk(CertSort::CreatedAt { descending: false }, None, None).await.len(),
        7
    );
    // Expiring between 5 and 45 days from now, soonest first.
    let window = walk(CertSort::NotAfter { descending: false }, Some(5), Some(45)).await;
    assert_eq!(window.len(), 3, "{window:?}");
    assert_eq!(window[0], "alpha");
    // A cursor from another order is refused, not misread.
    let bad = store
        .list_certificates(
            &CertificateFilter {
                sort: CertSort::NotAfter { descending: false },
                ..CertificateFilter::default()
            },
            &PageRequest {
                cursor: Some("alpha|x".into()),
                limit: 2,
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::BadCursor(_))), "{bad:?}");
}

async fn search_is_case_insensitive_and_literal(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    for name in ["Shop-EU", "shop_us", "blog"] {
        store
            .create_certificate(&cert(name), audit("certificate.create"))
            .await
            .expect("create");
    }
    let find = |q: &str| {
        let filter = CertificateFilter {
            search: Some(q.to_string()),
            ..CertificateFilter::default()
        };
        let store = store.clone();
        async move {
            let mut names: Vec<String> = store
                .list_certificates(&filter, &page(50))
                .await
                .expect("list")
                .items
                .into_iter()
                .map(|c| c.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(find("SHOP").await, vec!["Shop-EU", "shop_us"]);
    assert_eq!(find("p_u").await, vec!["shop_us"], "'_' is literal, not a wildcard");
    assert_eq!(find("%").await, Vec::<String>::new(), "'%' is literal");
}

async fn issuers_in_use_cannot_be_deleted(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let config = serde_json::json!({"validity_days": 90});
    let issuer = store
        .create_instance(InstanceKind::Issuer, "ca", "local-ca", &config, audit("issuer.create"))
        .await
        .expect("issuer");
    assert_eq!(issuer.config, config);
    let mut c = cert("web");
    c.issuer_id = Some(issuer.id.clone());
    let c = store
        .create_certificate(&c, audit("certificate.create"))
        .await
        .expect("cert");
    let err = store
        .delete_instance(InstanceKind::Issuer, &issuer.id, audit("issuer.delete"))
        .await
        .expect_err("in use");
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    store
        .delete_certificate(&c.id, audit("certificate.delete"))
        .await
        .expect("delete cert");
    assert!(
        store
            .delete_instance(InstanceKind::Issuer, &issuer.id, audit("issuer.delete"))
            .await
            .expect("delete")
    );
    let other_kind = store
        .get_instance(InstanceKind::Notifier, &issuer.id)
        .await
        .expect("get");
    assert!(other_kind.is_none());
}

async fn api_keys_are_found_by_hash_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let hash = ApiKeyHash::of("cck_secret");
    let info = store
        .create_api_key("ci", &hash, Role::Metrics, audit("api_key.create"))
        .await
        .expect("create");
    assert_eq!(store.count_api_keys().await.expect("count"), 1);
    let found = store
        .find_api_key(&ApiKeyHash::of("cck_secret"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!((found.name.as_str(), found.role), ("ci", Role::Metrics));
    assert!(
        store
            .find_api_key(&ApiKeyHash::of("cck_other"))
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .delete_api_key(&info.id, audit("api_key.delete"))
            .await
            .expect("delete")
    );
    assert!(store.find_api_key(&hash).await.expect("find").is_none());
}

async fn audit_is_newest_first_and_filterable(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let a = store
        .create_certificate(&cert("a"), audit("certificate.create"))
        .await
        .expect("a");
    store
        .create_certificate(&cert("b"), audit("certificate.create"))
        .await
        .expect("b");
    store
        .delete_certificate(
            &a.id,
            AuditEntry::new("other", "certificate.delete", "certificate", &a.id),
        )
        .await
        .expect("delete");
    let all = store
        .list_audit(&AuditFilter::default(), &page(2))
        .await
        .expect("audit");
    assert_eq!(all.items[0].action, "certificate.delete");
    assert_eq!(all.items.len(), 2);
    let rest = store
        .list_audit(
            &AuditFilter::default(),
            &PageRequest {
                cursor: all.next_cursor.clone(),
                limit: 2,
            },
        )
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    let by_target = AuditFilter {
        target_id: Some(a.id.clone()),
        ..AuditFilter::default()
    };
    let for_a = store.list_audit(&by_target, &page(10)).await.expect("filtered");
    assert_eq!(for_a.items.len(), 2, "create and delete of a");
    let by_actor = AuditFilter {
        actor: Some("other".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        store.list_audit(&by_actor, &page(10)).await.expect("actor").items.len(),
        1
    );
}

async fn migrations_are_idempotent_and_reported(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.expect("connect");
    let before = store.schema_status().await.expect("status");
    assert_eq!(before.applied, 0);
    assert!(!before.is_current());
    assert_eq!(store.migrate().await.expect("migrate"), vec![1, 2, 3, 4, 5, 6]);
    assert!(store.migrate().await.expect("again").is_empty());
    assert!(store.schema_status().await.expect("status").is_current());
}

fn failure(class: ErrorClass, message: &str, now: Timestamp) -> JobFailure<'_> {
    JobFailure {
        class,
        message,
        retry: true,
        wait_at_least: None,
        now,
    }
}

fn job(kind: JobKind) -> NewJob {
    NewJob::now(kind, None, serde_json::json!({"step": 1}), 3)
}

async fn jobs_are_leased_once_completed_by_their_holder_and_retried(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = Timestamp::now();
    let a = store
        .enqueue_job(&job(JobKind::Issuance))
        .await
        .expect("enqueue")
        .expect("new");
    let later = store
        .enqueue_job(&NewJob {
            run_after: now.plus_days(1),
            ..job(JobKind::Renewal)
        })
        .await
        .expect("enqueue")
        .expect("new");
    let leased = store.lease_jobs("replica-1", 10, 60, now).await.expect("lease");
    assert_eq!(
        leased.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec![a.id.as_str()],
        "not-yet-due jobs wait"
    );
    assert_eq!(leased[0].state, JobState::Running);
    assert_eq!(leased[0].attempts, 1);
    assert!(
        store
            .lease_jobs("replica-2", 10, 60, now)
            .await
            .expect("lease")
            .is_empty(),
        "a leased job is not leased twice"
    );
    assert!(
        !store.complete_job(&a.id, "replica-2").await.expect("complete"),
        "only the holder completes"
    );

    // A failure with attempts left goes back to pending, after a backoff.
    let state = store
        .fail_job(
            &a.id,
            "replica-1",
            &failure(ErrorClass::Network, "connection refused", now),
        )
        .await
        .expect("fail");
    assert_eq!(state, Some(JobState::Pending));
    let failed_once = store.get_job(&a.id).await.expect("get").expect("exists");
    assert_eq!(failed_once.error_class, Some(ErrorClass::Network));
    assert!(failed_once.run_after.0 >= now.0 + 20, "backoff applied");
    // Lease it again when due; the lease expires (holder died) and another replica takes over.
    let due = Timestamp(failed_once.run_after.0 + 1);
    assert_eq!(store.lease_jobs("replica-1", 10, 5, due).await.expect("lease").len(), 1);
    let taken = store
        .lease_jobs("replica-2", 10, 60, Timestamp(due.0 + 10))
        .await
        .expect("lease after expiry");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempts, 3);
    assert!(
        !store.complete_job(&a.id, "replica-1").await.expect("stale holder"),
        "an expired lease cannot complete"
    );
    assert_eq!(
        store
            .fail_job(
                &a.id,
                "replica-2",
                &failure(ErrorClass::Timeout, "slow", Timestamp::now())
            )
            .await
            .expect("fail"),
        Some(JobState::Failed),
        "no attempts left"
    );

    let filter = JobFilter {
        state: Some(JobState::Pending),
        ..JobFilter::default()
    };
    let pending = store.list_jobs(&filter, &page(10)).await.expect("list");
    assert_eq!(
        pending.items.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec![later.id.as_str()]
    );
    assert_eq!(store.fleet_counts(now).await.expect("counts").jobs_pending, 1);
}

/// host-kv: at most MAX_KEYS keys per instance (updating one is always fine), and concurrent
/// writers of one instance all succeed (on SQLite too: no lock-upgrade failures).
async fn kv_limits_hold_and_concurrent_writers_succeed(backend: Backend) {
    use certctl::model::InstanceKind;
    use certctl::store::kv::MAX_KEYS;
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let instance = store
        .create_instance(
            InstanceKind::Issuer,
            "kv",
            "local-ca",
            &serde_json::json!({}),
            audit("fixture"),
        )
        .await
        .expect("instance")
        .id;
    let writers: Vec<_> = (0..MAX_KEYS)
        .map(|i| {
            let (store, instance) = (store.clone(), instance.clone());
            tokio::spawn(async move { store.kv_set(&instance, &format!("k{i}"), b"v").await })
        })
        .collect();
    for w in writers {
        assert_eq!(w.await.expect("task").expect("store"), Ok(()));
    }
    assert_eq!(
        store.kv_set(&instance, "one-too-many", b"v").await.expect("store"),
        Err(format!("this instance already has {MAX_KEYS} keys; delete some first"))
    );
    assert_eq!(
        store.kv_get(&instance, "one-too-many").await.expect("store"),
        None,
        "rolled back"
    );
    assert_eq!(
        store.kv_set(&instance, "k0", b"new").await.expect("store"),
        Ok(()),
        "updates are fine"
    );
    assert_eq!(
        store.kv_get(&instance, "k0").await.expect("store"),
        Some(b"new".to_vec())
    );
}

crate::on_both_backends!(
    kv_limits_hold_and_concurrent_writers_succeed,
    jobs_are_leased_once_completed_by_their_holder_and_retried,
    certificates_round_trip,
    duplicate_names_conflict,
    failed_write_leaves_no_audit,
    pagination_visits_every_row_once,
    status_filters_follow_expiry,
    sorted_pages_and_expiry_ranges,
    search_is_case_insensitive_and_literal,
    issuers_in_use_cannot_be_deleted,
    api_keys_are_found_by_hash_only,
    audit_is_newest_first_and_filterable,
    migrations_are_idempotent_and_reported,
);

#[tokio::test]
async fn concurrent_postgres_migrators_are_serialised() {
    let db = TestDb::new(Backend::Postgres).await;
    // Each migrator on its own thread and runtime, like separate replicas.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().expect("runtime");
                rt.block_on(async {
                    let store = Store::connect(&url, 2).await.expect("connect");
                    store.migrate().await
                })
            })
        })
        .collect();
    let mut applied_by = 0;
    for t in threads {
        let applied = t.join().expect("join").expect("every migrator succeeds");
        if !applied.is_empty() {
            applied_by += 1;
        }
    }
    assert_eq!(applied_by, 1, "exactly one migrator applies the schema");
}

/// Two replicas (two processes' worth of pools, each on its own thread) drain 500 jobs from
/// one PostgreSQL: every job runs exactly once.
#[tokio::test]
async fn two_replicas_run_each_of_500_jobs_exactly_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    for _ in 0..500 {
        store.enqueue_job(&job(JobKind::Issuance)).await.expect("enqueue");
    }
    let replicas: Vec<_> = ["replica-a", "replica-b"]
        .into_iter()
        .map(|owner| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().expect("runtime");
                rt.block_on(async {
                    let store = Store::connect(&url, 4).await.expect("connect");
                    let mut ran = Vec::new();
                    loop {
                        let batch = store.lease_jobs(owner, 7, 60, Timestamp::now()).await.expect("lease");
                        if batch.is_empty() {
                            break;
                        }
                        for j in batch {
                            assert!(store.complete_job(&j.id, owner).await.expect("complete"));
                            ran.push(j.id);
                        }
                    }
                    ran
                })
            })
        })
        .collect();
    let mut all: Vec<String> = Vec::new();
    let mut per_replica = Vec::new();
    for r in replicas {
        let ran = r.join().expect("join");
        per_replica.push(ran.len());
        all.extend(ran);
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (500, 500),
        "every job exactly once; per replica: {per_replica:?}"
    );
    let done = JobFilter {
        state: Some(JobState::Completed),
        ..JobFilter::default()
    };
    let completed = store.list_jobs(&done, &page(500)).await.expect("list");
    assert_eq!(completed.items.len(), 500);
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let url = db.url.clone();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("pool");
    sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (99, 'future', 'x', 0)")
        .execute(&pool)
        .await
        .expect("insert");
    let err = store.migrate().await.expect_err("refused").to_string();
    assert!(err.contains("version 99") && err.contains("newer"), "{err}");
}
