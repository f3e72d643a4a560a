//! The guest's synthetic cloud (`traefik_openstack_guest::synthetic`), and
//! the same instances as the host hands them to a component.

use crate::wit;
use traefik_openstack_guest as native;

pub use native::synthetic::{SETTINGS, instance, instances};

/// The same instance as the host hands it to a component.
pub fn to_wit(i: &native::Instance) -> wit::Instance {
    wit::Instance {
        id: i.id.clone(),
        name: i.name.clone(),
        status: i.status.clone(),
        project_id: i.project_id.clone(),
        user_id: i.user_id.clone(),
        cloud: i.cloud.clone(),
        region: i.region.clone(),
        availability_zone: i.availability_zone.clone(),
        flavor_name: i.flavor_name.clone(),
        image_id: i.image_id.clone(),
        created: i.created.clone(),
        updated: i.updated.clone(),
        description: i.description.clone(),
        metadata: i.metadata.clone(),
        tags: i.tags.clone(),
        addresses: i
            .addresses
            .iter()
            .map(|a| wit::Address {
                network: a.network.clone(),
                ip: a.ip.clone(),
                version: a.version,
                kind: match a.kind {
                    native::AddressKind::Fixed => wit::AddressKind::Fixed,
                    native::AddressKind::Floating => wit::AddressKind::Floating,
                },
                mac: a.mac.clone(),
            })
            .collect(),
    }
}

/// [`instances`] as the host hands them to a component.
pub fn wit_instances(n: usize) -> Vec<wit::Instance> {
    instances(n).iter().map(to_wit).collect()
}
