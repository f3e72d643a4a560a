//! Routing through a real Traefik: the seed's own example, labels, filters,
//! load balancing, hostile names, and changes made through the Nova API.
//!
//! All cases share one lab; each has its own project, backends, host and
//! Traefik, so they run in parallel without seeing each other's VMs.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use std::path::PathBuf;

use traefik_openstack_e2e::certs::Ca;
use traefik_openstack_e2e::host::{HostOptions, HostTls};
use traefik_openstack_e2e::lab::ServerSpec;
use traefik_openstack_e2e::scenario::{DOMAIN, Scenario};
use traefik_openstack_e2e::tools::browse;
use traefik_openstack_e2e::{eventually, freshness, shared_lab};

type R = anyhow::Result<()>;

fn fqdn(vm: &str) -> String {
    Scenario::fqdn(vm)
}

/// Asserts that a request for `host` reaches no backend at all.
async fn assert_unrouted(s: &Scenario<'_>, host: &str) -> R {
    let r = s.reaches(host).await?;
    assert_eq!(r.backend, None, "Host: {host} reached a backend: {r:?}");
    assert_eq!(r.status, StatusCode::NOT_FOUND, "Host: {host}: {r:?}");
    Ok(())
}

/// The seed's example: http router redirecting to https, https router
/// reaching the VM's floating address; bearer token between Traefik and host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_http_redirects_and_https_reaches_the_vm() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "seed-example").await?;
    let vms = [s.vm("vm-1", 1)?, s.vm("vm-2", 2)?];
    s.seed(&vms)?;
    let mut opts = s.options(s.seed_example_routes());
    opts.token = Some("e2e-secret-token".into());
    s.start(&opts)?;

    let t = s.traefik();
    let routers = eventually(
        "both VMs' http and https routers in Traefik",
        freshness(),
        || async {
            let r = t.routers().await.map_err(|e| e.to_string())?;
            let want = ["vm-1-http", "vm-1-https", "vm-2-http", "vm-2-https"];
            if want.iter().all(|w| r.contains_key(*w)) {
                Ok(r)
            } else {
                Err(format!("routers: {:?}", r.keys().collect::<Vec<_>>()))
            }
        },
    )
    .await;
    assert_eq!(
        routers["vm-1-http"]["rule"],
        format!("Host(`vm-1.{DOMAIN}`)")
    );
    assert_eq!(
        routers["vm-1-https"]["rule"],
        format!("Host(`vm-1.{DOMAIN}`)")
    );
    assert_eq!(routers["vm-1-http"]["entryPoints"][0], "web");
    assert_eq!(routers["vm-1-https"]["entryPoints"][0], "websecure");
    assert!(
        routers["vm-1-https"]["tls"].is_object(),
        "{}",
        routers["vm-1-https"]
    );
    for r in ["vm-1-http", "vm-1-https", "vm-2-http", "vm-2-https"] {
        assert_eq!(routers[r]["status"], "enabled", "{r}: {}", routers[r]);
    }
    let raw = t.rawdata().await?;
    let mw = &raw["middlewares"]["http-to-https@http"];
    assert_eq!(
        mw["redirectScheme"]["scheme"], "https",
        "middlewares: {}",
        raw["middlewares"]
    );
    for r in ["vm-1-http", "vm-2-http"] {
        assert_eq!(
            routers[r]["middlewares"][0], "http-to-https@http",
            "{r}: {}",
            routers[r]
        );
    }

    for vm in ["vm-1", "vm-2"] {
        let host = fqdn(vm);
        let r = t.get_http(&host, "/some/path").await?;
        assert!(r.status.is_redirection(), "{vm} on web: {r:?}");
        let loc = r.location.clone().unwrap_or_default();
        assert!(
            loc.starts_with(&format!("https://{host}")) && loc.ends_with("/some/path"),
            "{vm} redirect location: {loc}"
        );
        assert_eq!(r.backend, None, "the redirect must not reach a backend");
        let r = t.get_https(&host, "/").await?;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{vm} on websecure: {r:?}\n{}",
            s.logs()
        );
        assert_eq!(
            r.backend.as_deref(),
            Some(vm),
            "{vm} reached the wrong VM: {r:?}"
        );
    }
    // an unknown VM name reaches nobody
    let r = t.get_https(&fqdn("vm-3"), "/").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.backend, None);

    // the endpoint needs the bearer token Traefik sends
    let anon = reqwest::get(s.host().url("/traefik")).await?;
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

/// A rule and a port in metadata replace the default rule and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_in_metadata_override_the_defaults() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "labels").await?;
    let plain = s.vm("plain", 1)?;
    let custom = s.vm("custom", 2)?.meta(
        "traefik.http.routers.custom.rule",
        "Host(`custom.example.org`)",
    );
    // this VM's backend is not on the default port: only the label finds it
    let other_port = s.backend_on("ported", 3, 0)?;
    let ported = ServerSpec::new("ported")
        .floating(s.ip(3))
        .fixed("10.9.9.3")
        .meta(
            "traefik.http.services.ported.loadbalancer.server.port",
            &other_port.to_string(),
        );
    s.seed(&[plain, custom, ported])?;
    s.start(&s.options(s.plain_routes()))?;

    s.wait_reaches(&fqdn("plain"), "plain").await;
    s.wait_reaches("custom.example.org", "custom").await;
    s.wait_reaches(&fqdn("ported"), "ported").await;
    let rules = s.traefik().router_rules().await?;
    assert!(
        rules.values().any(|r| r == "Host(`custom.example.org`)"),
        "the label's rule is not in Traefik: {rules:?}"
    );
    Ok(())
}

/// `traefik.enable=false` in metadata or as a tag removes a VM;
/// `exposed_by_default = false` routes only `traefik.enable=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_false_removes_a_vm() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "enable").await?;
    let vms = [
        s.vm("shown", 1)?,
        s.vm("off-meta", 2)?.meta("traefik.enable", "false"),
        s.vm("off-tag", 3)?.tag("traefik.enable=false"),
    ];
    s.seed(&vms)?;
    s.start(&s.options(s.plain_routes()))?;

    // all three were seeded at once: once one is live, the others are decided
    s.wait_reaches(&fqdn("shown"), "shown").await;
    assert_unrouted(&s, &fqdn("off-meta")).await?;
    assert_unrouted(&s, &fqdn("off-tag")).await?;
    let names: Vec<String> = s.traefik().routers().await?.into_keys().collect();
    assert!(
        !names.iter().any(|n| n.contains("off-")),
        "routers for disabled VMs: {names:?}"
    );
    Ok(())
}

/// The operator's page at `GET /`, rendered by a real headless browser:
/// each VM with its state, the host names it answers as links, and why a
/// disabled VM is not routed; the filter narrows the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_each_vm_and_why_one_is_not_routed() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "status-page").await?;
    let vms = [
        s.vm("page-on", 1)?,
        s.vm("page-off", 2)?.meta("traefik.enable", "false"),
    ];
    s.seed(&vms)?;
    s.start(&s.options(s.plain_routes()))?;
    s.wait_reaches(&fqdn("page-on"), "page-on").await;

    let url = s.host().url("/");
    let shot = s.dir.join("status-page.png");
    let dom = browse(&url, &shot).await?;
    let context = || format!("DOM:\n{dom}\n{}", s.logs());
    assert!(dom.contains(r#"data-rendered="yes""#), "{}", context());
    assert!(dom.contains("<td>page-on</td>"), "{}", context());
    assert!(dom.contains("<td>page-off</td>"), "{}", context());
    let on = fqdn("page-on");
    assert!(
        dom.contains(&format!(
            r#"<a href="http://{on}/" rel="noopener noreferrer">{on}</a>"#
        )),
        "a link to the routed VM's host name: {}",
        context()
    );
    assert!(
        dom.contains("skipped: traefik.enable=false"),
        "the reason the disabled VM is not routed: {}",
        context()
    );
    assert!(
        dom.contains(">ready</dt><dd class=\"ok\">yes</dd>"),
        "{}",
        context()
    );
    let png = std::fs::read(&shot)?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );

    let dom = browse(
        &format!("{url}?show=unrouted"),
        &s.dir.join("status-page-unrouted.png"),
    )
    .await?;
    assert!(dom.contains("<td>page-off</td>"), "{}", context());
    assert!(
        !dom.contains("<td>page-on</td>"),
        "the filter keeps only unrouted VMs: {dom}"
    );
    Ok(())
}

/// The endpoint over mTLS: real Traefik's `providers.http.tls` (its CA, a
/// client certificate and key) gets every route; a client without a
/// certificate, or with one of another CA, is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_polls_over_mutual_tls_and_other_clients_are_refused() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "mtls").await?;
    let certs = s.dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let (server_ca, client_ca, other_ca) =
        (Ca::new("server"), Ca::new("clients"), Ca::new("other"));
    let (cert, key) = server_ca.issue(&certs, "server", &["localhost"]);
    let (client_cert, client_key) = client_ca.issue(&certs, "traefik", &["traefik"]);
    let (other_cert, other_key) = other_ca.issue(&certs, "stranger", &["traefik"]);
    let server_ca_file = server_ca.write(&certs, "server-ca");

    let vms = [s.vm("tls-1", 1)?];
    s.seed(&vms)?;
    let mut opts = s.options(s.plain_routes());
    opts.tls = Some(HostTls {
        cert,
        key,
        client_ca: Some(client_ca.write(&certs, "client-ca")),
    });
    s.start_with(
        &opts,
        serde_json::json!({"providers": {"http": {"tls": {
            "ca": server_ca_file.display().to_string(),
            "cert": client_cert.display().to_string(),
            "key": client_key.display().to_string(),
        }}}}),
    )?;
    s.wait_reaches(&fqdn("tls-1"), "tls-1").await;

    let url = s.host().url("/traefik");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&server_ca_file)?)?;
    let client = |identity: Option<(&PathBuf, &PathBuf)>| -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca.clone()])
            .timeout(Duration::from_secs(5));
        if let Some((c, k)) = identity {
            let pem = [std::fs::read(c)?, std::fs::read(k)?].concat();
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(b.build()?)
    };
    let good = client(Some((&client_cert, &client_key)))?
        .get(&url)
        .send()
        .await?;
    assert_eq!(good.status(), StatusCode::OK);
    assert!(good.text().await?.contains("tls-1"));
    let none = client(None)?.get(&url).send().await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let other = client(Some((&other_cert, &other_key)))?
        .get(&url)
        .send()
        .await;
    assert!(
        other.is_err(),
        "a client certificate of another CA: {other:?}"
    );
    let plain = reqwest::get(format!("http://127.0.0.1:{}/traefik", s.host().port)).await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_by_default_false_routes_only_enabled_vms() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "opt-in").await?;
    let vms = [
        s.vm("opted-in", 1)?.meta("traefik.enable", "true"),
        s.vm("silent", 2)?,
    ];
    s.seed(&vms)?;
    let mut routes = s.plain_routes();
    routes.insert("exposed_by_default".into(), false.into());
    s.start(&s.options(routes))?;

    s.wait_reaches(&fqdn("opted-in"), "opted-in").await;
    assert_unrouted(&s, &fqdn("silent")).await?;
    Ok(())
}

/// Nova leaves a server's `updated` alone when its tags change or one
/// metadata key is deleted, so `changes-since` cannot see those edits; the
/// periodic full listing does. Cases about them run with a short one, as an
/// operator who needs them promptly would.
fn exact(mut opts: HostOptions) -> HostOptions {
    opts.full_sync_interval = Some(Duration::from_secs(2));
    opts
}

/// `constraints` keeps only matching VMs; a tag added through Nova brings a
/// VM in within the freshness deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_filter_and_a_new_tag_brings_a_vm_in() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "constraints").await?;
    let vms = [
        s.vm("tagged", 1)?.tag("public"),
        s.vm("untagged", 2)?.tag("internal"),
    ];
    let seeded = s.seed(&vms)?;
    let mut routes = s.plain_routes();
    routes.insert("constraints".into(), "Tag(`public`)".into());
    s.start(&exact(s.options(routes)))?;

    s.wait_reaches(&fqdn("tagged"), "tagged").await;
    assert_unrouted(&s, &fqdn("untagged")).await?;

    s.settle().await;
    s.nova.add_tag(&seeded[1].id, "public").await?;
    s.wait_reaches(&fqdn("untagged"), "untagged").await;
    s.nova.delete_tag(&seeded[0].id, "public").await?;
    s.wait_unrouted(&fqdn("tagged")).await;
    Ok(())
}

/// `statuses` keeps only VMs in those states; a state change follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_filter_and_follow_state_changes() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "statuses").await?;
    let vms = [
        s.vm("running", 1)?,
        s.vm("stopped", 2)?.status("SHUTOFF"),
        s.vm("broken", 3)?.status("ERROR"),
    ];
    let seeded = s.seed(&vms)?;
    s.start(&s.options(s.plain_routes()))?;

    s.wait_reaches(&fqdn("running"), "running").await;
    assert_unrouted(&s, &fqdn("stopped")).await?;
    assert_unrouted(&s, &fqdn("broken")).await?;

    lab.set_status(&seeded[1].id, "ACTIVE")?;
    s.wait_reaches(&fqdn("stopped"), "stopped").await;
    lab.set_status(&seeded[0].id, "SHUTOFF")?;
    s.wait_unrouted(&fqdn("running")).await;
    Ok(())
}

/// Two VMs with the same router and service labels: one service, both
/// servers, requests reach both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_service_label_load_balances_across_vms() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "lb").await?;
    let port = s.port.to_string();
    let labels = |spec: ServerSpec| {
        spec.meta("traefik.http.routers.shop.rule", "Host(`shop.example.org`)")
            .meta("traefik.http.routers.shop.service", "shop")
            .meta("traefik.http.services.shop.loadbalancer.server.port", &port)
    };
    let vms = [labels(s.vm("shop-1", 1)?), labels(s.vm("shop-2", 2)?)];
    s.seed(&vms)?;
    s.start(&s.options(s.plain_routes()))?;

    let t = s.traefik();
    eventually("service shop with both servers", freshness(), || async {
        let raw = t.rawdata().await.map_err(|e| e.to_string())?;
        let servers = raw["services"]["shop@http"]["loadBalancer"]["servers"].clone();
        match servers.as_array() {
            Some(a) if a.len() == 2 => Ok(()),
            _ => Err(format!("shop@http servers: {servers}")),
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let r = t.get_http("shop.example.org", "/").await?;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        seen.insert(r.backend.unwrap_or_default());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["shop-1".to_string(), "shop-2".to_string()]),
        "requests must reach both VMs"
    );
    Ok(())
}

/// A VM named to inject a second Host() into the default rule gets no route
/// to the victim's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_vm_name_cannot_claim_another_host() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "hostile").await?;
    let attacker_name = "x`) || Host(`victim.example.com";
    s.backend("attacker", 1)?;
    let attacker = ServerSpec::new(attacker_name)
        .floating(s.ip(1))
        .fixed("10.9.9.1");
    let victim = s.vm("victim", 2)?.meta(
        "traefik.http.routers.victim.rule",
        "Host(`victim.example.com`)",
    );
    s.seed(&[attacker, victim])?;
    s.start(&s.options(s.plain_routes()))?;

    // seeded together: once the victim is live, the attacker is decided too
    s.wait_reaches("victim.example.com", "victim").await;
    for host in [
        "victim.example.com",
        "x",
        "victim.example.com.training.example.com",
    ] {
        for _ in 0..4 {
            let r = s.reaches(host).await?;
            assert_ne!(
                r.backend.as_deref(),
                Some("attacker"),
                "Host: {host} reached the hostile VM\n{}",
                s.logs()
            );
        }
    }
    let rules = s.traefik().router_rules().await?;
    for (name, rule) in &rules {
        assert!(
            !rule.contains("Host(`victim.example.com`)") || name.starts_with("victim"),
            "router {name} claims the victim's host: {rule}"
        );
    }
    Ok(())
}

/// A VM seeded while the host runs shows up within the freshness deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_added_shows_up() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "added").await?;
    let first = s.vm("first", 1)?;
    s.seed(&[first])?;
    s.start(&s.options(s.plain_routes()))?;
    s.wait_reaches(&fqdn("first"), "first").await;
    assert_unrouted(&s, &fqdn("second")).await?;

    let second = s.vm("second", 2)?;
    s.seed(&[second])?;
    s.wait_reaches(&fqdn("second"), "second").await;
    Ok(())
}

/// `DELETE /servers/{id}` removes the VM's routes; the others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_deleted_disappears() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "deleted").await?;
    let vms = [s.vm("doomed", 1)?, s.vm("survivor", 2)?];
    let seeded = s.seed(&vms)?;
    s.start(&s.options(s.plain_routes()))?;
    s.wait_reaches(&fqdn("doomed"), "doomed").await;
    s.wait_reaches(&fqdn("survivor"), "survivor").await;

    s.nova.delete_server(&seeded[0].id).await?;
    s.wait_unrouted(&fqdn("doomed")).await;
    let r = s.reaches(&fqdn("survivor")).await?;
    assert_eq!(r.backend.as_deref(), Some("survivor"), "{r:?}");
    Ok(())
}

/// `PUT /servers/{id}` with a new name moves the default rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_renamed_moves_its_route() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "renamed").await?;
    let vm = s.vm("old-name", 1)?;
    let seeded = s.seed(&[vm])?;
    s.start(&s.options(s.plain_routes()))?;
    s.wait_reaches(&fqdn("old-name"), "old-name").await;

    s.nova.rename(&seeded[0].id, "new-name").await?;
    // the backend still answers as "old-name": it is the same VM
    s.wait_reaches(&fqdn("new-name"), "old-name").await;
    s.wait_unrouted(&fqdn("old-name")).await;
    Ok(())
}

/// Metadata changed through Nova (`POST`, `PUT`, `DELETE .../metadata`) takes
/// effect within the freshness deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_apply() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "metadata").await?;
    let vm = s.vm("meta-vm", 1)?;
    let id = s.seed(&[vm])?.remove(0).id;
    s.start(&exact(s.options(s.plain_routes())))?;
    s.wait_reaches(&fqdn("meta-vm"), "meta-vm").await;

    // POST merges a rule label in
    s.nova
        .update_metadata(
            &id,
            &[("traefik.http.routers.meta.rule", "Host(`meta.example.org`)")],
        )
        .await?;
    s.wait_reaches("meta.example.org", "meta-vm").await;
    // PUT replaces all metadata: rule gone, VM disabled
    s.nova
        .replace_metadata(&id, &[("traefik.enable", "false")])
        .await?;
    s.wait_unrouted("meta.example.org").await;
    s.wait_unrouted(&fqdn("meta-vm")).await;
    // DELETE the key: back to the default rule
    s.settle().await;
    s.nova.delete_metadata(&id, "traefik.enable").await?;
    s.wait_reaches(&fqdn("meta-vm"), "meta-vm").await;
    Ok(())
}

/// A `traefik.enable=false` tag set and removed through Nova.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_changes_apply() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "tags").await?;
    let vm = s.vm("tag-vm", 1)?;
    let id = s.seed(&[vm])?.remove(0).id;
    s.start(&exact(s.options(s.plain_routes())))?;
    s.wait_reaches(&fqdn("tag-vm"), "tag-vm").await;

    s.settle().await;
    s.nova.add_tag(&id, "traefik.enable=false").await?;
    s.wait_unrouted(&fqdn("tag-vm")).await;
    s.nova.delete_tag(&id, "traefik.enable=false").await?;
    s.wait_reaches(&fqdn("tag-vm"), "tag-vm").await;
    Ok(())
}
