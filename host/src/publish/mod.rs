//! The last good configuration and what the server needs to serve it.
//!
//! A snapshot is replaced only by a newer successful generate; failures only
//! update the status. Everything the hot path needs (body, gzip body, ETags)
//! is computed once per change, so a poll costs a pointer load.

mod body;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use body::Body;
use serde::Serialize;

use bytes::Bytes;

use crate::chunked::Chunked;
use crate::engine::sandbox::LogLine;
use crate::engine::{Findings, Generated};
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
        let digest = hex::encode(&encoded.digest[..16]);
        Self {
            etag: format!("\"{digest}\""),
            // A content-coded representation needs its own validator.
            etag_gzip: format!("\"{digest}-gzip\""),
            body: encoded.plain.clone(),
            gzip: encoded.gzip.clone(),
            encoded,
            instances,
            findings: generated.findings,
            module_logs: generated.logs,
        }
    }

    /// The `/api/instances` body: what was decided for each instance and why.
    /// Built when asked, since only operators ask.
    pub(crate) fn instances_report(&self) -> Vec<u8> {
        instances_report(&self.instances, &self.findings)
    }

    /// The `/api/module` body's `logs`: the module's print debugging.
    pub(crate) fn module_logs(&self) -> &[LogLine] {
        &self.module_logs
    }
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
    routers: &'a [String],
    diagnostics: Vec<DiagnosticReport<'a>>,
}

#[derive(Serialize)]
struct DiagnosticReport<'a> {
    level: &'static str,
    message: &'a str,
}

/// Builds the `/api/instances` body, sorted like the snapshot (by id).
fn instances_report(instances: &[Arc<Instance>], findings: &Findings) -> Vec<u8> {
    use std::collections::BTreeMap;
    let routes: BTreeMap<&str, &wit::InstanceRoutes> = findings
        .routes()
        .map(|r| (r.instance_id.as_str(), r))
        .collect();
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
                routers: route.map_or(&[], |r| r.routers.as_slice()),
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
}

/// The last good configuration and the status the server reports, shared by the sync loop and the server.
pub struct Publisher {
    current: ArcSwapOption<Snapshot>,
    status: Mutex<Status>,
    stale_after: Duration,
}

/// What `/readyz` says.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    pub(crate) reason: String,
    #[serde(flatten)]
    pub(crate) status: Status,
    pub(crate) seconds_since_success: Option<f64>,
}

impl Publisher {
    /// `stale_after`: without a successful refresh for this long, the
    /// configuration is still served but the sidecar reports not ready.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            stale_after,
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Makes `snapshot` the one served.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn readiness(&self) -> Readiness {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let age = status.last_success.map(|t| t.elapsed());
        let (ready, reason) = if self.current.load().is_none() {
            (
                false,
                "no configuration yet: waiting for the first successful sync".to_owned(),
            )
        } else if let Some(e) = &status.module_error {
            (
                false,
                format!("route module rejected, previous one still serving: {e}"),
            )
        } else if age.is_none_or(|a| a > self.stale_after) {
            (
                false,
                format!(
                    "stale: no successful refresh for more than {}",
                    humantime::format_duration(self.stale_after)
                ),
            )
        } else {
            (true, "synced".to_owned())
        };
        Readiness {
            ready,
            reason,
            seconds_since_success: age.map(|a| a.as_secs_f64()),
            status,
        }
    }
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
