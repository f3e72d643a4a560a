//! Across instances, as Traefik merges the configurations of its Docker
//! containers: services of the same name merge their servers (replicas),
//! identical routers and middlewares are kept once, and a name defined
//! differently by several instances is dropped, with an error on each
//! instance involved.
//!
//! Names are shared only within one project. With `all_projects`, tenants
//! of different projects must not be able to add their servers to another
//! project's service, knock its router out with a conflicting definition,
//! or point a router at its service (skipping its middlewares). So a name
//! belongs to the project of its oldest instance (`created`, then id);
//! definitions from other projects are dropped with an error on their own
//! instances, and the owner keeps its name.

use crate::assemble::{Contribution, definition_key};
use crate::dynamic::{Configuration, HttpConfig, Service, Target, TcpConfig, UdpConfig};
use crate::model::{Diagnostic, InstanceRoutes, Level};
use std::collections::{BTreeMap, btree_map};

/// Instances named in one conflict message; the rest are counted.
const MAX_NAMED: usize = 5;

/// One name's definition so far, and which contributions gave it.
struct Entry<T> {
    item: T,
    /// Indexes into the contributions; the first is kept out of the `Vec`
    /// because most names have one definer, and an empty `Vec` costs nothing.
    first: usize,
    more: Vec<usize>,
    conflict: bool,
}

struct Merger<T> {
    what: &'static str,
    items: BTreeMap<String, Entry<T>>,
}

impl<T> Merger<T> {
    fn new(what: &'static str) -> Self {
        Merger {
            what,
            items: BTreeMap::new(),
        }
    }

    /// `combine` merges `new` into the existing item, or reports a conflict.
    /// Items are moved in, never cloned.
    fn add(&mut self, at: usize, name: String, new: T, combine: impl Fn(&mut T, T) -> bool) {
        match self.items.entry(name) {
            btree_map::Entry::Vacant(v) => {
                v.insert(Entry {
                    item: new,
                    first: at,
                    more: Vec::new(),
                    conflict: false,
                });
            }
            btree_map::Entry::Occupied(o) => {
                let e = o.into_mut();
                e.more.push(at);
                // Once conflicting, the name is dropped whatever comes next.
                if !e.conflict && !combine(&mut e.item, new) {
                    e.conflict = true;
                }
            }
        }
    }

    fn finish(self, contribs: &[Contribution], diags: &mut Vec<Diagnostic>) -> BTreeMap<String, T> {
        let mut kept = BTreeMap::new();
        for (name, e) in self.items {
            if !e.conflict {
                kept.insert(name, e.item);
                continue;
            }
            let mut ids: Vec<&str> = std::iter::once(e.first)
                .chain(e.more)
                .map(|i| contribs[i].instance_id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut named = ids
                .iter()
                .take(MAX_NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if ids.len() > MAX_NAMED {
                named.push_str(&format!(" and {} more", ids.len() - MAX_NAMED));
            }
            for id in &ids {
                diags.push(Diagnostic {
                    instance_id: id.to_string(),
                    level: Level::Error,
                    message: format!(
                        "{} {name} defined differently by several instances ({named}); dropped",
                        self.what
                    ),
                });
            }
        }
        kept
    }
}

fn same<T: PartialEq>(old: &mut T, new: T) -> bool {
    *old == new
}

/// Replicas: servers are appended here and de-duplicated once in
/// `finish_servers`, not searched on every merge (quadratic for a service
/// with many replicas).
fn merge_servers<S>(old: &mut Service<S>, new: Service<S>) -> bool {
    if !old.load_balancer.mergeable(&new.load_balancer) {
        return false;
    }
    old.load_balancer.servers.extend(new.load_balancer.servers);
    true
}

/// Keeps the first server added for each target, then sorts them.
fn finish_servers<S: Target + Ord>(m: &mut BTreeMap<String, Service<S>>) {
    for s in m.values_mut() {
        let servers = &mut s.load_balancer.servers;
        // Stable: among equal targets, the first added stays first.
        servers.sort_by(|a, b| a.target().cmp(b.target()));
        servers.dedup_by(|a, b| a.target() == b.target());
        servers.sort();
    }
}

/// Owner of the names the operator's `default_labels` define with a fixed
/// name: no project, shared by all.
const OPERATOR: &str = "";

/// For each name, the project of its oldest defining instance, or
/// [`OPERATOR`] when some instance has it from the operator's defaults.
fn owners<'a, V: 'a>(
    contribs: &'a [Contribution],
    what: &str,
    map: impl Fn(&'a Contribution) -> &'a BTreeMap<String, V>,
) -> BTreeMap<&'a str, &'a str> {
    let mut oldest: BTreeMap<&str, (&str, &str, &str)> = BTreeMap::new();
    for c in contribs {
        for name in map(c).keys() {
            let key = if c.operator.contains(&definition_key(what, name)) {
                ("", "", OPERATOR)
            } else {
                (
                    c.created.as_str(),
                    c.instance_id.as_str(),
                    c.project_id.as_str(),
                )
            };
            let slot = oldest.entry(name.as_str()).or_insert(key);
            if key < *slot {
                *slot = key;
            }
        }
    }
    oldest.into_iter().map(|(n, (_, _, p))| (n, p)).collect()
}

/// The names in `map` that another project, or the operator, owns, with a
/// diagnostic each.
fn foreign<V>(
    what: &str,
    c: &Contribution,
    map: &BTreeMap<String, V>,
    owners: &BTreeMap<&str, &str>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in map.keys() {
        let message = match owners.get(name.as_str()) {
            Some(&OPERATOR) if !c.operator.contains(&definition_key(what, name)) => format!(
                "{what} {name} is defined by the operator's default_labels; this instance's own definition is dropped"
            ),
            Some(p) if *p != OPERATOR && *p != c.project_id => {
                format!("{what} {name} is already used by an instance of another project; dropped")
            }
            _ => continue,
        };
        diags.push(Diagnostic {
            instance_id: c.instance_id.clone(),
            level: Level::Error,
            message,
        });
        out.push(name.clone());
    }
    out
}

/// Routers (not already dropped) that point at a service of another project.
fn borrowing<'r>(
    what: &str,
    c: &Contribution,
    routers: impl Iterator<Item = (&'r String, &'r String)>,
    dropped: &mut Vec<String>,
    owners: &BTreeMap<&str, &str>,
    diags: &mut Vec<Diagnostic>,
) {
    let before = dropped.len();
    for (name, service) in routers {
        if dropped[..before].contains(name) {
            continue;
        }
        if owners
            .get(service.as_str())
            .is_some_and(|p| *p != OPERATOR && *p != c.project_id)
        {
            diags.push(Diagnostic {
                instance_id: c.instance_id.clone(),
                level: Level::Error,
                message: format!(
                    "{what} {name}: service {service} belongs to another project; router dropped"
                ),
            });
            dropped.push(name.clone());
        }
    }
}

/// What `by_project` removes from one contribution, per map.
#[derive(Default)]
struct Drops {
    routers: Vec<String>,
    services: Vec<String>,
    middlewares: Vec<String>,
    tcp_routers: Vec<String>,
    tcp_services: Vec<String>,
    tcp_middlewares: Vec<String>,
    udp_routers: Vec<String>,
    udp_services: Vec<String>,
}

fn remove_all<V>(map: &mut BTreeMap<String, V>, names: Vec<String>) {
    for n in names {
        map.remove(&n);
    }
}

/// Removes from each contribution the names other projects own. Decided on
/// the untouched contributions first (ownership looks at all of them), then
/// applied in place: nothing is cloned but the dropped names.
fn by_project(contribs: &mut [Contribution], diags: &mut Vec<Diagnostic>) {
    // One project: nobody else can own a name.
    if contribs
        .windows(2)
        .all(|w| w[0].project_id == w[1].project_id)
    {
        return;
    }
    let drops: Vec<Drops> = {
        let all: &[Contribution] = contribs;
        let r = owners(all, "router", |c| &c.http.routers);
        let s = owners(all, "service", |c| &c.http.services);
        let m = owners(all, "middleware", |c| &c.http.middlewares);
        let tr = owners(all, "tcp router", |c| &c.tcp.routers);
        let ts = owners(all, "tcp service", |c| &c.tcp.services);
        let tm = owners(all, "tcp middleware", |c| &c.tcp.middlewares);
        let ur = owners(all, "udp router", |c| &c.udp.routers);
        let us = owners(all, "udp service", |c| &c.udp.services);
        all.iter()
            .map(|c| {
                let mut d = Drops {
                    routers: foreign("router", c, &c.http.routers, &r, diags),
                    services: foreign("service", c, &c.http.services, &s, diags),
                    middlewares: foreign("middleware", c, &c.http.middlewares, &m, diags),
                    tcp_routers: foreign("tcp router", c, &c.tcp.routers, &tr, diags),
                    tcp_services: foreign("tcp service", c, &c.tcp.services, &ts, diags),
                    tcp_middlewares: foreign("tcp middleware", c, &c.tcp.middlewares, &tm, diags),
                    udp_routers: foreign("udp router", c, &c.udp.routers, &ur, diags),
                    udp_services: foreign("udp service", c, &c.udp.services, &us, diags),
                };
                let http = c.http.routers.iter().map(|(n, r)| (n, &r.service));
                borrowing("router", c, http, &mut d.routers, &s, diags);
                let tcp = c.tcp.routers.iter().map(|(n, r)| (n, &r.service));
                borrowing("tcp router", c, tcp, &mut d.tcp_routers, &ts, diags);
                let udp = c.udp.routers.iter().map(|(n, r)| (n, &r.service));
                borrowing("udp router", c, udp, &mut d.udp_routers, &us, diags);
                d
            })
            .collect()
    };
    for (c, d) in contribs.iter_mut().zip(drops) {
        remove_all(&mut c.http.routers, d.routers);
        remove_all(&mut c.http.services, d.services);
        remove_all(&mut c.http.middlewares, d.middlewares);
        remove_all(&mut c.tcp.routers, d.tcp_routers);
        remove_all(&mut c.tcp.services, d.tcp_services);
        remove_all(&mut c.tcp.middlewares, d.tcp_middlewares);
        remove_all(&mut c.udp.routers, d.udp_routers);
        remove_all(&mut c.udp.services, d.udp_services);
    }
}

pub fn merge(
    mut contribs: Vec<Contribution>,
    diags: &mut Vec<Diagnostic>,
) -> (Configuration, Vec<InstanceRoutes>) {
    by_project(&mut contribs, diags);
    let mut routers = Merger::new("router");
    let mut services = Merger::new("service");
    let mut middlewares = Merger::new("middleware");
    let mut tcp_routers = Merger::new("tcp router");
    let mut tcp_services = Merger::new("tcp service");
    let mut tcp_middlewares = Merger::new("tcp middleware");
    let mut udp_routers = Merger::new("udp router");
    let mut udp_services = Merger::new("udp service");
    // Each contribution's router names, (kind, name), for `routes` below:
    // the routers themselves are moved into the mergers.
    let mut router_names: Vec<Vec<(u8, String)>> = Vec::with_capacity(contribs.len());
    for (at, c) in contribs.iter_mut().enumerate() {
        let mut names = Vec::with_capacity(c.http.routers.len());
        for (n, r) in std::mem::take(&mut c.http.routers) {
            names.push((0, n.clone()));
            routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.http.services) {
            services.add(at, n, s, merge_servers);
        }
        for (n, m) in std::mem::take(&mut c.http.middlewares) {
            middlewares.add(at, n, m, same);
        }
        for (n, r) in std::mem::take(&mut c.tcp.routers) {
            names.push((1, n.clone()));
            tcp_routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.tcp.services) {
            tcp_services.add(at, n, s, merge_servers);
        }
        for (n, m) in std::mem::take(&mut c.tcp.middlewares) {
            tcp_middlewares.add(at, n, m, same);
        }
        for (n, r) in std::mem::take(&mut c.udp.routers) {
            names.push((2, n.clone()));
            udp_routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.udp.services) {
            udp_services.add(at, n, s, merge_servers);
        }
        router_names.push(names);
    }
    let mut http = HttpConfig {
        routers: routers.finish(&contribs, diags),
        services: services.finish(&contribs, diags),
        middlewares: middlewares.finish(&contribs, diags),
    };
    let mut tcp = TcpConfig {
        routers: tcp_routers.finish(&contribs, diags),
        services: tcp_services.finish(&contribs, diags),
        middlewares: tcp_middlewares.finish(&contribs, diags),
    };
    let mut udp = UdpConfig {
        routers: udp_routers.finish(&contribs, diags),
        services: udp_services.finish(&contribs, diags),
    };
    finish_servers(&mut http.services);
    finish_servers(&mut tcp.services);
    finish_servers(&mut udp.services);

    let routes = contribs
        .into_iter()
        .zip(router_names)
        .map(|(c, names)| {
            let mut names: Vec<String> = names
                .into_iter()
                .filter(|(kind, n)| match kind {
                    0 => http.routers.contains_key(n),
                    1 => tcp.routers.contains_key(n),
                    _ => udp.routers.contains_key(n),
                })
                .map(|(_, n)| n)
                .collect();
            names.sort_unstable();
            names.dedup();
            InstanceRoutes {
                instance_id: c.instance_id,
                address: Some(c.address),
                routers: names,
            }
        })
        .collect();
    (Configuration::new(http, tcp, udp), routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::{HttpServer, LoadBalancer, Router};

    fn contrib(id: &str, rule: &str, url: &str, pass: bool) -> Contribution {
        let mut http = HttpConfig::default();
        http.routers.insert(
            "web".into(),
            Router {
                rule: rule.into(),
                service: "web".into(),
                ..Default::default()
            },
        );
        let mut lb = LoadBalancer {
            servers: vec![HttpServer {
                url: url.into(),
                weight: None,
                preserve_path: None,
            }],
            options: Default::default(),
        };
        lb.options.insert("passHostHeader".into(), pass.into());
        http.services
            .insert("web".into(), Service { load_balancer: lb });
        Contribution {
            instance_id: id.into(),
            project_id: "p".into(),
            created: "2024-01-01T00:00:00Z".into(),
            address: "x".into(),
            http,
            tcp: Default::default(),
            udp: Default::default(),
            operator: Default::default(),
        }
    }

    #[test]
    fn replicas_merge_sorted() {
        let mut d = Vec::new();
        let (c, routes) = merge(
            vec![
                contrib("b", "Host(`w`)", "http://10.0.0.2:80", true),
                contrib("a", "Host(`w`)", "http://10.0.0.1:80", true),
                contrib("c", "Host(`w`)", "http://10.0.0.1:80", true),
            ],
            &mut d,
        );
        assert!(d.is_empty());
        let http = c.http.unwrap();
        let urls: Vec<&str> = http.services["web"]
            .load_balancer
            .servers
            .iter()
            .map(|s| s.url.as_str())
            .collect();
        assert_eq!(urls, vec!["http://10.0.0.1:80", "http://10.0.0.2:80"]);
        assert!(routes.iter().all(|r| r.routers == vec!["web"]));
    }

    fn in_project(mut c: Contribution, project: &str, created: &str) -> Contribution {
        c.project_id = project.into();
        c.created = created.into();
        c
    }

    #[test]
    fn another_project_cannot_join_knock_out_or_borrow_a_service() {
        let victim = in_project(
            contrib("v", "Host(`w`)", "http://10.0.0.1:80", true),
            "victim",
            "2024-01-01T00:00:00Z",
        );
        // Identical options: would have been merged as a replica.
        let joiner = in_project(
            contrib("j", "Host(`w`)", "http://10.9.9.9:80", true),
            "evil",
            "2024-02-01T00:00:00Z",
        );
        // Different options: would have dropped the victim's router too.
        let breaker = in_project(
            contrib("b", "Host(`x`)", "http://10.9.9.8:80", false),
            "evil",
            "2024-02-01T00:00:00Z",
        );
        // Its own router and service, pointing at the victim's service.
        let mut borrower = in_project(
            contrib("c", "Host(`y`)", "http://10.9.9.7:80", true),
            "evil",
            "2024-03-01T00:00:00Z",
        );
        let r = borrower.http.routers.remove("web").unwrap();
        borrower.http.routers.insert("mine".into(), r);
        borrower.http.services.clear();
        for order in [
            vec![
                victim.clone(),
                joiner.clone(),
                breaker.clone(),
                borrower.clone(),
            ],
            vec![
                borrower.clone(),
                breaker.clone(),
                joiner.clone(),
                victim.clone(),
            ],
        ] {
            let mut d = Vec::new();
            let (c, routes) = merge(order, &mut d);
            let http = c.http.unwrap();
            assert_eq!(http.routers.keys().collect::<Vec<_>>(), vec!["web"]);
            assert_eq!(http.routers["web"].rule, "Host(`w`)");
            let urls: Vec<&str> = http.services["web"]
                .load_balancer
                .servers
                .iter()
                .map(|s| s.url.as_str())
                .collect();
            assert_eq!(urls, vec!["http://10.0.0.1:80"]);
            assert!(d.iter().all(|d| d.instance_id != "v"), "{d:?}");
            assert!(d.iter().any(|d| d.instance_id == "c"
                && d.message
                    == "router mine: service web belongs to another project; router dropped"));
            assert!(d.iter().any(|d| d.instance_id == "j"
                && d.message
                    == "router web is already used by an instance of another project; dropped"));
            let v = routes.iter().find(|r| r.instance_id == "v").unwrap();
            assert_eq!(v.routers, vec!["web"]);
            assert!(
                routes
                    .iter()
                    .filter(|r| r.instance_id != "v")
                    .all(|r| r.routers.is_empty())
            );
        }
    }

    #[test]
    fn conflicts_dropped_with_diagnostics() {
        let mut d = Vec::new();
        let (c, routes) = merge(
            vec![
                contrib("a", "Host(`w`)", "http://10.0.0.1:80", true),
                contrib("b", "Host(`v`)", "http://10.0.0.2:80", false),
            ],
            &mut d,
        );
        assert_eq!(c, Configuration::default());
        assert_eq!(d.len(), 4);
        assert!(d[0].message.starts_with("router web defined differently"));
        assert!(routes.iter().all(|r| r.routers.is_empty()));
    }
}
