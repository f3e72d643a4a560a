//! Traefik v3 dynamic configuration, as its JSON decoder expects it.
//!
//! Maps are `BTreeMap` so that the output is byte-identical for identical
//! input: Traefik hashes the body to skip needless reloads. Empty maps and
//! sections are never written, because Traefik rejects e.g. `"http":{}`.
//! Options that the policy does not interpret (TLS, health checks,
//! middlewares) stay JSON, typed earlier by the label schema and held as
//! canonical text (`sorted::Json`).
//!
//! The document is serialized straight from these types, with every object's
//! keys in byte order (what Traefik's body hash sees): struct fields are
//! declared in the order of their JSON names, the held JSON is sorted when
//! made, and the load balancer slots `servers` in among its options.
//!
//! Routers and services sit behind a `Box` in their maps: a B-tree node
//! holds eleven values inline, so a map of one 200-byte router was a 2.5 KB
//! node, and every instance's contribution holds a few such maps until the
//! merge.

use crate::sorted::Json;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type Extra = BTreeMap<String, Json>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Router {
    // Fields in the byte order of their JSON names: see the module comment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_syntax: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Json>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UdpRouter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

/// A load balancer: its servers plus options passed through as decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer<S> {
    pub servers: Vec<S>,
    pub options: Extra,
}

/// One object: `servers` slotted in among the (sorted) options.
impl<S: Serialize> Serialize for LoadBalancer<S> {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        const SERVERS: &str = "servers";
        let mut m = z.serialize_map(Some(self.options.len() + 1))?;
        let mut pending = true;
        for (k, v) in &self.options {
            if pending && k.as_str() >= SERVERS {
                m.serialize_entry(SERVERS, &self.servers)?;
                pending = false;
                if k == SERVERS {
                    // Cannot come from the label schema; never write a key twice.
                    continue;
                }
            }
            m.serialize_entry(k, v)?;
        }
        if pending {
            m.serialize_entry(SERVERS, &self.servers)?;
        }
        m.end()
    }
}

/// The inverse of `Serialize`: `servers` out of the options (for the
/// parts of `phases`, which carry contributions between calls).
impl<'de, S: serde::de::DeserializeOwned> Deserialize<'de> for LoadBalancer<S> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut options = Extra::deserialize(d)?;
        let servers = match options.remove("servers") {
            Some(v) => serde_json::from_str(v.text()).map_err(serde::de::Error::custom)?,
            None => Vec::new(),
        };
        Ok(LoadBalancer { servers, options })
    }
}

impl<S> LoadBalancer<S> {
    /// Traefik merges two definitions of a service only when everything but
    /// the servers is equal.
    pub fn mergeable(&self, other: &Self) -> bool {
        self.options == other.options
    }
}

impl<S> Default for LoadBalancer<S> {
    fn default() -> Self {
        LoadBalancer {
            servers: Vec::new(),
            options: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(deserialize = "S: serde::de::DeserializeOwned"))]
pub struct Service<S> {
    pub load_balancer: LoadBalancer<S>,
    /// Traefik v3.7's service middlewares (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
}

impl<S> Service<S> {
    pub fn new(load_balancer: LoadBalancer<S>) -> Self {
        Service {
            load_balancer,
            middlewares: Vec::new(),
        }
    }
}

/// Field order is the sort order of servers (by URL first); `Serialize` is
/// written out to keep the JSON keys in byte order anyway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpServer {
    pub url: String,
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    pub preserve_path: Option<bool>,
}

impl Serialize for HttpServer {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let n = 1 + usize::from(self.weight.is_some()) + usize::from(self.preserve_path.is_some());
        let mut m = z.serialize_map(Some(n))?;
        if let Some(p) = self.preserve_path {
            m.serialize_entry("preservePath", &p)?;
        }
        m.serialize_entry("url", &self.url)?;
        if let Some(w) = self.weight {
            m.serialize_entry("weight", &w)?;
        }
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TcpServer {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UdpServer {
    pub address: String,
}

/// Servers are identified (and de-duplicated) by where they point.
pub trait Target {
    fn target(&self) -> &str;
}
impl Target for HttpServer {
    fn target(&self) -> &str {
        &self.url
    }
}
impl Target for TcpServer {
    fn target(&self) -> &str {
        &self.address
    }
}
impl Target for UdpServer {
    fn target(&self) -> &str {
        &self.address
    }
}

pub type HttpService = Service<HttpServer>;
pub type TcpService = Service<TcpServer>;
pub type UdpService = Service<UdpServer>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub middlewares: BTreeMap<String, Json>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routers: BTreeMap<String, Box<Router>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Box<HttpService>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TcpConfig {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub middlewares: BTreeMap<String, Json>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routers: BTreeMap<String, Box<Router>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Box<TcpService>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct UdpConfig {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routers: BTreeMap<String, Box<UdpRouter>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Box<UdpService>>,
}

impl HttpConfig {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.middlewares.is_empty()
    }
}
impl TcpConfig {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.middlewares.is_empty()
    }
}
impl UdpConfig {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty()
    }
}

/// The whole document served to Traefik.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Configuration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpConfig>,
}

impl Configuration {
    pub fn new(http: HttpConfig, tcp: TcpConfig, udp: UdpConfig) -> Self {
        Configuration {
            http: (!http.is_empty()).then_some(http),
            tcp: (!tcp.is_empty()).then_some(tcp),
            udp: (!udp.is_empty()).then_some(udp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_empty_object() {
        let c = Configuration::new(
            HttpConfig::default(),
            TcpConfig::default(),
            UdpConfig::default(),
        );
        assert_eq!(serde_json::to_string(&c).unwrap(), "{}");
    }

    #[test]
    fn camel_case_names() {
        let mut http = HttpConfig::default();
        http.routers.insert(
            "r".into(),
            Box::new(Router {
                entry_points: vec!["web".into()],
                rule: "Host(`a`)".into(),
                service: "s".into(),
                ..Default::default()
            }),
        );
        let mut lb = LoadBalancer::default();
        lb.servers.push(HttpServer {
            url: "http://a:80".into(),
            weight: None,
            preserve_path: None,
        });
        lb.options.insert(
            "passHostHeader".into(),
            crate::sorted::Json::new(&serde_json::Value::Bool(true)),
        );
        http.services.insert("s".into(), Box::new(Service::new(lb)));
        let c = Configuration::new(http, TcpConfig::default(), UdpConfig::default());
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"http":{"routers":{"r":{"entryPoints":["web"],"rule":"Host(`a`)","service":"s"}},"services":{"s":{"loadBalancer":{"passHostHeader":true,"servers":[{"url":"http://a:80"}]}}}}}"#
        );
    }
}
