//! Neutron's floating IPs and ports listings, attached to servers as a
//! refresh with `neutron_floating_ips` attaches them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::neutron_floating_ips;

fuzz_target!(|data: &[u8]| {
    let _ = neutron_floating_ips(data);
});
