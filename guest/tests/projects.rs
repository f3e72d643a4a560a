//! Several projects (`all_projects`): the operator's shared definitions are
//! shared by all of them; per-instance names stay with their project.

use traefik_openstack_guest::{Address, AddressKind, Instance, Level, generate};

fn vm(id: &str, name: &str, project: &str, created: &str, ip: &str) -> Instance {
    Instance {
        id: id.into(),
        name: name.into(),
        status: "ACTIVE".into(),
        project_id: project.into(),
        created: created.into(),
        addresses: vec![Address {
            network: "public".into(),
            ip: ip.into(),
            version: 4,
            kind: AddressKind::Floating,
            mac: None,
        }],
        ..Instance::default()
    }
}

const SEED: &str = r#"{
  "default_rule": "Host(`{{ .Name }}.training.example.com`)",
  "default_labels": {
    "traefik.http.routers.{{ .Name }}-http.rule": "Host(`{{ .Name }}.training.example.com`)",
    "traefik.http.routers.{{ .Name }}-http.middlewares": "http-to-https",
    "traefik.http.middlewares.http-to-https.redirectscheme.scheme": "https",
    "traefik.http.services.{{ .Name }}.loadbalancer.server.port": "80"
  }
}"#;

#[test]
fn the_operators_shared_middleware_serves_every_project() {
    let a = vm(
        "a",
        "alice",
        "project-a",
        "2024-01-01T00:00:00Z",
        "203.0.113.1",
    );
    let b = vm(
        "b",
        "bob",
        "project-b",
        "2024-02-01T00:00:00Z",
        "203.0.113.2",
    );
    let out = generate(SEED, &[a, b]).unwrap();
    let errors: Vec<_> = out
        .diagnostics
        .iter()
        .filter(|d| d.level != Level::Info)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let config: serde_json::Value = serde_json::from_str(&out.config).unwrap();
    let routers = &config["http"]["routers"];
    for r in ["alice-http", "bob-http"] {
        assert_eq!(routers[r]["middlewares"][0], "http-to-https", "{config}");
    }
    assert_eq!(
        config["http"]["middlewares"]["http-to-https"]["redirectScheme"]["scheme"],
        "https"
    );
}

#[test]
fn a_tenant_cannot_redefine_the_operators_shared_middleware() {
    let a = vm(
        "a",
        "alice",
        "project-a",
        "2024-02-01T00:00:00Z",
        "203.0.113.1",
    );
    // Older than alice, so it would own the name if tenants could.
    let mut b = vm(
        "b",
        "bob",
        "project-b",
        "2024-01-01T00:00:00Z",
        "203.0.113.2",
    );
    b.metadata = vec![(
        "traefik.http.middlewares.http-to-https.redirectscheme.scheme".into(),
        "http".into(),
    )];
    let out = generate(SEED, &[a, b]).unwrap();
    let config: serde_json::Value = serde_json::from_str(&out.config).unwrap();
    assert_eq!(
        config["http"]["middlewares"]["http-to-https"]["redirectScheme"]["scheme"], "https",
        "{config}"
    );
    assert!(
        out.diagnostics.iter().any(|d| d.instance_id == "b"
            && d.level == Level::Error
            && d.message.contains("operator's default_labels")),
        "{:?}",
        out.diagnostics
    );
    // Alice keeps her routes.
    assert!(
        config["http"]["routers"]["alice-http"].is_object(),
        "{config}"
    );
}

#[test]
fn templated_names_stay_with_their_project() {
    // Same VM name in two projects: the templated service is per instance,
    // so the younger one must not join the older one's load balancer.
    let a = vm(
        "a",
        "web",
        "project-a",
        "2024-01-01T00:00:00Z",
        "203.0.113.1",
    );
    let b = vm(
        "b",
        "web",
        "project-b",
        "2024-02-01T00:00:00Z",
        "203.0.113.2",
    );
    let out = generate(SEED, &[a, b]).unwrap();
    let config: serde_json::Value = serde_json::from_str(&out.config).unwrap();
    let servers = config["http"]["services"]["web"]["loadBalancer"]["servers"]
        .as_array()
        .unwrap();
    assert_eq!(servers.len(), 1, "{config}");
    assert_eq!(servers[0]["url"], "http://203.0.113.1:80");
}

#[test]
fn the_operators_names_are_the_operators_even_in_one_project() {
    // Alone, or among instances of its own project, a tenant's override is
    // dropped as it is among other projects: the outcome for one instance
    // must not depend on which other instances exist.
    let mut b = vm(
        "b",
        "bob",
        "project-a",
        "2024-01-01T00:00:00Z",
        "203.0.113.2",
    );
    b.metadata = vec![(
        "traefik.http.middlewares.http-to-https.redirectscheme.permanent".into(),
        "true".into(),
    )];
    let a = vm(
        "a",
        "alice",
        "project-a",
        "2024-02-01T00:00:00Z",
        "203.0.113.1",
    );
    for cloud in [vec![b.clone()], vec![a, b]] {
        let out = generate(SEED, &cloud).unwrap();
        let config: serde_json::Value = serde_json::from_str(&out.config).unwrap();
        let shared = &config["http"]["middlewares"]["http-to-https"]["redirectScheme"];
        assert!(shared["permanent"].is_null(), "{config}");
        assert!(
            out.diagnostics.iter().any(|d| d.instance_id == "b"
                && d.level == Level::Error
                && d.message
                    == "middleware http-to-https is defined by the operator's default_labels; this instance's own definition is dropped"),
            "{:?}",
            out.diagnostics
        );
    }
}
