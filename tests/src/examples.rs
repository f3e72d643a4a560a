//! The example route policies of `examples/policies/<language>/`, built by
//! their own `build.sh` (componentize-py, componentize-js; pinned, installed
//! under `target/tools/` on first use) once per test binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{target_dir, workspace_root};

/// The languages with an example policy.
pub const EXAMPLES: &[&str] = &["python", "js", "strict-naming"];

/// Path of the built example policy in `language` (one of [`LANGUAGES`]).
pub fn example_policy(language: &str) -> PathBuf {
    static BUILT: [OnceLock<Result<PathBuf, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = EXAMPLES
        .iter()
        .position(|l| *l == language)
        .unwrap_or_else(|| panic!("no example policy in {language}"));
    match BUILT[i].get_or_init(|| build(language)) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn build(language: &str) -> Result<PathBuf, String> {
    let script = workspace_root()
        .join("examples/policies")
        .join(language)
        .join("build.sh");
    // build.sh prints the component's path on stdout, its progress on stderr
    let out = Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", target_dir())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); it needs python3 (Python), node and npm (JavaScript) or the pinned Rust toolchain (strict-naming), and the package registry once",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !path.is_file() {
        return Err(format!(
            "{} printed {stdout:?}, not the path of a component",
            script.display()
        ));
    }
    Ok(path)
}
