//! The wit-bindgen shell: convert WIT values to the library's types, call the
//! policy, convert back. No logic lives here.

wit_bindgen::generate!({
    path: "../wit",
    world: "route-policy",
});

use exports::traefik_openstack::routes::policy::Guest;
use traefik_openstack::routes::types as wit;

struct Component;

impl Guest for Component {
    fn generate(settings: String, instances: Vec<wit::Instance>) -> Result<wit::Output, String> {
        let instances: Vec<crate::Instance> = instances.into_iter().map(from_wit).collect();
        crate::generate(&settings, &instances).map(to_wit)
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
        diagnostics: o
            .diagnostics
            .into_iter()
            .map(|d| wit::Diagnostic {
                instance_id: d.instance_id,
                level: match d.level {
                    crate::Level::Info => wit::Level::Info,
                    crate::Level::Warning => wit::Level::Warning,
                    crate::Level::Error => wit::Level::Error,
                },
                message: d.message,
            })
            .collect(),
        routes: o
            .routes
            .into_iter()
            .map(|r| wit::InstanceRoutes {
                instance_id: r.instance_id,
                address: r.address,
                routers: r.routers,
            })
            .collect(),
    }
}

export!(Component);
