//! The default route policy of traefik-openstack.
//!
//! A plain library: OpenStack instances in, Traefik dynamic configuration out,
//! no I/O. `component` is the thin wit-bindgen shell that exports it as a
//! WASI component, and `command` lets `wasmtime run` run it on a case read
//! from stdin (`input` reads the case); everything else is tested natively
//! with `cargo test`. Both shells and the allocator sit behind the default
//! `component` feature, so another policy can wrap this crate as a library.
//!
//! The pipeline follows Traefik's docker provider, one stage per file, data
//! flowing one way. `settings` parses the `[routes]` table. Per instance
//! (`instance`): `collect` gathers its labels, `filter` decides whether it
//! is routed, `default_labels` renders the operator's labels (`template`,
//! guarded by `safety`), `decode` types all of them against `schema`
//! (derived from Traefik's own structs) and fails closed, `address` picks
//! the address and `defaults` applies the provider's defaults. Across
//! instances: `ownership` keeps names within their project, `merge`
//! combines instances, and `dynamic` is the JSON Traefik reads. `resource`
//! is the table of definition kinds every stage shares. `phases` is the
//! same run cut in two (per instance, then per group of instances that
//! share names), for the host's incremental runs.

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod input;
pub mod model;
pub mod phases;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

mod address;
mod collect;
mod constraints;
mod decode;
mod default_labels;
mod defaults;
mod dynamic;
mod filter;
mod glob;
mod instance;
mod merge;
mod names;
mod ownership;
mod resource;
mod safety;
mod schema;
mod settings;
mod sorted;
mod template;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod command;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod wasm_alloc;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod wasm_mem;

pub use model::{
    Address, AddressKind, Diagnostic, Entry, Instance, InstanceRoutes, Level, Merged, Output, Part,
};
pub use names::{fold, normalize};

/// Runs the policy: `settings` is the JSON of the host's `[routes]` table.
pub fn generate(settings: &str, instances: &[Instance]) -> Result<Output, String> {
    let settings = settings::Settings::parse(settings)?;
    // Nova's listing order is not a contract; the output must not depend on it.
    let mut order: Vec<&Instance> = instances.iter().collect();
    order.sort_by(|a, b| (&a.id, &a.name).cmp(&(&b.id, &b.name)));

    let mut diagnostics = Vec::new();
    let contribs: Vec<_> = order
        .into_iter()
        .filter_map(|i| instance::route(i, &settings, &mut diagnostics))
        .collect();
    let (config, routes) = merge::merge(contribs, &mut diagnostics);
    // Stable: keeps each instance's messages in the order they arose.
    diagnostics.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));

    // Written once, straight from the typed tree, keys sorted (see `dynamic`).
    // About 600 bytes per routed instance: one allocation instead of a
    // dozen doublings, each of which briefly holds two copies.
    let mut config_bytes = Vec::with_capacity(64 + routes.len() * 640);
    serde_json::to_writer(&mut config_bytes, &config)
        .map_err(|e| format!("serializing config: {e}"))?;
    drop(config);
    let config = String::from_utf8(config_bytes).map_err(|e| format!("serializing config: {e}"))?;
    Ok(Output {
        config,
        diagnostics,
        routes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// xorshift: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
        fn text(&mut self, parts: &[&str], max: u64) -> String {
            let n = self.next() % max;
            (0..n).map(|_| self.pick(parts)).collect()
        }
    }

    const BITS: &[&str] = &[
        "a",
        "Z",
        "0",
        ".",
        "`",
        "\"",
        "\\",
        "@",
        " ",
        "é",
        "日",
        "[",
        "]",
        "[0]",
        "[99999999999]",
        "=",
        ",",
        "{{",
        "}}",
        "-",
        "\n",
        "\u{0}",
        ")",
        "(",
        "||",
    ];
    const KEYS: &[&str] = &[
        "traefik",
        ".",
        "http",
        "tcp",
        "udp",
        "routers",
        "services",
        "middlewares",
        "r",
        "s",
        "rule",
        "tls",
        "domains[0]",
        "main",
        "loadbalancer",
        "server",
        "port",
        "url",
        "scheme",
        "headers",
        "customrequestheaders",
        "enable",
        "openstack",
        "network",
        "priority",
        "entrypoints",
        "service",
        "stripprefix",
        "prefixes",
        "sticky",
        "cookie",
        "X",
    ];

    fn instance(rng: &mut Rng, n: usize) -> Instance {
        let mut i = Instance {
            id: format!("id-{}", rng.next() % 8),
            name: rng.text(BITS, 12),
            status: rng.pick(&["ACTIVE", "SHUTOFF", "", "active"]).into(),
            ..Default::default()
        };
        for _ in 0..rng.next() % 6 {
            let key = rng.text(KEYS, 10);
            let val = rng.text(BITS, 8);
            if rng.next().is_multiple_of(2) {
                i.metadata.push((key, val));
            } else {
                i.tags.push(format!("{key}={val}"));
            }
        }
        for _ in 0..rng.next() % 3 {
            i.addresses.push(Address {
                network: rng.pick(&["a", "b", ""]).into(),
                ip: rng
                    .pick(&[
                        "10.0.0.1",
                        "fd00::1",
                        "x",
                        "",
                        "10.0.0.1%eth0",
                        "::ffff:1.2.3.4",
                    ])
                    .into(),
                version: if n.is_multiple_of(2) { 4 } else { 6 },
                kind: if rng.next().is_multiple_of(2) {
                    AddressKind::Fixed
                } else {
                    AddressKind::Floating
                },
                mac: None,
            });
        }
        i
    }

    /// The hostile property test's input: 400 rounds of (settings, a few
    /// instances with colliding ids), the same every time. `phases` checks
    /// its equivalence with `generate` on them.
    pub(crate) fn hostile_rounds() -> Vec<(&'static str, Vec<Instance>)> {
        const SETTINGS: [&str; 4] = [
            "{}",
            r#"{"default_rule": "Host(`{{ .Name }}.x`)", "address": "floating"}"#,
            r#"{"default_labels": {"traefik.http.routers.{{ .Name }}.rule": "Host(`{{ .Name }}`)",
                "traefik.http.routers.{{ .Name }}.middlewares": "{{ .Metadata.x }}"}}"#,
            r#"{"constraints": "TagRegex(`.`) || !Label(`a`, `b`)", "include": ["*a*"]}"#,
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        (0..400)
            .map(|round| {
                let instances: Vec<Instance> = (0..rng.next() % 6 + 1)
                    .map(|n| instance(&mut rng, n as usize))
                    .collect();
                (SETTINGS[round % SETTINGS.len()], instances)
            })
            .collect()
    }

    #[test]
    fn hostile_input_never_panics_and_is_deterministic() {
        for (round, (s, instances)) in hostile_rounds().into_iter().enumerate() {
            let a = generate(s, &instances).unwrap();
            let mut rev = instances.clone();
            rev.reverse();
            let b = generate(s, &rev).unwrap();
            assert_eq!(a.config, b.config, "round {round}");
            let v: Value = serde_json::from_str(&a.config).unwrap();
            assert!(v.is_object());
            for empty in [r#""http":{}"#, r#""routers":{}"#, r#""loadBalancer":{}"#] {
                assert!(!a.config.contains(empty), "round {round}: {}", a.config);
            }
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(
            generate(r#"{"nope": 1}"#, &[])
                .unwrap_err()
                .contains("nope")
        );
        assert!(generate("{", &[]).is_err());
    }

    #[test]
    fn nothing_gives_empty_object() {
        assert_eq!(generate("", &[]).unwrap().config, "{}");
    }
}
