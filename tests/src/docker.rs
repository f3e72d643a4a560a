//! A fake Docker Engine API for Traefik's docker provider (the oracle of
//! `tests/labels.rs`): containers with labels, running, on one network.
//!
//! It serves only what Traefik 3.7's docker provider calls, through the moby
//! client (`github.com/moby/moby/client` v0.4) it uses
//! (`pkg/provider/docker/pdocker.go`, `shared.go`):
//!
//! - `HEAD /_ping` (GET too): API-version negotiation, on the first request;
//!   answers `API-Version`;
//! - `GET /v1.NN/version`: `ServerVersion`, once per connection attempt;
//! - `GET /v1.NN/containers/json?all=1`: `ContainerList` (only `Id` is read);
//! - `GET /v1.NN/containers/{id}/json`: `ContainerInspect` per listed
//!   container (name, state, labels, network mode, ports, networks);
//! - `GET /v1.NN/events?filters={"type":{"container":true}}`: only with
//!   `watch = true`; answered by a stream that stays open and sends nothing
//!   (the containers never change). The differential test runs with
//!   `watch = false`; both give the same configuration.
//!
//! (`NN` is what the client negotiated from `/_ping`'s `API-Version`, here
//! [`API_VERSION`].)
//!
//! The provider reads no network endpoint in standalone (non-swarm) mode.
//! Anything else is answered 404 naming the path, logged to stderr, and
//! recorded ([`FakeDocker::unknown_requests`]), so that a missing endpoint
//! shows at once.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

/// The API version the fake claims (Docker 28); the client negotiates down
/// to it from its own maximum.
pub const API_VERSION: &str = "1.48";

/// The one network every container is attached to.
pub const NETWORK: &str = "bridge";

/// A container as the fake reports it: running, on [`NETWORK`] with `ip`,
/// exposing `ports` (tcp).
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub ip: Ipv4Addr,
    pub ports: Vec<u16>,
}

impl Container {
    /// A running container `name` at `ip` exposing port 80; its id is derived
    /// from the name (64 hex digits, as Docker's).
    pub fn new(name: &str, ip: Ipv4Addr, labels: Vec<(String, String)>) -> Container {
        Container {
            id: container_id(name),
            name: name.to_string(),
            labels,
            ip,
            ports: vec![80],
        }
    }

    fn labels_json(&self) -> Value {
        let m: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(m)
    }

    fn summary(&self) -> Value {
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": "fake/image:latest",
            "ImageID": format!("sha256:{}", self.id),
            "Command": "/bin/true",
            "Created": 1_700_000_000,
            "State": "running",
            "Status": "Up 1 hour",
            "Labels": self.labels_json(),
            "Ports": self.ports.iter().map(|p| json!({"PrivatePort": p, "Type": "tcp"})).collect::<Vec<_>>(),
            "HostConfig": {"NetworkMode": NETWORK},
            "NetworkSettings": {"Networks": {NETWORK: self.endpoint()}},
            "Mounts": [],
        })
    }

    fn endpoint(&self) -> Value {
        json!({
            "NetworkID": container_id(NETWORK),
            "EndpointID": container_id(&format!("{}-endpoint", self.name)),
            "IPAddress": self.ip.to_string(),
            "IPPrefixLen": 8,
        })
    }

    fn inspect(&self) -> Value {
        let ports: Map<String, Value> = self
            .ports
            .iter()
            .map(|p| (format!("{p}/tcp"), Value::Null))
            .collect();
        let exposed: Map<String, Value> = self
            .ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        json!({
            "Id": self.id,
            "Created": "2026-01-01T00:00:00Z",
            "Path": "/bin/true",
            "Args": [],
            "State": {
                "Status": "running", "Running": true, "Paused": false,
                "Restarting": false, "OOMKilled": false, "Dead": false,
                "Pid": 4242, "ExitCode": 0, "Error": "",
                "StartedAt": "2026-01-01T00:00:01Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            },
            "Image": format!("sha256:{}", self.id),
            "Name": format!("/{}", self.name),
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"NetworkMode": NETWORK},
            "Config": {
                "Hostname": &self.id[..12],
                "Image": "fake/image:latest",
                "ExposedPorts": exposed,
                "Labels": self.labels_json(),
            },
            "NetworkSettings": {
                "SandboxID": container_id(&format!("{}-sandbox", self.name)),
                "Ports": ports,
                "Networks": {NETWORK: self.endpoint()},
            },
            "Mounts": [],
        })
    }
}

/// A stable 64-hex-digit id for `name` (FNV-1a, repeated with salts).
pub fn container_id(name: &str) -> String {
    (0u8..4)
        .map(|salt| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(salt);
            for b in name.bytes().chain([salt]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

type Body = BoxBody<Bytes, Infallible>;

struct State {
    containers: Vec<Container>,
    unknown: Mutex<Vec<String>>,
    requests: Mutex<Vec<String>>,
}

/// The running fake; stops serving when dropped.
pub struct FakeDocker {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDocker {
    /// Serves `containers` on a free port of 127.0.0.1 (inside the current
    /// tokio runtime).
    pub async fn start(containers: Vec<Container>) -> anyhow::Result<FakeDocker> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            containers,
            unknown: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeDocker { addr, state, task })
    }

    /// `tcp://127.0.0.1:PORT`, for Traefik's `providers.docker.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Requests answered 404 so far (`METHOD path`).
    pub fn unknown_requests(&self) -> Vec<String> {
        self.state
            .unknown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every request so far (`METHOD path?query`), for failure messages.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the provider has inspected every container at least once.
    pub fn all_inspected(&self) -> bool {
        let reqs = self.requests();
        self.state.containers.iter().all(|c| {
            reqs.iter()
                .any(|r| r.contains(&format!("/containers/{}/json", c.id)))
        })
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn reply(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("api-version", API_VERSION)
        .header("server", "Docker/28.0.0 (linux)")
        .body(full(v.to_string()))
        .expect("response")
}

/// `/v1.48/containers/json` -> `/containers/json`.
fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return &rest[i..];
    }
    path
}

fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    st.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {pq}"));
    let route = unversioned(&path);
    let segs: Vec<&str> = route.trim_matches('/').split('/').collect();
    match (&method, segs.as_slice()) {
        (&Method::HEAD | &Method::GET, ["_ping"]) => Response::builder()
            .status(StatusCode::OK)
            .header("api-version", API_VERSION)
            .header("ostype", "linux")
            .header("docker-experimental", "false")
            .header("cache-control", "no-cache, no-store, must-revalidate")
            .header("content-type", "text/plain; charset=utf-8")
            .body(full(if method == Method::HEAD { "" } else { "OK" }))
            .expect("response"),
        (&Method::GET, ["version"]) => reply(
            StatusCode::OK,
            &json!({
                "Platform": {"Name": "Fake Docker Engine (traefik-openstack e2e)"},
                "Components": [{"Name": "Engine", "Version": "28.0.0",
                    "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}}],
                "Version": "28.0.0",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "GitCommit": "fake",
                "GoVersion": "go1.24",
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": "6.0.0",
                "BuildTime": "2026-01-01T00:00:00.000000000+00:00",
            }),
        ),
        (&Method::GET, ["containers", "json"]) => reply(
            StatusCode::OK,
            &Value::Array(st.containers.iter().map(Container::summary).collect()),
        ),
        (&Method::GET, ["containers", id, "json"]) => {
            match st
                .containers
                .iter()
                .find(|c| c.id == *id || c.name == *id || c.id.starts_with(*id))
            {
                Some(c) => reply(StatusCode::OK, &c.inspect()),
                None => reply(
                    StatusCode::NOT_FOUND,
                    &json!({"message": format!("No such container: {id}")}),
                ),
            }
        }
        (&Method::GET, ["events"]) => {
            // an event stream that stays open and never sends an event
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("api-version", API_VERSION)
                .body(Silent.boxed())
                .expect("response")
        }
        _ => {
            eprintln!("fake docker: UNKNOWN ENDPOINT {method} {pq} (answered 404)");
            st.unknown
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{method} {pq}"));
            reply(
                StatusCode::NOT_FOUND,
                &json!({"message": format!("fake docker: no endpoint {method} {path}")}),
            )
        }
    }
}

/// A response body that never sends a frame and never ends: an event
/// stream with no events.
struct Silent;

impl hyper::body::Body for Silent {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}
