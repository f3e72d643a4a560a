//! The wit-bindgen shell: convert WIT values to the library's types, call the
//! policy (or its two `phases`), convert back. No logic lives here.

wit_bindgen::generate!({
    path: "../wit",
    world: "phased-route-policy",
});

use exports::traefik_openstack::routes::phases as wit_phases;
use exports::traefik_openstack::routes::policy::Guest;
use traefik_openstack::routes::types as wit;

struct Component;

impl Guest for Component {
    fn generate(settings: String, instances: Vec<wit::Instance>) -> Result<wit::Output, String> {
        let instances: Vec<crate::Instance> = instances.into_iter().map(from_wit).collect();
        crate::generate(&settings, &instances).map(to_wit)
    }
}

impl wit_phases::Guest for Component {
    fn route(
        settings: String,
        instances: Vec<wit::Instance>,
    ) -> Result<Vec<wit_phases::Part>, String> {
        let instances: Vec<crate::Instance> = instances.into_iter().map(from_wit).collect();
        let parts = crate::phases::route(&settings, &instances)?;
        Ok(parts.into_iter().map(part_to_wit).collect())
    }

    fn merge(
        settings: String,
        groups: Vec<Vec<wit_phases::Part>>,
    ) -> Result<Vec<wit_phases::Merged>, String> {
        let groups: Vec<Vec<crate::Part>> = groups
            .into_iter()
            .map(|g| g.into_iter().map(part_from_wit).collect())
            .collect();
        let merged = crate::phases::merge(&settings, &groups)?;
        Ok(merged.into_iter().map(merged_to_wit).collect())
    }
}

fn from_wit(i: wit::Instance) -> crate::Instance {
    crate::Instance {
        id: i.id,
        name: i.name,
        status: i.status,
        project_id: i.project_id,
        user_id: i.user_id,
        cloud: i.cloud,
        region: i.region,
        availability_zone: i.availability_zone,
        flavor_name: i.flavor_name,
        image_id: i.image_id,
        created: i.created,
        updated: i.updated,
        description: i.description,
        metadata: i.metadata,
        tags: i.tags,
        addresses: i
            .addresses
            .into_iter()
            .map(|a| crate::Address {
                network: a.network,
                ip: a.ip,
                version: a.version,
                kind: match a.kind {
                    wit::AddressKind::Fixed => crate::AddressKind::Fixed,
                    wit::AddressKind::Floating => crate::AddressKind::Floating,
                },
                mac: a.mac,
            })
            .collect(),
    }
}

fn to_wit(o: crate::Output) -> wit::Output {
    wit::Output {
        config: o.config,
        diagnostics: o.diagnostics.into_iter().map(diagnostic_to_wit).collect(),
        routes: o.routes.into_iter().map(routes_to_wit).collect(),
    }
}

fn diagnostic_to_wit(d: crate::Diagnostic) -> wit::Diagnostic {
    wit::Diagnostic {
        instance_id: d.instance_id,
        level: match d.level {
            crate::Level::Info => wit::Level::Info,
            crate::Level::Warning => wit::Level::Warning,
            crate::Level::Error => wit::Level::Error,
        },
        message: d.message,
    }
}

/// Parts come back to `merge` with the diagnostics `route` gave them.
fn diagnostic_from_wit(d: wit::Diagnostic) -> crate::Diagnostic {
    crate::Diagnostic {
        instance_id: d.instance_id,
        level: match d.level {
            wit::Level::Info => crate::Level::Info,
            wit::Level::Warning => crate::Level::Warning,
            wit::Level::Error => crate::Level::Error,
        },
        message: d.message,
    }
}

fn routes_to_wit(r: crate::InstanceRoutes) -> wit::InstanceRoutes {
    wit::InstanceRoutes {
        instance_id: r.instance_id,
        address: r.address,
        routers: r.routers,
    }
}

fn part_to_wit(p: crate::Part) -> wit_phases::Part {
    wit_phases::Part {
        instance_id: p.instance_id,
        keys: p.keys,
        data: p.data,
        diagnostics: p.diagnostics.into_iter().map(diagnostic_to_wit).collect(),
    }
}

fn part_from_wit(p: wit_phases::Part) -> crate::Part {
    crate::Part {
        instance_id: p.instance_id,
        keys: p.keys,
        data: p.data,
        diagnostics: p.diagnostics.into_iter().map(diagnostic_from_wit).collect(),
    }
}

fn merged_to_wit(m: crate::Merged) -> wit_phases::Merged {
    wit_phases::Merged {
        entries: m
            .entries
            .into_iter()
            .map(|e| wit_phases::Entry {
                kind: e.kind,
                table: e.table,
                name: e.name,
                value: e.value,
                definers: e.definers,
            })
            .collect(),
        diagnostics: m.diagnostics.into_iter().map(diagnostic_to_wit).collect(),
        routes: m.routes.into_iter().map(routes_to_wit).collect(),
    }
}

export!(Component);
