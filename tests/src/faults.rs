//! What every fault case checks: Traefik's routes are never emptied or
//! wrong while the fault lasts, the host reports the fault in `/readyz` and
//! `/metrics`, and it recovers by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;

use crate::host::{Host, metric_sum};
use crate::scenario::Scenario;
use crate::util::{eventually, freshness};

/// Checks Traefik's routes and that each of `vms` reaches its own backend,
/// every 300 ms for `how_long`.
pub async fn assert_routes_kept(
    s: &Scenario<'_>,
    routes: &BTreeMap<String, String>,
    vms: &[&str],
    how_long: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let t = s.traefik();
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        let now = t.router_rules().await?;
        assert_eq!(
            &now,
            routes,
            "{what}: Traefik's routes changed during the fault\n{}",
            s.logs()
        );
        for vm in vms {
            let r = s.reaches(&Scenario::fqdn(vm)).await?;
            assert_eq!(
                r.backend.as_deref(),
                Some(*vm),
                "{what}: {vm} during the fault: {r:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// Refreshes that did not end `ok`, by `/metrics`.
pub fn failed_refreshes(metrics: &str) -> f64 {
    metric_sum(metrics, "traefik_openstack_refreshes_total", &[]).unwrap_or(0.0)
        - metric_sum(
            metrics,
            "traefik_openstack_refreshes_total",
            &[("outcome", "ok")],
        )
        .unwrap_or(0.0)
}

/// Waits until `/readyz` answers 503 with a body containing `readyz_says`
/// and `/metrics` counts more refreshes failed for `reason` (any reason when
/// `None`) than `before` did. Returns the `/readyz` body.
pub async fn wait_fault_reported(
    host: &Host,
    before: &str,
    reason: Option<&str>,
    readyz_says: &str,
    what: &str,
) -> String {
    let count = |m: &str| match reason {
        Some(r) => {
            metric_sum(m, "traefik_openstack_refreshes_total", &[("outcome", r)]).unwrap_or(0.0)
        }
        None => failed_refreshes(m),
    };
    let base = count(before);
    eventually(
        &format!("{what}: /readyz and /metrics report the fault"),
        freshness(),
        || async {
            let (st, body) = host.readyz().await.map_err(|e| e.to_string())?;
            let m = host.metrics().await.map_err(|e| e.to_string())?;
            let failed = count(&m) - base;
            if st == StatusCode::SERVICE_UNAVAILABLE && body.contains(readyz_says) && failed > 0.0 {
                Ok(body)
            } else {
                Err(format!(
                    "/readyz {st} {body}; refreshes failed ({reason:?}) since: {failed}"
                ))
            }
        },
    )
    .await
}

/// Waits until `/readyz` is 200 again.
pub async fn wait_ready(host: &Host, within: Duration, what: &str) {
    eventually(&format!("{what}: /readyz 200 again"), within, || async {
        let (st, body) = host.readyz().await.map_err(|e| e.to_string())?;
        if st == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("{st} {body}"))
        }
    })
    .await
}

/// Watches Traefik while a case runs (beside it, see [`RouteWatch::run`]):
/// the routes it had when the watch began are never lost or changed, a
/// route appears only for a VM the case said may appear, and every VM
/// watched reaches its own backend.
pub struct RouteWatch {
    /// Must stay exactly so.
    kept: Mutex<BTreeMap<String, String>>,
    /// VMs whose routes may appear (`<vm>.<domain>` in the rule).
    may_appear: Mutex<BTreeSet<String>>,
    /// VMs that must reach their backends.
    vms: Mutex<Vec<String>>,
    /// VMs being deleted: their routes may stay until first seen gone,
    /// and must not come back after.
    leaving: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
    /// Rounds checked.
    pub rounds: AtomicU64,
}

impl RouteWatch {
    pub fn new(kept: BTreeMap<String, String>, vms: &[&str]) -> Self {
        RouteWatch {
            kept: Mutex::new(kept),
            may_appear: Mutex::new(BTreeSet::new()),
            vms: Mutex::new(vms.iter().map(|v| v.to_string()).collect()),
            leaving: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
            rounds: AtomicU64::new(0),
        }
    }

    /// `vm`'s route may appear from now on.
    pub fn allow(&self, vm: &str) {
        lock(&self.may_appear).insert(Scenario::fqdn(vm));
    }

    /// Traefik now routes `vm` (the case waited for it): from now on its
    /// route must stay and it must reach its backend.
    pub async fn keep(&self, s: &Scenario<'_>, vm: &str) -> anyhow::Result<()> {
        let fqdn = Scenario::fqdn(vm);
        let now = s.traefik().router_rules().await?;
        let mut kept = lock(&self.kept);
        for (k, v) in now {
            if v.contains(&fqdn) {
                kept.insert(k, v);
            }
        }
        lock(&self.vms).push(vm.to_string());
        Ok(())
    }

    /// `vm` goes away (the case deletes it): its route is no longer kept;
    /// once seen gone it must not come back.
    pub fn forget(&self, vm: &str) {
        let fqdn = Scenario::fqdn(vm);
        lock(&self.kept).retain(|_, rule| !rule.contains(&fqdn));
        lock(&self.may_appear).remove(&fqdn);
        lock(&self.vms).retain(|v| v != vm);
        lock(&self.leaving).insert(fqdn);
    }

    /// Ends [`RouteWatch::run`] after its current round.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Checks every 300 ms until [`RouteWatch::stop`]; panics at the first
    /// violation.
    pub async fn run(&self, s: &Scenario<'_>, what: &str) {
        let t = s.traefik();
        while !self.stop.load(Ordering::SeqCst) {
            // Traefik's API itself failing is not a routing failure
            if let Ok(now) = t.router_rules().await {
                let kept = lock(&self.kept).clone();
                for (k, v) in &kept {
                    assert_eq!(
                        now.get(k),
                        Some(v),
                        "{what}: Traefik lost or changed router {k}; it has {now:#?}\n{}",
                        s.logs()
                    );
                }
                let may = lock(&self.may_appear).clone();
                // a leaving VM seen gone is gone for good
                lock(&self.leaving).retain(|fqdn| now.values().any(|v| v.contains(fqdn.as_str())));
                let leaving = lock(&self.leaving).clone();
                for (k, v) in &now {
                    if kept.contains_key(k) || leaving.iter().any(|f| v.contains(f.as_str())) {
                        continue;
                    }
                    assert!(
                        may.iter().any(|fqdn| v.contains(fqdn.as_str())),
                        "{what}: Traefik has an unexpected router {k}: {v}\n{}",
                        s.logs()
                    );
                }
            }
            let vms = lock(&self.vms).clone();
            for vm in &vms {
                if let Ok(r) = s.reaches(&Scenario::fqdn(vm)).await {
                    assert_eq!(
                        r.backend.as_deref(),
                        Some(vm.as_str()),
                        "{what}: {vm} does not reach its backend: {r:?}\n{}",
                        s.logs()
                    );
                }
            }
            self.rounds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Runs `case` with the watch beside it; the watch ends with the case.
    pub async fn around<T>(
        &self,
        s: &Scenario<'_>,
        what: &str,
        case: impl Future<Output = T>,
    ) -> T {
        let case = async {
            let r = case.await;
            self.stop();
            r
        };
        let (r, ()) = tokio::join!(case, self.run(s, what));
        assert!(
            self.rounds.load(Ordering::SeqCst) > 0,
            "{what}: the route watch never ran"
        );
        r
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
