//! Hot swap of the route module: broken modules (trap, endless loop, output
//! that is not JSON) leave the routes alone and show in /readyz and /metrics;
//! a good module makes its routes live without a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use traefik_openstack_e2e::host::{default_module, metric_sum, metric_value};
use traefik_openstack_e2e::modules::{swap_in, test_policy};
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::{REFRESH_INTERVAL, eventually, freshness, shared_lab};

type R = anyhow::Result<()>;

/// Module swaps that were refused, whatever the reason.
fn rejected(metrics: &str) -> f64 {
    metric_sum(metrics, "traefik_openstack_module_swaps_total", &[]).unwrap_or(0.0)
        - metric_sum(
            metrics,
            "traefik_openstack_module_swaps_total",
            &[("outcome", "ok")],
        )
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_modules_keep_the_routes_and_a_good_one_goes_live() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "modules").await?;
    let vms = [s.vm("mod-1", 1)?, s.vm("mod-2", 2)?];
    s.seed(&vms)?;
    // seeded later, while a broken module is in place
    let late = s.vm("mod-late", 3)?;
    let module = s.dir.join("route.wasm");
    std::fs::copy(default_module()?, &module)?;
    let mut opts = s.options(s.plain_routes());
    opts.module = Some(module.clone());
    s.start(&opts)?;

    s.wait_reaches(&Scenario::fqdn("mod-1"), "mod-1").await;
    s.wait_reaches(&Scenario::fqdn("mod-2"), "mod-2").await;
    let routes = s.traefik().router_rules().await?;
    let (st, _) = s.host().readyz().await?;
    assert_eq!(st, StatusCode::OK);

    for variant in ["trap", "loop", "notjson"] {
        let before = rejected(&s.host().metrics().await?);
        swap_in(&test_policy(variant), &module)?;
        swap_is_refused_and_reported(&s, variant, before).await?;
        routes_stay(&s, variant, &routes).await?;
    }

    // a change in Nova while the broken module sits there is still routed
    // by the module in use
    s.seed(&[late])?;
    s.wait_reaches(&Scenario::fqdn("mod-late"), "mod-late")
        .await;

    swap_in(&test_policy("good"), &module)?;
    good_module_goes_live(&s).await
}

/// A broken module is refused: counted in /metrics, `module_healthy` 0, and
/// named in /readyz.
async fn swap_is_refused_and_reported(s: &Scenario<'_>, variant: &str, before: f64) -> R {
    let host = s.host();
    eventually(
        &format!("{variant} module refused in /metrics"),
        freshness(),
        || async {
            let m = host.metrics().await.map_err(|e| e.to_string())?;
            let healthy = metric_value(&m, "traefik_openstack_module_healthy");
            if rejected(&m) > before && healthy == Some(0.0) {
                Ok(())
            } else {
                Err(format!(
                    "rejected {} (was {before}), module_healthy {healthy:?}",
                    rejected(&m)
                ))
            }
        },
    )
    .await;
    let (st, body) = host.readyz().await?;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "{variant}: /readyz {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert!(
        v["module_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{variant}: /readyz names no module error: {body}"
    );
    Ok(())
}

/// After a refused swap the routes stay, through more refreshes than one,
/// and the module stays unhealthy.
async fn routes_stay(s: &Scenario<'_>, variant: &str, routes: &BTreeMap<String, String>) -> R {
    let until = tokio::time::Instant::now() + REFRESH_INTERVAL * 3;
    while tokio::time::Instant::now() < until {
        assert_eq!(
            &s.traefik().router_rules().await?,
            routes,
            "{variant}: routes changed\n{}",
            s.logs()
        );
        let r = s.reaches(&Scenario::fqdn("mod-1")).await?;
        assert_eq!(r.backend.as_deref(), Some("mod-1"), "{variant}: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the VMs still change: refreshes run with the previous module
    assert!(
        metric_value(
            &s.host().metrics().await?,
            "traefik_openstack_module_healthy"
        ) == Some(0.0),
        "{variant}: module_healthy went back to 1 without a good module"
    );
    Ok(())
}

/// A good module: its routes go live, the old ones go, no restart; the host
/// is healthy again and counts the swap.
async fn good_module_goes_live(s: &Scenario<'_>) -> R {
    let t = s.traefik();
    eventually(
        "the good module's routers in Traefik",
        freshness(),
        || async {
            let r = t.router_rules().await.map_err(|e| e.to_string())?;
            if r.get("swapped").map(String::as_str) == Some("Host(`swapped.test`)")
                && !r.keys().any(|k| k.starts_with("mod-"))
            {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await;
    let routers = t.router_rules().await?;
    // one swapped-<n> router per instance, from the three VMs
    assert_eq!(
        routers.keys().filter(|k| k.starts_with("swapped-")).count(),
        3,
        "{routers:?}"
    );
    let r = t.get_http("swapped.test", "/").await?;
    assert_ne!(
        r.status,
        StatusCode::NOT_FOUND,
        "swapped.test is not routed: {r:?}"
    );
    let r = s.reaches(&Scenario::fqdn("mod-1")).await?;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the old module's route is still live: {r:?}"
    );
    let (st, body) = s.host().readyz().await?;
    assert_eq!(st, StatusCode::OK, "/readyz after a good module: {body}");
    let m = s.host().metrics().await?;
    assert_eq!(
        metric_value(&m, "traefik_openstack_module_healthy"),
        Some(1.0)
    );
    assert!(
        metric_sum(
            &m,
            "traefik_openstack_module_swaps_total",
            &[("outcome", "ok")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "no successful swap counted: {m}"
    );
    Ok(())
}

/// `inventory` prints the lab's instances as the module gets them; `render
/// --instances` on that file gives the live configuration byte for byte,
/// and a `--redact`ed file routes the same way without the tenants' text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_files_reproduce_the_live_configuration_offline() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "offline").await?;
    let vms = [
        s.vm("offline-1", 1)?
            .meta(
                "traefik.http.routers.offline-1.rule",
                "Host(`offline-1.example.org`) || PathPrefix(`/offline-1`)",
            )
            .meta("owner", "alice@tenant.example"),
        s.vm("offline-2", 2)?
            .tag("traefik.http.services.offline-2.loadbalancer.server.port=8080"),
    ];
    let seeded = s.seed(&vms)?;
    let opts = s.options(s.plain_routes());
    s.start(&opts)?;
    // The first sync of a fresh host and Traefik: on a loaded machine
    // (the other case here compiles modules) it can take longer than one
    // freshness period.
    s.wait_reaches_within(
        "offline-1.example.org",
        "offline-1",
        std::time::Duration::from_secs(60),
    )
    .await;
    let host = s.host();

    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = host.command(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let live = run(&["render"])?;
    let inventory = s.dir.join("inventory.json");
    std::fs::write(&inventory, run(&["inventory"])?)?;
    let offline = run(&["render", "--instances", inventory.to_str().unwrap()])?;
    assert_eq!(offline, live);
    assert!(live.contains("offline-1.example.org"), "{live}");

    let redacted = run(&["inventory", "--redact"])?;
    for secret in [
        "offline-1",
        "offline-2",
        "alice@tenant.example",
        &seeded[0].id,
        &lab.admin_project_id,
        &s.ip(1).to_string(),
    ] {
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
    }
    let file = s.dir.join("redacted.json");
    std::fs::write(&file, &redacted)?;
    let from_redacted: serde_json::Value =
        serde_json::from_str(&run(&["render", "--instances", file.to_str().unwrap()])?)?;
    let live: serde_json::Value = serde_json::from_str(&live)?;
    let count = |v: &serde_json::Value, kind: &str| {
        v["http"][kind].as_object().map_or(0, serde_json::Map::len)
    };
    for kind in ["routers", "services"] {
        assert_eq!(count(&from_redacted, kind), count(&live, kind), "{kind}");
    }
    let text = from_redacted.to_string();
    assert!(
        text.contains("PathPrefix(`/vm-"),
        "labels keep their shape: {text}"
    );
    assert!(text.contains(":8080\""), "ports are kept: {text}");
    Ok(())
}
