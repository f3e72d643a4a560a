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

struct Shared {
    mode: Mutex<Mode>,
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
            *lock(&s.last_token) = Some(v.trim().to_string());
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
