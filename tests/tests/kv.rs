//! Publishing to etcd and Redis (`[publish.etcd]`, `[publish.redis]`) with
//! real servers: the host's KV writer runs in-process on a publisher fed
//! with configurations, the stores are real etcd 3.5 and Redis 7 processes
//! (`tests/lab/stores.py`), and one real Traefik reads the same
//! configuration through `providers.http`, `providers.etcd` and
//! `providers.redis` and must see the same thing through each.
//!
//! One etcd and one Redis are shared by the cases (each case has its own
//! root key); the outage and keyspace cases start their own.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use traefik_openstack::config::{EtcdConfig, PublishConfig, RedisConfig};
use traefik_openstack::engine::Generated;
use traefik_openstack::metrics::Metrics;
use traefik_openstack::publish::kv::KvWriter;
use traefik_openstack::publish::kv::diff::{Changes, Names};
use traefik_openstack::publish::kv::layout::flatten;
use traefik_openstack::publish::kv::{etcd, redis};
use traefik_openstack::publish::{Publisher, Snapshot};
use traefik_openstack_e2e::stores::{Etcd, EtcdLimits, Redis};
use traefik_openstack_e2e::util::run_dir;

const INDEX: &str = "_tos";

struct Shared {
    etcd: Etcd,
    redis: Redis,
}

impl Shared {
    /// An etcd and a Redis of their own, under `target/e2e/<name>-*`.
    fn start(name: &str) -> Shared {
        let dir = run_dir(name);
        Shared {
            etcd: Etcd::start(&dir, EtcdLimits::LARGE).expect("starting etcd"),
            redis: Redis::start(&dir, "KEA").expect("starting redis"),
        }
    }

    fn stores(&self) -> [Store; 2] {
        [
            Store::Etcd(self.etcd.endpoint.clone()),
            Store::Redis(self.redis.address()),
        ]
    }
}

/// The stores the light cases share. The heavy ones (10k instances, the
/// fleet) start their own, so that a 2 s lease here never waits behind a
/// 190,000-operation transaction.
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| Shared::start("kv-stores"))
}

fn etcd_config(endpoint: &str, root: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![endpoint.to_owned()],
        root_key: root.to_owned(),
        index_key: INDEX.to_owned(),
        username: None,
        password_file: None,
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
        timeout: Duration::from_millis(900),
    }
}

fn redis_config(address: &str, root: &str) -> RedisConfig {
    RedisConfig {
        endpoints: vec![address.to_owned()],
        root_key: root.to_owned(),
        index_key: INDEX.to_owned(),
        db: 0,
        username: None,
        password_file: None,
        tls: false,
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
        timeout: Duration::from_millis(900),
    }
}

/// etcd grants leases of at least about 2 s whatever is asked.
const TTL: Duration = Duration::from_secs(2);

// `..default()`: the other `[publish]` keys are not this file's business.
#[allow(clippy::needless_update)]
fn publish(etcd: Option<EtcdConfig>, redis: Option<RedisConfig>) -> PublishConfig {
    PublishConfig {
        lease_ttl: TTL,
        etcd,
        redis,
        ..PublishConfig::default()
    }
}

/// A sidecar's publishing half: a publisher fed by the case, its writer.
struct Sidecar {
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    writer: KvWriter,
}

impl Sidecar {
    fn new(config: PublishConfig) -> Sidecar {
        let publisher = Arc::new(Publisher::new(Duration::from_secs(30)));
        let metrics = Arc::new(Metrics::new());
        let writer = KvWriter::new(&config, publisher.clone(), metrics.clone())
            .expect("writer")
            .expect("a store is configured");
        Sidecar {
            publisher,
            metrics,
            writer,
        }
    }

    fn set(&self, config: &Value) {
        let previous = self.publisher.current();
        self.publisher.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config(&config.to_string()),
            previous.as_deref(),
        ));
    }

    /// A counter or gauge of `/metrics` for `store`.
    fn metric(&self, name: &str, store: &str) -> u64 {
        let text = self.metrics.encode();
        let prefix = format!("traefik_openstack_{name}{{store=\"{store}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn readyz(&self) -> Value {
        self.publisher.readiness_json()
    }
}

/// What one store holds under `root`, and the resources indexed as ours.
async fn held(store: &Store, root: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let names = Names::new(root, INDEX);
    let (keys, index) = match store {
        Store::Etcd(endpoint) => etcd::Etcd::new(&etcd_config(endpoint, root))
            .unwrap()
            .read(&names)
            .await
            .unwrap(),
        Store::Redis(address) => redis::Redis::new(&redis_config(address, root))
            .unwrap()
            .read(&names)
            .await
            .unwrap(),
    };
    (keys.into_iter().collect(), index)
}

/// Writes keys that no sidecar wrote (etcd: a plain txn; Redis: redis-cli).
async fn put_foreign(store: &Store, key: &str, value: &str) {
    match store {
        Store::Etcd(endpoint) => {
            let mut c = etcd::Etcd::new(&etcd_config(endpoint, "unused")).unwrap();
            let changes = Changes {
                puts: vec![(key.to_owned(), value.to_owned())],
                ..Changes::default()
            };
            assert!(c.commit(&changes, None).await.unwrap());
        }
        Store::Redis(address) => redis_cli(address, &["SET", key, value]),
    }
}

/// Deletes a key as [`put_foreign`] writes one.
async fn delete_foreign(store: &Store, key: &str) {
    match store {
        Store::Etcd(endpoint) => {
            let mut c = etcd::Etcd::new(&etcd_config(endpoint, "unused")).unwrap();
            let changes = Changes {
                deletes: vec![key.to_owned()],
                ..Changes::default()
            };
            assert!(c.commit(&changes, None).await.unwrap());
        }
        Store::Redis(address) => redis_cli(address, &["DEL", key]),
    }
}

fn redis_cli(address: &str, args: &[&str]) {
    let port = address.rsplit(':').next().unwrap();
    let st = std::process::Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli (Debian's redis-tools, installed with redis-server)");
    assert!(st.success());
}

#[derive(Clone)]
enum Store {
    /// `http://127.0.0.1:port`
    Etcd(String),
    /// `127.0.0.1:port`
    Redis(String),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Etcd(_) => "etcd",
            Store::Redis(_) => "redis",
        }
    }

    fn config(&self, root: &str) -> PublishConfig {
        match self {
            Store::Etcd(e) => publish(Some(etcd_config(e, root)), None),
            Store::Redis(r) => publish(None, Some(redis_config(r, root))),
        }
    }
}

fn shared_stores() -> [Store; 2] {
    shared().stores()
}

/// `standby` takes the lease once the leader's has run out (the leader
/// hangs, or was SIGKILLed), and the store then holds `config`, what it
/// publishes. etcd revokes an expired lease on its own schedule (later on
/// a loaded machine), so the standby keeps trying.
async fn take_over_after_the_ttl(standby: &mut Sidecar, store: &Store, root: &str, config: &Value) {
    let s = store.name();
    tokio::time::sleep(TTL).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !standby.writer.leader() && std::time::Instant::now() < deadline {
        standby.writer.step().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(standby.writer.leader(), "{s}: {}", standby.readyz());
    assert_eq!(held(store, root).await.0, flatten(config, root).keys, "{s}");
}

fn routers(rules: &[(&str, &str)]) -> Value {
    let mut routers = serde_json::Map::new();
    for (name, rule) in rules {
        routers.insert(
            (*name).to_owned(),
            json!({"rule": rule, "service": "svc", "entryPoints": ["web", "websecure"]}),
        );
    }
    json!({"http": {
        "routers": routers,
        "services": {"svc": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}}
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_writes_only_changes_deletes_only_ours_and_shrinks_to_nothing() {
    for store in shared_stores() {
        let root = format!("diff-{}", store.name());
        let s = store.name();
        let mut side = Sidecar::new(store.config(&root));
        put_foreign(
            &store,
            &format!("{root}/http/routers/theirs/rule"),
            "Host(`t`)",
        )
        .await;

        // First publication: every key, and the index.
        let a = routers(&[
            ("a", "Host(`a.example.com`)"),
            ("b", "Host(`b.example.com`)"),
        ]);
        side.set(&a);
        side.writer.step().await;
        let (keys, index) = held(&store, &root).await;
        let mut expected = flatten(&a, &root).keys;
        expected.insert(
            format!("{root}/http/routers/theirs/rule"),
            "Host(`t`)".into(),
        );
        assert_eq!(keys, expected, "{s}");
        assert_eq!(index.len(), 3, "{s}: {index:?}");
        let first = side.metric("kv_keys_written_total", s);
        assert_eq!(first as usize, flatten(&a, &root).keys.len() + 3, "{s}");

        // One changed rule: one key written, nothing deleted.
        let b = routers(&[
            ("a", "Host(`a2.example.com`)"),
            ("b", "Host(`b.example.com`)"),
        ]);
        side.set(&b);
        side.writer.step().await;
        assert_eq!(side.metric("kv_keys_written_total", s), first + 1, "{s}");
        assert_eq!(side.metric("kv_keys_deleted_total", s), 0, "{s}");
        assert_eq!(
            held(&store, &root).await.0[&format!("{root}/http/routers/a/rule")],
            "Host(`a2.example.com`)"
        );

        // A sidecar that restarts knows nothing: it reads the store back and
        // writes nothing when nothing changed.
        let mut again = Sidecar::new(store.config(&root));
        again.set(&b);
        again.writer.step().await;
        assert!(
            !again.writer.leader(),
            "{s}: the first one still holds the lease"
        );
        side.writer.resign().await;
        again.writer.step().await;
        assert!(again.writer.leader(), "{s}: {}", again.readyz());
        assert_eq!(again.metric("kv_keys_written_total", s), 0, "{s}");

        // Down to nothing: no key of ours is left, the foreign one is.
        again.set(&json!({}));
        again.writer.step().await;
        let (keys, index) = held(&store, &root).await;
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            [(
                format!("{root}/http/routers/theirs/rule"),
                "Host(`t`)".to_owned()
            )],
            "{s}"
        );
        assert!(index.is_empty(), "{s}: {index:?}");
        again.writer.resign().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_resource_of_a_routers_name_keeps_ours_out_until_it_is_gone() {
    for store in shared_stores() {
        let root = format!("foreign-{}", store.name());
        let s = store.name();
        // The operator's own router, under a name one of ours will have in
        // another case: Traefik would read the two as one router.
        let theirs = format!("{root}/http/routers/Web/rule");
        put_foreign(&store, &theirs, "Host(`operator.example.com`)").await;
        let mut side = Sidecar::new(store.config(&root));
        let config = routers(&[
            ("web", "Host(`web.example.com`)"),
            ("api", "Host(`api.example.com`)"),
        ]);
        side.set(&config);
        side.writer.step().await;
        let (keys, index) = held(&store, &root).await;
        let mut expected = flatten(&config, &root).keys;
        expected.retain(|k, _| !k.starts_with(&format!("{root}/http/routers/web/")));
        expected.insert(theirs.clone(), "Host(`operator.example.com`)".into());
        assert_eq!(
            keys, expected,
            "{s}: theirs untouched, ours for web left out"
        );
        assert!(
            !index.iter().any(|i| i.ends_with("/http/routers/web")),
            "{s}: {index:?}"
        );
        // Leaving one resource out is no store error.
        let store_status = &side.readyz()["stores"][s];
        assert!(
            store_status["leader"] == true && store_status["error"].is_null(),
            "{s}: {store_status}"
        );

        // The operator rewrites theirs with another key: still theirs in
        // etcd, which is asked for the resource (Redis is asked for the
        // keys it had, see the README).
        let rewritten = format!("{root}/http/routers/Web/service");
        if let Store::Etcd(_) = store {
            delete_foreign(&store, &theirs).await;
            put_foreign(&store, &rewritten, "operator-svc").await;
            side.writer.step().await;
            let (keys, _) = held(&store, &root).await;
            assert!(
                !keys.contains_key(&format!("{root}/http/routers/web/rule")),
                "{s}: ours was written beside theirs"
            );
            delete_foreign(&store, &rewritten).await;
        }

        // The operator deletes theirs: the next round writes ours, though
        // the configuration did not change.
        delete_foreign(&store, &theirs).await;
        side.writer.step().await;
        let (keys, index) = held(&store, &root).await;
        assert_eq!(keys, flatten(&config, &root).keys, "{s}");
        assert_eq!(index.len(), 3, "{s}: {index:?}");
        side.writer.resign().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_a_standby_takes_over_after_the_ttl() {
    for store in shared_stores() {
        let root = format!("lease-{}", store.name());
        let s = store.name();
        let mut one = Sidecar::new(store.config(&root));
        let mut two = Sidecar::new(store.config(&root));
        let from_one = routers(&[("vm", "Host(`one.example.com`)")]);
        let from_two = routers(&[("vm", "Host(`two.example.com`)")]);
        one.set(&from_one);
        two.set(&from_two);
        one.writer.step().await;
        two.writer.step().await;
        assert!(one.writer.leader() && !two.writer.leader(), "{s}");
        assert_eq!(
            held(&store, &root).await.0,
            flatten(&from_one, &root).keys,
            "{s}"
        );
        assert_eq!(two.metric("kv_keys_written_total", s), 0, "{s}");
        let readyz = two.readyz();
        assert_eq!(readyz["stores"][s]["leader"], false, "{readyz}");
        assert!(
            one.metrics
                .encode()
                .contains(&format!("traefik_openstack_leader{{store=\"{s}\"}} 1"))
        );

        // The leader stops renewing: not before the lease has run out, but
        // then, the standby takes over and publishes.
        two.writer.step().await;
        assert!(!two.writer.leader(), "{s}: took over a live lease");
        take_over_after_the_ttl(&mut two, &store, &root, &from_two).await;

        // The old leader wakes up: it finds the lease gone and writes nothing.
        one.set(&routers(&[("vm", "Host(`stale.example.com`)")]));
        one.writer.step().await;
        assert!(!one.writer.leader(), "{s}");
        assert_eq!(
            held(&store, &root).await.0,
            flatten(&from_two, &root).keys,
            "{s}"
        );
        two.writer.resign().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_slept_through_another_term_writes_its_own_again() {
    for store in shared_stores() {
        let root = format!("term-{}", store.name());
        let s = store.name();
        let mut one = Sidecar::new(store.config(&root));
        let mut two = Sidecar::new(store.config(&root));
        let from_one = routers(&[("vm", "Host(`one.example.com`)")]);
        let from_two = routers(&[
            ("vm", "Host(`two.example.com`)"),
            ("extra", "Host(`x.example.com`)"),
        ]);
        one.set(&from_one);
        two.set(&from_two);
        one.writer.step().await;
        assert!(one.writer.leader(), "{s}");

        // one hangs past its lease; two takes over, writes, and leaves.
        take_over_after_the_ttl(&mut two, &store, &root, &from_two).await;
        two.writer.resign().await;

        // one wakes and takes the lease again in one round, never having
        // seen itself lose it: the store holds two's keys, not its own.
        one.writer.step().await;
        assert!(one.writer.leader(), "{s}: {}", one.readyz());
        assert_eq!(
            held(&store, &root).await.0,
            flatten(&from_one, &root).keys,
            "{s}"
        );
        one.writer.resign().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_lease_is_believed_no_longer_than_granted() {
    let s = shared();
    let cfg = etcd_config(&s.etcd.endpoint, "whole-seconds");
    let names = Names::new("whole-seconds", INDEX);
    let mut e = etcd::Etcd::new(&cfg).unwrap();
    // etcd grants whole seconds: asked for 1.9 s, the lease is 1 s, and
    // a leader that believed in 1.9 s would outlive it.
    assert!(
        e.lead(&names, "t", Duration::from_millis(1900))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!e.leading());
    e.resign().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_out_ex_leader_cannot_write() {
    let s = shared();
    let changes = |v: &str| Changes {
        puts: vec![("fence/http/routers/x/rule".to_owned(), v.to_owned())],
        ..Changes::default()
    };
    let names = Names::new("fence", INDEX);

    // etcd: the transaction compares the leader key with our token.
    let cfg = etcd_config(&s.etcd.endpoint, "fence");
    let mut old = etcd::Etcd::new(&cfg).unwrap();
    let mut new = etcd::Etcd::new(&cfg).unwrap();
    assert!(old.lead(&names, "old-token", TTL).await.unwrap());
    assert!(
        old.commit(&changes("old"), Some((&names, "old-token")))
            .await
            .unwrap()
    );
    assert!(!new.lead(&names, "new-token", TTL).await.unwrap());
    tokio::time::sleep(TTL).await;
    // etcd revokes the expired lease on its own schedule.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !new.lead(&names, "new-token", TTL).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The old one still believes nothing changed and writes: refused.
    assert!(
        !old.commit(&changes("late"), Some((&names, "old-token")))
            .await
            .unwrap()
    );
    assert!(
        new.commit(&changes("new"), Some((&names, "new-token")))
            .await
            .unwrap()
    );
    new.resign().await;

    // Redis: WATCH + token check + MULTI/EXEC, tokens from INCR.
    let cfg = redis_config(&s.redis.address(), "fence");
    let mut old = redis::Redis::new(&cfg).unwrap();
    let mut new = redis::Redis::new(&cfg).unwrap();
    assert!(old.lead(&names, "old", TTL).await.unwrap());
    let old_token = old.token().unwrap().to_owned();
    assert!(!new.lead(&names, "new", TTL).await.unwrap());
    tokio::time::sleep(TTL + Duration::from_millis(300)).await;
    assert!(new.lead(&names, "new", TTL).await.unwrap());
    let new_token = new.token().unwrap().to_owned();
    let number = |t: &str| t.split('/').next().unwrap().parse::<u64>().unwrap();
    assert!(
        number(&new_token) > number(&old_token),
        "{old_token} then {new_token}"
    );
    assert!(
        !old.commit(&changes("late"), &names, &old_token)
            .await
            .unwrap()
    );
    assert!(
        new.commit(&changes("new"), &names, &new_token)
            .await
            .unwrap()
    );
    new.resign(&names).await;

    for store in shared_stores() {
        assert_eq!(
            held(&store, "fence")
                .await
                .0
                .get("fence/http/routers/x/rule")
                .map(String::as_str),
            Some("new"),
            "{}",
            store.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_without_keyspace_notifications_is_reported() {
    let dir = run_dir("kv-keyspace");
    let quiet = Redis::start(&dir, "").unwrap();
    let mut side = Sidecar::new(Store::Redis(quiet.address()).config("traefik"));
    side.set(&routers(&[("a", "Host(`a`)")]));
    side.writer.step().await;
    let readyz = side.readyz();
    let verdict = readyz["stores"]["redis"]["keyspace_events"]
        .as_str()
        .unwrap_or_default();
    assert!(verdict.contains("notify-keyspace-events"), "{readyz}");
    assert!(verdict.contains("KEA"), "{readyz}");
    // The configuration is still written: Traefik reads it at start.
    assert!(side.writer.leader(), "{readyz}");
    side.writer.resign().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_is_down_is_reported_and_caught_up_with() {
    let dir = run_dir("kv-outage");
    let mut etcd = Etcd::start(&dir, EtcdLimits::DEFAULT).unwrap();
    let mut redis = Redis::start(&dir, "KEA").unwrap();
    let config = publish(
        Some(etcd_config(&etcd.endpoint, "traefik")),
        Some(redis_config(&redis.address(), "traefik")),
    );
    let mut side = Sidecar::new(config);
    let before = routers(&[("a", "Host(`a`)")]);
    side.set(&before);
    side.writer.step().await;
    assert!(side.writer.leader(), "{}", side.readyz());

    // Redis goes away: etcd goes on, Redis's error shows.
    redis.stop();
    let after = routers(&[("a", "Host(`a`)"), ("b", "Host(`b`)")]);
    side.set(&after);
    side.writer.step().await;
    let readyz = side.readyz();
    assert!(
        readyz["stores"]["redis"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("redis")),
        "{readyz}"
    );
    assert!(readyz["stores"]["etcd"]["error"].is_null(), "{readyz}");
    let etcd_store = Store::Etcd(etcd.endpoint.clone());
    assert_eq!(
        held(&etcd_store, "traefik").await.0,
        flatten(&after, "traefik").keys
    );
    assert!(
        side.metrics
            .encode()
            .contains("store=\"redis\",outcome=\"unreachable\""),
        "{}",
        side.metrics.encode()
    );

    // etcd goes away too: the lease cannot be renewed; nothing blocks.
    etcd.stop();
    side.writer.step().await;
    let readyz = side.readyz();
    assert!(
        readyz["stores"]["etcd"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("etcd")),
        "{readyz}"
    );
    // The HTTP side serves the latest all along.
    assert!(side.publisher.current().unwrap().body.len() > before.to_string().len());

    // Both come back (Redis empty, etcd with its data): the next rounds
    // catch up with the latest configuration.
    etcd.start_again().unwrap();
    redis.start_again().unwrap();
    for _ in 0..10 {
        side.writer.step().await;
        let r = side.readyz();
        if side.writer.leader()
            && r["stores"]["etcd"]["error"].is_null()
            && r["stores"]["redis"]["error"].is_null()
            && r["stores"]["redis"]["published_etag"] == r["stores"]["etcd"]["published_etag"]
        {
            break;
        }
        tokio::time::sleep(TTL / 2).await;
    }
    let readyz = side.readyz();
    assert!(side.writer.leader(), "{readyz}");
    assert_eq!(
        held(&etcd_store, "traefik").await.0,
        flatten(&after, "traefik").keys,
        "{readyz}"
    );
    let redis_store = Store::Redis(redis.address());
    assert_eq!(
        held(&redis_store, "traefik").await.0,
        flatten(&after, "traefik").keys,
        "{readyz}"
    );
    side.writer.resign().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_default_limits_refuse_a_large_first_publication_clearly() {
    let dir = run_dir("kv-limits");
    let etcd = Etcd::start(&dir, EtcdLimits::DEFAULT).unwrap();
    let mut side = Sidecar::new(Store::Etcd(etcd.endpoint.clone()).config("traefik"));
    let names: Vec<(String, String)> = (0..200)
        .map(|i| (format!("vm-{i}"), format!("Host(`vm-{i}.example.com`)")))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, r)| (n.as_str(), r.as_str()))
        .collect();
    side.set(&routers(&pairs));
    side.writer.step().await;
    let readyz = side.readyz();
    let error = readyz["stores"]["etcd"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("--max-txn-ops"), "{readyz}");
    // Nothing half-written.
    assert!(
        held(&Store::Etcd(etcd.endpoint.clone()), "traefik")
            .await
            .0
            .is_empty()
    );
    side.writer.resign().await;
}

/// A configuration that exercises the layout: TLS on and with options,
/// middlewares with lists, maps and chains, weighted services, server
/// lists, TCP with TLS passthrough, UDP.
fn everything() -> Value {
    json!({
        "http": {
            "routers": {
                "plain": {"rule": "Host(`a.example.com`)", "entryPoints": ["web"], "service": "lb",
                          "middlewares": ["hdr", "chained"], "priority": 5},
                "secure": {"rule": "Host(`b.example.com`)", "entryPoints": ["websecure"],
                           "service": "wrr", "tls": {}},
                "domains": {"rule": "Host(`c.example.com`)", "service": "lb",
                            "tls": {"domains": [{"main": "c.example.com", "sans": ["d.example.com", "e.example.com"]}]}}
            },
            "services": {
                "lb": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:10001"}, {"url": "http://127.0.0.1:10002"}],
                                        "passHostHeader": false}},
                "lb2": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:10003"}]}},
                "wrr": {"weighted": {"services": [{"name": "lb", "weight": 3}, {"name": "lb2", "weight": 1}]}}
            },
            "middlewares": {
                "hdr": {"headers": {"customRequestHeaders": {"X-One": "1", "X-Two": "two words"},
                                    "accessControlAllowMethods": ["GET", "PUT"]}},
                "strip": {"stripPrefix": {"prefixes": ["/a", "/b"]}},
                "chained": {"chain": {"middlewares": ["strip"]}}
            }
        },
        "tcp": {
            "routers": {"pass": {"rule": "HostSNI(`tcp.example.com`)", "entryPoints": ["websecure"],
                                 "service": "tcpsvc", "tls": {"passthrough": true}}},
            "services": {"tcpsvc": {"loadBalancer": {"servers": [{"address": "127.0.0.1:10004"}]}}}
        },
        "udp": {
            "routers": {"dns": {"entryPoints": ["udp"], "service": "udpsvc"}},
            "services": {"udpsvc": {"loadBalancer": {"servers": [{"address": "127.0.0.1:10005"}]}}}
        }
    })
}

/// `/api/rawdata` split by provider, names and references without their
/// `@provider` suffix.
fn by_provider(raw: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    fn strip(v: &Value) -> Value {
        match v {
            Value::String(s) => {
                let base = ["@http", "@etcd", "@redis"]
                    .iter()
                    .find_map(|p| s.strip_suffix(p))
                    .unwrap_or(s);
                Value::String(base.to_owned())
            }
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| k.as_str() != "provider")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for section in [
        "routers",
        "services",
        "middlewares",
        "tcpRouters",
        "tcpServices",
        "udpRouters",
        "udpServices",
    ] {
        let Some(entries) = raw[section].as_object() else {
            continue;
        };
        for (name, entry) in entries {
            let Some((base, provider)) = name.rsplit_once('@') else {
                continue;
            };
            if !["http", "etcd", "redis"].contains(&provider) {
                continue;
            }
            out.entry(provider.to_owned())
                .or_default()
                .insert(format!("{section}/{base}"), strip(entry));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_reads_the_same_configuration_from_http_etcd_and_redis() {
    use traefik_openstack_e2e::traefik::{Ports, Traefik};
    let stores = shared();
    let root = "equal";
    let config = everything();

    // The sidecar's two halves in-process: the HTTP endpoint (the host's own
    // server) and the KV writer, both on one publisher.
    let mut side = Sidecar::new(publish(
        Some(etcd_config(&stores.etcd.endpoint, root)),
        Some(redis_config(&stores.redis.address(), root)),
    ));
    side.set(&config);
    side.writer.step().await;
    assert!(side.writer.leader(), "{}", side.readyz());
    let readyz = side.readyz();
    assert!(
        readyz["stores"]["etcd"]["error"].is_null() && readyz["stores"]["redis"]["error"].is_null(),
        "{readyz}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/traefik", listener.local_addr().unwrap());
    let state = Arc::new(traefik_openstack::server::AppState {
        publisher: side.publisher.clone(),
        metrics: side.metrics.clone(),
        config_path: "/traefik".into(),
        token: None,
    });
    let stop = stop_signal();
    tokio::spawn(traefik_openstack::server::serve(
        listener,
        state,
        traefik_openstack::server::Limits::default(),
        None,
        stop.clone().notified_owned(),
        Duration::from_secs(1),
    ));

    let traefik_bin =
        tokio::task::spawn_blocking(|| traefik_openstack_e2e::lab::prepare().map(|p| p.traefik))
            .await
            .unwrap()
            .expect("labctl.py prepare (Traefik)");
    let dir = run_dir("kv-equal");
    let udp = traefik_openstack_e2e::util::free_port();
    let extra = json!({
        "entryPoints": {"udp": {"address": format!("127.0.0.1:{udp}/udp")}},
        "providers": {
            "etcd": {"endpoints": [stores.etcd.address()], "rootKey": root},
            "redis": {"endpoints": [stores.redis.address()], "rootKey": root},
        }
    });
    let traefik = tokio::task::spawn_blocking(move || {
        Traefik::start_with(&traefik_bin, &dir, Ports::free(), &endpoint, None, extra)
    })
    .await
    .unwrap()
    .expect("starting Traefik");

    let seen = traefik_openstack_e2e::eventually(
        "all three providers loaded",
        Duration::from_secs(30),
        || async {
            let raw = traefik.rawdata().await.map_err(|e| e.to_string())?;
            let seen = by_provider(&raw);
            let counts: Vec<usize> = ["http", "etcd", "redis"]
                .iter()
                .map(|p| seen.get(*p).map_or(0, BTreeMap::len))
                .collect();
            if counts.iter().all(|&n| n == counts[0] && n >= 12) {
                Ok(seen)
            } else {
                Err(format!(
                    "entries per provider (http, etcd, redis): {counts:?}"
                ))
            }
        },
    )
    .await;
    let http = &seen["http"];
    for kv in ["etcd", "redis"] {
        for (name, entry) in http {
            assert_eq!(
                seen[kv].get(name),
                Some(entry),
                "{kv} differs from http on {name}; Traefik log:\n{}",
                traefik.log_tail(20)
            );
        }
    }
    // Nothing in error: every entry is enabled through every provider.
    for (name, entry) in http {
        assert_eq!(entry["status"], "enabled", "{name}: {entry}");
    }
    stop.notify_waiters();
    side.writer.resign().await;
}

/// A shutdown signal for the in-process server.
fn stop_signal() -> Arc<tokio::sync::Notify> {
    Arc::new(tokio::sync::Notify::new())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writer_task_follows_publications_deletes_a_withdrawn_one_and_gives_the_lease_up_at_shutdown()
 {
    let stores = shared();
    let root = "task";
    let config = || {
        publish(
            Some(etcd_config(&stores.etcd.endpoint, root)),
            Some(redis_config(&stores.redis.address(), root)),
        )
    };
    let Sidecar {
        publisher, writer, ..
    } = Sidecar::new(config());
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(writer.run(stop.clone().notified_owned()));
    let both = [
        Store::Etcd(stores.etcd.endpoint.clone()),
        Store::Redis(stores.redis.address()),
    ];
    for rule in ["Host(`one.example.com`)", "Host(`two.example.com`)"] {
        let config = routers(&[("vm", rule)]);
        let previous = publisher.current();
        publisher.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config(&config.to_string()),
            previous.as_deref(),
        ));
        let want = flatten(&config, root).keys;
        for store in &both {
            traefik_openstack_e2e::eventually(
                &format!("{} holds {rule}", store.name()),
                Duration::from_secs(10),
                || async {
                    let (keys, _) = held(store, root).await;
                    if keys == want {
                        Ok(())
                    } else {
                        Err(format!("{keys:?}"))
                    }
                },
            )
            .await;
        }
    }
    // Older than `max_stale`: withdrawn from the endpoint, deleted from the
    // stores (the index with it).
    publisher.withdraw("made 25h ago, max_stale is 24h".into());
    for store in &both {
        traefik_openstack_e2e::eventually(
            &format!("{} emptied of a withdrawn configuration", store.name()),
            Duration::from_secs(10),
            || async {
                match held(store, root).await {
                    (keys, index) if keys.is_empty() && index.is_empty() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    stop.notify_one();
    task.await.unwrap();
    // The lease was given up: another sidecar leads at once, no TTL to wait.
    let mut next = Sidecar::new(config());
    next.writer.step().await;
    assert!(
        !next.writer.leader(),
        "no configuration yet: it does not seek the lease"
    );
    next.set(&routers(&[("vm", "Host(`next.example.com`)")]));
    next.writer.step().await;
    assert!(next.writer.leader(), "{}", next.readyz());
    next.writer.resign().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawn_sidecar_deletes_its_routes_then_lets_a_healthy_one_lead() {
    for store in shared_stores() {
        let root = format!("withdrawn-{}", store.name());
        let s = store.name();
        let mut stale = Sidecar::new(store.config(&root));
        stale.set(&routers(&[("vm", "Host(`old.example.com`)")]));
        stale.writer.step().await;
        assert!(stale.writer.leader(), "{s}: {}", stale.readyz());

        // Past `max_stale`: its routes are deleted, and the lease given up.
        stale
            .publisher
            .withdraw("made 25h ago, max_stale is 24h".into());
        stale.writer.step().await;
        let (keys, index) = held(&store, &root).await;
        assert!(
            keys.is_empty() && index.is_empty(),
            "{s}: {keys:?} {index:?}"
        );
        assert!(
            !stale.writer.leader(),
            "{s}: a withdrawn sidecar keeps the lease"
        );
        // With nothing left to delete, its rounds leave the lease alone.
        let before = stale.writer.terms();
        for _ in 0..3 {
            stale.writer.step().await;
        }
        assert_eq!(stale.writer.terms(), before, "{s}: it took the lease again");

        // A healthy sidecar started since leads at its first round, and the
        // withdrawn one's rounds do not take the lease from it.
        let mut healthy = Sidecar::new(store.config(&root));
        let config = routers(&[("vm", "Host(`new.example.com`)")]);
        healthy.set(&config);
        healthy.writer.step().await;
        assert!(healthy.writer.leader(), "{s}: {}", healthy.readyz());
        stale.writer.step().await;
        healthy.writer.step().await;
        assert!(healthy.writer.leader() && !stale.writer.leader(), "{s}");
        assert_eq!(
            held(&store, &root).await.0,
            flatten(&config, &root).keys,
            "{s}"
        );

        // The healthy one dies (no resign): once its lease runs out, the
        // withdrawn one deletes the routes it left, and steps back again.
        drop(healthy);
        tokio::time::sleep(TTL).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !held(&store, &root).await.1.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{s}: the dead leader's routes stayed"
            );
            stale.writer.step().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(held(&store, &root).await.0.is_empty(), "{s}");
        assert!(!stale.writer.leader(), "{s}");
    }
}

/// The synthetic cloud's configuration (the built-in module on `n` made-up
/// instances), with instance `changed` given another floating address.
async fn synthetic_config(n: usize, changed: Option<usize>) -> Value {
    use traefik_openstack::config::EngineConfig;
    use traefik_openstack::engine::Engine;
    use traefik_openstack::testing::synthetic;
    tokio::task::spawn_blocking(move || {
        let engine = Engine::new(&EngineConfig {
            timeout: Duration::from_secs(300),
            cache_dir: Some("".into()),
            ..EngineConfig::default()
        })
        .unwrap();
        let module = engine.load_default().unwrap();
        let mut list = synthetic::wit_instances(n);
        if let Some(i) = changed {
            list[i].addresses[1].ip = "198.51.100.7".into();
        }
        let generated = engine
            .generate(&module, synthetic::SETTINGS, &list)
            .unwrap();
        serde_json::from_slice(&generated.config.to_bytes()).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10k_instance_cloud_goes_in_one_transaction_and_one_change_is_one_key() {
    let stores = &Shared::start("kv-10k-stores");
    let root = "big";
    let mut side = Sidecar::new(publish(
        Some(etcd_config(&stores.etcd.endpoint, root)),
        Some(redis_config(&stores.redis.address(), root)),
    ));
    // The defaults: a publication that outlasts the lease's TTL on a loaded
    // debug build keeps the lease alive beside it.
    let mut config = publish(
        Some(etcd_config(&stores.etcd.endpoint, root)),
        Some(redis_config(&stores.redis.address(), root)),
    );
    config.lease_ttl = Duration::from_secs(10);
    // The default request timeout too: a debug-build etcd on a loaded
    // machine takes seconds over this transaction.
    config.etcd.as_mut().unwrap().timeout = Duration::from_secs(5);
    config.redis.as_mut().unwrap().timeout = Duration::from_secs(5);
    side.writer = KvWriter::new(&config, side.publisher.clone(), side.metrics.clone())
        .unwrap()
        .unwrap();
    let first = synthetic_config(10_000, None).await;
    let keys = flatten(&first, root).keys;
    side.set(&first);
    let started = std::time::Instant::now();
    side.writer.step().await;
    // A loaded machine may let the first round miss the etcd lease (the
    // round then writes nothing); the next round catches up, still in one
    // transaction per store.
    for _ in 0..3 {
        if ["etcd", "redis"]
            .iter()
            .all(|store| side.metric("kv_keys", store) as usize == keys.len())
        {
            break;
        }
        eprintln!("another round: {}", side.readyz());
        side.writer.step().await;
    }
    let took = started.elapsed();
    let readyz = side.readyz();
    assert!(side.writer.leader(), "{readyz}");
    for store in ["etcd", "redis"] {
        assert!(readyz["stores"][store]["error"].is_null(), "{readyz}");
        assert_eq!(
            side.metric("kv_keys", store) as usize,
            keys.len(),
            "{store}"
        );
    }
    let written = side.metric("kv_keys_written_total", "etcd");
    println!(
        "10k instances: first publication {written} keys per store ({} of configuration), both stores in {took:?}",
        keys.len()
    );
    for store in stores.stores() {
        assert_eq!(
            held(&store, root).await.0.len(),
            keys.len(),
            "{}",
            store.name()
        );
    }

    // One VM changes its address: one key, in each store.
    side.set(&synthetic_config(10_000, Some(5_000)).await);
    side.writer.step().await;
    for store in ["etcd", "redis"] {
        assert_eq!(
            side.metric("kv_keys_written_total", store),
            written + 1,
            "{store}"
        );
        assert_eq!(side.metric("kv_keys_deleted_total", store), 0, "{store}");
    }
    side.writer.resign().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_publishes_a_vm_that_traefik_routes_through_etcd_alone_and_redis_alone() {
    use traefik_openstack_e2e::scenario::Scenario;
    let stores = shared();
    let root = "sidecar";
    let lab = traefik_openstack_e2e::shared_lab();
    let mut s = Scenario::new(lab, "kv-sidecar").await.unwrap();
    let vm = s.vm("kv-sidecar-vm", 1).unwrap();
    s.seed(&[vm]).unwrap();
    let mut opts = s.options(s.plain_routes());
    let mut publish = toml::Table::new();
    publish.insert("lease_ttl".into(), "2s".into());
    publish.insert("etcd".into(), stores.etcd.publish_table(root).into());
    publish.insert("redis".into(), stores.redis.publish_table(root).into());
    opts.publish = publish;
    s.start(&opts).unwrap();

    // One Traefik per store, each with a dead HTTP endpoint: what routes,
    // routes through the store.
    let fqdn = Scenario::fqdn("kv-sidecar-vm");
    for (store, provider) in [
        ("etcd", stores.etcd.traefik_provider(root)),
        ("redis", stores.redis.traefik_provider(root)),
    ] {
        let (bin, dir) = (
            lab.prepared.traefik.clone(),
            s.dir.join(format!("traefik-{store}")),
        );
        let traefik = store_replica(bin, dir, json!({store: provider})).await;
        traefik_openstack_e2e::eventually(
            &format!("{fqdn} routed through {store}"),
            traefik_openstack_e2e::freshness(),
            || async {
                let r = traefik
                    .get_http(&fqdn, "/")
                    .await
                    .map_err(|e| e.to_string())?;
                if r.backend.as_deref() == Some("kv-sidecar-vm") {
                    Ok(())
                } else {
                    Err(format!("{r:?}"))
                }
            },
        )
        .await;
    }
    let (_, readyz) = s.host().readyz().await.unwrap();
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    for store in ["etcd", "redis"] {
        assert_eq!(readyz["stores"][store]["leader"], true, "{readyz}");
    }
    let metrics = s.host().metrics().await.unwrap();
    assert!(
        metrics.contains("traefik_openstack_leader{store=\"etcd\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_is_reported_without_the_password() {
    let dir = run_dir("kv-auth");
    let secret = "s3cret-never-shown";
    let redis = Redis::start_with(&dir, "KEA", &["--requirepass", secret]).unwrap();
    let wrong = dir.join("wrong-password");
    std::fs::write(&wrong, "wrong-s3cret-never-shown\n").unwrap();
    let right = dir.join("password");
    std::fs::write(&right, format!("{secret}\n")).unwrap();
    let with_password = |file: &std::path::Path| {
        let mut c = redis_config(&redis.address(), "traefik");
        c.password_file = Some(file.to_owned());
        publish(None, Some(c))
    };
    let mut side = Sidecar::new(with_password(&wrong));
    side.set(&routers(&[("a", "Host(`a`)")]));
    side.writer.step().await;
    let readyz = side.readyz();
    let metrics = side.metrics.encode();
    assert!(!side.writer.leader(), "{readyz}");
    let error = readyz["stores"]["redis"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("redis") && error.contains(&redis.address()),
        "{readyz}"
    );
    assert!(
        metrics.contains("store=\"redis\",outcome=\"auth\""),
        "{metrics}"
    );
    for shown in [readyz.to_string(), metrics] {
        assert!(!shown.contains("never-shown"), "{shown}");
    }
    // The right password: it publishes.
    let mut side = Sidecar::new(with_password(&right));
    side.set(&routers(&[("a", "Host(`a`)")]));
    side.writer.step().await;
    assert!(side.writer.leader(), "{}", side.readyz());
    assert_eq!(side.metric("kv_keys", "redis"), 5);
    side.writer.resign().await;
}

/// A fleet: two sidecars share etcd and Redis, three Traefik replicas read
/// them (two through etcd, one through Redis), none polls a sidecar. Every
/// replica routes every VM. The leader is SIGKILLed (no lease given up):
/// the standby takes over within the TTL while no replica loses a route,
/// and a VM added afterwards reaches all three. With both sidecars down, a
/// restarted replica gets every route from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_survives_the_leader_s_death_and_a_traefik_restart_without_sidecars() {
    use std::time::Instant;
    use traefik_openstack_e2e::host::Host;
    use traefik_openstack_e2e::lab::ServerSpec;
    use traefik_openstack_e2e::scenario::Scenario;

    const TTL: Duration = Duration::from_secs(2);
    // Stores of its own: the lease's 2 s TTL must not wait behind another
    // case's 190,000-operation transaction on a shared etcd.
    let stores = Shared::start("kv-fleet-stores");
    let root = "fleet";
    let lab = traefik_openstack_e2e::shared_lab();
    let mut s = Scenario::new(lab, "kv-fleet").await.unwrap();
    let vms: Vec<ServerSpec> = (1..=2)
        .map(|n| s.vm(&format!("fleet-{n}"), n).unwrap())
        .collect();
    s.seed(&vms).unwrap();
    let late = s.vm("fleet-3", 3).unwrap();
    let mut opts = s.options(s.plain_routes());
    opts.publish
        .insert("lease_ttl".into(), format!("{}s", TTL.as_secs()).into());
    opts.publish
        .insert("etcd".into(), stores.etcd.publish_table(root).into());
    opts.publish
        .insert("redis".into(), stores.redis.publish_table(root).into());

    let leader_of = |host: &Host| {
        let url = host.url("/readyz");
        async move {
            let body = reqwest::get(&url)
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let readyz: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            Ok::<_, String>(readyz["stores"]["etcd"]["leader"] == true)
        }
    };
    let start_sidecar = |name: &str| {
        let (dir, opts) = (s.dir.join(name), opts.clone());
        tokio::task::spawn_blocking(move || Host::start(lab, &dir, &opts))
    };
    let a = start_sidecar("sidecar-a").await.unwrap().unwrap();
    traefik_openstack_e2e::eventually("sidecar a leads", Duration::from_secs(30), || async {
        match leader_of(&a).await {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}\n{}", a.log_tail(10))),
        }
    })
    .await;
    let b = start_sidecar("sidecar-b").await.unwrap().unwrap();

    let start_replica = |n: usize, store: &'static str| {
        let provider = match store {
            "etcd" => stores.etcd.traefik_provider(root),
            _ => stores.redis.traefik_provider(root),
        };
        let (bin, dir) = (
            lab.prepared.traefik.clone(),
            s.dir.join(format!("traefik-{n}-{store}")),
        );
        store_replica(bin, dir, json!({store: provider}))
    };
    let kinds = ["etcd", "etcd", "redis"];
    let mut replicas = Vec::new();
    for (n, store) in kinds.iter().enumerate() {
        replicas.push(start_replica(n, store).await);
    }
    const FIRST: &[&str] = &["fleet-1", "fleet-2"];
    const ALL: &[&str] = &["fleet-1", "fleet-2", "fleet-3"];
    traefik_openstack_e2e::eventually(
        "every replica routes every VM",
        traefik_openstack_e2e::freshness(),
        || routes_all(&replicas, &kinds, FIRST),
    )
    .await;
    assert_eq!(leader_of(&b).await, Ok(false), "b is the standby");

    // The leader dies without a word; the replicas must not notice.
    a.sigkill();
    let killed = Instant::now();
    let mut took_over = None;
    while killed.elapsed() < TTL * 4 {
        if let Err(e) = routes_all(&replicas, &kinds, FIRST).await {
            panic!(
                "a route was lost {:?} after the leader died: {e}",
                killed.elapsed()
            );
        }
        if took_over.is_none() && leader_of(&b).await == Ok(true) {
            took_over = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = took_over.unwrap_or_else(|| panic!("b never took over:\n{}", b.log_tail(20)));
    // The TTL, plus one renewal round of the standby (TTL / 3) for it to
    // notice, plus slack for a loaded machine.
    assert!(
        took_over <= TTL + TTL / 3 + Duration::from_secs(2),
        "the standby took over after {took_over:?} (TTL {TTL:?})"
    );

    // The new leader writes: a VM created now reaches every replica.
    s.seed(std::slice::from_ref(&late)).unwrap();
    if let Err(e) = traefik_openstack_e2e::try_eventually(
        "every replica routes the VM created after the takeover",
        // The new leader reads the store back before its first diff.
        traefik_openstack_e2e::freshness() * 2,
        || routes_all(&replicas, &kinds, ALL),
    )
    .await
    {
        panic!("{e}\n{}", fleet_state(&replicas, &b).await);
    }

    // Both sidecars down; a replica restarted now still gets every route.
    b.sigkill();
    let restarted = replicas.remove(0);
    drop(restarted);
    replicas.insert(0, start_replica(3, "etcd").await);
    traefik_openstack_e2e::eventually(
        "a replica restarted without any sidecar routes every VM",
        traefik_openstack_e2e::freshness(),
        || routes_all(&replicas[..1], &kinds, ALL),
    )
    .await;
}

/// Whether every replica routes every VM in `names` to its backend.
async fn routes_all(
    replicas: &[traefik_openstack_e2e::traefik::Traefik],
    kinds: &[&str],
    names: &[&str],
) -> Result<(), String> {
    use traefik_openstack_e2e::scenario::Scenario;
    for (i, t) in replicas.iter().enumerate() {
        for vm in names {
            let r = t
                .get_http(&Scenario::fqdn(vm), "/")
                .await
                .map_err(|e| format!("replica {i} ({}): {e:#}", kinds[i]))?;
            if r.backend.as_deref() != Some(*vm) {
                return Err(format!("replica {i} ({}): {vm}: {r:?}", kinds[i]));
            }
        }
    }
    Ok(())
}

/// What a failed fleet check needs to be understood: each replica's view of
/// the routers and services and its log, and the sidecar's.
async fn fleet_state(
    replicas: &[traefik_openstack_e2e::traefik::Traefik],
    sidecar: &traefik_openstack_e2e::host::Host,
) -> String {
    let mut out = String::new();
    for (i, t) in replicas.iter().enumerate() {
        let raw = match t.rawdata().await {
            Ok(raw) => format!("routers {} services {}", raw["routers"], raw["services"]),
            Err(e) => format!("rawdata: {e:#}"),
        };
        out += &format!("--- replica {i}: {raw}\n{}\n", t.log_tail(15));
    }
    out + &format!("--- sidecar b:\n{}", sidecar.log_tail(20))
}

/// The stores as a careful operator runs them: etcd and Redis speak mutual
/// TLS only and know their users (etcd's RBAC, Redis ACLs), each user
/// limited to its keys. The sidecar publishes with its client certificate
/// and password, a Traefik reads both stores with its own; a wrong password
/// or a missing client certificate is reported, without the password, and
/// takes no lease.
#[tokio::test(flavor = "multi_thread")]
async fn stores_behind_mutual_tls_and_users_are_published_to_and_read_by_traefik() {
    use traefik_openstack_e2e::certs::Ca;
    use traefik_openstack_e2e::stores::{ClientTls, EtcdSetup, ServerTls};

    let dir = run_dir("kv-secure");
    let certs = dir.join("certs");
    // One CA, as etcd is usually run: its gateway presents the server's own
    // certificate as a client certificate to etcd's gRPC side.
    let store_ca = Ca::new("stores");
    let client_ca = &store_ca;
    let (cert, key) = store_ca.issue(&certs, "store", &["127.0.0.1", "localhost"]);
    let server = ServerTls {
        cert,
        key,
        client_ca: client_ca.write(&certs, "client-ca"),
    };
    let ca = store_ca.write(&certs, "store-ca");
    let client = |stem: &str| {
        let (cert, key) = client_ca.issue(&certs, stem, &[&format!("{stem}-client")]);
        ClientTls {
            ca: ca.clone(),
            cert,
            key,
        }
    };
    let (admin, sidecar, reader) = (client("admin"), client("sidecar"), client("traefik"));
    let root = "secure";

    let etcd = Etcd::start_with(
        &dir,
        EtcdSetup {
            limits: EtcdLimits::DEFAULT,
            tls: Some(server.clone()),
            quota_backend_bytes: None,
        },
    )
    .unwrap();
    for args in [
        "user add root:root-pw --interactive=false",
        "user grant-role root root",
        "role add publisher",
        "role grant-permission publisher readwrite secure --prefix=true",
        "role grant-permission publisher readwrite _tos/secure --prefix=true",
        "user add sidecar:sidecar-pw-never-shown --interactive=false",
        "user grant-role sidecar publisher",
        "role add reader",
        "role grant-permission reader read secure --prefix=true",
        "user add traefik:traefik-pw --interactive=false",
        "user grant-role traefik reader",
        "auth enable",
    ] {
        let args: Vec<&str> = args.split(' ').collect();
        etcd.etcdctl(Some(&admin), &args).unwrap();
    }
    let redis = Redis::start_tls(
        &dir,
        "KEA",
        Some(server),
        &[
            "--user",
            "default",
            "off",
            "--user",
            "sidecar",
            "on",
            ">sidecar-pw-never-shown",
            "~secure/*",
            "~_tos/secure/*",
            "+@all",
            "--user",
            "traefik",
            "on",
            ">traefik-pw",
            "%R~secure/*",
            "&*",
            "+@all",
        ],
    )
    .unwrap();

    let password = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path
    };
    let (right, wrong) = (
        password("right", "sidecar-pw-never-shown"),
        password("wrong", "wrong-pw-never-shown"),
    );
    let config = |identity: Option<&ClientTls>, password_file: &std::path::Path, only: &str| {
        let mut e = etcd_config(&etcd.endpoint, root);
        let mut r = redis_config(&redis.address(), root);
        e.username = Some("sidecar".into());
        r.username = Some("sidecar".into());
        e.password_file = Some(password_file.to_owned());
        r.password_file = Some(password_file.to_owned());
        e.tls_ca_file = Some(ca.clone());
        r.tls_ca_file = Some(ca.clone());
        r.tls = true;
        if let Some(id) = identity {
            (e.tls_cert_file, e.tls_key_file) = (Some(id.cert.clone()), Some(id.key.clone()));
            (r.tls_cert_file, r.tls_key_file) = (Some(id.cert.clone()), Some(id.key.clone()));
        }
        // A debug build's TLS handshakes on a loaded machine.
        e.timeout = Duration::from_secs(5);
        r.timeout = Duration::from_secs(5);
        // Each store alone too: with both, the lease lives in etcd and a
        // refused etcd leaves Redis untried.
        match only {
            "etcd" => publish(Some(e), None),
            "redis" => publish(None, Some(r)),
            _ => publish(Some(e), Some(r)),
        }
    };
    let vm = routers(&[("vm", "Host(`vm.example.com`)")]);

    // Refused: a wrong password; no client certificate.
    for store in ["etcd", "redis"] {
        for (what, cfg, reason) in [
            (
                "a wrong password",
                config(Some(&sidecar), &wrong, store),
                "auth",
            ),
            ("no client certificate", config(None, &right, store), ""),
        ] {
            let mut side = Sidecar::new(cfg);
            side.set(&vm);
            side.writer.step().await;
            let (readyz, metrics) = (side.readyz(), side.metrics.encode());
            assert!(!side.writer.leader(), "{what}: {readyz}");
            assert!(
                readyz["stores"][store]["error"].is_string(),
                "{what}: {store}: {readyz}"
            );
            assert!(
                metrics.contains(&format!("store=\"{store}\",outcome=\"{reason}")),
                "{what}: {store}: {readyz}"
            );
            for shown in [readyz.to_string(), metrics] {
                assert!(!shown.contains("never-shown"), "{what}: {shown}");
            }
        }
    }
    // The right certificate and password: both stores published.
    let mut side = Sidecar::new(config(Some(&sidecar), &right, "both"));
    side.set(&vm);
    side.writer.step().await;
    let readyz = side.readyz();
    assert!(side.writer.leader(), "{readyz}");
    for store in ["etcd", "redis"] {
        assert!(readyz["stores"][store]["error"].is_null(), "{readyz}");
        assert_eq!(side.metric("kv_keys", store), 5, "{store}");
    }

    // A Traefik with its own certificate and read-only users routes from both.
    let traefik_bin =
        tokio::task::spawn_blocking(|| traefik_openstack_e2e::lab::prepare().map(|p| p.traefik))
            .await
            .unwrap()
            .expect("labctl.py prepare (Traefik)");
    let tls = json!({
        "ca": reader.ca.display().to_string(),
        "cert": reader.cert.display().to_string(),
        "key": reader.key.display().to_string(),
    });
    let extra = json!({
        "etcd": {"endpoints": [etcd.address()], "rootKey": root,
                 "username": "traefik", "password": "traefik-pw", "tls": tls},
        "redis": {"endpoints": [redis.address()], "rootKey": root,
                  "username": "traefik", "password": "traefik-pw", "tls": tls},
    });
    let traefik = store_replica(traefik_bin, dir.join("traefik"), extra).await;
    traefik_openstack_e2e::eventually(
        "Traefik reads the router from both stores",
        Duration::from_secs(30),
        || async {
            let raw = traefik.rawdata().await.map_err(|e| format!("{e:#}"))?;
            let routers = &raw["routers"];
            if ["vm@etcd", "vm@redis"]
                .iter()
                .all(|r| routers[*r]["rule"] == "Host(`vm.example.com`)")
            {
                Ok(())
            } else {
                Err(format!("routers {routers}\n{}", traefik.log_tail(10)))
            }
        },
    )
    .await;
    side.writer.resign().await;
}

/// A full etcd (its quota reached: the NOSPACE alarm refuses every write) is
/// reported as full, what it held stays whole, and once the operator has
/// made room (a larger quota, the alarm disarmed) the next round catches up.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_etcd_is_reported_keeps_what_it_held_and_is_caught_up_with() {
    use traefik_openstack_e2e::stores::EtcdSetup;
    let dir = run_dir("kv-full");
    let mut etcd = Etcd::start_with(
        &dir,
        EtcdSetup {
            limits: EtcdLimits::LARGE,
            tls: None,
            quota_backend_bytes: Some(1 << 20),
        },
    )
    .unwrap();
    let root = "full";
    let mut config = publish(Some(etcd_config(&etcd.endpoint, root)), None);
    config.etcd.as_mut().unwrap().timeout = Duration::from_secs(5);
    let mut side = Sidecar::new(config);
    let small = routers(&[("vm", "Host(`vm.example.com`)")]);
    side.set(&small);
    side.writer.step().await;
    assert!(side.writer.leader(), "{}", side.readyz());
    let store = Store::Etcd(etcd.endpoint.clone());
    let before = held(&store, root).await;
    assert_eq!(before.0.len(), 5);

    // 3,000 routers with long rules: past the 1 MiB quota.
    let long = "x".repeat(300);
    let names: Vec<(String, String)> = (0..3000)
        .map(|i| {
            (
                format!("vm-{i}"),
                format!("Host(`vm-{i}.{long}.example.com`)"),
            )
        })
        .collect();
    let rules: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, r)| (n.as_str(), r.as_str()))
        .collect();
    let big = routers(&rules);
    side.set(&big);
    side.writer.step().await;
    let (readyz, metrics) = (side.readyz(), side.metrics.encode());
    let error = readyz["stores"]["etcd"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("space") && error.contains(&etcd.endpoint),
        "the error names what failed and where: {readyz}"
    );
    assert!(
        metrics.contains("store=\"etcd\",outcome=\"full\""),
        "{metrics}"
    );
    assert_eq!(held(&store, root).await, before, "what it held stays whole");

    // The operator makes room: a larger quota, the alarm disarmed.
    etcd.stop();
    etcd.setup_mut().quota_backend_bytes = Some(256 << 20);
    etcd.start_again().unwrap();
    etcd.etcdctl(None, &["alarm", "disarm"]).unwrap();
    // The writer retries each round; etcd may still be settling.
    let want = flatten(&big, root).keys.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        side.writer.step().await;
        let got = held(&store, root).await.0.len();
        if got == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up: {got} of {want} keys held; {}",
            side.readyz()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    side.writer.resign().await;
}

/// A Traefik that reads only the stores in `providers` (Traefik's
/// `providers` section): its HTTP provider points at a dead endpoint, so
/// what routes, routes through a store.
async fn store_replica(
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    providers: Value,
) -> traefik_openstack_e2e::traefik::Traefik {
    use traefik_openstack_e2e::traefik::{Ports, Traefik};
    let extra = json!({ "providers": providers });
    tokio::task::spawn_blocking(move || {
        Traefik::start_with(
            &bin,
            &dir,
            Ports::free(),
            "http://127.0.0.1:1/traefik",
            None,
            extra,
        )
    })
    .await
    .expect("the Traefik start task")
    .expect("starting a Traefik that reads the stores")
}
