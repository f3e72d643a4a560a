//! `traefik-openstack`: serve | render | inventory | test | check.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use traefik_openstack::config::Config;
use traefik_openstack::engine::{Engine, Module};
use traefik_openstack::inventory::Inventory;
use traefik_openstack::metrics::Metrics;
use traefik_openstack::openstack::OpenStack;
use traefik_openstack::publish::Publisher;
use traefik_openstack::publish::kv::KvWriter;
use traefik_openstack::server::{self, AppState};
use traefik_openstack::sync::{self, SyncLoop};
use traefik_openstack::wit;
use traefik_openstack::{offline, policy_test};

#[derive(Parser)]
#[command(version, about = "Traefik HTTP provider for OpenStack instances")]
struct Cli {
    /// Configuration file (TOML); every key is optional.
    #[arg(long, short, global = true, env = "TRAEFIK_OPENSTACK_CONFIG")]
    config: Option<PathBuf>,
    /// Route module (.wasm component) replacing the built-in one.
    #[arg(long, global = true, env = "TRAEFIK_OPENSTACK_MODULE")]
    module: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TRAEFIK_OPENSTACK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: keep the configuration current and serve it to Traefik.
    Serve,
    /// Fetch once, generate once: configuration on stdout, diagnostics on stderr.
    Render {
        /// Run on the instances in this file instead of a cloud (`-` is
        /// stdin): the output of `inventory`, or a Nova servers/detail body.
        #[arg(long, value_name = "FILE")]
        instances: Option<PathBuf>,
    },
    /// Print the cloud's instances exactly as the route module receives them.
    Inventory {
        /// Replace names, ids, addresses and metadata values with
        /// consistent stand-ins, so the file can be shared.
        #[arg(long)]
        redact: bool,
    },
    /// Run the route module on golden cases (directories with
    /// instances.json, settings.json and expected.json).
    Test {
        /// Rewrite each case's expected.json with what the module makes.
        #[arg(long)]
        update: bool,
        /// Case directories, or directories holding them.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Validate the configuration file and the route module without contacting OpenStack.
    Check,
    /// Exit 0 when the running sidecar (this configuration's `[server]
    /// listen`) answers `/healthz`, 1 otherwise: a container health check
    /// for images without a shell or an HTTP client.
    Healthcheck,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// See `traefik_openstack::memory` for why jemalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the
/// environment overrides them); measured at 10k and 100k instances (see
/// bench/NOTES.md):
/// - one arena: the engine's workers lift output that outlives them, and
///   pieces scattered over an arena per thread stay resident;
/// - free pages go back within a second (jemalloc's background thread),
///   not after ten seconds, or a first run shows its peak for that long;
///   nor at once: handing each page back as it emptied was 2,500
///   `madvise` calls in a start at 10k instances, each a TLB shootdown on
///   every core, and a third of the start-up's CPU time in the kernel
///   (OpenStack's answer to the first configuration 360-420 -> 240-270 ms,
///   steady VmRSS unchanged);
/// - threads cache freed blocks up to 1 KiB, not 32: the larger caches
///   held a few MiB per thread for no measurable speed.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8] =
    b"narenas:1,tcache_max:1024,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(run(cli));
    // Blocking tasks still running get a second: a state file write ends in
    // milliseconds, a module compile that a SIGTERM cut short is not
    // waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file or journald would keep
    // the escape codes as text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The error and its causes, each printed once: our errors name their cause
/// in their own message (so that a log line of one error is complete), and
/// also return it as their `source()`; a cause whose text the message
/// already holds is not repeated.
fn report(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_file = cli.config.clone();
    let mut config = Config::load(config_file.as_deref())?;
    if let Some(module) = cli.module {
        config.engine.module = Some(module);
    }
    match cli.command {
        Command::Serve => serve(config, config_file).await.map(|()| ExitCode::SUCCESS),
        Command::Render { instances } => render(config, instances).await,
        Command::Inventory { redact } => inventory(config, redact).await,
        // A module's WASI calls block on a runtime of their own: they run on
        // blocking threads, never on the async workers.
        Command::Test { update, dirs } => blocking(move || test(config, &dirs, update)).await,
        Command::Check => blocking(move || check(config)).await,
        Command::Healthcheck => healthcheck(&config).await,
    }
}

async fn healthcheck(config: &Config) -> anyhow::Result<ExitCode> {
    let mut addr = config.server.listen;
    // A sidecar listening on every address is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if config.server.tls().is_some() {
        // A TLS endpoint may require a client certificate this command does
        // not have: that it accepts connections is what can be checked.
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        return Ok(match connected {
            Ok(Ok(_)) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("{addr}: {e}");
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!("{addr}: no connection within 3s");
                ExitCode::FAILURE
            }
        });
    }
    let url = format!("http://{addr}/healthz");
    let answer = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await;
    Ok(match answer {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url}: HTTP {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {}", report(&e.into()));
            ExitCode::FAILURE
        }
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn load_module(engine: &Engine, config: &Config) -> anyhow::Result<Module> {
    Ok(match &config.engine.module {
        Some(path) => engine.load_file(path)?,
        None => engine.load_default()?,
    })
}

async fn serve(config: Config, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(Engine::new(&config.engine)?);
    let clouds = clouds(&config, &metrics)?;
    let token = match &config.server.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let slowest = config.openstack.iter().map(|o| o.refresh_interval).max();
    let publisher = Arc::new(Publisher::new(slowest.unwrap_or_default() * 3));
    // Served at once, before OpenStack answers (or the module compiles).
    if let Some(path) = &config.publish.state_file {
        sync::recover_state(path, config.publish.max_stale, &publisher, &metrics);
    }
    let kv_writer = KvWriter::new(&config.publish, publisher.clone(), metrics.clone())
        .map_err(anyhow::Error::msg)?;
    let mut limits = server::Limits::of(&config.server);
    match server::raise_open_files_limit() {
        Ok(files) => {
            let room = files.saturating_sub(server::RESERVED_FILES).max(2);
            if room < limits.max_connections as u64 {
                // Past the open files limit accept() fails (EMFILE) before a
                // waiting connection can be closed for the new one, and
                // Traefik's poll would wait behind the flood: keep the
                // connection limit below it.
                tracing::warn!(
                    open_files_limit = files,
                    max_connections = limits.max_connections,
                    lowered_to = room,
                    "server.max_connections does not fit the open files limit ({} kept for \
                     the rest); raise the limit (LimitNOFILE=, ulimit -n) or lower max_connections",
                    server::RESERVED_FILES
                );
                limits.max_connections = room as usize;
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the open files limit (RLIMIT_NOFILE)"),
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let tls = match config.server.tls() {
        Some(files) => {
            let tls = traefik_openstack::tls::Tls::load(files).context("server TLS")?;
            tls.clone().watch();
            Some(tls)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        listen = %listener.local_addr()?,
        path = %config.server.path,
        scheme,
        client_certificates = config.server.client_ca_file.is_some(),
        "serving Traefik configuration"
    );

    let shutdown = CancellationToken::new();
    let reload = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(signals(shutdown.clone(), reload.clone()));

    let state = Arc::new(AppState {
        publisher: publisher.clone(),
        metrics: metrics.clone(),
        config_path: config.server.path.clone(),
        token,
    });
    let mut server = tokio::spawn(server::serve(
        listener,
        state,
        limits,
        tls,
        shutdown.clone().cancelled_owned(),
        std::time::Duration::from_secs(5),
    ));
    // The server answers (/healthz yes, /readyz not yet) while a large
    // module compiles, off the async runtime. A SIGTERM meanwhile stops at
    // once: compiling a Python policy takes a minute on a busy machine, and
    // the compile is left to the process's exit (see `main`).
    let module_stamp = config.engine.module.as_deref().map(sync::FileStamp::of);
    let load = {
        let (engine, config) = (engine.clone(), config.clone());
        tokio::task::spawn_blocking(move || load_module(&engine, &config))
    };
    let module = tokio::select! {
        loaded = load => loaded?,
        () = shutdown.cancelled() => {
            tracing::info!("stopped before the route module was compiled");
            server.await??;
            return Ok(());
        }
    };
    let module = match module {
        Ok(module) => Arc::new(module),
        Err(e) => {
            shutdown.cancel();
            let _ = server.await;
            return Err(e);
        }
    };
    sync::report_cache_write(&engine, &publisher, &metrics);
    tracing::info!(module = %sync::describe(&module), "route module loaded");
    let sync = SyncLoop {
        incremental: Default::default(),
        engine,
        module,
        module_path: config.engine.module.clone(),
        module_stamp,
        config_file: config_file.clone(),
        settings: config.routes_json().into(),
        clouds,
        publisher,
        metrics,
        max_stale: config.publish.max_stale,
        state_file: config.publish.state_file.clone(),
        reload,
        kept: Default::default(),
    };
    let mut sync_task = tokio::spawn(sync.run(shutdown.clone().cancelled_owned()));
    // The stores are written beside the loop: a slow one holds up nothing.
    let kv_task = kv_writer.map(|w| tokio::spawn(w.run(shutdown.clone().cancelled_owned())));
    tokio::select! {
        served = &mut server => served??,
        // The loop ends only at a shutdown. Ending before one is a bug (a
        // panic): serving on would route what nothing refreshes, or
        // withdraws after max_stale, for as long as the process lives.
        ended = &mut sync_task => {
            if !shutdown.is_cancelled() {
                shutdown.cancel();
                let _ = server.await;
                // The writer gives the lease up, so that a standby takes
                // over without waiting out the TTL.
                if let Some(t) = kv_task {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
                }
                let why = match ended {
                    Err(e) if e.is_panic() => "it panicked".to_owned(),
                    Err(e) => e.to_string(),
                    Ok(()) => "it ended".to_owned(),
                };
                anyhow::bail!("the sync loop stopped before a shutdown ({why}); stopping");
            }
            server.await??;
        }
    }
    if !sync_task.is_finished() {
        let _ = sync_task.await;
    }
    if let Some(t) = kv_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A client and an inventory per `[openstack]` entry, each named once.
fn clouds(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Vec<sync::Cloud>> {
    let mut clouds: Vec<sync::Cloud> = Vec::new();
    for cfg in config.openstack.iter() {
        let client = OpenStack::from_config(cfg, metrics.clone())?;
        let name = sync::Cloud::name_of(cfg, &client);
        anyhow::ensure!(
            clouds.iter().all(|c| c.name != name),
            "[[openstack]]: two entries are called {name:?}: give them distinct `name`s"
        );
        tracing::info!(cloud = %name, openstack = %client.describe(), "OpenStack client ready");
        clouds.push(sync::Cloud::new(
            name,
            Inventory::new(client, cfg),
            cfg.refresh_interval,
        ));
    }
    Ok(clouds)
}

/// SIGTERM/SIGINT stop; SIGHUP reloads the module.
async fn signals(shutdown: CancellationToken, reload: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload.notify_one(),
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("server.token_file {}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "server.token_file {}: the file is empty",
        path.display()
    );
    Ok(token)
}

async fn render(config: Config, file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let instances = match file {
        Some(file) => Arc::new(
            offline::read_instances(&file)?
                .into_iter()
                .map(Arc::new)
                .collect(),
        ),
        None => fetch(&config).await?,
    };
    blocking(move || generate_and_print(&config, &instances)).await
}

fn generate_and_print(
    config: &Config,
    instances: &[Arc<wit::Instance>],
) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(&config.engine)?;
    let module = load_module(&engine, config)?;
    let generated = engine
        .generate(&module, &config.routes_json(), instances)
        .with_context(|| module.source.clone())?;
    for d in generated.findings.diagnostics() {
        eprintln!("{}: {}: {}", level(d.level), d.instance_id, d.message);
    }
    println!("{}", generated.config);
    Ok(ExitCode::SUCCESS)
}

/// One full listing of each configured cloud, merged as `serve` merges them.
async fn fetch(config: &Config) -> anyhow::Result<traefik_openstack::inventory::Instances> {
    let mut lists = Vec::new();
    for cloud in clouds(config, &Arc::new(Metrics::new()))? {
        let name = cloud.name.clone();
        let mut inventory = cloud.into_inventory();
        inventory
            .refresh()
            .await
            .with_context(|| format!("cloud {name}"))?;
        lists.push(inventory.instances());
    }
    Ok(sync::merge_instances(&lists))
}

async fn inventory(config: Config, redact: bool) -> anyhow::Result<ExitCode> {
    let mut instances: Vec<wit::Instance> = Arc::unwrap_or_clone(fetch(&config).await?)
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect();
    if redact {
        let prefix = config
            .routes
            .get("label_prefix")
            .and_then(|v| v.as_str())
            .unwrap_or("traefik");
        offline::redact(&mut instances, prefix);
    }
    println!("{}", offline::inventory_json(&instances));
    Ok(ExitCode::SUCCESS)
}

fn test(config: Config, dirs: &[PathBuf], update: bool) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(&config.engine)?;
    let module = load_module(&engine, &config)?;
    let cases = policy_test::discover(dirs).map_err(anyhow::Error::msg)?;
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let name = case.display();
        match policy_test::run_case(&engine, &module, case, update) {
            policy_test::Outcome::Passed => {
                passed += 1;
                println!("ok      {name}");
            }
            policy_test::Outcome::Updated => {
                passed += 1;
                println!("updated {name}");
            }
            policy_test::Outcome::Failed(why) => {
                failed += 1;
                println!("FAILED  {name}\n{why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(config: Config) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(&config.engine)?;
    let module = load_module(&engine, &config)?;
    println!("module: {}", sync::describe(&module));
    // The module validates its own settings; run it on nothing and on a
    // sample so bad settings and broken modules show up here, not at 3 a.m.
    let settings = config.routes_json();
    let source = || module.source.clone();
    engine
        .generate::<traefik_openstack::wit::Instance>(&module, &settings, &[])
        .with_context(source)?;
    let generated = engine
        .generate(&module, &settings, &[sample_instance()])
        .with_context(source)?;
    println!(
        "routes settings: ok ({} bytes of configuration for a sample instance)",
        generated.config.len()
    );
    for d in generated.findings.diagnostics() {
        println!("  sample: {}: {}", level(d.level), d.message);
    }
    // Reads the stores' password and TLS files, without contacting them.
    let stores = KvWriter::new(
        &config.publish,
        Arc::new(Publisher::new(std::time::Duration::from_secs(1))),
        Arc::new(Metrics::new()),
    );
    match stores {
        Ok(Some(w)) => println!(
            "publish: {}",
            w.status().keys().copied().collect::<Vec<_>>().join(", ")
        ),
        Ok(None) => {}
        Err(e) => {
            println!("publish: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    for cfg in config.openstack.iter() {
        match OpenStack::from_config(cfg, Arc::new(Metrics::new())) {
            Ok(client) => println!(
                "openstack {}: {}",
                sync::Cloud::name_of(cfg, &client),
                client.describe()
            ),
            Err(e) => {
                println!("openstack: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    println!("configuration ok");
    Ok(ExitCode::SUCCESS)
}

fn level(level: wit::Level) -> &'static str {
    match level {
        wit::Level::Info => "info",
        wit::Level::Warning => "warning",
        wit::Level::Error => "error",
    }
}

fn sample_instance() -> wit::Instance {
    wit::Instance {
        id: "00000000-0000-4000-8000-000000000001".into(),
        name: "sample-vm".into(),
        status: "ACTIVE".into(),
        project_id: "sample-project".into(),
        user_id: "sample-user".into(),
        cloud: "".into(),
        region: "".into(),
        availability_zone: Some("nova".into()),
        flavor_name: Some("m1.small".into()),
        image_id: None,
        created: "2026-01-01T00:00:00Z".into(),
        updated: "2026-01-01T00:00:00Z".into(),
        description: None,
        metadata: Default::default(),
        tags: vec![],
        addresses: vec![
            wit::Address {
                network: "private".into(),
                ip: "10.0.0.10".into(),
                version: 4,
                kind: wit::AddressKind::Fixed,
                mac: None,
            },
            wit::Address {
                network: "private".into(),
                ip: "203.0.113.10".into(),
                version: 4,
                kind: wit::AddressKind::Floating,
                mac: None,
            },
        ],
    }
}
