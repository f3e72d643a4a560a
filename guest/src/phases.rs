//! `generate` in two phases (the WIT interface `phases`), so that the host
//! re-runs only what changed: `route` makes one `Part` per instance, the
//! host groups parts that share a key, `merge` runs `ownership` and `merge`
//! on each group, and the host joins the groups' entries (identical ones
//! kept once, differing ones dropped). That join must give what `generate`
//! gives, so the keys are everything that couples instances:
//!
//! - every name an instance defines, per kind (`ownership` gives a name to
//!   one project, `merge` merges or drops definitions of one name);
//! - the service each of its own routers points at (`ownership` drops a
//!   router pointing at another project's service);
//! - but not the routers and middlewares the operator's labels define under
//!   a fixed name with the same definition for every instance
//!   (`default_labels::constant_names`, e.g. `to-https`): every instance
//!   has them, so as keys they would make one group of the whole cloud. An
//!   instance's own labels cannot change them (`ownership::drop_overridden`
//!   drops the instance's definition in phase one), so they are identical
//!   wherever they appear and the host's join keeps them once.

use crate::default_labels;
use crate::defaults::Contribution;
use crate::dynamic::Configuration;
use crate::instance;
use crate::merge;
use crate::model::{Entry, Instance, Merged, Part};
use crate::names;
use crate::ownership;
use crate::resource::Resource;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Names the encoding of `Part::data`; data from another policy, or from
/// another version of this one, is refused rather than misread.
const FORMAT: &str = "traefik-openstack-guest/phases/1";

/// `Part::data`: the contribution and the instance's name, which `merge`
/// needs to order instances as `generate` does, by (id, name).
#[derive(Serialize)]
struct WireOut<'a> {
    format: &'a str,
    name: &'a str,
    contribution: &'a Contribution,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn {
    format: String,
    name: String,
    contribution: Contribution,
}

/// Phase one: each instance on its own, in the order given.
pub fn route(settings: &str, instances: &[Instance]) -> Result<Vec<Part>, String> {
    let s = Settings::parse(settings)?;
    let shared = default_labels::constant_names(&s);
    instances.iter().map(|i| part(i, &s, &shared)).collect()
}

fn part(
    inst: &Instance,
    s: &Settings,
    shared: &BTreeSet<(Resource, String)>,
) -> Result<Part, String> {
    let mut diagnostics = Vec::new();
    let Some(c) = instance::route(inst, s, &mut diagnostics) else {
        // Not routed: nothing to merge, nothing to share.
        return Ok(Part {
            instance_id: inst.id.clone(),
            keys: Vec::new(),
            data: Vec::new(),
            diagnostics,
        });
    };
    let wire = WireOut {
        format: FORMAT,
        name: &inst.name,
        contribution: &c,
    };
    let data =
        serde_json::to_vec(&wire).map_err(|e| format!("encoding instance {}: {e}", inst.id))?;
    Ok(Part {
        instance_id: inst.id.clone(),
        keys: keys(&c, shared),
        data,
        diagnostics,
    })
}

/// `<layer>.<section>.<name>`: the layer and section have no dot, so no two
/// (kind, name) give the same key. The name is folded, as `ownership`
/// compares names: `API` and `api` meet in one group.
fn key(r: Resource, name: &str) -> String {
    format!("{}.{}.{}", r.layer(), r.section(), names::fold(name))
}

/// See the module comment.
fn keys(c: &Contribution, shared: &BTreeSet<(Resource, String)>) -> Vec<String> {
    let mut keys = Vec::new();
    for r in Resource::ALL {
        for name in c.names(r) {
            if !is_shared(c, r, name, shared) {
                keys.push(key(r, name));
            }
        }
        let Some(s) = r.service_of() else { continue };
        for (router, service) in c.router_services(r) {
            // Not checked by `ownership` for the operator's routers; and a
            // name with `@` is another provider's, which no instance defines.
            if !c.operator_defines(r, router) && !service.contains('@') {
                keys.push(key(s, service));
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn is_shared(
    c: &Contribution,
    r: Resource,
    name: &str,
    shared: &BTreeSet<(Resource, String)>,
) -> bool {
    c.operator_defines(r, name) && shared.contains(&(r, name.to_ascii_lowercase()))
}

/// Phase two: each group on its own, in the order given.
pub fn merge(settings: &str, groups: &[Vec<Part>]) -> Result<Vec<Merged>, String> {
    // Not needed to merge, but bad settings are an error in every call.
    Settings::parse(settings)?;
    groups
        .iter()
        .enumerate()
        .map(|(g, parts)| merge_group(parts).map_err(|e| format!("group {g}: {e}")))
        .collect()
}

fn merge_group(parts: &[Part]) -> Result<Merged, String> {
    let mut routed = Vec::with_capacity(parts.len());
    for p in parts {
        if let Some(w) = decode(p)? {
            routed.push(w);
        }
    }
    // As `generate` orders instances; stable, so parts with the same id and
    // name stay in the order the host gives them.
    routed.sort_by(|a, b| {
        (&a.contribution.instance_id, &a.name).cmp(&(&b.contribution.instance_id, &b.name))
    });
    let mut contribs: Vec<Contribution> = routed.into_iter().map(|w| w.contribution).collect();
    let mut diagnostics = Vec::new();
    ownership::enforce(&mut contribs, &mut diagnostics);
    let definers = definers(&contribs);
    let (config, routes) = merge::combine(contribs, &mut diagnostics);
    diagnostics.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(Merged {
        entries: entries(&config, &definers)?,
        diagnostics,
        routes,
    })
}

/// The part's contribution, or none for an instance that is not routed.
fn decode(p: &Part) -> Result<Option<WireIn>, String> {
    if p.data.is_empty() {
        return Ok(None);
    }
    let bad = |why: String| format!("part of instance {}: {why}", p.instance_id);
    let w: WireIn = serde_json::from_slice(&p.data)
        .map_err(|e| bad(format!("data not made by this policy ({e})")))?;
    if w.format != FORMAT {
        return Err(bad(format!(
            "data in format {:?}, this policy reads {FORMAT:?}",
            w.format
        )));
    }
    if w.contribution.instance_id != p.instance_id {
        return Err(bad(format!(
            "data of another instance ({})",
            w.contribution.instance_id
        )));
    }
    Ok(Some(w))
}

type Definers = BTreeMap<(Resource, String), Vec<String>>;

/// Who defines each name once `ownership` has removed what it refuses.
fn definers(contribs: &[Contribution]) -> Definers {
    let mut out = Definers::new();
    for c in contribs {
        for r in Resource::ALL {
            for name in c.names(r) {
                out.entry((r, name.clone()))
                    .or_default()
                    .push(c.instance_id.clone());
            }
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    out
}

/// The group's configuration, one entry per name, each value written as
/// `generate` writes it.
fn entries(config: &Configuration, definers: &Definers) -> Result<Vec<Entry>, String> {
    use Resource::*;
    let mut out = Vec::new();
    if let Some(h) = &config.http {
        table(&mut out, HttpRouter, &h.routers, definers)?;
        table(&mut out, HttpService, &h.services, definers)?;
        table(&mut out, HttpMiddleware, &h.middlewares, definers)?;
    }
    if let Some(t) = &config.tcp {
        table(&mut out, TcpRouter, &t.routers, definers)?;
        table(&mut out, TcpService, &t.services, definers)?;
        table(&mut out, TcpMiddleware, &t.middlewares, definers)?;
    }
    if let Some(u) = &config.udp {
        table(&mut out, UdpRouter, &u.routers, definers)?;
        table(&mut out, UdpService, &u.services, definers)?;
    }
    Ok(out)
}

fn table<'a, T: Serialize>(
    out: &mut Vec<Entry>,
    r: Resource,
    items: impl IntoIterator<Item = (&'a String, T)>,
    definers: &Definers,
) -> Result<(), String> {
    for (name, item) in items {
        let value = serde_json::to_string(&item)
            .map_err(|e| format!("serializing {} {name}: {e}", r.noun()))?;
        out.push(Entry {
            kind: r.layer().into(),
            table: r.section().into(),
            name: name.clone(),
            value,
            definers: definers
                .get(&(r, name.clone()))
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Diagnostic, InstanceRoutes, Level};
    use std::collections::btree_map;
    use std::path::Path;

    /// The host's grouping: parts sharing a key, directly or through others,
    /// are one group (union-find). Groups in the order of their first part,
    /// parts in the order given.
    fn groups(parts: Vec<Part>) -> Vec<Vec<Part>> {
        fn root(up: &mut [usize], mut i: usize) -> usize {
            while up[i] != i {
                up[i] = up[up[i]];
                i = up[i];
            }
            i
        }
        let mut up: Vec<usize> = (0..parts.len()).collect();
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in parts.iter().enumerate() {
            for k in &p.keys {
                let j = *first.entry(k).or_insert(i);
                let (a, b) = (root(&mut up, i), root(&mut up, j));
                // The smaller index is the root: groups keep input order.
                up[a.max(b)] = a.min(b);
            }
        }
        let roots: Vec<usize> = (0..parts.len()).map(|i| root(&mut up, i)).collect();
        let mut by_root: BTreeMap<usize, Vec<Part>> = BTreeMap::new();
        for (p, r) in parts.into_iter().zip(roots) {
            by_root.entry(r).or_default().push(p);
        }
        by_root.into_values().collect()
    }

    struct Joined {
        config: String,
        diagnostics: Vec<Diagnostic>,
        routes: Vec<InstanceRoutes>,
    }

    /// The host's join: an entry several groups give identically is kept
    /// once; one they give differently is dropped, with an error on each of
    /// its definers. Written with every object's keys in byte order.
    fn join(parts: &[Part], merged: Vec<Merged>) -> Joined {
        let mut diagnostics: Vec<Diagnostic> =
            parts.iter().flat_map(|p| p.diagnostics.clone()).collect();
        let mut routes = Vec::new();
        // (kind, table, name) -> (value, definers, given differently)
        type Seen = (String, Vec<String>, bool);
        let mut all: BTreeMap<(String, String, String), Seen> = BTreeMap::new();
        for m in merged {
            diagnostics.extend(m.diagnostics);
            routes.extend(m.routes);
            for e in m.entries {
                assert!(!e.definers.is_empty(), "{e:?}");
                match all.entry((e.kind, e.table, e.name)) {
                    btree_map::Entry::Vacant(v) => {
                        v.insert((e.value, e.definers, false));
                    }
                    btree_map::Entry::Occupied(o) => {
                        let o = o.into_mut();
                        o.2 |= o.0 != e.value;
                        o.1.extend(e.definers);
                    }
                }
            }
        }
        type Doc = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;
        let mut doc = Doc::new();
        for ((kind, table, name), (value, mut definers, differ)) in all {
            if differ {
                definers.sort_unstable();
                definers.dedup();
                for id in definers {
                    diagnostics.push(Diagnostic {
                        instance_id: id,
                        level: Level::Error,
                        message: format!("{kind}.{table}.{name} differs between groups; dropped"),
                    });
                }
                continue;
            }
            doc.entry(kind)
                .or_default()
                .entry(table)
                .or_default()
                .insert(name, value);
        }
        let object = |items: Vec<(String, String)>| {
            let fields: Vec<String> = items
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                .collect();
            format!("{{{}}}", fields.join(","))
        };
        let config = object(
            doc.into_iter()
                .map(|(kind, tables)| {
                    let tables = tables
                        .into_iter()
                        .map(|(t, names)| (t, object(names.into_iter().collect())))
                        .collect();
                    (kind, object(tables))
                })
                .collect(),
        );
        Joined {
            config,
            diagnostics,
            routes,
        }
    }

    /// Per instance, as a multiset: across groups, and for instances that
    /// share an id, the order of messages is the host's to choose.
    fn sorted_diags(mut d: Vec<Diagnostic>) -> Vec<Diagnostic> {
        d.sort_by(|a, b| {
            (&a.instance_id, &a.message, a.level).cmp(&(&b.instance_id, &b.message, b.level))
        });
        d
    }

    fn sorted_routes(mut r: Vec<InstanceRoutes>) -> Vec<InstanceRoutes> {
        r.sort_by(|a, b| {
            (&a.instance_id, &a.address, &a.routers).cmp(&(&b.instance_id, &b.address, &b.routers))
        });
        r
    }

    /// Route, group, merge and join as the host will, compare with
    /// `generate`; returns the groups.
    fn assert_equivalent(what: &str, settings: &str, instances: &[Instance]) -> Vec<Vec<Part>> {
        let want = crate::generate(settings, instances).unwrap();
        let parts = route(settings, instances).unwrap();
        assert_eq!(parts.len(), instances.len(), "{what}");
        let groups = groups(parts.clone());
        let merged = merge(settings, &groups).unwrap();
        assert_eq!(merged.len(), groups.len(), "{what}");
        let got = join(&parts, merged);
        assert_eq!(got.config, want.config, "{what}: config");
        assert_eq!(
            sorted_diags(got.diagnostics),
            sorted_diags(want.diagnostics),
            "{what}: diagnostics"
        );
        assert_eq!(
            sorted_routes(got.routes),
            sorted_routes(want.routes),
            "{what}: routes"
        );
        groups
    }

    fn golden_cases() -> Vec<(String, String, Vec<Instance>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut cases: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        cases
            .into_iter()
            .map(|case| {
                let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
                let instances = serde_json::from_str(&read("instances.json")).unwrap();
                let name = case.file_name().unwrap().to_string_lossy().to_string();
                (name, read("settings.json"), instances)
            })
            .collect()
    }

    #[test]
    fn golden_cases_give_what_generate_gives() {
        let cases = golden_cases();
        assert!(cases.len() >= 9, "golden cases not found");
        for (name, settings, mut instances) in cases {
            assert_equivalent(&name, &settings, &instances);
            instances.reverse();
            assert_equivalent(&format!("{name} reversed"), &settings, &instances);
        }
    }

    #[test]
    fn hostile_rounds_give_what_generate_gives() {
        for (round, (settings, instances)) in crate::tests::hostile_rounds().into_iter().enumerate()
        {
            assert_equivalent(&format!("round {round}"), settings, &instances);
        }
    }

    use crate::synthetic::{SETTINGS as SYNTHETIC, instance as synthetic};

    #[test]
    fn the_synthetic_cloud_is_one_group_per_instance() {
        let instances: Vec<Instance> = (0..50).map(synthetic).collect();
        let groups = assert_equivalent("synthetic", SYNTHETIC, &instances);
        assert_eq!(groups.len(), instances.len());
        let parts = route(SYNTHETIC, &instances[..1]).unwrap();
        assert!(
            parts[0].keys.iter().all(|k| !k.contains("to-https")),
            "{:?}",
            parts[0].keys
        );
        let config: serde_json::Value =
            serde_json::from_str(&crate::generate(SYNTHETIC, &instances).unwrap().config).unwrap();
        assert!(config["http"]["middlewares"]["to-https"].is_object());
    }

    #[test]
    fn a_templated_fixed_name_is_a_key() {
        // Its value differs per instance: every definer must meet the others.
        let settings = r#"{"default_labels": {
            "traefik.http.middlewares.tag.headers.customrequestheaders.X-Name": "{{ .Name }}"}}"#;
        let instances: Vec<Instance> = (0..3).map(synthetic).collect();
        let groups = assert_equivalent("templated", settings, &instances);
        assert_eq!(groups.len(), 1);
    }

    #[test]
    fn a_router_pointing_at_a_service_meets_its_definers() {
        let mut a = synthetic(1);
        let mut b = synthetic(2);
        b.project_id = "other".into();
        b.created = "2027-01-01T00:00:00Z".into();
        b.metadata = vec![
            ("traefik.http.routers.steal.rule".into(), "Host(`x`)".into()),
            (
                "traefik.http.routers.steal.service".into(),
                "vm-00001".into(),
            ),
            (
                "traefik.http.services.mine.loadbalancer.server.port".into(),
                "80".into(),
            ),
        ];
        a.metadata.truncate(2);
        let groups = assert_equivalent("pointer", SYNTHETIC, &[a, b]);
        assert_eq!(groups.len(), 1);
    }

    #[test]
    fn one_router_name_defined_differently_is_one_group() {
        // Own services, one router name: only the router ties them.
        let vm = |i: usize, rule: &str| {
            let mut v = synthetic(i);
            v.metadata = vec![
                ("traefik.http.routers.www.rule".into(), rule.into()),
                ("traefik.http.routers.www.service".into(), v.name.clone()),
            ];
            v
        };
        let instances = [vm(1, "Host(`a`)"), vm(2, "Host(`b`)"), vm(3, "Host(`a`)")];
        let groups = assert_equivalent("router", "{}", &instances);
        assert_eq!(groups.len(), 1);
    }

    #[test]
    fn foreign_data_is_an_error_not_a_panic() {
        let mut parts = route(SYNTHETIC, &[synthetic(1)]).unwrap();
        for data in [&b"\xff\x00"[..], b"{}", b"[1,2]", b"{\"format\":\"x\"}"] {
            parts[0].data = data.to_vec();
            let e = merge(SYNTHETIC, &[parts.clone()]).unwrap_err();
            assert!(e.contains("group 0: part of instance"), "{e}");
        }
        let mut other = route(SYNTHETIC, &[synthetic(2)]).unwrap();
        other[0].instance_id = parts[0].instance_id.clone();
        assert!(
            merge(SYNTHETIC, &[other])
                .unwrap_err()
                .contains("another instance")
        );
        assert!(merge("{", &[]).is_err());
    }

    #[test]
    fn an_instance_not_routed_has_no_keys_and_no_data() {
        let mut i = synthetic(1);
        i.status = "SHUTOFF".into();
        let parts = route(SYNTHETIC, &[i]).unwrap();
        assert!(parts[0].keys.is_empty() && parts[0].data.is_empty());
        assert_eq!(parts[0].diagnostics[0].level, Level::Info);
        let merged = merge(SYNTHETIC, &[parts]).unwrap();
        assert!(merged[0].entries.is_empty() && merged[0].routes.is_empty());
    }

    /// `cargo test --release -p traefik-openstack-guest -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing_synthetic_10k() {
        let instances: Vec<Instance> = (0..10_000).map(synthetic).collect();
        let t = std::time::Instant::now();
        let want = crate::generate(SYNTHETIC, &instances).unwrap();
        let generate = t.elapsed();
        let t = std::time::Instant::now();
        let parts = route(SYNTHETIC, &instances).unwrap();
        let routed = t.elapsed();
        let groups = groups(parts.clone());
        let t = std::time::Instant::now();
        let merged = merge(SYNTHETIC, &groups).unwrap();
        let merging = t.elapsed();
        let t = std::time::Instant::now();
        let one = route(SYNTHETIC, &instances[..1]).unwrap();
        let one = merge(SYNTHETIC, &[one]).unwrap();
        let changed = t.elapsed();
        assert_eq!(one.len(), 1);
        assert_eq!(join(&parts, merged).config, want.config);
        let bytes: usize = parts.iter().map(|p| p.data.len()).sum();
        eprintln!(
            "10k: generate {generate:?}, route {routed:?}, merge {merging:?} ({} groups, {} bytes of data), one changed instance {changed:?}",
            groups.len(),
            bytes
        );
    }
}
