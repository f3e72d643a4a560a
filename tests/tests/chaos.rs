//! Chaos against the real lab (issue 12, items 4 and 5): the sidecar
//! SIGKILLed mid-listing, the Keystone token revoked between two pages,
//! Nova failing on page 3 of 5, Nova answering 200 with truncated JSON,
//! Nova's `Date` jumping back 10 minutes and forward a day, a full disk
//! under the compile cache.
//!
//! Every case: a real Traefik polls the host throughout and a
//! [`RouteWatch`] checks it beside the case (routes never emptied, lost or
//! wrong; VMs reach their own backends); the fault shows in `/readyz` and
//! `/metrics`; the host recovers by itself (a VM added afterwards is
//! routed). And every case runs its host at trace level with a bearer
//! token, and ends by searching everything the host showed for its secrets
//! ([`assert_no_secrets`]); `secrets_at_trace_level` does so for a host
//! authenticating with an application credential, through the faults.
//!
//! The faults are the lab's shared proxy's, so the cases run one at a time
//! (`Lab::exclusive`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use traefik_openstack_e2e::faults::{RouteWatch, wait_fault_reported, wait_ready};
use traefik_openstack_e2e::host::{HostOptions, metric_sum};
use traefik_openstack_e2e::lab::{Lab, ServerSpec};
use traefik_openstack_e2e::nova::{application_credential, revoke_token};
use traefik_openstack_e2e::proxy::{Hook, HttpFaults};
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::secrets::{Secrets, assert_no_secrets};
use traefik_openstack_e2e::{REFRESH_INTERVAL, eventually, freshness, shared_lab};

type R = anyhow::Result<()>;

/// The hosts' log filter: everything at trace, but for the code generator's
/// own chatter (it sees wasm, never a secret, and would write hundreds of
/// MiB while compiling a module).
const TRACE: &str = "trace,wasmtime_internal_cranelift=info,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info";

/// VMs in the listing cases, and Nova's page size: 5 pages (and Nova's
/// empty 6th, as the 5th is full).
const VMS: u8 = 10;
const PAGE_SIZE: u32 = 2;

/// How long a fault lasts once the host has reported it: several refreshes
/// and Traefik polls.
const HOLD: Duration = Duration::from_secs(5);

/// After a fault: the host may be backing off.
fn recovery() -> Duration {
    freshness() + Duration::from_secs(20)
}

fn vm_name(n: u8) -> String {
    format!("vm-{n:02}")
}

/// A bearer token no one could guess or find by accident.
fn bearer(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("bearer-{case}-{}-{nanos:x}", std::process::id())
}

/// A case's world: `vms` routed VMs (`vm-01`...), a host at trace level
/// with a bearer token and `tweak`ed options, Traefik routing them all.
async fn start(
    lab: &'static Lab,
    name: &str,
    vms: u8,
    tweak: impl FnOnce(&mut HostOptions),
) -> anyhow::Result<(Scenario<'static>, Vec<String>)> {
    let mut s = Scenario::new(lab, name).await?;
    let names: Vec<String> = (1..=vms).map(vm_name).collect();
    let mut specs = Vec::new();
    for (n, v) in (1..).zip(&names) {
        specs.push(s.vm(v, n)?);
    }
    s.seed(&specs)?;
    let mut opts = s.options(s.plain_routes());
    opts.token = Some(bearer(name));
    opts.log = Some(TRACE.into());
    tweak(&mut opts);
    s.start(&opts)?;
    for v in &names {
        s.wait_reaches(&Scenario::fqdn(v), v).await;
    }
    Ok((s, names))
}

/// Paged full listings: `PAGE_SIZE`, and every refresh a full one.
fn paged(o: &mut HostOptions) {
    o.page_size = Some(PAGE_SIZE);
    o.full_sync_interval = Some(REFRESH_INTERVAL);
}

/// VM `spec` (made by `Scenario::vm` beforehand) added now is routed in
/// time: the host recovered by itself, or does not miss a change.
async fn added(s: &Scenario<'_>, watch: &RouteWatch, spec: &ServerSpec) -> R {
    let name = spec.name.as_str();
    watch.allow(name);
    s.seed(std::slice::from_ref(spec))?;
    s.wait_reaches_within(&Scenario::fqdn(name), name, recovery())
        .await;
    watch.keep(s, name).await?;
    Ok(())
}

/// The routes now, checked: one router per VM.
async fn routes_of(s: &Scenario<'_>, vms: &[String]) -> anyhow::Result<RouteWatch> {
    let routes = s.traefik().router_rules().await?;
    for v in vms {
        let fqdn = Scenario::fqdn(v);
        assert!(
            routes.values().any(|r| r.contains(&fqdn)),
            "no router for {v}: {routes:#?}"
        );
    }
    // every VM reaches its backend; the watch checks a few of them
    let watched: Vec<&str> = vms.iter().take(3).map(String::as_str).collect();
    Ok(RouteWatch::new(routes, &watched))
}

/// One listing fault: with `faults` set, `/readyz` says `readyz_says` and
/// `/metrics` counts refreshes failed for `reason`, Traefik keeps every
/// route; cleared, the host recovers.
async fn listing_fault(name: &str, faults: HttpFaults, reason: &str, readyz_says: &str) -> R {
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let (mut s, vms) = start(lab, name, VMS, paged).await?;
    let after = s.vm("after", VMS + 1)?;
    let watch = routes_of(&s, &vms).await?;
    let host = s.host();
    watch
        .around(&s, name, async {
            let before = host.metrics().await?;
            lab.proxy.set_faults(faults);
            let body = wait_fault_reported(host, &before, Some(reason), readyz_says, name).await;
            eprintln!("{name}: /readyz during the fault: {body}");
            tokio::time::sleep(HOLD).await;
            // still failing, still serving the last good configuration
            let (st, _) = host.readyz().await?;
            assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{name}");
            let (st, _) = host.get("/traefik").await?;
            assert_eq!(st, StatusCode::OK, "{name}: /traefik during the fault");
            lab.proxy.set_faults(HttpFaults::default());
            added(&s, &watch, &after).await?;
            wait_ready(host, recovery(), name).await;
            anyhow::Ok(())
        })
        .await?;
    assert_no_secrets(&s, &Secrets::default(), &[], name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_fails_on_page_3_of_5() -> R {
    listing_fault(
        "chaos-page3-500",
        HttpFaults {
            fail_page: Some(3),
            ..Default::default()
        },
        "http_5xx",
        "HTTP 500",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_answers_200_with_truncated_json() -> R {
    listing_fault(
        "chaos-truncated",
        HttpFaults {
            truncate_page: Some(3),
            ..Default::default()
        },
        "malformed",
        "servers page",
    )
    .await
}

/// Revokes the token of the request through Keystone's API (admin token),
/// from the proxy's thread, before the request goes on to Nova: Nova then
/// really refuses it (the lab's Nova caches no token validation).
fn revoking_hook(
    lab: &'static Lab,
    times: u32,
    revoked: Arc<std::sync::Mutex<Vec<String>>>,
) -> Hook {
    let fired = AtomicU32::new(0);
    Arc::new(move |token: &str| {
        if fired.fetch_add(1, Ordering::SeqCst) >= times || token.is_empty() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the hook");
        match rt.block_on(revoke_token(lab, token)) {
            Ok(()) => revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(token.to_owned()),
            Err(e) => eprintln!("the hook could not revoke the token: {e:#}"),
        }
    })
}

fn requests_401(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "traefik_openstack_openstack_requests_total",
        &[("status", "401")],
    )
    .unwrap_or(0.0)
}

fn ok_refreshes(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "traefik_openstack_refreshes_total",
        &[("outcome", "ok")],
    )
    .unwrap_or(0.0)
}

/// The token dies between page 1 and page 2 of a listing (revoked in
/// Keystone, so Nova answers 401): the host gets a new one and finishes the
/// listing without a failed refresh; `/metrics` counts the 401. Then every
/// token dies between the pages, the retry's too: the refreshes fail with
/// `auth`, which `/readyz` and `/metrics` show, and routes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expires_between_pages() -> R {
    let name = "chaos-token";
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let (mut s, vms) = start(lab, name, VMS, paged).await?;
    let after = s.vm("after", VMS + 1)?;
    let watch = routes_of(&s, &vms).await?;
    let host = s.host();
    watch
        .around(&s, name, async {
            let revoked = Arc::new(std::sync::Mutex::new(Vec::new()));
            let before = host.metrics().await?;
            lab.proxy.set_faults(HttpFaults {
                before_page: Some((2, revoking_hook(lab, 1, revoked.clone()))),
                ..Default::default()
            });
            let old = eventually(
                "the token revoked between two pages",
                freshness(),
                || async {
                    let r = revoked.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    r.first().cloned().ok_or_else(|| "not yet".to_string())
                },
            )
            .await;
            // the listing goes on with a new token, and succeeds
            eventually(
                "a new token, the 401 counted, refreshes ok",
                freshness(),
                || async {
                    let m = host.metrics().await.map_err(|e| e.to_string())?;
                    let last = lab.proxy.last_token();
                    let fresh = last.as_deref().is_some_and(|t| t != old);
                    let n401 = requests_401(&m) - requests_401(&before);
                    let ok = ok_refreshes(&m) - ok_refreshes(&before);
                    if fresh && n401 >= 1.0 && ok >= 2.0 {
                        Ok(())
                    } else {
                        Err(format!("new token {fresh}, 401s {n401}, ok refreshes {ok}"))
                    }
                },
            )
            .await;
            // (switching the proxy cuts a request in flight: a `network`
            // failure, the switch's, not the token's)
            let m = host.metrics().await?;
            let auth = |m: &str| {
                metric_sum(
                    m,
                    "traefik_openstack_refreshes_total",
                    &[("outcome", "auth")],
                )
                .unwrap_or(0.0)
            };
            assert_eq!(
                auth(&m),
                auth(&before),
                "{name}: one expired token failed a refresh"
            );
            let (st, body) = host.readyz().await?;
            assert_eq!(st, StatusCode::OK, "{name}: {body}");

            // every token dies between the pages
            let before = host.metrics().await?;
            lab.proxy.set_faults(HttpFaults {
                before_page: Some((2, revoking_hook(lab, u32::MAX, revoked.clone()))),
                ..Default::default()
            });
            let body = wait_fault_reported(host, &before, Some("auth"), "401", name).await;
            eprintln!("{name}: /readyz during the fault: {body}");
            tokio::time::sleep(HOLD).await;
            lab.proxy.set_faults(HttpFaults::default());
            added(&s, &watch, &after).await?;
            wait_ready(host, recovery(), name).await;
            anyhow::Ok(())
        })
        .await?;
    assert_no_secrets(&s, &Secrets::default(), &[], name).await;
    Ok(())
}

/// Waits until the proxy has taken `more` more connections: as many
/// requests to Nova while HTTP faults are set (one exchange per connection).
async fn wait_requests(lab: &Lab, more: u64, what: &str) {
    let base = lab.proxy.requests();
    eventually(what, freshness(), || async {
        let n = lab.proxy.requests() - base;
        if n >= more {
            Ok(())
        } else {
            Err(format!("{n} requests"))
        }
    })
    .await
}

/// Nova's `Date` (the host's `changes-since` watermark comes from it)
/// jumps a day forward, then 10 minutes back. A change made during either
/// is routed in time, not at the next full listing (an hour away here): the
/// watermark must not run ahead of Nova's database. Going back lists
/// unchanged servers again: nothing flaps, the served configuration stays
/// byte for byte, and a server deleted before does not come back. The jump
/// shows in `/metrics` and `/readyz` (the clock offset of Nova's `Date`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_date_jumps() -> R {
    let name = "chaos-date";
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let (mut s, vms) = start(lab, name, 3, |o| {
        o.full_sync_interval = Some(Duration::from_secs(3600));
    })
    .await?;
    let forward = s.vm("forward", 4)?;
    let back = s.vm("backward", 5)?;
    let watch = routes_of(&s, &vms).await?;
    let host = s.host();
    let offset =
        |m: &str| metric_sum(m, "traefik_openstack_cloud_clock_offset_seconds", &[]).unwrap_or(0.0);
    watch
        .around(&s, name, async {
            // a day ahead: a watermark of "tomorrow" would hide every change
            lab.proxy.set_faults(HttpFaults {
                date_offset: 86_400,
                ..Default::default()
            });
            wait_requests(lab, 3, "listings with Nova's Date a day ahead").await;
            added(&s, &watch, &forward).await?;
            let m = host.metrics().await?;
            assert!(
                offset(&m) > 86_000.0,
                "{name}: /metrics does not show the clock offset: {}",
                offset(&m)
            );
            let (_, ready) = host.readyz().await?;
            assert!(
                ready.contains("clock_offset_seconds"),
                "{name}: /readyz: {ready}"
            );

            // 10 minutes back: changes-since covers the whole case again
            lab.proxy.set_faults(HttpFaults {
                date_offset: -600,
                ..Default::default()
            });
            wait_requests(lab, 3, "listings with Nova's Date 10 minutes back").await;
            eventually(
                "/metrics shows Nova 10 minutes back",
                freshness(),
                || async {
                    let m = host.metrics().await.map_err(|e| e.to_string())?;
                    let o = offset(&m);
                    if (-700.0..-500.0).contains(&o) {
                        Ok(())
                    } else {
                        Err(format!("offset {o}"))
                    }
                },
            )
            .await;
            let gone = &vms[2];
            let id = s
                .nova
                .server_id(gone)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{gone} not in Nova"))?;
            watch.forget(gone);
            s.nova.delete_server(&id).await?;
            s.wait_unrouted(&Scenario::fqdn(gone)).await;
            added(&s, &watch, &back).await?;
            // no replay: refreshes listing unchanged servers change nothing
            let (_, first) = host.get("/traefik").await?;
            wait_requests(lab, 3, "more listings 10 minutes back").await;
            let (_, again) = host.get("/traefik").await?;
            assert_eq!(
                first, again,
                "{name}: the configuration changed with nothing changed"
            );

            lab.proxy.set_faults(HttpFaults::default());
            wait_ready(host, recovery(), name).await;
            anyhow::Ok(())
        })
        .await?;
    assert_no_secrets(&s, &Secrets::default(), &[], name).await;
    Ok(())
}

/// The host is SIGKILLed while a listing is in flight (page 3 held by the
/// proxy) and started again while Nova still hangs on that page: no
/// configuration to serve yet (`/traefik` 503), `/readyz` and `/metrics`
/// say why; Traefik keeps its routes through the kill, the restart and the
/// failing refreshes, and once Nova answers the restarted host serves every
/// VM, one added while it was down too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_refresh_then_restart() -> R {
    let name = "chaos-sigkill";
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let (mut s, vms) = start(lab, name, VMS, paged).await?;
    let after = s.vm("after", VMS + 1)?;
    let watch = routes_of(&s, &vms).await?;
    let host = s.host();
    watch
        .around(&s, name, async {
            lab.proxy.set_faults(HttpFaults {
                delay_page: Some((3, Duration::from_secs(60))),
                ..Default::default()
            });
            eventually("a listing held on page 3", freshness(), || async {
                match lab.proxy.held() {
                    0 => Err("none".to_string()),
                    _ => Ok(()),
                }
            })
            .await;
            host.sigkill();
            // Traefik's polls fail meanwhile; a change made while it is down
            watch.allow(&after.name);
            s.seed(std::slice::from_ref(&after))?;
            tokio::time::sleep(HOLD).await;
            host.restart().await?;
            let body = wait_fault_reported(host, "", Some("timeout"), "", name).await;
            eprintln!("{name}: /readyz of the restarted host: {body}");
            let (st, _) = host.get("/traefik").await?;
            assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{name}: /traefik");
            tokio::time::sleep(HOLD).await;
            lab.proxy.set_faults(HttpFaults::default());
            s.wait_reaches_within(&Scenario::fqdn(&after.name), &after.name, recovery())
                .await;
            watch.keep(&s, &after.name).await?;
            wait_ready(host, recovery(), name).await;
            anyhow::Ok(())
        })
        .await?;
    assert_no_secrets(&s, &Secrets::default(), &[], name).await;
    Ok(())
}

/// A tmpfs mounted for one case, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    /// A `size` tmpfs at `dir`, or why not (mounting needs root or
    /// CAP_SYS_ADMIN).
    fn tmpfs(dir: &std::path::Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Mount(dir.to_path_buf()))
    }

    /// Fills the file system: a file grown until the disk is full.
    fn fill(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler"))?;
        let block = vec![0u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e),
            }
        }
        // the last partial block, byte by byte
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn cache_writes(metrics: &str, outcome: &str) -> f64 {
    metric_sum(
        metrics,
        "traefik_openstack_compile_cache_writes_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// The compile cache is on a full file system (a real one: a 16 MiB tmpfs,
/// room for a compiled module of 5 MiB, filled): the host compiles its module anyway and serves, reports the
/// failed cache write in `/readyz`, `/metrics` and its log, and stays up.
/// With room again, a restart writes the cache and clears the report;
/// Traefik keeps its routes throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_on_a_full_disk() -> R {
    let name = "chaos-disk-full";
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let fs = traefik_openstack_e2e::util::run_dir("chaos-disk-full-fs").join("fs");
    // A real full filesystem needs a mount: the suite runs as root (as CI
    // does); elsewhere this case fails and says why rather than pass unseen.
    let mount = Mount::tmpfs(&fs, "16m").map_err(|e| {
        anyhow::anyhow!(
            "{name}: cannot mount a 16 MiB tmpfs at {} ({e:#}); this case needs root",
            fs.display()
        )
    })?;
    let cache = fs.join("cache");
    std::fs::DirBuilder::new().create(&cache)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
    }
    mount.fill()?;
    let probe = std::fs::write(cache.join("probe"), b"x");
    assert_eq!(
        probe.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::StorageFull),
        "the file system is not full: {probe:?}"
    );
    let _ = std::fs::remove_file(cache.join("probe"));

    let (s, vms) = start(lab, name, 2, |o| o.cache_dir = Some(cache.clone())).await?;
    let watch = routes_of(&s, &vms).await?;
    let host = s.host();
    watch
        .around(&s, name, async {
            let (st, ready) = host.readyz().await?;
            assert!(
                ready.contains("compile_cache_error") && ready.contains("No space left"),
                "{name}: /readyz ({st}) does not report the cache: {ready}"
            );
            let m = host.metrics().await?;
            assert!(cache_writes(&m, "error") >= 1.0, "{name}: /metrics:\n{m}");
            assert!(
                host.log().contains("cannot write the compile cache"),
                "{name}: log:\n{}",
                host.log_tail(40)
            );
            wait_ready(host, freshness(), name).await;
            tokio::time::sleep(HOLD).await;
            assert!(
                std::fs::read_dir(&cache)?.next().is_none(),
                "{name}: something was left in the full cache (a partial entry?)"
            );

            // room again: the next start writes the cache
            std::fs::remove_file(fs.join("filler"))?;
            host.restart().await?;
            let (_, ready) = host.readyz().await?;
            assert!(
                ready.contains("\"compile_cache_error\": null"),
                "{name}: /readyz after the restart: {ready}"
            );
            let m = host.metrics().await?;
            assert_eq!(cache_writes(&m, "error"), 0.0, "{name}: /metrics:\n{m}");
            assert!(cache_writes(&m, "ok") >= 1.0, "{name}: /metrics:\n{m}");
            let entries: Vec<_> = std::fs::read_dir(&cache)?.flatten().collect();
            assert!(
                entries
                    .iter()
                    .any(|e| e.path().extension().is_some_and(|x| x == "cwasm")),
                "{name}: no cache entry written: {entries:?}"
            );
            wait_ready(host, recovery(), name).await;
            anyhow::Ok(())
        })
        .await?;
    assert_no_secrets(&s, &Secrets::default(), &[], name).await;
    drop(s);
    drop(mount);
    Ok(())
}

/// Item 5: a host authenticating with an application credential, logging
/// at trace level, behind a bearer token, taken through the faults above
/// (a failing page, a truncated page, its token revoked between pages and
/// then every token refused, Nova's clock jumping, Keystone down); and the
/// one-shot `inventory` run at trace level while a page fails. Nothing it
/// wrote or served holds the application credential's secret, the
/// password, a Keystone token or the bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_at_trace_level() -> R {
    let name = "chaos-secrets";
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let project = lab.project(name)?;
    let (cred_id, cred_secret) = application_credential(lab, &project, name).await?;
    let (s, _) = start(lab, name, 4, |o| {
        paged(o);
        o.app_credential = Some((cred_id.clone(), cred_secret.clone()));
    })
    .await?;
    let host = s.host();
    let mut secrets = Secrets::default();
    secrets.add("application credential secret", &cred_secret);
    let mut more = Vec::new();

    let faults: Vec<(&str, HttpFaults, Option<&str>)> = vec![
        (
            "page 2 fails",
            HttpFaults {
                fail_page: Some(2),
                ..Default::default()
            },
            Some("http_5xx"),
        ),
        (
            "page 1 truncated",
            HttpFaults {
                truncate_page: Some(1),
                ..Default::default()
            },
            Some("malformed"),
        ),
        (
            "every token revoked between pages",
            HttpFaults {
                before_page: Some((
                    2,
                    revoking_hook(lab, u32::MAX, Arc::new(Default::default())),
                )),
                ..Default::default()
            },
            Some("auth"),
        ),
    ];
    for (what, f, reason) in faults {
        let before = host.metrics().await?;
        lab.proxy.set_faults(f);
        wait_fault_reported(host, &before, reason, "", what).await;
        if what == "page 2 fails" {
            // the one-shot command, at trace level, meeting the fault
            let out = tokio::task::block_in_place(|| {
                host.command(&["inventory"]).env("RUST_LOG", TRACE).output()
            })?;
            assert!(
                !out.status.success(),
                "inventory succeeded despite the fault"
            );
            more.push((
                "inventory stdout".to_owned(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
            more.push((
                "inventory stderr".to_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        lab.proxy.set_faults(HttpFaults::default());
        wait_ready(host, recovery(), what).await;
    }
    // one token revoked between two pages: recovered within the listing
    let revoked = Arc::new(std::sync::Mutex::new(Vec::new()));
    lab.proxy.set_faults(HttpFaults {
        before_page: Some((2, revoking_hook(lab, 1, revoked.clone()))),
        date_offset: 86_400,
        ..Default::default()
    });
    wait_requests(lab, 8, "listings with a revoked token and Nova a day ahead").await;
    lab.proxy.set_faults(HttpFaults {
        date_offset: -600,
        ..Default::default()
    });
    wait_requests(lab, 4, "listings with Nova 10 minutes back").await;
    lab.proxy.set_faults(HttpFaults::default());
    // Keystone down: Nova cannot check the token, the host cannot get one
    let before = host.metrics().await?;
    lab.keystone.stop();
    wait_fault_reported(host, &before, None, "", "Keystone down").await;
    lab.keystone.start()?;
    wait_ready(host, recovery(), "Keystone back").await;

    let log = host.log();
    assert!(
        log.contains("TRACE"),
        "{name}: the host did not log at trace level"
    );
    let searched = assert_no_secrets(&s, &secrets, &more, name).await;
    let tokens = lab.proxy.tokens().len();
    eprintln!("{name}: {searched} bytes searched for {tokens} Keystone tokens and 3 other secrets");
    assert!(tokens >= 3, "{name}: only {tokens} tokens seen");
    Ok(())
}
