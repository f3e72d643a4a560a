//! The golden cases in `cases/<name>/` (`settings.json`, `instances.json`,
//! `expected.json` = `{"config": ..., "diagnostics": [...], "routes": [...]}`,
//! the format of the guest's goldens and of `traefik-openstack test`), run
//! natively. `UPDATE_GOLDEN=1 cargo test` rewrites the expectations; review
//! the diff before committing.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use traefik_openstack_guest::input::{output_json, parse_instances};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn read(case: &Path, file: &str) -> String {
    fs::read_to_string(case.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", case.display()))
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0");
    let cases = cases();
    assert!(!cases.is_empty(), "no cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy();
        let instances = parse_instances(&read(case, "instances.json"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let output = strict_naming_policy::generate(&read(case, "settings.json"), &instances)
            .unwrap_or_else(|e| panic!("{name}: settings rejected: {e}"));
        let actual = output_json(&output).unwrap();
        let path = case.join("expected.json");
        if update {
            fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
            continue;
        }
        let expected: Value = serde_json::from_str(&read(case, "expected.json")).unwrap();
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
