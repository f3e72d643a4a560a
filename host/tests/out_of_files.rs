//! The endpoint out of file descriptors (EMFILE), in a process of its own:
//! the open files limit is the whole process's, so no other test may share it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use traefik_openstack::engine::Generated;
use traefik_openstack::metrics::Metrics;
use traefik_openstack::publish::{Publisher, Snapshot};
use traefik_openstack::server::{AppState, Limits, serve};

fn open_files_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_open_files_limit(soft: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: open_files_limit().rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn open_connections(metrics: &Metrics) -> usize {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("traefik_openstack_http_connections "))
        .expect("the connections gauge")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState {
        publisher: Arc::new(Publisher::new(Duration::from_secs(30))),
        metrics: metrics.clone(),
        config_path: "/traefik".into(),
        token: None,
    });
    state.publisher.publish(Snapshot::new(
        Arc::default(),
        Generated::of_config("{}"),
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    // A connection limit far above the files limit: EMFILE comes first.
    let limits = Limits {
        request_timeout: Duration::from_secs(60),
        max_connections: 100_000,
        ..Limits::default()
    };
    tokio::spawn(serve(
        listener,
        state,
        limits,
        None,
        stop.clone().cancelled_owned(),
        Duration::from_secs(1),
    ));

    let saved = open_files_limit().rlim_cur;
    let in_use = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_open_files_limit(in_use + 64);
    // Use up every descriptor, then free one for a client: its connection
    // completes in the kernel's backlog, and the server's accept() fails
    // with EMFILE until descriptors come back.
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
        assert!(filler.len() < 1000, "the open files limit did not apply");
    }
    filler.pop();
    let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        open_connections(&metrics),
        0,
        "accepted without a descriptor"
    );

    // The accept loop keeps failing; it must wait between attempts, not spin.
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = (cpu_seconds() - cpu) / wall.elapsed().as_secs_f64();
    assert!(
        busy < 0.25,
        "the process used {busy:.2} CPU while out of file descriptors"
    );

    // Descriptors back: the server accepts the waiting connection and
    // answers it.
    drop(filler);
    set_open_files_limit(saved);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    waiting
        .write_all(b"GET /traefik HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), waiting.read_to_string(&mut answer))
        .await
        .expect("answered within 10 s of descriptors coming back")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
}
