//! Stage 5: across instances, as Traefik merges the configurations of its
//! Docker containers: services of the same name merge their servers
//! (replicas), identical routers and middlewares are kept once, and a name
//! defined differently by several instances is dropped, with an error on
//! each instance involved. `ownership` has already removed what another
//! project owns.

use crate::defaults::Contribution;
use crate::dynamic::{Configuration, HttpConfig, Service, Target, TcpConfig, UdpConfig};
use crate::model::{Diagnostic, InstanceRoutes, Level};
use crate::ownership;
use crate::resource::Resource;
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
    kind: Resource,
    items: BTreeMap<String, Entry<T>>,
}

impl<T> Merger<T> {
    fn new(kind: Resource) -> Self {
        Merger {
            kind,
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
                        self.kind.noun()
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
    if old.middlewares != new.middlewares || !old.load_balancer.mergeable(&new.load_balancer) {
        return false;
    }
    old.load_balancer.servers.extend(new.load_balancer.servers);
    true
}

/// Keeps the first server added for each target, then sorts them.
fn finish_servers<S: Target + Ord>(m: &mut BTreeMap<String, Box<Service<S>>>) {
    for s in m.values_mut() {
        let servers = &mut s.load_balancer.servers;
        // Stable: among equal targets, the first added stays first.
        servers.sort_by(|a, b| a.target().cmp(b.target()));
        servers.dedup_by(|a, b| a.target() == b.target());
        servers.sort();
    }
}

pub fn merge(
    mut contribs: Vec<Contribution>,
    diags: &mut Vec<Diagnostic>,
) -> (Configuration, Vec<InstanceRoutes>) {
    ownership::enforce(&mut contribs, diags);
    combine(contribs, diags)
}

/// `merge` once `ownership` has had its say (`phases` looks in between).
pub fn combine(
    mut contribs: Vec<Contribution>,
    diags: &mut Vec<Diagnostic>,
) -> (Configuration, Vec<InstanceRoutes>) {
    use Resource::*;
    let mut routers = Merger::new(HttpRouter);
    let mut services = Merger::new(HttpService);
    let mut middlewares = Merger::new(HttpMiddleware);
    let mut tcp_routers = Merger::new(TcpRouter);
    let mut tcp_services = Merger::new(TcpService);
    let mut tcp_middlewares = Merger::new(TcpMiddleware);
    let mut udp_routers = Merger::new(UdpRouter);
    let mut udp_services = Merger::new(UdpService);
    // Each contribution's router names, (kind, name), for `routes` below:
    // the routers themselves are moved into the mergers.
    let mut router_names: Vec<Vec<(Resource, String)>> = Vec::with_capacity(contribs.len());
    for (at, c) in contribs.iter_mut().enumerate() {
        let mut names = Vec::with_capacity(c.http.routers.len());
        for (n, r) in std::mem::take(&mut c.http.routers) {
            names.push((HttpRouter, n.clone()));
            routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.http.services) {
            services.add(at, n, s, |old, new| merge_servers(old, *new));
        }
        for (n, m) in std::mem::take(&mut c.http.middlewares) {
            middlewares.add(at, n, m, same);
        }
        for (n, r) in std::mem::take(&mut c.tcp.routers) {
            names.push((TcpRouter, n.clone()));
            tcp_routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.tcp.services) {
            tcp_services.add(at, n, s, |old, new| merge_servers(old, *new));
        }
        for (n, m) in std::mem::take(&mut c.tcp.middlewares) {
            tcp_middlewares.add(at, n, m, same);
        }
        for (n, r) in std::mem::take(&mut c.udp.routers) {
            names.push((UdpRouter, n.clone()));
            udp_routers.add(at, n, r, same);
        }
        for (n, s) in std::mem::take(&mut c.udp.services) {
            udp_services.add(at, n, s, |old, new| merge_servers(old, *new));
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
                    HttpRouter => http.routers.contains_key(n),
                    TcpRouter => tcp.routers.contains_key(n),
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
            Box::new(Router {
                rule: rule.into(),
                service: "web".into(),
                ..Default::default()
            }),
        );
        let mut lb = LoadBalancer {
            servers: vec![HttpServer {
                url: url.into(),
                weight: None,
                preserve_path: None,
            }],
            options: Default::default(),
        };
        lb.options.insert(
            "passHostHeader".into(),
            crate::sorted::Json::new(&pass.into()),
        );
        http.services
            .insert("web".into(), Box::new(Service::new(lb)));
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
    fn another_projects_name_in_another_case_is_the_same_name() {
        let victim = in_project(
            contrib("v", "Host(`w`)", "http://10.0.0.1:80", true),
            "victim",
            "2024-01-01T00:00:00Z",
        );
        // `WEB` for a router and a service: one name with `web` in etcd.
        let mut upper = in_project(
            contrib("u", "Host(`evil`)", "http://10.9.9.9:80", true),
            "evil",
            "2024-02-01T00:00:00Z",
        );
        let mut r = upper.http.routers.remove("web").unwrap();
        r.service = "WEB".into();
        upper.http.routers.insert("WEB".into(), r);
        let svc = upper.http.services.remove("web").unwrap();
        upper.http.services.insert("WEB".into(), svc);
        let mut d = Vec::new();
        let (c, _) = merge(vec![upper, victim], &mut d);
        let http = c.http.unwrap();
        assert_eq!(http.routers.keys().collect::<Vec<_>>(), vec!["web"]);
        assert_eq!(http.services.keys().collect::<Vec<_>>(), vec!["web"]);
        let on_u: Vec<&str> = d
            .iter()
            .filter(|d| d.instance_id == "u")
            .map(|d| d.message.as_str())
            .collect();
        assert!(
            on_u.contains(
                &"router WEB is already used (as web; names that differ only in case are one name) by an instance of another project; dropped"
            ),
            "{on_u:?}"
        );
        assert!(
            on_u.iter()
                .any(|m| m.starts_with("service WEB is already used")),
            "{on_u:?}"
        );
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
