//! Projects: `all_projects` as admin routes every project's VMs; a
//! project-scoped user (demo/demopass) routes only its own project's.

use reqwest::StatusCode;
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::shared_lab;

type R = anyhow::Result<()>;

/// VMs in the admin project and in the demo project, each with a backend;
/// names tell the project apart.
async fn two_projects(
    name: &str,
    all_projects: bool,
    as_admin: bool,
) -> anyhow::Result<Scenario<'static>> {
    let lab = shared_lab();
    let project = if as_admin { lab.admin() } else { lab.demo() };
    let mut s = Scenario::with_project(lab, name, project).await?;
    // distinct names per case: the projects are shared by both cases
    let admin_vm = s.vm(&format!("{name}-admin-vm"), 1)?;
    let demo_vm = s.vm(&format!("{name}-demo-vm"), 2)?;
    lab.seed(&lab.admin(), &[admin_vm])?;
    lab.seed(&lab.demo(), &[demo_vm])?;
    let mut routes = s.plain_routes();
    // An operator-defined middleware every VM's router uses: the same
    // definition comes with VMs of both projects and must be shared.
    let mut labels = toml::Table::new();
    labels.insert(
        "traefik.http.middlewares.served-by.headers.customresponseheaders.X-Served-By".into(),
        "traefik-openstack".into(),
    );
    labels.insert(
        "traefik.http.routers.{{ .Name }}.middlewares".into(),
        "served-by".into(),
    );
    routes.insert("default_labels".into(), labels.into());
    let mut opts = s.options(routes);
    opts.all_projects = all_projects;
    s.start(&opts)?;
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_projects_as_admin_routes_every_project() -> R {
    let s = two_projects("everyone", true, true).await?;
    s.wait_reaches(&Scenario::fqdn("everyone-admin-vm"), "everyone-admin-vm")
        .await;
    s.wait_reaches(&Scenario::fqdn("everyone-demo-vm"), "everyone-demo-vm")
        .await;
    let (_, body) = s.host().get("/api/instances").await?;
    let lab = shared_lab();
    let instances: serde_json::Value = serde_json::from_str(&body)?;
    let projects: Vec<&str> = instances
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["project_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(projects.contains(&lab.admin_project_id.as_str()), "{body}");
    assert!(projects.contains(&lab.demo_project_id.as_str()), "{body}");
    // The operator's shared middleware is no tenant's property.
    let errors: Vec<&serde_json::Value> = instances
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["diagnostics"].as_array().into_iter().flatten())
        .filter(|d| d["level"] != "info")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_user_routes_only_its_own_project() -> R {
    let s = two_projects("own", false, false).await?;
    // seeded together: once the demo VM is live, the admin VM is decided
    s.wait_reaches(&Scenario::fqdn("own-demo-vm"), "own-demo-vm")
        .await;
    let r = s.reaches(&Scenario::fqdn("own-admin-vm")).await?;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the admin project's VM is routed: {r:?}"
    );
    assert_eq!(r.backend, None);
    let (_, body) = s.host().get("/api/instances").await?;
    let lab = shared_lab();
    assert!(
        !body.contains(&lab.admin_project_id),
        "admin project's instance listed: {body}"
    );
    assert!(!body.contains("own-admin-vm"), "{body}");
    Ok(())
}

/// Credentials from `OS_*` variables instead of clouds.yaml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_os_environment_variables() -> R {
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "os-env").await?;
    let vm = s.vm("env-vm", 1)?;
    s.seed(&[vm])?;
    let mut opts = s.options(s.plain_routes());
    opts.env_credentials = true;
    s.start(&opts)?;
    s.wait_reaches(&Scenario::fqdn("env-vm"), "env-vm").await;
    Ok(())
}
