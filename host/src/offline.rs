//! Instances without a cloud: read from a file (`render --instances`,
//! `test`), written by `inventory`, optionally redacted.
//!
//! The file formats are the guest library's (`traefik_openstack_guest::input`),
//! so `wasmtime run` of the built-in module reads exactly what the host
//! reads. The conversions between that model and the host's instance are
//! `instance.rs`'s, field by field: a field added to either is a compile
//! error there, not a silent drop.

use std::collections::BTreeMap;
use std::path::Path;

use traefik_openstack_guest as guest;

use crate::engine::Route;
use crate::wit;

/// Why an instances file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InstancesError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a list of instances.
    #[error("{file}: {reason}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong, and where.
        reason: String,
    },
}

/// Reads instances from `path` (`-` is stdin) in either format the guest
/// library accepts: `inventory`'s output or a Nova `servers/detail` body.
pub fn read_instances(path: &Path) -> Result<Vec<wit::Instance>, InstancesError> {
    let file = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|source| InstancesError::Read {
        file: file.clone(),
        source,
    })?;
    parse_instances(&text).map_err(|reason| InstancesError::Format { file, reason })
}

/// Parses instances in either format.
pub(crate) fn parse_instances(text: &str) -> Result<Vec<wit::Instance>, String> {
    guest::input::parse_instances(text)
        .map(|list| {
            let mut interner = crate::instance::Interner::default();
            list.into_iter()
                .map(|i| wit::Instance::from_model(i, &mut interner))
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// The `inventory` format: a JSON array of instances as the module gets them.
pub fn inventory_json(instances: &[wit::Instance]) -> String {
    let model: Vec<guest::Instance> = instances.iter().map(wit::Instance::to_model).collect();
    serde_json::to_string_pretty(&model).expect("plain data")
}

/// The guest library's model of a diagnostic, for JSON output.
pub(crate) fn diagnostic_model(d: &wit::Diagnostic) -> guest::Diagnostic {
    let wit::Diagnostic {
        instance_id,
        level,
        message,
    } = d;
    guest::Diagnostic {
        instance_id: instance_id.clone(),
        level: match level {
            wit::Level::Info => guest::Level::Info,
            wit::Level::Warning => guest::Level::Warning,
            wit::Level::Error => guest::Level::Error,
        },
        message: message.clone(),
    }
}

/// The guest library's model of an instance's routes, for JSON output.
pub(crate) fn routes_model(r: &Route) -> guest::InstanceRoutes {
    let Route {
        instance_id,
        address,
        routers,
    } = r;
    guest::InstanceRoutes {
        instance_id: instance_id.to_string(),
        address: address.as_deref().map(str::to_owned),
        routers: routers.iter().map(|n| n.to_string()).collect(),
    }
}

/// Replaces tenant-identifying text with stand-ins, the same text always
/// by the same stand-in, so the redacted file still routes the same way:
/// two instances that shared a name still do, a label that named an
/// instance's address still names that instance's (stand-in) address.
///
/// Replaced: names, ids (instance, project, user, image), addresses and
/// MACs, descriptions, values of metadata that is not a label and tags that
/// are not labels. Kept: label keys and values (they are the routing
/// configuration being debugged) except for the replaced strings they
/// contain (a router named after its instance is renamed with it),
/// statuses, flavors, zones, regions, clouds, times.
pub fn redact(instances: &mut [wit::Instance], label_prefix: &str) {
    let mut r = Redactor::default();
    // Replace the identifying atoms first, so label values can refer to
    // them whatever order instances come in.
    for i in instances.iter_mut() {
        i.id = r.id(&i.id).into();
        i.project_id = r.id(&i.project_id).into();
        i.user_id = r.id(&i.user_id).into();
        i.image_id = i.image_id.as_deref().map(|v| r.id(v).into());
        i.name = r.token("vm", &i.name).into();
        i.description = i
            .description
            .as_deref()
            .map(|v| r.token("description", v).into());
        for a in &mut i.addresses {
            a.ip = r.ip(&a.ip, a.version).into();
            a.mac = a.mac.as_deref().map(|m| r.mac(m).into());
            a.network = r.token("network", &a.network).into();
        }
    }
    let label = format!("{label_prefix}.");
    for i in instances.iter_mut() {
        i.metadata.edit(|pairs| {
            for (key, value) in pairs {
                if key.starts_with(&label) {
                    // Router and service names are often the instance's name.
                    *key = r.within(key);
                    *value = r.within(value);
                } else {
                    *value = r.token("value", value);
                }
            }
        });
        for tag in &mut i.tags {
            *tag = match tag.split_once('=') {
                Some((key, value)) if key.starts_with(&label) => {
                    format!("{}={}", r.within(key), r.within(value))
                }
                _ => r.token("tag", tag),
            }
            .into();
        }
    }
}

#[derive(Default)]
struct Redactor {
    /// original -> stand-in, for every replaced string.
    seen: BTreeMap<String, String>,
    counts: BTreeMap<&'static str, u32>,
}

impl Redactor {
    fn next(&mut self, kind: &'static str) -> u32 {
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        *n
    }

    fn remember(&mut self, original: &str, make: impl FnOnce(&mut Self) -> String) -> String {
        if original.is_empty() {
            return String::new();
        }
        if let Some(known) = self.seen.get(original) {
            return known.clone();
        }
        let stand_in = make(self);
        self.seen.insert(original.to_owned(), stand_in.clone());
        stand_in
    }

    fn token(&mut self, kind: &'static str, original: &str) -> String {
        self.remember(original, |r| format!("{kind}-{}", r.next(kind)))
    }

    fn id(&mut self, original: &str) -> String {
        self.remember(original, |r| {
            format!("00000000-0000-4000-8000-{:012x}", r.next("id"))
        })
    }

    fn ip(&mut self, original: &str, version: u8) -> String {
        self.remember(original, |r| {
            let n = r.next("ip");
            if version == 6 {
                format!("fd00::{n:x}")
            } else {
                // 198.18.0.0/15 is reserved for benchmarks: never a real host.
                format!("198.{}.{}.{}", 18 + (n >> 16 & 1), n >> 8 & 0xff, n & 0xff)
            }
        })
    }

    fn mac(&mut self, original: &str) -> String {
        self.remember(original, |r| {
            let n = r.next("mac");
            format!(
                "fa:16:3e:{:02x}:{:02x}:{:02x}",
                n >> 16 & 0xff,
                n >> 8 & 0xff,
                n & 0xff
            )
        })
    }

    /// `text` with every replaced string in it replaced, longest first so
    /// that `vm-10` is not read as `vm-1` followed by `0`.
    fn within(&self, text: &str) -> String {
        let mut known: Vec<(&String, &String)> = self.seen.iter().collect();
        known.sort_by_key(|(original, _)| std::cmp::Reverse(original.len()));
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            for (original, stand_in) in &known {
                if let Some(after) = rest.strip_prefix(original.as_str()) {
                    out.push_str(stand_in);
                    rest = after;
                    continue 'scan;
                }
            }
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, ip: &str) -> wit::Instance {
        wit::Instance {
            id: id.into(),
            name: name.into(),
            status: "ACTIVE".into(),
            project_id: "acme-project".into(),
            user_id: "alice".into(),
            cloud: "training".into(),
            region: "RegionOne".into(),
            availability_zone: Some("nova".into()),
            flavor_name: Some("m1.small".into()),
            image_id: None,
            created: "2026-01-01T00:00:00Z".into(),
            updated: "2026-01-01T00:00:00Z".into(),
            description: Some("alice's box".into()),
            metadata: vec![
                (
                    "traefik.http.routers.web.rule".to_string(),
                    format!("Host(`{name}.example.com`) || ClientIP(`{ip}`)"),
                ),
                ("owner".into(), "alice@acme.example".into()),
            ]
            .into(),
            tags: vec!["traefik.enable=true".into(), "acme".into()],
            addresses: vec![wit::Address {
                network: "acme-net".into(),
                ip: ip.into(),
                version: 4,
                kind: wit::AddressKind::Fixed,
                mac: Some("fa:16:3e:12:34:56".into()),
            }],
        }
    }

    #[test]
    fn redaction_is_consistent_and_keeps_the_structure() {
        let mut list = vec![
            instance("uuid-a", "student1", "10.1.2.3"),
            instance("uuid-b", "student10", "10.1.2.4"),
            instance("uuid-c", "student1", "10.1.2.5"),
        ];
        redact(&mut list, "traefik");
        let text = inventory_json(&list);
        for secret in ["uuid-", "student", "10.1.2", "acme", "alice", "12:34:56"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        // the same name gets the same stand-in; a longer one its own
        assert_eq!(list[0].name, list[2].name);
        assert_ne!(list[0].name, list[1].name);
        assert_eq!(list[0].project_id, list[1].project_id);
        // labels keep their meaning, pointing at the stand-ins
        assert_eq!(
            list[1].metadata.iter().next().unwrap().1,
            format!(
                "Host(`{}.example.com`) || ClientIP(`{}`)",
                list[1].name, list[1].addresses[0].ip
            )
        );
        assert_eq!(&*list[0].tags[0], "traefik.enable=true");
        assert_eq!(&*list[0].status, "ACTIVE");
        assert_eq!(list[0].addresses[0].version, 4);
        // and the result reads back in the inventory format
        let back = parse_instances(&text).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn conversions_roundtrip() {
        let i = instance("id", "vm", "2001:db8::1");
        assert_eq!(
            wit::Instance::from_model(i.to_model(), &mut Default::default()),
            i
        );
    }
}
