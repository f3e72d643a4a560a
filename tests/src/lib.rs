//! End-to-end harness: the lab (Keystone + Nova), Traefik, backends, the host.
//!
//! Everything listens on loopback, on ports picked at run time, and keeps its
//! files under `target/e2e/<run>/`; a process started here is stopped when its
//! handle is dropped, and at the latest when the test binary exits.
//!
//! - [`lab`]: Keystone, Nova API and the Neutron/Placement stub (Python,
//!   `tests/lab/`), projects and seeded servers.
//! - [`nova`]: Keystone tokens and the Nova API calls the cases mutate with.
//! - [`proxy`]: a switchable fault-injecting proxy in front of Nova.
//! - [`faults`]: what every fault case checks (routes kept, the fault
//!   reported, recovery); [`secrets`]: no secret in anything the host shows.
//! - [`backend`]: tiny HTTP servers standing in for the VMs.
//! - [`host`]: the `traefik-openstack` binary under test.
//! - [`modules`], [`examples`]: route modules to swap in (test variants, and
//!   the example policies in other languages).
//! - [`traefik`]: a real Traefik polling the host (and, for the label
//!   differential test, a [`docker`] fake Docker Engine API).
//! - [`scenario`]: one case's project, backends, host and Traefik together.
//! - [`modules`]: route modules built for the cases; [`tools`]: pinned CLIs.
//! - [`stores`]: real etcd and Redis servers for the KV publishing cases;
//!   [`certs`]: throwaway CAs for the TLS cases.

pub mod backend;
pub mod certs;
pub mod docker;
pub mod examples;
pub mod faults;
pub mod host;
pub mod lab;
pub mod modules;
pub mod nova;
pub mod proc;
pub mod proxy;
pub mod scenario;
pub mod secrets;
pub mod stores;
pub mod tools;
pub mod traefik;
pub mod util;

pub use util::{
    FRESHNESS_SLACK, POLL_INTERVAL, REFRESH_INTERVAL, THROTTLE, eventually, freshness,
    try_eventually,
};

/// The lab shared by every case of one test binary (each binary is its own
/// process, so each gets one lab). Started on first use; its processes are
/// stopped when the binary exits. A failed start fails every case with the
/// same message instead of retrying.
pub fn shared_lab() -> &'static lab::Lab {
    static LAB: std::sync::OnceLock<Result<lab::Lab, String>> = std::sync::OnceLock::new();
    let r = LAB.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let stem = exe
            .as_ref()
            .and_then(|p| p.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.split('-').next())
            .unwrap_or("lab")
            .to_string();
        lab::Lab::start(&stem).map_err(|e| format!("{e:#}"))
    });
    match r {
        Ok(l) => l,
        Err(e) => panic!("the lab did not start: {e}"),
    }
}
