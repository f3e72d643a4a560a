//! The OpenStack lab: real Keystone and Nova API (Python, `tests/lab/`) on
//! sqlite, no hypervisor, no message queue; servers are seeded into Nova's
//! databases and then handled by the real Nova API.
//!
//! `tests/lab/labctl.py prepare` builds (once, cached under `target/`) the
//! pinned venvs and a template of initialised databases; every [`Lab`] copies
//! the template into its own `target/e2e/<run>/`, starts Keystone, the
//! Neutron/Placement stub and Nova on free ports, and a [`FaultProxy`] that the
//! catalog's compute endpoint points at.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::proc::Proc;
use crate::proxy::FaultProxy;
use crate::util::{
    free_port, http_status_blocking, run_dir, target_dir, wait_blocking, workspace_root,
};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "s3cret";
pub const ADMIN_PROJECT: &str = "admin";
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demopass";
pub const DEMO_PROJECT: &str = "demo";
pub const REGION: &str = "RegionOne";

/// What `labctl.py prepare` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct Prepared {
    pub python: PathBuf,
    pub traefik: PathBuf,
    pub template: PathBuf,
    pub lab_dir: PathBuf,
}

/// Runs `labctl.py prepare` (venvs + database template; cached).
pub fn prepare() -> anyhow::Result<Prepared> {
    let labctl = workspace_root().join("tests/lab/labctl.py");
    let out = Command::new(python3())
        .arg(&labctl)
        .args(["prepare", "--target"])
        .arg(target_dir())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running python3 {} (is python3 >= 3.9 installed?)",
                labctl.display()
            )
        })?;
    if !out.status.success() {
        bail!("{} prepare failed ({})", labctl.display(), out.status);
    }
    serde_json::from_slice(&out.stdout).context("labctl.py prepare output")
}

fn python3() -> String {
    std::env::var("E2E_PYTHON3").unwrap_or_else(|_| "python3".into())
}

/// One of the lab's Python services, restartable (for outage cases).
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log: PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl Service {
    fn spawn(&self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.cmd[0]);
        cmd.args(&self.cmd[1..])
            .current_dir(&self.cwd)
            .env("PYTHONWARNINGS", "ignore");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let p = Proc::spawn(self.name, cmd, &self.log)?;
        *self.proc.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        Ok(())
    }

    fn wait_up(&self) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", self.port);
        wait_blocking(
            &format!("{} on {addr}", self.name),
            Duration::from_secs(90),
            || {
                if let Some(p) = self.proc.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                    && let Some(st) = p.exited()
                {
                    return Err(format!(
                        "exited with {st}; log {}:\n{}",
                        p.log_path().display(),
                        p.log_tail(30)
                    ));
                }
                http_status_blocking(&addr, "/").map(|_| ())
            },
        )
    }

    /// Starts the service and waits until it answers HTTP.
    pub fn start(&self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_up()
    }

    /// Stops the service (SIGTERM); its data stays for a later [`Service::start`].
    pub fn stop(&self) {
        if let Some(mut p) = self.proc.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.stop(Duration::from_secs(5));
        }
    }

    pub fn is_running(&self) -> bool {
        self.proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_some_and(|p| p.exited().is_none())
    }
}

/// A Keystone project with one user holding a role on it.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub id: String,
    pub user: String,
    pub user_id: String,
    pub password: String,
}

/// A seeded server.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
}

/// What to seed: name, addresses, metadata, tags, status.
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    pub name: String,
    pub fixed: Option<String>,
    pub floating: Option<String>,
    pub ipv6: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub tags: Vec<String>,
    /// ACTIVE (default), SHUTOFF, ERROR, BUILD, PAUSED, SUSPENDED.
    pub status: Option<String>,
}

impl ServerSpec {
    pub fn new(name: &str) -> Self {
        ServerSpec {
            name: name.into(),
            ..Default::default()
        }
    }
    pub fn floating(mut self, ip: impl ToString) -> Self {
        self.floating = Some(ip.to_string());
        self
    }
    pub fn fixed(mut self, ip: impl ToString) -> Self {
        self.fixed = Some(ip.to_string());
        self
    }
    pub fn meta(mut self, k: &str, v: &str) -> Self {
        self.metadata.push((k.into(), v.into()));
        self
    }
    pub fn tag(mut self, t: &str) -> Self {
        self.tags.push(t.into());
        self
    }
    pub fn status(mut self, s: &str) -> Self {
        self.status = Some(s.into());
        self
    }
    fn to_json(&self) -> Value {
        let meta: serde_json::Map<String, Value> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "name": self.name, "fixed": self.fixed, "floating": self.floating,
            "ipv6": self.ipv6, "metadata": meta, "tags": self.tags,
            "status": self.status.as_deref().unwrap_or("ACTIVE"),
        })
    }
}

pub struct Lab {
    pub dir: PathBuf,
    pub prepared: Prepared,
    pub keystone: Service,
    pub nova: Service,
    pub stub: Service,
    /// In front of Nova; the catalog's compute endpoint.
    pub proxy: FaultProxy,
    pub admin_project_id: String,
    pub admin_user_id: String,
    pub demo_project_id: String,
    pub demo_user_id: String,
    seed_lock: Mutex<()>,
}

impl Lab {
    /// Prepares (cached) and starts a lab in a fresh `target/e2e/<prefix>-*`.
    pub fn start(prefix: &str) -> anyhow::Result<Lab> {
        let prepared = prepare()?;
        let dir = run_dir(prefix);
        let (ks_port, nova_port, stub_port) = (free_port(), free_port(), free_port());
        let labctl = prepared.lab_dir.join("labctl.py");
        let st = Command::new(python3())
            .arg(&labctl)
            .args(["init", "--template"])
            .arg(&prepared.template)
            .arg("--state")
            .arg(&dir)
            .args([
                "--ks-port",
                &ks_port.to_string(),
                "--stub-port",
                &stub_port.to_string(),
            ])
            .status()?;
        if !st.success() {
            bail!("labctl.py init failed ({st})");
        }
        let py = prepared.python.display().to_string();
        let serve = prepared.lab_dir.join("serve.py").display().to_string();
        let etc = dir.join("etc");
        let service = |name: &'static str, port: u16, env: Vec<(String, String)>| Service {
            name,
            port,
            cmd: vec![
                py.clone(),
                serve.clone(),
                name.to_string(),
                port.to_string(),
            ],
            env,
            cwd: dir.clone(),
            log: dir.join("logs").join(format!("{name}.out")),
            proc: Mutex::new(None),
        };
        let keystone = service(
            "keystone",
            ks_port,
            vec![(
                "OS_KEYSTONE_CONFIG_FILES".into(),
                etc.join("keystone.conf").display().to_string(),
            )],
        );
        let stub = service("stub", stub_port, vec![]);
        let nova = service(
            "nova",
            nova_port,
            vec![
                ("OS_NOVA_CONFIG_DIR".into(), etc.display().to_string()),
                (
                    "OS_NOVA_CONFIG_FILES".into(),
                    "api-paste.ini;nova.conf".into(),
                ),
            ],
        );
        // start all three, then wait: the imports take seconds each
        keystone.spawn()?;
        stub.spawn()?;
        nova.spawn()?;
        keystone.wait_up()?;
        stub.wait_up()?;
        nova.wait_up()?;
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], nova_port)))?;

        let ids = ksinit(
            &prepared,
            ks_port,
            &[("COMPUTE_URL", format!("http://{}/v2.1", proxy.addr()))],
            &["init"],
        )?;
        let get = |k: &str| {
            ids[k]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("ksinit: no {k} in {ids}"))
        };
        Ok(Lab {
            admin_project_id: get("admin_project_id")?,
            admin_user_id: get("admin_user_id")?,
            demo_project_id: get("demo_project_id")?,
            demo_user_id: get("demo_user_id")?,
            dir,
            prepared,
            keystone,
            nova,
            stub,
            proxy,
            seed_lock: Mutex::new(()),
        })
    }

    /// Restarts stopped services and sets the proxy back to pass, without
    /// HTTP-level faults.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.proxy.set_mode(crate::proxy::Mode::Pass);
        self.proxy.set_faults(crate::proxy::HttpFaults::default());
        for s in [&self.keystone, &self.stub, &self.nova] {
            if !s.is_running() {
                s.start()?;
            }
        }
        Ok(())
    }

    /// `http://127.0.0.1:P/v3`
    pub fn keystone_url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.keystone.port)
    }

    /// Nova itself, bypassing the proxy: for the harness's own calls.
    pub fn nova_url(&self) -> String {
        format!("http://127.0.0.1:{}/v2.1", self.nova.port)
    }

    /// The compute endpoint in the catalog (the proxy).
    pub fn compute_url(&self) -> String {
        format!("http://{}/v2.1", self.proxy.addr())
    }

    pub fn admin(&self) -> Project {
        Project {
            name: ADMIN_PROJECT.into(),
            id: self.admin_project_id.clone(),
            user: ADMIN_USER.into(),
            user_id: self.admin_user_id.clone(),
            password: ADMIN_PASSWORD.into(),
        }
    }

    pub fn demo(&self) -> Project {
        Project {
            name: DEMO_PROJECT.into(),
            id: self.demo_project_id.clone(),
            user: DEMO_USER.into(),
            user_id: self.demo_user_id.clone(),
            password: DEMO_PASSWORD.into(),
        }
    }

    /// Creates (idempotently) project `name` and user `<name>-user` with the
    /// member role on it.
    pub fn project(&self, name: &str) -> anyhow::Result<Project> {
        let user = format!("{name}-user");
        let password = format!("{name}-pw");
        let ids = ksinit(
            &self.prepared,
            self.keystone.port,
            &[],
            &["project", name, &user, &password],
        )?;
        Ok(Project {
            name: name.into(),
            id: ids["project_id"].as_str().context("project_id")?.into(),
            user,
            user_id: ids["user_id"].as_str().context("user_id")?.into(),
            password,
        })
    }

    fn lab_call(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        use std::io::{Read, Write};
        let _guard = self.seed_lock.lock().unwrap_or_else(|e| e.into_inner());
        let data = body.to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.nova.port))
            .with_context(|| format!("connecting to Nova for {path} (is it running?)"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP response")?;
        let v: Value = serde_json::from_str(body).with_context(|| format!("{path}: {body}"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("{path} failed: {}", v);
        }
        Ok(v)
    }

    /// Seeds servers into `project` (straight into Nova's databases).
    pub fn seed(&self, project: &Project, servers: &[ServerSpec]) -> anyhow::Result<Vec<Server>> {
        let spec = json!({
            "project_id": project.id, "user_id": project.user_id,
            "servers": servers.iter().map(ServerSpec::to_json).collect::<Vec<_>>(),
        });
        let v = self.lab_call("/_lab/seed", &spec)?;
        Ok(serde_json::from_value(v["servers"].clone())?)
    }

    /// Sets a server's status (vm_state), e.g. SHUTOFF or ACTIVE.
    pub fn set_status(&self, server_id: &str, status: &str) -> anyhow::Result<()> {
        self.lab_call("/_lab/state", &json!({"id": server_id, "status": status}))?;
        Ok(())
    }

    /// A clouds.yaml with one entry, `cloud`, for `project`'s user.
    pub fn write_clouds_yaml(
        &self,
        path: &Path,
        cloud: &str,
        project: &Project,
    ) -> anyhow::Result<()> {
        self.write_clouds_yaml_entries(path, &[(cloud.to_owned(), project)])
    }

    /// A clouds.yaml with an entry per `(cloud, project)`, each for that
    /// project's user.
    pub fn write_clouds_yaml_entries(
        &self,
        path: &Path,
        entries: &[(String, &Project)],
    ) -> anyhow::Result<()> {
        let q = |s: &str| serde_json::to_string(s).expect("string");
        let mut yaml = "clouds:\n".to_owned();
        for (cloud, project) in entries {
            yaml += &format!(
                "  {cloud}:\n    auth:\n      auth_url: {}\n      username: {}\n      password: {}\n      project_name: {}\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: {}\n    interface: public\n    identity_api_version: 3\n",
                q(&self.keystone_url()),
                q(&project.user),
                q(&project.password),
                q(&project.name),
                q(REGION),
            );
        }
        std::fs::write(path, yaml)?;
        Ok(())
    }

    /// A clouds.yaml with one entry, `cloud`, authenticating with the
    /// application credential `id` / `secret`.
    pub fn write_clouds_yaml_app_credential(
        &self,
        path: &Path,
        cloud: &str,
        id: &str,
        secret: &str,
    ) -> anyhow::Result<()> {
        let q = |s: &str| serde_json::to_string(s).expect("string");
        let yaml = format!(
            "clouds:\n  {cloud}:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {}\n      application_credential_id: {}\n      application_credential_secret: {}\n    region_name: {}\n    interface: public\n    identity_api_version: 3\n",
            q(&self.keystone_url()),
            q(id),
            q(secret),
            q(REGION),
        );
        std::fs::write(path, yaml)?;
        Ok(())
    }

    /// The log files of the lab, for failure messages.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.nova.stop();
        self.keystone.stop();
        self.stub.stop();
    }
}

fn ksinit(
    prepared: &Prepared,
    ks_port: u16,
    env: &[(&str, String)],
    args: &[&str],
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(python3());
    cmd.arg(prepared.lab_dir.join("ksinit.py"))
        .args(args)
        .env("KS_URL", format!("http://127.0.0.1:{ks_port}/v3"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("ksinit.py {args:?} failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("ksinit.py output")
}

/// Heals the lab when dropped: a case that breaks the shared lab (stops a
/// service, sets the proxy to fail) leaves it whole even when it panics.
pub struct Heal(pub &'static Lab);

/// One case's turn with the shared lab's faults (the Nova proxy, stopped
/// services): such cases take turns, each on a lab healed before it and
/// again however it ends (panics included).
pub struct Exclusive {
    // Dropped in this order: healed, then the next case's turn.
    _heal: Heal,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Lab {
    /// Waits for this case's turn (see [`Exclusive`]).
    pub async fn exclusive(&'static self) -> anyhow::Result<Exclusive> {
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let turn = TURN.lock().await;
        // whatever a failed case left broken is mended, now and after this one
        self.heal()?;
        Ok(Exclusive {
            _heal: Heal(self),
            _turn: turn,
        })
    }
}

impl Drop for Heal {
    fn drop(&mut self) {
        if let Err(e) = self.0.heal() {
            eprintln!("could not heal the lab: {e:#}");
        }
    }
}
