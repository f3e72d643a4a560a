//! Golden cases: `tests/golden/<case>/{settings.json,instances.json}` run
//! through `generate`, compared with `expected.json`
//! (`{"config": ..., "diagnostics": [...], "routes": [...]}`).
//! `UPDATE_GOLDEN=1 cargo test -p traefik-openstack-guest --test golden`
//! rewrites the expectations; review the diff before committing.

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use traefik_openstack_guest::{Instance, generate};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn run(case: &Path, reverse: bool) -> (String, Value) {
    let settings = fs::read_to_string(case.join("settings.json")).unwrap();
    let instances = fs::read_to_string(case.join("instances.json")).unwrap();
    let mut instances: Vec<Instance> = serde_json::from_str(&instances)
        .unwrap_or_else(|e| panic!("{}: instances.json: {e}", case.display()));
    if reverse {
        instances.reverse();
        for i in &mut instances {
            i.addresses.reverse();
            i.metadata.reverse();
            i.tags.reverse();
        }
    }
    let out = generate(&settings, &instances)
        .unwrap_or_else(|e| panic!("{}: settings rejected: {e}", case.display()));
    let config: Value = serde_json::from_str(&out.config).unwrap();
    let doc = json!({
        "config": config,
        "diagnostics": out.diagnostics,
        "routes": out.routes,
    });
    (out.config, doc)
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0");
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.iter().any(|c| c.ends_with("seed")),
        "the seed case is missing"
    );
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (bytes, actual) = run(case, false);
        // Traefik skips reloads when the body hash is unchanged, so the
        // bytes must not depend on Nova's listing order.
        let (bytes_rev, actual_rev) = run(case, true);
        if bytes != bytes_rev || actual != actual_rev {
            failures.push(format!("{name}: output depends on input order"));
        }
        let path = case.join("expected.json");
        if update {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            fs::write(&path, text).unwrap();
            continue;
        }
        let expected: Value = match fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(e) => {
                failures.push(format!("{name}: {e} (run with UPDATE_GOLDEN=1)"));
                continue;
            }
        };
        if expected != actual {
            failures.push(format!(
                "{name}: expected\n{}\ngot\n{}",
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
