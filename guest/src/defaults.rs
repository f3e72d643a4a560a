//! Stage 3: Traefik's docker-provider defaults for one instance: a service
//! named after the instance when the labels define none, a router with the
//! default rule when they define no router and at most one service, the
//! only service for routers that name none, and servers at the instance's
//! address.

use crate::address::Chosen;
use crate::decode::{Decoded, Object};
use crate::dynamic::{
    HttpConfig, HttpServer, LoadBalancer, Router, Service, TcpConfig, TcpServer, UdpConfig,
    UdpRouter, UdpServer,
};
use crate::model::{Diagnostic, Instance, Level};
use crate::names::safe_name;
use crate::resource::Resource;
use crate::safety;
use crate::settings::Settings;
use crate::sorted::Json;
use crate::template::Data;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What one routed instance adds to the configuration. Serializable, as
/// `phases` keeps it between its two calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    pub instance_id: String,
    /// Owning project: names are shared only within one project.
    pub project_id: String,
    /// Nova's creation time (RFC 3339): the oldest instance owns a name.
    pub created: String,
    pub address: String,
    pub http: HttpConfig,
    pub tcp: TcpConfig,
    pub udp: UdpConfig,
    /// Definitions the operator's `default_labels` make under a fixed name
    /// (no template in it) and this instance's own labels leave alone:
    /// shared by every project (`http-to-https`).
    pub operator: BTreeSet<(Resource, String)>,
}

/// Diagnostics of one instance.
pub struct Diags<'a> {
    pub id: &'a str,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Diags<'_> {
    pub fn push(&mut self, level: Level, message: String) {
        self.out.push(Diagnostic {
            instance_id: self.id.to_string(),
            level,
            message,
        });
    }
}

/// Applies the defaults to what the labels say.
pub fn build(
    inst: &Instance,
    s: &Settings,
    data: &Data,
    chosen: &Chosen,
    decoded: Decoded,
    d: Diags<'_>,
) -> Option<Contribution> {
    let name = safe_name(&inst.name);
    let operator = decoded.operator.clone();
    let mut b = Builder {
        s,
        d,
        data,
        chosen,
        name: &name,
    };
    let (http, tcp, udp) = b.build(decoded)?;
    Some(Contribution {
        instance_id: inst.id.clone(),
        project_id: inst.project_id.clone(),
        created: inst.created.clone(),
        address: chosen.host.clone(),
        http,
        tcp,
        udp,
        operator,
    })
}

/// One layer's definitions, as decoded.
struct Section {
    routers: BTreeMap<String, Object>,
    services: BTreeMap<String, Object>,
    middlewares: BTreeMap<String, Object>,
}

impl Section {
    fn take(d: &mut Decoded, r: Resource, s: Resource, m: Option<Resource>) -> Section {
        Section {
            routers: std::mem::take(&mut d.defs[r]),
            services: std::mem::take(&mut d.defs[s]),
            middlewares: m
                .map(|m| std::mem::take(&mut d.defs[m]))
                .unwrap_or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.middlewares.is_empty()
    }
}

struct Builder<'a> {
    s: &'a Settings,
    d: Diags<'a>,
    data: &'a Data,
    chosen: &'a Chosen,
    name: &'a str,
}

fn valid_port(p: &str) -> Option<String> {
    p.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .map(|p| p.to_string())
}

/// Splits a decoded `loadBalancer` into the label-only `server` part and the
/// options that go to Traefik as they are.
fn split_lb(mut svc: Object) -> (Object, BTreeMap<String, Json>) {
    let mut lb = match svc.remove("loadBalancer") {
        Some(Value::Object(lb)) => lb,
        _ => Object::new(),
    };
    let server = match lb.remove("server") {
        Some(Value::Object(s)) => s,
        _ => Object::new(),
    };
    let options = lb.into_iter().map(|(k, v)| (k, Json::new(&v))).collect();
    (server, options)
}

fn str_of(o: &Object, k: &str) -> Option<String> {
    o.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Builder<'_> {
    fn build(&mut self, mut dec: Decoded) -> Option<(HttpConfig, TcpConfig, UdpConfig)> {
        use Resource::*;
        let http = Section::take(&mut dec, HttpRouter, HttpService, Some(HttpMiddleware));
        let tcp = Section::take(&mut dec, TcpRouter, TcpService, Some(TcpMiddleware));
        let udp = Section::take(&mut dec, UdpRouter, UdpService, None);
        // As Traefik's Docker provider: TCP and UDP are built when they have
        // a router or a service (middlewares alone don't count), and then an
        // instance with no HTTP label gets no default HTTP router.
        let has_tcp = !tcp.routers.is_empty() || !tcp.services.is_empty();
        let has_udp = !udp.routers.is_empty() || !udp.services.is_empty();
        let http = if http.is_empty() && (has_tcp || has_udp) {
            HttpConfig::default()
        } else {
            self.http(http, dec.refused.contains(&HttpRouter))?
        };
        let tcp = if has_tcp {
            self.tcp(tcp)
        } else {
            TcpConfig {
                middlewares: self.middlewares(tcp.middlewares),
                ..TcpConfig::default()
            }
        };
        let udp = if has_udp {
            self.udp(udp)
        } else {
            UdpConfig::default()
        };
        Some((http, tcp, udp))
    }

    /// `refused`: the labels defined a router that `decode` refused; no
    /// default router takes its place.
    fn http(&mut self, sec: Section, refused: bool) -> Option<HttpConfig> {
        let mut cfg = HttpConfig::default();
        let mut services = sec.services;
        if services.is_empty() {
            services.insert(self.name.to_string(), Object::new());
        }
        for (name, obj) in services {
            let middlewares = match obj.get("middlewares") {
                Some(Value::Array(m)) => m
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            let (server, options) = split_lb(obj);
            match self.http_server(&server) {
                Ok(srv) => {
                    let lb = LoadBalancer {
                        servers: vec![srv],
                        options,
                    };
                    let mut svc = Service::new(lb);
                    svc.middlewares = middlewares;
                    cfg.services.insert(name, Box::new(svc));
                }
                Err(e) => self.d.push(
                    Level::Error,
                    format!("service {name}: {e}; service dropped"),
                ),
            }
        }

        let mut routers = sec.routers;
        if routers.is_empty() && !refused {
            if cfg.services.len() > 1 {
                self.d.push(
                    Level::Info,
                    "no default router: several services and no router".into(),
                );
            } else {
                routers.insert(self.name.to_string(), Object::new());
            }
        }
        let mut default_rule: Option<String> = None;
        for (name, obj) in routers {
            let mut r: Router = match serde_json::from_value(Value::Object(obj)) {
                Ok(r) => r,
                Err(e) => {
                    self.d
                        .push(Level::Error, format!("router {name}: {e}; router dropped"));
                    continue;
                }
            };
            if r.rule.is_empty() {
                if default_rule.is_none() {
                    default_rule = Some(self.default_rule()?);
                }
                r.rule = default_rule.clone().unwrap_or_default();
                if r.rule.trim().is_empty() {
                    self.d.push(
                        Level::Error,
                        format!("router {name}: default rule is empty; router dropped"),
                    );
                    continue;
                }
            }
            if !self.assign_service(&name, &mut r.service, cfg.services.keys()) {
                continue;
            }
            if r.entry_points.is_empty() {
                r.entry_points = self.s.entry_points.clone();
            }
            cfg.routers.insert(name, Box::new(r));
        }
        cfg.middlewares = self.middlewares(sec.middlewares);
        Some(cfg)
    }

    fn default_rule(&mut self) -> Option<String> {
        let r = match self.s.default_rule.render(self.data) {
            Ok(r) => r,
            Err(e) => {
                self.d.push(
                    Level::Error,
                    format!("dropped: default_rule template error: {e}"),
                );
                return None;
            }
        };
        if let Err(e) = safety::check_rule(&r) {
            self.d
                .push(Level::Error, format!("dropped: default_rule: {e}"));
            return None;
        }
        Some(r.text)
    }

    /// Gives a router without service the instance's only service.
    fn assign_service<'k>(
        &mut self,
        router: &str,
        service: &mut String,
        names: impl ExactSizeIterator<Item = &'k String>,
    ) -> bool {
        if !service.is_empty() {
            return true;
        }
        let mut names = names;
        match (names.len(), names.next()) {
            (1, Some(only)) => {
                *service = only.clone();
                true
            }
            (n, _) => {
                self.d.push(
                    Level::Error,
                    format!(
                        "router {router}: no service given and {} services to choose from; router dropped",
                        if n == 0 { "no".to_string() } else { n.to_string() }
                    ),
                );
                false
            }
        }
    }

    fn http_server(&self, server: &Object) -> Result<HttpServer, String> {
        let weight = server.get("weight").and_then(Value::as_i64);
        let preserve_path = server.get("preservePath").and_then(Value::as_bool);
        if let Some(url) = str_of(server, "url") {
            if server.contains_key("port") || server.contains_key("scheme") {
                return Err(
                    "loadbalancer.server.url cannot be combined with port or scheme".into(),
                );
            }
            check_url_host(&url, &self.chosen.host)?;
            return Ok(HttpServer {
                url,
                weight,
                preserve_path,
            });
        }
        let port = match str_of(server, "port") {
            Some(p) => valid_port(&p).ok_or_else(|| format!("invalid port {p:?}"))?,
            None => self.s.default_port.to_string(),
        };
        let scheme = str_of(server, "scheme").unwrap_or_else(|| "http".into());
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(format!("invalid scheme {scheme:?}"));
        }
        Ok(HttpServer {
            url: format!("{scheme}://{}", self.chosen.with_port(&port)),
            weight,
            preserve_path,
        })
    }

    fn l4_port(&mut self, kind: &str, name: &str, server: &Object) -> Option<String> {
        match str_of(server, "port") {
            None => Some(self.s.default_port.to_string()),
            Some(p) => {
                let v = valid_port(&p);
                if v.is_none() {
                    self.d.push(
                        Level::Error,
                        format!("{kind} service {name}: invalid port {p:?}; service dropped"),
                    );
                }
                v
            }
        }
    }

    fn middlewares(&mut self, mws: BTreeMap<String, Object>) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        for (name, obj) in mws {
            if obj.len() == 1 {
                out.insert(name, Json::new(&Value::Object(obj)));
            } else {
                let types: Vec<&str> = obj.keys().map(String::as_str).collect();
                self.d.push(
                    Level::Error,
                    format!(
                        "middleware {name}: expected exactly one type, got [{}]; middleware dropped",
                        types.join(", ")
                    ),
                );
            }
        }
        out
    }

    fn tcp(&mut self, sec: Section) -> TcpConfig {
        let mut cfg = TcpConfig::default();
        let mut services = sec.services;
        if services.is_empty() {
            services.insert(self.name.to_string(), Object::new());
        }
        for (name, obj) in services {
            let (server, options) = split_lb(obj);
            let Some(port) = self.l4_port("tcp", &name, &server) else {
                continue;
            };
            let srv = TcpServer {
                address: self.chosen.with_port(&port),
                tls: server.get("tls").and_then(Value::as_bool),
            };
            let lb = LoadBalancer {
                servers: vec![srv],
                options,
            };
            cfg.services.insert(name, Box::new(Service::new(lb)));
        }
        for (name, obj) in sec.routers {
            let mut r: Router = match serde_json::from_value(Value::Object(obj)) {
                Ok(r) => r,
                Err(e) => {
                    self.d.push(
                        Level::Error,
                        format!("tcp router {name}: {e}; router dropped"),
                    );
                    continue;
                }
            };
            if r.rule.trim().is_empty() {
                self.d.push(
                    Level::Error,
                    format!(
                        "tcp router {name}: empty rule (use HostSNI(`*`) for any); router dropped"
                    ),
                );
                continue;
            }
            if self.assign_service(&format!("tcp {name}"), &mut r.service, cfg.services.keys()) {
                cfg.routers.insert(name, Box::new(r));
            }
        }
        cfg.middlewares = self.middlewares(sec.middlewares);
        cfg
    }

    fn udp(&mut self, sec: Section) -> UdpConfig {
        let mut cfg = UdpConfig::default();
        let mut services = sec.services;
        if services.is_empty() {
            services.insert(self.name.to_string(), Object::new());
        }
        for (name, obj) in services {
            let (server, options) = split_lb(obj);
            let Some(port) = self.l4_port("udp", &name, &server) else {
                continue;
            };
            let lb = LoadBalancer {
                servers: vec![UdpServer {
                    address: self.chosen.with_port(&port),
                }],
                options,
            };
            cfg.services.insert(name, Box::new(Service::new(lb)));
        }
        for (name, obj) in sec.routers {
            let mut r: UdpRouter = match serde_json::from_value(Value::Object(obj)) {
                Ok(r) => r,
                Err(e) => {
                    self.d.push(
                        Level::Error,
                        format!("udp router {name}: {e}; router dropped"),
                    );
                    continue;
                }
            };
            if self.assign_service(&format!("udp {name}"), &mut r.service, cfg.services.keys()) {
                cfg.routers.insert(name, Box::new(r));
            }
        }
        cfg
    }
}

/// A tenant may set the server URL (for a path or another scheme) but not
/// point it at another host: that would let one tenant route traffic to
/// any address the proxy can reach.
fn check_url_host(url: &str, host: &str) -> Result<(), String> {
    let bad =
        || format!("loadbalancer.server.url {url:?} must point at the instance address {host}");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let h = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let port_ok = match &authority[h.len()..] {
        "" => true,
        p => p.strip_prefix(':').and_then(valid_port).is_some(),
    };
    if h != host || !port_ok {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, AddressKind};

    fn inst(name: &str, meta: &[(&str, &str)]) -> Instance {
        Instance {
            id: format!("id-{name}"),
            name: name.into(),
            status: "ACTIVE".into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            addresses: vec![Address {
                network: "net".into(),
                ip: "10.0.0.1".into(),
                version: 4,
                kind: AddressKind::Fixed,
                mac: None,
            }],
            ..Default::default()
        }
    }

    fn run(settings: &str, i: &Instance) -> (Option<Contribution>, Vec<String>) {
        let s = Settings::parse(settings).unwrap();
        let mut out = Vec::new();
        let c = crate::instance::route(i, &s, &mut out);
        (c, out.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn templates_see_the_cloud_and_region() {
        let mut i = inst("web", &[]);
        i.cloud = "east".into();
        i.region = "RegionTwo".into();
        let settings =
            r#"{"default_rule": "Host(`{{ .Name }}.{{ .Region }}.{{ .Cloud }}.example`)"}"#;
        let (c, d) = run(settings, &i);
        assert!(d.is_empty(), "{d:?}");
        let routers = c.unwrap().http.routers;
        assert_eq!(routers["web"].rule, "Host(`web.RegionTwo.east.example`)");
        let settings = r#"{"default_labels": {"traefik.http.routers.{{ .Name }}-{{ .Cloud }}.rule": "Host(`{{ .Region }}`)"}}"#;
        let (c, d) = run(settings, &i);
        assert!(d.is_empty(), "{d:?}");
        let routers = c.unwrap().http.routers;
        assert_eq!(routers["web-east"].rule, "Host(`RegionTwo`)", "{routers:?}");
    }

    #[test]
    fn defaults_without_labels() {
        let (c, d) = run(r#"{"entry_points": ["web"]}"#, &inst("web.1", &[]));
        let c = c.unwrap();
        assert!(d.is_empty(), "{d:?}");
        let r = &c.http.routers["web-1"];
        assert_eq!(r.rule, "Host(`web-1`)");
        assert_eq!(r.service, "web-1");
        assert_eq!(r.entry_points, vec!["web"]);
        assert_eq!(
            c.http.services["web-1"].load_balancer.servers[0].url,
            "http://10.0.0.1:80"
        );
    }

    #[test]
    fn router_gets_only_service_and_port() {
        let i = inst(
            "a",
            &[
                ("traefik.http.routers.r.rule", "Host(`x`)"),
                ("traefik.http.services.s.loadbalancer.server.port", "8080"),
                (
                    "traefik.http.services.s.loadbalancer.server.scheme",
                    "https",
                ),
                (
                    "traefik.http.services.s.loadbalancer.passhostheader",
                    "false",
                ),
            ],
        );
        let (c, d) = run("{}", &i);
        let c = c.unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.http.routers["r"].service, "s");
        let lb = &c.http.services["s"].load_balancer;
        assert_eq!(lb.servers[0].url, "https://10.0.0.1:8080");
        assert_eq!(lb.options["passHostHeader"].value(), Value::Bool(false));
    }

    #[test]
    fn service_middlewares() {
        let i = inst("a", &[("traefik.http.services.s.middlewares", "auth, gz")]);
        let (c, d) = run("{}", &i);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.unwrap().http.services["s"].middlewares,
            vec!["auth", "gz"]
        );
    }

    #[test]
    fn several_services() {
        let i = inst(
            "a",
            &[
                ("traefik.http.services.s1.loadbalancer.server.port", "1"),
                ("traefik.http.services.s2.loadbalancer.server.port", "2"),
            ],
        );
        let (c, d) = run("{}", &i);
        assert!(c.unwrap().http.routers.is_empty());
        assert_eq!(d, vec!["no default router: several services and no router"]);
        let i = inst(
            "a",
            &[
                ("traefik.http.routers.r.rule", "Host(`x`)"),
                ("traefik.http.services.s1.loadbalancer.server.port", "1"),
                ("traefik.http.services.s2.loadbalancer.server.port", "2"),
            ],
        );
        let (c, d) = run("{}", &i);
        assert!(c.unwrap().http.routers.is_empty());
        assert!(
            d[0].contains("router r: no service given and 2 services"),
            "{d:?}"
        );
    }

    #[test]
    fn bad_port_and_url() {
        let i = inst(
            "a",
            &[("traefik.http.services.s.loadbalancer.server.port", "99999")],
        );
        let (_, d) = run("{}", &i);
        assert!(d[0].contains("invalid port"), "{d:?}");
        let i = inst(
            "a",
            &[(
                "traefik.http.services.s.loadbalancer.server.url",
                "http://169.254.169.254/",
            )],
        );
        let (_, d) = run("{}", &i);
        assert!(d[0].contains("must point at the instance address"), "{d:?}");
        let i = inst(
            "a",
            &[(
                "traefik.http.services.s.loadbalancer.server.url",
                "https://10.0.0.1:8443/app",
            )],
        );
        let (c, d) = run("{}", &i);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.unwrap().http.services["s"].load_balancer.servers[0].url,
            "https://10.0.0.1:8443/app"
        );
    }

    #[test]
    fn url_hosts() {
        assert!(check_url_host("http://[fd00::1]:80/x", "[fd00::1]").is_ok());
        assert!(check_url_host("http://[fd00::1]", "[fd00::1]").is_ok());
        assert!(check_url_host("http://10.0.0.1@evil:80", "10.0.0.1").is_err());
        assert!(check_url_host("http://10.0.0.1:0", "10.0.0.1").is_err());
        assert!(check_url_host("10.0.0.1:80", "10.0.0.1").is_err());
    }

    #[test]
    fn tcp_only_skips_http_defaults() {
        let i = inst(
            "db",
            &[
                ("traefik.tcp.routers.db.rule", "HostSNI(`*`)"),
                ("traefik.tcp.routers.db.entrypoints", "pg"),
                ("traefik.tcp.services.db.loadbalancer.server.port", "5432"),
            ],
        );
        let (c, d) = run("{}", &i);
        let c = c.unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert!(c.http.is_empty());
        assert_eq!(c.tcp.routers["db"].service, "db");
        assert_eq!(
            c.tcp.services["db"].load_balancer.servers[0].address,
            "10.0.0.1:5432"
        );
    }

    #[test]
    fn tcp_middlewares_alone_keep_http_defaults() {
        let i = inst(
            "a",
            &[(
                "traefik.tcp.middlewares.allow.ipallowlist.sourcerange",
                "10.0.0.0/8",
            )],
        );
        let (c, d) = run("{}", &i);
        let c = c.unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.http.routers["a"].rule, "Host(`a`)");
        assert!(c.tcp.services.is_empty());
        assert!(c.tcp.middlewares.contains_key("allow"));
    }

    #[test]
    fn tcp_router_needs_rule() {
        let i = inst("db", &[("traefik.tcp.routers.db.entrypoints", "pg")]);
        let (c, d) = run("{}", &i);
        assert!(c.unwrap().tcp.routers.is_empty());
        assert!(d[0].contains("empty rule"), "{d:?}");
    }

    #[test]
    fn multi_type_middleware() {
        let i = inst(
            "a",
            &[
                ("traefik.http.middlewares.m.addprefix.prefix", "/a"),
                ("traefik.http.middlewares.m.stripprefix.prefixes", "/a"),
            ],
        );
        let (c, d) = run("{}", &i);
        assert!(c.unwrap().http.middlewares.is_empty());
        assert!(d[0].contains("expected exactly one type"), "{d:?}");
    }

    #[test]
    fn hostile_name_in_default_rule() {
        let s = r#"{"default_rule": "Host(`{{ .Name }}.example.com`)"}"#;
        let (c, d) = run(s, &inst("evil`) || Host(`victim.example.com", &[]));
        assert!(c.is_none());
        assert!(d[0].starts_with("dropped: default_rule"), "{d:?}");
        // The default (normalize) is safe for the same name.
        let (c, _) = run("{}", &inst("evil`) || Host(`victim.example.com", &[]));
        assert_eq!(
            c.unwrap().http.routers["evil-Host-victim-example-com"].rule,
            "Host(`evil-Host-victim-example-com`)"
        );
    }

    #[test]
    fn default_labels_problems_drop_instance() {
        let s = r#"{"default_labels": {"traefik.http.routers.{{ .Name }}.rule": "Host(`{{ .Name }}`)"}}"#;
        let (c, d) = run(s, &inst("a.b", &[]));
        assert!(c.is_none());
        assert!(d[0].contains("contains '.'"), "{d:?}");
        let s = r#"{"default_labels": {"traefik.http.routers.{{ normalize .Name }}.middlewares": "{{ .Metadata.mw }}"}}"#;
        let (c, d) = run(s, &inst("a", &[("mw", "x,y")]));
        assert!(c.is_none());
        assert!(d[0].contains("contains ','"), "{d:?}");
        let s = r#"{"default_labels": {"traefik.http.routers.{{ normalize .Name }}.rul": "x"}}"#;
        let (c, d) = run(s, &inst("a", &[]));
        assert!(c.is_none());
        assert!(d[0].contains("unknown option"), "{d:?}");
    }

    #[test]
    fn own_labels_override_default_labels() {
        let s = r#"{"default_labels": {"traefik.http.routers.{{ normalize .Name }}.rule": "Host(`{{ normalize .Name }}.a`)"}}"#;
        let (c, _) = run(
            s,
            &inst("w", &[("traefik.http.routers.w.rule", "Host(`mine`)")]),
        );
        assert_eq!(c.unwrap().http.routers["w"].rule, "Host(`mine`)");
    }

    #[test]
    fn tenant_cannot_name_services_of_other_providers() {
        let i = inst(
            "a",
            &[
                ("traefik.http.routers.r.rule", "Host(`a.example.com`)"),
                ("traefik.http.routers.r.service", "api@internal"),
                ("traefik.tcp.routers.t.rule", "HostSNI(`*`)"),
                ("traefik.tcp.routers.t.Service", "admin@file"),
                ("traefik.http.middlewares.e.errors.service", "api@internal"),
                ("traefik.http.middlewares.e.errors.status", "500"),
            ],
        );
        let (c, d) = run("{}", &i);
        let c = c.unwrap();
        // Dropped, not relinked to the instance's own service, and no
        // default router in its place.
        assert!(c.http.routers.is_empty(), "{:?}", c.http.routers);
        assert!(c.tcp.routers.is_empty());
        assert!(c.http.middlewares.is_empty());
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("\"api@internal\" of another provider"),
            "{d:?}"
        );
        // The operator's default labels may.
        let s = r#"{"default_labels": {"traefik.http.routers.{{ normalize .Name }}.service": "api@internal"}}"#;
        let (c, d) = run(s, &inst("a", &[]));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.unwrap().http.routers["a"].service, "api@internal");
    }

    #[test]
    fn network_label() {
        let mut i = inst("a", &[("traefik.openstack.network", "other")]);
        i.addresses.push(Address {
            network: "other".into(),
            ip: "192.168.0.9".into(),
            version: 4,
            kind: AddressKind::Fixed,
            mac: None,
        });
        let (c, _) = run("{}", &i);
        assert_eq!(c.unwrap().address, "192.168.0.9");
    }
}
