//! The component shell: WIT values to the guest library's types and back.
//! Only built for wasm32; everything it calls is tested natively.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "route-policy",
});

use exports::traefik_openstack::routes::policy::Guest;
use traefik_openstack::routes::types as wit;
use traefik_openstack_guest as lib;

struct StrictNaming;

impl Guest for StrictNaming {
    fn generate(settings: String, instances: Vec<wit::Instance>) -> Result<wit::Output, String> {
        let instances: Vec<lib::Instance> = instances.into_iter().map(instance).collect();
        crate::generate(&settings, &instances).map(output)
    }
}

fn instance(i: wit::Instance) -> lib::Instance {
    let addresses = i.addresses.into_iter().map(|a| lib::Address {
        network: a.network,
        ip: a.ip,
        version: a.version,
        kind: match a.kind {
            wit::AddressKind::Fixed => lib::AddressKind::Fixed,
            wit::AddressKind::Floating => lib::AddressKind::Floating,
        },
        mac: a.mac,
    });
    lib::Instance {
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
        addresses: addresses.collect(),
    }
}

fn output(o: lib::Output) -> wit::Output {
    let diagnostics = o.diagnostics.into_iter().map(|d| wit::Diagnostic {
        instance_id: d.instance_id,
        level: match d.level {
            lib::Level::Info => wit::Level::Info,
            lib::Level::Warning => wit::Level::Warning,
            lib::Level::Error => wit::Level::Error,
        },
        message: d.message,
    });
    let routes = o.routes.into_iter().map(|r| wit::InstanceRoutes {
        instance_id: r.instance_id,
        address: r.address,
        routers: r.routers,
    });
    wit::Output {
        config: o.config,
        diagnostics: diagnostics.collect(),
        routes: routes.collect(),
    }
}

export!(StrictNaming);
