//! What the sync loop reports as it runs: one type per event, and one place,
//! its `emit`, that logs it and counts it (as vector's internal events do).
//! The loop says what happened; how that shows in the log and in `/metrics`
//! is decided here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::Work;
use crate::inventory::RefreshStats;
use crate::metrics::{
    CloudLabels, Metrics, OutcomeLabels, StateLabels, StoreLabels, StoreOutcomeLabels, WhenLabels,
};

/// Something the host reports: logged and counted by [`Event::emit`].
pub(crate) trait Event {
    fn emit(self, metrics: &Metrics);
}

/// A refresh succeeded, whether or not anything changed.
pub(crate) struct Refreshed<'a> {
    pub(crate) cloud: &'a str,
    pub(crate) stats: RefreshStats,
    pub(crate) elapsed: Duration,
}

impl Event for Refreshed<'_> {
    fn emit(self, metrics: &Metrics) {
        let Self {
            cloud,
            stats,
            elapsed,
        } = self;
        metrics.refresh_duration.observe(elapsed.as_secs_f64());
        refresh_outcome(metrics, "ok");
        let now = unix_now();
        metrics.last_success.set(now);
        let labels = CloudLabels {
            cloud: cloud.to_owned(),
        };
        metrics.cloud_up.get_or_create(&labels).set(1);
        metrics.cloud_last_success.get_or_create(&labels).set(now);
        if let Some(offset) = stats.clock_offset {
            metrics
                .cloud_clock_offset
                .get_or_create(&labels)
                .set(offset);
        }
        tracing::info!(
            cloud,
            full = stats.full,
            changed = stats.changed,
            instances = stats.total,
            requests = stats.requests,
            bytes = stats.bytes,
            ms = elapsed.as_millis() as u64,
            "refresh"
        );
    }
}

/// The inventory of a cloud could not be refreshed.
pub(crate) struct RefreshFailed<'a> {
    pub(crate) cloud: &'a str,
    /// A fixed word (see [`crate::inventory::RefreshError::reason`]).
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

impl Event for RefreshFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        refresh_outcome(metrics, self.reason);
        metrics
            .cloud_up
            .get_or_create(&CloudLabels {
                cloud: self.cloud.to_owned(),
            })
            .set(0);
        tracing::warn!(
            cloud = self.cloud,
            reason = self.reason,
            error = %self.error,
            "refresh failed; serving the last good instances of this cloud"
        );
    }
}

/// The route module failed on a refreshed inventory.
pub(crate) struct ModuleFailed<'a> {
    /// A fixed word (see [`crate::engine::GenerateError::reason`]).
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

impl Event for ModuleFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        refresh_outcome(metrics, self.reason);
        tracing::error!(
            reason = self.reason,
            error = %self.error,
            "route module failed; serving the last good configuration"
        );
    }
}

/// The module failed on these instances before and is not run again yet
/// (see `sync::Owed`): counted as a refresh outcome, logged at debug level
/// only, as it repeats every refresh while nothing changes.
pub(crate) struct ModuleHeld<'a> {
    /// "until the instances, the module or its settings change", ...
    pub(crate) until: &'a str,
}

impl Event for ModuleHeld<'_> {
    fn emit(self, metrics: &Metrics) {
        refresh_outcome(metrics, "module_held");
        tracing::debug!(
            until = self.until,
            "route module not run again on the same inputs"
        );
    }
}

/// The route module ran (counted only: the refresh logs the outcome).
pub(crate) struct ModuleRan {
    /// Its time for this configuration, the pages routed as they came in
    /// included.
    pub(crate) duration: Duration,
    pub(crate) work: Work,
}

impl Event for ModuleRan {
    fn emit(self, metrics: &Metrics) {
        metrics
            .generate_duration
            .observe(self.duration.as_secs_f64());
        let routed = |when| metrics.routed_instances.get_or_create(&WhenLabels { when });
        routed("listing").inc_by(self.work.primed as u64);
        routed("run").inc_by(self.work.routed.saturating_sub(self.work.primed) as u64);
    }
}

/// A configuration was made and handed to the publisher.
pub(crate) struct ConfigurationMade<'a> {
    /// Instances the module was given.
    pub(crate) seen: usize,
    /// Instances with at least one router.
    pub(crate) routed: usize,
    pub(crate) diagnostics: usize,
    /// The module's configuration, uncompressed (the `config_bytes` gauge).
    pub(crate) config_bytes: usize,
    /// The served body (logged).
    pub(crate) body_bytes: usize,
    pub(crate) etag: &'a str,
    /// It differs from the one served until now (only then is it logged).
    pub(crate) changed: bool,
}

impl Event for ConfigurationMade<'_> {
    fn emit(self, metrics: &Metrics) {
        let gauge = |state| metrics.instances.get_or_create(&StateLabels { state });
        gauge("seen").set(self.seen as i64);
        gauge("routed").set(self.routed as i64);
        gauge("skipped").set(self.seen.saturating_sub(self.routed) as i64);
        metrics.config_bytes.set(self.config_bytes as i64);
        if self.changed {
            tracing::info!(
                bytes = self.body_bytes,
                routed = self.routed,
                diagnostics = self.diagnostics,
                etag = %self.etag,
                "configuration published"
            );
        }
    }
}

/// SIGHUP asked for the module file to be read again.
pub(crate) struct ReloadRequested;

impl Event for ReloadRequested {
    fn emit(self, _: &Metrics) {
        tracing::info!("SIGHUP: reloading the route module");
    }
}

/// The module in use is healthy: at start, or when the file went back to it
/// after a rejected one.
pub(crate) struct ModuleHealthy;

impl Event for ModuleHealthy {
    fn emit(self, metrics: &Metrics) {
        metrics.module_healthy.set(1);
    }
}

/// A new module (or new settings) went live.
pub(crate) struct ModuleSwapped<'a> {
    /// As [`crate::sync::describe`] gives it.
    pub(crate) module: &'a str,
}

impl Event for ModuleSwapped<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::info!(module = %self.module, "route module swapped in");
        module_swap(metrics, "ok");
        metrics.module_healthy.set(1);
    }
}

/// A new module was refused; the previous one stays.
pub(crate) struct ModuleRejected<'a> {
    /// `module_load`, or a [`crate::engine::GenerateError::reason`].
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

impl Event for ModuleRejected<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::error!(
            reason = self.reason,
            error = %self.error,
            "route module rejected; keeping the previous one"
        );
        module_swap(metrics, self.reason);
        metrics.module_healthy.set(0);
    }
}

/// What each cloud contributes to the module run.
pub(crate) struct CloudsMerged<'a> {
    /// Name and instances of each cloud.
    pub(crate) clouds: &'a [(&'a str, usize)],
    /// (cloud that listed it, cloud whose instance was kept, id).
    pub(crate) duplicates: &'a [(&'a str, &'a str, &'a str)],
}

impl Event for CloudsMerged<'_> {
    fn emit(self, metrics: &Metrics) {
        for (cloud, n) in self.clouds {
            metrics
                .cloud_instances
                .get_or_create(&CloudLabels {
                    cloud: (*cloud).to_owned(),
                })
                .set(*n as i64);
        }
        if let Some((dropped, kept, id)) = self.duplicates.first() {
            tracing::warn!(
                count = self.duplicates.len(),
                first = %id,
                cloud = %dropped,
                kept_from = %kept,
                "instances listed by two clouds: only the first cloud's are routed"
            );
        }
    }
}

/// This sidecar took or lost the lease of a KV store.
pub(crate) struct KvLeadership<'a> {
    pub(crate) store: &'static str,
    pub(crate) leader: bool,
    pub(crate) node: &'a str,
}

impl Event for KvLeadership<'_> {
    fn emit(self, metrics: &Metrics) {
        let Self {
            store,
            leader,
            node,
        } = self;
        let was = metrics
            .leader
            .get_or_create(&StoreLabels { store })
            .set(i64::from(leader));
        if leader {
            tracing::info!(store, node, "leader: this sidecar writes to the store");
        } else if was == 1 {
            tracing::warn!(
                store,
                node,
                "no longer leader: this sidecar stops writing to the store"
            );
        }
    }
}

/// A cloud's instances are no longer routed: it did not answer for `max_stale`.
pub(crate) struct CloudWithdrawn<'a> {
    pub(crate) cloud: &'a str,
    pub(crate) since: &'a str,
    pub(crate) max_stale: Duration,
}

impl Event for CloudWithdrawn<'_> {
    fn emit(self, _: &Metrics) {
        tracing::error!(
            cloud = self.cloud,
            last_success = self.since,
            max_stale = %humantime::format_duration(self.max_stale),
            "no successful refresh for max_stale: this cloud's instances are no longer routed"
        );
    }
}

/// The configuration from the state file is served until OpenStack answers.
pub(crate) struct StateRecovered<'a> {
    pub(crate) file: &'a str,
    pub(crate) confirmed_at: SystemTime,
    pub(crate) routed: usize,
}

impl Event for StateRecovered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.stale_since.set(unix(self.confirmed_at));
        tracing::warn!(
            file = self.file,
            stale_since = %crate::publish::state::rfc3339(self.confirmed_at),
            routed = self.routed,
            "serving the configuration recovered from the state file until OpenStack answers"
        );
    }
}

/// The state file exists but cannot be used: start as without one.
pub(crate) struct StateUnusable<'a> {
    pub(crate) error: &'a str,
}

impl Event for StateUnusable<'_> {
    fn emit(self, _: &Metrics) {
        tracing::warn!(error = %self.error, "state file not used; waiting for OpenStack");
    }
}

/// A configuration made from what OpenStack says replaced a recovered one.
pub(crate) struct StaleReplaced;

impl Event for StaleReplaced {
    fn emit(self, metrics: &Metrics) {
        metrics.stale_since.set(0.0);
        tracing::info!("OpenStack answered: the recovered configuration is replaced");
    }
}

/// No configuration is served any more: what was served is older than
/// `max_stale`.
pub(crate) struct Withdrawn<'a> {
    pub(crate) why: &'a str,
}

impl Event for Withdrawn<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.stale_since.set(0.0);
        metrics.config_bytes.set(0);
        tracing::error!(why = self.why, "configuration withdrawn: serving 503");
    }
}

/// The state file was written, or could not be.
pub(crate) struct StateWritten<'a> {
    pub(crate) error: Option<&'a str>,
    /// The previous write's error. A write is tried at every refresh while
    /// it fails, so the same failure again (a read-only mount) is logged
    /// once, not at every refresh.
    pub(crate) previous: Option<&'a str>,
}

impl Event for StateWritten<'_> {
    fn emit(self, metrics: &Metrics) {
        let outcome = if self.error.is_some() { "error" } else { "ok" };
        metrics
            .state_file_writes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        metrics.state_file_ok.set(i64::from(self.error.is_none()));
        match (self.error, self.previous) {
            (Some(e), Some(p)) if e == p => {
                tracing::debug!(error = %e, "state file still not written")
            }
            (Some(e), _) => tracing::error!(error = %e, "state file not written; serving goes on"),
            (None, Some(_)) => tracing::info!("state file written again"),
            (None, None) => tracing::debug!("state file written"),
        }
    }
}

/// A compiled module was (or could not be) written to the compile cache.
pub(crate) struct CompileCacheWritten<'a> {
    pub(crate) error: Option<&'a str>,
}

impl Event for CompileCacheWritten<'_> {
    fn emit(self, metrics: &Metrics) {
        let outcome = if self.error.is_some() { "error" } else { "ok" };
        metrics
            .compile_cache_writes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        // the engine logged the failure where it happened
    }
}

/// A publication to a KV store committed (or had nothing to change).
pub(crate) struct KvPublished<'a> {
    pub(crate) store: &'static str,
    pub(crate) puts: usize,
    pub(crate) deletes: usize,
    /// Keys of ours under the root now.
    pub(crate) keys: usize,
    pub(crate) etag: &'a str,
    pub(crate) elapsed: Duration,
    /// Resources Traefik's KV layout cannot express, left out.
    pub(crate) left_out: &'a [String],
}

impl Event for KvPublished<'_> {
    fn emit(self, metrics: &Metrics) {
        let store = self.store;
        kv_outcome(metrics, store, "ok");
        let labels = StoreLabels { store };
        metrics
            .kv_keys_written
            .get_or_create(&labels)
            .inc_by(self.puts as u64);
        metrics
            .kv_keys_deleted
            .get_or_create(&labels)
            .inc_by(self.deletes as u64);
        metrics.kv_keys.get_or_create(&labels).set(self.keys as i64);
        if self.puts + self.deletes > 0 {
            tracing::info!(
                store,
                puts = self.puts,
                deletes = self.deletes,
                keys = self.keys,
                etag = %self.etag,
                ms = self.elapsed.as_millis() as u64,
                "configuration published to the store"
            );
        }
        for problem in self.left_out {
            tracing::warn!(store, problem = %problem, "left out of the KV layout");
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn unix_now() -> f64 {
    unix(SystemTime::now())
}

/// A publication was refused because the lease is someone else's now.
pub(crate) struct KvFenced {
    pub(crate) store: &'static str,
}

impl Event for KvFenced {
    fn emit(self, metrics: &Metrics) {
        kv_outcome(metrics, self.store, "fenced");
        tracing::warn!(
            store = self.store,
            "publication fenced out: another sidecar holds the lease"
        );
    }
}

/// A KV store call failed; the next round tries again.
pub(crate) struct KvFailed<'a> {
    pub(crate) store: &'static str,
    /// A fixed word (see [`crate::publish::kv::StoreError::reason`]).
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

impl Event for KvFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        kv_outcome(metrics, self.store, self.reason);
        tracing::warn!(
            store = self.store,
            reason = self.reason,
            error = %self.error,
            "KV store failed; retrying on the next round"
        );
    }
}

/// Redis keyspace notifications are off (or could not be checked).
pub(crate) struct KvKeyspace<'a> {
    pub(crate) error: &'a str,
}

impl Event for KvKeyspace<'_> {
    fn emit(self, _: &Metrics) {
        tracing::error!(store = "redis", error = %self.error, "Traefik's Redis provider will not see changes");
    }
}

fn kv_outcome(metrics: &Metrics, store: &'static str, outcome: &'static str) {
    metrics
        .kv_publications
        .get_or_create(&StoreOutcomeLabels { store, outcome })
        .inc();
}

fn refresh_outcome(metrics: &Metrics, outcome: &'static str) {
    metrics
        .refreshes
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

fn module_swap(metrics: &Metrics, outcome: &'static str) {
    metrics
        .module_swaps
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The log lines `f` emits at info and above.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_state_file_failing_the_same_way_is_logged_once() {
        let metrics = Metrics::new();
        let write = |error, previous| logged(|| StateWritten { error, previous }.emit(&metrics));
        let first = write(Some("read-only"), None);
        assert!(
            first.contains("ERROR") && first.contains("read-only"),
            "{first}"
        );
        assert_eq!(write(Some("read-only"), Some("read-only")), "");
        let other = write(Some("disk full"), Some("read-only"));
        assert!(
            other.contains("ERROR") && other.contains("disk full"),
            "{other}"
        );
        let back = write(None, Some("disk full"));
        assert!(back.contains("state file written again"), "{back}");
        assert_eq!(write(None, None), "");
        // Every attempt is counted, logged or not.
        let text = metrics.encode();
        assert!(
            text.contains(r#"state_file_writes_total{outcome="error"} 3"#),
            "{text}"
        );
    }
}
