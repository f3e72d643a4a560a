//! The binary under test: `traefik-openstack serve --config FILE`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;

use crate::lab::{Lab, Project};
use crate::proc::Proc;
use crate::util::{
    REFRESH_INTERVAL, free_port, http_status_blocking, profile_dir, target_dir, wait_blocking,
    workspace_root,
};

/// The host binary: `$TRAEFIK_OPENSTACK_BIN`, else next to this executable's
/// profile directory (`target/debug/traefik-openstack`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TRAEFIK_OPENSTACK_BIN") {
        // relative to where we were started, not to the host's directory
        return std::path::absolute(PathBuf::from(p)).expect("absolute path");
    }
    profile_dir().join("traefik-openstack")
}

/// The default route module the host embeds, as built by host/build.rs
/// (`target/guest/wasm32-wasip2/guest/traefik_openstack_guest.wasm`).
pub fn default_module() -> anyhow::Result<PathBuf> {
    // Where host/build.rs puts it: its own target directory, not cargo's.
    let dir = std::env::var_os("TRAEFIK_OPENSTACK_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/guest"));
    let p = dir.join("wasm32-wasip2/guest/traefik_openstack_guest.wasm");
    if !p.exists() {
        bail!(
            "{} is missing: run `cargo build -p traefik-openstack` (its build script builds the guest)",
            p.display()
        );
    }
    Ok(p)
}

/// How a case runs the host.
#[derive(Clone)]
pub struct HostOptions {
    /// Whose credentials go into clouds.yaml.
    pub project: Project,
    pub all_projects: bool,
    pub refresh_interval: Duration,
    /// `openstack.full_sync_interval`; the host's default when `None`.
    pub full_sync_interval: Option<Duration>,
    /// `openstack.request_timeout`: short, so a hanging Nova fails a refresh
    /// quickly.
    pub request_timeout: Duration,
    /// Bearer token required on `/traefik` (written to `server.token_file`).
    pub token: Option<String>,
    /// `engine.module`.
    pub module: Option<PathBuf>,
    /// The `[routes]` table.
    pub routes: toml::Table,
    /// Use `OS_*` variables instead of clouds.yaml.
    pub env_credentials: bool,
    /// Run the host from this container image under podman instead of the
    /// binary (`tests/image.rs`).
    pub container: Option<Container>,
    /// Serve over TLS with these files (`[server] tls_*`, `client_ca_file`).
    pub tls: Option<HostTls>,
    /// More clouds: with any, the configuration has `[[openstack]]`
    /// entries, `project`'s first (clouds.yaml entry `lab`), then one per
    /// project here (`lab-1`, `lab-2`, ...), with the same settings.
    pub more_clouds: Vec<Project>,
    /// The `[publish]` table (`state_file`, `max_stale`, `lease_ttl`,
    /// `[publish.etcd]`, `[publish.redis]`: see `stores::Etcd::publish_table`);
    /// left out when empty.
    pub publish: toml::Table,
    /// `openstack.page_size`; the host's default when `None`.
    pub page_size: Option<u32>,
    /// `engine.cache_dir`; the e2e runs' shared cache when `None`.
    pub cache_dir: Option<PathBuf>,
    /// The host's `RUST_LOG`; `$E2E_HOST_LOG` or `info` when `None`.
    pub log: Option<String>,
    /// Authenticate with this application credential (id, secret) of
    /// `project`'s user instead of the password.
    pub app_credential: Option<(String, String)>,
}

/// The host's TLS files; its certificate must name `localhost`.
#[derive(Clone)]
pub struct HostTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A host run as a container: the image and podman's settings.
#[derive(Clone)]
pub struct Container {
    /// The image, e.g. `traefik-openstack:dev`.
    pub image: String,
    /// `CONTAINERS_CONF` for podman (runc, no default ulimits here).
    pub containers_conf: PathBuf,
}

impl HostOptions {
    pub fn new(project: Project, routes: toml::Table) -> Self {
        HostOptions {
            project,
            all_projects: false,
            refresh_interval: REFRESH_INTERVAL,
            full_sync_interval: None,
            request_timeout: Duration::from_secs(3),
            token: None,
            module: None,
            routes,
            env_credentials: false,
            container: None,
            tls: None,
            more_clouds: Vec::new(),
            publish: toml::Table::new(),
            page_size: None,
            cache_dir: None,
            log: None,
            app_credential: None,
        }
    }
}

pub struct Host {
    pub dir: PathBuf,
    pub port: u16,
    pub config_file: PathBuf,
    pub token: Option<String>,
    /// Whether it serves HTTPS (as `localhost`).
    pub tls: bool,
    proc: std::sync::Mutex<Proc>,
    /// How it was started, for [`Host::restart`].
    opts: HostOptions,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Host {
    /// Writes config + clouds.yaml into `dir` and starts the host; waits for
    /// `/healthz`.
    pub fn start(lab: &Lab, dir: &Path, opts: &HostOptions) -> anyhow::Result<Host> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "{} is missing: build it with `cargo build -p traefik-openstack` (or set TRAEFIK_OPENSTACK_BIN)",
                bin.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let mut server = toml::Table::new();
        server.insert("listen".into(), format!("127.0.0.1:{port}").into());
        server.insert("path".into(), "/traefik".into());
        if let Some(t) = &opts.token {
            let f = dir.join("token");
            std::fs::write(&f, t)?;
            server.insert("token_file".into(), f.display().to_string().into());
        }
        if let Some(tls) = &opts.tls {
            server.insert(
                "tls_cert_file".into(),
                tls.cert.display().to_string().into(),
            );
            server.insert("tls_key_file".into(), tls.key.display().to_string().into());
            if let Some(ca) = &tls.client_ca {
                server.insert("client_ca_file".into(), ca.display().to_string().into());
            }
        }
        let mut os = toml::Table::new();
        if !opts.env_credentials {
            os.insert("cloud".into(), "lab".into());
        }
        os.insert(
            "refresh_interval".into(),
            format!("{}ms", opts.refresh_interval.as_millis()).into(),
        );
        if let Some(n) = opts.page_size {
            os.insert("page_size".into(), i64::from(n).into());
        }
        if let Some(full) = opts.full_sync_interval {
            os.insert(
                "full_sync_interval".into(),
                format!("{}ms", full.as_millis()).into(),
            );
        }
        os.insert(
            "request_timeout".into(),
            format!("{}ms", opts.request_timeout.as_millis()).into(),
        );
        os.insert("all_projects".into(), opts.all_projects.into());
        os.insert("region".into(), crate::lab::REGION.into());
        os.insert("interface".into(), "public".into());
        let mut engine = toml::Table::new();
        if let Some(m) = &opts.module {
            engine.insert("module".into(), m.display().to_string().into());
        }
        let cache_dir = match (&opts.container, &opts.cache_dir) {
            // The image's root is read-only; /tmp is its tmpfs.
            (Some(_), _) => "/tmp/cache".into(),
            (None, Some(dir)) => dir.display().to_string(),
            (None, None) => target_dir().join("e2e/module-cache").display().to_string(),
        };
        engine.insert("cache_dir".into(), cache_dir.into());
        let mut config = toml::Table::new();
        config.insert("server".into(), server.into());
        let mut clouds = vec![("lab".to_owned(), &opts.project)];
        if opts.more_clouds.is_empty() {
            config.insert("openstack".into(), os.into());
        } else {
            let mut entries = vec![toml::Value::Table(os.clone())];
            for (n, p) in opts.more_clouds.iter().enumerate() {
                let cloud = format!("lab-{}", n + 1);
                let mut entry = os.clone();
                entry.insert("cloud".into(), cloud.clone().into());
                entries.push(entry.into());
                clouds.push((cloud, p));
            }
            config.insert("openstack".into(), toml::Value::Array(entries));
        }
        if !opts.publish.is_empty() {
            config.insert("publish".into(), opts.publish.clone().into());
        }
        config.insert("engine".into(), engine.into());
        config.insert("routes".into(), opts.routes.clone().into());
        let config_file = dir.join("traefik-openstack.toml");
        std::fs::write(&config_file, toml::to_string_pretty(&config)?)?;
        let clouds_yaml = dir.join("clouds.yaml");
        lab.write_clouds_yaml_entries(&clouds_yaml, &clouds)?;
        if let Some((id, secret)) = &opts.app_credential {
            lab.write_clouds_yaml_app_credential(&clouds_yaml, "lab", id, secret)?;
        }
        let clouds = clouds_yaml;

        let mut env: Vec<(String, std::ffi::OsString)> = vec![(
            "RUST_LOG".into(),
            opts.log
                .clone()
                .or_else(|| std::env::var("E2E_HOST_LOG").ok())
                .unwrap_or_else(|| "info".into())
                .into(),
        )];
        if opts.env_credentials {
            let p = &opts.project;
            for (k, v) in [
                ("OS_AUTH_URL", lab.keystone_url()),
                ("OS_USERNAME", p.user.clone()),
                ("OS_PASSWORD", p.password.clone()),
                ("OS_PROJECT_NAME", p.name.clone()),
                ("OS_USER_DOMAIN_NAME", "Default".into()),
                ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
                ("OS_REGION_NAME", crate::lab::REGION.into()),
            ] {
                env.push((k.into(), v.into()));
            }
        } else {
            env.push(("OS_CLIENT_CONFIG_FILE".into(), clouds.into()));
        }
        let (mut proc, log_start) = Self::launch(dir, port, opts, &config_file, &env)?;
        Self::wait_started(&mut proc, port, opts, log_start)?;
        Ok(Host {
            dir: dir.to_path_buf(),
            port,
            config_file,
            token: opts.token.clone(),
            tls: opts.tls.is_some(),
            proc: std::sync::Mutex::new(proc),
            opts: opts.clone(),
            env,
        })
    }

    /// Starts the process; returns it and where its output begins in the log.
    fn launch(
        dir: &Path,
        port: u16,
        opts: &HostOptions,
        config_file: &Path,
        env: &[(String, std::ffi::OsString)],
    ) -> anyhow::Result<(Proc, u64)> {
        let bin = binary();
        let log = dir.join("host.log");
        // a restarted host appends: the log of the whole case stays
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = match &opts.container {
            None => Command::new(&bin),
            Some(c) => {
                // The image's user (uid 65532) reads the case's files,
                // mounted read-only at the same path.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    dir.join("clouds.yaml"),
                    std::fs::Permissions::from_mode(0o644),
                )?;
                let mut cmd = Command::new("podman");
                cmd.env("CONTAINERS_CONF", &c.containers_conf)
                    .args(["run", "--rm", "--network", "host", "--read-only"])
                    // Its HEALTHCHECK needs systemd timers, absent here.
                    .arg("--no-healthcheck")
                    .arg(format!("--name=traefik-openstack-e2e-{port}"))
                    .arg(format!("--volume={0}:{0}:ro", dir.display()))
                    .arg("--env=OS_CLIENT_CONFIG_FILE")
                    .arg("--env=RUST_LOG")
                    .arg(&c.image);
                cmd
            }
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(config_file)
            .current_dir(dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn_tied("traefik-openstack", cmd, &log)?;
        Ok((proc, log_start))
    }

    /// Waits until the host answers `/healthz` and has loaded its module.
    fn wait_started(
        proc: &mut Proc,
        port: u16,
        opts: &HostOptions,
        log_start: u64,
    ) -> anyhow::Result<()> {
        let log = proc.log_path().to_path_buf();
        let addr = format!("127.0.0.1:{port}");
        wait_blocking(
            "traefik-openstack /healthz",
            Duration::from_secs(60),
            || {
                if let Some(st) = proc.exited() {
                    return Err(format!("exited with {st}; log:\n{}", proc.log_tail(40)));
                }
                if opts.tls.is_some() {
                    // A TLS endpoint (maybe asking for a client certificate):
                    // accepting connections is what tells it is up.
                    return std::net::TcpStream::connect(&addr)
                        .map(drop)
                        .map_err(|e| e.to_string());
                }
                match http_status_blocking(&addr, "/healthz") {
                    Ok(200) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )?;
        // The host answers /healthz while its module still compiles; Traefik
        // started now would meet 503s and back off for many seconds, so the
        // cases start it once the module is in (as a deployment's readiness
        // gate would).
        wait_blocking(
            "traefik-openstack loading its route module",
            Duration::from_secs(300),
            || {
                if let Some(st) = proc.exited() {
                    return Err(format!("exited with {st}; log:\n{}", proc.log_tail(40)));
                }
                let text = std::fs::read(&log).unwrap_or_default();
                let text =
                    String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default());
                if text.contains("route module loaded") {
                    Ok(())
                } else {
                    Err(proc.log_tail(5))
                }
            },
        )?;
        Ok(())
    }

    /// Starts the host again (after [`Host::sigkill`]) with the same
    /// configuration, on the same port (Traefik polls the same URL); waits
    /// without blocking the runtime until it has loaded its module.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.sigkill();
        let (proc, log_start) = Self::launch(
            &self.dir,
            self.port,
            &self.opts,
            &self.config_file,
            &self.env,
        )?;
        *self.lock() = proc;
        let log = self.dir.join("host.log");
        let what = "the restarted traefik-openstack loading its route module";
        crate::util::try_eventually(what, Duration::from_secs(300), || async {
            if let Some(st) = self.lock().exited() {
                return Err(format!("exited with {st}; log:\n{}", self.log_tail(40)));
            }
            let text = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default());
            if text.contains("route module loaded") {
                Ok(())
            } else {
                Err(self.log_tail(5))
            }
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The binary with this host's configuration and credentials, for its
    /// one-shot commands (`render`, `inventory`, ...).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_file)
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("OS_CLIENT_CONFIG_FILE", self.dir.join("clouds.yaml"));
        cmd
    }

    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    /// GET `path` on the host (with the bearer token when one is set).
    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let mut req = reqwest::Client::new()
            .get(self.url(path))
            .timeout(Duration::from_secs(10));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("GET {path} on the host"))?;
        let status = r.status();
        Ok((status, r.text().await?))
    }

    /// `/readyz`: status and body.
    pub async fn readyz(&self) -> anyhow::Result<(StatusCode, String)> {
        self.get("/readyz").await
    }

    /// The value of the first `/metrics` sample named `name` (no labels), if any.
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let (_, text) = self.get("/metrics").await?;
        Ok(metric_value(&text, name))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.get("/metrics").await?.1)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::proc::log_tail(&self.dir.join("host.log"), lines)
    }

    /// The whole log so far (of every run, after restarts).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.join("host.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Stops the host at once (SIGTERM, SIGKILL without grace): nothing
    /// it would do on the way out is waited for.
    pub fn kill(&mut self) {
        self.lock().stop(Duration::ZERO);
    }

    /// SIGKILL: no graceful shutdown at all (no lease given up).
    pub fn sigkill(&self) {
        self.lock().sigkill();
    }

    pub fn is_running(&mut self) -> bool {
        self.lock().exited().is_none()
    }
}

/// Sum of the samples of `name` whose labels contain every `(key, value)` in
/// `labels` (`None` if there is none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name
            || !labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of the unlabelled sample `name`.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
