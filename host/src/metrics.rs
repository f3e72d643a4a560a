//! Prometheus metrics, in one registry owned by the process.
//!
//! Label values are fixed words chosen by the code (service names, outcome
//! reasons, status codes) or names the operator gave (clouds), never text
//! from OpenStack or tenants, so a metric can neither leak a secret nor
//! explode in cardinality.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) service: &'static str,
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WhenLabels {
    pub(crate) when: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CloudLabels {
    /// The operator's name for the cloud (or "<clouds.yaml entry>/<region>").
    pub(crate) cloud: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreLabels {
    pub(crate) store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreOutcomeLabels {
    pub(crate) store: &'static str,
    pub(crate) outcome: &'static str,
}

/// Every metric the host exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub(crate) refresh_duration: Histogram,
    pub(crate) refreshes: Family<OutcomeLabels, Counter>,
    pub(crate) instances: Family<StateLabels, Gauge>,
    pub(crate) openstack_requests: Family<RequestLabels, Counter>,
    pub(crate) generate_duration: Histogram,
    pub(crate) routed_instances: Family<WhenLabels, Counter>,
    pub(crate) config_bytes: Gauge,
    pub(crate) last_success: Gauge<f64, AtomicU64>,
    pub(crate) module_swaps: Family<OutcomeLabels, Counter>,
    pub(crate) module_healthy: Gauge,
    pub(crate) tls_handshake_failures: Counter,
    pub(crate) connections: Gauge,
    pub(crate) connections_closed: Family<ReasonLabels, Counter>,
    pub(crate) cloud_up: Family<CloudLabels, Gauge>,
    pub(crate) cloud_instances: Family<CloudLabels, Gauge>,
    pub(crate) cloud_last_success: Family<CloudLabels, Gauge<f64, AtomicU64>>,
    pub(crate) cloud_clock_offset: Family<CloudLabels, Gauge>,
    pub(crate) compile_cache_writes: Family<OutcomeLabels, Counter>,
    pub(crate) stale_since: Gauge<f64, AtomicU64>,
    pub(crate) state_file_writes: Family<OutcomeLabels, Counter>,
    pub(crate) state_file_ok: Gauge,
    pub(crate) leader: Family<StoreLabels, Gauge>,
    pub(crate) kv_publications: Family<StoreOutcomeLabels, Counter>,
    pub(crate) kv_keys_written: Family<StoreLabels, Counter>,
    pub(crate) kv_keys_deleted: Family<StoreLabels, Counter>,
    pub(crate) kv_keys: Family<StoreLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("traefik_openstack");
        let refresh_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        let instances = Family::<StateLabels, Gauge>::default();
        let openstack_requests = Family::<RequestLabels, Counter>::default();
        let generate_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let routed_instances = Family::<WhenLabels, Counter>::default();
        for when in ["listing", "run"] {
            let _ = routed_instances.get_or_create(&WhenLabels { when });
        }
        let config_bytes = Gauge::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        let module_swaps = Family::<OutcomeLabels, Counter>::default();
        let module_healthy = Gauge::default();
        let tls_handshake_failures = Counter::default();
        let connections = Gauge::default();
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        // At zero from the start, so rate() and alerts see the first one.
        for reason in ["limit", "header_timeout", "header_too_large", "stalled"] {
            let _ = connections_closed.get_or_create(&ReasonLabels { reason });
        }
        let leader = Family::<StoreLabels, Gauge>::default();
        let kv_publications = Family::<StoreOutcomeLabels, Counter>::default();
        let kv_keys_written = Family::<StoreLabels, Counter>::default();
        let kv_keys_deleted = Family::<StoreLabels, Counter>::default();
        let kv_keys = Family::<StoreLabels, Gauge>::default();

        registry.register(
            "refresh_duration_seconds",
            "Time to refresh the inventory of one cloud",
            refresh_duration.clone(),
        );
        registry.register(
            "refreshes",
            "Refreshes by outcome: ok, or the reason of the failure",
            refreshes.clone(),
        );
        registry.register(
            "instances",
            "Instances in the last good snapshot: seen, routed, skipped",
            instances.clone(),
        );
        registry.register(
            "openstack_requests",
            "HTTP requests to OpenStack by service and status (or error kind)",
            openstack_requests.clone(),
        );
        registry.register(
            "generate_duration_seconds",
            "Time the route module takes for a configuration, instantiation included (a phased module's pages routed as the listing came in too)",
            generate_duration.clone(),
        );
        registry.register(
            "module_routed_instances",
            "Instances the route module routed: as the listing's pages came in (listing), or in the run after it (run); a phased module routes only what changed",
            routed_instances.clone(),
        );
        registry.register(
            "config_bytes",
            "Size of the served configuration, uncompressed",
            config_bytes.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful refresh",
            last_success.clone(),
        );
        registry.register(
            "module_swaps",
            "Route module swaps by outcome",
            module_swaps.clone(),
        );
        registry.register(
            "module_healthy",
            "1 when the last module swap (or start) succeeded, 0 after a rejected module",
            module_healthy.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes refused or timed out (no or a wrong client certificate, not TLS)",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP connections open (Traefik, scrapers, anyone else), at most server.max_connections",
            connections.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections the server closed: limit (room made for a new one), header_timeout (headers unfinished within request_timeout), header_too_large (431), stalled (a response sent less than 64 KiB in a request_timeout)",
            connections_closed.clone(),
        );
        registry.register(
            "leader",
            "1 while this sidecar holds the lease and writes to the store",
            leader.clone(),
        );
        registry.register(
            "kv_publications",
            "Publications to a KV store by outcome: ok, fenced, or the reason of the failure",
            kv_publications.clone(),
        );
        registry.register(
            "kv_keys_written",
            "Keys put in a KV store",
            kv_keys_written.clone(),
        );
        registry.register(
            "kv_keys_deleted",
            "Keys deleted from a KV store",
            kv_keys_deleted.clone(),
        );
        registry.register(
            "kv_keys",
            "Keys under the root that this sidecar's publications hold",
            kv_keys.clone(),
        );
        // Known label values start at zero: a series that exists from the
        // start lets `rate()` and alerts see the first event, and lets the
        // dashboards tell "never happened" from "not exported".
        let _ = refreshes.get_or_create(&OutcomeLabels { outcome: "ok" });
        let _ = module_swaps.get_or_create(&OutcomeLabels { outcome: "ok" });
        for state in ["seen", "routed", "skipped"] {
            let _ = instances.get_or_create(&StateLabels { state });
        }
        let cloud_up = Family::<CloudLabels, Gauge>::default();
        let cloud_instances = Family::<CloudLabels, Gauge>::default();
        let cloud_last_success = Family::<CloudLabels, Gauge<f64, AtomicU64>>::default();
        let cloud_clock_offset = Family::<CloudLabels, Gauge>::default();
        let compile_cache_writes = Family::<OutcomeLabels, Counter>::default();
        let _ = compile_cache_writes.get_or_create(&OutcomeLabels { outcome: "ok" });
        let _ = compile_cache_writes.get_or_create(&OutcomeLabels { outcome: "error" });
        registry.register(
            "cloud_clock_offset_seconds",
            "Per cloud: Nova's Date less the local clock at its last listing (a jump shows here; changes-since does not follow one ahead)",
            cloud_clock_offset.clone(),
        );
        registry.register(
            "compile_cache_writes",
            "Writes of compiled modules to the compile cache by outcome: ok or error (the module is used either way)",
            compile_cache_writes.clone(),
        );
        let stale_since = Gauge::<f64, AtomicU64>::default();
        let state_file_writes = Family::<OutcomeLabels, Counter>::default();
        let state_file_ok = Gauge::default();
        state_file_ok.set(1);
        let _ = state_file_writes.get_or_create(&OutcomeLabels { outcome: "ok" });
        registry.register(
            "cloud_up",
            "Per cloud: 1 when its last refresh succeeded, 0 when it failed",
            cloud_up.clone(),
        );
        registry.register(
            "cloud_instances",
            "Per cloud: instances it contributes to the configuration",
            cloud_instances.clone(),
        );
        registry.register(
            "cloud_last_success_timestamp_seconds",
            "Per cloud: Unix time of its last successful refresh",
            cloud_last_success.clone(),
        );
        registry.register(
            "stale_since_timestamp_seconds",
            "Unix time OpenStack last confirmed the served configuration, while it is one recovered from the state file; 0 otherwise",
            stale_since.clone(),
        );
        registry.register(
            "state_file_writes",
            "Writes of the state file by outcome: ok or error",
            state_file_writes.clone(),
        );
        registry.register(
            "state_file_ok",
            "0 when the last write of the state file failed, 1 otherwise",
            state_file_ok.clone(),
        );
        Self {
            cloud_up,
            cloud_instances,
            cloud_last_success,
            cloud_clock_offset,
            compile_cache_writes,
            stale_since,
            state_file_writes,
            state_file_ok,
            registry,
            refresh_duration,
            refreshes,
            instances,
            openstack_requests,
            generate_duration,
            routed_instances,
            config_bytes,
            last_success,
            module_swaps,
            module_healthy,
            tls_handshake_failures,
            connections,
            connections_closed,
            leader,
            kv_publications,
            kv_keys_written,
            kv_keys_deleted,
            kv_keys,
        }
    }

    /// Counts one OpenStack HTTP exchange; `status` is the HTTP code or a
    /// transport error kind such as `timeout`.
    pub(crate) fn openstack_request(&self, service: &'static str, status: impl ToString) {
        self.openstack_requests
            .get_or_create(&RequestLabels {
                service,
                status: status.to_string(),
            })
            .inc();
    }

    /// Exports a configured cloud's series at zero before its first
    /// refresh, so a cloud that never answers shows as down, not absent.
    pub(crate) fn cloud_known(&self, cloud: &str) {
        let labels = CloudLabels {
            cloud: cloud.to_owned(),
        };
        let _ = self.cloud_up.get_or_create(&labels);
        let _ = self.cloud_instances.get_or_create(&labels);
        let _ = self.cloud_last_success.get_or_create(&labels);
        let _ = self.cloud_clock_offset.get_or_create(&labels);
    }

    /// Exports a configured KV store's series at zero before its first
    /// publication.
    pub(crate) fn store_known(&self, store: &'static str) {
        let labels = StoreLabels { store };
        let _ = self.kv_keys.get_or_create(&labels);
        let _ = self.kv_keys_written.get_or_create(&labels);
        let _ = self.kv_keys_deleted.get_or_create(&labels);
        let _ = self.kv_publications.get_or_create(&StoreOutcomeLabels {
            store,
            outcome: "ok",
        });
    }

    /// Counts a TLS handshake that did not complete.
    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Counts a connection the server closed, for `reason`.
    pub(crate) fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
