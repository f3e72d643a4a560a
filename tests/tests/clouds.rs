//! Several clouds and restart safety: two lab projects as two `[[openstack]]`
//! entries merged into one configuration, one of them failing; a host
//! restarted while OpenStack is down serving its `state_file`, until
//! `max_stale`.
//!
//! Both cases break parts of the shared lab (a user, Keystone), so they run
//! one at a time (`Lab::exclusive`).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use traefik_openstack_e2e::host::{Host, HostOptions, metric_sum};
use traefik_openstack_e2e::nova::set_user_enabled;
use traefik_openstack_e2e::proxy::Mode;
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::traefik::{Ports, Traefik};
use traefik_openstack_e2e::{eventually, freshness, shared_lab};

type R = anyhow::Result<()>;

/// What `/readyz` says, parsed.
async fn readyz(host: &Host) -> Result<(StatusCode, serde_json::Value), String> {
    let (st, body) = host.readyz().await.map_err(|e| e.to_string())?;
    let v = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((st, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_as_two_clouds_one_failing() -> R {
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let mut s = Scenario::new(lab, "clouds-a").await?;
    let b = lab.project("clouds-b")?;
    // Whatever an earlier run left: b's user works.
    set_user_enabled(lab, &b.user_id, true).await?;
    let (a1, b1) = (s.vm("a-1", 1)?, s.vm("b-1", 2)?);
    s.seed(&[a1])?;
    lab.seed(&b, &[b1])?;
    let a2 = s.vm("a-2", 3)?;
    let mut opts = s.options(s.plain_routes());
    opts.more_clouds = vec![b.clone()];
    s.start(&opts)?;
    s.wait_reaches(&Scenario::fqdn("a-1"), "a-1").await;
    s.wait_reaches(&Scenario::fqdn("b-1"), "b-1").await;
    let host = s.host();
    let (st, ready) = readyz(host).await.map_err(anyhow::Error::msg)?;
    assert_eq!(st, StatusCode::OK, "{ready}");
    assert_eq!(ready["clouds"][0]["name"], "lab/RegionOne", "{ready}");
    assert_eq!(ready["clouds"][1]["name"], "lab-1/RegionOne", "{ready}");
    assert_eq!(ready["clouds"][1]["instances"], 1, "{ready}");

    // Cloud b fails: its user is disabled (and its token with it).
    set_user_enabled(lab, &b.user_id, false).await?;
    eventually(
        "/readyz and /metrics name the failing cloud",
        freshness(),
        || async {
            let (st, ready) = readyz(host).await?;
            let m = host.metrics().await.map_err(|e| e.to_string())?;
            let down = metric_sum(
                &m,
                "traefik_openstack_cloud_up",
                &[("cloud", "lab-1/RegionOne")],
            );
            let up = metric_sum(
                &m,
                "traefik_openstack_cloud_up",
                &[("cloud", "lab/RegionOne")],
            );
            let reason = ready["reason"].as_str().unwrap_or_default();
            if st == StatusCode::SERVICE_UNAVAILABLE
                && reason.contains("cloud lab-1/RegionOne")
                && !ready["clouds"][1]["error"].is_null()
                && ready["clouds"][0]["error"].is_null()
                && down == Some(0.0)
                && up == Some(1.0)
            {
                Ok(())
            } else {
                Err(format!(
                    "/readyz {st} {ready}; cloud_up b={down:?} a={up:?}"
                ))
            }
        },
    )
    .await;
    // The other cloud goes on: a VM added to it is routed, b's VM stays.
    s.seed(&[a2])?;
    s.wait_reaches(&Scenario::fqdn("a-2"), "a-2").await;
    let r = s.reaches(&Scenario::fqdn("b-1")).await?;
    assert_eq!(
        r.backend.as_deref(),
        Some("b-1"),
        "{r:?}\n{}",
        s.dump().await
    );
    set_user_enabled(lab, &b.user_id, true).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_openstack_is_down_serves_the_state_file_until_max_stale() -> R {
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let mut s = Scenario::new(lab, "restart").await?;
    let vms = [s.vm("r-1", 1)?, s.vm("r-2", 2)?];
    s.seed(&vms)?;
    let state = s.dir.join("state");
    let mut opts = s.options(s.plain_routes());
    opts.publish
        .insert("state_file".into(), state.display().to_string().into());
    s.start(&opts)?;
    s.wait_reaches(&Scenario::fqdn("r-1"), "r-1").await;
    s.wait_reaches(&Scenario::fqdn("r-2"), "r-2").await;
    let routes = s.traefik().router_rules().await?;
    eventually("the state file is written", freshness(), || async {
        match state.exists() {
            true => Ok(()),
            false => Err(format!("no {}", state.display())),
        }
    })
    .await;

    // The host and Traefik go away; so does OpenStack.
    s.traefik = None;
    if let Some(mut h) = s.host.take() {
        h.kill();
    }
    lab.keystone.stop();
    lab.proxy.set_mode(Mode::Error500);

    // Restarted, both: Traefik gets every route from the host at once.
    let run_dir = s.dir.clone();
    let start = |dir: &str, opts: &HostOptions| -> anyhow::Result<(Host, Traefik)> {
        let host = Host::start(lab, &run_dir.join(dir), opts)?;
        let traefik = Traefik::start(
            &lab.prepared.traefik,
            &run_dir.join(format!("{dir}-traefik")),
            Ports::free(),
            &host.url("/traefik"),
            None,
        )?;
        Ok((host, traefik))
    };
    let (host, traefik) = start("host-2", &opts)?;
    s.host = Some(host);
    s.traefik = Some(traefik);
    s.wait_reaches(&Scenario::fqdn("r-1"), "r-1").await;
    s.wait_reaches(&Scenario::fqdn("r-2"), "r-2").await;
    assert_eq!(s.traefik().router_rules().await?, routes);
    let host = s.host();
    let (st, ready) = readyz(host).await.map_err(anyhow::Error::msg)?;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let since = ready["stale_since"].as_str().unwrap_or_default();
    assert!(!since.is_empty(), "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("stale since {since}")),
        "{ready}"
    );
    let stale = host
        .metric("traefik_openstack_stale_since_timestamp_seconds")
        .await?;
    assert!(stale.is_some_and(|t| t > 0.0), "{stale:?}");
    let log = host.log();
    assert_eq!(
        log.matches("serving the configuration recovered").count(),
        1,
        "{log}"
    );

    // Again, with max_stale a few seconds past the file's age: served at
    // start, then withdrawn once that age passes max_stale.
    s.traefik = None;
    if let Some(mut h) = s.host.take() {
        h.kill();
    }
    let written = std::fs::metadata(&state)?.modified()?;
    let age = SystemTime::now().duration_since(written)?;
    let max_stale = age + Duration::from_secs(5);
    opts.publish.insert(
        "max_stale".into(),
        format!("{}ms", max_stale.as_millis()).into(),
    );
    let (host, traefik) = start("host-3", &opts)?;
    s.host = Some(host);
    s.traefik = Some(traefik);
    let host = s.host();
    eventually(
        "the recovered configuration is withdrawn",
        freshness(),
        || async {
            let (st, _) = host.get("/traefik").await.map_err(|e| e.to_string())?;
            let (_, ready) = readyz(host).await?;
            let reason = ready["reason"].as_str().unwrap_or_default();
            if st == StatusCode::SERVICE_UNAVAILABLE && reason.starts_with("withdrawn: ") {
                Ok(())
            } else {
                Err(format!("/traefik {st}; /readyz {ready}"))
            }
        },
    )
    .await;
    let log = host.log();
    assert!(
        log.contains("serving the configuration recovered"),
        "it was served first: {log}"
    );
    Ok(())
}
