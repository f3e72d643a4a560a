//! `traefik-openstack test`: golden cases for route modules, as `opa test`
//! and `kwctl` give policy authors.
//!
//! A case is a directory with `instances.json` (either instances format),
//! `settings.json` or `settings.toml` (the `[routes]` table; `{}` when
//! absent) and `expected.json`: `{"config": {...}}`, optionally with
//! `"diagnostics"` and `"routes"`, which are compared only when present, or
//! `{"error": "text"}` for settings the module must refuse with a message
//! containing that text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::engine::{Engine, GenerateError, Generated, Module};
use crate::offline;

/// What became of one case.
pub enum Outcome {
    /// The output matched.
    Passed,
    /// The expected output was (re)written (`--update`).
    Updated,
    /// The readable difference, or why the case could not run.
    Failed(String),
}

/// The cases under `dirs`: each directory holding `instances.json` is a
/// case, else its subdirectories are searched, in name order.
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut cases = Vec::new();
    for dir in dirs {
        let before = cases.len();
        collect(dir, &mut cases)?;
        if cases.len() == before {
            return Err(format!(
                "{}: no test case (a directory with instances.json) found",
                dir.display()
            ));
        }
    }
    Ok(cases)
}

fn collect(dir: &Path, cases: &mut Vec<PathBuf>) -> Result<(), String> {
    if dir.join("instances.json").is_file() {
        cases.push(dir.to_owned());
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        collect(&sub, cases)?;
    }
    Ok(())
}

/// Runs one case; with `update`, rewrites its `expected.json` instead of
/// comparing.
pub fn run_case(engine: &Engine, module: &Module, case: &Path, update: bool) -> Outcome {
    match run(engine, module, case, update) {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Failed(reason),
    }
}

fn run(engine: &Engine, module: &Module, case: &Path, update: bool) -> Result<Outcome, String> {
    let settings = read_settings(case)?;
    let instances =
        offline::read_instances(&case.join("instances.json")).map_err(|e| e.to_string())?;
    let result = engine.generate(module, &settings, &instances);
    let expected_path = case.join("expected.json");
    if update {
        let doc = match &result {
            Ok(generated) => actual_doc(generated)?,
            Err(GenerateError::Settings(message)) => json!({ "error": message }),
            Err(e) => return Err(format!("{}: {e}", module.source)),
        };
        let mut text = serde_json::to_string_pretty(&doc).expect("plain data");
        text.push('\n');
        std::fs::write(&expected_path, text)
            .map_err(|e| format!("{}: {e}", expected_path.display()))?;
        return Ok(Outcome::Updated);
    }
    let expected: Value = read_json(&expected_path)?;
    let logs = |g: &Generated| {
        g.logs.iter().fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "  module {}: {}", l.stream.as_str(), l.line);
            s
        })
    };
    match (expected.get("error").and_then(Value::as_str), result) {
        (Some(want), Err(GenerateError::Settings(got))) if got.contains(want) => {
            Ok(Outcome::Passed)
        }
        (Some(want), Err(e)) => Err(format!("expected an error containing {want:?}, got: {e}")),
        (Some(want), Ok(g)) => Err(format!(
            "expected an error containing {want:?}, but the module succeeded\n{}",
            logs(&g)
        )),
        (None, Err(e)) => Err(format!("{}: {e}", module.source)),
        (None, Ok(g)) => {
            let actual = actual_doc(&g)?;
            // Only what the case pins down is compared.
            let mut compared = serde_json::Map::new();
            for key in ["config", "diagnostics", "routes"] {
                if expected.get(key).is_some() {
                    compared.insert(key.into(), actual[key].clone());
                }
            }
            if expected.get("config").is_none() {
                return Err(format!("{}: has no \"config\"", expected_path.display()));
            }
            let actual = Value::Object(compared);
            if actual == expected {
                Ok(Outcome::Passed)
            } else {
                Err(format!("{}{}", diff(&expected, &actual), logs(&g)))
            }
        }
    }
}

fn read_settings(case: &Path) -> Result<String, String> {
    let json_path = case.join("settings.json");
    let toml_path = case.join("settings.toml");
    if json_path.is_file() {
        let value = read_json(&json_path)?;
        if !value.is_object() {
            return Err(format!("{}: expected a JSON object", json_path.display()));
        }
        Ok(value.to_string())
    } else if toml_path.is_file() {
        let text = std::fs::read_to_string(&toml_path)
            .map_err(|e| format!("{}: {e}", toml_path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", toml_path.display()))?;
        Ok(serde_json::to_string(&table).expect("a TOML table is valid JSON"))
    } else {
        Ok("{}".into())
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// The run as `expected.json` writes it.
fn actual_doc(g: &Generated) -> Result<Value, String> {
    traefik_openstack_guest::input::output_json(&traefik_openstack_guest::Output {
        config: g.config.to_string(),
        diagnostics: g
            .findings
            .diagnostics()
            .map(offline::diagnostic_model)
            .collect(),
        routes: g.findings.routes().map(offline::routes_model).collect(),
    })
}

/// A unified diff of the two documents, pretty-printed with sorted keys.
fn diff(expected: &Value, actual: &Value) -> String {
    let expected = serde_json::to_string_pretty(expected).expect("plain data");
    let actual = serde_json::to_string_pretty(actual).expect("plain data");
    similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
