//! The example policies of `examples/policies/` (Rust strict-naming, Python,
//! JavaScript) in the real host, in front of real Traefik: each is
//! hot-swapped in, loads under the host's WASI, routes the lab's VMs,
//! refuses settings that are not its own with its own message, and what it
//! prints shows up in the host's log. Their golden cases pass through
//! `traefik-openstack test`.
//!
//! The `[routes]` table belongs to the module: the host re-reads it from the
//! config file with every new module file, so a policy and its settings go
//! live together.

use std::time::Duration;

use reqwest::StatusCode;
use traefik_openstack_e2e::examples::{EXAMPLES, example_policy};
use traefik_openstack_e2e::host::{Host, binary, default_module, metric_sum};
use traefik_openstack_e2e::modules::swap_in;
use traefik_openstack_e2e::proc::Proc;
use traefik_openstack_e2e::scenario::{self, Scenario};
use traefik_openstack_e2e::util::{
    free_port, http_status_blocking, target_dir, wait_blocking, workspace_root,
};
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

/// Replaces the `[routes]` table of the running host's config file.
fn write_routes(host: &Host, routes: toml::Table) -> anyhow::Result<()> {
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(&host.config_file)?)?;
    config.insert("routes".into(), routes.into());
    std::fs::write(&host.config_file, toml::to_string_pretty(&config)?)?;
    Ok(())
}

/// Swaps `module` in (the config file already holds its settings) and waits
/// until the host took it.
async fn hot_swap(s: &Scenario<'_>, from: &std::path::Path, module: &std::path::Path, what: &str) {
    let host = s.host();
    let before = swaps_ok(&host.metrics().await.expect("metrics"));
    swap_in(from, module).expect("swapping the module file");
    eventually(&format!("{what} swapped in"), LOAD, || async {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_golden_cases_pass_through_the_test_runner() -> R {
    for example in EXAMPLES {
        let module = example_policy(example);
        let cases = workspace_root()
            .join("examples/policies")
            .join(example)
            .join("cases");
        let out = std::process::Command::new(binary())
            .arg("test")
            .arg("--module")
            .arg(&module)
            .arg(&cases)
            .env(
                "XDG_CACHE_HOME",
                traefik_openstack_e2e::util::target_dir().join("e2e"),
            )
            .output()?;
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{example}: {shown}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            shown.trim_end().ends_with(" 0 failed") && !shown.contains("\n0 passed"),
            "{example}: {shown}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_policies_are_hot_swapped_in_front_of_traefik() -> R {
    let lab = shared_lab();
    // built before the host starts: its watcher must only see whole files
    let strict = example_policy("strict-naming");
    let python = example_policy("python");
    let js = example_policy("js");
    let mut s = Scenario::new(lab, "policies").await?;
    // poly-2's tenant rule also claims a host outside its own name
    let vms = [
        s.vm("poly-1", 1)?,
        s.vm("poly-2", 2)?.meta(
            "traefik.http.routers.poly-2.rule",
            &format!(
                "Host(`{}`) || Host(`victim.example.org`)",
                Scenario::fqdn("poly-2")
            ),
        ),
    ];
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
    let r = s.reaches("victim.example.org").await?;
    assert_eq!(
        r.backend.as_deref(),
        Some("poly-2"),
        "the built-in lets it: {r:?}"
    );

    // Rust, the built-in policy as a library: with its strict_domain, the
    // router that leaves poly-2's own name is dropped; poly-1 stays.
    let mut strict_routes = s.plain_routes();
    strict_routes.insert("strict_domain".into(), scenario::DOMAIN.into());
    write_routes(s.host(), strict_routes)?;
    hot_swap(&s, &strict, &module, "the strict-naming policy").await;
    s.wait_unrouted("victim.example.org").await;
    let r = s.reaches(&Scenario::fqdn("poly-1")).await?;
    assert_eq!(r.backend.as_deref(), Some("poly-1"), "{r:?}");
    let (_, report) = s.host().get("/api/instances").await?;
    assert!(
        report.contains("victim.example.org"),
        "the drop is explained: {report}"
    );
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

    // The examples' settings in the config file, then the Python module:
    // both go live together, without a restart.
    let mut routes = toml::Table::new();
    routes.insert("domain".into(), DOMAIN.into());
    routes.insert("port".into(), i64::from(s.port).into());
    routes.insert(
        "entry_points".into(),
        toml::Value::Array(vec!["web".into()]),
    );
    write_routes(s.host(), routes)?;
    // The file already holds the refused Python module: writing it again
    // is the operator's "reload".
    hot_swap(&s, &python, &module, "the Python policy").await;
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
    hot_swap(&s, &js, &module, "the JavaScript policy").await;
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
    hot_swap(&s, &python, &module, "the Python policy, again").await;
    wait_logged(&s, "python policy: 3 of 3 instances routed", LOAD).await;
    for vm in ["poly-1", "poly-2", "poly-3"] {
        let r = s.reaches(&fqdn(vm)).await?;
        assert_eq!(r.backend.as_deref(), Some(vm), "{r:?}");
    }
    let (st, body) = s.host().readyz().await?;
    assert_eq!(st, StatusCode::OK, "/readyz: {body}");
    Ok(())
}

/// A SIGTERM while a large module compiles (the Python example, without a
/// compile cache: a minute for a debug host on two busy cores) stops the
/// host at once, not after a compile it will never use.
#[test]
fn a_sigterm_while_the_module_compiles_stops_the_host_at_once() -> R {
    let module = example_policy("python");
    let dir = target_dir().join("e2e/sigterm-while-compiling");
    std::fs::create_dir_all(&dir)?;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("traefik-openstack.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n\n[engine]\nmodule = \"{}\"\ncache_dir = \"\"\n\n[openstack]\n",
            module.display()
        ),
    )?;
    let log = dir.join("host.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("RUST_LOG", "info")
        // Nothing listens there: the host never gets as far as asking.
        .env("OS_AUTH_URL", "http://127.0.0.1:9/v3")
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", "not-used")
        .env("OS_PROJECT_NAME", "admin")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default");
    let mut host = Proc::spawn_tied("traefik-openstack", cmd, &log)?;
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The endpoint answers while the module compiles.
    wait_blocking("/healthz while compiling", Duration::from_secs(30), || {
        if let Some(st) = host.exited() {
            return Err(format!("exited with {st}:\n{}", text()));
        }
        match http_status_blocking(&addr, "/healthz") {
            Ok(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })?;
    assert!(
        !text().contains("route module loaded"),
        "compiled already, nothing to cut short:\n{}",
        text()
    );
    let status = host
        .stop(Duration::from_secs(10))
        .ok_or_else(|| anyhow::anyhow!("still running 10 s after SIGTERM:\n{}", text()))?;
    assert!(status.success(), "{status}:\n{}", text());
    assert!(
        text().contains("stopped before the route module was compiled"),
        "{}",
        text()
    );
    Ok(())
}
