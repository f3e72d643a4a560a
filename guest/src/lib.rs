//! The default route policy of traefik-openstack.
//!
//! A plain library: OpenStack instances in, Traefik dynamic configuration out,
//! no I/O. `component` is the thin wit-bindgen shell that exports it as a
//! WASI component; everything else is tested natively with `cargo test`.
//!
//! The pipeline: `settings` parses the `[routes]` table; per instance,
//! `filter` decides whether it is routed, `labels` decodes its Traefik labels
//! (with `template`-rendered defaults, guarded by `safety`), `address` picks
//! the address and `assemble` applies Traefik's defaults; `merge` combines
//! instances and `dynamic` is the JSON Traefik reads.

pub mod model;

mod address;
mod assemble;
mod constraints;
mod dynamic;
mod filter;
mod labels;
mod merge;
mod names;
mod safety;
mod schema;
mod settings;
mod template;

#[cfg(target_arch = "wasm32")]
mod component;

pub use model::{Address, AddressKind, Diagnostic, Instance, InstanceRoutes, Level, Output};

use serde_json::Value;

/// Runs the policy: `settings` is the JSON of the host's `[routes]` table.
pub fn generate(settings: &str, instances: &[Instance]) -> Result<Output, String> {
    let settings = settings::Settings::parse(settings)?;
    // Nova's listing order is not a contract; the output must not depend on it.
    let mut order: Vec<&Instance> = instances.iter().collect();
    order.sort_by(|a, b| (&a.id, &a.name).cmp(&(&b.id, &b.name)));

    let mut diagnostics = Vec::new();
    let contribs: Vec<_> = order
        .into_iter()
        .filter_map(|i| assemble::assemble(i, &settings, &mut diagnostics))
        .collect();
    let (config, routes) = merge::merge(&contribs, &mut diagnostics);
    // Stable: keeps each instance's messages in the order they arose.
    diagnostics.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));

    let value = serde_json::to_value(&config).map_err(|e| format!("serializing config: {e}"))?;
    Ok(Output {
        config: canonical(value).to_string(),
        diagnostics,
        routes,
    })
}

/// Rebuilds objects with sorted keys, so the bytes do not depend on whether
/// some other crate in the build turned on serde_json's `preserve_order`.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}
