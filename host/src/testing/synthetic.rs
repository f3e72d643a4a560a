//! The guest's synthetic cloud (`traefik_openstack_guest::synthetic`), and
//! the same instances as the host holds them (repeated strings shared, as
//! the inventory shares them).

use crate::instance::Interner;
use crate::wit;
use traefik_openstack_guest as native;

pub use native::synthetic::{SETTINGS, instance, instances};

/// The same instance as the host holds it.
pub fn to_wit(i: &native::Instance) -> wit::Instance {
    wit::Instance::from_model(i.clone(), &mut Interner::default())
}

/// [`instances`] as the host holds them, sharing repeated strings.
pub fn wit_instances(n: usize) -> Vec<wit::Instance> {
    let mut interner = Interner::default();
    instances(n)
        .into_iter()
        .map(|i| wit::Instance::from_model(i, &mut interner))
        .collect()
}
