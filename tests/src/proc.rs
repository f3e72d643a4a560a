//! Child processes that are always stopped: on drop, and for processes held
//! in statics (never dropped) when the test binary exits.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock, mpsc};
use std::time::{Duration, Instant};

static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static AT_EXIT: Once = Once::new();

extern "C" fn stop_all_at_exit() {
    let pids: Vec<i32> = LIVE
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    for &pid in &pids {
        // SAFETY: the pids are our own unreaped children: not reused yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    for &pid in &pids {
        while alive(pid) && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Runs `job` on a thread that never ends (see [`Proc::spawn_tied`]).
fn on_spawner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tied-process-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("starting the thread that forks tied processes");
        tx
    });
    let (tx, rx) = mpsc::sync_channel(1);
    spawner
        .send(Box::new(move || {
            let _ = tx.send(job());
        }))
        .expect("the spawner thread lives as long as the binary");
    rx.recv()
        .expect("the spawner thread lives as long as the binary")
}

fn alive(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: WNOHANG waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == 0
}

/// A started process; its stdout and stderr go to `log`.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Like [`Proc::spawn`], and the kernel sends the process SIGTERM when
    /// this test binary ends, even if it is killed outright (a CI timeout).
    ///
    /// The death signal follows the *thread* that forked, not the process,
    /// so every tied process is forked by one thread that lives as long as
    /// the binary. Forked by the caller, a process started from tokio's
    /// blocking pool (whose threads end after 10 s idle) was SIGTERMed in
    /// the middle of its case.
    pub fn spawn_tied(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (name, log) = (name.to_owned(), log.to_owned());
        on_spawner_thread(move || Self::spawn(&name, cmd, &log))
    }

    /// Starts `cmd` with its output appended to `log`. Python lab processes
    /// get `LAB_PARENT_PID` so they exit if this process dies unannounced.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        AT_EXIT.call_once(|| {
            // SAFETY: registering a plain extern "C" fn.
            unsafe { libc::atexit(stop_all_at_exit) };
        });
        let out = File::options().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("LAB_PARENT_PID", std::process::id().to_string());
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name} ({cmd:?}): {e}"))?;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.id() as i32);
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(exit status)` once the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// SIGKILL at once: the process gets no chance to clean up (a crash, an
    /// OOM kill); reaps it.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.child.id() as i32));
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps the process. Returns its
    /// exit status if it ended by itself, `None` if it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut ended = self.exited();
        if ended.is_none() {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            loop {
                ended = self.exited();
                if ended.is_some() {
                    break;
                }
                if start.elapsed() >= grace {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.child.id() as i32));
        ended
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// The last `lines` lines of a file ("" if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
