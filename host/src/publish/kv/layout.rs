//! Traefik's dynamic configuration as the keys its KV providers read
//! (`providers.etcd`, `providers.redis`): `<root>/http/routers/web/rule`,
//! list items as `/0`, `/1`, ..., maps by key, scalars as text.
//!
//! Traefik splits a key on `/` and reads a segment made only of digits as a
//! list index, so a name that is empty, holds a `/` or is all digits cannot
//! be written: such a resource (router, service, ...) is left out, with a
//! problem naming it, and the rest is published. It matches names case
//! insensitively, so names of one kind that differ only in case (`API`,
//! `api`) would be read as one resource with both's keys: each of them is
//! left out, as two definitions of one name are.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use traefik_openstack_guest::fold;

/// The keys of one configuration, grouped by the resource that owns them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Layout {
    /// Full key (`traefik/http/routers/web/rule`) -> value.
    pub keys: BTreeMap<String, String>,
    /// Resources (`http/routers/web`, relative to the root): the unit of
    /// ownership. Every key lies under one of them.
    pub resources: BTreeSet<String>,
    /// Resources left out, and why.
    pub problems: Vec<String>,
    /// The resources behind `problems`.
    left_out: BTreeSet<String>,
}

/// How deep a resource sits below the root: section / kind / name
/// (`http/routers/web`, `tls/options/default`, `tls/certificates/0`).
const RESOURCE_DEPTH: usize = 3;

impl Layout {
    /// Flattens `config` (the served JSON) under `root`.
    pub fn of(config: &Value, root: &str) -> Layout {
        let mut layout = Layout::default();
        let mut path = Vec::new();
        walk(config, &mut path, &mut |path, leaf| {
            layout.add(root, path, leaf);
        });
        layout
    }

    fn add(&mut self, root: &str, path: &[Segment], leaf: Leaf) {
        let resource_len = path.len().min(RESOURCE_DEPTH);
        let resource: Vec<&str> = path[..resource_len].iter().map(|s| s.text()).collect();
        let resource = resource.join("/");
        if let Some(bad) = path.iter().find_map(Segment::problem) {
            if self.left_out.insert(resource.clone()) {
                self.problems.push(format!("{resource}: {bad}"));
            }
            return;
        }
        let value = match leaf {
            Leaf::Text(t) => t,
            // An empty object inside a resource (`"tls": {}`) turns the
            // option on with its defaults, as `tls=true` does for labels;
            // an empty section or kind (`"http": {}`) is nothing at all.
            Leaf::EmptyObject if path.len() > RESOURCE_DEPTH => "true".to_owned(),
            Leaf::EmptyObject => return,
        };
        let mut key = String::with_capacity(root.len() + 64);
        key.push_str(root);
        for s in path {
            key.push('/');
            key.push_str(s.text());
        }
        self.resources.insert(resource);
        self.keys.insert(key, value);
    }

    /// Marks resources whose path differs from another's only in case (the
    /// built-in policy gives such names to one project; within a project,
    /// or from another policy, they reach here).
    fn leave_out_case_twins(&mut self) {
        let mut first: BTreeMap<Cow<'_, str>, &str> = BTreeMap::new();
        let mut twins = Vec::new();
        for resource in &self.resources {
            match first.entry(fold(resource)) {
                Entry::Vacant(v) => drop(v.insert(resource)),
                Entry::Occupied(o) => twins.push((o.get().to_string(), resource.clone())),
            }
        }
        for (a, b) in twins {
            for (this, other) in [(&a, &b), (&b, &a)] {
                if self.left_out.insert(this.clone()) {
                    self.problems.push(format!(
                        "{this}: differs from {other} only in case, which Traefik's KV providers read as one name"
                    ));
                }
            }
        }
    }

    /// Drops every key of a resource that had a problem in any of its keys
    /// (a key seen before the bad one would otherwise stay).
    fn settle(mut self, root: &str) -> Self {
        self.leave_out_case_twins();
        for resource in &self.left_out {
            let prefix = format!("{root}/{resource}/");
            self.keys.retain(|k, _| !k.starts_with(&prefix));
            self.resources.remove(resource);
        }
        self
    }
}

/// Flattens `config` under `root`; see [`Layout`].
pub fn flatten(config: &Value, root: &str) -> Layout {
    Layout::of(config, root).settle(root)
}

/// The resource a key under `root/` belongs to (`http/routers/web`).
pub fn resource_of<'k>(key: &'k str, root: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(root)?.strip_prefix('/')?;
    let end = rest
        .match_indices('/')
        .nth(RESOURCE_DEPTH - 1)
        .map_or(rest.len(), |(i, _)| i);
    Some(&rest[..end])
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(&'a str),
}

impl<'a> Segment<'a> {
    fn text(&self) -> &'a str {
        match self {
            Segment::Key(k) => k,
            Segment::Index(t) => t,
        }
    }

    fn problem(&self) -> Option<String> {
        let Segment::Key(k) = self else {
            return None;
        };
        if k.is_empty() {
            Some("an empty name cannot be a KV key".into())
        } else if k.contains('/') {
            Some(format!("the name {k:?} holds a '/', which splits KV keys"))
        } else if k.bytes().all(|b| b.is_ascii_digit()) {
            Some(format!(
                "the name {k:?} is all digits, which Traefik's KV providers read as a list index"
            ))
        } else {
            None
        }
    }
}

enum Leaf {
    Text(String),
    EmptyObject,
}

/// Index segments as text, made once.
fn index_text(i: usize) -> &'static str {
    static INDEXES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let table = INDEXES.get_or_init(|| (0..1024).map(|i| i.to_string()).collect());
    match table.get(i) {
        Some(s) => s,
        // Lists longer than 1024 items are rare enough to leak their labels.
        None => Box::leak(i.to_string().into_boxed_str()),
    }
}

fn walk<'a>(
    value: &'a Value,
    path: &mut Vec<Segment<'a>>,
    out: &mut impl FnMut(&[Segment<'a>], Leaf),
) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out(path, Leaf::Text(b.to_string())),
        Value::Number(n) => out(path, Leaf::Text(n.to_string())),
        Value::String(s) => out(path, Leaf::Text(s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(index_text(i)));
                walk(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) if map.is_empty() => {
            if !path.is_empty() {
                out(path, Leaf::EmptyObject);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Segment::Key(k));
                walk(v, path, out);
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(layout: &Layout) -> Vec<(String, String)> {
        layout
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn routers_services_lists_maps_and_scalars() {
        let config = json!({"http": {
            "routers": {"web": {
                "rule": "Host(`a.example.com`)",
                "entryPoints": ["web", "websecure"],
                "priority": 10,
                "tls": {},
                "service": "web"}},
            "services": {"web": {"loadBalancer": {
                "servers": [{"url": "http://10.0.0.1:80"}, {"url": "http://10.0.0.2:80"}],
                "passHostHeader": false}}},
            "middlewares": {"hdr": {"headers": {"customRequestHeaders": {"X-A": "1"}}}}
        }});
        let l = flatten(&config, "traefik");
        assert_eq!(
            keys(&l),
            [
                (
                    "traefik/http/middlewares/hdr/headers/customRequestHeaders/X-A",
                    "1"
                ),
                ("traefik/http/routers/web/entryPoints/0", "web"),
                ("traefik/http/routers/web/entryPoints/1", "websecure"),
                ("traefik/http/routers/web/priority", "10"),
                ("traefik/http/routers/web/rule", "Host(`a.example.com`)"),
                ("traefik/http/routers/web/service", "web"),
                ("traefik/http/routers/web/tls", "true"),
                (
                    "traefik/http/services/web/loadBalancer/passHostHeader",
                    "false"
                ),
                (
                    "traefik/http/services/web/loadBalancer/servers/0/url",
                    "http://10.0.0.1:80"
                ),
                (
                    "traefik/http/services/web/loadBalancer/servers/1/url",
                    "http://10.0.0.2:80"
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(
            l.resources.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "http/middlewares/hdr",
                "http/routers/web",
                "http/services/web"
            ]
        );
        assert!(l.problems.is_empty());
    }

    #[test]
    fn empty_sections_nulls_and_empty_lists_write_nothing() {
        let config = json!({"http": {"routers": {}}, "tcp": {}, "udp": null,
            "tls": {"certificates": []}});
        let l = flatten(&config, "traefik");
        assert!(l.keys.is_empty() && l.resources.is_empty(), "{l:?}");
        assert!(flatten(&json!({}), "traefik").keys.is_empty());
    }

    #[test]
    fn names_traefik_cannot_read_leave_out_their_resource_only() {
        let config = json!({"http": {"routers": {
            "123": {"rule": "Host(`a`)", "service": "s"},
            "a/b": {"rule": "Host(`b`)"},
            "ok": {"rule": "Host(`c`)", "middlewares": ["m"]},
            "zz": {"service": "s", "observability": {"": "x"}}
        }}});
        let l = flatten(&config, "traefik");
        assert_eq!(
            l.keys.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "traefik/http/routers/ok/middlewares/0",
                "traefik/http/routers/ok/rule"
            ]
        );
        assert_eq!(l.problems.len(), 3, "{:?}", l.problems);
        assert!(
            l.problems
                .iter()
                .any(|p| p.contains("\"123\"") && p.contains("list index"))
        );
        assert!(l.problems.iter().any(|p| p.starts_with("http/routers/zz")));
    }

    #[test]
    fn names_differing_only_in_case_leave_out_each_of_them() {
        let config = json!({"http": {
            "routers": {
                "API": {"rule": "Host(`evil`)", "service": "api"},
                "api": {"rule": "Host(`api`)", "service": "api"},
                "Web": {"rule": "Host(`web`)", "service": "web"}
            },
            "services": {"api": {"loadBalancer": {"servers": [{"url": "http://10.0.0.1"}]}}},
            "middlewares": {"web": {"headers": {"customRequestHeaders": {"X-A": "1"}}}}
        }});
        let l = flatten(&config, "traefik");
        // Another kind's `web` is not a twin of the router `Web`.
        assert_eq!(
            l.resources.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "http/middlewares/web",
                "http/routers/Web",
                "http/services/api"
            ]
        );
        assert!(
            !l.keys
                .keys()
                .any(|k| k.contains("routers/API") || k.contains("routers/api"))
        );
        assert_eq!(
            l.problems,
            [
                "http/routers/API: differs from http/routers/api only in case, which Traefik's KV providers read as one name",
                "http/routers/api: differs from http/routers/API only in case, which Traefik's KV providers read as one name",
            ]
        );
    }

    #[test]
    fn resource_of_a_key() {
        assert_eq!(
            resource_of("traefik/http/routers/web/tls/domains/0/main", "traefik"),
            Some("http/routers/web")
        );
        assert_eq!(
            resource_of("traefik/tls/certificates/0/certFile", "traefik"),
            Some("tls/certificates/0")
        );
        assert_eq!(resource_of("traefik/http/x", "traefik"), Some("http/x"));
        assert_eq!(resource_of("traefikx/http/routers/a/rule", "traefik"), None);
    }
}
