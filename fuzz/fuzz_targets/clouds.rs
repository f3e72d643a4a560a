//! clouds.yaml and secure.yaml as the client resolves a cloud from them.
//! A password or application credential secret never shows in the
//! resolved cloud's `Debug` or in an error.
//!
//! Input, NUL-separated: the cloud to use (empty: none chosen), clouds.yaml,
//! then secure.yaml (absent: no such file), region and interface (absent:
//! the cloud's own).
//!
//! The secret check looks for `SECRET`: when every place it occurs in the
//! input is the value of a `password` or `application_credential_secret`
//! key, no output may hold it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_openstack::fuzzing::clouds;

const SECRET: &str = "fuzz-pw-9d3e7c1a";

/// Whether `SECRET` occurs in `text` only as a secret's value.
fn only_as_secret(text: &str) -> bool {
    let all = text.matches(SECRET).count();
    let as_value: usize = [
        "password: ",
        "application_credential_secret: ",
        "\"password\": \"",
        "\"application_credential_secret\": \"",
    ]
    .iter()
    .map(|key| text.matches(&format!("{key}{SECRET}")).count())
    .sum();
    // Anchors and aliases can copy the value elsewhere, legitimately.
    all == as_value && !text.contains(['&', '*', '!'])
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let cloud = parts.next().filter(|c| !c.is_empty());
    let clouds_yaml = parts.next().unwrap_or_default();
    let secure_yaml = parts.next();
    let region = parts.next();
    let interface = parts.next();
    let said = match clouds(clouds_yaml, secure_yaml, cloud, region, interface) {
        Ok(debug) => debug,
        Err(e) => e,
    };
    let checked = [Some(clouds_yaml), secure_yaml]
        .into_iter()
        .flatten()
        .all(only_as_secret)
        && ![cloud, region, interface]
            .into_iter()
            .flatten()
            .any(|s| s.contains(SECRET));
    if checked {
        assert!(!said.contains(SECRET), "secret in {said:?}");
    }
});
