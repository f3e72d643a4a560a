//! Outages of Keystone and Nova: Traefik keeps every route for the whole
//! outage, and the host recovers by itself afterwards.
//!
//! The cases stop or break services of the shared lab, so they run one at a
//! time (`Lab::exclusive`); each still has its own project, host and Traefik.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;
use traefik_openstack_e2e::faults::{assert_routes_kept, wait_fault_reported};
use traefik_openstack_e2e::lab::Lab;
use traefik_openstack_e2e::nova::revoke_token;
use traefik_openstack_e2e::proxy::Mode;
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::{REFRESH_INTERVAL, eventually, freshness, shared_lab};

type R = anyhow::Result<()>;

const STEADY: [&str; 2] = ["steady-1", "steady-2"];

/// How long every outage lasts once the host has noticed it: several
/// refreshes and Traefik polls.
const OUTAGE: Duration = Duration::from_secs(6);

/// After the service is back: the host may be backing off; allow it more
/// than a plain refresh.
fn recovery() -> Duration {
    freshness() + Duration::from_secs(20)
}

/// One outage: set up two routed VMs, `break_it`, check the routes stay (and,
/// when `notices`, that /readyz reports the failure), `fix_it`, check the
/// host recovers and a change made afterwards shows up.
async fn outage(
    name: &str,
    notices: bool,
    break_it: impl AsyncFnOnce(&Lab, &Scenario<'_>) -> R,
    fix_it: impl AsyncFnOnce(&Lab) -> R,
) -> R {
    let lab = shared_lab();
    let _turn = lab.exclusive().await?;
    let mut s = Scenario::new(lab, name).await?;
    let vms = [s.vm("steady-1", 1)?, s.vm("steady-2", 2)?];
    s.seed(&vms)?;
    let after = s.vm("after", 3)?;
    s.start(&s.options(s.plain_routes()))?;
    s.wait_reaches(&Scenario::fqdn("steady-1"), "steady-1")
        .await;
    s.wait_reaches(&Scenario::fqdn("steady-2"), "steady-2")
        .await;
    let routes = s.traefik().router_rules().await?;
    let host = s.host();

    break_it(lab, &s).await?;
    let broke = Instant::now();
    if notices {
        // both: /readyz says why, /metrics counts failed refreshes
        wait_fault_reported(host, "", None, "", name).await;
    }
    // routes kept, from the break to well after the host noticed
    let held = broke.elapsed();
    assert_routes_kept(
        &s,
        &routes,
        &STEADY,
        OUTAGE.saturating_sub(held).max(REFRESH_INTERVAL * 3),
        name,
    )
    .await?;

    fix_it(lab).await?;
    assert_routes_kept(&s, &routes, &STEADY, REFRESH_INTERVAL, name).await?;
    // the host comes back by itself: a change made now shows up
    s.seed(&[after])?;
    s.wait_reaches_within(&Scenario::fqdn("after"), "after", recovery())
        .await;
    let (st, body) = host.readyz().await?;
    assert_eq!(st, StatusCode::OK, "/readyz after recovery: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_stopped() -> R {
    outage(
        "ks-stopped",
        true,
        async |lab, _| {
            lab.keystone.stop();
            Ok(())
        },
        async |lab| lab.keystone.start(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_stopped() -> R {
    outage(
        "nova-stopped",
        true,
        async |lab, _| {
            lab.nova.stop();
            Ok(())
        },
        async |lab| lab.nova.start(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_answers_500() -> R {
    outage(
        "nova-500",
        true,
        async |lab, _| {
            lab.proxy.set_mode(Mode::Error500);
            Ok(())
        },
        async |lab| {
            lab.proxy.set_mode(Mode::Pass);
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_hangs() -> R {
    outage(
        "nova-hangs",
        true,
        async |lab, _| {
            lab.proxy.set_mode(Mode::Hang);
            Ok(())
        },
        async |lab| {
            lab.proxy.set_mode(Mode::Pass);
            Ok(())
        },
    )
    .await
}

/// The host's token is revoked in Keystone: Nova refuses it, the host must
/// get a new one by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked() -> R {
    outage(
        "token-revoked",
        false,
        async |lab, s| {
            let token = lab
                .proxy
                .last_token()
                .expect("the host has called Nova through the proxy");
            revoke_token(lab, &token).await?;
            // the host notices (401) and authenticates again
            eventually("the host uses a new token", freshness(), || async {
                match lab.proxy.last_token() {
                    Some(t) if t != token => Ok(()),
                    _ => Err("still the revoked token".to_string()),
                }
            })
            .await;
            let _ = s;
            Ok(())
        },
        async |_| Ok(()),
    )
    .await
}
