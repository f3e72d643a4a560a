//! What a store holds of ours, and the transaction that makes it hold the
//! next layout: changed keys put, stale keys deleted, the ownership index
//! kept beside the root.
//!
//! Ownership is per resource (`http/routers/web`): one index key
//! `<index_key>/<root_key>/owned/http/routers/web` per resource a sidecar
//! wrote. Only keys under owned resources are ever deleted; anything else
//! under the root belongs to someone else and is left alone, and a resource
//! of ours that has the name of such a one (in any case: Traefik would read
//! the two as one) is not written over it but left out. The index
//! lives outside the root on purpose: Traefik reads every key that starts
//! with the root (a plain prefix, not a directory), so it must not start
//! with it either (checked by the configuration).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use traefik_openstack_guest::fold;

use super::layout::{Layout, resource_of};

/// The keys of one store's tree: the root Traefik reads and our index.
#[derive(Debug, Clone)]
pub struct Names {
    /// `root_key` (`traefik`).
    pub root: String,
    /// `<index_key>/<root_key>`: ownership, leader and fence keys.
    pub index: String,
}

impl Names {
    /// The names for `root` with the index under `index_key`.
    pub fn new(root: &str, index_key: &str) -> Self {
        Self {
            root: root.trim_matches('/').to_owned(),
            index: format!("{}/{}", index_key.trim_matches('/'), root.trim_matches('/')),
        }
    }

    /// `<root>/`: every key Traefik reads starts with it.
    pub fn root_prefix(&self) -> String {
        format!("{}/", self.root)
    }

    /// Where the index keys of owned resources start.
    pub fn owned_prefix(&self) -> String {
        format!("{}/owned/", self.index)
    }

    fn owned_key(&self, resource: &str) -> String {
        format!("{}/owned/{resource}", self.index)
    }

    /// The leader key of the lease.
    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.index)
    }

    /// Redis: the counter fencing tokens are drawn from.
    pub fn fence_key(&self) -> String {
        format!("{}/fence", self.index)
    }
}

/// What a store holds of ours, as far as we know.
#[derive(Debug, Default, Clone)]
pub struct Held {
    /// Keys under owned resources -> hash of their value.
    pub keys: HashMap<String, u64>,
    /// Resources whose index key exists.
    pub resources: BTreeSet<String>,
    /// Resources under the root that no sidecar indexed (the operator's
    /// own, say), by folded name, with their keys as last read.
    pub foreign: BTreeMap<String, Vec<String>>,
}

/// One transaction's worth of changes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// Keys to write, with their values.
    pub puts: Vec<(String, String)>,
    /// Keys to delete.
    pub deletes: Vec<String>,
    /// Resources of the layout left out because a foreign resource has
    /// their name.
    pub refused: Vec<String>,
}

impl Changes {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// Operations in the transaction.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// Bytes of keys and values, about what the request carries.
    pub fn bytes(&self) -> usize {
        let puts: usize = self.puts.iter().map(|(k, v)| k.len() + v.len()).sum();
        puts + self.deletes.iter().map(String::len).sum::<usize>()
    }
}

fn hash(value: &str) -> u64 {
    // SipHash with fixed keys: the same in every run, so what was read back
    // compares with what is about to be written.
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Held {
    /// What a store that held nothing holds after `layout` was written.
    pub fn of(layout: &Layout) -> Self {
        Self::default().after(layout, &Changes::default(), "")
    }

    /// What the store holds after `changes`, the diff of `layout` against
    /// `self`, were written.
    pub fn after(self, layout: &Layout, changes: &Changes, root: &str) -> Self {
        let refused = Refused::new(&changes.refused, root);
        Self {
            keys: layout
                .keys
                .iter()
                .filter(|(k, _)| refused.keeps_key(k))
                .map(|(k, v)| (k.clone(), hash(v)))
                .collect(),
            resources: layout
                .resources
                .iter()
                .filter(|r| !refused.has(r))
                .cloned()
                .collect(),
            foreign: self.foreign,
        }
    }

    /// Whether a foreign resource would be read as one with `resource`.
    pub fn has_foreign_twin(&self, resource: &str) -> bool {
        !self.foreign.is_empty() && self.foreign.contains_key(fold(resource).as_ref())
    }

    /// From a read of the store: every key under the root (key, value) and
    /// every index key under [`Names::owned_prefix`]. Keys of resources
    /// nobody indexed are someone else's and not held.
    pub fn read<'a>(
        names: &Names,
        root_keys: impl IntoIterator<Item = (&'a str, &'a str)>,
        index_keys: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let prefix = names.owned_prefix();
        let resources: BTreeSet<String> = index_keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect();
        let mut keys = HashMap::new();
        let mut foreign: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in root_keys {
            match resource_of(k, &names.root) {
                Some(r) if resources.contains(r) => drop(keys.insert(k.to_owned(), hash(v))),
                Some(r) => foreign
                    .entry(fold(r).into_owned())
                    .or_default()
                    .push(k.to_owned()),
                None => {}
            }
        }
        Self {
            keys,
            resources,
            foreign,
        }
    }
}

/// The changes that take a store from `held` to `layout`: keys whose value
/// differs are put, held keys no longer wanted are deleted, index keys
/// follow the resources (`owner` is the value of a new index key). A
/// resource that would be read as one with a foreign one is refused: not
/// written, and deleted if it was ours.
pub fn diff(layout: &Layout, held: &Held, names: &Names, owner: &str) -> Changes {
    let refused_resources: Vec<String> = layout
        .resources
        .iter()
        .filter(|r| held.has_foreign_twin(r))
        .cloned()
        .collect();
    let refused = Refused::new(&refused_resources, &names.root);
    let mut changes = Changes::default();
    for (k, v) in &layout.keys {
        if held.keys.get(k) != Some(&hash(v)) && refused.keeps_key(k) {
            changes.puts.push((k.clone(), v.clone()));
        }
    }
    for resource in layout.resources.difference(&held.resources) {
        if !refused.has(resource) {
            changes
                .puts
                .push((names.owned_key(resource), owner.to_owned()));
        }
    }
    let mut stale: Vec<String> = held
        .keys
        .keys()
        .filter(|k| !layout.keys.contains_key(*k) || !refused.keeps_key(k))
        .cloned()
        .collect();
    stale.sort_unstable();
    changes.deletes = stale;
    for resource in &held.resources {
        if !layout.resources.contains(resource) || refused.has(resource) {
            changes.deletes.push(names.owned_key(resource));
        }
    }
    changes.refused = refused_resources;
    changes
}

/// The resources a diff refused, to filter the layout's keys by.
struct Refused<'a> {
    resources: BTreeSet<&'a str>,
    root: &'a str,
}

impl<'a> Refused<'a> {
    fn new(resources: &'a [String], root: &'a str) -> Self {
        Refused {
            resources: resources.iter().map(String::as_str).collect(),
            root,
        }
    }

    fn has(&self, resource: &str) -> bool {
        self.resources.contains(resource)
    }

    /// Whether `key` lies outside every refused resource.
    fn keeps_key(&self, key: &str) -> bool {
        self.resources.is_empty()
            || resource_of(key, self.root).is_none_or(|r| !self.resources.contains(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::kv::layout::flatten;
    use serde_json::json;

    fn names() -> Names {
        Names::new("traefik", "_traefik-openstack")
    }

    fn router(name: &str, rule: &str) -> serde_json::Value {
        json!({"http": {"routers": {name: {"rule": rule, "service": "s"}}}})
    }

    #[test]
    fn first_write_puts_keys_and_index() {
        let l = flatten(&router("web", "Host(`a`)"), "traefik");
        let c = diff(&l, &Held::default(), &names(), "me");
        assert_eq!(
            c.puts,
            [
                ("traefik/http/routers/web/rule", "Host(`a`)"),
                ("traefik/http/routers/web/service", "s"),
                ("_traefik-openstack/traefik/owned/http/routers/web", "me"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(c.deletes.is_empty());
    }

    #[test]
    fn one_change_puts_one_key_and_shrinking_deletes_everything_ours() {
        let n = names();
        let a = flatten(&router("web", "Host(`a`)"), "traefik");
        let held = Held::of(&a);
        assert!(diff(&a, &held, &n, "me").is_empty());
        let b = flatten(&router("web", "Host(`b`)"), "traefik");
        let c = diff(&b, &held, &n, "me");
        assert_eq!(
            c.puts,
            [(
                "traefik/http/routers/web/rule".to_owned(),
                "Host(`b`)".to_owned()
            )]
        );
        assert!(c.deletes.is_empty());
        let none = flatten(&json!({}), "traefik");
        let c = diff(&none, &held, &n, "me");
        assert!(c.puts.is_empty());
        assert_eq!(
            c.deletes,
            [
                "traefik/http/routers/web/rule",
                "traefik/http/routers/web/service",
                "_traefik-openstack/traefik/owned/http/routers/web",
            ]
        );
    }

    #[test]
    fn a_read_holds_only_indexed_resources() {
        let n = names();
        let held = Held::read(
            &n,
            [
                ("traefik/http/routers/web/rule", "Host(`a`)"),
                ("traefik/http/routers/theirs/rule", "Host(`t`)"),
                ("traefik/http/routers/web2/rule", "Host(`w`)"),
            ],
            ["_traefik-openstack/traefik/owned/http/routers/web"],
        );
        assert_eq!(held.keys.len(), 1);
        let none = flatten(&json!({}), "traefik");
        let c = diff(&none, &held, &n, "me");
        assert_eq!(
            c.deletes,
            [
                "traefik/http/routers/web/rule",
                "_traefik-openstack/traefik/owned/http/routers/web"
            ]
        );
    }

    #[test]
    fn a_foreign_resource_of_our_name_in_any_case_keeps_ours_out() {
        let n = names();
        // Read back: `web` was ours, the operator has since written `WEB`
        // and has `api` of their own.
        let held = Held::read(
            &n,
            [
                ("traefik/http/routers/web/rule", "Host(`a`)"),
                ("traefik/http/routers/WEB/rule", "Host(`op`)"),
                ("traefik/http/routers/api/rule", "Host(`op`)"),
            ],
            ["_traefik-openstack/traefik/owned/http/routers/web"],
        );
        assert_eq!(
            held.foreign.keys().collect::<Vec<_>>(),
            ["http/routers/api", "http/routers/web"]
        );
        let mut config = router("web", "Host(`a`)");
        config["http"]["routers"]["Api"] = json!({"rule": "Host(`b`)", "service": "s"});
        config["http"]["routers"]["other"] = json!({"rule": "Host(`c`)", "service": "s"});
        let layout = flatten(&config, "traefik");
        let c = diff(&layout, &held, &n, "me");
        assert_eq!(c.refused, ["http/routers/Api", "http/routers/web"]);
        // Only `other` is written; our `web` goes, theirs stays.
        assert!(
            c.puts.iter().all(|(k, _)| k.contains("/routers/other")),
            "{c:?}"
        );
        assert_eq!(
            c.deletes,
            [
                "traefik/http/routers/web/rule",
                "_traefik-openstack/traefik/owned/http/routers/web"
            ]
        );
        let after = held.after(&layout, &c, "traefik");
        assert_eq!(
            after.resources.iter().collect::<Vec<_>>(),
            ["http/routers/other"]
        );
        assert_eq!(after.foreign.len(), 2);
        assert!(diff(&layout, &after, &n, "me").puts.is_empty());
    }
}
