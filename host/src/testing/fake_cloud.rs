//! A fake cloud: a local Keystone + Nova + Neutron made of the real API
//! samples in `host/tests/fixtures/openstack/`, which records every request.
//!
//! The fake keeps a list of servers (JSON as Nova sends it) and answers
//! `/servers/detail` from it the way Nova does (limit, marker,
//! `changes-since` including deleted servers, `servers_links` pointing at a
//! host the client must not follow). Faults are injected per path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The password of the fake's user `admin`.
pub const PASSWORD: &str = "s3cret-Pa55";
/// The fixtures' Nova and Neutron hosts, replaced by the fake's address.
const SAMPLE_NOVA: &str = "http://23.253.248.171:8774";
const SAMPLE_NEUTRON: &str = "http://23.253.248.171:9696";
/// The project the fake's tokens are scoped to.
pub const PROJECT: &str = "a6944d763bf64ee6a275f1263fae0352";

/// The bytes of `host/tests/fixtures/openstack/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openstack")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// [`fixture`] as JSON.
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A server as Nova 2.100 shows it, from the sample, with its own identity.
pub fn server(id: &str, name: &str, updated: &str) -> Value {
    let mut s = fixture_json("nova/servers-detail-v2.100.json")["servers"][0].clone();
    s["id"] = id.into();
    s["name"] = name.into();
    s["updated"] = updated.into();
    s
}

/// `n` servers `id-0`/`vm-0` ..., newest first as Nova lists them.
pub fn servers(n: usize) -> Vec<Value> {
    (0..n)
        .rev()
        .map(|i| {
            server(
                &format!("id-{i}"),
                &format!("vm-{i}"),
                "2024-01-01T00:00:00Z",
            )
        })
        .collect()
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names lowercased.
    pub headers: HashMap<String, String>,
    /// The body, as text.
    pub body: String,
}

impl Recorded {
    /// The first query parameter named `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer given instead of the fake's own (see [`FakeCloud::fault`]).
#[derive(Debug, Clone)]
pub struct Canned {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Canned {
    /// `status` with `body`, at once, no extra header.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

struct Fault {
    path_contains: String,
    /// Matching requests to let through first.
    skip: usize,
    reply: Canned,
}

/// What the fake knows and answers from; change it with [`FakeCloud::with`].
pub struct State {
    /// The servers, as Nova 2.100 shows them, newest first.
    pub servers: Vec<Value>,
    /// What the version document announces.
    pub max_version: String,
    /// How long the tokens it issues live.
    pub token_lifetime: Duration,
    /// The tokens it accepts.
    pub valid_tokens: Vec<String>,
    /// How many tokens it issued.
    pub tokens_issued: usize,
    /// The Neutron floating IP listing.
    pub floating_ips: Value,
    /// The Neutron port listing.
    pub ports: Value,
    /// The `Date` header Nova sends; `None` leaves it out.
    pub date: Option<SystemTime>,
    faults: Vec<Fault>,
    /// Every request, oldest first (see [`FakeCloud::take_requests`]).
    pub requests: Vec<Recorded>,
}

/// A local Keystone + Nova + Neutron; cheap to clone (clones share the state).
#[derive(Clone)]
pub struct FakeCloud {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// What it answers from.
    pub state: Arc<Mutex<State>>,
}

impl FakeCloud {
    /// Listens on a free local port and answers until the runtime ends.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            servers: Vec::new(),
            max_version: "2.104".into(),
            token_lifetime: Duration::from_secs(3600),
            valid_tokens: Vec::new(),
            tokens_issued: 0,
            floating_ips: fixture_json("neutron/floatingips.json"),
            ports: fixture_json("neutron/ports.json"),
            date: Some(SystemTime::now()),
            faults: Vec::new(),
            requests: Vec::new(),
        }));
        let cloud = Self { base, state };
        let serving = cloud.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let cloud = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let cloud = cloud.clone();
                        async move { Ok::<_, Infallible>(cloud.handle(req).await) }
                    });
                    // Date is the fake's to set (see `State::date`).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .auto_date_header(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        cloud
    }

    /// `clouds.yaml` text for this fake, cloud name `fake`.
    pub fn clouds_yaml(&self) -> String {
        format!(
            "clouds:\n  fake:\n    auth:\n      auth_url: {}/v3\n      username: admin\n      \
             password: {PASSWORD}\n      project_name: admin\n      user_domain_name: Default\n      \
             project_domain_id: default\n    region_name: RegionOne\n",
            self.base
        )
    }

    /// The cloud as the client sees it: user `admin`, password [`PASSWORD`], project [`PROJECT`].
    pub fn cloud_config(&self) -> crate::openstack::CloudConfig {
        use crate::openstack::clouds::*;
        CloudConfig {
            name: "fake".into(),
            auth_url: format!("{}/v3", self.base),
            credentials: Credentials::Password {
                user: Named::Name {
                    name: "admin".into(),
                    domain: Domain::Name("Default".into()),
                },
                password: PASSWORD.into(),
                project: Named::Id(PROJECT.into()),
            },
            region: Some("RegionOne".into()),
            interface: "public".into(),
            cacert: None,
            verify: true,
        }
    }

    /// Runs `f` on the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Replaces the servers.
    pub fn set_servers(&self, servers: Vec<Value>) {
        self.with(|s| s.servers = servers);
    }

    /// The next request whose path contains `path_contains`, after `skip`
    /// others, gets `reply` instead.
    pub fn fault(&self, path_contains: &str, skip: usize, reply: Canned) {
        self.with(|s| {
            s.faults.push(Fault {
                path_contains: path_contains.into(),
                skip,
                reply,
            })
        });
    }

    /// Makes every token issued so far invalid (the next use gets a 401).
    pub fn revoke_tokens(&self) {
        self.with(|s| s.valid_tokens.clear());
    }

    /// The requests received since the last call.
    pub fn take_requests(&self) -> Vec<Recorded> {
        self.with(|s| std::mem::take(&mut s.requests))
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                reqwest::Url::parse(&format!("http://x/?{q}"))
                    .unwrap()
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let recorded = Recorded {
            method,
            path,
            query,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (reply, extra_headers) = self.answer(&recorded);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut response = Response::builder()
            .status(reply.status)
            .header("Content-Type", "application/json");
        for (k, v) in extra_headers.into_iter().chain(reply.headers) {
            response = response.header(k, v);
        }
        response.body(Full::new(Bytes::from(reply.body))).unwrap()
    }

    fn answer(&self, req: &Recorded) -> (Canned, Vec<(String, String)>) {
        let mut state = self.state.lock().unwrap();
        state.requests.push(req.clone());
        let mut headers = Vec::new();
        if let Some(date) = state.date {
            headers.push(("Date".into(), httpdate::fmt_http_date(date)));
        }
        if let Some(pos) = state
            .faults
            .iter()
            .position(|f| req.path.contains(&f.path_contains))
        {
            if state.faults[pos].skip == 0 {
                return (state.faults.remove(pos).reply, headers);
            }
            state.faults[pos].skip -= 1;
        }
        if req.path == "/v3/auth/tokens" {
            return self.issue_token(&mut state, req, headers);
        }
        let token = req.headers.get("x-auth-token").cloned().unwrap_or_default();
        if !state.valid_tokens.contains(&token) {
            let body = json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}});
            return (Canned::status(401, &body.to_string()), headers);
        }
        let reply = match req.path.as_str() {
            "/v2.1/" | "/v2.1" => {
                let mut doc = fixture_json("nova/version-v2.1.json");
                doc["version"]["version"] = state.max_version.clone().into();
                Canned::status(200, &doc.to_string())
            }
            p if p.ends_with("/servers/detail") => list_servers(&state.servers, req),
            "/v2.0/floatingips" => Canned::status(200, &state.floating_ips.to_string()),
            "/v2.0/ports" => Canned::status(200, &state.ports.to_string()),
            _ => Canned::status(
                404,
                r#"{"itemNotFound": {"code": 404, "message": "no such path"}}"#,
            ),
        };
        (reply, headers)
    }

    fn issue_token(
        &self,
        state: &mut State,
        req: &Recorded,
        mut headers: Vec<(String, String)>,
    ) -> (Canned, Vec<(String, String)>) {
        let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
        let identity = &body["auth"]["identity"];
        let secret = identity["password"]["user"]["password"]
            .as_str()
            .or(identity["application_credential"]["secret"].as_str());
        if secret != Some(PASSWORD) {
            // Keystone's real 401 body.
            let body = json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}});
            return (Canned::status(401, &body.to_string()), headers);
        }
        state.tokens_issued += 1;
        let token = format!("gAAAAA-token-{}", state.tokens_issued);
        state.valid_tokens.push(token.clone());
        let text = String::from_utf8(fixture("keystone/token-password-project-scoped.json"))
            .unwrap()
            .replace(SAMPLE_NOVA, &self.base)
            .replace(&format!("{SAMPLE_NEUTRON}/"), &format!("{}/", self.base));
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        let issued = SystemTime::now();
        doc["token"]["issued_at"] = humantime::format_rfc3339_micros(issued).to_string().into();
        doc["token"]["expires_at"] =
            humantime::format_rfc3339_micros(issued + state.token_lifetime)
                .to_string()
                .into();
        headers.push(("X-Subject-Token".into(), token));
        (Canned::status(201, &doc.to_string()), headers)
    }
}

/// Nova's `/servers/detail`: filters, then limit/marker pagination.
fn list_servers(all: &[Value], req: &Recorded) -> Canned {
    let since = req.param("changes-since");
    let deleted = |s: &Value| s["status"] == "DELETED";
    let matching: Vec<&Value> = all
        .iter()
        .filter(|s| match since {
            // Same format (`...Z`, seconds) on both sides: text order is time order.
            Some(since) => s["updated"].as_str().unwrap_or("") >= since,
            None => !deleted(s),
        })
        .collect();
    let start = match req.param("marker") {
        Some(marker) => match matching.iter().position(|s| s["id"] == marker) {
            Some(i) => i + 1,
            None => {
                return Canned::status(
                    400,
                    &json!({"badRequest": {"code": 400, "message": format!("marker [{marker}] not found")}})
                        .to_string(),
                );
            }
        },
        None => 0,
    };
    let limit: usize = req
        .param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1000);
    let page: Vec<&Value> = matching.iter().skip(start).take(limit).copied().collect();
    let mut body = json!({ "servers": page });
    if page.len() == limit
        && let Some(last) = page.last()
    {
        // Nova builds this from its own idea of its URL; a client must not
        // follow it blindly.
        body["servers_links"] = json!([{
            "href": format!("http://nova-internal.invalid:8774/v2.1/servers/detail?limit={limit}&marker={}", last["id"].as_str().unwrap()),
            "rel": "next",
        }]);
    }
    Canned::status(200, &body.to_string())
}
