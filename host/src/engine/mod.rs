//! The route engine: wasmtime running route components.
//!
//! One `Engine` per process; each module is compiled once (or loaded from the
//! compile cache) and pre-instantiated once; every `generate` gets a fresh
//! `Store`, so no state leaks between runs and a trap poisons nothing. The
//! store links WASI but grants nothing through it (see `sandbox.rs`); any
//! other import a module declares is stubbed with a trap, so a module can
//! compute and print, and nothing else.

mod findings;
mod incremental;
mod join;
pub(crate) mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, InstancePre, Linker, Lower,
    types::ComponentItem,
};
use wasmtime::{Config, ResourceLimiter, Store, Trap};

use crate::chunked::Chunked;
use crate::config::EngineConfig;
use crate::wit::{self, Instance, Merged, Output, Part};
pub use findings::{Findings, Piece, Route};
pub use incremental::{Incremental, Work};
use sandbox::{Grants, RunState};
pub use sandbox::{LogLine, Stream};

/// The default route policy, built from `guest/` and embedded at build time.
pub const DEFAULT_MODULE: &[u8] = include_bytes!(env!("TRAEFIK_OPENSTACK_DEFAULT_MODULE"));

/// Epoch granularity: a runaway guest overshoots its budget by at most this.
const TICK: Duration = Duration::from_millis(10);

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a component wasmtime can compile.
    #[error("{module}: not a valid WebAssembly component: {reason}")]
    Compile {
        /// Where the module came from.
        module: String,
        /// What wasmtime said.
        reason: String,
    },
    /// A component, but not one of the route contract this host speaks.
    #[error("{module}: {reason}")]
    Contract {
        /// Where the module came from.
        module: String,
        /// What it exports or imports that does not fit.
        reason: String,
    },
    /// The module file could not be read.
    #[error("{module}: cannot read: {error}")]
    Read {
        /// The path.
        module: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Why a run of the route module gave no configuration.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// It ran past its time budget.
    #[error("route module exceeded its {0:?} time budget")]
    Timeout(Duration),
    /// It asked for more memory than its limit allows for this many
    /// instances.
    #[error(
        "route module ran out of memory on {instances} instances (limit {limit_mib} MiB: [engine] memory_limit_mib plus memory_per_1k_instances_mib)"
    )]
    OutOfMemory {
        /// The limit of this run, in MiB.
        limit_mib: u32,
        /// How many instances it ran on.
        instances: usize,
    },
    /// It trapped (a panic, an unreachable, a denied import).
    #[error("route module trapped: {0}")]
    Trap(String),
    /// It printed more than the capture holds.
    #[error("route module printed more than {} KiB to stdout and stderr", sandbox::OUTPUT_LIMIT / 1024)]
    OutputFlood,
    /// It refused the `[routes]` settings, with its reason.
    #[error("route module rejected its settings: {0}")]
    Settings(String),
    /// What it returned is not a Traefik configuration object.
    #[error("route module returned an invalid configuration: {0}")]
    InvalidOutput(String),
}

impl GenerateError {
    /// Fixed word for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "module_timeout",
            Self::OutOfMemory { .. } => "module_memory",
            Self::Trap(_) => "module_trap",
            Self::OutputFlood => "module_output_flood",
            Self::Settings(_) => "module_settings",
            Self::InvalidOutput(_) => "module_output",
        }
    }
}

/// A compiled, linked route module, ready to instantiate.
pub struct Module {
    pre: InstancePre<RunState<Limits>>,
    exports: Exports,
    /// Where it came from: a path, or "built-in".
    pub source: String,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// The contract version it exports, e.g. "0.1.0".
    pub version: String,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("source", &self.source)
            .field("digest", &self.digest)
            .field("version", &self.version)
            .field("phased", &self.is_phased())
            .finish()
    }
}

impl Module {
    /// Whether it exports the optional `phases` (route each instance, merge
    /// groups), which lets the host re-run only what changed.
    pub fn is_phased(&self) -> bool {
        self.exports.phases.is_some()
    }
}

/// Where the functions the host calls sit in the component, found once.
#[derive(Debug, Clone, Copy)]
struct Exports {
    generate: ComponentExportIndex,
    /// `phases.route` and `phases.merge`.
    phases: Option<(ComponentExportIndex, ComponentExportIndex)>,
}

/// What one call of the module gave, with what it printed and how long it
/// took (instantiation included).
#[derive(Debug)]
pub struct Ran<T> {
    /// Its return value.
    pub value: T,
    /// What the module printed.
    pub logs: Vec<LogLine>,
    /// Wall time of the call.
    pub duration: Duration,
}

/// A generate result that passed validation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The Traefik dynamic configuration, a JSON object, exactly as the
    /// module wrote it (its bytes are what Traefik hashes): in one chunk
    /// from `generate`, in the chunks the incremental cache holds and
    /// rewrites only where an entry changed otherwise (the served body is
    /// made of the same chunks).
    pub config: Chunked,
    /// What the module reported about the instances (diagnostics), and
    /// which routers each got (for `/api/instances`).
    pub findings: Findings,
    /// What the module printed during the run.
    pub logs: Vec<LogLine>,
    /// How long the module's work for it took, instantiation included;
    /// for an incremental run, with the pages routed as they came in.
    pub duration: Duration,
}

#[cfg(any(test, feature = "test-support", feature = "fuzzing"))]
impl Generated {
    /// A result that is only a configuration, for the tests of what
    /// serves and publishes it.
    pub fn of_config(config: &str) -> Self {
        Generated {
            config: config.into(),
            findings: Findings::default(),
            logs: Vec::new(),
            duration: Duration::ZERO,
        }
    }
}

/// Per-store limits that also remember whether they refused something, so
/// an out-of-memory trap is told apart from any other.
struct Limits {
    memory_bytes: usize,
    exceeded: bool,
}

/// Tables only hold function references; this is far beyond any real module.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.exceeded = true;
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements reached");
        }
        Ok(true)
    }
}

/// The wasmtime engine, its compile cache and its limits: one per process.
pub struct Engine {
    engine: wasmtime::Engine,
    budget: Budget,
    grants: Grants,
    cache_dir: Option<PathBuf>,
    /// How the last write to the compile cache went, until taken (see
    /// [`Engine::take_cache_write`]).
    cache_write: std::sync::Mutex<Option<Result<(), String>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// An engine with the configured limits and compile cache.
    pub fn new(cfg: &EngineConfig) -> anyhow::Result<Self> {
        Self::build(cfg, true)
    }

    /// An engine whose compiled code checks no deadline: the benches'
    /// reference for what the deadline costs (wasmtime checks the epoch at
    /// every function entry and loop header). Never for a real run: nothing
    /// stops a runaway module. Its compile cache entries are apart, since
    /// the cache key covers the engine's settings.
    #[cfg(feature = "test-support")]
    pub fn without_deadline_checks(cfg: &EngineConfig) -> anyhow::Result<Self> {
        Self::build(cfg, false)
    }

    fn build(cfg: &EngineConfig, deadline_checks: bool) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(deadline_checks)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = wasmtime::Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        // Deadlines are counted in epochs; one thread advances them for
        // every store of this engine.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })?;
        }

        Ok(Self {
            engine,
            budget: Budget {
                timeout: cfg.timeout,
                timeout_per_1k: cfg.timeout_per_1k_instances,
                memory_mib: cfg.memory_limit_mib,
                memory_per_1k_mib: cfg.memory_per_1k_instances_mib,
            },
            grants: Grants {
                clocks: cfg.host_clocks,
                random: cfg.host_random,
            },
            cache_dir: resolve_cache_dir(cfg.cache_dir.as_deref()),
            cache_write: std::sync::Mutex::new(None),
            ticker_stop,
        })
    }

    /// How the last write to the compile cache went, if one was tried since
    /// the last call: a full or read-only disk under the cache costs a
    /// compilation at every start, which `/readyz` and `/metrics` show.
    pub fn take_cache_write(&self) -> Option<Result<(), String>> {
        self.cache_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The module built into the binary.
    pub fn load_default(&self) -> Result<Module, LoadError> {
        self.load(DEFAULT_MODULE, "built-in")
    }

    /// Reads, compiles (or takes from the cache) and checks the module at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Module, LoadError> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            module: source.clone(),
            error,
        })?;
        self.load(&bytes, &source)
    }

    /// Compiles (or loads from the cache), checks the contract version and
    /// pre-instantiates.
    pub fn load(&self, bytes: &[u8], source: &str) -> Result<Module, LoadError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self
            .compile(bytes, &digest)
            .map_err(|e| LoadError::Compile {
                module: source.into(),
                reason: format!("{e:#}"),
            })?;
        let contract = |reason: String| LoadError::Contract {
            module: source.into(),
            reason,
        };
        let version = check_contract(&self.engine, &component).map_err(contract)?;
        let exports = find_exports(&self.engine, &component, &version).map_err(contract)?;

        let mut linker = Linker::<RunState<Limits>>::new(&self.engine);
        sandbox::link(&mut linker, &self.engine, &component)
            .map_err(|e| contract(format!("cannot link its imports: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| contract(format!("cannot link its imports: {e:#}")))?;
        self.typecheck(&pre, &exports)
            .map_err(|e| contract(format!("does not match the route-policy world: {e:#}")))?;
        Ok(Module {
            pre,
            exports,
            source: source.into(),
            digest,
            version,
        })
    }

    fn compile(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(digest)));
        // Read, not mmap: a file truncated under a mapping kills the process.
        if let Ok(cached) = std::fs::read(&path) {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash, into a directory only
            // this user can write (see `write_cache_entry`); wasmtime checks
            // the header and the compatibility of what it loads.
            match unsafe { Component::deserialize(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry")
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        let written = write_cache_entry(dir, &path, &compiled).map_err(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compile cache");
            format!("{}: {e}", dir.display())
        });
        *self.cache_write.lock().unwrap_or_else(|p| p.into_inner()) = Some(written);
        // SAFETY: the bytes were produced just above by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }

    /// Cache entries are only valid for the same module and a compatible
    /// engine (wasmtime version, target, settings).
    fn cache_key(&self, digest: &str) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{}-{:016x}", &digest[..32], h.finish())
    }

    /// Runs `generate` once in a fresh store with no capabilities, a time
    /// budget and a memory cap, and validates its output. Instances may be
    /// given as they are or behind `Arc`s (lowered without a copy).
    pub fn generate<I>(
        &self,
        module: &Module,
        settings: &str,
        instances: &[I],
    ) -> Result<Generated, GenerateError>
    where
        I: ComponentType + Lower,
    {
        let ran = self.call(module, instances.len(), |store, instance| {
            instance
                .get_typed_func::<(&str, &[I]), (Result<Output, String>,)>(
                    &mut *store,
                    &module.exports.generate,
                )?
                .call(&mut *store, (settings, instances))
                .map(|(r,)| r)
        })?;
        let output = ran.value;
        validate_config(&output.config)?;
        Ok(Generated {
            config: output.config.into(),
            findings: Findings::whole(output.diagnostics, output.routes),
            logs: ran.logs,
            duration: ran.duration,
        })
    }

    /// Phase one of a phased module: one part per instance, in order.
    ///
    /// # Panics
    /// If the module is not phased ([`Module::is_phased`]).
    pub fn route(
        &self,
        module: &Module,
        settings: &str,
        instances: &[Arc<Instance>],
    ) -> Result<Ran<Vec<Part>>, GenerateError> {
        let (route, _) = module.exports.phases.expect("route on a phased module");
        let ran = self.call(module, instances.len(), |store, instance| {
            instance
                .get_typed_func::<(&str, &[Arc<Instance>]), (Result<Vec<Part>, String>,)>(
                    &mut *store,
                    &route,
                )?
                .call(&mut *store, (settings, instances))
                .map(|(r,)| r)
        })?;
        if ran.value.len() != instances.len() {
            return Err(GenerateError::InvalidOutput(format!(
                "route gave {} parts for {} instances",
                ran.value.len(),
                instances.len()
            )));
        }
        if let Some((p, i)) = ran
            .value
            .iter()
            .zip(instances)
            .find(|(p, i)| *p.instance_id != *i.id)
        {
            return Err(GenerateError::InvalidOutput(format!(
                "route gave a part of {} where {} was expected",
                p.instance_id, i.id
            )));
        }
        Ok(ran)
    }

    /// Phase two of a phased module: one result per group, in order.
    ///
    /// # Panics
    /// If the module is not phased ([`Module::is_phased`]).
    pub fn merge(
        &self,
        module: &Module,
        settings: &str,
        groups: &[Vec<Part>],
    ) -> Result<Ran<Vec<Merged>>, GenerateError> {
        let (_, merge) = module.exports.phases.expect("merge on a phased module");
        let parts = groups.iter().map(Vec::len).sum();
        let ran = self.call(module, parts, |store, instance| {
            instance
                .get_typed_func::<(&str, &[Vec<Part>]), (Result<Vec<Merged>, String>,)>(
                    &mut *store,
                    &merge,
                )?
                .call(&mut *store, (settings, groups))
                .map(|(r,)| r)
        })?;
        if ran.value.len() != groups.len() {
            return Err(GenerateError::InvalidOutput(format!(
                "merge gave {} results for {} groups",
                ran.value.len(),
                groups.len()
            )));
        }
        Ok(ran)
    }

    /// One call in a fresh store with no capabilities, a time budget and a
    /// memory cap that follow `instances`; a trap, a timeout or an
    /// exhausted memory become a [`GenerateError`], and so does the
    /// module's own error (it refused the settings).
    fn call<T>(
        &self,
        module: &Module,
        instances: usize,
        call: impl FnOnce(
            &mut Store<RunState<Limits>>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<Ran<T>, GenerateError> {
        let started = Instant::now();
        let (timeout, memory_mib) = self.budget.for_instances(instances);
        let (mut store, capture) = self.store(memory_mib, Some(timeout));
        let result = module
            .pre
            .instantiate(&mut store)
            .and_then(|instance| call(&mut store, &instance));
        // Printed lines are logged whatever the outcome: they are how a
        // policy author finds out why a run trapped.
        let logs = capture.take_lines();
        for l in &logs {
            tracing::info!(target: "traefik_openstack::module", module = %module.source, stream = l.stream.as_str(), "{}", l.line);
        }
        let value = result
            .map_err(|e| {
                let exceeded = store.data().limits.exceeded;
                let budget = (timeout, memory_mib, instances);
                classify(e, exceeded, capture.overflowed(), budget)
            })?
            .map_err(GenerateError::Settings)?;
        Ok(Ran {
            value,
            logs,
            duration: started.elapsed(),
        })
    }

    /// A fresh store that grants nothing, with a memory cap and, when
    /// given, a deadline.
    fn store(
        &self,
        memory_mib: u32,
        timeout: Option<Duration>,
    ) -> (Store<RunState<Limits>>, sandbox::Capture) {
        let limits = Limits {
            memory_bytes: memory_mib as usize * 1024 * 1024,
            exceeded: false,
        };
        let (wasi, capture) = sandbox::context(self.grants);
        let state = RunState {
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        if let Some(timeout) = timeout {
            let ticks = timeout.as_nanos().div_ceil(TICK.as_nanos()).max(1) as u64;
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        (store, capture)
    }

    /// Instantiates the module once, within the base budget, and checks
    /// the types of the functions the host will call: a module that does
    /// not fit is refused when loaded, not at its first run.
    fn typecheck(
        &self,
        pre: &InstancePre<RunState<Limits>>,
        exports: &Exports,
    ) -> wasmtime::Result<()> {
        let (timeout, memory_mib) = self.budget.for_instances(0);
        let (mut store, _capture) = self.store(memory_mib, Some(timeout));
        let instance = pre.instantiate(&mut store)?;
        instance
            .get_typed_func::<(&str, &[Instance]), (Result<Output, String>,)>(
                &mut store,
                &exports.generate,
            )
            .map_err(|e| e.context("policy.generate"))?;
        if let Some((route, merge)) = &exports.phases {
            instance
                .get_typed_func::<(&str, &[Instance]), (Result<Vec<Part>, String>,)>(
                    &mut store, route,
                )
                .map_err(|e| e.context("phases.route"))?;
            instance
                .get_typed_func::<(&str, &[Vec<Part>]), (Result<Vec<Merged>, String>,)>(
                    &mut store, merge,
                )
                .map_err(|e| e.context("phases.merge"))?;
        }
        Ok(())
    }
}

/// Why a run failed, with the budget it had.
fn classify(
    error: wasmtime::Error,
    limit_exceeded: bool,
    output_overflowed: bool,
    (timeout, limit_mib, instances): (Duration, u32, usize),
) -> GenerateError {
    if limit_exceeded {
        return GenerateError::OutOfMemory {
            limit_mib,
            instances,
        };
    }
    if output_overflowed {
        return GenerateError::OutputFlood;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => GenerateError::Timeout(timeout),
        _ => GenerateError::Trap(format!("{error:#}")),
    }
}

/// A run's time and memory: a base, plus a share per instance, so that the
/// budget follows the work and a runaway module is still stopped.
#[derive(Debug, Clone, Copy)]
struct Budget {
    timeout: Duration,
    timeout_per_1k: Duration,
    memory_mib: u32,
    memory_per_1k_mib: u32,
}

/// All a 32-bit module can address.
const MAX_MEMORY_MIB: u64 = 4096;

impl Budget {
    /// The time and the memory (MiB) for a run on `n` instances.
    fn for_instances(&self, n: usize) -> (Duration, u32) {
        let n = n as u64;
        let extra_nanos = self.timeout_per_1k.as_nanos().saturating_mul(u128::from(n)) / 1000;
        let timeout = self.timeout.saturating_add(Duration::from_nanos(
            u64::try_from(extra_nanos).unwrap_or(u64::MAX),
        ));
        let memory = u64::from(self.memory_mib)
            .saturating_add(u64::from(self.memory_per_1k_mib).saturating_mul(n) / 1000);
        (timeout, memory.min(MAX_MEMORY_MIB) as u32)
    }
}

/// Finds the `policy` export and checks that this host speaks its version.
fn check_contract(engine: &wasmtime::Engine, component: &Component) -> Result<String, String> {
    let prefix = format!("{}/policy@", wit::PACKAGE);
    let ty = component.component_type();
    let mut exports = Vec::new();
    for (name, item) in ty.exports(engine) {
        if let Some(version) = name.strip_prefix(&prefix) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(format!("{name} is not an interface"));
            }
            return if accepts(version) {
                Ok(version.to_owned())
            } else {
                Err(format!(
                    "it speaks {}@{version}; this host accepts {}@{}.x (built against {})",
                    wit::PACKAGE,
                    wit::PACKAGE,
                    compatible_prefix(wit::VERSION),
                    wit::VERSION
                ))
            };
        }
        exports.push(name.to_owned());
    }
    Err(format!(
        "it does not export {}/policy (it exports: {})",
        wit::PACKAGE,
        if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        }
    ))
}

/// The functions the host calls: `policy.generate`, and `phases.route`
/// and `phases.merge` when the module exports an accepted `phases`.
fn find_exports(
    engine: &wasmtime::Engine,
    component: &Component,
    policy_version: &str,
) -> Result<Exports, String> {
    let function = |interface: &str, name: &str| -> Result<ComponentExportIndex, String> {
        let outer = component
            .get_export_index(None, interface)
            .ok_or_else(|| format!("{interface} is not exported"))?;
        component
            .get_export_index(Some(&outer), name)
            .ok_or_else(|| format!("{interface} has no function {name}"))
    };
    let policy = format!("{}/policy@{policy_version}", wit::PACKAGE);
    let generate = function(&policy, "generate")?;
    let prefix = format!("{}/phases@", wit::PACKAGE);
    let ty = component.component_type();
    let phased = ty.exports(engine).find_map(|(name, _)| {
        name.strip_prefix(&prefix)
            .map(|v| (name.to_owned(), v.to_owned()))
    });
    let phases = match phased {
        None => None,
        Some((name, version)) if accepts(&version) => {
            Some((function(&name, "route")?, function(&name, "merge")?))
        }
        Some((name, _)) => {
            return Err(format!(
                "it exports {name}; this host accepts {}/phases@{}.x",
                wit::PACKAGE,
                compatible_prefix(wit::VERSION)
            ));
        }
    };
    Ok(Exports { generate, phases })
}

/// Semver compatibility as Cargo reads it: before 1.0 the minor version is
/// the breaking one.
fn compatible_prefix(version: &str) -> &str {
    let mut parts = version.splitn(3, '.');
    let major = parts.next().unwrap_or("");
    if major == "0" {
        let end = 2 + parts.next().map_or(0, str::len);
        &version[..end]
    } else {
        major
    }
}

fn accepts(version: &str) -> bool {
    let ours = compatible_prefix(wit::VERSION);
    let theirs = compatible_prefix(version);
    ours == theirs && version[theirs.len()..].starts_with('.')
}

/// Checks that the output is one JSON object without building it: a
/// `serde_json::Value` of a 10k-instance configuration costs about ten times
/// its size in memory, at the moment the process peaks.
fn validate_config(config: &str) -> Result<(), GenerateError> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(config) {
        return Err(GenerateError::InvalidOutput(format!("not JSON: {e}")));
    }
    // Valid JSON: its first significant byte tells its kind.
    match config.trim_start().as_bytes().first() {
        Some(b'{') => Ok(()),
        first => Err(GenerateError::InvalidOutput(format!(
            "expected a JSON object, got {}",
            match first {
                Some(b'[') => "an array",
                Some(b'"') => "a string",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                _ => "a number",
            }
        ))),
    }
}

fn resolve_cache_dir(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.to_path_buf()),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("traefik-openstack")),
    }
}

/// Compiled code is executed as is, so the cache directory must not be
/// writable by anyone else; entries are written whole, then renamed.
fn write_cache_entry(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "{} is writable by others (mode {:o})",
                dir.display(),
                mode & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    // A full disk leaves a partial file behind: removed, not left to fill
    // the disk further at every start.
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_grow_with_the_instances_up_to_what_wasm32_addresses() {
        let b = Budget {
            timeout: Duration::from_secs(1),
            timeout_per_1k: Duration::from_millis(250),
            memory_mib: 512,
            memory_per_1k_mib: 48,
        };
        assert_eq!(b.for_instances(0), (Duration::from_secs(1), 512));
        assert_eq!(b.for_instances(500), (Duration::from_millis(1125), 536));
        assert_eq!(
            b.for_instances(30_000),
            (Duration::from_millis(8500), 512 + 1440)
        );
        assert_eq!(b.for_instances(100_000), (Duration::from_secs(26), 4096));
        assert_eq!(b.for_instances(usize::MAX).1, 4096);
    }

    #[test]
    fn a_cache_write_failing_is_reported_and_the_module_still_loads() {
        let dir = std::env::temp_dir().join(format!("to-cache-ro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // a file where the cache directory should be: every write fails
        std::fs::write(&dir, b"not a directory").unwrap();
        let engine = Engine::new(&EngineConfig {
            cache_dir: Some(dir.join("cache")),
            ..Default::default()
        })
        .unwrap();
        assert!(engine.take_cache_write().is_none());
        engine
            .load_default()
            .expect("the module loads without its cache");
        let err = engine.take_cache_write().unwrap().unwrap_err();
        assert!(err.contains("cache"), "{err}");
        assert!(engine.take_cache_write().is_none(), "taken once");
        std::fs::remove_file(&dir).unwrap();
        engine.load_default().unwrap();
        assert_eq!(engine.take_cache_write(), Some(Ok(())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_acceptance_follows_semver() {
        assert!(accepts("0.1.0"));
        assert!(accepts("0.1.7"));
        assert!(!accepts("0.2.0"));
        assert!(!accepts("0.10.0"));
        assert!(!accepts("1.1.0"));
        assert_eq!(compatible_prefix("0.1.0"), "0.1");
        assert_eq!(compatible_prefix("2.3.4"), "2");
    }

    #[test]
    fn output_must_be_a_json_object() {
        assert!(validate_config("{}").is_ok());
        assert!(matches!(
            validate_config("[1]"),
            Err(GenerateError::InvalidOutput(m)) if m.contains("an array")
        ));
        assert!(matches!(
            validate_config("{\"http\":"),
            Err(GenerateError::InvalidOutput(m)) if m.contains("not JSON")
        ));
        for (text, kind) in [
            (" \"x\"", "a string"),
            ("true", "a boolean"),
            ("null", "null"),
            ("-1", "a number"),
        ] {
            assert!(
                matches!(
                    validate_config(text),
                    Err(GenerateError::InvalidOutput(m)) if m.contains(kind)
                ),
                "{text}"
            );
        }
        assert!(validate_config(" {\"a\":[1,\"\\u00e9\"]} ").is_ok());
        assert!(
            matches!(validate_config("{} {}"), Err(GenerateError::InvalidOutput(m)) if m.contains("not JSON"))
        );
        assert!(
            matches!(validate_config("{\"a\":\"\\q\"}"), Err(GenerateError::InvalidOutput(m)) if m.contains("not JSON"))
        );
    }
}
