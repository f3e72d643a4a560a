//! The `constraints` expression: parsing (regular expressions included)
//! and evaluation on an instance's tags and labels.
//!
//! Input, NUL-separated: the expression, then tags; a segment with `=` is
//! a label instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack_guest::fuzzing::constraints;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let expr = parts.next().unwrap_or_default();
    let mut tags = Vec::new();
    let mut labels = Vec::new();
    for part in parts {
        match part.split_once('=') {
            Some((k, v)) => labels.push((k.to_owned(), v.to_owned())),
            None => tags.push(part.to_owned()),
        }
    }
    let _ = constraints(expr, &tags, &labels);
});
