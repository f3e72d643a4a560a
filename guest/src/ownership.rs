//! Stage 4: names belong to projects.
//!
//! Names are shared only within one project. With `all_projects`, tenants
//! of different projects must not be able to add their servers to another
//! project's service, knock its router out with a conflicting definition,
//! or point a router at its service (skipping its middlewares). So a name
//! belongs to the project of its oldest instance (`created`, then id), or
//! to the operator when its `default_labels` define it under a fixed name;
//! definitions from other projects are dropped with an error on their own
//! instances, and the owner keeps its name. Names that differ only in case
//! are one name here ([`fold`]): Traefik's KV providers read them as
//! one, and would merge one project's `API` into another's `api`.

use crate::defaults::Contribution;
use crate::model::{Diagnostic, Level};
use crate::names::fold;
use crate::resource::{PerResource, Resource};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

impl Contribution {
    /// The names this contribution defines for one kind.
    pub fn names(&self, r: Resource) -> Vec<&String> {
        use Resource::*;
        match r {
            HttpRouter => self.http.routers.keys().collect(),
            HttpService => self.http.services.keys().collect(),
            HttpMiddleware => self.http.middlewares.keys().collect(),
            TcpRouter => self.tcp.routers.keys().collect(),
            TcpService => self.tcp.services.keys().collect(),
            TcpMiddleware => self.tcp.middlewares.keys().collect(),
            UdpRouter => self.udp.routers.keys().collect(),
            UdpService => self.udp.services.keys().collect(),
        }
    }

    /// (router, service) for the routers of one kind.
    pub fn router_services(&self, r: Resource) -> Vec<(&String, &String)> {
        match r {
            Resource::HttpRouter => self
                .http
                .routers
                .iter()
                .map(|(n, r)| (n, &r.service))
                .collect(),
            Resource::TcpRouter => self
                .tcp
                .routers
                .iter()
                .map(|(n, r)| (n, &r.service))
                .collect(),
            Resource::UdpRouter => self
                .udp
                .routers
                .iter()
                .map(|(n, r)| (n, &r.service))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn remove(&mut self, r: Resource, name: &str) {
        use Resource::*;
        match r {
            HttpRouter => drop(self.http.routers.remove(name)),
            HttpService => drop(self.http.services.remove(name)),
            HttpMiddleware => drop(self.http.middlewares.remove(name)),
            TcpRouter => drop(self.tcp.routers.remove(name)),
            TcpService => drop(self.tcp.services.remove(name)),
            TcpMiddleware => drop(self.tcp.middlewares.remove(name)),
            UdpRouter => drop(self.udp.routers.remove(name)),
            UdpService => drop(self.udp.services.remove(name)),
        }
    }

    pub fn operator_defines(&self, r: Resource, name: &str) -> bool {
        self.operator.contains(&(r, name.to_string()))
    }
}

/// Who owns a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner<'a> {
    Operator,
    Project(&'a str),
}

/// Owners by folded name, with the name as the owner wrote it.
type Owners<'a> = BTreeMap<Cow<'a, str>, (Owner<'a>, &'a str)>;

/// For each name of one kind (folded), its owner: the operator when some
/// instance has it from the operator's defaults, else the project of its
/// oldest defining instance.
fn owners(contribs: &[Contribution], r: Resource) -> Owners<'_> {
    // (operator first, created, instance id) orders the claims.
    type Claim<'a> = ((bool, &'a str, &'a str), (Owner<'a>, &'a str));
    let mut oldest: BTreeMap<Cow<'_, str>, Claim<'_>> = BTreeMap::new();
    for c in contribs {
        for name in c.names(r) {
            let claim = if c.operator_defines(r, name) {
                ((false, "", ""), (Owner::Operator, name.as_str()))
            } else {
                (
                    (true, c.created.as_str(), c.instance_id.as_str()),
                    (Owner::Project(c.project_id.as_str()), name.as_str()),
                )
            };
            let slot = oldest.entry(fold(name)).or_insert(claim);
            if claim.0 < slot.0 {
                *slot = claim;
            }
        }
    }
    oldest.into_iter().map(|(n, (_, o))| (n, o)).collect()
}

/// ` (as web; ...)` when the owner wrote the name in another case.
fn as_written(name: &str, owners_name: &str) -> String {
    if name == owners_name {
        String::new()
    } else {
        format!(" (as {owners_name}; names that differ only in case are one name)")
    }
}

fn operator_owned(r: Resource, name: &str) -> String {
    format!(
        "{} {name} is defined by the operator's default_labels; this instance's own definition is dropped",
        r.noun()
    )
}

/// The operator owns the names its `default_labels` give without a
/// template, whichever instances there are: an instance whose own labels
/// also write to one loses its definition, here, on its own. Deciding it
/// per instance keeps the outcome independent of the other instances (the
/// host merges groups of instances separately, see `phases`).
pub fn drop_overridden(
    c: &mut Contribution,
    overridden: &BTreeSet<(Resource, String)>,
    diags: &mut Vec<Diagnostic>,
) {
    for (r, name) in overridden {
        if c.names(*r).contains(&name) {
            diags.push(Diagnostic {
                instance_id: c.instance_id.clone(),
                level: Level::Error,
                message: operator_owned(*r, name),
            });
            c.remove(*r, name);
        }
    }
}

/// Removes from each contribution the names other projects (or the
/// operator) own, and the routers that point at another project's service.
/// Decided on the untouched contributions first (ownership looks at all of
/// them), then applied in place.
pub fn enforce(contribs: &mut [Contribution], diags: &mut Vec<Diagnostic>) {
    // One project: nobody else can own a name. (The operator's names were
    // settled per instance by `drop_overridden`: every instance that
    // defines one has it from the operator's labels.)
    if contribs
        .windows(2)
        .all(|w| w[0].project_id == w[1].project_id)
    {
        return;
    }
    let owners: PerResource<Owners<'_>> = PerResource(Resource::ALL.map(|r| owners(contribs, r)));
    let mut drops: Vec<Vec<(Resource, String)>> = Vec::with_capacity(contribs.len());
    for c in contribs.iter() {
        let mut mine = Vec::new();
        let mut err = |message: String| {
            diags.push(Diagnostic {
                instance_id: c.instance_id.clone(),
                level: Level::Error,
                message,
            })
        };
        for r in Resource::ALL {
            let what = r.noun();
            for name in c.names(r) {
                match owners[r].get(fold(name).as_ref()) {
                    Some((Owner::Operator, _)) if !c.operator_defines(r, name) => {
                        err(operator_owned(r, name))
                    }
                    Some((Owner::Project(p), written)) if *p != c.project_id => err(format!(
                        "{what} {name} is already used{} by an instance of another project; dropped",
                        as_written(name, written)
                    )),
                    _ => continue,
                }
                mine.push((r, name.clone()));
            }
        }
        for r in Resource::ALL {
            let Some(s) = r.service_of() else { continue };
            for (name, service) in c.router_services(r) {
                // The operator's routers may point at any service; checking
                // them would make every instance's copy depend on who else
                // defines that service.
                if c.operator_defines(r, name) || mine.iter().any(|(k, n)| *k == r && n == name) {
                    continue;
                }
                if matches!(owners[s].get(fold(service).as_ref()), Some((Owner::Project(p), _)) if *p != c.project_id)
                {
                    err(format!(
                        "{} {name}: service {service} belongs to another project; router dropped",
                        r.noun()
                    ));
                    mine.push((r, name.clone()));
                }
            }
        }
        drops.push(mine);
    }
    drop(owners);
    for (c, d) in contribs.iter_mut().zip(drops) {
        for (r, name) in d {
            c.remove(r, &name);
        }
    }
}
