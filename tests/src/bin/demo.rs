//! `traefik/demo.sh`: the lab, sample VMs with backends, the host and Traefik,
//! all on loopback, until Ctrl-C. Same harness as the e2e suite.

use std::time::Duration;

use traefik_openstack_e2e::lab::Lab;
use traefik_openstack_e2e::scenario::Scenario;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    eprintln!(
        "demo: starting Keystone + Nova (first run: creates venvs under target/, about a minute)"
    );
    let lab = Lab::start("demo")?;
    let mut s = Scenario::new(&lab, "training").await?;
    let vms = [s.vm("vm-1", 1)?, s.vm("vm-2", 2)?, s.vm("vm-3", 3)?];
    s.seed(&vms)?;
    s.start(&s.options(s.seed_example_routes()))?;
    let t = s.traefik();
    let host = s.host();
    // wait for the first VM to be routed so the printed commands work
    for _ in 0..100 {
        if let Ok(r) = t.get_https(&Scenario::fqdn("vm-1"), "/").await
            && r.backend.is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ks = lab.keystone_url();
    println!(
        r#"
traefik-openstack demo is up (state and logs: {dir})

  Traefik web        http://127.0.0.1:{web}/   (redirects to https on port 443)
  Traefik websecure  https://127.0.0.1:{websecure}/   (self-signed default certificate)
  Traefik API        http://127.0.0.1:{api}/api/http/routers
  traefik-openstack  {provider}   /api/instances  /readyz  /metrics
  Keystone           {ks}   user {user} / {pw}, project {project}
  Nova               {nova}

Reach a VM through Traefik:

  curl -k -H 'Host: vm-1.training.example.com' https://127.0.0.1:{websecure}/
  curl -i -H 'Host: vm-1.training.example.com' http://127.0.0.1:{web}/

Change a VM through the real Nova API and watch Traefik follow within seconds:

  TOKEN=$(curl -si -H 'Content-Type: application/json' -d '{{"auth":{{"identity":{{"methods":["password"],"password":{{"user":{{"name":"{user}","domain":{{"id":"default"}},"password":"{pw}"}}}}}},"scope":{{"project":{{"name":"{project}","domain":{{"id":"default"}}}}}}}}}}' {ks}/auth/tokens | awk -F': ' 'tolower($1)=="x-subject-token"{{print $2}}' | tr -d '\r')
  curl -s -H "X-Auth-Token: $TOKEN" {nova}/servers | python3 -m json.tool

Ctrl-C stops everything this demo started.
"#,
        dir = s.dir.display(),
        web = t.web_port,
        websecure = t.websecure_port,
        api = t.api_port,
        provider = host.url("/traefik"),
        ks = ks,
        user = s.project.user,
        pw = s.project.password,
        project = s.project.name,
        nova = lab.nova_url(),
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("demo: stopping");
    drop(s);
    drop(lab);
    Ok(())
}
