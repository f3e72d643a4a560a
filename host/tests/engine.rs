//! The engine against real components: the built-in policy on the golden
//! cases (identical to the native run), and modules that misbehave.

use traefik_openstack::testing::{self as support, synthetic as common};

use std::path::Path;
use std::time::{Duration, Instant};

use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::{Engine, GenerateError, LoadError};
use traefik_openstack::wit;
use traefik_openstack_guest as native;

fn engine() -> Engine {
    Engine::new(&EngineConfig {
        timeout: Duration::from_millis(300),
        memory_limit_mib: 64,
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })
    .unwrap()
}

fn level(l: wit::Level) -> native::Level {
    match l {
        wit::Level::Info => native::Level::Info,
        wit::Level::Warning => native::Level::Warning,
        wit::Level::Error => native::Level::Error,
    }
}

#[test]
fn golden_cases_give_the_same_output_in_wasm_as_natively() {
    let engine = engine();
    let module = engine.load_default().unwrap();
    let golden = support::workspace().join("guest/tests/golden");
    let mut cases = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("instances.json").exists() {
            continue;
        }
        cases += 1;
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let settings = read("settings.json");
        let instances: Vec<native::Instance> =
            serde_json::from_str(&read("instances.json")).unwrap();
        let wit_instances: Vec<wit::Instance> = instances.iter().map(common::to_wit).collect();

        let natively = native::generate(&settings, &instances).unwrap();
        let in_wasm = engine.generate(&module, &settings, &wit_instances).unwrap();
        let case = dir.file_name().unwrap().to_string_lossy();
        assert_eq!(
            in_wasm.config.to_string(),
            natively.config,
            "{case}: config bytes differ"
        );
        let wasm_diags: Vec<native::Diagnostic> = in_wasm
            .findings
            .diagnostics()
            .map(|d| native::Diagnostic {
                instance_id: d.instance_id.clone(),
                level: level(d.level),
                message: d.message.clone(),
            })
            .collect();
        assert_eq!(
            wasm_diags, natively.diagnostics,
            "{case}: diagnostics differ"
        );
        let wasm_routes: Vec<(String, Option<String>, Vec<String>)> = in_wasm
            .findings
            .routes()
            .map(|r| {
                (
                    r.instance_id.to_string(),
                    r.address.as_deref().map(str::to_owned),
                    r.routers.iter().map(|n| n.to_string()).collect(),
                )
            })
            .collect();
        let native_routes: Vec<(String, Option<String>, Vec<String>)> = natively
            .routes
            .iter()
            .map(|r| (r.instance_id.clone(), r.address.clone(), r.routers.clone()))
            .collect();
        assert_eq!(wasm_routes, native_routes, "{case}: routes differ");

        let expected: serde_json::Value = serde_json::from_str(&read("expected.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&in_wasm.config.to_string()).unwrap();
        assert_eq!(
            config, expected["config"],
            "{case}: config differs from expected.json"
        );
    }
    assert!(
        cases >= 3,
        "expected golden cases under {}",
        golden.display()
    );
}

#[test]
fn runs_are_independent() {
    let engine = engine();
    let module = engine.load_default().unwrap();
    let a = engine
        .generate::<wit::Instance>(&module, "{}", &[])
        .unwrap();
    let b = engine
        .generate::<wit::Instance>(&module, "{}", &[])
        .unwrap();
    assert_eq!(a.config, b.config);
}

fn generate_with(feature: &str) -> (Result<(), GenerateError>, Duration) {
    let engine = engine();
    let module = engine
        .load_file(&support::test_policy(Some(feature)))
        .unwrap();
    let started = Instant::now();
    let result = engine
        .generate::<wit::Instance>(&module, "{}", &[])
        .map(|_| ());
    (result, started.elapsed())
}

#[test]
fn a_trapping_module_is_reported() {
    let (result, _) = generate_with("trap");
    assert!(matches!(result, Err(GenerateError::Trap(_))), "{result:?}");
}

#[test]
fn an_endless_loop_is_stopped_by_the_deadline() {
    let (result, elapsed) = generate_with("loop");
    assert!(
        matches!(result, Err(GenerateError::Timeout(_))),
        "{result:?}"
    );
    // Not a benchmark: only proves the guest was interrupted at all.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn the_budget_follows_the_number_of_instances() {
    // 64 MiB base, and the default share per 1,000 instances on top.
    let per_1k = EngineConfig::default().memory_per_1k_instances_mib;
    // A time budget that a loaded machine cannot exhaust before the memory
    // one: this half is about memory.
    let roomy = Engine::new(&EngineConfig {
        timeout: Duration::from_secs(60),
        memory_limit_mib: 64,
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })
    .unwrap();
    let module = roomy
        .load_file(&support::test_policy(Some("memory")))
        .unwrap();
    let instances = common::wit_instances(2000);
    let result = roomy.generate(&module, "{}", &instances).map(|_| ());
    let expected = 64 + 2 * per_1k;
    assert!(
        matches!(result, Err(GenerateError::OutOfMemory { limit_mib, instances: 2000 }) if limit_mib == expected),
        "{result:?}, expected a {expected} MiB limit"
    );
    // The operator reads how many instances and which limit.
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("on 2000 instances") && message.contains(&format!("{expected} MiB")),
        "{message}"
    );
    let engine = engine();
    let module = engine
        .load_file(&support::test_policy(Some("loop")))
        .unwrap();
    match engine.generate(&module, "{}", &instances) {
        Err(GenerateError::Timeout(t)) => {
            let per_1k = EngineConfig::default().timeout_per_1k_instances;
            assert_eq!(t, Duration::from_millis(300) + 2 * per_1k);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn memory_is_capped() {
    let (result, _) = generate_with("memory");
    assert!(
        matches!(
            result,
            Err(GenerateError::OutOfMemory {
                limit_mib: 64,
                instances: 0
            })
        ),
        "{result:?}"
    );
}

#[test]
fn wasi_is_linked_but_grants_nothing_and_is_reproducible() {
    let probe = || match generate_with("wasi").0 {
        Err(GenerateError::Settings(report)) => report,
        other => panic!("{other:?}"),
    };
    let report = probe();
    assert!(
        report.starts_with("env=0 args=0 file=denied dir=denied net=denied now=946684800 hash="),
        "{report}"
    );
    // Seeded random: std's hasher keys come out the same in every run.
    assert_eq!(probe(), report);
}

#[test]
fn module_output_is_captured_as_lines() {
    let engine = engine();
    let module = engine
        .load_file(&support::test_policy(Some("print")))
        .unwrap();
    let generated = engine
        .generate::<wit::Instance>(&module, "{}", &[])
        .unwrap();
    let lines: Vec<(&str, &str)> = generated
        .logs
        .iter()
        .map(|l| (l.stream.as_str(), l.line.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("stdout", "test-policy: 0 instances"),
            ("stderr", "test-policy: a line on stderr"),
            ("stdout", "no newline at the end"),
        ]
    );
}

#[test]
fn a_module_that_floods_its_output_is_stopped() {
    let (result, _) = generate_with("flood");
    assert!(
        matches!(result, Err(GenerateError::OutputFlood)),
        "{result:?}"
    );
    assert!(
        result.unwrap_err().to_string().contains("more than 64 KiB"),
        "the message names the limit"
    );
}

#[test]
fn output_must_be_a_json_object() {
    for feature in ["notjson", "array"] {
        let (result, _) = generate_with(feature);
        assert!(
            matches!(result, Err(GenerateError::InvalidOutput(_))),
            "{feature}: {result:?}"
        );
    }
}

#[test]
fn settings_errors_are_passed_on() {
    let (result, _) = generate_with("settings-error");
    match result {
        Err(GenerateError::Settings(m)) => assert!(m.contains("on purpose"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_module_of_another_contract_version_is_refused_with_the_versions() {
    let err = engine()
        .load_file(&support::test_policy(Some("future-version")))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LoadError::Contract { .. }), "{message}");
    assert!(message.contains("routes@0.2.0"), "{message}");
    assert!(
        message.contains("accepts traefik-openstack:routes@0.1.x"),
        "{message}"
    );
}

#[test]
fn garbage_is_not_a_component() {
    let err = engine().load(b"\0asm garbage", "garbage.wasm").unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(err.to_string().starts_with("garbage.wasm: "), "{err}");
    let err = engine()
        .load_file(Path::new("/nonexistent/policy.wasm"))
        .unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}

#[test]
fn compiled_modules_are_cached_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..EngineConfig::default()
    };
    let first = Engine::new(&config).unwrap();
    first.load_default().unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    let second = Engine::new(&config).unwrap();
    let module = second.load_default().unwrap();
    second
        .generate::<wit::Instance>(&module, "{}", &[])
        .unwrap();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        modified,
        "the second engine must reuse the entry, not rewrite it"
    );

    // A corrupt entry is ignored and replaced, not trusted.
    std::fs::write(&entries[0], b"corrupt").unwrap();
    let third = Engine::new(&config).unwrap();
    let module = third.load_default().unwrap();
    third.generate::<wit::Instance>(&module, "{}", &[]).unwrap();
}
