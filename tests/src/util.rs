//! Paths, ports, waiting.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The host's `openstack.refresh_interval` in every case.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Traefik's `providers.http.pollInterval`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Traefik's `providers.providersThrottleDuration`.
pub const THROTTLE: Duration = Duration::from_millis(200);
/// Room for a debug build, Nova on sqlite and two shared cores.
pub const FRESHNESS_SLACK: Duration = Duration::from_secs(10);

/// How long a change in Nova may take to show in Traefik: one refresh, one
/// poll, the throttle, and slack.
pub fn freshness() -> Duration {
    REFRESH_INTERVAL + POLL_INTERVAL + THROTTLE + FRESHNESS_SLACK
}

/// The workspace root (the directory holding `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo profile directory this executable was built into
/// (`target/debug` for `target/debug/deps/routing-1234`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a parent").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir
    }
}

/// The cargo target directory; the lab's venvs and state live under it.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// A fresh directory `target/e2e/<prefix>-<pid>-<n>` for one run's files.
pub fn run_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        prune_old_runs();
    }
    let dir = target_dir()
        .join("e2e")
        .join(format!("{prefix}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Removes run directories untouched for a day (never a current run's).
fn prune_old_runs() {
    let Ok(entries) = std::fs::read_dir(target_dir().join("e2e")) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        let name = e.file_name();
        let is_run = name
            .to_str()
            .is_some_and(|n| n.contains('-') && n != "module-cache");
        if old && is_run && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A port free on 127.0.0.1 now, for a child process to listen on; each
/// call of this process gets another one.
///
/// Taken below the kernel's ephemeral range (where `bind(0)` picks from),
/// because the source ports of outgoing connections come from that range
/// too: a port found by binding port 0 could go to some client connection
/// before the child binds it ("address already in use").
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOW);
    if span < 1_000 {
        // No room below the ephemeral range: the kernel's pick.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
    }
    // Test binaries run one after another; a start that depends on the
    // process keeps a leftover child of the previous one out of the way.
    let start = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left in {LOW}..{ephemeral_low}");
        let port = (LOW + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` until it returns `Ok` or `deadline` passes; then panics with
/// `what` and the last state `check` described.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_eventually(what, deadline, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// As [`eventually`], but returns the failure instead of panicking.
pub async fn try_eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(state) if start.elapsed() >= deadline => {
                return Err(format!(
                    "{what}: not within {deadline:?}; last state: {state}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Blocking variant for set-up code that runs outside any async context.
pub fn wait_blocking(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(state) if start.elapsed() >= deadline => {
                anyhow::bail!("{what}: not within {deadline:?}; last state: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One GET over a fresh std TCP connection: the status code, or an error.
/// For readiness probes in blocking set-up code.
pub fn http_status_blocking(addr: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))
}
