//! The loop that keeps the published configuration current: refresh the
//! inventory, run the route module, publish; and swap modules when the file
//! changes. Every failure leaves the last good configuration in place.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};

use crate::config::Config;
use crate::engine::{Engine, GenerateError, Generated, Incremental, Module};
use crate::events::{self, Event};
use crate::inventory::{Instances, Inventory};
use crate::metrics::Metrics;
use crate::publish::{Publisher, Snapshot};

/// How often the module file is checked for changes.
const MODULE_POLL: Duration = Duration::from_secs(1);

/// The sync loop and everything it drives; [`SyncLoop::run`] runs it.
pub struct SyncLoop {
    /// Runs the modules.
    pub engine: Arc<Engine>,
    /// The module in use.
    pub module: Arc<Module>,
    /// Watched for changes when set.
    pub module_path: Option<PathBuf>,
    /// The `[routes]` settings handed to the module, as JSON.
    pub settings: Arc<str>,
    /// The config file, re-read with the module: a new policy usually
    /// comes with new `[routes]` settings, and both go live together.
    pub config_file: Option<PathBuf>,
    /// The cloud's instances.
    pub inventory: Inventory,
    /// Where configurations go.
    pub publisher: Arc<Publisher>,
    /// Where events are counted.
    pub metrics: Arc<Metrics>,
    /// How often the inventory is refreshed.
    pub refresh_interval: Duration,
    /// Signalled on SIGHUP: re-read the module file now.
    pub reload: Arc<Notify>,
    /// What a phased module's last run left, so that the next one re-runs
    /// only what changed (start with `Default::default()`).
    pub incremental: Arc<Mutex<Incremental>>,
}

/// The module file as last seen, to notice replacement cheaply.
#[derive(PartialEq)]
struct FileStamp(Option<(SystemTime, u64)>);

impl FileStamp {
    fn of(path: &std::path::Path) -> Self {
        Self(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len())),
        )
    }
}

/// Whether the module owes a run on the current inputs (instances, module,
/// settings).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owed {
    /// The configuration served was made from the current inputs.
    Nothing,
    /// The inputs changed, or nothing was made from them yet.
    Run,
    /// The module failed on the current inputs `failures` times in a row.
    /// A module runs sandboxed and deterministically, so the same inputs
    /// fail the same way: they run again only when an input changes
    /// (`retry_at` is `None`), except after a time-out, which a loaded
    /// machine can cause: then again at `retry_at`, backing off.
    Failed {
        failures: u32,
        retry_at: Option<Instant>,
    },
}

/// The longest wait before a timed-out run is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Owed {
    /// Why no run now, if none: "until the inventory, module or settings
    /// change", or "for 40s".
    fn hold(self, now: Instant) -> Option<String> {
        match self {
            Owed::Failed { retry_at: None, .. } => {
                Some("until the instances, the module or its settings change".into())
            }
            Owed::Failed {
                retry_at: Some(at), ..
            } if at > now => Some(format!(
                "for {}s (backing off)",
                (at - now).as_secs().max(1)
            )),
            _ => None,
        }
    }

    /// What is owed after a failed run on these inputs.
    fn failed(self, e: &GenerateError, now: Instant, interval: Duration) -> Owed {
        let failures = match self {
            Owed::Failed { failures, .. } => failures.saturating_add(1),
            _ => 1,
        };
        let retry_at = matches!(e, GenerateError::Timeout(_)).then(|| {
            let doubled = interval.saturating_mul(1 << (failures - 1).min(16));
            now + doubled.min(MAX_BACKOFF)
        });
        Owed::Failed { failures, retry_at }
    }
}

impl SyncLoop {
    /// Refreshes, generates and publishes every `refresh_interval`, and swaps modules when the file changes, until `shutdown`.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        self.emit(events::ModuleHealthy);
        self.publisher
            .update_status(|s| s.module = describe(&self.module));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut refresh = tokio::time::interval(self.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut module_poll = tokio::time::interval(MODULE_POLL);
        module_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamp = self.module_path.as_deref().map(FileStamp::of);
        // Whether the module owes a run on the current inputs.
        let mut owed = Owed::Run;
        // Compiling a large module (an 18 MB Python one takes half a minute
        // on two cores) runs beside the loop: refreshes go on with the
        // current module meanwhile.
        let mut loading: Option<JoinHandle<Result<Loaded, String>>> = None;
        // The file changed again while it was being compiled.
        let mut reload_after = false;
        loop {
            let mut want_load = false;
            tokio::select! {
                () = &mut shutdown => break,
                _ = refresh.tick() => {
                    owed = self.refresh_once(owed).await;
                }
                _ = module_poll.tick(), if self.module_path.is_some() => {
                    let path = self.module_path.as_deref().expect("guarded");
                    let now = FileStamp::of(path);
                    if stamp.as_ref() != Some(&now) {
                        stamp = Some(now);
                        want_load = true;
                    }
                }
                () = self.reload.notified() => {
                    if self.module_path.is_some() {
                        self.emit(events::ReloadRequested);
                        want_load = true;
                    }
                }
                loaded = async { loading.as_mut().expect("guarded").await }, if loading.is_some() => {
                    loading = None;
                    if std::mem::take(&mut reload_after) {
                        want_load = true;
                    } else if let Some(published) = self.adopt(loaded).await {
                        // New module or settings: new inputs.
                        owed = if published { Owed::Nothing } else { Owed::Run };
                    }
                }
            }
            if want_load {
                if loading.is_some() {
                    reload_after = true;
                } else {
                    loading = Some(self.start_load());
                }
            }
        }
    }

    /// One refresh, and a run of the module if one is owed; returns what is
    /// owed next.
    async fn refresh_once(&mut self, owed: Owed) -> Owed {
        let started = Instant::now();
        let stats = match self.inventory.refresh().await {
            Ok(stats) => stats,
            Err(e) => {
                let message = e.to_string();
                self.emit(events::RefreshFailed {
                    reason: e.reason(),
                    error: &message,
                });
                self.publisher
                    .update_status(|s| s.refresh_error = Some(message));
                return owed;
            }
        };
        let instances = self.inventory.instances();
        let owed = if stats.changed { Owed::Run } else { owed };
        if let Some(hold) = owed.hold(Instant::now()) {
            // The same inputs would fail the same way (or the machine needs
            // a rest): keep the last good configuration, run nothing.
            self.emit(events::ModuleHeld { until: &hold });
            return owed;
        }
        if owed != Owed::Nothing {
            match self.generate(self.module.clone(), instances.clone()).await {
                Ok(generated) => self.publish(instances.clone(), generated),
                Err(e) => {
                    let message = format!("{}: {e}", self.module.source);
                    let next = owed.failed(&e, Instant::now(), self.refresh_interval);
                    self.emit(events::ModuleFailed {
                        reason: e.reason(),
                        error: &message,
                    });
                    let hold = next.hold(Instant::now());
                    self.publisher.update_status(|s| {
                        s.refresh_error = Some(message);
                        s.module_retry = hold;
                    });
                    return next;
                }
            }
        }
        let elapsed = started.elapsed();
        self.publisher.update_status(|s| {
            s.refresh_error = None;
            s.module_retry = None;
            s.last_success = Some(Instant::now());
            s.instances = instances.len();
        });
        self.emit(events::Refreshed { stats, elapsed });
        Owed::Nothing
    }

    async fn generate(
        &self,
        module: Arc<Module>,
        instances: Instances,
    ) -> Result<Generated, GenerateError> {
        self.generate_with(module, self.settings.clone(), instances)
            .await
    }

    /// A phased module re-runs only what changed since its last run (see
    /// `engine::Incremental`); any other runs `generate` on everything.
    async fn generate_with(
        &self,
        module: Arc<Module>,
        settings: Arc<str>,
        instances: Instances,
    ) -> Result<Generated, GenerateError> {
        let engine = self.engine.clone();
        let cache = self.incremental.clone();
        let generated = tokio::task::spawn_blocking(move || {
            if module.is_phased() {
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                let (generated, work) = cache.run(&engine, &module, &settings, &instances)?;
                crate::memory::after_run(work.routed);
                Ok(generated)
            } else {
                let generated = engine.generate(&module, &settings, &instances);
                crate::memory::after_run(instances.len());
                generated
            }
        })
        .await
        .unwrap_or_else(|e| Err(GenerateError::Trap(format!("generate task failed: {e}"))))?;
        self.emit(events::ModuleRan {
            duration: generated.duration,
        });
        Ok(generated)
    }

    fn publish(&self, instances: Instances, generated: Generated) {
        let routed = generated
            .findings
            .routes()
            .filter(|r| !r.routers.is_empty())
            .count();
        let seen = instances.len();
        let diagnostics = generated.findings.diagnostics().count();
        let config_bytes = generated.config.len();
        let started = Instant::now();
        let previous = self.publisher.current();
        let snapshot = Snapshot::new(instances, generated, previous.as_deref());
        drop(previous);
        tracing::debug!(took = ?started.elapsed(), "snapshot made");
        let unchanged = self
            .publisher
            .current()
            .is_some_and(|old| old.etag == snapshot.etag);
        self.emit(events::ConfigurationMade {
            seen,
            routed,
            diagnostics,
            config_bytes,
            body_bytes: snapshot.body.len(),
            etag: &snapshot.etag,
            changed: !unchanged,
        });
        self.publisher.publish(snapshot);
    }

    /// Compiles the module file off the async runtime, and re-reads the
    /// `[routes]` settings that go with it.
    fn start_load(&self) -> JoinHandle<Result<Loaded, String>> {
        let path = self.module_path.clone().expect("called with a module path");
        let engine = self.engine.clone();
        let config_file = self.config_file.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            let settings = match config_file {
                Some(file) => Config::load(Some(&file))
                    .map_err(|e| e.to_string())?
                    .routes_json()
                    .into(),
                None => settings,
            };
            let module = engine.load_file(&path).map_err(|e| e.to_string())?;
            Ok(Loaded { module, settings })
        })
    }

    /// Loads the module file and waits for it: what the loop does, in one
    /// step, for tests.
    #[cfg(test)]
    async fn try_swap(&mut self) {
        let loaded = self.start_load().await;
        self.adopt(loaded).await;
    }

    /// Adopts a loaded module only if it compiled, speaks our contract and
    /// succeeds on the current instances.
    /// Swaps in a loaded module (and its settings) if it runs on the current
    /// instances; `Some(published)` when it did.
    async fn adopt(&mut self, loaded: Result<Result<Loaded, String>, JoinError>) -> Option<bool> {
        let loaded = loaded
            .map_err(|e| format!("loading task failed: {e}"))
            .and_then(|r| r);
        let (module, settings) = match loaded {
            Ok(l) if l.module.digest == self.module.digest && l.settings == self.settings => {
                self.reject_cleared();
                return None;
            }
            Ok(l) => (Arc::new(l.module), l.settings),
            Err(message) => {
                self.reject("module_load", message);
                return None;
            }
        };
        let instances = self.inventory.instances();
        match self
            .generate_with(module.clone(), settings.clone(), instances.clone())
            .await
        {
            Ok(generated) => {
                self.emit(events::ModuleSwapped {
                    module: &describe(&module),
                });
                self.publisher.update_status(|s| {
                    s.module = describe(&module);
                    s.module_error = None;
                });
                // Before the first sync there is nothing to publish yet.
                let published = self.publisher.current().is_some();
                if published {
                    self.publish(instances, generated);
                }
                self.module = module;
                self.settings = settings;
                Some(published)
            }
            Err(e) => {
                self.reject(e.reason(), format!("{}: {e}", module.source));
                None
            }
        }
    }

    fn reject(&self, reason: &'static str, message: String) {
        self.emit(events::ModuleRejected {
            reason,
            error: &message,
        });
        self.publisher
            .update_status(|s| s.module_error = Some(message));
    }

    /// The file went back to the module in use: nothing is wrong any more.
    fn reject_cleared(&self) {
        self.emit(events::ModuleHealthy);
        self.publisher.update_status(|s| s.module_error = None);
    }
}

impl SyncLoop {
    fn emit(&self, event: impl Event) {
        event.emit(&self.metrics);
    }
}

/// A module file compiled, with the settings read beside it.
struct Loaded {
    module: Module,
    settings: Arc<str>,
}

/// "path (routes@0.1.1, sha256 0123456789ab)": a module, for logs and `/readyz`.
pub fn describe(module: &Module) -> String {
    format!(
        "{} (routes@{}, sha256 {})",
        module.source,
        module.version,
        &module.digest[..12]
    )
}

#[cfg(test)]
mod tests {
    //! The whole host in-process: a fake cloud made of real API samples,
    //! the real engine with real components, the publisher and the handler.

    use super::*;
    use crate::config::{EngineConfig, OpenStackConfig};
    use crate::openstack::OpenStack;
    use crate::server::{AppState, handle};
    use crate::testing::fake_cloud::{Canned, FakeCloud, server};
    use hyper::{Request, StatusCode};

    struct Rig {
        fake: FakeCloud,
        sync: SyncLoop,
        state: AppState,
        module_file: tempfile::NamedTempFile,
    }

    async fn rig() -> Rig {
        let fake = FakeCloud::start().await;
        fake.set_servers(vec![
            server("id-1", "vm-1", "2024-01-01T00:00:00Z"),
            server("id-2", "vm-2", "2024-01-01T00:00:00Z"),
        ]);
        let metrics = Arc::new(Metrics::new());
        let cfg = OpenStackConfig {
            request_timeout: Duration::from_millis(300),
            ..OpenStackConfig::default()
        };
        let client =
            OpenStack::new(fake.cloud_config(), cfg.request_timeout, metrics.clone()).unwrap();
        let engine = Arc::new(
            Engine::new(&EngineConfig {
                timeout: Duration::from_millis(300),
                cache_dir: Some("".into()),
                ..EngineConfig::default()
            })
            .unwrap(),
        );
        let module_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(module_file.path(), crate::engine::DEFAULT_MODULE).unwrap();
        let module = Arc::new(engine.load_file(module_file.path()).unwrap());
        let publisher = Arc::new(Publisher::new(Duration::from_secs(30)));
        let state = AppState {
            publisher: publisher.clone(),
            metrics: metrics.clone(),
            config_path: "/traefik".into(),
            token: None,
        };
        let sync = SyncLoop {
            incremental: Default::default(),
            engine,
            module,
            module_path: Some(module_file.path().to_owned()),
            settings: "{}".into(),
            config_file: None,
            inventory: Inventory::new(client, &cfg),
            publisher,
            metrics,
            refresh_interval: Duration::from_secs(10),
            reload: Arc::new(Notify::new()),
        };
        Rig {
            fake,
            sync,
            state,
            module_file,
        }
    }

    impl Rig {
        fn get(&self, path: &str) -> (StatusCode, String, Option<String>) {
            let resp = handle(&self.state, Request::get(path).body(()).unwrap());
            let status = resp.status();
            let etag = resp
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    use http_body_util::BodyExt;
                    resp.into_body().collect().await.unwrap().to_bytes()
                })
            });
            (status, String::from_utf8_lossy(&body).into_owned(), etag)
        }

        async fn swap_to(&mut self, feature: Option<&str>) {
            std::fs::copy(
                crate::testing::test_policy(feature),
                self.module_file.path(),
            )
            .unwrap();
            self.sync.try_swap().await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn serves_503_until_the_first_sync_then_the_config() {
        let mut rig = rig().await;
        assert_eq!(rig.get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rig.sync.refresh_once(Owed::Run).await, Owed::Nothing);
        let (status, body, _) = rig.get("/traefik");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vm-1") && body.contains("vm-2"), "{body}");
        assert_eq!(rig.get("/readyz").0, StatusCode::OK);
        let (_, instances, _) = rig.get("/api/instances");
        let instances: serde_json::Value = serde_json::from_str(&instances).unwrap();
        assert_eq!(instances.as_array().unwrap().len(), 2, "{instances}");
        assert!(
            instances
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["routed"] == true),
            "{instances}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failed_refreshes_keep_the_last_good_config_and_recover() {
        let mut rig = rig().await;
        rig.sync.refresh_once(Owed::Run).await;
        let (_, good, etag) = rig.get("/traefik");
        rig.fake.with(|s| s.servers.truncate(1));
        for reply in [
            Canned::status(500, r#"{"computeFault": {"code": 500}}"#),
            Canned::status(200, "{\"servers\": [ truncated"),
        ] {
            rig.sync.inventory.request_full_sync();
            rig.fake.fault("/servers/detail", 0, reply);
            rig.sync.refresh_once(Owed::Nothing).await;
            let (status, body, tag) = rig.get("/traefik");
            assert_eq!((status, &body, &tag), (StatusCode::OK, &good, &etag));
            let (_, readyz, _) = rig.get("/readyz");
            assert!(readyz.contains("refresh_error"), "{readyz}");
        }
        let metrics = rig.state.metrics.encode();
        assert!(metrics.contains("outcome=\"http_5xx\"} 1"), "{metrics}");
        assert!(metrics.contains("outcome=\"malformed\"} 1"), "{metrics}");

        // The cloud is back: the next refresh publishes what changed.
        rig.sync.inventory.request_full_sync();
        rig.sync.refresh_once(Owed::Nothing).await;
        let (_, body, tag) = rig.get("/traefik");
        assert_ne!(tag, etag);
        assert!(body.contains("vm-1") && !body.contains("vm-2"), "{body}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_module_that_failed_is_not_run_again_on_the_same_inputs() {
        let mut rig = rig().await;
        let trap = crate::testing::test_policy(Some("trap"));
        rig.sync.module = Arc::new(rig.sync.engine.load_file(&trap).unwrap());
        let failed_runs = |rig: &Rig| {
            let m = rig.state.metrics.encode();
            let line = m
                .lines()
                .find(|l| l.contains("outcome=\"module_trap\""))
                .map(str::to_owned);
            line.and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let owed = rig.sync.refresh_once(Owed::Run).await;
        let held = Owed::Failed {
            failures: 1,
            retry_at: None,
        };
        assert_eq!(owed, held);
        assert_eq!(failed_runs(&rig), 1);

        // Nothing changed: the module is not run, the refresh says why.
        for _ in 0..3 {
            assert_eq!(rig.sync.refresh_once(owed).await, held);
        }
        assert_eq!(failed_runs(&rig), 1);
        let metrics = rig.state.metrics.encode();
        assert!(metrics.contains("outcome=\"module_held\"} 3"), "{metrics}");
        let (status, readyz, _) = rig.get("/readyz");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            readyz.contains("until the instances, the module or its settings change"),
            "{readyz}"
        );

        // New instances are new inputs: it runs again.
        rig.fake.with(|s| s.servers.truncate(1));
        rig.sync.inventory.request_full_sync();
        assert_eq!(rig.sync.refresh_once(owed).await, held);
        assert_eq!(failed_runs(&rig), 2);
    }

    #[test]
    fn time_outs_back_off_other_failures_wait_for_new_inputs() {
        let now = Instant::now();
        let interval = Duration::from_secs(10);
        let timeout = GenerateError::Timeout(Duration::from_secs(1));
        let mut owed = Owed::Run;
        let mut waits = Vec::new();
        for _ in 0..8 {
            owed = owed.failed(&timeout, now, interval);
            let Owed::Failed {
                retry_at: Some(at), ..
            } = owed
            else {
                panic!("{owed:?}")
            };
            waits.push((at - now).as_secs());
            assert!(owed.hold(now).unwrap().contains("backing off"));
            assert_eq!(owed.hold(at), None, "runs again once the wait is over");
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
        let trap = GenerateError::Trap("unreachable".into());
        let owed = Owed::Run.failed(&trap, now, interval);
        assert_eq!(
            owed.hold(now + Duration::from_secs(86_400)).as_deref(),
            Some("until the instances, the module or its settings change")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_real_drop_to_zero_instances_is_served() {
        let mut rig = rig().await;
        rig.sync.refresh_once(Owed::Run).await;
        rig.fake.set_servers(vec![]);
        rig.sync.inventory.request_full_sync();
        rig.sync.refresh_once(Owed::Nothing).await;
        assert_eq!(rig.get("/traefik").1, "{}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hot_swap_takes_good_modules_and_refuses_broken_ones() {
        let mut rig = rig().await;
        rig.sync.refresh_once(Owed::Run).await;
        let (_, before, etag) = rig.get("/traefik");

        for broken in ["trap", "loop", "notjson", "future-version"] {
            rig.swap_to(Some(broken)).await;
            let (status, body, tag) = rig.get("/traefik");
            assert_eq!(
                (status, &body, &tag),
                (StatusCode::OK, &before, &etag),
                "{broken}"
            );
            let (ready, readyz, _) = rig.get("/readyz");
            assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{broken}: {readyz}");
            assert!(readyz.contains("rejected"), "{broken}: {readyz}");
            let metrics = rig.state.metrics.encode();
            assert!(metrics.contains("module_healthy 0"), "{broken}: {metrics}");
            // Refreshes go on with the old module.
            rig.fake.with(|s| {
                s.servers
                    .push(server("id-3", "vm-3", "2024-01-02T00:00:00Z"))
            });
            rig.sync.inventory.request_full_sync();
            rig.sync.refresh_once(Owed::Nothing).await;
            rig.fake.with(|s| s.servers.pop());
            rig.sync.inventory.request_full_sync();
            rig.sync.refresh_once(Owed::Nothing).await;
            assert_eq!(rig.get("/traefik").1, before, "{broken}");
        }
        let metrics = rig.state.metrics.encode();
        assert!(metrics.contains("outcome=\"module_trap\"} 1"), "{metrics}");
        assert!(
            metrics.contains("outcome=\"module_timeout\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("outcome=\"module_output\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("outcome=\"module_load\"} 1"), "{metrics}");

        rig.swap_to(None).await;
        let (_, body, _) = rig.get("/traefik");
        assert!(body.contains("swapped-0"), "{body}");
        assert_eq!(rig.get("/readyz").0, StatusCode::OK);
        assert!(rig.state.metrics.encode().contains("module_healthy 1"));
    }
}
