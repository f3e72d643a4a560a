//! The loop that keeps the published configuration current: refresh the
//! inventory, run the route module, publish; and swap modules when the file
//! changes. Every failure leaves the last good configuration in place.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::config::{Config, OpenStackConfig};
use crate::engine::{Engine, GenerateError, Generated, Incremental, Module, Work};
use crate::events::{self, Event};
use crate::inventory::{Instances, Inventory, RefreshError, RefreshStats};
use crate::metrics::Metrics;
use crate::openstack::OpenStack;
use crate::publish::state::{self, Saved};
use crate::publish::{CloudStatus, Publisher, Snapshot};

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
    /// That file as it was before `module` was read from it: a file
    /// replaced while the first module compiled goes live at the first
    /// poll, instead of being taken for the one compiled.
    pub module_stamp: Option<FileStamp>,
    /// The `[routes]` settings handed to the module, as JSON.
    pub settings: Arc<str>,
    /// The config file, re-read with the module: a new policy usually
    /// comes with new `[routes]` settings, and both go live together.
    pub config_file: Option<PathBuf>,
    /// The clouds, in the order of the configuration file: an instance
    /// id listed by two of them is taken from the first.
    pub clouds: Vec<Cloud>,
    /// Where configurations go.
    pub publisher: Arc<Publisher>,
    /// Where events are counted.
    pub metrics: Arc<Metrics>,
    /// How long a cloud's instances (or a recovered configuration) are
    /// routed after OpenStack last confirmed them.
    pub max_stale: Duration,
    /// Where the served configuration is saved after each change.
    pub state_file: Option<PathBuf>,
    /// Signalled on SIGHUP: re-read the module file now.
    pub reload: Arc<Notify>,
    /// What a phased module's last run left, so that the next one re-runs
    /// only what changed (start with `Default::default()`).
    pub incremental: Arc<Mutex<Incremental>>,
    /// What the loop keeps between refreshes (start with `Default::default()`).
    pub kept: Kept,
}

/// What the loop keeps between refreshes.
#[derive(Default)]
pub struct Kept {
    /// The clouds' lists the merge was made from, and the merge.
    merged: Option<(Vec<Instances>, Instances)>,
    /// Hands snapshots to the state file writer (started at the first save).
    writer: Option<watch::Sender<Option<ToSave>>>,
    /// The etag and confirmation time last handed to the writer.
    saved: Option<(String, SystemTime)>,
    /// Why the module last failed on the current inputs: shown again once
    /// the clouds answer while it is held.
    module_failure: Option<String>,
    /// The clouds' listings under way, each in its own task: a cloud's
    /// answer is taken in when it comes, whatever the others are doing.
    listings: tokio::task::JoinSet<Listed>,
    /// Moves on with every module (or settings) tried: a listing's pages
    /// are routed ahead with the module of its start only while it holds.
    module_generation: Arc<std::sync::atomic::AtomicU64>,
}

/// A listing that ended: its cloud's inventory comes back with it.
struct Listed {
    cloud: usize,
    inventory: Inventory,
    result: Result<RefreshStats, RefreshError>,
    elapsed: Duration,
}

/// One cloud (an `[openstack]` entry) as the loop drives it.
pub struct Cloud {
    /// What `/readyz`, `/metrics` and the logs call it.
    pub name: String,
    /// Its instances; away in its listing's task while it is listed.
    inventory: Option<Inventory>,
    /// What it listed last, as the module gets it (also while it is
    /// listed again).
    listed: Instances,
    /// Its last refresh's error, until one succeeds.
    error: Option<String>,
    /// How often it is refreshed.
    pub refresh_interval: Duration,
    next_due: Instant,
    /// Local and wall-clock time of its last successful refresh.
    confirmed: Option<(Instant, SystemTime)>,
    /// No successful refresh for `max_stale`: its instances are not routed.
    withdrawn: bool,
    /// What it contributes while withdrawn (one `Arc`, so that the merge
    /// sees no change from one refresh to the next).
    none: Instances,
}

impl Cloud {
    /// A cloud refreshed every `refresh_interval`, first right away.
    pub fn new(name: String, inventory: Inventory, refresh_interval: Duration) -> Self {
        Self {
            name,
            listed: inventory.instances(),
            inventory: Some(inventory),
            error: None,
            refresh_interval,
            next_due: Instant::now(),
            confirmed: None,
            withdrawn: false,
            none: Instances::default(),
        }
    }

    /// The entry's `name`, or "<clouds.yaml entry>/<region>": stable
    /// across restarts, and distinct for two regions of one cloud.
    pub fn name_of(cfg: &OpenStackConfig, client: &OpenStack) -> String {
        if let Some(name) = &cfg.name {
            return name.clone();
        }
        let cloud = client.cloud();
        match &cloud.region {
            Some(region) => format!("{}/{region}", cloud.name),
            None => cloud.name.clone(),
        }
    }

    /// Its inventory, for a one-off listing (`render`, `inventory`).
    pub fn into_inventory(self) -> Inventory {
        self.inventory.expect("not being listed")
    }

    /// Without a successful refresh for this long, the cloud is not ready.
    fn stale_after(&self) -> Duration {
        self.refresh_interval * 3
    }

    /// What the cloud contributes to the module run.
    fn instances(&self) -> Instances {
        match self.withdrawn {
            true => self.none.clone(),
            false => self.listed.clone(),
        }
    }
}

/// The instances of several clouds as one list sorted by id, as the engine
/// expects. Ids are unique within a cloud, not across clouds (two entries
/// may see the same server, e.g. one with `all_projects`): the engine and
/// `/api/instances` know an instance by id, so an id already listed by an
/// earlier cloud is dropped. Returns the list and, per dropped instance,
/// (the cloud that listed it, the cloud kept, its id).
fn merge(lists: &[Instances]) -> (Instances, Vec<(usize, usize, Arc<crate::wit::Instance>)>) {
    if let [one] = lists {
        return (one.clone(), Vec::new());
    }
    let mut all: Vec<(usize, &Arc<crate::wit::Instance>)> = lists
        .iter()
        .enumerate()
        .flat_map(|(n, l)| l.iter().map(move |i| (n, i)))
        .collect();
    // Stable: equal ids keep the order of the clouds.
    all.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    let mut merged: Vec<Arc<crate::wit::Instance>> = Vec::with_capacity(all.len());
    let mut kept_from: Vec<usize> = Vec::with_capacity(all.len());
    let mut duplicates = Vec::new();
    for (n, i) in all {
        match merged.last() {
            Some(last) if last.id == i.id => {
                duplicates.push((n, *kept_from.last().expect("beside merged"), i.clone()))
            }
            _ => {
                merged.push(i.clone());
                kept_from.push(n);
            }
        }
    }
    (Arc::new(merged), duplicates)
}

/// What the state file writer is handed: the snapshot, and when OpenStack
/// last confirmed it.
#[derive(Clone)]
struct ToSave {
    snapshot: Arc<Snapshot>,
    confirmed_at: SystemTime,
    module: String,
}

/// Writes the state file off the loop, the latest snapshot handed over
/// each time (one write at a time; snapshots handed meanwhile coalesce).
/// A failure is reported in `/readyz`, `/metrics` and the log (once while
/// it repeats), and never stops anything else.
fn spawn_state_writer(
    path: PathBuf,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
) -> watch::Sender<Option<ToSave>> {
    let (tx, mut rx) = watch::channel::<Option<ToSave>>(None);
    tokio::spawn(async move {
        let mut previous: Option<String> = None;
        while rx.changed().await.is_ok() {
            let Some(job) = rx.borrow_and_update().clone() else {
                continue;
            };
            let path = path.clone();
            let written = tokio::task::spawn_blocking(move || {
                let s = &job.snapshot;
                state::write(
                    &path,
                    &Saved {
                        body: s.body.clone(),
                        made_at: s.made_at,
                        confirmed_at: job.confirmed_at,
                        module: job.module,
                        instances: s.instance_count,
                        routed: s.routed,
                    },
                )
                .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("state file writer failed: {e}")));
            let error = written.err();
            events::StateWritten {
                error: error.as_deref(),
                previous: previous.as_deref(),
            }
            .emit(&metrics);
            previous.clone_from(&error);
            publisher.update_status(|s| s.state_file_error = error);
        }
    });
    tx
}

/// Serves the configuration saved in `path` if it is usable (valid, and
/// confirmed by OpenStack less than `max_stale` ago); says why not if not.
pub fn recover_state(
    path: &std::path::Path,
    max_stale: Duration,
    publisher: &Publisher,
    metrics: &Metrics,
) {
    match state::read(path, max_stale, SystemTime::now()) {
        Ok(saved) => {
            let snapshot = Snapshot::recovered(&saved, path);
            events::StateRecovered {
                file: &path.display().to_string(),
                confirmed_at: saved.confirmed_at,
                routed: saved.routed,
            }
            .emit(metrics);
            publisher.update_status(|s| s.instances = saved.instances);
            publisher.publish(snapshot);
        }
        // No file yet: the first start.
        Err(state::StateError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => events::StateUnusable {
            error: &e.to_string(),
        }
        .emit(metrics),
    }
}

/// The instances of several clouds merged as the loop merges them (an id
/// listed twice is taken from the first cloud), for `render` and `inventory`.
pub fn merge_instances(lists: &[Instances]) -> Instances {
    merge(lists).0
}

/// Reports the engine's last write to the compile cache, if there was
/// one since the last report: counted in `/metrics`, shown in `/readyz`
/// until a write succeeds.
pub fn report_cache_write(engine: &Engine, publisher: &Publisher, metrics: &Metrics) {
    if let Some(written) = engine.take_cache_write() {
        let error = written.err();
        events::CompileCacheWritten {
            error: error.as_deref(),
        }
        .emit(metrics);
        publisher.update_status(|s| s.compile_cache_error = error);
    }
}

/// The module file as last seen, to notice replacement cheaply.
#[derive(PartialEq)]
pub struct FileStamp(Option<(SystemTime, u64)>);

impl FileStamp {
    /// The file's modification time and size now (`None` if unreadable).
    pub fn of(path: &std::path::Path) -> Self {
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
        self.init_cloud_status();
        for cloud in &self.clouds {
            self.metrics.cloud_known(&cloud.name);
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut module_poll = tokio::time::interval(MODULE_POLL);
        module_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamp = self.module_stamp.take();
        // Whether the module owes a run on the current inputs.
        let mut owed = Owed::Run;
        // Compiling a large module (an 18 MB Python one takes half a minute
        // on two cores) runs beside the loop: refreshes go on with the
        // current module meanwhile.
        let mut loading: Option<JoinHandle<Result<Loaded, String>>> = None;
        // The file changed again while it was being compiled.
        let mut reload_after = false;
        loop {
            self.start_due(owed);
            let mut want_load = false;
            let mut listed = None;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(self.next_due().into()) => {}
                Some(done) = self.kept.listings.join_next(), if !self.kept.listings.is_empty() => {
                    // Listings that ended together make one module run.
                    let mut ended = vec![done.expect("a listing task panicked")];
                    while let Some(more) = self.kept.listings.try_join_next() {
                        ended.push(more.expect("a listing task panicked"));
                    }
                    listed = Some(ended);
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
            if let Some(listed) = listed {
                // A listing can take minutes (a large cloud, or a Nova that
                // answers only at the request timeout, page after page): it
                // runs in its own task, which a shutdown drops. Nor does a
                // shutdown wait for the module. What is served stays as is.
                tokio::select! {
                    () = &mut shutdown => break,
                    next = async {
                        for one in listed {
                            self.take_in(one);
                        }
                        self.follow(owed).await
                    } => owed = next,
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

    /// When the next cloud that is not being listed is due for a refresh.
    fn next_due(&self) -> Instant {
        self.clouds
            .iter()
            .filter(|c| c.inventory.is_some())
            .map(|c| c.next_due)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn init_cloud_status(&self) {
        let statuses: Vec<CloudStatus> = self
            .clouds
            .iter()
            .map(|c| CloudStatus::new(&c.name, c.stale_after()))
            .collect();
        self.publisher.update_status(|s| s.clouds = statuses);
    }

    /// Refreshes every cloud now, and runs the module once all have
    /// answered (tests: as if all were due at once).
    #[cfg(test)]
    async fn refresh_once(&mut self, owed: Owed) -> Owed {
        if self.publisher.readiness().status.clouds.len() != self.clouds.len() {
            self.init_cloud_status();
        }
        let now = Instant::now();
        for c in &mut self.clouds {
            c.next_due = now;
        }
        self.start_due(owed);
        while let Some(done) = self.kept.listings.join_next().await {
            self.take_in(done.expect("a listing task panicked"));
        }
        self.follow(owed).await
    }

    /// Starts the listing of every cloud that is due and not being listed,
    /// each in its own task with its inventory.
    fn start_due(&mut self, owed: Owed) {
        let now = Instant::now();
        for n in 0..self.clouds.len() {
            let cloud = &mut self.clouds[n];
            if cloud.next_due > now {
                continue;
            }
            let Some(mut inventory) = cloud.inventory.take() else {
                continue;
            };
            cloud.next_due = now + cloud.refresh_interval;
            // Not while a failed run is owed: that run decides when the
            // module runs again.
            let primer = (self.module.is_phased() && !matches!(owed, Owed::Failed { .. }))
                .then(|| self.start_primer());
            self.kept.listings.spawn(async move {
                let began = Instant::now();
                let result = inventory
                    .refresh_feeding(primer.as_ref().map(|p| &p.feed))
                    .await;
                let elapsed = began.elapsed();
                if let Some(primer) = primer {
                    primer.finish().await;
                }
                Listed {
                    cloud: n,
                    inventory,
                    result,
                    elapsed,
                }
            });
        }
    }

    /// Takes in a cloud's listing: its inventory comes home, and its status
    /// says how the listing went.
    fn take_in(&mut self, listed: Listed) {
        let Listed {
            cloud: n,
            inventory,
            result,
            elapsed,
        } = listed;
        let several = self.clouds.len() > 1;
        let cloud = &mut self.clouds[n];
        cloud.listed = inventory.instances();
        cloud.inventory = Some(inventory);
        match result {
            Ok(stats) => {
                let now = SystemTime::now();
                cloud.confirmed = Some((Instant::now(), now));
                cloud.withdrawn = false;
                cloud.error = None;
                events::Refreshed {
                    cloud: &cloud.name,
                    stats,
                    elapsed,
                }
                .emit(&self.metrics);
                self.publisher.update_status(|s| {
                    if let Some(c) = s.clouds.get_mut(n) {
                        c.error = None;
                        c.withdrawn = false;
                        c.clock_offset_seconds = stats.clock_offset;
                        c.last_success = Some(Instant::now());
                        c.last_success_at = Some(state::rfc3339(now));
                    }
                });
            }
            Err(e) => {
                let message = match several {
                    false => e.to_string(),
                    true => format!("cloud {}: {e}", cloud.name),
                };
                cloud.error = Some(message.clone());
                events::RefreshFailed {
                    cloud: &cloud.name,
                    reason: e.reason(),
                    error: &e.to_string(),
                }
                .emit(&self.metrics);
                self.publisher.update_status(|s| {
                    if let Some(c) = s.clouds.get_mut(n) {
                        c.error = Some(e.to_string());
                    }
                    s.refresh_error = Some(message);
                });
            }
        }
    }

    /// After a listing: runs the module on the merge of every cloud's last
    /// listing if one is owed; returns what is owed next.
    async fn follow(&mut self, owed: Owed) -> Owed {
        self.withdraw_expired();
        // The refresh error stays while any cloud's last listing failed.
        let failing = self.clouds.iter().find_map(|c| c.error.clone());
        let before = self.kept.merged.as_ref().map(|(_, m)| m.clone());
        let Some(instances) = self.merged() else {
            // Nothing to make a configuration from yet.
            return owed;
        };
        let changed = before.is_none_or(|m| !Arc::ptr_eq(&m, &instances));
        let owed = if changed { Owed::Run } else { owed };
        if let Some(next) = self.make(owed, instances.clone()).await {
            if failing.is_none()
                && let Some(why) = self.kept.module_failure.clone()
            {
                // The clouds answered: what keeps the configuration from
                // following them is the module (not an outage seen since).
                self.publisher
                    .update_status(|s| s.refresh_error = Some(why));
            }
            return next;
        }
        self.publisher.update_status(|s| {
            s.module_retry = None;
            s.instances = instances.len();
            match failing {
                None => {
                    s.refresh_error = None;
                    s.last_success = Some(Instant::now());
                }
                // Another cloud's failure may have been overwritten.
                Some(message) => s.refresh_error = Some(message),
            }
        });
        self.save_state();
        Owed::Nothing
    }

    /// Runs the module on `instances` if `owed` and publishes; `Some(next)`
    /// when it did not succeed (held or failed), `None` when the published
    /// configuration is now made from `instances`.
    async fn make(&mut self, owed: Owed, instances: Instances) -> Option<Owed> {
        if let Some(hold) = owed.hold(Instant::now()) {
            // The same inputs would fail the same way (or the machine needs
            // a rest): keep the last good configuration, run nothing.
            self.emit(events::ModuleHeld { until: &hold });
            return Some(owed);
        }
        if owed == Owed::Nothing {
            return None;
        }
        if instances.is_empty()
            && self
                .clouds
                .iter()
                .all(|c| c.withdrawn || c.confirmed.is_none())
        {
            // Every cloud is past max_stale or has never answered: nothing
            // is routed any more, as before the first sync (an empty
            // configuration would make Traefik drop every route).
            if self.publisher.current().is_some() {
                let why = format!(
                    "no cloud refreshed successfully for more than max_stale ({})",
                    humantime::format_duration(self.max_stale)
                );
                self.emit(events::Withdrawn { why: &why });
                self.publisher.withdraw(why);
            }
            return None;
        }
        let interval = self.clouds.iter().map(|c| c.refresh_interval).min();
        match self.generate(self.module.clone(), instances.clone()).await {
            Ok(generated) => {
                if self
                    .publisher
                    .current()
                    .is_some_and(|c| c.recovered.is_some())
                {
                    self.emit(events::StaleReplaced);
                }
                self.publish(instances, generated);
                self.publisher.update_status(|s| s.withdrawn = None);
                self.kept.module_failure = None;
                None
            }
            Err(e) => {
                let message = format!("{}: {e}", self.module.source);
                self.kept.module_failure = Some(message.clone());
                let next = owed.failed(
                    &e,
                    Instant::now(),
                    interval.unwrap_or(Duration::from_secs(10)),
                );
                self.emit(events::ModuleFailed {
                    reason: e.reason(),
                    error: &message,
                });
                let hold = next.hold(Instant::now());
                self.publisher.update_status(|s| {
                    s.refresh_error = Some(message);
                    s.module_retry = hold;
                });
                Some(next)
            }
        }
    }

    /// Stops routing what OpenStack has not confirmed for `max_stale`: a
    /// cloud's instances, or the configuration recovered at start.
    fn withdraw_expired(&mut self) {
        let now = Instant::now();
        for (n, cloud) in self.clouds.iter_mut().enumerate() {
            let Some((at, wall)) = cloud.confirmed else {
                continue;
            };
            if !cloud.withdrawn && now.duration_since(at) > self.max_stale {
                cloud.withdrawn = true;
                events::CloudWithdrawn {
                    cloud: &cloud.name,
                    since: &state::rfc3339(wall),
                    max_stale: self.max_stale,
                }
                .emit(&self.metrics);
                self.publisher.update_status(|s| {
                    if let Some(c) = s.clouds.get_mut(n) {
                        c.withdrawn = true;
                        c.instances = 0;
                    }
                });
            }
        }
        let recovered = self.publisher.current().and_then(|c| c.recovered.clone());
        if let Some(r) = recovered
            && SystemTime::now()
                .duration_since(r.confirmed_at)
                .is_ok_and(|age| age > self.max_stale)
        {
            let why = format!(
                "the configuration recovered from {} was last confirmed by OpenStack at {}, more than max_stale ({}) ago",
                r.file,
                state::rfc3339(r.confirmed_at),
                humantime::format_duration(self.max_stale)
            );
            self.emit(events::Withdrawn { why: &why });
            self.publisher.withdraw(why);
        }
    }

    /// The instances of every cloud as the module gets them; `None` while
    /// there is nothing to make a configuration from: no cloud has answered
    /// yet, some cloud's first listing has not ended yet (at start-up, a
    /// configuration without its instances would make Traefik drop their
    /// routes until it answers), or a recovered configuration is served and
    /// some cloud has not answered yet.
    fn merged(&mut self) -> Option<Instances> {
        let answered = |c: &Cloud| c.confirmed.is_some();
        let heard_from = |c: &Cloud| c.confirmed.is_some() || c.error.is_some();
        let recovered = self
            .publisher
            .current()
            .is_some_and(|c| c.recovered.is_some());
        if !self.clouds.iter().any(answered)
            || !self.clouds.iter().all(heard_from)
            || (recovered && !self.clouds.iter().all(answered))
        {
            return None;
        }
        let lists: Vec<Instances> = self.clouds.iter().map(Cloud::instances).collect();
        if let Some((from, merged)) = &self.kept.merged
            && from.len() == lists.len()
            && from.iter().zip(&lists).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return Some(merged.clone());
        }
        let (merged, duplicates) = merge(&lists);
        self.kept.merged = Some((lists.clone(), merged.clone()));
        let mut dropped = vec![0; lists.len()];
        for (n, _, _) in &duplicates {
            dropped[*n] += 1;
        }
        let names: Vec<(&str, usize)> = self
            .clouds
            .iter()
            .zip(&lists)
            .zip(&dropped)
            .map(|((c, l), d)| (c.name.as_str(), l.len() - d))
            .collect();
        let pairs: Vec<(&str, &str, &str)> = duplicates
            .iter()
            .map(|(n, k, i)| {
                (
                    self.clouds[*n].name.as_str(),
                    self.clouds[*k].name.as_str(),
                    &*i.id,
                )
            })
            .collect();
        self.emit(events::CloudsMerged {
            clouds: &names,
            duplicates: &pairs,
        });
        let counts: Vec<(usize, usize)> = names.iter().map(|(_, n)| *n).zip(dropped).collect();
        self.publisher.update_status(|s| {
            for (c, (n, d)) in s.clouds.iter_mut().zip(counts) {
                c.instances = n;
                c.duplicates = d;
            }
        });
        Some(merged)
    }

    /// Hands the served configuration to the state file writer when it
    /// changed, or when its confirmation is older than a tenth of
    /// `max_stale` (so that a restart after a quiet day still finds it
    /// fresh enough).
    fn save_state(&mut self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let Some(snapshot) = self.publisher.current() else {
            return;
        };
        if snapshot.recovered.is_some() {
            return;
        }
        // The oldest confirmation among the clouds it was made from.
        let Some(confirmed_at) = self
            .clouds
            .iter()
            .filter(|c| !c.withdrawn)
            .filter_map(|c| c.confirmed.map(|(_, wall)| wall))
            .min()
        else {
            return;
        };
        // A write that failed (a disk full for a moment, say) is tried
        // again at the next refresh, not a tenth of max_stale later.
        let due = match &self.kept.saved {
            _ if self.publisher.state_file_failing() => true,
            Some((etag, at)) => {
                *etag != snapshot.etag
                    || confirmed_at
                        .duration_since(*at)
                        .is_ok_and(|d| d > self.max_stale / 10)
            }
            None => true,
        };
        if !due {
            return;
        }
        self.kept.saved = Some((snapshot.etag.clone(), confirmed_at));
        let writer = self.kept.writer.get_or_insert_with(|| {
            spawn_state_writer(path.clone(), self.publisher.clone(), self.metrics.clone())
        });
        let module = describe(&self.module);
        writer.send_replace(Some(ToSave {
            snapshot,
            confirmed_at,
            module,
        }));
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
        let (generated, work) = tokio::task::spawn_blocking(move || {
            if module.is_phased() {
                let mut cache = lock_cache(&cache);
                let (generated, work) = cache.run(&engine, &module, &settings, &instances)?;
                crate::memory::after_run(work.routed);
                Ok((generated, work))
            } else {
                let generated = engine.generate(&module, &settings, &instances)?;
                // A phased module's cache is of no use to this one.
                *lock_cache(&cache) = Incremental::default();
                crate::memory::after_run(instances.len());
                let work = Work {
                    routed: instances.len(),
                    ..Work::default()
                };
                Ok((generated, work))
            }
        })
        .await
        .unwrap_or_else(|e| Err(GenerateError::Trap(format!("generate task failed: {e}"))))?;
        self.emit(events::ModuleRan {
            duration: generated.duration,
            work,
        });
        Ok(generated)
    }

    /// Routes the pages of this refresh's listings as they arrive, into
    /// the cache the run that follows uses: at start-up most of the work is
    /// done by the time the last page is in.
    fn start_primer(&self) -> Primer {
        let (feed, pages) = std::sync::mpsc::channel::<Vec<Arc<crate::wit::Instance>>>();
        let (engine, module) = (self.engine.clone(), self.module.clone());
        let (settings, cache) = (self.settings.clone(), self.incremental.clone());
        let generation = self.kept.module_generation.clone();
        let started = generation.load(std::sync::atomic::Ordering::SeqCst);
        let done = tokio::task::spawn_blocking(move || {
            while let Ok(mut page) = pages.recv() {
                // Pages that came in while the last ones were routed go
                // together: fewer, fuller batches for the cores.
                for more in pages.try_iter() {
                    page.extend(more);
                }
                let mut cache = lock_cache(&cache);
                // Another module is being tried (checked under the cache's
                // lock, which its run takes): priming with this one would
                // reset the cache to it.
                if generation.load(std::sync::atomic::Ordering::SeqCst) != started {
                    break;
                }
                if let Err(e) = cache.prime(&engine, &module, &settings, &page) {
                    // The run meets it again, and reports it.
                    tracing::debug!(error = %e, "routing pages as they arrive stopped");
                    break;
                }
            }
        });
        Primer { feed, done }
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
        report_cache_write(&self.engine, &self.publisher, &self.metrics);
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
        self.kept
            .module_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let instances = self.merged().unwrap_or_default();
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
                // Before the first sync there is nothing to publish yet (a
                // recovered configuration stays until the clouds answer).
                let published = self
                    .publisher
                    .current()
                    .is_some_and(|c| c.recovered.is_none());
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

/// The incremental cache; one a panic left half-applied starts over.
fn lock_cache(cache: &Mutex<Incremental>) -> std::sync::MutexGuard<'_, Incremental> {
    cache.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        *guard = Incremental::default();
        cache.clear_poison();
        guard
    })
}

/// See [`SyncLoop::start_primer`].
struct Primer {
    feed: crate::inventory::Feed,
    done: JoinHandle<()>,
}

impl Primer {
    /// Waits for the pages handed on so far to be routed.
    async fn finish(self) {
        drop(self.feed);
        let _ = self.done.await;
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

    /// The same cloud and module, a fresh process: a new publisher, loop and metrics.
    async fn rig_restarted(old: Rig) -> Rig {
        let mut rig = rig().await;
        rig.fake = old.fake;
        rig.list_with(OpenStackConfig::default());
        rig
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
            module_stamp: Some(FileStamp::of(module_file.path())),
            settings: "{}".into(),
            config_file: None,
            clouds: vec![Cloud::new(
                "fake/RegionOne".into(),
                Inventory::new(client, &cfg),
                Duration::from_secs(10),
            )],
            publisher,
            metrics,
            max_stale: Duration::from_secs(86_400),
            state_file: None,
            reload: Arc::new(Notify::new()),
            kept: Kept::default(),
        };
        Rig {
            fake,
            sync,
            state,
            module_file,
        }
    }

    impl Rig {
        /// A new inventory of the rig's cloud, listing with `cfg` (and the
        /// rig's short request timeout).
        fn list_with(&mut self, cfg: OpenStackConfig) {
            self.list_as(OpenStackConfig {
                request_timeout: Duration::from_millis(300),
                ..cfg
            });
        }

        /// A new inventory of the rig's cloud, listing with `cfg` as it is.
        fn list_as(&mut self, cfg: OpenStackConfig) {
            let client = OpenStack::new(
                self.fake.cloud_config(),
                cfg.request_timeout,
                self.state.metrics.clone(),
            )
            .unwrap();
            self.sync.clouds[0].inventory = Some(Inventory::new(client, &cfg));
        }

        fn get(&self, path: &str) -> (StatusCode, String, Option<String>) {
            get(&self.state, path)
        }

        fn publisher_status(&self, f: impl FnOnce(&mut crate::publish::Status)) {
            self.state.publisher.update_status(f);
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

    /// `path` from the handler: status, body, ETag.
    fn get(state: &AppState, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = handle(state, Request::get(path).body(()).unwrap());
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

    /// The loop running in a task, and what stops it.
    fn run_loop(sync: SyncLoop) -> (Arc<Notify>, JoinHandle<()>) {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(sync.run({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        (stop, task)
    }

    /// Signals `stop`, and fails with `waited` unless the loop ends within
    /// two seconds.
    async fn stops_at_once(stop: &Notify, loop_task: JoinHandle<()>, waited: &str) {
        stop.notify_one();
        tokio::time::timeout(Duration::from_secs(2), loop_task)
            .await
            .expect(waited)
            .unwrap();
    }

    /// A second cloud for the rig; the rig's own is "a".
    fn add_cloud(rig: &mut Rig, name: &str, fake: &FakeCloud) {
        add_cloud_timing_out(rig, name, fake, Duration::from_millis(300));
    }

    /// [`add_cloud`] with requests timing out after `request_timeout`.
    fn add_cloud_timing_out(
        rig: &mut Rig,
        name: &str,
        fake: &FakeCloud,
        request_timeout: Duration,
    ) {
        let cfg = OpenStackConfig {
            request_timeout,
            ..OpenStackConfig::default()
        };
        let client = OpenStack::new(
            fake.cloud_config(),
            cfg.request_timeout,
            rig.state.metrics.clone(),
        )
        .unwrap();
        rig.sync.clouds[0].name = "a".into();
        rig.sync.clouds.push(Cloud::new(
            name.into(),
            Inventory::new(client, &cfg),
            Duration::from_secs(10),
        ));
        rig.sync.init_cloud_status();
    }

    fn full_sync_all(rig: &mut Rig) {
        for c in &mut rig.sync.clouds {
            c.inventory.as_mut().unwrap().request_full_sync();
        }
    }

    /// Cloud `n` last answered longer ago than the `max_stale` of 60 s the
    /// tests that use this set.
    fn silent_past_max_stale(rig: &mut Rig, n: usize) {
        let past = Instant::now().checked_sub(Duration::from_secs(61)).unwrap();
        rig.sync.clouds[n].confirmed = Some((past, SystemTime::now()));
    }

    /// Cloud a (the rig's) silent past max_stale, and the next listing of
    /// both it and `b` failing: refreshed.
    async fn silence_a_and_fail_every_listing(rig: &mut Rig, b: &FakeCloud) {
        silent_past_max_stale(rig, 0);
        rig.fake
            .fault("/servers/detail", 0, Canned::status(503, "{}"));
        b.fault("/servers/detail", 0, Canned::status(503, "{}"));
        full_sync_all(rig);
        rig.sync.refresh_once(Owed::Nothing).await;
    }

    /// Nothing is served, and `/readyz` says the configuration was withdrawn.
    fn assert_withdrawn(rig: &Rig) {
        assert_eq!(rig.get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
        let (status, ready) = readyz(rig);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            ready["reason"].as_str().unwrap().starts_with("withdrawn: "),
            "{ready}"
        );
    }

    fn readyz(rig: &Rig) -> (StatusCode, serde_json::Value) {
        let (status, body, _) = rig.get("/readyz");
        (status, serde_json::from_str(&body).unwrap())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_clouds_are_merged_and_a_failing_one_keeps_its_instances() {
        let mut rig = rig().await;
        let b = FakeCloud::start().await;
        // id-2 in both: the same id in two clouds must not collide.
        b.set_servers(vec![
            server("id-2", "vm-b2", "2024-01-01T00:00:00Z"),
            server("id-9", "vm-b9", "2024-01-01T00:00:00Z"),
        ]);
        add_cloud(&mut rig, "b", &b);
        assert_eq!(rig.sync.refresh_once(Owed::Run).await, Owed::Nothing);
        let (_, body, _) = rig.get("/traefik");
        for vm in ["vm-1", "vm-2", "vm-b9"] {
            assert!(body.contains(vm), "{vm}: {body}");
        }
        assert!(!body.contains("vm-b2"), "{body}");
        let (_, instances, _) = rig.get("/api/instances");
        let instances: serde_json::Value = serde_json::from_str(&instances).unwrap();
        let ids: Vec<&str> = instances
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["id-1", "id-2", "id-9"]);
        let (status, ready) = readyz(&rig);
        assert_eq!(status, StatusCode::OK, "{ready}");
        assert_eq!(ready["clouds"][0]["name"], "a");
        assert_eq!(ready["clouds"][0]["instances"], 2);
        assert_eq!(ready["clouds"][1]["instances"], 1);
        assert_eq!(ready["clouds"][1]["duplicates"], 1);

        // b fails; a changes: a's change shows, b's instances stay.
        rig.fake.with(|s| {
            s.servers
                .push(server("id-3", "vm-3", "2024-01-02T00:00:00Z"))
        });
        b.fault("/servers/detail", 0, Canned::status(500, "{}"));
        full_sync_all(&mut rig);
        rig.sync.refresh_once(Owed::Nothing).await;
        let (_, body, _) = rig.get("/traefik");
        for vm in ["vm-1", "vm-2", "vm-3", "vm-b9"] {
            assert!(body.contains(vm), "{vm}: {body}");
        }
        let (status, ready) = readyz(&rig);
        assert_eq!(
            ready["clouds"][1]["error"]
                .as_str()
                .map(|e| e.contains("500")),
            Some(true),
            "{ready}"
        );
        assert_eq!(
            ready["clouds"][0]["error"],
            serde_json::Value::Null,
            "{ready}"
        );
        assert!(
            ready["refresh_error"]
                .as_str()
                .unwrap()
                .starts_with("cloud b:"),
            "{ready}"
        );
        // Still within its limit: b is only reported, a is fresh.
        assert_eq!(status, StatusCode::OK, "{ready}");
        let metrics = rig.state.metrics.encode();
        assert!(metrics.contains(r#"cloud_up{cloud="b"} 0"#), "{metrics}");
        assert!(metrics.contains(r#"cloud_up{cloud="a"} 1"#), "{metrics}");
        assert!(
            metrics.contains(r#"cloud_instances{cloud="a"} 3"#),
            "{metrics}"
        );

        // Past its limit, b makes the sidecar not ready, by name.
        rig.publisher_status(|s| {
            s.clouds[1].last_success = Instant::now().checked_sub(Duration::from_secs(31))
        });
        let (status, ready) = readyz(&rig);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let reason = ready["reason"].as_str().unwrap();
        assert!(
            reason.contains("cloud b: stale") && reason.contains("500"),
            "{reason}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_cloud_silent_for_max_stale_is_withdrawn_and_comes_back() {
        let mut rig = rig().await;
        let b = FakeCloud::start().await;
        b.set_servers(vec![server("id-9", "vm-b9", "2024-01-01T00:00:00Z")]);
        add_cloud(&mut rig, "b", &b);
        rig.sync.max_stale = Duration::from_secs(60);
        rig.sync.refresh_once(Owed::Run).await;
        // b has not answered for longer than max_stale.
        silent_past_max_stale(&mut rig, 1);
        b.fault("/servers/detail", 0, Canned::status(503, "{}"));
        full_sync_all(&mut rig);
        rig.sync.refresh_once(Owed::Nothing).await;
        let (status, body, _) = rig.get("/traefik");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vm-1") && !body.contains("vm-b9"), "{body}");
        let (_, ready) = readyz(&rig);
        assert_eq!(ready["clouds"][1]["withdrawn"], true, "{ready}");

        // a too: nothing is served any more.
        silence_a_and_fail_every_listing(&mut rig, &b).await;
        assert_withdrawn(&rig);

        // Both answer again: everything is back.
        full_sync_all(&mut rig);
        rig.sync.refresh_once(Owed::Nothing).await;
        let (status, body, _) = rig.get("/traefik");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vm-1") && body.contains("vm-b9"), "{body}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_module_file_replaced_while_the_first_compiled_goes_live() {
        let Rig {
            fake: _fake,
            sync,
            state,
            module_file,
        } = rig().await;
        let first = describe(&sync.module);
        // Replaced after it was read at start-up, before the loop ran.
        std::fs::copy(crate::testing::test_policy(None), module_file.path()).unwrap();
        let (stop, loop_task) = run_loop(sync);
        let deadline = Instant::now() + Duration::from_secs(30);
        while state.publisher.readiness().status.module == first {
            assert!(
                Instant::now() < deadline,
                "the replaced file never went live: still {first}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.notify_one();
        loop_task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_shutdown_does_not_wait_for_a_listing() {
        let mut rig = rig().await;
        // Nova answers in 20 s, within the request timeout.
        rig.list_as(OpenStackConfig {
            request_timeout: Duration::from_secs(30),
            ..OpenStackConfig::default()
        });
        let mut slow = Canned::status(200, r#"{"servers": []}"#);
        slow.delay = Duration::from_secs(20);
        rig.fake.fault("/servers/detail", 0, slow);
        let Rig { fake, sync, .. } = rig;
        let (stop, loop_task) = run_loop(sync);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fake
            .take_requests()
            .iter()
            .any(|r| r.path.contains("/servers/detail"))
        {
            assert!(Instant::now() < deadline, "the listing never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stops_at_once(&stop, loop_task, "the loop waited for the listing to end").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_slow_cloud_holds_up_neither_another_clouds_changes_nor_a_shutdown() {
        let mut rig = rig().await;
        let b = FakeCloud::start().await;
        add_cloud_timing_out(&mut rig, "b", &b, Duration::from_secs(60));
        for c in &mut rig.sync.clouds {
            c.refresh_interval = Duration::from_millis(200);
        }
        // b answers its first listing in 2 s, and its second in 30 s.
        let b_servers = serde_json::json!({
            "servers": [server("id-9", "vm-b9", "2024-01-01T00:00:00Z")]
        });
        let slow = |secs| {
            let mut reply = Canned::status(200, &b_servers.to_string());
            reply.delay = Duration::from_secs(secs);
            reply
        };
        b.fault("/servers/detail", 0, slow(2));
        b.fault("/servers/detail", 1, slow(30));
        let Rig {
            fake, sync, state, ..
        } = rig;
        let get = |path: &str| {
            let (status, body, _) = get(&state, path);
            (status, body)
        };
        let (stop, loop_task) = run_loop(sync);
        let eventually = async |what: &str, f: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !f() {
                assert!(Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };

        // At start, the first configuration waits for b: without b's VMs
        // it would make Traefik drop their routes.
        eventually("a was never listed", &|| {
            let ready: serde_json::Value = serde_json::from_str(&get("/readyz").1).unwrap();
            ready["clouds"][0]["last_success_at"].is_string()
        })
        .await;
        assert_eq!(get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
        eventually("the first configuration never came", &|| {
            let (status, body) = get("/traefik");
            status == StatusCode::OK && body.contains("vm-1") && body.contains("vm-b9")
        })
        .await;

        // b's next listing hangs for 30 s: a's new VM is served meanwhile.
        fake.with(|s| {
            s.servers
                .push(server("id-3", "vm-3", "2099-01-01T00:00:00Z"))
        });
        eventually("a's change waited for b", &|| {
            get("/traefik").1.contains("vm-3")
        })
        .await;
        assert!(get("/traefik").1.contains("vm-b9"));
        stops_at_once(&stop, loop_task, "the loop waited for b's listing to end").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_listing_routes_pages_ahead_only_while_its_module_is_the_one_tried() {
        let rig = rig().await;
        let page: Vec<Arc<crate::wit::Instance>> = crate::testing::synthetic::wit_instances(20)
            .into_iter()
            .map(Arc::new)
            .collect();
        let primed_by = |swap: bool| {
            let page = page.clone();
            let sync = &rig.sync;
            async move {
                *lock_cache(&sync.incremental) = Incremental::default();
                let primer = sync.start_primer();
                if swap {
                    // as `adopt` does when another module is tried
                    sync.kept
                        .module_generation
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                primer.feed.send(page.clone()).unwrap();
                primer.finish().await;
                let (_, work) = lock_cache(&sync.incremental)
                    .run(&sync.engine, &sync.module, &sync.settings, &page)
                    .unwrap();
                work.primed
            }
        };
        assert_eq!(primed_by(false).await, 20);
        assert_eq!(primed_by(true).await, 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_last_cloud_withdrawn_withdraws_all_though_another_never_answered() {
        let mut rig = rig().await;
        let b = FakeCloud::start().await;
        add_cloud(&mut rig, "b", &b);
        rig.sync.max_stale = Duration::from_secs(60);
        b.fault("/servers/detail", 0, Canned::status(503, "{}"));
        rig.sync.refresh_once(Owed::Run).await;
        let (status, body, _) = rig.get("/traefik");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vm-1"), "{body}");

        // a silent for longer than max_stale, b still never answered: no
        // cloud contributes, and an empty configuration would drop every
        // route Traefik has.
        silence_a_and_fail_every_listing(&mut rig, &b).await;
        assert_withdrawn(&rig);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_state_file_is_served_at_start_until_the_cloud_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut rig = rig().await;
        rig.sync.state_file = Some(path.clone());
        rig.sync.refresh_once(Owed::Run).await;
        let (_, served, _) = rig.get("/traefik");
        // The writer runs beside the loop: wait for it.
        let saved = loop {
            if let Ok(saved) = state::read(&path, Duration::from_secs(60), SystemTime::now()) {
                break saved;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(saved.body.to_bytes(), served.as_bytes());
        assert_eq!((saved.instances, saved.routed), (2, 2));
        assert!(saved.module.contains("sha256"), "{}", saved.module);
        while !rig
            .state
            .metrics
            .encode()
            .contains(r#"state_file_writes_total{outcome="ok"} 1"#)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A restart while the cloud is down: the saved body, at once.
        let mut rig = rig_restarted(rig).await;
        rig.sync.state_file = Some(path.clone());
        recover_state(
            &path,
            Duration::from_secs(60),
            &rig.state.publisher,
            &rig.state.metrics,
        );
        // The same bytes (the entity tag may differ: it follows the chunks).
        let (status, body, _) = rig.get("/traefik");
        assert_eq!((status, &body), (StatusCode::OK, &served));
        let (status, ready) = readyz(&rig);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let since = state::rfc3339(saved.confirmed_at);
        assert_eq!(ready["stale_since"], since.as_str(), "{ready}");
        assert!(
            ready["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("stale since {since}")),
            "{ready}"
        );
        assert!(
            rig.state
                .metrics
                .encode()
                .contains("stale_since_timestamp_seconds 1")
        );
        rig.fake
            .fault("/servers/detail", 0, Canned::status(500, "{}"));
        rig.sync.refresh_once(Owed::Run).await;
        assert_eq!(rig.get("/traefik").1, served, "kept while the cloud fails");

        // The cloud answers (one VM fewer): the fresh configuration replaces it.
        rig.fake.with(|s| s.servers.truncate(1));
        rig.sync.refresh_once(Owed::Run).await;
        let (_, body, _) = rig.get("/traefik");
        assert!(!body.contains("vm-2") && body.contains("vm-1"), "{body}");
        let (status, ready) = readyz(&rig);
        assert_eq!(status, StatusCode::OK, "{ready}");
        assert_eq!(ready["stale_since"], serde_json::Value::Null);
        assert!(
            rig.state
                .metrics
                .encode()
                .contains("stale_since_timestamp_seconds 0")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_recovered_configuration_waits_for_every_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let now = SystemTime::now();
        let recovered = "{\"http\":{\"routers\":{\"from-file\":{}}}}";
        state::write(
            &path,
            &Saved {
                body: recovered.into(),
                made_at: now,
                confirmed_at: now,
                module: "m".into(),
                instances: 3,
                routed: 3,
            },
        )
        .unwrap();
        let mut rig = rig().await;
        let b = FakeCloud::start().await;
        b.set_servers(vec![server("id-9", "vm-b9", "2024-01-01T00:00:00Z")]);
        add_cloud(&mut rig, "b", &b);
        recover_state(
            &path,
            Duration::from_secs(60),
            &rig.state.publisher,
            &rig.state.metrics,
        );
        // a answers, b does not: a's instances alone would drop b's routes.
        b.fault("/v3/auth/tokens", 0, Canned::status(503, "{}"));
        rig.sync.refresh_once(Owed::Run).await;
        assert_eq!(rig.get("/traefik").1, recovered);
        let (_, ready) = readyz(&rig);
        assert!(!ready["stale_since"].is_null(), "{ready}");
        // Both have answered: the configuration is made from them.
        rig.sync.refresh_once(Owed::Nothing).await;
        let (_, body, _) = rig.get("/traefik");
        assert!(body.contains("vm-1") && body.contains("vm-b9"), "{body}");
        assert!(!body.contains("from-file"), "{body}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_state_file_that_cannot_be_written_is_reported_and_serving_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state");
        let mut rig = rig().await;
        rig.sync.state_file = Some(path.clone());
        rig.sync.refresh_once(Owed::Run).await;
        let ready = loop {
            let (_, ready) = readyz(&rig);
            if !ready["state_file_error"].is_null() {
                break ready;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let error = ready["state_file_error"].as_str().unwrap();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert_eq!(rig.get("/traefik").0, StatusCode::OK);
        let metrics = rig.state.metrics.encode();
        assert!(metrics.contains("state_file_ok 0"), "{metrics}");
        assert!(
            metrics.contains(r#"state_file_writes_total{outcome="error"} 1"#),
            "{metrics}"
        );

        // The disk is back: the next refresh writes it, though nothing
        // changed.
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        rig.sync.refresh_once(Owed::Nothing).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !readyz(&rig).1["state_file_error"].is_null() {
            assert!(
                Instant::now() < deadline,
                "the state file was not written again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let saved = state::read(&path, Duration::from_secs(60), SystemTime::now()).unwrap();
        assert_eq!(saved.body.to_bytes(), rig.get("/traefik").1.as_bytes());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_recovered_configuration_is_withdrawn_after_max_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let confirmed = SystemTime::now() - Duration::from_secs(30);
        state::write(
            &path,
            &Saved {
                body: "{\"http\":{}}".into(),
                made_at: confirmed,
                confirmed_at: confirmed,
                module: "m".into(),
                instances: 1,
                routed: 1,
            },
        )
        .unwrap();
        let mut rig = rig().await;
        // Too old for a limit of 10 s: not served at all.
        recover_state(
            &path,
            Duration::from_secs(10),
            &rig.state.publisher,
            &rig.state.metrics,
        );
        assert_eq!(rig.get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
        // Young enough for a minute, then the limit is lowered under its age.
        recover_state(
            &path,
            Duration::from_secs(60),
            &rig.state.publisher,
            &rig.state.metrics,
        );
        assert_eq!(rig.get("/traefik").0, StatusCode::OK);
        rig.sync.max_stale = Duration::from_secs(10);
        rig.fake
            .fault("/v3/auth/tokens", 0, Canned::status(500, "{}"));
        rig.sync.refresh_once(Owed::Run).await;
        assert_eq!(rig.get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
        let (_, ready) = readyz(&rig);
        let reason = ready["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("withdrawn: ") && reason.contains(&path.display().to_string()),
            "{reason}"
        );

        // A damaged file is a warning, and start-up goes on without it.
        std::fs::write(&path, "garbage").unwrap();
        let rig = rig_restarted(rig).await;
        recover_state(
            &path,
            Duration::from_secs(60),
            &rig.state.publisher,
            &rig.state.metrics,
        );
        assert_eq!(rig.get("/traefik").0, StatusCode::SERVICE_UNAVAILABLE);
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
            rig.sync.clouds[0]
                .inventory
                .as_mut()
                .unwrap()
                .request_full_sync();
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
        rig.sync.clouds[0]
            .inventory
            .as_mut()
            .unwrap()
            .request_full_sync();
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

        // An outage meanwhile is reported, and once the cloud answers again
        // the module's failure is what holds the configuration back.
        rig.fake
            .fault("/servers/detail", 0, Canned::status(500, "{}"));
        assert_eq!(rig.sync.refresh_once(owed).await, held);
        let error = |rig: &Rig| super::tests::readyz(rig).1["refresh_error"].to_string();
        assert!(error(&rig).contains("500"), "{}", error(&rig));
        assert_eq!(rig.sync.refresh_once(owed).await, held);
        let shown = error(&rig);
        assert!(shown.contains("trap") && !shown.contains("500"), "{shown}");
        assert_eq!(failed_runs(&rig), 1, "held: not run again");

        // New instances are new inputs: it runs again.
        rig.fake.with(|s| s.servers.truncate(1));
        rig.sync.clouds[0]
            .inventory
            .as_mut()
            .unwrap()
            .request_full_sync();
        assert_eq!(rig.sync.refresh_once(owed).await, held);
        assert_eq!(failed_runs(&rig), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn readiness_names_a_module_failing_on_new_instances() {
        let mut rig = rig().await;
        rig.sync.refresh_once(Owed::Run).await;
        let trap = crate::testing::test_policy(Some("trap"));
        rig.sync.module = Arc::new(rig.sync.engine.load_file(&trap).unwrap());
        rig.sync.clouds[0]
            .inventory
            .as_mut()
            .unwrap()
            .request_full_sync();
        let owed = rig.sync.refresh_once(Owed::Nothing).await;
        assert!(matches!(owed, Owed::Failed { .. }), "{owed:?}");
        // The last good configuration ages: the clouds answer, the module
        // is what lags.
        let past = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap();
        rig.publisher_status(|s| s.last_success = Some(past));
        let (status, ready) = readyz(&rig);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ready["reason"],
            "stale: the route module fails on the current instances (not run again until the instances, the module or its settings change); the configuration served is older"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_listing_is_routed_page_by_page_and_a_change_alone() {
        let mut rig = rig().await;
        assert!(
            rig.sync.module.is_phased(),
            "the built-in module has phases"
        );
        rig.fake.set_servers(crate::testing::fake_cloud::servers(7));
        rig.fake.with(|s| {
            s.date = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)); // 2024-01-01
        });
        rig.list_with(OpenStackConfig {
            page_size: 2,
            ..OpenStackConfig::default()
        });
        let routed = |rig: &Rig, when: &'static str| {
            rig.state
                .metrics
                .routed_instances
                .get_or_create(&crate::metrics::WhenLabels { when })
                .get()
        };

        // Four pages: every instance is routed as its page comes in, and
        // the run after the listing only joins them.
        rig.sync.refresh_once(Owed::Nothing).await;
        assert_eq!((routed(&rig, "listing"), routed(&rig, "run")), (7, 0));
        let (status, body, _) = rig.get("/traefik");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vm-0") && body.contains("vm-6"), "{body}");

        // One renamed server: it alone is routed again.
        rig.fake.with(|s| {
            s.servers[3]["name"] = "vm-3-renamed".into();
            s.servers[3]["updated"] = "2024-01-01T00:01:00Z".into();
        });
        rig.sync.refresh_once(Owed::Nothing).await;
        assert_eq!((routed(&rig, "listing"), routed(&rig, "run")), (8, 0));
        let (_, body, _) = rig.get("/traefik");
        assert!(body.contains("vm-3-renamed"), "{body}");

        // Nothing changed: nothing is routed.
        rig.sync.refresh_once(Owed::Nothing).await;
        assert_eq!((routed(&rig, "listing"), routed(&rig, "run")), (8, 0));
    }

    #[test]
    fn merge_keeps_the_arcs_sorts_by_id_and_takes_a_repeated_id_from_the_first_cloud() {
        let inst = |id: &str, cloud: &str| {
            Arc::new(crate::wit::Instance {
                id: id.into(),
                cloud: cloud.into(),
                ..crate::testing::synthetic::wit_instances(1)[0].clone()
            })
        };
        let a: Instances = Arc::new(vec![inst("1", "a"), inst("3", "a")]);
        let b: Instances = Arc::new(vec![inst("2", "b"), inst("3", "b"), inst("4", "b")]);
        let (one, none) = merge(std::slice::from_ref(&a));
        assert!(Arc::ptr_eq(&one, &a) && none.is_empty());
        let (merged, dups) = merge(&[a.clone(), b.clone()]);
        let got: Vec<(&str, &str)> = merged.iter().map(|i| (&*i.id, &*i.cloud)).collect();
        assert_eq!(got, [("1", "a"), ("2", "b"), ("3", "a"), ("4", "b")]);
        assert!(Arc::ptr_eq(&merged[2], &a[1]) && Arc::ptr_eq(&merged[3], &b[2]));
        assert_eq!(dups.len(), 1);
        assert_eq!((dups[0].0, dups[0].1, &*dups[0].2.cloud), (1, 0, "b"));
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
        rig.sync.clouds[0]
            .inventory
            .as_mut()
            .unwrap()
            .request_full_sync();
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
            rig.sync.clouds[0]
                .inventory
                .as_mut()
                .unwrap()
                .request_full_sync();
            rig.sync.refresh_once(Owed::Nothing).await;
            rig.fake.with(|s| s.servers.pop());
            rig.sync.clouds[0]
                .inventory
                .as_mut()
                .unwrap()
                .request_full_sync();
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
