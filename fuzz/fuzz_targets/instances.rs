//! The instance files of `render --instances` (the `inventory` format or a
//! Nova `servers/detail` body), which read back the same once written; and
//! the golden case files of `test`, which share the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::instances;
use traefik_openstack_guest::input::parse_case;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = instances(text);
        let _ = parse_case(text);
    }
});
