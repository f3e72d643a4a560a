//! Benchmarks in the real lab (bench/run.sh runs this; not a test):
//!
//! - OpenStack API cost: requests and bytes per steady refresh of the host
//!   (`changes-since`, nothing changed) against a host configured to list
//!   everything on every refresh (`full_sync_interval = refresh_interval`),
//!   both reading the same seeded project, as the host logs them (JSON logs,
//!   `refresh` events), cross-checked with the lab proxy's request count.
//! - Freshness: time from a change made through the Nova API (a metadata
//!   change, a server delete) until Traefik's API shows the route changed,
//!   with the host refreshing every 2 s and Traefik polling every 1 s.
//! - Fleet freshness: the same through etcd and Redis: the host publishes
//!   to both, three Traefik replicas read them (two etcd, one Redis), and a
//!   change counts once all three show it.
//!
//! `cargo build --release -p traefik-openstack -p traefik-openstack-e2e --bin traefik-openstack --bin bench_openstack`
//! then `target/release/bench_openstack [--servers 2000] [--changes 20]`;
//! one JSON object on stdout, progress on stderr.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use traefik_openstack_e2e::host::{Host, HostOptions, binary};
use traefik_openstack_e2e::lab::{Lab, Project, ServerSpec};
use traefik_openstack_e2e::nova::Nova;
use traefik_openstack_e2e::proc::Proc;
use traefik_openstack_e2e::stores::{Etcd, EtcdLimits, Redis};
use traefik_openstack_e2e::traefik::{Ports, Traefik};
use traefik_openstack_e2e::util::{free_port, run_dir};
use traefik_openstack_e2e::{POLL_INTERVAL, THROTTLE};

const DOMAIN: &str = "bench.example.com";
const REFRESH: Duration = Duration::from_secs(2);

struct Args {
    servers: usize,
    changes: usize,
    steady: usize,
    full: usize,
}

fn args() -> Args {
    let mut a = Args {
        servers: 2000,
        changes: 20,
        steady: 5,
        full: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} needs a number"))
        };
        match k.as_str() {
            "--servers" => a.servers = v(),
            "--changes" => a.changes = v(),
            "--steady" => a.steady = v(),
            "--full" => a.full = v(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn routes() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert(
        "default_rule".into(),
        format!("Host(`{{{{ normalize .Name }}}}.{DOMAIN}`)").into(),
    );
    t.insert("address".into(), "floating".into());
    t.insert(
        "entry_points".into(),
        toml::Value::Array(vec!["web".into()]),
    );
    t.insert("default_port".into(), 8080.into());
    t
}

fn spec(i: usize) -> ServerSpec {
    let (a, b) = ((i >> 8) & 255, i & 255);
    ServerSpec::new(&format!("vm-{i:05}"))
        .fixed(format!("10.20.{a}.{b}"))
        .floating(format!("198.18.{a}.{b}"))
        .meta("traefik.enable", "true")
        .meta("owner", &format!("student{:03}", i % 150))
        .tag(&format!("team-{}", i % 7))
}

/// A host with our own knobs (HostOptions has no `full_sync_interval`),
/// logging JSON so its `refresh` events can be read back.
struct CostHost {
    proc: Proc,
    log: std::path::PathBuf,
}

fn start_cost_host(
    lab: &Lab,
    project: &Project,
    dir: &Path,
    full_sync: Duration,
) -> anyhow::Result<CostHost> {
    std::fs::create_dir_all(dir)?;
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[openstack]\ncloud = \"lab\"\nregion = \"{}\"\ninterface = \"public\"\nrefresh_interval = \"{}ms\"\nfull_sync_interval = \"{}ms\"\n\n[engine]\ncache_dir = \"\"\n\n{}",
        traefik_openstack_e2e::lab::REGION,
        REFRESH.as_millis(),
        full_sync.as_millis(),
        toml::to_string(&toml::Table::from_iter([(
            "routes".to_string(),
            toml::Value::Table(routes())
        )]))?,
    );
    let file = dir.join("host.toml");
    std::fs::write(&file, config)?;
    let clouds = dir.join("clouds.yaml");
    lab.write_clouds_yaml(&clouds, "lab", project)?;
    let mut cmd = Command::new(binary());
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(&file)
        .current_dir(dir)
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("RUST_LOG", "info");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OS_") && k != "OS_CLIENT_CONFIG_FILE" {
            cmd.env_remove(k);
        }
    }
    let log = dir.join("host.log");
    Ok(CostHost {
        proc: Proc::spawn("traefik-openstack", cmd, &log)?,
        log,
    })
}

/// The `refresh` events the host logged so far.
fn refreshes(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "refresh")
        .collect()
}

/// Runs a host until it logged `n` refreshes after its first one.
fn collect(host: &mut CostHost, n: usize, timeout: Duration) -> anyhow::Result<Vec<Value>> {
    let t = Instant::now();
    loop {
        let r = refreshes(&host.log);
        if r.len() > n {
            return Ok(r);
        }
        if let Some(st) = host.proc.exited() {
            bail!("host exited with {st}:\n{}", host.proc.log_tail(30));
        }
        if t.elapsed() > timeout {
            bail!(
                "only {} refreshes in {timeout:?}:\n{}",
                r.len(),
                host.proc.log_tail(10)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(rows: &[Value], key: &str) -> Value {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| r[key].as_f64()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Value::Null;
    }
    json!({"min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1]})
}

fn cost(lab: &Lab, project: &Project, a: &Args) -> anyhow::Result<Value> {
    // Incremental: the product's default behaviour.
    eprintln!("cost: incremental host, {} steady refreshes", a.steady);
    let dir = run_dir("bench-cost");
    let mut inc = start_cost_host(
        lab,
        project,
        &dir.join("incremental"),
        Duration::from_secs(3600),
    )?;
    let first = collect(&mut inc, 0, Duration::from_secs(300))?;
    let proxy_before = lab.proxy.requests();
    let t0 = Instant::now();
    let rows = collect(&mut inc, a.steady, Duration::from_secs(300))?;
    let proxy_after = lab.proxy.requests();
    let steady_window = t0.elapsed();
    inc.proc.stop(Duration::from_secs(5));
    let steady: Vec<Value> = rows[1..].to_vec();
    anyhow::ensure!(
        steady
            .iter()
            .all(|r| r["full"] == false && r["changed"] == false),
        "steady refreshes were not all unchanged changes-since: {steady:?}"
    );

    // Reference: a full listing on every refresh.
    eprintln!("cost: full-listing host, {} refreshes", a.full);
    let mut full = start_cost_host(lab, project, &dir.join("full"), REFRESH)?;
    let rows_full = collect(&mut full, a.full, Duration::from_secs(600))?;
    full.proc.stop(Duration::from_secs(5));
    let full_rows: Vec<Value> = rows_full[1..].to_vec();
    anyhow::ensure!(full_rows.iter().all(|r| r["full"] == true), "{full_rows:?}");

    let med = |rows: &[Value], k: &str| stats(rows, k)["median"].as_f64().unwrap_or(f64::NAN);
    let (sr, sb) = (med(&steady, "requests"), med(&steady, "bytes"));
    let (fr, fb) = (med(&full_rows, "requests"), med(&full_rows, "bytes"));
    Ok(json!({
        "servers": first[0]["instances"],
        "first_refresh": first[0],
        "steady": {"requests": stats(&steady, "requests"), "bytes": stats(&steady, "bytes"), "ms": stats(&steady, "ms"), "n": steady.len()},
        "full_listing": {"requests": stats(&full_rows, "requests"), "bytes": stats(&full_rows, "bytes"), "ms": stats(&full_rows, "ms"), "n": full_rows.len()},
        "proxy_requests_per_steady_refresh": (proxy_after - proxy_before) as f64 / (steady_window.as_secs_f64() / REFRESH.as_secs_f64()).round().max(1.0),
        "steady_requests": sr,
        "steady_bytes": sb,
        "full_requests": fr,
        "full_bytes": fb,
        "bytes_ratio": sb / fb,
    }))
}

/// A Traefik to watch: its API port and the provider its routers come from.
#[derive(Clone, Copy)]
struct Replica {
    api: u16,
    provider: &'static str,
}

async fn router_state(
    http: &reqwest::Client,
    replica: Replica,
    router: &str,
) -> anyhow::Result<Option<String>> {
    let Replica { api, provider } = replica;
    let r = http
        .get(format!(
            "http://127.0.0.1:{api}/api/http/routers/{router}@{provider}"
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let v: Value = r.error_for_status()?.json().await?;
    Ok(Some(v["rule"].as_str().unwrap_or_default().to_string()))
}

/// Until every replica shows `router` as wanted; how long that took.
async fn wait_router(
    http: &reqwest::Client,
    replicas: &[Replica],
    router: &str,
    want: impl Fn(&Option<String>) -> bool,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut pending: Vec<Replica> = replicas.to_vec();
    loop {
        let mut still = Vec::new();
        for r in pending {
            if !want(&router_state(http, r, router).await?) {
                still.push(r);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            bail!("router {router} did not change within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where the configuration goes in a freshness run.
enum Through {
    /// Traefik polls the host.
    Http,
    /// The host publishes to etcd and Redis; three replicas read them.
    Stores,
}

async fn freshness(
    lab: &Lab,
    project: &Project,
    ids: &[(String, String)],
    a: &Args,
    through: Through,
) -> anyhow::Result<Value> {
    let dir = run_dir("bench-fresh");
    let mut opts = HostOptions::new(project.clone(), routes());
    opts.refresh_interval = REFRESH;
    // Nova on sqlite takes seconds per 1,000-server page; the harness's 3 s
    // (meant for outage cases) would fail every full listing.
    opts.request_timeout = Duration::from_secs(60);
    // What is measured is a change's way through changes-since. The lab's
    // Nova lists 10,000 servers in over a minute; a change made during a
    // full listing waits for it, which the cost figures above show apart.
    opts.full_sync_interval = Some(Duration::from_secs(3600));
    let mut stores = None;
    if let Through::Stores = through {
        let etcd = Etcd::start(&dir, EtcdLimits::LARGE)?;
        let redis = Redis::start(&dir, "KEA")?;
        opts.publish
            .insert("etcd".into(), etcd.publish_table("traefik").into());
        opts.publish
            .insert("redis".into(), redis.publish_table("traefik").into());
        stores = Some((etcd, redis));
    }
    let host = Host::start(lab, &dir.join("host"), &opts)?;
    let mut traefiks = Vec::new();
    let mut replicas = Vec::new();
    match &stores {
        None => {
            let t = Traefik::start(
                &lab.prepared.traefik,
                &dir.join("traefik"),
                Ports::free(),
                &host.url("/traefik"),
                None,
            )?;
            replicas.push(Replica {
                api: t.api_port,
                provider: "http",
            });
            traefiks.push(t);
        }
        Some((etcd, redis)) => {
            for (n, provider) in ["etcd", "etcd", "redis"].into_iter().enumerate() {
                let config = match provider {
                    "etcd" => etcd.traefik_provider("traefik"),
                    _ => redis.traefik_provider("traefik"),
                };
                let t = Traefik::start_with(
                    &lab.prepared.traefik,
                    &dir.join(format!("traefik-{n}")),
                    Ports::free(),
                    "http://127.0.0.1:1/traefik",
                    None,
                    json!({"providers": {provider: config}}),
                )?;
                replicas.push(Replica {
                    api: t.api_port,
                    provider,
                });
                traefiks.push(t);
            }
        }
    }
    let http = reqwest::Client::new();
    let nova = Nova::login(lab, project).await?;

    // Router names as the host reports them.
    let t = Instant::now();
    let report: Vec<Value> = loop {
        let (st, body) = host.get("/api/instances").await?;
        if st.is_success() {
            let v: Vec<Value> = serde_json::from_str(&body)?;
            let listed: std::collections::HashSet<&str> =
                v.iter().filter_map(|r| r["id"].as_str()).collect();
            if ids.iter().all(|(id, _)| listed.contains(id.as_str())) {
                break v;
            }
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("host never listed {} instances", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let router_of = |id: &str| -> anyhow::Result<String> {
        report
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["routers"][0].as_str())
            .map(str::to_string)
            .with_context(|| format!("no router for {id}"))
    };
    let first = router_of(&ids[0].0)?;
    wait_router(
        &http,
        &replicas,
        &first,
        |s| s.is_some(),
        Duration::from_secs(300),
    )
    .await?;
    eprintln!("freshness: Traefik has the routes after {:?}", t.elapsed());

    let limit = REFRESH + POLL_INTERVAL + THROTTLE + Duration::from_millis(500);
    let mut samples = Vec::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for k in 0..a.changes {
        // Land changes at every phase of the refresh and poll cycles.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 2000)).await;
        let (id, _name) = &ids[k + 1];
        let router = router_of(id)?;
        let (kind, took) = if k % 2 == 0 {
            // A label change: the instance's rule moves to another host name.
            let rule = format!("Host(`changed-{k}.{DOMAIN}`)");
            let key = format!("traefik.http.routers.{router}.rule");
            nova.update_metadata(id, &[(key.as_str(), rule.as_str())])
                .await?;
            let took = wait_router(
                &http,
                &replicas,
                &router,
                |s| s.as_deref() == Some(rule.as_str()),
                Duration::from_secs(60),
            )
            .await?;
            ("metadata", took)
        } else {
            nova.delete_server(id).await?;
            let took = wait_router(
                &http,
                &replicas,
                &router,
                |s| s.is_none(),
                Duration::from_secs(60),
            )
            .await?;
            ("delete", took)
        };
        eprintln!("freshness: change {k} ({kind}): {took:?}");
        samples.push(json!({"kind": kind, "ms": took.as_secs_f64() * 1000.0}));
    }
    drop(traefiks);
    drop(host);
    drop(stores);
    let mut ms: Vec<f64> = samples.iter().filter_map(|s| s["ms"].as_f64()).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((p * (ms.len() - 1) as f64).round()) as usize];
    Ok(json!({
        "refresh_interval_ms": REFRESH.as_millis(),
        "poll_interval_ms": POLL_INTERVAL.as_millis(),
        "throttle_ms": THROTTLE.as_millis(),
        "target_ms": limit.as_millis(),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "max_ms": ms[ms.len() - 1],
        "samples": samples,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let started = Instant::now();
    eprintln!("lab: starting");
    let lab = Lab::start("bench")?;
    let project = lab.project("bench")?;
    eprintln!(
        "lab: up after {:?}; seeding {} servers",
        started.elapsed(),
        a.servers
    );
    let t = Instant::now();
    let mut ids = Vec::new();
    let specs: Vec<ServerSpec> = (0..a.servers).map(spec).collect();
    for chunk in specs.chunks(250) {
        for s in lab.seed(&project, chunk)? {
            ids.push((s.id, s.name));
        }
    }
    let seed_s = t.elapsed().as_secs_f64();
    eprintln!("lab: seeded in {seed_s:.1} s");
    anyhow::ensure!(
        ids.len() > 2 * (a.changes + 1),
        "not enough servers for {} changes",
        a.changes
    );

    let cost = cost(&lab, &project, &a)?;
    let fresh = freshness(&lab, &project, &ids[..=a.changes], &a, Through::Http).await?;
    eprintln!("fleet: the same through etcd and Redis to three replicas");
    // Other servers: the first run deleted some of its own.
    let fleet = freshness(&lab, &project, &ids[a.changes + 1..], &a, Through::Stores).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "servers": a.servers,
            "seed_s": seed_s,
            "cost": cost,
            "freshness": fresh,
            "fleet_freshness": fleet,
            "wall_s": started.elapsed().as_secs_f64(),
        }))?
    );
    Ok(())
}
