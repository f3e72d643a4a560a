//! A fault-injecting TCP proxy in front of Nova: the Keystone catalog's
//! compute endpoint points here, so everything the host asks Nova passes
//! through it.
//!
//! Modes (per new connection; switching closes every open connection so
//! pooled keep-alive connections see the new mode at once):
//! - [`Mode::Pass`]: bytes both ways; a refused upstream (Nova stopped)
//!   closes the client connection, like a dead endpoint behind a balancer.
//! - [`Mode::Error500`]: reads the request, answers a Nova-style 500.
//! - [`Mode::Hang`]: accepts and never answers.
//!
//! On top of [`Mode::Pass`], [`HttpFaults`] act on single HTTP exchanges:
//! a page of the server listing failing, cut short or held, the `Date`
//! header shifted, a hook run before a page is forwarded. While any is set
//! the proxy speaks HTTP/1.0 to Nova, one exchange per connection, and
//! answers the client with `Connection: close`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Error500,
    Hang,
}

/// Runs in the proxy's thread before a page is forwarded, with the
/// request's `X-Auth-Token`.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// HTTP-level faults. Pages are those of `GET .../servers/detail`,
/// numbered from 1 per listing (a request without `marker` starts one; the
/// same marker again, e.g. a retry after a 401, is the same page).
#[derive(Clone, Default)]
pub struct HttpFaults {
    /// This page answers a Nova-style 500.
    pub fail_page: Option<u32>,
    /// This page answers 200 with its JSON body cut in half (a consistent
    /// `Content-Length`: the message is whole, the document is not).
    pub truncate_page: Option<u32>,
    /// This page is held this long before it is forwarded.
    pub delay_page: Option<(u32, Duration)>,
    /// Runs before this page is forwarded.
    pub before_page: Option<(u32, Hook)>,
    /// Added to the `Date` header of every answer, in seconds.
    pub date_offset: i64,
}

impl HttpFaults {
    fn any(&self) -> bool {
        self.fail_page.is_some()
            || self.truncate_page.is_some()
            || self.delay_page.is_some()
            || self.before_page.is_some()
            || self.date_offset != 0
    }
}

/// Where the current listing is.
#[derive(Default)]
struct Paging {
    page: u32,
    marker: Option<String>,
}

struct Shared {
    mode: Mutex<Mode>,
    faults: Mutex<HttpFaults>,
    paging: Mutex<Paging>,
    /// Every `X-Auth-Token` seen, in order, without repeats.
    tokens: Mutex<Vec<String>>,
    /// Pages being held by `delay_page` now.
    held: AtomicU64,
    upstream: SocketAddr,
    open: Mutex<std::collections::HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    last_token: Mutex<Option<String>>,
    requests: AtomicU64,
    stop: AtomicBool,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            faults: Mutex::new(HttpFaults::default()),
            paging: Mutex::new(Paging::default()),
            tokens: Mutex::new(Vec::new()),
            held: AtomicU64::new(0),
            upstream,
            open: Mutex::new(Default::default()),
            next_id: AtomicU64::new(0),
            last_token: Mutex::new(None),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || handle(s, conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(FaultProxy {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
        for (_, s) in lock(&self.shared.open).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Sets the HTTP-level faults (`HttpFaults::default()`: none); closes
    /// open connections like [`FaultProxy::set_mode`].
    pub fn set_faults(&self, faults: HttpFaults) {
        *lock(&self.shared.faults) = faults;
        for (_, s) in lock(&self.shared.open).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Every `X-Auth-Token` that went through so far, oldest first.
    pub fn tokens(&self) -> Vec<String> {
        lock(&self.shared.tokens).clone()
    }

    /// Listing pages held by `delay_page` right now.
    pub fn held(&self) -> u64 {
        self.shared.held.load(Ordering::SeqCst)
    }

    pub fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    /// The `X-Auth-Token` of the latest request that went through.
    pub fn last_token(&self) -> Option<String> {
        lock(&self.shared.last_token).clone()
    }

    /// Connections accepted so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_mode(Mode::Pass);
        self.set_faults(HttpFaults::default());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a socket so a mode switch can close it; unregistered (and the
/// duplicate descriptor closed) when the guard drops.
struct Tracked<'a>(&'a Shared, u64);

fn track<'a>(s: &'a Shared, conn: &TcpStream) -> Tracked<'a> {
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    if let Ok(c) = conn.try_clone() {
        lock(&s.open).insert(id, c);
    }
    Tracked(s, id)
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        lock(&self.0.open).remove(&self.1);
    }
}

/// Reads until the end of the request head (or EOF); returns what was read.
fn read_head(conn: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn capture_token(s: &Shared, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.split("\r\n") {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("x-auth-token")
        {
            let token = v.trim().to_string();
            let mut all = lock(&s.tokens);
            if !all.contains(&token) {
                all.push(token.clone());
            }
            *lock(&s.last_token) = Some(token);
        }
    }
}

fn handle(s: Arc<Shared>, mut conn: TcpStream) {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mode = *lock(&s.mode);
    let _tracked = track(&s, &conn);
    match mode {
        Mode::Hang => {
            // hold the connection until the mode changes (shutdown) or the
            // client gives up
            let mut sink = [0u8; 4096];
            while let Ok(n) = conn.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        }
        Mode::Error500 => {
            let _ = read_head(&mut conn);
            let body =
                r#"{"computeFault": {"code": 500, "message": "injected by the e2e fault proxy"}}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.shutdown(Shutdown::Both);
        }
        Mode::Pass if lock(&s.faults).any() => {
            let faults = lock(&s.faults).clone();
            http_exchange(&s, conn, &faults);
        }
        Mode::Pass => {
            let Ok(up) = TcpStream::connect_timeout(&s.upstream, Duration::from_secs(2)) else {
                let _ = conn.shutdown(Shutdown::Both);
                return;
            };
            let _tracked_up = track(&s, &up);
            let (Ok(mut up_w), Ok(mut conn_r)) = (up.try_clone(), conn.try_clone()) else {
                return;
            };
            let s2 = s.clone();
            let upload = std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    match conn_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            capture_token(&s2, &buf[..n]);
                            if up_w.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = up_w.shutdown(Shutdown::Write);
            });
            let mut up_r = up;
            let _ = std::io::copy(&mut up_r, &mut conn);
            let _ = conn.shutdown(Shutdown::Both);
            let _ = upload.join();
        }
    }
}

/// The page of the server listing `target` asks for, if it is one.
fn listing_page(s: &Shared, target: &str) -> Option<u32> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.ends_with("/servers/detail") {
        return None;
    }
    let marker = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("marker="))
        .map(str::to_owned);
    let mut p = lock(&s.paging);
    match marker {
        None => {
            *p = Paging {
                page: 1,
                marker: None,
            }
        }
        Some(m) if p.marker.as_deref() == Some(&m) => {}
        Some(m) => {
            p.page += 1;
            p.marker = Some(m);
        }
    }
    Some(p.page)
}

fn nova_500(conn: &mut TcpStream, message: &str) {
    let body = format!(r#"{{"computeFault": {{"code": 500, "message": "{message}"}}}}"#);
    let _ = write!(
        conn,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.shutdown(Shutdown::Both);
}

/// One request, forwarded as HTTP/1.0 with `faults` applied.
fn http_exchange(s: &Arc<Shared>, mut conn: TcpStream, faults: &HttpFaults) {
    let mut request = read_head(&mut conn);
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let head = String::from_utf8_lossy(&request[..end]).into_owned();
    capture_token(s, head.as_bytes());
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut length = 0usize;
    let mut token = String::new();
    let mut forwarded = format!("{method} {target} HTTP/1.0\r\n");
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().unwrap_or(0);
        }
        if k.eq_ignore_ascii_case("x-auth-token") {
            token = v.trim().to_owned();
        }
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        forwarded += line;
        forwarded += "\r\n";
    }
    forwarded += "Connection: close\r\n\r\n";
    // the body: what came with the head, then the rest
    let mut body = request.split_off(end + 4);
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }

    let page = listing_page(s, target);
    let is = |n: Option<u32>| page.is_some() && page == n;
    if is(faults.fail_page) {
        nova_500(&mut conn, "injected by the e2e fault proxy on this page");
        return;
    }
    if let Some((n, hook)) = &faults.before_page
        && is(Some(*n))
    {
        hook(&token);
    }
    if let Some((n, delay)) = faults.delay_page
        && is(Some(n))
    {
        s.held.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        s.held.fetch_sub(1, Ordering::SeqCst);
    }

    let Ok(mut up) = TcpStream::connect_timeout(&s.upstream, Duration::from_secs(2)) else {
        let _ = conn.shutdown(Shutdown::Both);
        return;
    };
    let _tracked_up = track(s, &up);
    if up.write_all(forwarded.as_bytes()).is_err() || up.write_all(&body).is_err() {
        return;
    }
    let mut response = Vec::new();
    if up.read_to_end(&mut response).is_err() {
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        let _ = conn.shutdown(Shutdown::Both);
        return;
    };
    let mut body = response.split_off(end + 4);
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let ok = status_line.split(' ').nth(1) == Some("200");
    if ok && is(faults.truncate_page) {
        body.truncate(body.len() / 2);
    }
    let mut out = format!("{status_line}\r\n");
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if [
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
        ]
        .iter()
        .any(|h| k.eq_ignore_ascii_case(h))
        {
            continue;
        }
        if k.eq_ignore_ascii_case("date")
            && faults.date_offset != 0
            && let Ok(t) = httpdate::parse_http_date(v.trim())
        {
            let shift = Duration::from_secs(faults.date_offset.unsigned_abs());
            let t = if faults.date_offset > 0 {
                t + shift
            } else {
                t - shift
            };
            out += &format!("Date: {}\r\n", httpdate::fmt_http_date(t));
            continue;
        }
        out += line;
        out += "\r\n";
    }
    out += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.shutdown(Shutdown::Both);
}
