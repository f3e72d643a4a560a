//! What one client may cost the server: `[server]`'s abuse limits, and
//! the registry of open connections that enforces them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Body;
use crate::metrics::Metrics;
/// What one client may cost the server: `[server]`'s abuse limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A connection must deliver a request's headers (and finish its TLS
    /// handshake) within this, counted from when it opens or its previous
    /// response ended. A response that sends less than [`MIN_PROGRESS`]
    /// over a whole period of it is abandoned too (checked once a period,
    /// so after one to two periods): a client that stops reading, or
    /// reads a trickle, must not hold its connection, which cannot be
    /// closed for room while busy.
    pub request_timeout: Duration,
    /// Connections open at once; at the limit a new one closes the one
    /// that has waited longest for a request.
    pub max_connections: usize,
    /// Largest request line plus headers, in bytes (431 beyond).
    pub max_header_bytes: usize,
}

impl Limits {
    /// The limits `[server]` sets.
    pub fn of(config: &crate::config::ServerConfig) -> Self {
        Self {
            request_timeout: config.request_timeout,
            max_connections: config.max_connections,
            max_header_bytes: config.max_header_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::of(&crate::config::ServerConfig::default())
    }
}

/// Bytes a response must send per `request_timeout` (6.4 KiB/s at the
/// default 10 s). Traefik reads a configuration as fast as the network
/// goes; a client below this is stuck or trickling on purpose, and 512 of
/// them would hold every connection. Counted in the response's frames, so
/// a body of large frames (up to 256 KiB) must show one frame per period.
pub const MIN_PROGRESS: u64 = 64 * 1024;

/// The open connections, and which of them wait for a request.
///
/// At `max_connections`, a new connection closes the one that has waited
/// longest for a request (idle keep-alive, headers trickling in, or nothing
/// sent yet) and takes its place; a connection in the middle of a response
/// is never closed for room. Leaving new connections in the listen backlog
/// instead would let anyone who holds `max_connections` idle sockets, and
/// reopens them as they time out, keep Traefik's poll in the backlog for up
/// to `request_timeout` each time. Closing the longest-waiting one serves the
/// poll at once: its connection is the newest, so the last to go, and it
/// cannot be closed for room once its headers are in. nginx reuses idle
/// keep-alive connections the same way when it runs out. Traefik loses
/// nothing when its own idle keep-alive connection is the one closed: Go's
/// client opens another and retries a GET that raced the close. Only when
/// every connection is busy does a new one wait in the backlog.
pub(crate) struct Connections {
    max: usize,
    open: std::sync::Mutex<Open>,
    /// Signalled when a connection closes or starts waiting: room may be
    /// made.
    pub(super) room: tokio::sync::Notify,
    pub(super) metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Open {
    /// Connection ids and waiting-order keys, from one counter.
    next: u64,
    conns: std::collections::HashMap<u64, Conn>,
    /// The waiting connections by when they started waiting, oldest first.
    waiting: std::collections::BTreeMap<u64, u64>,
}

struct Conn {
    /// Requests being answered (hyper answers one at a time; a count is
    /// robust to it dropping one response as it starts the next).
    busy: usize,
    /// Its key in `waiting` while it waits.
    waiting_since: Option<u64>,
    close: tokio_util::sync::CancellationToken,
}

impl Connections {
    pub(crate) fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Default::default(),
            room: tokio::sync::Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The map stays consistent even if a holder panicked: every update
        // is a single insert or remove.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection, closing the longest-waiting one at the
    /// limit; `None` while every open connection is answering a request.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.conns.len() >= self.max {
            let (_, oldest) = open.waiting.pop_first()?;
            if let Some(conn) = open.conns.remove(&oldest) {
                conn.close.cancel();
            }
            self.metrics.connection_closed("limit");
        }
        let id = open.next;
        let since = id + 1;
        open.next += 2;
        let close = tokio_util::sync::CancellationToken::new();
        open.waiting.insert(since, id);
        open.conns.insert(
            id,
            Conn {
                busy: 0,
                waiting_since: Some(since),
                close: close.clone(),
            },
        );
        self.metrics.connections.set(open.conns.len() as i64);
        Some(Slot {
            conns: self.clone(),
            id,
            close,
            progress: Default::default(),
        })
    }

    /// Open connections, and how many of them wait for a request.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let open = self.lock();
        (open.conns.len(), open.waiting.len())
    }
}

/// One admitted connection; leaves the registry when dropped.
pub(super) struct Slot {
    pub(super) conns: Arc<Connections>,
    id: u64,
    /// Cancelled when the connection is closed to make room.
    pub(super) close: tokio_util::sync::CancellationToken,
    /// Response bytes sent, for the stall watchdog.
    progress: Arc<std::sync::atomic::AtomicU64>,
}

impl Slot {
    /// Marks the connection busy until the guard (held by the response
    /// body) is dropped.
    pub(super) fn busy(&self) -> Busy {
        let mut open = self.conns.lock();
        let open = &mut *open;
        if let Some(conn) = open.conns.get_mut(&self.id) {
            conn.busy += 1;
            if let Some(since) = conn.waiting_since.take() {
                open.waiting.remove(&since);
            }
        }
        Busy {
            conns: self.conns.clone(),
            id: self.id,
            progress: self.progress.clone(),
        }
    }

    fn is_busy(&self) -> bool {
        self.conns
            .lock()
            .conns
            .get(&self.id)
            .is_some_and(|c| c.busy > 0)
    }

    /// Resolves when a response has sent less than [`MIN_PROGRESS`] over
    /// a whole `period`.
    pub(super) async fn stalled(&self, period: Duration) {
        use std::sync::atomic::Ordering;
        let mut seen = self.progress.load(Ordering::Relaxed);
        let mut was_busy = false;
        loop {
            tokio::time::sleep(period).await;
            let now = self.progress.load(Ordering::Relaxed);
            let busy = self.is_busy();
            if busy && was_busy && now - seen < MIN_PROGRESS {
                return;
            }
            (seen, was_busy) = (now, busy);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.lock();
        if let Some(conn) = open.conns.remove(&self.id)
            && let Some(since) = conn.waiting_since
        {
            open.waiting.remove(&since);
        }
        self.conns.metrics.connections.set(open.conns.len() as i64);
        drop(open);
        self.conns.room.notify_one();
    }
}

/// A request being answered; the connection waits again when dropped.
pub(super) struct Busy {
    conns: Arc<Connections>,
    id: u64,
    progress: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut open = self.conns.lock();
        let open = &mut *open;
        let since = open.next;
        let Some(conn) = open.conns.get_mut(&self.id) else {
            return;
        };
        conn.busy -= 1;
        if conn.busy == 0 {
            open.next += 1;
            conn.waiting_since = Some(since);
            open.waiting.insert(since, self.id);
            self.conns.room.notify_one();
        }
    }
}

/// A response body that keeps its connection busy until it is dropped,
/// and counts the bytes sent for the stall watchdog.
pub(crate) struct Tracked {
    pub(super) body: Body,
    pub(super) busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let frame = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &frame {
            let sent = f.data_ref().map_or(0, Bytes::len) as u64;
            self.busy
                .progress
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Raises the soft limit on open files to the hard one, as Go's runtime
/// does at start: every connection is a file descriptor, and the soft
/// default of 1024 (systemd, many container runtimes) leaves little room
/// above `max_connections` for the cloud, the stores and the state file.
/// Returns the soft limit in force, raised or not.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // An unlimited hard limit is refused (the kernel caps at nr_open);
        // the soft limit then stays as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(limit.rlim_max);
        }
    }
    Ok(limit.rlim_cur)
}

/// File descriptors kept for what is not a connection to the endpoint:
/// the clouds, the KV stores, the module, the state file, logs.
pub const RESERVED_FILES: u64 = 128;

/// Abuse of the endpoint over real loopback sockets. The limits are
/// short (200 ms) so the deadlines can be generous (several seconds)
/// without the tests taking long on a loaded machine.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::serve_with;
    use crate::server::tests::{publish, state};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;

    const DEADLINE: Duration = Duration::from_secs(10);

    struct Server {
        addr: SocketAddr,
        conns: Arc<Connections>,
        metrics: Arc<Metrics>,
        state: Arc<crate::server::AppState>,
        stop: tokio_util::sync::CancellationToken,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    async fn start(limits: Limits, config: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        start_on(listener, limits, config)
    }

    fn start_on(listener: TcpListener, limits: Limits, config: &str) -> Server {
        let state = Arc::new(state(None));
        publish(&state, config);
        let metrics = state.metrics.clone();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let conns = Connections::new(limits.max_connections, metrics.clone());
        tokio::spawn(serve_with(
            listener,
            state.clone(),
            limits,
            None,
            stop.clone().cancelled_owned(),
            Duration::from_secs(1),
            conns.clone(),
        ));
        Server {
            addr,
            conns,
            metrics,
            state,
            stop,
        }
    }

    fn limits(request_timeout_ms: u64, max_connections: usize) -> Limits {
        Limits {
            request_timeout: Duration::from_millis(request_timeout_ms),
            max_connections,
            max_header_bytes: 4096,
        }
    }

    fn closed_for(metrics: &Metrics, reason: &'static str) -> u64 {
        metrics
            .connections_closed
            .get_or_create(&crate::metrics::ReasonLabels { reason })
            .get()
    }

    /// Everything the server sends until it closes the connection (a
    /// reset counts as closed); panics if it is still open at the
    /// deadline.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
                Err(_) => panic!("still open after {DEADLINE:?}; got {got:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return got,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !ok() {
            assert!(start.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(DEADLINE)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    async fn poll(server: &Server, etag: Option<&str>) -> reqwest::StatusCode {
        let mut req = client().get(format!("http://{}/traefik", server.addr));
        if let Some(etag) = etag {
            req = req.header("if-none-match", etag);
        }
        req.send().await.expect("the poll is answered").status()
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
        let server = start(limits(200, 64), "{}").await;
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        let started = std::time::Instant::now();
        until_closed(&mut c).await;
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "closed before the timeout: {:?}",
            started.elapsed()
        );
        wait_until("slot released", || server.conns.counts().0 == 0).await;
    }

    #[tokio::test]
    async fn slowloris_headers_are_cut_off_after_the_header_timeout() {
        let server = start(limits(200, 64), "{}").await;
        let c = TcpStream::connect(server.addr).await.unwrap();
        let (mut read, mut write) = c.into_split();
        // A byte every 20 ms: the headers would need several seconds.
        let trickle = tokio::spawn(async move {
            let head = format!(
                "GET /traefik HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
                "a".repeat(300)
            );
            for b in head.bytes() {
                if write.write_all(&[b]).await.is_err() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(DEADLINE, read.read(&mut buf)).await {
                Err(_) => panic!("slowloris connection still open after {DEADLINE:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 408"),
            "only a 408 or nothing: {got}"
        );
        assert!(
            !trickle.await.unwrap(),
            "the headers were still accepted after the timeout"
        );
        // Counted just after the socket closes.
        wait_until("counted", || {
            closed_for(&server.metrics, "header_timeout") == 1
        })
        .await;
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let server = start(limits(200, 64), "{}").await;
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let got = String::from_utf8(until_closed(&mut c).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.ends_with("ok\n"), "one response, then closed: {got}");
    }

    #[tokio::test]
    async fn oversized_headers_get_431() {
        let server = start(limits(5_000, 64), "{}").await;
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /traefik HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
            "a".repeat(6000)
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let got = String::from_utf8(until_closed(&mut c).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
        // Counted just after the socket closes.
        wait_until("counted", || {
            closed_for(&server.metrics, "header_too_large") == 1
        })
        .await;
        // Just under the limit is fine.
        let head = format!(
            "GET /traefik HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: {}\r\n\r\n",
            "a".repeat(3900)
        );
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        let got = String::from_utf8(until_closed(&mut c).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }

    #[tokio::test]
    async fn endless_headers_are_not_read_to_their_end() {
        let server = start(limits(5_000, 64), "{}").await;
        let c = TcpStream::connect(server.addr).await.unwrap();
        let (mut read, mut write) = c.into_split();
        // 64 MiB: far more than the socket buffers on both sides hold,
        // so sending it all would mean the server kept reading it.
        let flood = tokio::spawn(async move {
            write
                .write_all(b"GET /traefik HTTP/1.1\r\nhost: x\r\nx-pad: ")
                .await?;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..1024 {
                write.write_all(&chunk).await?;
            }
            std::io::Result::Ok(())
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(DEADLINE, read.read(&mut buf)).await {
                Err(_) => panic!("still reading the flood after {DEADLINE:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        let got = String::from_utf8_lossy(&got);
        // The 431 may be lost to the reset that closing with unread
        // bytes sends.
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
        let sent = tokio::time::timeout(DEADLINE, flood)
            .await
            .unwrap()
            .unwrap();
        assert!(sent.is_err(), "the server read all 64 MiB of headers");
        // Counted just after the socket closes.
        wait_until("counted", || {
            closed_for(&server.metrics, "header_too_large") == 1
        })
        .await;
    }

    #[tokio::test]
    async fn at_the_connection_limit_a_poll_closes_the_longest_waiting_connection() {
        let server = start(limits(60_000, 8), "{\"http\":{}}").await;
        let mut idle = Vec::new();
        for n in 1..=8 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
            // In order, so "oldest" is well defined.
            wait_until("accepted", || server.conns.counts().0 == n).await;
        }
        assert_eq!(poll(&server, None).await, 200);
        assert!(server.conns.counts().0 <= 8, "never above the limit");
        assert!(closed_for(&server.metrics, "limit") >= 1);
        // The oldest went; the newest idle one is still served.
        until_closed(&mut idle[0]).await;
        let newest = idle.last_mut().unwrap();
        newest
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = String::from_utf8(until_closed(newest).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }

    /// A configuration larger than both socket buffers (the server's
    /// grows to 4 MiB; the stuck reader's is pinned small), so a client
    /// that does not read keeps its response in progress.
    fn big_config() -> String {
        format!("{{\"pad\":\"{}\"}}", "x".repeat(8 << 20))
    }

    async fn stuck_reader(server: &Server) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut c = socket.connect(server.addr).await.unwrap();
        c.write_all(b"GET /traefik HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        c
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_new_one_waits_for_a_free_slot() {
        let server = start(limits(60_000, 2), &big_config()).await;
        let (first, _second) = (stuck_reader(&server).await, stuck_reader(&server).await);
        wait_until("both busy", || server.conns.counts() == (2, 0)).await;
        let addr = server.addr;
        let waiting = tokio::spawn(async move {
            client()
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .map(|r| r.status())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "answered although both connections were busy"
        );
        assert_eq!(server.conns.counts().0, 2);
        drop(first);
        let status = waiting.await.unwrap().expect("answered once a slot freed");
        assert_eq!(status, 200);
        assert_eq!(
            closed_for(&server.metrics, "limit"),
            0,
            "busy ones are kept"
        );
    }

    #[tokio::test]
    async fn a_response_read_at_a_trickle_is_abandoned() {
        // Small socket buffers on both ends (accepted sockets take the
        // listener's), so the body leaves at the reader's pace, not into
        // megabytes of kernel buffers at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = start_on(socket.listen(64).unwrap(), limits(1000, 8), "{}");
        // 8 MiB in 4 KiB chunks: a frame goes out whenever the reader
        // takes a few more bytes, so only the rate tells it apart.
        let chunks = (0..2048).map(|_| Bytes::from(vec![b' '; 4096])).collect();
        server
            .state
            .publisher
            .publish(crate::publish::Snapshot::new(
                Arc::default(),
                crate::engine::Generated {
                    config: crate::chunked::Chunked::new(chunks),
                    ..crate::engine::Generated::of_config("")
                },
                None,
            ));
        let mut trickle = stuck_reader(&server).await;
        wait_until("busy", || server.conns.counts() == (1, 0)).await;
        // 1 KiB every 20 ms: about 50 KiB a period, under MIN_PROGRESS,
        // but never nothing.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = trickle.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        wait_until("abandoned", || server.conns.counts().0 == 0).await;
        assert!(!reader.is_finished(), "the reader had it all");
        assert_eq!(closed_for(&server.metrics, "stalled"), 1);
        reader.abort();
    }

    #[tokio::test]
    async fn a_response_that_makes_no_progress_is_abandoned() {
        let server = start(limits(200, 8), &big_config()).await;
        let _stuck = stuck_reader(&server).await;
        wait_until("busy", || server.conns.counts() == (1, 0)).await;
        wait_until("abandoned", || server.conns.counts().0 == 0).await;
        assert_eq!(closed_for(&server.metrics, "stalled"), 1);
    }

    #[tokio::test]
    async fn two_thousand_idle_connections_do_not_stop_a_poll() {
        let files = raise_open_files_limit().unwrap();
        assert!(
            files >= 2000 * 2 + 600,
            "this test needs `ulimit -Hn` >= 4600, have {files}"
        );
        let server = start(limits(60_000, 512), "{\"http\":{}}").await;
        let etag = {
            let r = client()
                .get(format!("http://{}/traefik", server.addr))
                .send()
                .await
                .unwrap();
            r.headers()["etag"].to_str().unwrap().to_owned()
        };
        let mut idle = Vec::new();
        for _ in 0..2000 {
            match TcpStream::connect(server.addr).await {
                Ok(c) => idle.push(c),
                Err(e) => panic!("connection {} refused: {e}", idle.len()),
            }
        }
        // A slowloris variant: half of them start a request.
        for c in idle.iter_mut().step_by(2) {
            let _ = c.write_all(b"GET /traefik HTTP/1.1\r\nho").await;
        }
        for _ in 0..10 {
            assert_eq!(poll(&server, None).await, 200);
            assert_eq!(poll(&server, Some(&etag)).await, 304);
        }
        assert!(server.conns.counts().0 <= 512);
        assert!(closed_for(&server.metrics, "limit") >= 2000 - 512);
    }
}
