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

use crate::assemble::Contribution;
use crate::dynamic::{Configuration, HttpConfig, Service, Target, TcpConfig, UdpConfig};
use crate::model::{Diagnostic, InstanceRoutes, Level};
use std::collections::{BTreeMap, BTreeSet};

/// Instances named in one conflict message; the rest are counted.
const MAX_NAMED: usize = 5;

struct Merger<'a, T> {
    what: &'static str,
    items: BTreeMap<String, T>,
    owners: BTreeMap<String, Vec<&'a str>>,
    conflicts: BTreeSet<String>,
}

impl<'a, T> Merger<'a, T> {
    fn new(what: &'static str) -> Self {
        Merger {
            what,
            items: BTreeMap::new(),
            owners: BTreeMap::new(),
            conflicts: BTreeSet::new(),
        }
    }

    /// `combine` merges `new` into the existing item, or reports a conflict.
    fn add(&mut self, id: &'a str, name: &str, new: T, combine: impl Fn(&mut T, T) -> bool) {
        self.owners.entry(name.to_string()).or_default().push(id);
        match self.items.get_mut(name) {
            None => {
                self.items.insert(name.to_string(), new);
            }
            Some(old) => {
                if !combine(old, new) {
                    self.conflicts.insert(name.to_string());
                }
            }
        }
    }

    fn finish(mut self, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, T> {
        for name in &self.conflicts {
            self.items.remove(name);
            let mut ids: Vec<&str> = self.owners.get(name).cloned().unwrap_or_default();
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
        self.items
    }
}

fn same<T: PartialEq>(old: &mut T, new: T) -> bool {
    *old == new
}

fn merge_servers<S: Target + Ord>(old: &mut Service<S>, new: Service<S>) -> bool {
    if !old.load_balancer.mergeable(&new.load_balancer) {
        return false;
    }
    for s in new.load_balancer.servers {
        if !old
            .load_balancer
            .servers
            .iter()
            .any(|o| o.target() == s.target())
        {
            old.load_balancer.servers.push(s);
        }
    }
    true
}

fn sort_servers<S: Ord>(m: &mut BTreeMap<String, Service<S>>) {
    for s in m.values_mut() {
        s.load_balancer.servers.sort();
    }
}

/// For each name, the project of its oldest defining instance.
fn owners<'a, V: 'a>(
    contribs: &'a [Contribution],
    map: impl Fn(&'a Contribution) -> &'a BTreeMap<String, V>,
) -> BTreeMap<&'a str, &'a str> {
    let mut oldest: BTreeMap<&str, (&str, &str, &str)> = BTreeMap::new();
    for c in contribs {
        let key = (
            c.created.as_str(),
            c.instance_id.as_str(),
            c.project_id.as_str(),
        );
        for name in map(c).keys() {
            let slot = oldest.entry(name.as_str()).or_insert(key);
            if key < *slot {
                *slot = key;
            }
        }
    }
    oldest.into_iter().map(|(n, (_, _, p))| (n, p)).collect()
}

/// Removes from `c` the names another project owns.
fn keep_own<V>(
    what: &str,
    c_id: &str,
    project: &str,
    map: &mut BTreeMap<String, V>,
    owners: &BTreeMap<&str, &str>,
    diags: &mut Vec<Diagnostic>,
) {
    map.retain(|name, _| {
        let own = owners.get(name.as_str()).is_none_or(|p| *p == project);
        if !own {
            diags.push(Diagnostic {
                instance_id: c_id.to_string(),
                level: Level::Error,
                message: format!(
                    "{what} {name} is already used by an instance of another project; dropped"
                ),
            });
        }
        own
    });
}

/// Drops routers that point at a service of another project.
fn own_services(
    what: &str,
    c_id: &str,
    project: &str,
    routers: &BTreeMap<String, String>,
    owners: &BTreeMap<&str, &str>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    for (name, service) in routers.iter() {
        if owners.get(service.as_str()).is_some_and(|p| *p != project) {
            diags.push(Diagnostic {
                instance_id: c_id.to_string(),
                level: Level::Error,
                message: format!(
                    "{what} {name}: service {service} belongs to another project; router dropped"
                ),
            });
            dropped.push(name.clone());
        }
    }
    dropped
}

/// Each contribution without the names other projects own.
fn by_project(contribs: &[Contribution], diags: &mut Vec<Diagnostic>) -> Vec<Contribution> {
    let r = owners(contribs, |c| &c.http.routers);
    let s = owners(contribs, |c| &c.http.services);
    let m = owners(contribs, |c| &c.http.middlewares);
    let tr = owners(contribs, |c| &c.tcp.routers);
    let ts = owners(contribs, |c| &c.tcp.services);
    let tm = owners(contribs, |c| &c.tcp.middlewares);
    let ur = owners(contribs, |c| &c.udp.routers);
    let us = owners(contribs, |c| &c.udp.services);
    contribs
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let (id, p) = (c.instance_id.clone(), c.project_id.clone());
            keep_own("router", &id, &p, &mut c.http.routers, &r, diags);
            keep_own("service", &id, &p, &mut c.http.services, &s, diags);
            keep_own("middleware", &id, &p, &mut c.http.middlewares, &m, diags);
            keep_own("tcp router", &id, &p, &mut c.tcp.routers, &tr, diags);
            keep_own("tcp service", &id, &p, &mut c.tcp.services, &ts, diags);
            keep_own(
                "tcp middleware",
                &id,
                &p,
                &mut c.tcp.middlewares,
                &tm,
                diags,
            );
            keep_own("udp router", &id, &p, &mut c.udp.routers, &ur, diags);
            keep_own("udp service", &id, &p, &mut c.udp.services, &us, diags);
            let refs = |m: &BTreeMap<String, crate::dynamic::Router>| {
                m.iter()
                    .map(|(n, r)| (n.clone(), r.service.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            for n in own_services("router", &id, &p, &refs(&c.http.routers), &s, diags) {
                c.http.routers.remove(&n);
            }
            for n in own_services("tcp router", &id, &p, &refs(&c.tcp.routers), &ts, diags) {
                c.tcp.routers.remove(&n);
            }
            let udp_refs: BTreeMap<String, String> = c
                .udp
                .routers
                .iter()
                .map(|(n, r)| (n.clone(), r.service.clone()))
                .collect();
            for n in own_services("udp router", &id, &p, &udp_refs, &us, diags) {
                c.udp.routers.remove(&n);
            }
            c
        })
        .collect()
}

pub fn merge(
    contribs: &[Contribution],
    diags: &mut Vec<Diagnostic>,
) -> (Configuration, Vec<InstanceRoutes>) {
    let owned = by_project(contribs, diags);
    let contribs = owned.as_slice();
    let mut routers = Merger::new("router");
    let mut services = Merger::new("service");
    let mut middlewares = Merger::new("middleware");
    let mut tcp_routers = Merger::new("tcp router");
    let mut tcp_services = Merger::new("tcp service");
    let mut tcp_middlewares = Merger::new("tcp middleware");
    let mut udp_routers = Merger::new("udp router");
    let mut udp_services = Merger::new("udp service");
    for c in contribs {
        let id = c.instance_id.as_str();
        for (n, r) in &c.http.routers {
            routers.add(id, n, r.clone(), same);
        }
        for (n, s) in &c.http.services {
            services.add(id, n, s.clone(), merge_servers);
        }
        for (n, m) in &c.http.middlewares {
            middlewares.add(id, n, m.clone(), same);
        }
        for (n, r) in &c.tcp.routers {
            tcp_routers.add(id, n, r.clone(), same);
        }
        for (n, s) in &c.tcp.services {
            tcp_services.add(id, n, s.clone(), merge_servers);
        }
        for (n, m) in &c.tcp.middlewares {
            tcp_middlewares.add(id, n, m.clone(), same);
        }
        for (n, r) in &c.udp.routers {
            udp_routers.add(id, n, r.clone(), same);
        }
        for (n, s) in &c.udp.services {
            udp_services.add(id, n, s.clone(), merge_servers);
        }
    }
    let mut http = HttpConfig {
        routers: routers.finish(diags),
        services: services.finish(diags),
        middlewares: middlewares.finish(diags),
    };
    let mut tcp = TcpConfig {
        routers: tcp_routers.finish(diags),
        services: tcp_services.finish(diags),
        middlewares: tcp_middlewares.finish(diags),
    };
    let mut udp = UdpConfig {
        routers: udp_routers.finish(diags),
        services: udp_services.finish(diags),
    };
    sort_servers(&mut http.services);
    sort_servers(&mut tcp.services);
    sort_servers(&mut udp.services);

    let routes = contribs
        .iter()
        .map(|c| {
            let mut names: BTreeSet<String> = BTreeSet::new();
            names.extend(
                c.http
                    .routers
                    .keys()
                    .filter(|n| http.routers.contains_key(*n))
                    .cloned(),
            );
            names.extend(
                c.tcp
                    .routers
                    .keys()
                    .filter(|n| tcp.routers.contains_key(*n))
                    .cloned(),
            );
            names.extend(
                c.udp
                    .routers
                    .keys()
                    .filter(|n| udp.routers.contains_key(*n))
                    .cloned(),
            );
            InstanceRoutes {
                instance_id: c.instance_id.clone(),
                address: Some(c.address.clone()),
                routers: names.into_iter().collect(),
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
        }
    }

    #[test]
    fn replicas_merge_sorted() {
        let mut d = Vec::new();
        let (c, routes) = merge(
            &[
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
            let (c, routes) = merge(&order, &mut d);
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
            &[
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
