//! The host's instance: the contract's `instance` record, held compactly.
//!
//! At 100,000 servers the instances are most of what the host holds. The
//! bindgen record has some forty separate `String`s per server (about
//! 4.5 KB each); most of them repeat from server to server (status,
//! project, user, cloud, region, zone, flavor, image, times, network names,
//! tags). Here every such string is an `Arc<str>` taken from an
//! [`Interner`], so a repeated one is held once, and the lists are sized
//! exactly. Metadata, mostly the instance's own text, is held in one piece
//! ([`Metadata`]). The type lowers to the contract's record directly
//! (wasmtime's derives; `Arc<str>` lowers as a `string`), so nothing is
//! converted when a module runs, and the engine checks it against the
//! module's `instance` type when it loads the module.

use std::collections::HashSet;
use std::sync::Arc;

use traefik_openstack_guest as guest;
use wasmtime::component::{ComponentType, Lower};

mod metadata;

pub use crate::wit::AddressKind;
pub use metadata::Metadata;

/// Text shared between instances (and with the engine's cache, for ids).
pub type Text = Arc<str>;

/// One Nova server, as the contract's `instance` record.
#[derive(ComponentType, Lower, Debug, Clone, Default, PartialEq, Eq)]
#[component(record)]
pub struct Instance {
    /// Server UUID.
    #[component(name = "id")]
    pub id: Text,
    /// Display name.
    #[component(name = "name")]
    pub name: Text,
    /// Nova status.
    #[component(name = "status")]
    pub status: Text,
    /// Owning project id.
    #[component(name = "project-id")]
    pub project_id: Text,
    /// Creating user id.
    #[component(name = "user-id")]
    pub user_id: Text,
    /// The clouds.yaml entry it was read from.
    #[component(name = "cloud")]
    pub cloud: Text,
    /// Region name.
    #[component(name = "region")]
    pub region: Text,
    /// Availability zone.
    #[component(name = "availability-zone")]
    pub availability_zone: Option<Text>,
    /// Flavor name.
    #[component(name = "flavor-name")]
    pub flavor_name: Option<Text>,
    /// Image id.
    #[component(name = "image-id")]
    pub image_id: Option<Text>,
    /// Creation time, RFC 3339.
    #[component(name = "created")]
    pub created: Text,
    /// Last update time, RFC 3339.
    #[component(name = "updated")]
    pub updated: Text,
    /// Description.
    #[component(name = "description")]
    pub description: Option<Text>,
    /// Metadata, in Nova's order.
    #[component(name = "metadata")]
    pub metadata: Metadata,
    /// Tags.
    #[component(name = "tags")]
    pub tags: Vec<Text>,
    /// All addresses of all networks.
    #[component(name = "addresses")]
    pub addresses: Vec<Address>,
}

/// One address of an instance, as the contract's `address` record.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq)]
#[component(record)]
pub struct Address {
    /// Network name.
    #[component(name = "network")]
    pub network: Text,
    /// The address, e.g. `10.0.0.5`.
    #[component(name = "ip")]
    pub ip: Text,
    /// 4 or 6.
    #[component(name = "version")]
    pub version: u8,
    /// Fixed or floating.
    #[component(name = "kind")]
    pub kind: AddressKind,
    /// MAC of the port.
    #[component(name = "mac")]
    pub mac: Option<Text>,
}

/// One shared copy of each repeated string. Strings no instance holds any
/// more are dropped by [`Interner::prune`].
#[derive(Debug, Default)]
pub struct Interner {
    known: HashSet<Text>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Text {
        if let Some(known) = self.known.get(s) {
            return known.clone();
        }
        let text: Text = s.into();
        self.known.insert(text.clone());
        text
    }

    /// Forgets the strings only the interner holds.
    pub fn prune(&mut self) {
        self.known.retain(|t| Arc::strong_count(t) > 1);
    }
}

/// `from` mapped into a vector of exactly its length. `collect` would
/// reuse `from`'s buffer in place: sized for the parser's larger elements
/// and its doublings (two addresses kept the parser's 320-byte buffer:
/// room for five of ours), kept for as long as the instance (with metadata,
/// which went the same way, about 840 bytes each at 100,000).
fn exact<T, U>(from: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(from.len());
    out.extend(from.into_iter().map(f));
    out
}

impl Instance {
    /// From the guest library's model (what Nova's JSON and the instance
    /// files are read into), sharing repeated strings through `interner`.
    /// Ids, names, descriptions, addresses and MACs are the server's own.
    pub fn from_model(i: guest::Instance, interner: &mut Interner) -> Self {
        let guest::Instance {
            id,
            name,
            status,
            project_id,
            user_id,
            cloud,
            region,
            availability_zone,
            flavor_name,
            image_id,
            created,
            updated,
            description,
            metadata,
            tags,
            addresses,
        } = i;
        let mut shared = |s: String| interner.get(&s);
        Instance {
            id: id.into(),
            name: name.into(),
            status: shared(status),
            project_id: shared(project_id),
            user_id: shared(user_id),
            cloud: shared(cloud),
            region: shared(region),
            availability_zone: availability_zone.map(&mut shared),
            flavor_name: flavor_name.map(&mut shared),
            image_id: image_id.map(&mut shared),
            created: shared(created),
            updated: shared(updated),
            description: description.map(Into::into),
            metadata: metadata.into_iter().collect(),
            tags: exact(tags, &mut shared),
            addresses: exact(addresses, |a| {
                let guest::Address {
                    network,
                    ip,
                    version,
                    kind,
                    mac,
                } = a;
                Address {
                    network: shared(network),
                    ip: ip.into(),
                    version,
                    kind: match kind {
                        guest::AddressKind::Fixed => AddressKind::Fixed,
                        guest::AddressKind::Floating => AddressKind::Floating,
                    },
                    mac: mac.map(Into::into),
                }
            }),
        }
    }

    /// The guest library's model of it (for the instance files).
    pub fn to_model(&self) -> guest::Instance {
        let Instance {
            id,
            name,
            status,
            project_id,
            user_id,
            cloud,
            region,
            availability_zone,
            flavor_name,
            image_id,
            created,
            updated,
            description,
            metadata,
            tags,
            addresses,
        } = self;
        let own = |s: &Text| s.to_string();
        guest::Instance {
            id: own(id),
            name: own(name),
            status: own(status),
            project_id: own(project_id),
            user_id: own(user_id),
            cloud: own(cloud),
            region: own(region),
            availability_zone: availability_zone.as_ref().map(own),
            flavor_name: flavor_name.as_ref().map(own),
            image_id: image_id.as_ref().map(own),
            created: own(created),
            updated: own(updated),
            description: description.as_ref().map(own),
            metadata: metadata.to_vec(),
            tags: tags.iter().map(own).collect(),
            addresses: addresses
                .iter()
                .map(|a| {
                    let Address {
                        network,
                        ip,
                        version,
                        kind,
                        mac,
                    } = a;
                    guest::Address {
                        network: own(network),
                        ip: own(ip),
                        version: *version,
                        kind: match kind {
                            AddressKind::Fixed => guest::AddressKind::Fixed,
                            AddressKind::Floating => guest::AddressKind::Floating,
                        },
                        mac: mac.as_ref().map(own),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_strings_are_held_once_and_pruned_when_unused() {
        let mut interner = Interner::default();
        let a = Instance::from_model(
            traefik_openstack_guest::synthetic::instance(1),
            &mut interner,
        );
        let b = Instance::from_model(
            traefik_openstack_guest::synthetic::instance(2),
            &mut interner,
        );
        assert!(Arc::ptr_eq(&a.project_id, &b.project_id));
        assert!(Arc::ptr_eq(&a.status, &b.status));
        assert!(!Arc::ptr_eq(&a.id, &b.id));
        assert_eq!(
            a.to_model(),
            traefik_openstack_guest::synthetic::instance(1)
        );
        let held = interner.known.len();
        drop(b);
        interner.prune();
        assert!(interner.known.len() < held);
        assert!(interner.known.contains("bench-project"));
    }
}
