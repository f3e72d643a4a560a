//! The example policies of `examples/policies/` (Python, JavaScript) in the
//! real host, in front of real Traefik: they load under the host's WASI,
//! route the lab's VMs, refuse settings that are not theirs with their own
//! message, and what they print shows up in the host's log.
//!
//! The `[routes]` table belongs to the module and the host reads it once, so
//! moving from the built-in policy to one with another settings schema takes
//! a restart; between the two examples, which share a schema, the module
//! file is hot-swapped.

use std::time::Duration;

use reqwest::StatusCode;
use traefik_openstack_e2e::examples::example_policy;
use traefik_openstack_e2e::host::{default_module, metric_sum};
use traefik_openstack_e2e::modules::swap_in;
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::{eventually, shared_lab};

type R = anyhow::Result<()>;

/// The examples' own domain, distinct from the built-in's.
const DOMAIN: &str = "poly.example.test";

/// Compiling an 18 MB Python component takes a debug host a minute or more
/// on two busy cores; the JavaScript one about as long.
const LOAD: Duration = Duration::from_secs(300);

fn fqdn(vm: &str) -> String {
    format!("{vm}.{DOMAIN}")
}

fn swaps_ok(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "traefik_openstack_module_swaps_total",
        &[("outcome", "ok")],
    )
    .unwrap_or(0.0)
}

/// Waits until the host's log holds a line with `text` (what a module
/// printed, logged by the host with the module named).
async fn wait_logged(s: &Scenario<'_>, text: &str, deadline: Duration) {
    let log = s.host().dir.join("host.log");
    eventually(&format!("{text:?} in the host log"), deadline, || async {
        let all = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        match all.lines().find(|l| l.contains(text)) {
            Some(line) if line.contains("module") => Ok(()),
            Some(line) => Err(format!("logged without naming the module: {line}")),
            None => Err(s.host().log_tail(10)),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_policies_route_through_traefik() -> R {
    let lab = shared_lab();
    // built before the host starts: its watcher must only see whole files
    let python = example_policy("python");
    let js = example_policy("js");
    let mut s = Scenario::new(lab, "policies").await?;
    let vms = [s.vm("poly-1", 1)?, s.vm("poly-2", 2)?];
    s.seed(&vms)?;
    let late = s.vm("poly-3", 3)?;
    let module = s.dir.join("route.wasm");
    std::fs::copy(default_module()?, &module)?;
    let mut opts = s.options(s.plain_routes());
    opts.module = Some(module.clone());
    s.start(&opts)?;
    for vm in ["poly-1", "poly-2"] {
        s.wait_reaches(&Scenario::fqdn(vm), vm).await;
    }
    let routes = s.traefik().router_rules().await?;

    // The built-in's [routes] are not the Python policy's: the swap is
    // refused with the policy's own message, and the routes stay.
    swap_in(&python, &module)?;
    let host = s.host();
    eventually(
        "the Python policy refusing the built-in's settings",
        LOAD,
        || async {
            let (_, body) = host.readyz().await.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            match v["module_error"].as_str() {
                Some(e) if e.contains("unknown key \"address\"") => Ok(()),
                _ => Err(body),
            }
        },
    )
    .await;
    assert_eq!(s.traefik().router_rules().await?, routes, "{}", s.logs());
    let r = s.reaches(&Scenario::fqdn("poly-1")).await?;
    assert_eq!(r.backend.as_deref(), Some("poly-1"), "{r:?}");

    // Restarted with the examples' settings; the module file now holds the
    // Python policy (compiled once already: the compile cache serves it).
    s.traefik = None;
    s.host = None;
    let mut routes = toml::Table::new();
    routes.insert("domain".into(), DOMAIN.into());
    routes.insert("port".into(), i64::from(s.port).into());
    routes.insert(
        "entry_points".into(),
        toml::Value::Array(vec!["web".into()]),
    );
    let mut opts = s.options(routes);
    opts.module = Some(module.clone());
    s.start(&opts)?;
    for vm in ["poly-1", "poly-2"] {
        s.wait_reaches_within(&fqdn(vm), vm, LOAD).await;
    }
    let r = s.reaches(&Scenario::fqdn("poly-1")).await?;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the built-in's host name is still routed: {r:?}"
    );
    let rules = s.traefik().router_rules().await?;
    assert_eq!(
        rules.get("poly-1").map(String::as_str),
        Some(format!("Host(`poly-1.{DOMAIN}`)").as_str()),
        "{rules:?}"
    );
    wait_logged(&s, "python policy: 2 of 2 instances routed", LOAD).await;

    // Hot swap to the JavaScript policy: same settings, same routes (byte
    // for byte), its own log line; a VM seeded afterwards is routed by it.
    let before = swaps_ok(&s.host().metrics().await?);
    swap_in(&js, &module)?;
    let host = s.host();
    eventually("the JavaScript policy swapped in", LOAD, || async {
        let m = host.metrics().await.map_err(|e| e.to_string())?;
        let (_, ready) = host.readyz().await.map_err(|e| e.to_string())?;
        if swaps_ok(&m) > before {
            Ok(())
        } else {
            Err(format!(
                "ok swaps {} (was {before}); /readyz {ready}",
                swaps_ok(&m)
            ))
        }
    })
    .await;
    wait_logged(&s, "js policy: 2 of 2 instances routed", LOAD).await;
    s.seed(&[late])?;
    s.wait_reaches(&fqdn("poly-3"), "poly-3").await;
    wait_logged(&s, "js policy: 3 of 3 instances routed", LOAD).await;
    for vm in ["poly-1", "poly-2"] {
        let r = s.reaches(&fqdn(vm)).await?;
        assert_eq!(r.backend.as_deref(), Some(vm), "{r:?}");
    }

    // And back to Python, hot this time: both languages go live without a
    // restart.
    let before = swaps_ok(&s.host().metrics().await?);
    swap_in(&python, &module)?;
    let host = s.host();
    eventually("the Python policy swapped in", LOAD, || async {
        let m = host.metrics().await.map_err(|e| e.to_string())?;
        if swaps_ok(&m) > before {
            Ok(())
        } else {
            Err(format!("ok swaps {} (was {before})", swaps_ok(&m)))
        }
    })
    .await;
    wait_logged(&s, "python policy: 3 of 3 instances routed", LOAD).await;
    for vm in ["poly-1", "poly-2", "poly-3"] {
        let r = s.reaches(&fqdn(vm)).await?;
        assert_eq!(r.backend.as_deref(), Some(vm), "{r:?}");
    }
    let (st, body) = s.host().readyz().await?;
    assert_eq!(st, StatusCode::OK, "/readyz: {body}");
    Ok(())
}
