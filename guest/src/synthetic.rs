//! A synthetic cloud for benchmarks and tests of this policy and of its
//! hosts: `n` instances, each with 8 Traefik labels in its Nova metadata,
//! and settings with templated default labels (a router and a service per
//! instance, as a training lab would use) plus one shared middleware under
//! a fixed name, `to-https`. `bench/footprint.py` serves the same cloud as
//! Nova JSON.

use crate::{Address, AddressKind, Instance};

/// The `[routes]` table, as a host hands it to the module.
pub const SETTINGS: &str = r#"{
  "default_rule": "Host(`{{ normalize .Name }}.apps.example.com`)",
  "address": "floating",
  "entry_points": ["web", "websecure"],
  "default_labels": {
    "traefik.http.routers.{{ normalize .Name }}-http.rule": "Host(`{{ normalize .Name }}.apps.example.com`)",
    "traefik.http.routers.{{ normalize .Name }}-http.entrypoints": "web",
    "traefik.http.routers.{{ normalize .Name }}-http.middlewares": "to-https",
    "traefik.http.middlewares.to-https.redirectscheme.scheme": "https",
    "traefik.http.routers.{{ normalize .Name }}-https.rule": "Host(`{{ normalize .Name }}.apps.example.com`) || Host(`{{ .ID }}.id.example.com`)",
    "traefik.http.routers.{{ normalize .Name }}-https.entrypoints": "websecure",
    "traefik.http.routers.{{ normalize .Name }}-https.tls": "true",
    "traefik.http.services.{{ normalize .Name }}.loadbalancer.server.port": "{{ default \"80\" .Metadata.port }}"
  }
}"#;

/// One instance: ACTIVE, a fixed and a floating address, 8 labels.
pub fn instance(i: usize) -> Instance {
    let name = format!("vm-{i:05}");
    let ip = |base: u8| format!("{base}.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let label = |k: &str, v: String| (format!("traefik.{k}"), v);
    Instance {
        id: format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i as u64),
        name: name.clone(),
        status: "ACTIVE".into(),
        // One project: the policy refuses to share `to-https` across projects.
        project_id: "bench-project".into(),
        user_id: "user".into(),
        cloud: "bench".into(),
        region: "RegionOne".into(),
        availability_zone: Some("nova".into()),
        flavor_name: Some("m1.small".into()),
        image_id: Some("c2ab9a6e-2fd5-4dc9-a3ab-000000000001".into()),
        created: "2026-01-01T00:00:00Z".into(),
        updated: "2026-01-01T00:00:00Z".into(),
        description: None,
        metadata: vec![
            ("port".into(), "8080".into()),
            label("enable", "true".into()),
            label(
                &format!("http.routers.{name}-https.tls.certresolver"),
                "letsencrypt".into(),
            ),
            label(
                &format!("http.routers.{name}-https.middlewares"),
                format!("{name}-headers"),
            ),
            label(
                &format!("http.middlewares.{name}-headers.headers.customrequestheaders.X-Instance"),
                name.clone(),
            ),
            label(
                &format!("http.services.{name}.loadbalancer.passhostheader"),
                "true".into(),
            ),
            label(
                &format!("http.services.{name}.loadbalancer.healthcheck.path"),
                "/healthz".into(),
            ),
            label(
                &format!("http.services.{name}.loadbalancer.healthcheck.interval"),
                "10s".into(),
            ),
            label(&format!("http.routers.{name}-https.priority"), "10".into()),
        ],
        tags: vec![format!("team-{}", i % 7)],
        addresses: vec![
            Address {
                network: "private".into(),
                ip: ip(10),
                version: 4,
                kind: AddressKind::Fixed,
                mac: None,
            },
            Address {
                network: "private".into(),
                ip: ip(100),
                version: 4,
                kind: AddressKind::Floating,
                mac: None,
            },
        ],
    }
}

/// Instances `0..n`, as [`instance`] makes them.
pub fn instances(n: usize) -> Vec<Instance> {
    (0..n).map(instance).collect()
}
