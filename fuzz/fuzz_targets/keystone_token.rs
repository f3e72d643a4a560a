//! Keystone's answer to a token request: the token, its lifetime and the
//! catalog, then the compute and network endpoints and the URLs built on
//! them. The token never shows in what is kept or said.
//!
//! Input, NUL-separated: the `X-Subject-Token` header, the body, the
//! interface (empty: `public`), the region (absent: none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::keystone_token;

const TOKEN: &str = "gAAAAAB-fuzz-token-5e8d2c";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let Ok(subject) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let interface = parts
        .next()
        .and_then(|i| std::str::from_utf8(i).ok())
        .filter(|i| !i.is_empty())
        .unwrap_or("public");
    let region = parts.next().and_then(|r| std::str::from_utf8(r).ok());
    let _ = keystone_token(subject, body, interface, region);
    // The same answer with a token the input does not hold: it must not
    // come back in anything the sidecar keeps or says. (Checking the fuzzed
    // token itself is not sound: it may be a piece of an error's own text.)
    let in_input = |hay: &[u8]| hay.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
    if !in_input(body)
        && !in_input(interface.as_bytes())
        && !region.is_some_and(|r| in_input(r.as_bytes()))
    {
        for s in keystone_token(TOKEN, body, interface, region) {
            assert!(!s.contains(TOKEN), "token in {s:?}");
        }
    }
});
