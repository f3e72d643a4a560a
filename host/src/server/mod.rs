//! The HTTP side: what Traefik polls, and what operators look at.
//!
//! Handlers never wait on OpenStack or the engine: they read the last
//! published snapshot, so a slow cloud can never slow a poll down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::chunked::Chunked;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::tls::Tls;

mod limits;

use limits::{Connections, Slot, Tracked};
pub use limits::{Limits, RESERVED_FILES, raise_open_files_limit};

/// What the handlers share.
pub struct AppState {
    /// The configuration and status to serve.
    pub publisher: Arc<Publisher>,
    /// The metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Path of the Traefik configuration endpoint.
    pub config_path: String,
    /// Bearer token required on the configuration and instance endpoints.
    pub token: Option<String>,
}

/// A response body handed to hyper in slices, yielding between them.
///
/// A 6 MB configuration written in one go lets a connection whose socket
/// keeps draining hold the worker until the whole body is out, and the other
/// pollers wait (p99 several times nginx's, which caps each turn with
/// `sendfile_max_chunk`). Slices of at most [`SLICE`] bytes (the body's own
/// chunks, cut further when larger) with a yield after each [`SLICE`] sent
/// share the worker fairly; the bytes are never copied (`Bytes::slice`).
/// A body up to [`WHOLE`] (a gzip body of a few hundred KiB for 10k
/// instances) goes without yielding: yielding inside it only costs.
pub(crate) struct Body {
    body: Chunked,
    /// The next chunk, and how much of it was sent.
    next: usize,
    offset: usize,
    /// Bytes not sent yet.
    left: usize,
    /// Bytes sent since the last yield.
    since_yield: usize,
    yield_next: bool,
}

const SLICE: usize = 256 * 1024;
/// Bodies up to this size go out without a yield.
const WHOLE: usize = 2 * SLICE;

impl Body {
    fn empty() -> Self {
        Self::from(Bytes::new())
    }
}

impl From<Chunked> for Body {
    fn from(body: Chunked) -> Self {
        Self {
            left: body.len(),
            body,
            next: 0,
            offset: 0,
            since_yield: 0,
            yield_next: false,
        }
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        Chunked::from(data).into()
    }
}

impl From<String> for Body {
    fn from(data: String) -> Self {
        Bytes::from(data).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(data: Vec<u8>) -> Self {
        Bytes::from(data).into()
    }
}

impl From<&'static str> for Body {
    fn from(data: &'static str) -> Self {
        Bytes::from_static(data.as_bytes()).into()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let this = &mut *self;
        let chunk = &this.body.chunks()[this.next];
        let end = match this.body.len() <= WHOLE {
            true => chunk.len(),
            false => chunk.len().min(this.offset + SLICE),
        };
        let slice = chunk.slice(this.offset..end);
        if end == chunk.len() {
            this.next += 1;
            this.offset = 0;
        } else {
            this.offset = end;
        }
        this.left -= slice.len();
        this.since_yield += slice.len();
        if this.body.len() > WHOLE && this.since_yield >= SLICE && this.left > 0 {
            this.since_yield = 0;
            this.yield_next = true;
        }
        Poll::Ready(Some(Ok(hyper::body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left as u64)
    }
}

/// Serves until `shutdown` resolves, then lets open requests finish (for at
/// most `grace`). With `tls`, every connection starts with a TLS handshake
/// (and a client certificate when the settings ask for one), which must
/// finish within `request_timeout` like the request headers.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let conns = Connections::new(limits.max_connections, state.metrics.clone());
    serve_with(listener, state, limits, tls, shutdown, grace, conns).await
}

async fn serve_with(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    conns: Arc<Connections>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    'accept: loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: the
                    // connection stays in the backlog, the listener stays
                    // readable, and retrying at once would spin. Back off.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = loop {
            if let Some(slot) = conns.admit() {
                break slot;
            }
            // Every connection is answering a request: accept no more
            // until one finishes or starts waiting.
            tokio::select! {
                () = conns.room.notified() => {}
                () = &mut shutdown => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let close = slot.close.clone();
            let slot = Arc::new(slot);
            let served = async {
                match acceptor {
                    None => serve_connection(stream, state, limits, slot.clone(), watcher).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.request_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, state, limits, slot.clone(), watcher).await
                            }
                            Ok(Err(e)) => {
                                state.metrics.tls_handshake_failed();
                                tracing::debug!(error = %e, "TLS handshake refused");
                                Ok(())
                            }
                            Err(_) => {
                                state.metrics.tls_handshake_failed();
                                tracing::debug!("TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                }
            };
            // Dropping the connection closes its socket.
            let result = tokio::select! {
                result = served => result,
                () = close.cancelled() => Ok(()),
                () = slot.stalled(limits.request_timeout) => {
                    slot.conns.metrics.connection_closed("stalled");
                    Ok(())
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    slot.conns.metrics.connection_closed("header_timeout");
                } else if e.is_parse_too_large() {
                    slot.conns.metrics.connection_closed("header_too_large");
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?}; closing them");
    }
    Ok(())
}

/// HTTP/1.1 on one connection, plain or TLS.
async fn serve_connection<S>(
    stream: S,
    state: Arc<AppState>,
    limits: Limits,
    slot: Arc<Slot>,
    watcher: hyper_util::server::graceful::Watcher,
) -> hyper::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let busy = slot.busy();
        let resp = handle(&state, req).map(|body| Tracked { body, busy });
        async move { Ok::<_, Infallible>(resp) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper starts this clock whenever it starts reading a request head:
        // on a new connection and after each response, so it also ends
        // connections that send nothing, trickle their headers, or idle
        // between keep-alive requests.
        .header_read_timeout(limits.request_timeout)
        // Checked as the bytes arrive, so a connection never buffers much
        // more than this (one read beyond it) before its 431.
        .max_header_size(limits.max_header_bytes)
        .serve_connection(TokioIo::new(stream), service);
    watcher.watch(conn).await
}

/// Routes one request. Pure apart from reading shared state, so it is
/// tested without sockets.
pub(crate) fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let head = req.method() == Method::HEAD;
    let mut resp = if path == state.config_path {
        authorized(state, req.headers()).unwrap_or_else(|| config(state, req.headers()))
    } else {
        match path {
            "/" => {
                authorized(state, req.headers()).unwrap_or_else(|| crate::status_page::page(state))
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => readyz(state),
            "/metrics" => {
                let mut r = Response::new(Body::from(state.metrics.encode()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/api/instances" => {
                authorized(state, req.headers()).unwrap_or_else(|| instances(state))
            }
            "/api/module" => authorized(state, req.headers()).unwrap_or_else(|| module(state)),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    if head {
        *resp.body_mut() = Body::empty();
    }
    resp
}

/// `None` when allowed, else the 401 to send.
fn authorized(state: &AppState, headers: &HeaderMap) -> Option<Response<Body>> {
    let expected = state.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return None;
    }
    let mut resp = text(StatusCode::UNAUTHORIZED, "bearer token required\n");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"traefik-openstack\""),
    );
    Some(resp)
}

fn config(state: &AppState, headers: &HeaderMap) -> Response<Body> {
    let Some(snapshot) = state.publisher.current() else {
        // Traefik keeps its current configuration when the provider fails.
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration: waiting for a successful sync (/readyz says why)\n",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    let gzip = accepts_gzip(headers);
    let (etag, body) = if gzip {
        (&snapshot.etag_gzip, Body::from(snapshot.gzip.clone()))
    } else {
        (&snapshot.etag, Body::from(snapshot.body.clone()))
    };
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == snapshot.etag || t == snapshot.etag_gzip);
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(body)
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex etag"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    resp
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn readyz(state: &AppState) -> Response<Body> {
    let readiness = state.publisher.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        serde_json::to_vec_pretty(&readiness).expect("plain data"),
    )
}

fn instances(state: &AppState) -> Response<Body> {
    match state.publisher.current() {
        Some(s) => json(StatusCode::OK, s.instances_report()),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration: waiting for a successful sync (/readyz says why)\n",
        ),
    }
}

/// The module in use and what it printed in the run that made the
/// published configuration: print debugging for policy authors.
fn module(state: &AppState) -> Response<Body> {
    let mut module = String::new();
    state
        .publisher
        .update_status(|s| module.clone_from(&s.module));
    let logs = state
        .publisher
        .current()
        .map(|s| serde_json::to_value(s.module_logs()).expect("plain data"));
    let body = serde_json::json!({ "module": module, "logs": logs });
    json(
        StatusCode::OK,
        serde_json::to_vec_pretty(&body).expect("plain data"),
    )
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::Generated;
    use crate::publish::Snapshot;
    use http_body_util::BodyExt;

    pub(crate) fn state(token: Option<&str>) -> AppState {
        AppState {
            publisher: Arc::new(Publisher::new(Duration::from_secs(30))),
            metrics: Arc::new(Metrics::new()),
            config_path: "/traefik".into(),
            token: token.map(Into::into),
        }
    }

    pub(crate) fn publish(state: &AppState, config: &str) {
        state.publisher.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config(config),
            None,
        ));
    }

    fn get(state: &AppState, path: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        handle(state, req.body(()).unwrap())
    }

    fn body(resp: Response<Body>) -> Bytes {
        futures_executor(resp.into_body().collect())
            .unwrap()
            .to_bytes()
    }

    fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn before_first_sync_config_is_503() {
        let s = state(None);
        assert_eq!(
            get(&s, "/traefik", &[]).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&s, "/readyz", &[]).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&s, "/healthz", &[]).status(), StatusCode::OK);
    }

    #[test]
    fn etag_and_304() {
        let s = state(None);
        publish(&s, "{\"http\":{\"routers\":{}}}");
        let r = get(&s, "/traefik", &[]);
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(&body(r)[..], b"{\"http\":{\"routers\":{}}}");

        let r = get(&s, "/traefik", &[("if-none-match", &etag)]);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body(r).is_empty());
        let r = get(
            &s,
            "/traefik",
            &[("if-none-match", "\"other\", W/".to_owned().as_str())],
        );
        assert_eq!(r.status(), StatusCode::OK);

        publish(&s, "{}");
        let r = get(&s, "/traefik", &[("if-none-match", &etag)]);
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "a new config invalidates the old tag"
        );
    }

    #[test]
    fn gzip_when_accepted() {
        let s = state(None);
        publish(&s, "{\"a\":1}");
        let r = get(&s, "/traefik", &[("accept-encoding", "gzip")]);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        let gz = body(r);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, "{\"a\":1}");
        let r = get(&s, "/traefik", &[("accept-encoding", "gzip;q=0, br")]);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        let r = get(
            &s,
            "/traefik",
            &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn token_guards_config_instances_and_the_status_page() {
        let s = state(Some("s3cr3t-token"));
        publish(&s, "{}");
        assert_eq!(get(&s, "/traefik", &[]).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(&s, "/traefik", &[("authorization", "Bearer wrong")]).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&s, "/api/instances", &[]).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(&s, "/", &[]).status(), StatusCode::UNAUTHORIZED);
        let page = get(&s, "/", &[("authorization", "Bearer s3cr3t-token")]);
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(!String::from_utf8_lossy(&body(page)).contains("s3cr3t"));
        assert_eq!(
            get(&s, "/traefik", &[("authorization", "Bearer s3cr3t-token")]).status(),
            StatusCode::OK
        );
        assert_eq!(get(&s, "/healthz", &[]).status(), StatusCode::OK);
        let metrics = body(get(&s, "/metrics", &[]));
        assert!(!String::from_utf8_lossy(&metrics).contains("s3cr3t"));
    }

    #[test]
    fn other_methods_and_paths() {
        let s = state(None);
        let r = handle(&s, Request::post("/traefik").body(()).unwrap());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get(&s, "/nope", &[]).status(), StatusCode::NOT_FOUND);
        publish(&s, "{}");
        let r = handle(&s, Request::head("/traefik").body(()).unwrap());
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).is_empty());
    }

    #[tokio::test]
    async fn large_bodies_arrive_whole_over_a_real_connection() {
        let state = Arc::new(state(None));
        // Several slices' worth, with a recognisable end.
        let config = format!("{{\"pad\":\"{}\",\"end\":1}}", "x".repeat(3 * SLICE + 17));
        publish(&state, &config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            state,
            Limits::default(),
            None,
            stop.clone().cancelled_owned(),
            Duration::from_secs(1),
        ));
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let resp = client
                .get(format!("http://{addr}/traefik"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.content_length(), Some(config.len() as u64));
            assert_eq!(resp.text().await.unwrap(), config);
        }
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
