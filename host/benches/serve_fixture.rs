//! A traefik-openstack server without OpenStack, for load tests.
//!
//! Builds the configuration of `--instances` synthetic instances with the
//! real engine and the built-in module, publishes it with the real
//! `Publisher` and serves it with the real `server::serve` on `--listen`.
//! With `--out DIR` it also writes what nginx needs to serve the same bytes:
//! `traefik.json`, `traefik.json.gz`, `etag`, `etag-gzip`.
//!
//! Not a criterion bench: `bench/run.sh` drives it with wrk. Run by hand:
//! `cargo bench -p traefik-openstack --bench serve_fixture -- --instances 10000 --listen 127.0.0.1:18080`
//! It stops on SIGTERM or SIGINT.

use traefik_openstack::testing::synthetic as common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::Engine;
use traefik_openstack::metrics::Metrics;
use traefik_openstack::publish::{Publisher, Snapshot};
use traefik_openstack::server::{self, AppState};

struct Args {
    instances: usize,
    listen: SocketAddr,
    out: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        instances: 10_000,
        listen: SocketAddr::from(([127, 0, 0, 1], 18080)),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--instances" => args.instances = value().parse().expect("--instances N"),
            "--listen" => args.listen = value().parse().expect("--listen ADDR:PORT"),
            "--out" => args.out = Some(value().into()),
            // `cargo bench` passes `--bench`; ignore what is not ours.
            _ => {}
        }
    }
    args
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = args();
    let started = Instant::now();
    let engine = Engine::new(&EngineConfig {
        timeout: Duration::from_secs(60),
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })?;
    let module = engine.load_default()?;
    let instances: Vec<_> = common::wit_instances(args.instances)
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
    let generated = engine.generate(&module, common::SETTINGS, &instances)?;
    let snapshot = Snapshot::new(std::sync::Arc::new(instances), generated, None);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("traefik.json"), snapshot.body.to_bytes())?;
        std::fs::write(dir.join("traefik.json.gz"), &snapshot.gzip)?;
        std::fs::write(dir.join("etag"), &snapshot.etag)?;
        std::fs::write(dir.join("etag-gzip"), &snapshot.etag_gzip)?;
    }
    let (body, gzip, etag) = (
        snapshot.body.len(),
        snapshot.gzip.len(),
        snapshot.etag.clone(),
    );
    let publisher = Arc::new(Publisher::new(Duration::from_secs(3600)));
    publisher.publish(snapshot);
    let state = Arc::new(AppState {
        publisher,
        metrics: Arc::new(Metrics::new()),
        config_path: "/traefik".into(),
        token: None,
    });

    // Like the product: a multi-threaded runtime sized by the CPUs we may
    // run on (one, under `taskset -c N`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!(
            "{{\"listen\":\"{}\",\"instances\":{},\"body_bytes\":{body},\"gzip_bytes\":{gzip},\"etag\":{etag:?},\"setup_ms\":{},\"vm_rss_kib\":{},\"vm_hwm_kib\":{}}}",
            listener.local_addr()?,
            args.instances,
            started.elapsed().as_millis(),
            status_kib("VmRSS:"),
            status_kib("VmHWM:"),
        );
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("signals");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        server::serve(
            listener,
            state,
            server::Limits::default(),
            None,
            shutdown,
            Duration::from_secs(1),
        )
        .await
    })?;
    Ok(())
}
