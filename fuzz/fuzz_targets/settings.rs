//! The `[routes]` settings as the module receives them (JSON), then a run
//! of the policy with them on a few instances: a run that succeeds writes
//! a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack_guest::fuzzing::settings;
use traefik_openstack_guest::{Address, AddressKind, Instance, generate};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if settings(json).is_err() {
        assert!(
            generate(json, &[]).is_err(),
            "generate took what Settings refused"
        );
        return;
    }
    let instances: Vec<Instance> = (0..3)
        .map(|n| Instance {
            id: format!("id-{n}"),
            name: format!("vm-{n}.example"),
            status: "ACTIVE".into(),
            project_id: "p".into(),
            metadata: vec![
                ("traefik.enable".into(), "true".into()),
                ("env".into(), "prod".into()),
            ],
            tags: vec!["web".into()],
            addresses: vec![Address {
                network: "net".into(),
                ip: format!("10.0.0.{n}"),
                version: 4,
                kind: AddressKind::Fixed,
                mac: None,
            }],
            ..Default::default()
        })
        .collect();
    let out = generate(json, &instances).expect("settings that parse generate");
    let config: serde_json::Value = serde_json::from_str(&out.config).expect("config is JSON");
    assert!(config.is_object());
});
