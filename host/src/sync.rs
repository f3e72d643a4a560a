//! The loop that keeps the published configuration current: refresh the
//! inventory, run the route module, publish; and swap modules when the file
//! changes. Every failure leaves the last good configuration in place.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::engine::{Engine, GenerateError, Generated, Module};
use crate::inventory::Inventory;
use crate::metrics::{Metrics, StateLabels};
use crate::publish::{Publisher, Snapshot};
use crate::wit::Instance;

/// How often the module file is checked for changes.
const MODULE_POLL: Duration = Duration::from_secs(1);

pub struct Sync {
    pub engine: Arc<Engine>,
    pub module: Arc<Module>,
    /// Watched for changes when set.
    pub module_path: Option<PathBuf>,
    pub settings: Arc<str>,
    pub inventory: Inventory,
    pub publisher: Arc<Publisher>,
    pub metrics: Arc<Metrics>,
    pub refresh_interval: Duration,
    /// Signalled on SIGHUP: re-read the module file now.
    pub reload: Arc<Notify>,
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

impl Sync {
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        self.metrics.module_healthy.set(1);
        self.publisher
            .update_status(|s| s.module = describe(&self.module));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut refresh = tokio::time::interval(self.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut module_poll = tokio::time::interval(MODULE_POLL);
        module_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamp = self.module_path.as_deref().map(FileStamp::of);
        // Set when the inventory changed but no configuration could be made
        // from it yet, so the next tick tries again even without news.
        let mut pending = true;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = refresh.tick() => {
                    pending = self.refresh_once(pending).await;
                }
                _ = module_poll.tick(), if self.module_path.is_some() => {
                    let path = self.module_path.as_deref().expect("guarded");
                    let now = FileStamp::of(path);
                    if stamp.as_ref() != Some(&now) {
                        stamp = Some(now);
                        self.try_swap().await;
                    }
                }
                () = self.reload.notified() => {
                    if self.module_path.is_some() {
                        tracing::info!("SIGHUP: reloading the route module");
                        self.try_swap().await;
                    }
                }
            }
        }
    }

    /// One refresh; returns whether a configuration is still owed.
    async fn refresh_once(&mut self, pending: bool) -> bool {
        let started = Instant::now();
        let stats = match self.inventory.refresh().await {
            Ok(stats) => stats,
            Err(e) => {
                self.metrics.refresh_outcome(e.reason());
                let message = e.to_string();
                tracing::warn!(reason = e.reason(), error = %message, "refresh failed; serving the last good configuration");
                self.publisher
                    .update_status(|s| s.refresh_error = Some(message));
                return pending;
            }
        };
        let instances = self.inventory.instances();
        if stats.changed || pending {
            match self.generate(self.module.clone(), instances.clone()).await {
                Ok(generated) => self.publish(&instances, &generated),
                Err(e) => {
                    self.metrics.refresh_outcome(e.reason());
                    let message = e.to_string();
                    tracing::error!(reason = e.reason(), error = %message, "route module failed; serving the last good configuration");
                    self.publisher
                        .update_status(|s| s.refresh_error = Some(message));
                    return true;
                }
            }
        }
        let elapsed = started.elapsed();
        self.metrics.refresh_duration.observe(elapsed.as_secs_f64());
        self.metrics.refresh_outcome("ok");
        self.metrics.last_success.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        self.publisher.update_status(|s| {
            s.refresh_error = None;
            s.last_success = Some(Instant::now());
            s.instances = instances.len();
        });
        tracing::info!(
            full = stats.full,
            changed = stats.changed,
            instances = stats.total,
            requests = stats.requests,
            bytes = stats.bytes,
            ms = elapsed.as_millis() as u64,
            "refresh"
        );
        false
    }

    async fn generate(
        &self,
        module: Arc<Module>,
        instances: Arc<Vec<Instance>>,
    ) -> Result<Generated, GenerateError> {
        let engine = self.engine.clone();
        let settings = self.settings.clone();
        let generated =
            tokio::task::spawn_blocking(move || engine.generate(&module, &settings, &instances))
                .await
                .unwrap_or_else(|e| {
                    Err(GenerateError::Trap(format!("generate task failed: {e}")))
                })?;
        self.metrics
            .generate_duration
            .observe(generated.duration.as_secs_f64());
        Ok(generated)
    }

    fn publish(&self, instances: &[Instance], generated: &Generated) {
        let routed = generated
            .routes
            .iter()
            .filter(|r| !r.routers.is_empty())
            .count();
        let gauge = |state| self.metrics.instances.get_or_create(&StateLabels { state });
        gauge("seen").set(instances.len() as i64);
        gauge("routed").set(routed as i64);
        gauge("skipped").set(instances.len().saturating_sub(routed) as i64);
        self.metrics.config_bytes.set(generated.config.len() as i64);
        let snapshot = Snapshot::new(instances, generated);
        let unchanged = self
            .publisher
            .current()
            .is_some_and(|old| old.etag == snapshot.etag);
        if !unchanged {
            tracing::info!(
                bytes = generated.config.len(),
                routed,
                diagnostics = generated.diagnostics.len(),
                etag = %snapshot.etag,
                "configuration published"
            );
        }
        self.publisher.publish(snapshot);
    }

    /// Loads the module file and adopts it only if it compiles, speaks our
    /// contract and succeeds on the current instances.
    async fn try_swap(&mut self) {
        let path = self.module_path.clone().expect("called with a module path");
        let engine = self.engine.clone();
        let loaded = tokio::task::spawn_blocking(move || engine.load_file(&path))
            .await
            .map_err(|e| format!("loading task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let module = match loaded {
            Ok(m) if m.digest == self.module.digest => {
                self.reject_cleared();
                return;
            }
            Ok(m) => Arc::new(m),
            Err(message) => return self.reject("module_load", message),
        };
        let instances = self.inventory.instances();
        match self.generate(module.clone(), instances.clone()).await {
            Ok(generated) => {
                tracing::info!(module = %describe(&module), "route module swapped in");
                self.metrics
                    .module_swaps
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "ok" })
                    .inc();
                self.metrics.module_healthy.set(1);
                self.publisher.update_status(|s| {
                    s.module = describe(&module);
                    s.module_error = None;
                });
                // Before the first sync there is nothing to publish yet.
                if self.publisher.current().is_some() {
                    self.publish(&instances, &generated);
                }
                self.module = module;
            }
            Err(e) => self.reject(e.reason(), e.to_string()),
        }
    }

    fn reject(&self, reason: &'static str, message: String) {
        tracing::error!(reason, error = %message, "route module rejected; keeping the previous one");
        self.metrics
            .module_swaps
            .get_or_create(&crate::metrics::OutcomeLabels { outcome: reason })
            .inc();
        self.metrics.module_healthy.set(0);
        self.publisher
            .update_status(|s| s.module_error = Some(message));
    }

    /// The file went back to the module in use: nothing is wrong any more.
    fn reject_cleared(&self) {
        self.metrics.module_healthy.set(1);
        self.publisher.update_status(|s| s.module_error = None);
    }
}

pub fn describe(module: &Module) -> String {
    format!(
        "{} (routes@{}, sha256 {})",
        module.source,
        module.version,
        &module.digest[..12]
    )
}
