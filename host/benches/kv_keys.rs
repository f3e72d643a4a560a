//! What publishing the synthetic cloud to etcd or Redis writes: keys of a
//! first publication, and of one changed VM (a new address; a rename).
//! The keys are exactly the transaction (tests/tests/kv.rs checks that the
//! stores hold what the diff says). Not a timing assertion:
//! `N=10000 cargo bench -p traefik-openstack --bench kv_keys` prints counts,
//! bytes, and how long layout and diff take.

use std::time::{Duration, Instant};

use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::Engine;
use traefik_openstack::publish::kv::diff::{Held, Names, diff};
use traefik_openstack::publish::kv::layout::flatten;
use traefik_openstack::testing::synthetic as common;
use traefik_openstack::wit;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("N").map_or(Ok(10_000), |v| v.parse())?;
    let engine = Engine::new(&EngineConfig {
        timeout: Duration::from_secs(120),
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })?;
    let module = engine.load_default()?;
    let names = Names::new("traefik", "_traefik-openstack");
    let mut list = common::wit_instances(n);
    let layout_of = |list: &[wit::Instance]| -> anyhow::Result<_> {
        let generated = engine.generate(&module, common::SETTINGS, list)?;
        let config: serde_json::Value = serde_json::from_slice(&generated.config.to_bytes())?;
        let started = Instant::now();
        let layout = flatten(&config, &names.root);
        Ok((layout, started.elapsed(), generated.config.len()))
    };
    let (first, took, bytes) = layout_of(&list)?;
    let started = Instant::now();
    let changes = diff(&first, &Held::default(), &names, "bench");
    let diffed = started.elapsed();
    println!(
        "{n} instances ({bytes} bytes of JSON): first publication {} keys ({} puts, {} of them \
         the ownership index; {} KiB of keys and values); layout {took:?}, diff {diffed:?}",
        changes.len(),
        changes.puts.len(),
        first.resources.len(),
        changes.bytes() / 1024,
    );
    let held = Held::of(&first);
    let vm = n / 2;
    for (what, change) in [
        (
            "a new address",
            Box::new(|i: &mut wit::Instance| i.addresses[1].ip = "198.51.100.7".into())
                as Box<dyn Fn(&mut wit::Instance)>,
        ),
        (
            "a rename",
            Box::new(|i: &mut wit::Instance| i.name = "renamed-vm".into()),
        ),
    ] {
        let mut changed = list.clone();
        change(&mut changed[vm]);
        let (next, _, _) = layout_of(&changed)?;
        let started = Instant::now();
        let c = diff(&next, &held, &names, "bench");
        println!(
            "one VM with {what}: {} puts, {} deletes (diff {:?})",
            c.puts.len(),
            c.deletes.len(),
            started.elapsed()
        );
    }
    list.clear();
    Ok(())
}
