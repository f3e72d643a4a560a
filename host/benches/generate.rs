//! Route generation: the built-in component in wasmtime (fresh store and
//! instantiation included, as the sync loop runs it) against the same
//! policy compiled natively, on 1k / 10k / 50k instances. A third side,
//! `wasm-unchecked`, compiles the component without the deadline's checks:
//! what the deadline costs, measured in every run (a reference only; the
//! host never runs a module that way).
//!
//! `cargo bench -p traefik-openstack --bench generate`; `bench/run.sh` runs
//! it with the policy crates built like the guest (see bench/README.md).

use traefik_openstack::testing::synthetic as common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::Engine;
use traefik_openstack_guest as native;

const SIZES: &[usize] = &[1_000, 10_000, 50_000];

/// `BENCH_SIZES=1000,10000` runs a subset (e.g. under callgrind).
fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("BENCH_SIZES"))
                .collect()
        })
        .unwrap_or_else(|| SIZES.to_vec())
}

fn generate(c: &mut Criterion) {
    let cfg = EngineConfig {
        // Generous: this measures speed, not the production budget.
        timeout: Duration::from_secs(120),
        memory_limit_mib: 4096,
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    };
    // The engine the host runs, and the reference without the deadline.
    let engines = [
        ("wasm", Engine::new(&cfg).expect("engine")),
        (
            "wasm-unchecked",
            Engine::without_deadline_checks(&cfg).expect("engine without deadline checks"),
        ),
    ]
    .map(|(side, engine)| {
        let module = engine.load_default().expect("built-in module");
        (side, engine, module)
    });

    let mut group = c.benchmark_group("generate");
    group.sampling_mode(SamplingMode::Flat);
    for n in sizes() {
        let instances = common::instances(n);
        let wit_instances: Vec<_> = instances.iter().map(common::to_wit).collect();

        // Both sides must do the same work: identical bytes out.
        let natively = native::generate(common::SETTINGS, &instances).expect("native");
        for (side, engine, module) in &engines {
            let out = engine
                .generate(module, common::SETTINGS, &wit_instances)
                .expect(side);
            assert_eq!(
                out.config.to_string(),
                natively.config,
                "{side} and native differ"
            );
        }
        let routed = natively
            .routes
            .iter()
            .filter(|r| !r.routers.is_empty())
            .count();
        assert_eq!(routed, n, "every instance must be routed");
        assert!(
            natively.diagnostics.is_empty(),
            "the fixture must be clean: {:?}",
            natively.diagnostics.first()
        );
        eprintln!(
            "generate/{n}: {} bytes of configuration, {} diagnostics",
            natively.config.len(),
            natively.diagnostics.len()
        );

        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(if n > 10_000 { 1000 } else { 500 }));
        group.measurement_time(Duration::from_secs(match n {
            0..=1_000 => 3,
            1_001..=10_000 => 6,
            _ => 15,
        }));
        for (side, engine, module) in &engines {
            group.bench_with_input(BenchmarkId::new(*side, n), &wit_instances, |b, i| {
                b.iter(|| {
                    engine
                        .generate(module, black_box(common::SETTINGS), black_box(i))
                        .expect(side)
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("native", n), &instances, |b, i| {
            b.iter(|| native::generate(black_box(common::SETTINGS), black_box(i)).expect("native"))
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
