//! Where the memory of a large cloud goes, stage by stage: the instances as
//! the inventory holds them, and the incremental cache after a first run.
//! Not a timing: `N=100000 cargo bench -p traefik-openstack --bench memory_by_stage`
//! prints MiB (resident, after handing freed memory back to the system).

use std::sync::Arc;
use std::time::Duration;

use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::{Engine, Incremental};
use traefik_openstack::testing::synthetic as common;

fn rss_mib() -> f64 {
    // What malloc keeps of freed memory is not what the stage holds.
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
    let s = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: f64 = s
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's resident pages");
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("N").map_or(Ok(20_000), |v| v.parse())?;
    let engine = Engine::new(&EngineConfig {
        timeout: Duration::from_secs(60),
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })?;
    let module = engine.load_default()?;
    let settings: Arc<str> = common::SETTINGS.into();
    let base = rss_mib();
    let list: Vec<_> = common::wit_instances(n).into_iter().map(Arc::new).collect();
    let with_instances = rss_mib();
    let mut cache = Incremental::default();
    let (generated, _) = cache.run(&engine, &module, &settings, &list)?;
    let with_output = rss_mib();
    let config = generated.config.len() as f64 / (1024.0 * 1024.0);
    drop(generated);
    let cache_only = rss_mib();
    println!(
        "{n} instances: instances {:.0} MiB, incremental cache {:.0} MiB, output {:.0} MiB (config {config:.0} MiB)",
        with_instances - base,
        cache_only - with_instances,
        with_output - cache_only,
    );
    Ok(())
}
