//! A Nova version document (`/` or `/v2.1/`): microversion negotiation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::nova_versions;

fuzz_target!(|data: &[u8]| {
    let _ = nova_versions(data);
});
