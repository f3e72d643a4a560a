//! One case's world: its own Keystone project (so its host sees only its
//! VMs), backends on its own loopback addresses, a host and a Traefik.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::backend::Backend;
use crate::host::{Host, HostOptions};
use crate::lab::{Lab, Project, Server, ServerSpec};
use crate::nova::Nova;
use crate::traefik::{Ports, Reply, Traefik};
use crate::util::{free_port, freshness, run_dir, try_eventually};

/// See [`Scenario::settle`]: longer than any reasonable `changes-since`
/// overlap (the host uses 5 s).
pub const SETTLE: Duration = Duration::from_secs(7);

/// The domain of the default rules.
pub const DOMAIN: &str = "training.example.com";

pub struct Scenario<'l> {
    pub lab: &'l Lab,
    pub name: String,
    pub dir: PathBuf,
    pub project: Project,
    /// Port every backend of this case listens on (`default_port`).
    pub port: u16,
    pub ports: Ports,
    pub nova: Nova,
    net: u8,
    backends: BTreeMap<String, Backend>,
    // dropped in this order: Traefik first, then the host
    pub traefik: Option<Traefik>,
    pub host: Option<Host>,
}

impl<'l> Scenario<'l> {
    /// A case with its own project `name` (use a distinct name per case).
    pub async fn new(lab: &'l Lab, name: &str) -> anyhow::Result<Scenario<'l>> {
        let project = lab.project(name)?;
        Self::with_project(lab, name, project).await
    }

    /// A case using an existing project (admin, demo).
    pub async fn with_project(
        lab: &'l Lab,
        name: &str,
        project: Project,
    ) -> anyhow::Result<Scenario<'l>> {
        static NET: AtomicU8 = AtomicU8::new(1);
        let net = NET.fetch_add(1, Ordering::SeqCst);
        let nova = Nova::login(lab, &project).await?;
        Ok(Scenario {
            lab,
            name: name.into(),
            dir: run_dir(name),
            project,
            port: free_port(),
            ports: Ports::free(),
            nova,
            net,
            backends: BTreeMap::new(),
            traefik: None,
            host: None,
        })
    }

    /// The case's n-th loopback VM address, `127.<pid>.<case>.<n>`.
    pub fn ip(&self, n: u8) -> Ipv4Addr {
        let b = 10 + (std::process::id() % 200) as u8;
        Ipv4Addr::new(127, b, self.net, n)
    }

    /// A server spec for VM `name` with floating address `ip(n)` and a fixed
    /// address in 10/8, and a backend answering as `name` on `ip(n)`.
    pub fn vm(&mut self, name: &str, n: u8) -> anyhow::Result<ServerSpec> {
        self.backend(name, n)?;
        Ok(ServerSpec::new(name)
            .floating(self.ip(n))
            .fixed(Ipv4Addr::new(10, self.net, 0, n)))
    }

    /// Starts a backend answering as `name` on `ip(n)`, default port.
    pub fn backend(&mut self, name: &str, n: u8) -> anyhow::Result<()> {
        let port = self.port;
        self.backend_on(name, n, port).map(|_| ())
    }

    /// Starts a backend answering as `name` on `ip(n):port` (0: any free
    /// port); returns the port.
    pub fn backend_on(&mut self, name: &str, n: u8, port: u16) -> anyhow::Result<u16> {
        let b = Backend::start(name, IpAddr::V4(self.ip(n)), port)
            .with_context(|| format!("backend {name} on {}:{port}", self.ip(n)))?;
        let port = b.addr().port();
        self.backends.insert(name.into(), b);
        Ok(port)
    }

    /// Seeds servers into this case's project.
    pub fn seed(&self, servers: &[ServerSpec]) -> anyhow::Result<Vec<Server>> {
        self.lab.seed(&self.project, servers)
    }

    /// Routes settings: ``Host(`{{ .Name }}.training.example.com`)`` on `web`,
    /// floating addresses, this case's backend port.
    pub fn plain_routes(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert(
            "default_rule".into(),
            format!("Host(`{{{{ .Name }}}}.{DOMAIN}`)").into(),
        );
        t.insert("exposed_by_default".into(), true.into());
        t.insert("address".into(), "floating".into());
        t.insert(
            "entry_points".into(),
            toml::Value::Array(vec!["web".into()]),
        );
        t.insert("statuses".into(), toml::Value::Array(vec!["ACTIVE".into()]));
        t.insert("default_port".into(), i64::from(self.port).into());
        t
    }

    /// The seed's own example, as shipped in `traefik/traefik-openstack.toml`:
    /// per VM an http router redirecting to https (the shared `http-to-https`
    /// redirectScheme middleware) and an https router (TLS), both
    /// ``Host(`{{ .Name }}.training.example.com`)``, floating addresses. Only
    /// the backends' port is this case's instead of 80.
    pub fn seed_example_routes(&self) -> toml::Table {
        let file = crate::util::workspace_root().join("traefik/traefik-openstack.toml");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let config: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut routes = config
            .get("routes")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_else(|| panic!("{}: no [routes]", file.display()));
        let port = self.port.to_string();
        if let Some(toml::Value::Table(labels)) = routes.get_mut("default_labels") {
            for (k, v) in labels.iter_mut() {
                if k.ends_with(".loadbalancer.server.port") {
                    *v = port.clone().into();
                }
            }
        }
        routes.insert("default_port".into(), i64::from(self.port).into());
        routes
    }

    /// Host options for this case's project and `routes`.
    pub fn options(&self, routes: toml::Table) -> HostOptions {
        HostOptions::new(self.project.clone(), routes)
    }

    /// Starts the host with `opts`, then Traefik polling it.
    pub fn start(&mut self, opts: &HostOptions) -> anyhow::Result<()> {
        self.start_with(opts, serde_json::json!({}))
    }

    /// As [`Scenario::start`], with `traefik` merged into Traefik's static
    /// configuration (see [`Traefik::start_with`]).
    pub fn start_with(
        &mut self,
        opts: &HostOptions,
        traefik: serde_json::Value,
    ) -> anyhow::Result<()> {
        let host = Host::start(self.lab, &self.dir.join("host"), opts)?;
        let traefik = Traefik::start_with(
            &self.lab.prepared.traefik,
            &self.dir.join("traefik"),
            self.ports,
            &host.url("/traefik"),
            host.token.as_deref(),
            traefik,
        )?;
        self.host = Some(host);
        self.traefik = Some(traefik);
        Ok(())
    }

    pub fn host(&self) -> &Host {
        self.host.as_ref().expect("scenario started")
    }

    pub fn traefik(&self) -> &Traefik {
        self.traefik.as_ref().expect("scenario started")
    }

    /// `<vm>.training.example.com`
    pub fn fqdn(vm: &str) -> String {
        format!("{vm}.{DOMAIN}")
    }

    /// Waits (freshness deadline) until a request for `host` on `web`
    /// reaches backend `backend`.
    pub async fn wait_reaches(&self, host: &str, backend: &str) -> Reply {
        self.wait_reaches_within(host, backend, freshness()).await
    }

    pub async fn wait_reaches_within(
        &self,
        host: &str,
        backend: &str,
        deadline: Duration,
    ) -> Reply {
        let t = self.traefik();
        let what = format!("Host: {host} reaches backend {backend}");
        let r = try_eventually(&what, deadline, || async {
            let r = t.get_http(host, "/").await.map_err(|e| e.to_string())?;
            if r.backend.as_deref() == Some(backend) {
                Ok(r)
            } else {
                Err(format!(
                    "{} backend={:?} {}",
                    r.status,
                    r.backend,
                    r.body.trim()
                ))
            }
        })
        .await;
        match r {
            Ok(r) => r,
            Err(e) => panic!("{e}\n{}", self.dump().await),
        }
    }

    /// Waits until a request for `host` on `web` reaches no backend (404).
    pub async fn wait_unrouted(&self, host: &str) {
        let t = self.traefik();
        let what = format!("Host: {host} no longer routed");
        let r = try_eventually(&what, freshness(), || async {
            let r = t.get_http(host, "/").await.map_err(|e| e.to_string())?;
            if r.status == reqwest::StatusCode::NOT_FOUND && r.backend.is_none() {
                Ok(())
            } else {
                Err(format!("{} backend={:?}", r.status, r.backend))
            }
        })
        .await;
        if let Err(e) = r {
            panic!("{e}\n{}", self.dump().await);
        }
    }

    /// Lets the servers' last update fall behind the host's `changes-since`
    /// window. Nova does not bump a server's `updated` on tag changes or on
    /// `DELETE .../metadata/{key}`; right after seeding, any listing would
    /// still catch them and hide a host that misses such changes later.
    pub async fn settle(&self) {
        tokio::time::sleep(SETTLE).await;
    }

    /// What the host serves and thinks, for failure messages.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        if let Some(h) = &self.host {
            for path in ["/traefik", "/api/instances", "/readyz"] {
                match h.get(path).await {
                    Ok((st, body)) => out += &format!("--- host {path}: {st}\n{body}\n"),
                    Err(e) => out += &format!("--- host {path}: {e:#}\n"),
                }
            }
        }
        out + &self.logs()
    }

    /// Which backend a request for `host` on `web` reaches now.
    pub async fn reaches(&self, host: &str) -> anyhow::Result<Reply> {
        self.traefik().get_http(host, "/").await
    }

    /// Logs of the host and Traefik, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Some(h) = &self.host {
            s += &format!("--- host ({}):\n{}\n", h.dir.display(), h.log_tail(40));
        }
        if let Some(t) = &self.traefik {
            s += &format!("--- traefik:\n{}\n", t.log_tail(20));
        }
        s
    }
}
