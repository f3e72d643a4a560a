//! The TOML configuration file: what the operator sets.
//!
//! Every key is optional. Unknown keys and bad values are refused with the
//! file, the key and the reason, because a typo that silently falls back to a
//! default is how a sidecar ends up routing nothing in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The configuration file (`traefik-openstack.toml`), with defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the HTTP side.
    pub server: ServerConfig,
    /// `[openstack]` or `[[openstack]]`: the clouds and how often to ask
    /// them; one default entry when absent.
    pub openstack: Clouds,
    /// `[publish]`: the state file, and the KV stores written besides the
    /// HTTP endpoint.
    pub publish: PublishConfig,
    /// `[engine]`: the route module and its limits.
    pub engine: EngineConfig,
    /// Handed to the route module as JSON; the module owns its schema.
    pub routes: toml::Table,
}

/// `[server]`: where Traefik and operators reach the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Path of the Traefik configuration endpoint.
    pub path: String,
    /// File holding a bearer token required on the configuration endpoint, the
    /// status page, `/api/instances` and `/api/module` (pair with Traefik's
    /// `providers.http.headers`).
    pub token_file: Option<PathBuf>,
    /// How long a connection may take to deliver a request's headers,
    /// counted from when it opens or its previous response ended: a client
    /// that sends nothing, or its headers a byte at a time, or sits idle
    /// between keep-alive requests, is disconnected after it; so is one
    /// that reads a response slower than 64 KiB per period of it.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once. At the limit, a new connection closes the
    /// one that has been waiting longest for a request; see
    /// [`crate::server::Limits`].
    pub max_connections: usize,
    /// Largest request line plus headers, in bytes; larger requests are
    /// answered 431 and the connection closed.
    pub max_header_bytes: usize,
    /// Serve HTTPS with this certificate chain (PEM); needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mTLS.
    pub client_ca_file: Option<PathBuf>,
}

/// Below this a Traefik poll with a bearer token and a few custom headers
/// could be refused.
const MIN_HEADER_BYTES: usize = 1024;
/// hyper's default read buffer (about 400 KiB) refuses larger headers anyway;
/// staying under it keeps this key the one limit that applies.
const MAX_HEADER_BYTES: usize = 256 * 1024;

impl ServerConfig {
    /// The TLS files, when TLS is on.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.client_ca_file.clone(),
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            path: "/traefik".into(),
            token_file: None,
            request_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_header_bytes: 16 * 1024,
            tls_cert_file: None,
            tls_key_file: None,
            client_ca_file: None,
        }
    }
}

/// The `[openstack]` table or the `[[openstack]]` entries: never empty.
#[derive(Debug, Clone)]
pub struct Clouds(Vec<OpenStackConfig>);

impl Default for Clouds {
    fn default() -> Self {
        Self(vec![OpenStackConfig::default()])
    }
}

impl std::ops::Deref for Clouds {
    type Target = [OpenStackConfig];
    fn deref(&self) -> &[OpenStackConfig] {
        &self.0
    }
}

impl From<Vec<OpenStackConfig>> for Clouds {
    /// The entries given; one default entry for an empty list.
    fn from(entries: Vec<OpenStackConfig>) -> Self {
        match entries.is_empty() {
            true => Self::default(),
            false => Self(entries),
        }
    }
}

impl<'de> Deserialize<'de> for Clouds {
    /// A table is the single-cloud form, an array of tables the several.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Many(Vec<toml::Table>),
            One(toml::Table),
        }
        let parse =
            |t: toml::Table| OpenStackConfig::deserialize(t).map_err(serde::de::Error::custom);
        match Form::deserialize(d)? {
            Form::One(t) => Ok(Self(vec![parse(t)?])),
            Form::Many(ts) if ts.is_empty() => Err(serde::de::Error::custom(
                "[[openstack]]: at least one entry is needed",
            )),
            Form::Many(ts) => ts
                .into_iter()
                .enumerate()
                .map(|(n, t)| {
                    OpenStackConfig::deserialize(t)
                        .map_err(|e| serde::de::Error::custom(format!("openstack[{n}]: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(Self),
        }
    }
}

/// `[openstack]` (or one `[[openstack]]` entry): which cloud, and how the
/// inventory is refreshed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenStackConfig {
    /// What `/readyz`, `/metrics` and the logs call this cloud; defaults to
    /// "<clouds.yaml entry>/<region>".
    pub name: Option<String>,
    /// Entry of clouds.yaml; without it `OS_CLOUD`, then the `OS_*` variables.
    pub cloud: Option<String>,
    /// How often Nova is asked for changes.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How often a full listing replaces the incremental picture. Nova does
    /// not bump a server's `updated` when its tags change or one metadata
    /// key is deleted, so `changes-since` misses those; this bounds how long.
    /// Set it equal to `refresh_interval` to list everything every time.
    #[serde(with = "humantime_serde")]
    pub full_sync_interval: Duration,
    /// List every project's instances (needs an admin role).
    pub all_projects: bool,
    /// Region of the compute endpoint; overrides the cloud's `region_name`.
    pub region: Option<String>,
    /// Endpoint interface: public, internal or admin; overrides the cloud's.
    pub interface: Option<String>,
    /// Also ask Neutron for floating IPs, for clouds whose Nova does not
    /// show them in `addresses`.
    pub neutron_floating_ips: bool,
    /// Timeout of one OpenStack HTTP request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Servers per Nova page.
    pub page_size: u32,
}

impl Default for OpenStackConfig {
    fn default() -> Self {
        Self {
            name: None,
            cloud: None,
            refresh_interval: Duration::from_secs(10),
            full_sync_interval: Duration::from_secs(60),
            all_projects: false,
            region: None,
            interface: None,
            neutron_floating_ips: false,
            request_timeout: Duration::from_secs(30),
            page_size: 1000,
        }
    }
}

impl OpenStackConfig {
    /// `at`: "openstack", or "openstack[1]" among several.
    fn validate(&self, at: &str) -> Result<(), String> {
        let o = self;
        if o.refresh_interval < Duration::from_millis(100) {
            return Err(format!(
                "{at}.refresh_interval: must be at least 100ms, got {}",
                humantime::format_duration(o.refresh_interval)
            ));
        }
        if o.full_sync_interval < o.refresh_interval {
            return Err(format!(
                "{at}.full_sync_interval: must not be shorter than refresh_interval"
            ));
        }
        if o.request_timeout.is_zero() {
            return Err(format!("{at}.request_timeout: must be more than 0s"));
        }
        if !(1..=10_000).contains(&o.page_size) {
            return Err(format!(
                "{at}.page_size: must be 1..=10000, got {}",
                o.page_size
            ));
        }
        if let Some(i) = &o.interface
            && !matches!(i.as_str(), "public" | "internal" | "admin")
        {
            return Err(format!(
                "{at}.interface: must be public, internal or admin, got {i:?}"
            ));
        }
        if o.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(format!("{at}.name: must not be empty"));
        }
        Ok(())
    }
}

/// `[engine]`: which route module runs, and its budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Route module (.wasm component); the module built into the binary
    /// when unset. Watched: a changed file is swapped in if it works.
    pub module: Option<PathBuf>,
    /// Where compiled modules are cached across restarts; defaults to
    /// `$XDG_CACHE_HOME/traefik-openstack` (or `~/.cache/...`). `""` disables.
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock budget of one generate call, before the share that
    /// follows the number of instances.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Added to `timeout` per 1,000 instances of the run (pro rata), so a
    /// large cloud is not cut off by a budget sized for a small one.
    #[serde(with = "humantime_serde")]
    pub timeout_per_1k_instances: Duration,
    /// Linear memory a module may grow to, in MiB, before the share that
    /// follows the number of instances.
    pub memory_limit_mib: u32,
    /// Added to `memory_limit_mib` per 1,000 instances (pro rata); the sum
    /// is capped at 4 GiB, all a 32-bit module can address.
    pub memory_per_1k_instances_mib: u32,
    /// Give the module the host's clocks instead of a fixed instant.
    /// Off by default: output that depends on the time changes its bytes
    /// on every run, and Traefik reloads each time.
    pub host_clocks: bool,
    /// Give the module the host's random sources instead of a fixed seed;
    /// off by default for the same reason.
    pub host_random: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            module: None,
            cache_dir: None,
            timeout: Duration::from_secs(1),
            // The built-in policy takes about 50 ms and 10 MiB per 1,000
            // instances (bench/results.md): four to five times that.
            timeout_per_1k_instances: Duration::from_millis(250),
            memory_limit_mib: 512,
            memory_per_1k_instances_mib: 48,
            host_clocks: false,
            host_random: false,
        }
    }
}

/// `[publish]`: where the configuration goes besides the HTTP endpoint: a
/// state file to recover from, KV stores that Traefik reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// The served configuration is written here (atomically) after each
    /// change, and served again at start until OpenStack answers.
    pub state_file: Option<PathBuf>,
    /// How long instances are routed after OpenStack last confirmed them:
    /// a recovered configuration, or a cloud that stopped answering, is
    /// withdrawn after this, since its addresses may belong to others by then.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// How long a leader's lease lasts without renewal: a standby takes
    /// over within about this long after the leader stops.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// `[publish.etcd]`: Traefik's `providers.etcd` reads from it.
    pub etcd: Option<EtcdConfig>,
    /// `[publish.redis]`: Traefik's `providers.redis` reads from it.
    pub redis: Option<RedisConfig>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            state_file: None,
            max_stale: Duration::from_secs(24 * 3600),
            lease_ttl: Duration::from_secs(10),
            etcd: None,
            redis: None,
        }
    }
}

/// `[publish.etcd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// `host:port` or `http(s)://host:port`, tried in order.
    pub endpoints: Vec<String>,
    /// The prefix Traefik reads (its `providers.etcd.rootKey`).
    #[serde(default = "default_root_key")]
    pub root_key: String,
    /// Where the ownership index and the leader key live; must not start
    /// with `root_key` (Traefik reads every key that does).
    #[serde(default = "default_index_key")]
    pub index_key: String,
    /// etcd user (with `password_file`).
    pub username: Option<String>,
    /// File holding the user's password.
    pub password_file: Option<PathBuf>,
    /// CA bundle that signs the servers' certificates (turns on https).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Timeout of one request to the store (at most half of `lease_ttl`).
    #[serde(with = "humantime_serde", default = "default_store_timeout")]
    pub timeout: Duration,
}

/// `[publish.redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port`, tried in order (one server or a failover address).
    pub endpoints: Vec<String>,
    /// The prefix Traefik reads (its `providers.redis.rootKey`).
    #[serde(default = "default_root_key")]
    pub root_key: String,
    /// As for etcd.
    #[serde(default = "default_index_key")]
    pub index_key: String,
    /// Database number.
    #[serde(default)]
    pub db: i64,
    /// ACL user (with `password_file`).
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// CA bundle that signs the server's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Timeout of one request to the store (at most half of `lease_ttl`).
    #[serde(with = "humantime_serde", default = "default_store_timeout")]
    pub timeout: Duration,
}

fn default_root_key() -> String {
    "traefik".into()
}

fn default_index_key() -> String {
    "_traefik-openstack".into()
}

fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

impl PublishConfig {
    fn validate(&self) -> Result<(), String> {
        if self.lease_ttl < Duration::from_secs(1) {
            return Err("publish.lease_ttl: must be at least 1s".into());
        }
        let stores = [
            self.etcd
                .as_ref()
                .map(|e| ("etcd", &e.endpoints, &e.root_key, &e.index_key, e.timeout)),
            self.redis
                .as_ref()
                .map(|r| ("redis", &r.endpoints, &r.root_key, &r.index_key, r.timeout)),
        ];
        for (store, endpoints, root, index, timeout) in stores.into_iter().flatten() {
            if endpoints.is_empty() {
                return Err(format!(
                    "publish.{store}.endpoints: at least one endpoint is needed"
                ));
            }
            let (root, index) = (root.trim_matches('/'), index.trim_matches('/'));
            if root.is_empty() || index.is_empty() {
                return Err(format!(
                    "publish.{store}: root_key and index_key must not be empty"
                ));
            }
            if index.starts_with(root) || root.starts_with(index) {
                return Err(format!(
                    "publish.{store}.index_key: {index:?} and root_key {root:?} must not start \
                     with one another (Traefik reads every key that starts with the root key)"
                ));
            }
            if timeout.is_zero() {
                return Err(format!("publish.{store}.timeout: must be more than 0s"));
            }
        }
        if let Some(r) = &self.redis
            && !r.tls
            && (r.tls_ca_file.is_some() || r.tls_cert_file.is_some())
        {
            return Err("publish.redis: tls_ca_file and tls_cert_file need tls = true".into());
        }
        for (store, cert, key) in [
            self.etcd
                .as_ref()
                .map(|e| ("etcd", &e.tls_cert_file, &e.tls_key_file)),
            self.redis
                .as_ref()
                .map(|r| ("redis", &r.tls_cert_file, &r.tls_key_file)),
        ]
        .into_iter()
        .flatten()
        {
            if cert.is_some() != key.is_some() {
                return Err(format!(
                    "publish.{store}: tls_cert_file and tls_key_file go together"
                ));
            }
        }
        Ok(())
    }
}

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong, and where.
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`; `None` gives the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid { file, message })
    }

    /// Parses TOML text; the error names the key and the reason.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let mut message = e.to_string().trim().to_owned();
            let header = |h: &str| text.lines().any(|l| l.trim_start().starts_with(h));
            if message.contains("duplicate key") && header("[openstack]") && header("[[openstack]]")
            {
                message += "\n[openstack] and [[openstack]] cannot be used together: one table for one cloud, or one [[openstack]] entry per cloud";
            }
            message
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if !s.path.starts_with('/') || s.path.contains(['?', '#']) {
            return Err(format!(
                "server.path: must be an absolute path like /traefik, got {:?}",
                s.path
            ));
        }
        if s.request_timeout.is_zero() {
            return Err("server.request_timeout: must be more than 0s".into());
        }
        if s.max_connections < 2 {
            return Err(format!(
                "server.max_connections: must be at least 2, got {}",
                s.max_connections
            ));
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&s.max_header_bytes) {
            return Err(format!(
                "server.max_header_bytes: must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}, got {}",
                s.max_header_bytes
            ));
        }
        match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(_), None) => return Err("server.tls_cert_file: needs tls_key_file".into()),
            (None, Some(_)) => return Err("server.tls_key_file: needs tls_cert_file".into()),
            _ => {}
        }
        if s.client_ca_file.is_some() && s.tls_cert_file.is_none() {
            return Err(
                "server.client_ca_file: client certificates need TLS: set tls_cert_file and tls_key_file"
                    .into(),
            );
        }
        for (n, o) in self.openstack.iter().enumerate() {
            let at = match self.openstack.len() {
                1 => "openstack".to_owned(),
                _ => format!("openstack[{n}]"),
            };
            o.validate(&at)?;
        }
        let mut names = std::collections::HashSet::new();
        for o in self.openstack.iter() {
            if let Some(name) = &o.name
                && !names.insert(name)
            {
                return Err(format!("openstack.name: {name:?} is used twice"));
            }
        }
        if self.publish.max_stale.is_zero() {
            return Err("publish.max_stale: must be more than 0s".into());
        }
        self.publish.validate()?;
        let e = &self.engine;
        if e.timeout.is_zero() {
            return Err("engine.timeout: must be more than 0s".into());
        }
        if e.memory_limit_mib < 16 {
            return Err(format!(
                "engine.memory_limit_mib: must be at least 16, got {}",
                e.memory_limit_mib
            ));
        }
        Ok(())
    }

    /// The `[routes]` table as the JSON the module receives.
    pub fn routes_json(&self) -> String {
        serde_json::to_string(&self.routes).expect("a TOML table is always valid JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.path, "/traefik");
        assert_eq!(c.openstack[0].refresh_interval, Duration::from_secs(10));
        assert!(!c.openstack[0].all_projects);
        assert_eq!(c.routes_json(), "{}");
    }

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            path = "/config"
            token_file = "/run/secrets/token"
            [openstack]
            cloud = "training"
            refresh_interval = "2s"
            all_projects = true
            region = "RegionTwo"
            interface = "internal"
            neutron_floating_ips = true
            [engine]
            module = "/etc/traefik-openstack/policy.wasm"
            timeout = "500ms"
            [routes]
            default_rule = "Host(`{{ .Name }}.example.com`)"
            [routes.default_labels]
            "traefik.http.routers.{{ .Name }}.entrypoints" = "web"
            "#,
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.openstack[0].refresh_interval, Duration::from_secs(2));
        assert_eq!(c.openstack[0].cloud.as_deref(), Some("training"));
        assert_eq!(c.engine.timeout, Duration::from_millis(500));
        let routes: serde_json::Value = serde_json::from_str(&c.routes_json()).unwrap();
        assert_eq!(routes["default_rule"], "Host(`{{ .Name }}.example.com`)");
        assert_eq!(
            routes["default_labels"]["traefik.http.routers.{{ .Name }}.entrypoints"],
            "web"
        );
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = Config::parse("[openstack]\nrefresh_intervall = \"5s\"\n").unwrap_err();
        assert!(err.contains("refresh_intervall"), "{err}");
        let err = Config::parse("[serverr]\n").unwrap_err();
        assert!(err.contains("serverr"), "{err}");
    }

    #[test]
    fn bad_values_say_why() {
        let err = Config::parse("[openstack]\nrefresh_interval = \"soon\"\n").unwrap_err();
        assert!(err.contains("refresh_interval"), "{err}");
        let err = Config::parse("[openstack]\nrefresh_interval = \"1ms\"\n").unwrap_err();
        assert!(err.contains("at least 100ms"), "{err}");
        let err = Config::parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = Config::parse("[server]\npath = \"traefik\"\n").unwrap_err();
        assert!(err.contains("server.path"), "{err}");
        let err = Config::parse("[server]\nmax_connections = 1\n").unwrap_err();
        assert!(
            err.contains("server.max_connections: must be at least 2"),
            "{err}"
        );
        let err = Config::parse("[server]\nmax_connections = -1\n").unwrap_err();
        assert!(err.contains("max_connections"), "{err}");
        let err = Config::parse("[server]\nmax_header_bytes = 100\n").unwrap_err();
        assert!(
            err.contains("server.max_header_bytes: must be between 1024"),
            "{err}"
        );
        let err = Config::parse("[server]\nmax_header_bytes = 1048576\n").unwrap_err();
        assert!(err.contains("server.max_header_bytes"), "{err}");
        let s = Config::parse("[server]\nmax_connections = 4096\nmax_header_bytes = 8192\n")
            .unwrap()
            .server;
        assert_eq!((s.max_connections, s.max_header_bytes), (4096, 8192));
        let err = Config::parse("[openstack]\ninterface = \"private\"\n").unwrap_err();
        assert!(err.contains("openstack.interface"), "{err}");
        let err = Config::parse("[server]\ntls_cert_file = \"c.pem\"\n").unwrap_err();
        assert!(err.contains("needs tls_key_file"), "{err}");
        let err = Config::parse("[server]\nclient_ca_file = \"ca.pem\"\n").unwrap_err();
        assert!(err.contains("server.client_ca_file"), "{err}");
        let tls = Config::parse("[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n")
            .unwrap()
            .server
            .tls()
            .unwrap();
        assert_eq!((tls.cert.to_str(), tls.client_ca), (Some("c.pem"), None));
    }

    #[test]
    fn publish_stores_parse_and_bad_ones_say_why() {
        let c = Config::parse(
            r#"
            [publish]
            lease_ttl = "2s"
            [publish.etcd]
            endpoints = ["127.0.0.1:2379"]
            [publish.redis]
            endpoints = ["127.0.0.1:6379"]
            root_key = "edge"
            db = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.publish.lease_ttl, Duration::from_secs(2));
        assert_eq!(c.publish.etcd.unwrap().root_key, "traefik");
        assert_eq!(c.publish.redis.unwrap().db, 2);
        let err = Config::parse("[publish.etcd]\nendpoints = []\n").unwrap_err();
        assert!(err.contains("publish.etcd.endpoints"), "{err}");
        let err =
            Config::parse("[publish.redis]\nendpoints = [\"a:1\"]\nindex_key = \"traefik-x\"\n")
                .unwrap_err();
        assert!(err.contains("must not start"), "{err}");
        let err = Config::parse("[publish.etcd]\nendpoints = [\"a:1\"]\npasword_file = \"x\"\n")
            .unwrap_err();
        assert!(err.contains("pasword_file"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("listen"), "{err}");
        let missing = Config::load(Some(&dir.path().join("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn several_clouds_each_with_their_keys() {
        let c = Config::parse(
            r#"
            [[openstack]]
            cloud = "east"
            region = "RegionOne"
            [[openstack]]
            name = "west"
            cloud = "west"
            refresh_interval = "3s"
            all_projects = true
            [publish]
            state_file = "/var/lib/traefik-openstack/state"
            max_stale = "2h"
            "#,
        )
        .unwrap();
        assert_eq!(c.openstack.len(), 2);
        assert_eq!(c.openstack[0].cloud.as_deref(), Some("east"));
        assert_eq!(c.openstack[0].refresh_interval, Duration::from_secs(10));
        assert_eq!(c.openstack[1].name.as_deref(), Some("west"));
        assert_eq!(c.openstack[1].refresh_interval, Duration::from_secs(3));
        assert!(c.openstack[1].all_projects);
        assert_eq!(c.publish.max_stale, Duration::from_secs(7200));
        assert!(c.publish.state_file.is_some());
        // The defaults: one cloud, no state file, a day.
        let d = Config::parse("").unwrap();
        assert_eq!(d.openstack.len(), 1);
        assert_eq!(d.publish.state_file, None);
        assert_eq!(d.publish.max_stale, Duration::from_secs(86_400));
    }

    #[test]
    fn cloud_entries_are_checked_one_by_one() {
        let err = Config::parse(
            "[[openstack]]\ncloud = \"a\"\n[[openstack]]\nrefresh_intervall = \"5s\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("openstack[1]: unknown field `refresh_intervall`"),
            "{err}"
        );
        let err = Config::parse("[[openstack]]\n[[openstack]]\npage_size = 0\n").unwrap_err();
        assert!(err.contains("openstack[1].page_size"), "{err}");
        let err = Config::parse("[[openstack]]\nname = \"a\"\n[[openstack]]\nname = \"a\"\n")
            .unwrap_err();
        assert!(err.contains("\"a\" is used twice"), "{err}");
        let err = Config::parse("openstack = []\n").unwrap_err();
        assert!(err.contains("at least one entry"), "{err}");
        let err = Config::parse("[publish]\nmax_stale = \"0s\"\n").unwrap_err();
        assert!(err.contains("publish.max_stale"), "{err}");
    }

    #[test]
    fn both_forms_at_once_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("both.toml");
        std::fs::write(
            &path,
            "[openstack]\ncloud = \"a\"\n[[openstack]]\ncloud = \"b\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("cannot be used together"), "{err}");
    }
}
