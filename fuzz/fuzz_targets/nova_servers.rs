//! A Nova `servers/detail` page: every server mapped to an instance, and
//! the next page's URL built from the last id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::nova_servers;

fuzz_target!(|data: &[u8]| {
    let _ = nova_servers(data);
});
