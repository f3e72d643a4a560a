//! The last good configuration and what the server needs to serve it.
//!
//! A snapshot is replaced only by a newer successful generate; failures only
//! update the status. Everything the hot path needs (body, gzip body, ETags)
//! is computed once per change, so a poll costs a pointer load.

mod body;
mod hosts;
pub mod kv;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use body::Body;
use serde::Serialize;

use bytes::Bytes;

use crate::chunked::Chunked;
use crate::engine::sandbox::LogLine;
use crate::engine::{Findings, Generated, Route};
use crate::inventory::Instances;
use crate::wit::{self, Instance};

/// One published configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration, as served: the chunks the engine wrote
    /// (`to_bytes` gives it whole).
    pub body: Chunked,
    /// The same, gzip-compressed.
    pub gzip: Bytes,
    /// The entity tag of `body`.
    pub etag: String,
    /// The entity tag of `gzip`.
    pub etag_gzip: String,
    /// When the module made this configuration (wall clock).
    pub made_at: SystemTime,
    /// Recovered from the state file at start, not made from what
    /// OpenStack says now: served only until the first sync, or until
    /// `max_stale` after `confirmed_at`. A store publishing snapshots
    /// decides whether it writes such a one.
    pub recovered: Option<Recovered>,
    /// Instances it was made from (for a recovered one: as recorded).
    pub instance_count: usize,
    /// Instances with at least one router.
    pub routed: usize,
    /// Kept to answer `/api/instances` on demand: shared with the
    /// inventory, so holding it costs no copy.
    instances: Instances,
    findings: Findings,
    /// What the module printed in the run that made this configuration.
    module_logs: Vec<LogLine>,
    /// The body in chunks, for the next snapshot to reuse.
    encoded: Body,
}

impl Snapshot {
    /// Takes the generate output by value: the configuration's chunks
    /// become the served body without a copy. The chunks of the body that
    /// `previous` already had are not hashed or compressed again.
    pub fn new(instances: Instances, generated: Generated, previous: Option<&Snapshot>) -> Self {
        let (encoded, reuse) = Body::new(&generated.config, previous.map(|p| &p.encoded));
        tracing::debug!(?reuse, "body chunks");
        let routed = generated
            .findings
            .routes()
            .filter(|r| !r.routers.is_empty())
            .count();
        Self::of(
            encoded,
            instances,
            generated.findings,
            generated.logs,
            routed,
        )
    }

    /// The configuration saved in a state file, served again until
    /// OpenStack answers. `/api/instances` has no instances to show for it.
    pub fn recovered(saved: &state::Saved, file: &std::path::Path) -> Self {
        let (encoded, _) = Body::new(&saved.body, None);
        let mut s = Self::of(
            encoded,
            Arc::default(),
            Findings::default(),
            Vec::new(),
            saved.routed,
        );
        s.made_at = saved.made_at;
        s.instance_count = saved.instances;
        s.recovered = Some(Recovered {
            confirmed_at: saved.confirmed_at,
            file: file.display().to_string(),
            module: saved.module.clone(),
        });
        s
    }

    fn of(
        encoded: Body,
        instances: Instances,
        findings: Findings,
        module_logs: Vec<LogLine>,
        routed: usize,
    ) -> Self {
        let digest = hex::encode(&encoded.digest[..16]);
        Self {
            etag: format!("\"{digest}\""),
            // A content-coded representation needs its own validator.
            etag_gzip: format!("\"{digest}-gzip\""),
            body: encoded.plain.clone(),
            gzip: encoded.gzip.clone(),
            made_at: SystemTime::now(),
            recovered: None,
            instance_count: instances.len(),
            routed,
            encoded,
            instances,
            findings,
            module_logs,
        }
    }

    /// The `/api/instances` body: what was decided for each instance and why.
    /// Built when asked, since only operators ask.
    pub(crate) fn instances_report(&self) -> Vec<u8> {
        instances_report(&self.instances, &self.findings, &self.body)
    }

    /// The `/api/module` body's `logs`: the module's print debugging.
    pub(crate) fn module_logs(&self) -> &[LogLine] {
        &self.module_logs
    }
}

/// Where a recovered snapshot came from, and until when it may be served.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// When OpenStack last confirmed the instances it was made from.
    pub confirmed_at: SystemTime,
    /// The state file.
    pub file: String,
    /// The module that made it.
    pub module: String,
}

#[derive(Serialize)]
struct InstanceReport<'a> {
    id: &'a str,
    name: &'a str,
    project_id: &'a str,
    status: &'a str,
    addresses: Vec<String>,
    routed: bool,
    address: Option<&'a str>,
    routers: &'a [Box<str>],
    /// The host names its routers answer.
    hosts: Vec<hosts::Link>,
    diagnostics: Vec<DiagnosticReport<'a>>,
}

#[derive(Serialize)]
struct DiagnosticReport<'a> {
    level: &'static str,
    message: &'a str,
}

/// Builds the `/api/instances` body, sorted like the snapshot (by id).
fn instances_report(instances: &[Arc<Instance>], findings: &Findings, config: &Chunked) -> Vec<u8> {
    use std::collections::BTreeMap;
    let links = hosts::by_router(config.reader());
    let routes: BTreeMap<&str, &Route> = findings.routes().map(|r| (&*r.instance_id, r)).collect();
    let mut by_instance: BTreeMap<&str, Vec<DiagnosticReport>> = BTreeMap::new();
    for d in findings.diagnostics() {
        by_instance
            .entry(d.instance_id.as_str())
            .or_default()
            .push(DiagnosticReport {
                level: match d.level {
                    wit::Level::Info => "info",
                    wit::Level::Warning => "warning",
                    wit::Level::Error => "error",
                },
                message: &d.message,
            });
    }
    let report: Vec<InstanceReport> = instances
        .iter()
        .map(|i| {
            let route = routes.get(&*i.id);
            InstanceReport {
                id: &i.id,
                name: &i.name,
                project_id: &i.project_id,
                status: &i.status,
                addresses: i
                    .addresses
                    .iter()
                    .map(|a| {
                        let kind = match a.kind {
                            wit::AddressKind::Fixed => "fixed",
                            wit::AddressKind::Floating => "floating",
                        };
                        format!("{} {} ({kind})", a.network, a.ip)
                    })
                    .collect(),
                routed: route.is_some_and(|r| !r.routers.is_empty()),
                address: route.and_then(|r| r.address.as_deref()),
                routers: route.map_or(&[], |r| &r.routers[..]),
                hosts: {
                    let mut hosts: Vec<hosts::Link> = route
                        .map_or(&[][..], |r| &r.routers[..])
                        .iter()
                        .flat_map(|name| links.get(&**name).into_iter().flatten())
                        .cloned()
                        .collect();
                    hosts.sort_by(|a, b| a.host.cmp(&b.host).then(b.url.cmp(&a.url)));
                    hosts.dedup_by(|a, b| a.host == b.host);
                    hosts
                },
                diagnostics: by_instance.remove(&*i.id).unwrap_or_default(),
            }
        })
        .collect();
    serde_json::to_vec(&report).expect("serialising plain data cannot fail")
}

/// Health of the pipeline, for `/readyz`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Status {
    /// The module in use: its source, version and digest.
    pub(crate) module: String,
    /// Why the last module swap was refused, until a module is accepted.
    pub(crate) module_error: Option<String>,
    /// Why the last refresh failed, until one succeeds.
    pub(crate) refresh_error: Option<String>,
    /// How long the module is not run again after failing on the current
    /// instances ("until the instances, the module or its settings change").
    pub(crate) module_retry: Option<String>,
    #[serde(skip)]
    pub(crate) last_success: Option<Instant>,
    pub(crate) instances: usize,
    /// Each cloud, in the order of the configuration file.
    pub(crate) clouds: Vec<CloudStatus>,
    /// Why the configuration is no longer served (`max_stale` passed).
    pub(crate) withdrawn: Option<String>,
    /// Why the last write of the state file failed, until one succeeds.
    pub(crate) state_file_error: Option<String>,
    /// Why the compiled module could not be written to the compile cache,
    /// until a write succeeds (the module is used all the same).
    pub(crate) compile_cache_error: Option<String>,
    /// The KV stores written to (`[publish.etcd]`, `[publish.redis]`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) stores: std::collections::BTreeMap<&'static str, kv::StoreStatus>,
}

/// One cloud's health, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CloudStatus {
    pub(crate) name: String,
    /// Instances it contributes (0 once withdrawn).
    pub(crate) instances: usize,
    /// Why its last refresh failed, until one succeeds.
    pub(crate) error: Option<String>,
    /// RFC 3339 time of its last successful refresh.
    pub(crate) last_success_at: Option<String>,
    /// Its instances were withdrawn: no successful refresh for `max_stale`.
    pub(crate) withdrawn: bool,
    /// Nova's `Date` less the local clock at its last listing, in seconds.
    pub(crate) clock_offset_seconds: Option<i64>,
    /// Instances it lists that an earlier cloud also lists (ignored here).
    pub(crate) duplicates: usize,
    #[serde(skip)]
    pub(crate) last_success: Option<Instant>,
    /// Without a successful refresh for this long, it is stale.
    #[serde(skip)]
    pub(crate) stale_after: Duration,
}

impl CloudStatus {
    pub(crate) fn new(name: &str, stale_after: Duration) -> Self {
        Self {
            name: name.to_owned(),
            instances: 0,
            error: None,
            last_success_at: None,
            withdrawn: false,
            clock_offset_seconds: None,
            duplicates: 0,
            last_success: None,
            stale_after,
        }
    }
}

/// The last good configuration and the status the server reports, shared by the sync loop and the server.
pub struct Publisher {
    current: ArcSwapOption<Snapshot>,
    status: Mutex<Status>,
    stale_after: Duration,
    /// Bumped on every publish: the KV writer follows it.
    published: tokio::sync::watch::Sender<u64>,
}

/// What `/readyz` says.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    pub(crate) reason: String,
    #[serde(flatten)]
    pub(crate) status: Status,
    pub(crate) seconds_since_success: Option<f64>,
    /// RFC 3339 time since which the served configuration is not what
    /// OpenStack says now (it was recovered from the state file).
    pub(crate) stale_since: Option<String>,
}

impl Publisher {
    /// `stale_after`: without a successful refresh for this long, the
    /// configuration is still served but the sidecar reports not ready.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            stale_after,
            published: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The configuration served now.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Makes `snapshot` the one served.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a snapshot is published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// `/readyz` as JSON (what the server sends).
    pub fn readiness_json(&self) -> serde_json::Value {
        serde_json::to_value(self.readiness()).expect("plain data")
    }

    /// Stops serving any configuration (the endpoint answers 503), saying why.
    pub fn withdraw(&self, why: String) {
        self.current.store(None);
        self.update_status(|s| s.withdrawn = Some(why));
        // The KV writer follows: it deletes what it published.
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether the last write of the state file failed.
    pub(crate) fn state_file_failing(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_file_error
            .is_some()
    }

    pub(crate) fn readiness(&self) -> Readiness {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let age = status.last_success.map(|t| t.elapsed());
        let current = self.current.load();
        let recovered = current.as_ref().and_then(|c| c.recovered.as_ref());
        let stale_since = recovered.map(|r| state::rfc3339(r.confirmed_at));
        let (ready, reason) = if current.is_none() {
            let reason = match &status.withdrawn {
                Some(why) => format!("withdrawn: {why}"),
                None => "no configuration yet: waiting for the first successful sync".to_owned(),
            };
            (false, reason)
        } else if let Some(r) = recovered {
            (
                false,
                format!(
                    "stale since {}: serving the configuration recovered from {} until OpenStack answers",
                    state::rfc3339(r.confirmed_at),
                    r.file
                ),
            )
        } else if let Some(e) = &status.module_error {
            (
                false,
                format!("route module rejected, previous one still serving: {e}"),
            )
        } else if let Some(why) = clouds_not_ready(&status.clouds) {
            (false, why)
        } else if age.is_none_or(|a| a > self.stale_after) {
            let why = match &status.module_retry {
                // The clouds answer; the module is what lags.
                Some(retry) => format!(
                    "stale: the route module fails on the current instances (not run again {retry}); the configuration served is older"
                ),
                None => format!(
                    "stale: no successful refresh for more than {}",
                    humantime::format_duration(self.stale_after)
                ),
            };
            (false, why)
        } else {
            (true, "synced".to_owned())
        };
        drop(current);
        Readiness {
            ready,
            reason,
            seconds_since_success: age.map(|a| a.as_secs_f64()),
            stale_since,
            status,
        }
    }
}

/// Why the clouds make the sidecar not ready, naming each one at fault: a
/// cloud that never answered, or did not for longer than its limit.
fn clouds_not_ready(clouds: &[CloudStatus]) -> Option<String> {
    let faults: Vec<String> = clouds
        .iter()
        .filter_map(|c| {
            let error = c
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            match c.last_success {
                None => Some(format!("cloud {}: not synced yet{error}", c.name)),
                Some(t) if t.elapsed() > c.stale_after => Some(format!(
                    "cloud {}: stale, no successful refresh for more than {}{error}",
                    c.name,
                    humantime::format_duration(c.stale_after)
                )),
                Some(_) => None,
            }
        })
        .collect();
    (!faults.is_empty()).then(|| faults.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_follows_content_and_gzip_roundtrips() {
        let a = Snapshot::new(Arc::default(), Generated::of_config("{\"http\":{}}"), None);
        let b = Snapshot::new(Arc::default(), Generated::of_config("{\"http\":{}}"), None);
        let c = Snapshot::new(Arc::default(), Generated::of_config("{}"), None);
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert_ne!(a.etag, a.etag_gzip);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&a.gzip[..]), &mut out)
            .unwrap();
        assert_eq!(out, "{\"http\":{}}");
    }

    #[test]
    fn readiness_needs_a_config_and_freshness_and_a_good_module() {
        let p = Publisher::new(Duration::from_secs(30));
        assert!(!p.readiness().ready);
        p.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config("{}"),
            None,
        ));
        p.update_status(|s| s.last_success = Some(Instant::now()));
        assert!(p.readiness().ready);
        p.update_status(|s| s.module_error = Some("trap".into()));
        let r = p.readiness();
        assert!(!r.ready && r.reason.contains("trap"), "{}", r.reason);
        p.update_status(|s| {
            s.module_error = None;
            s.last_success = Instant::now().checked_sub(Duration::from_secs(31));
        });
        let r = p.readiness();
        assert!(!r.ready && r.reason.contains("stale"), "{}", r.reason);
    }
}
