//! Tenant labels (metadata and tags) through the whole policy: collection,
//! decoding against Traefik's schema, ownership and merging.
//!
//! Input, NUL-separated: the `[routes]` settings JSON (empty: `{}`), then
//! `key=value` labels of the first instance (`tag:` before a segment makes it
//! a tag), `--` to start a second instance in the same project.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack_guest::{Address, AddressKind, Instance, generate};

fn instance(n: usize) -> Instance {
    Instance {
        id: format!("id-{n}"),
        name: format!("vm-{n}"),
        status: "ACTIVE".into(),
        project_id: "p".into(),
        addresses: vec![Address {
            network: "net".into(),
            ip: format!("10.0.0.{}", n + 1),
            version: 4,
            kind: AddressKind::Fixed,
            mac: None,
        }],
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let settings = parts.next().filter(|s| !s.is_empty()).unwrap_or("{}");
    let mut instances = vec![instance(0)];
    for part in parts {
        if part == "--" {
            instances.push(instance(instances.len()));
            continue;
        }
        let last = instances.last_mut().expect("one instance");
        match part.strip_prefix("tag:") {
            Some(tag) => last.tags.push(tag.to_owned()),
            None => {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                last.metadata.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    let Ok(out) = generate(settings, &instances) else {
        return;
    };
    let config: serde_json::Value = serde_json::from_str(&out.config).expect("config is JSON");
    assert!(config.is_object());
    // Nova's listing order must not matter.
    instances.reverse();
    let again = generate(settings, &instances).expect("same settings");
    assert_eq!(out.config, again.config);
});
