//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
//! the crate's parsers of untrusted input, called as the crate calls them,
//! with the invariants that are cheap to check. Nothing here is part of the
//! crate's interface.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Body as _;
use hyper::{Method, Request, StatusCode};
use reqwest::Url;
use serde_json::Value;

use crate::config::Config;
use crate::engine::Generated;
use crate::metrics::Metrics;
use crate::offline;
use crate::openstack::clouds::{self, Lookup};
use crate::openstack::{keystone, neutron, nova};
use crate::publish::{Publisher, Snapshot};
use crate::server::{self, AppState};

/// The local time a Keystone answer is taken to arrive at.
fn received() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// `Config::parse`; a parsed file's `[routes]` table is a JSON object.
pub fn config(text: &str) -> Result<(), String> {
    let config = Config::parse(text)?;
    let routes: Value = serde_json::from_str(&config.routes_json()).expect("routes_json is JSON");
    assert!(routes.is_object(), "{routes}");
    let _ = config.server.tls();
    Ok(())
}

/// A `/servers/detail` page as a listing reads it, each server mapped to the
/// contract's instance, and the next page's URL built from its last id.
pub fn nova_servers(body: &[u8]) -> Result<usize, String> {
    let (servers, _has_next) = nova::parse_servers_page(body)?;
    let endpoint = Url::parse("http://nova.test:8774/v2.1/project").expect("URL");
    let query = nova::ServerQuery {
        all_projects: true,
        changes_since: Some(received()),
        page_size: 1000,
    };
    let count = servers.len();
    for server in servers {
        // The id is the next page's marker: it must reach Nova as it is,
        // and never move the request elsewhere.
        let url = nova::servers_detail_url(&endpoint, &query, Some(&server.id));
        assert_eq!(url.host_str(), Some("nova.test"));
        assert_eq!(url.path(), "/v2.1/project/servers/detail");
        let marker = url
            .query_pairs()
            .find(|(k, _)| k == "marker")
            .map(|(_, v)| v.into_owned());
        assert_eq!(marker.as_deref(), Some(server.id.as_str()));
        let _ = (server.is_deleted(), server.is_partial());
        let _ = crate::wit::Instance::from_model(
            server.into_instance("cloud", "region"),
            &mut Default::default(),
        );
    }
    Ok(count)
}

/// Neutron's floating IPs and ports listings (the same bytes read as each)
/// attached to two servers as a refresh attaches them: a server only gains
/// floating addresses, each one of the listing's, on a network and MAC it
/// has a fixed address on, never an address it shows already; a server no
/// floating IP names keeps its very `Arc`. Returns the addresses added.
pub fn neutron_floating_ips(body: &[u8]) -> Result<usize, String> {
    use crate::wit::{Address, AddressKind, Instance};
    let floating_ips = neutron::parse_floating_ips(body)?;
    let ports = neutron::parse_port_devices(body).unwrap_or_default();
    let _ = neutron::needs_ports(&floating_ips, &ports);
    let address = |network: &str, ip: &str, kind, mac: &str| Address {
        network: network.into(),
        ip: ip.into(),
        version: 4,
        kind,
        mac: Some(mac.into()),
    };
    // The servers of the recorded listings (the seeds name them).
    let servers = [
        (
            "8e3941b4-a6e9-499f-a1ac-2a4662025cba",
            vec![address(
                "private",
                "10.0.0.3",
                AddressKind::Fixed,
                "fa:16:3e:b1:3b:30",
            )],
        ),
        (
            "9ae135f4-b6e0-4dad-9e91-3c223e385824",
            vec![
                address(
                    "private",
                    "10.0.0.5",
                    AddressKind::Fixed,
                    "fa:16:3e:00:00:01",
                ),
                address(
                    "public",
                    "172.24.4.2",
                    AddressKind::Fixed,
                    "fa:16:3e:00:00:02",
                ),
                address(
                    "private",
                    "172.24.4.9",
                    AddressKind::Floating,
                    "fa:16:3e:00:00:01",
                ),
            ],
        ),
    ];
    let mut instances: std::collections::BTreeMap<crate::instance::Text, Arc<Instance>> = servers
        .into_iter()
        .map(|(id, addresses)| {
            let instance = Instance {
                id: id.into(),
                name: "vm".into(),
                status: "ACTIVE".into(),
                addresses,
                ..Instance::default()
            };
            (id.into(), Arc::new(instance))
        })
        .collect();
    let before = instances.clone();
    neutron::attach_floating_ips(&mut instances, &floating_ips, &ports);
    let mut added = 0;
    for (id, now) in &instances {
        let was = &before[id];
        if Arc::ptr_eq(was, now) {
            continue;
        }
        let (kept, new) = now.addresses.split_at(was.addresses.len());
        assert_eq!(kept, &was.addresses[..], "{id}: addresses lost or moved");
        assert!(!new.is_empty(), "{id}: copied for nothing");
        for (n, a) in new.iter().enumerate() {
            assert_eq!(a.kind, AddressKind::Floating, "{id}: {a:?}");
            assert!(
                floating_ips.iter().any(|f| *f.floating_ip_address == *a.ip),
                "{id}: {a:?} is no floating IP of the listing"
            );
            assert!(
                was.addresses.iter().any(|f| f.kind == AddressKind::Fixed
                    && f.network == a.network
                    && f.mac == a.mac),
                "{id}: {a:?} is on no network the server has a fixed address on"
            );
            let shown = kept.iter().chain(&new[..n]);
            assert!(shown.into_iter().all(|o| o.ip != a.ip), "{id}: {a:?} twice");
        }
        let mut unchanged = (**now).clone();
        unchanged.addresses.truncate(was.addresses.len());
        assert_eq!(&unchanged, &**was, "{id}: more than its addresses changed");
        added += new.len();
    }
    assert!(added <= floating_ips.len());
    Ok(added)
}

/// A compute version document as microversion negotiation reads it; the
/// result is one this client speaks.
pub fn nova_versions(body: &[u8]) -> Result<Option<String>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let version = nova::negotiate(&document)?;
    if let Some(v) = version {
        assert!(v <= nova::Microversion::CLIENT_MAX, "{v}");
        assert_eq!(nova::Microversion::parse(&v.to_string()), Some(v));
    }
    Ok(version.map(|v| v.to_string()))
}

/// Keystone's answer to a token request (the `X-Subject-Token` header and
/// the body), then the compute and network endpoints from its catalog and
/// the URLs built on them. Returns what the sidecar would keep or say: the
/// token's `Debug` and every error, for the caller to search for secrets.
pub fn keystone_token(
    subject_token: &str,
    body: &[u8],
    interface: &str,
    region: Option<&str>,
) -> Vec<String> {
    let token = match keystone::parse_token(Some(subject_token), body, received()) {
        Ok(token) => token,
        Err(e) => return vec![e],
    };
    let mut said = vec![format!("{token:?}")];
    let lifetime = token
        .valid_until
        .duration_since(received())
        .unwrap_or_default();
    assert!(keystone::renewal_margin(lifetime) <= lifetime.max(Duration::from_secs(1)));
    let query = nova::ServerQuery {
        all_projects: false,
        changes_since: None,
        page_size: 100,
    };
    for kind in ["compute", "network"] {
        match token.catalog.endpoint(kind, interface, region) {
            Ok(endpoint) => {
                let _ = nova::version_document_url(&endpoint);
                let _ = nova::servers_detail_url(&endpoint, &query, Some("marker"));
                let _ = neutron::resource_url(&endpoint, "floatingips");
            }
            Err(e) => said.push(e.to_string()),
        }
    }
    said
}

/// `clouds.yaml` (and `secure.yaml`, when given) as the client resolves
/// them: `Debug` of the cloud, or the error.
pub fn clouds(
    clouds_yaml: &str,
    secure_yaml: Option<&str>,
    cloud: Option<&str>,
    region: Option<&str>,
    interface: Option<&str>,
) -> Result<String, String> {
    // The files are looked up on disk, as in the sidecar: one directory per
    // process, rewritten for each input.
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    std::fs::write(dir.path().join("clouds.yaml"), clouds_yaml).expect("writing clouds.yaml");
    let secure = dir.path().join("secure.yaml");
    match secure_yaml {
        Some(text) => std::fs::write(&secure, text).expect("writing secure.yaml"),
        None => {
            let _ = std::fs::remove_file(&secure);
        }
    }
    let lookup = Lookup {
        env: Default::default(),
        search_dirs: vec![dir.path().to_path_buf()],
    };
    clouds::resolve(&lookup, cloud, region, interface)
        .map(|c| format!("{c:?} {}", c.identity()))
        .map_err(|e| e.to_string())
}

/// Either instance file format of `render --instances`; what `inventory`
/// writes of them reads back the same.
pub fn instances(text: &str) -> Result<usize, String> {
    let list = offline::parse_instances(text)?;
    let written = offline::inventory_json(&list);
    let again = offline::parse_instances(&written).expect("inventory output reads back");
    assert!(again == list, "{written}");
    let mut redacted = list.clone();
    offline::redact(&mut redacted, "traefik");
    Ok(list.len())
}

/// The bearer token [`Server`] requires.
pub const BEARER_TOKEN: &str = "fuzz-bearer-0f5c2a7d9e1b";

/// The request handler with a configuration published and a bearer token.
pub struct Server {
    state: AppState,
}

/// What [`Server::handle`] answered.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Default for Server {
    fn default() -> Self {
        let state = AppState {
            publisher: Arc::new(Publisher::new(Duration::from_secs(30))),
            metrics: Arc::new(Metrics::new()),
            config_path: "/traefik".into(),
            token: Some(BEARER_TOKEN.into()),
        };
        state.publisher.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config(
                r#"{"http":{"routers":{"r":{"rule":"Host(`a`)","service":"s"}}}}"#,
            ),
            None,
        ));
        Self { state }
    }
}

impl Server {
    /// Builds the request as hyper would hand it over (`None` when hyper
    /// would refuse it first), runs the handler, and checks the answer:
    /// the protected paths need the token, `HEAD` has no body, and the
    /// token never comes back.
    pub fn handle(&self, method: &[u8], uri: &[u8], headers: &[(&[u8], &[u8])]) -> Option<Answer> {
        let mut req = Request::builder()
            .method(Method::from_bytes(method).ok()?)
            .uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).ok()?;
        let path = req.uri().path().to_owned();
        let head = req.method() == Method::HEAD;
        let read_only = head || req.method() == Method::GET;
        let has_token = req.headers().values().any(|v| {
            v.as_bytes()
                .windows(BEARER_TOKEN.len())
                .any(|w| w == BEARER_TOKEN.as_bytes())
        });

        let resp = server::handle(&self.state, req);
        let status = resp.status();
        let headers: Vec<(String, Vec<u8>)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let body = drain(resp.into_body());

        if !read_only {
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        }
        let protected = ["/traefik", "/", "/api/instances", "/api/module"];
        if read_only && !has_token && protected.contains(&path.as_str()) {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        if head {
            assert!(body.is_empty(), "HEAD {path}");
        }
        assert!(
            !status.is_server_error() || path == "/readyz",
            "{status} {path}"
        );
        let leaked = |b: &[u8]| {
            b.windows(BEARER_TOKEN.len())
                .any(|w| w == BEARER_TOKEN.as_bytes())
        };
        assert!(!leaked(&body), "token in the body of {path}");
        assert!(
            headers.iter().all(|(_, v)| !leaked(v)),
            "token in a header of {path}"
        );
        Some(Answer {
            status: status.as_u16(),
            headers,
            body,
        })
    }
}

/// Reads a response body to its end without a runtime: it never waits on
/// anything but its own yields.
fn drain(mut body: server::Body) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => return out,
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Pending => {}
        }
    }
}
