//! Operator templates (`default_rule`, `default_labels`): parsing, then
//! rendering with tenant data, then the checks rendered rules go through.
//!
//! Input, NUL-separated: the template, the instance's name, then its
//! `key=value` metadata (`tag:` before a segment makes it a tag).
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack_guest::Instance;
use traefik_openstack_guest::fuzzing::template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let src = parts.next().unwrap_or_default();
    let mut inst = Instance {
        id: "id-1".into(),
        name: parts.next().unwrap_or("vm").into(),
        status: "ACTIVE".into(),
        project_id: "p".into(),
        ..Default::default()
    };
    for part in parts {
        match part.strip_prefix("tag:") {
            Some(tag) => inst.tags.push(tag.to_owned()),
            None => {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                inst.metadata.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    let _ = template(src, &inst);
});
