//! Across instances, as Traefik merges the configurations of its Docker
//! containers: services of the same name merge their servers (replicas),
//! identical routers and middlewares are kept once, and a name defined
//! differently by several instances is dropped, with an error on each
//! instance involved.

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

pub fn merge(
    contribs: &[Contribution],
    diags: &mut Vec<Diagnostic>,
) -> (Configuration, Vec<InstanceRoutes>) {
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
