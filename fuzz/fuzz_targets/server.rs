//! The HTTP handler with arbitrary method, target and headers, a
//! configuration published and a bearer token required: the protected
//! paths need the token, `HEAD` has no body, the token never comes back.
//!
//! Input: a request head as text, `METHOD TARGET` then `name: value` lines.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::Server;

static SERVER: LazyLock<Server> = LazyLock::new(Server::default);

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = match first.iter().position(|b| *b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b"/"[..]),
    };
    let headers: Vec<(&[u8], &[u8])> = lines
        .filter_map(|line| {
            let at = line.iter().position(|b| *b == b':')?;
            let value = &line[at + 1..];
            Some((&line[..at], value.strip_prefix(b" ").unwrap_or(value)))
        })
        .collect();
    let _ = SERVER.handle(method, target, &headers);
});
