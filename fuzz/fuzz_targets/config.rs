//! The sidecar's TOML configuration file (`Config::parse`, validation
//! included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config(text);
    }
});
