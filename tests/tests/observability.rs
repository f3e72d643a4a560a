//! The Grafana dashboard and the Prometheus alert rules shipped in
//! `traefik/monitoring/` against what the sidecar really exports, and the
//! rules against Prometheus's own checker and their unit tests
//! (`promtool`, Debian's `prometheus` package, pinned). No lab: a sidecar
//! whose OpenStack and KV stores refuse connections exports every metric
//! family.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use traefik_openstack_e2e::host::binary;
use traefik_openstack_e2e::proc::Proc;
use traefik_openstack_e2e::tools::promtool;
use traefik_openstack_e2e::util::{eventually, free_port, run_dir, workspace_root};

const PREFIX: &str = "traefik_openstack_";

fn monitoring(file: &str) -> std::path::PathBuf {
    workspace_root().join("traefik/monitoring").join(file)
}

/// Every `traefik_openstack_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The dashboard's PromQL: every panel target and templating query.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The metric families a real sidecar exports (`# TYPE` lines), once its
/// first refresh has failed against a port where nothing listens.
async fn exported_families() -> BTreeSet<String> {
    let dir = run_dir("observability");
    let port = free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[openstack]\nrefresh_interval = \"1s\"\n\
             [publish.etcd]\nendpoints = [\"127.0.0.1:{}\"]\n\
             [publish.redis]\nendpoints = [\"127.0.0.1:{}\"]\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env(
            "OS_AUTH_URL",
            format!("http://127.0.0.1:{}/v3", free_port()),
        )
        .env("OS_USERNAME", "observer")
        .env("OS_PASSWORD", "observer-password")
        .env("OS_PROJECT_NAME", "observed")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default");
    let mut sidecar = Proc::spawn_tied("traefik-openstack", cmd, &dir.join("host.log")).unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = eventually(
        "/metrics with the OpenStack request counters",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(&url)
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if text.contains("traefik_openstack_openstack_requests_total{") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    sidecar.stop(Duration::from_secs(5));
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `name` is a sample of `family`: the family itself or one of the
/// series a counter or histogram is exported as.
fn family_of<'a>(name: &str, families: &'a BTreeSet<String>) -> Option<&'a String> {
    families.iter().find(|f| {
        name == f.as_str()
            || ["_total", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .any(|s| name.strip_prefix(f.as_str()) == Some(*s))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics_and_show_every_one() {
    let families = exported_families().await;
    assert!(families.len() >= 9, "families: {families:?}");

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    let alerts = std::fs::read_to_string(monitoring("alerts.yml")).unwrap();

    let mut used = BTreeSet::new();
    for (source, text) in queries
        .iter()
        .map(|q| ("grafana-dashboard.json", q.as_str()))
        .chain([("alerts.yml", alerts.as_str())])
    {
        for name in metric_names(text) {
            let family = family_of(&name, &families).unwrap_or_else(|| {
                panic!("{source} queries {name}, which /metrics does not export: {families:?}")
            });
            if source != "alerts.yml" {
                used.insert(family.clone());
            }
        }
    }
    let unshown: Vec<_> = families.difference(&used).collect();
    assert!(
        unshown.is_empty(),
        "exported but on no dashboard panel: {unshown:?}"
    );
}

fn promtool_ok(args: &[&str], dir: &Path) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_checks_and_their_unit_tests() {
    let dir = workspace_root().join("traefik/monitoring");
    promtool_ok(&["check", "rules", "alerts.yml"], &dir);
    promtool_ok(&["test", "rules", "alerts.test.yml"], &dir);
}

/// Each dashboard query parses as PromQL: promtool checks them as the
/// expressions of recording rules, Grafana's variables replaced.
#[test]
fn dashboard_queries_are_valid_promql() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries(&dashboard).iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        // Grafana's own function: its first argument is the metric.
        let q = match q.strip_prefix("label_values(") {
            Some(args) => args.split(',').next().unwrap().to_string(),
            None => q,
        };
        rules += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        );
    }
    let dir = run_dir("dashboard-promql");
    std::fs::write(dir.join("dashboard-rules.yml"), rules).unwrap();
    promtool_ok(&["check", "rules", "dashboard-rules.yml"], &dir);
}
