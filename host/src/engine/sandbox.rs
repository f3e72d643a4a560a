//! What a route module sees of the world: WASI that grants nothing.
//!
//! Toolchains other than plain Rust (componentize-py, componentize-js, Rust's
//! own `std`) import WASI even for a pure function, so a host that traps on
//! every import cannot run them. This links a real WASI implementation and
//! hands it an empty world: no preopened directories, no environment, no
//! arguments, no sockets or name lookup, stdin closed. Clocks and random are
//! fixed by default so that the same input gives the same bytes (Traefik
//! hashes the body to skip reloads); the operator may opt in to the host's.
//! What the module prints is captured, bounded, and handed back as log lines.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceTable, ResourceType};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// What a module may print per run, stdout and stderr together.
pub(crate) const OUTPUT_LIMIT: usize = 64 * 1024;

/// The instant a module's wall clock shows unless host clocks are granted:
/// 2000-01-01T00:00:00Z, recognisable in a policy's output as "not now".
const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// Seed of the random sources unless host random is granted.
const FIXED_SEED: u64 = 0x7472_6165_6669_6b21;

/// What the operator grants beyond nothing (`[engine] host_clocks`,
/// `host_random`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Grants {
    pub(crate) clocks: bool,
    pub(crate) random: bool,
}

/// The WASI context of one run, and the capture of its output.
pub(crate) fn context(grants: Grants) -> (WasiCtx, Capture) {
    let capture = Capture::default();
    let mut b = WasiCtxBuilder::new();
    b.stdout(capture.stream(Stream::Stdout))
        .stderr(capture.stream(Stream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if !grants.clocks {
        b.wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock);
    }
    if !grants.random {
        b.secure_random(rand::rngs::StdRng::seed_from_u64(FIXED_SEED))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(FIXED_SEED ^ 1))
            .insecure_random_seed(u128::from(FIXED_SEED));
    }
    (b.build(), capture)
}

/// Links WASI 0.2 into `linker`, and a trap for every other import of
/// `component` (wasi:http, say), so that a module which merely imports
/// something it never calls still loads.
///
/// wasmtime's `define_unknown_imports_as_traps` cannot be used after WASI:
/// it re-opens `wasi:cli/stdout@0.2.6` by its exact name, and a stub there
/// wins over WASI's own `@0.2.x` definition.
pub(crate) fn link<L: Send + 'static>(
    linker: &mut Linker<RunState<L>>,
    engine: &wasmtime::Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    let ty = component.component_type();
    // Resources WASI defines (wasi:io's streams, say) may be re-exported by
    // a foreign interface (wasi:http/types uses them): those must stay
    // WASI's, not become stubs of their own type.
    let wasi_resources: Vec<ResourceType> = ty
        .imports(engine)
        .filter(|(name, _)| is_wasi_p2(name))
        .filter_map(|(_, item)| match item.ty {
            ComponentItem::ComponentInstance(i) => Some(i),
            _ => None,
        })
        .flat_map(|i| {
            i.exports(engine)
                .filter_map(|(_, e)| match e.ty {
                    ComponentItem::Resource(r) => Some(r),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, item) in ty.imports(engine) {
        if is_wasi_p2(name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut l = linker.instance(name)?;
                for (export, item) in instance.exports(engine) {
                    if let ComponentItem::Resource(r) = &item.ty
                        && wasi_resources.contains(r)
                    {
                        continue;
                    }
                    stub(&mut l, name, export, &item.ty)?;
                }
            }
            ty => stub(&mut linker.root(), "", name, &ty)?,
        }
    }
    Ok(())
}

/// Interfaces `add_to_linker_sync` provides: WASI 0.2's command world.
fn is_wasi_p2(import: &str) -> bool {
    const PACKAGES: [&str; 6] = [
        "wasi:cli/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
    ];
    PACKAGES.iter().any(|p| import.starts_with(p))
        && import
            .split_once('@')
            .is_some_and(|(_, version)| version.starts_with("0.2."))
}

fn stub<T: 'static>(
    linker: &mut LinkerInstance<'_, T>,
    interface: &str,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(_) => {
            let what = if interface.is_empty() {
                name.to_owned()
            } else {
                format!("{interface}#{name}")
            };
            linker.func_new(name, move |_, _, _, _| {
                wasmtime::bail!("the host does not provide `{what}` to route modules")
            })
        }
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))
        }
        // Types need no definition; anything else fails to link, with
        // wasmtime's own message naming it.
        _ => Ok(()),
    }
}

/// Store data of one run: WASI state plus the engine's limits.
pub(crate) struct RunState<L> {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: L,
}

impl<L: Send> wasmtime_wasi::WasiView for RunState<L> {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Which stream a line was printed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// One line a module printed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Where it was printed.
    pub stream: Stream,
    /// The line, without its newline.
    pub line: String,
}

/// stdout and stderr of one run, sharing one budget of [`OUTPUT_LIMIT`]
/// bytes. A write past the budget traps the module: a policy that prints
/// megabytes is broken, and truncating silently would hide that.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    written: usize,
    overflowed: bool,
    lines: Vec<LogLine>,
    /// The unfinished last line of each stream.
    partial: [Vec<u8>; 2],
}

impl Capture {
    fn stream(&self, stream: Stream) -> CaptureStream {
        CaptureStream {
            capture: self.clone(),
            stream,
        }
    }

    /// Whether the module tried to print past the budget.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The lines printed so far, unfinished last lines included.
    pub(crate) fn take_lines(&self) -> Vec<LogLine> {
        let mut c = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut c.partial[stream as usize]);
            if !rest.is_empty() {
                push_line(&mut c.lines, stream, &rest);
            }
        }
        std::mem::take(&mut c.lines)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // A poisoned capture only means a panic elsewhere; its text is fine.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, stream: Stream, bytes: &[u8]) -> Result<(), StreamError> {
        let mut c = self.lock();
        if c.written + bytes.len() > OUTPUT_LIMIT {
            c.overflowed = true;
            return Err(StreamError::trap(&format!(
                "the module printed more than {} KiB",
                OUTPUT_LIMIT / 1024
            )));
        }
        c.written += bytes.len();
        let c = &mut *c;
        let partial = &mut c.partial[stream as usize];
        partial.extend_from_slice(bytes);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            push_line(&mut c.lines, stream, &line[..end]);
        }
        Ok(())
    }
}

fn push_line(lines: &mut Vec<LogLine>, stream: Stream, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    lines.push(LogLine {
        stream,
        line: text.trim_end_matches('\r').to_owned(),
    });
}

#[derive(Clone)]
struct CaptureStream {
    capture: Capture,
    stream: Stream,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.capture.write(self.stream, &bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always ready; the budget is enforced on write so that the overflow
        // is reported as such instead of as a closed stream.
        Ok(OUTPUT_LIMIT)
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.capture
                .write(self.stream, buf)
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::other("module output limit reached")),
        )
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_writes_and_streams_stay_apart() {
        let c = Capture::default();
        c.write(Stream::Stdout, b"hel").unwrap();
        c.write(Stream::Stderr, b"oops\r\n").unwrap();
        c.write(Stream::Stdout, b"lo\nwor").unwrap();
        let lines = c.take_lines();
        let got: Vec<_> = lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            got,
            [
                (Stream::Stderr, "oops"),
                (Stream::Stdout, "hello"),
                (Stream::Stdout, "wor")
            ]
        );
    }

    #[test]
    fn the_budget_is_shared_and_overflow_is_remembered() {
        let c = Capture::default();
        c.write(Stream::Stdout, &vec![b'a'; OUTPUT_LIMIT - 1])
            .unwrap();
        assert!(!c.overflowed());
        assert!(c.write(Stream::Stderr, b"bc").is_err());
        assert!(c.overflowed());
        c.write(Stream::Stderr, b"d").unwrap();
    }
}
