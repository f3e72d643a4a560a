//! The default route policy of traefik-openstack.
//!
//! A plain library: OpenStack instances in, Traefik dynamic configuration out,
//! no I/O. `component` is the thin wit-bindgen shell that exports it as a
//! WASI component; everything else is tested natively with `cargo test`.

pub mod model;

#[cfg(target_arch = "wasm32")]
mod component;

pub use model::{Address, AddressKind, Diagnostic, Instance, InstanceRoutes, Level, Output};

/// Runs the policy: `settings` is the JSON of the host's `[routes]` table.
pub fn generate(settings: &str, instances: &[Instance]) -> Result<Output, String> {
    let _settings: serde_json::Value =
        serde_json::from_str(if settings.trim().is_empty() { "{}" } else { settings })
            .map_err(|e| format!("routes settings: {e}"))?;
    let mut routers = serde_json::Map::new();
    let mut services = serde_json::Map::new();
    let mut routes = Vec::new();
    for inst in instances {
        let Some(addr) = inst.addresses.first() else { continue };
        let url = if addr.version == 6 {
            format!("http://[{}]:80", addr.ip)
        } else {
            format!("http://{}:80", addr.ip)
        };
        routers.insert(
            inst.name.clone(),
            serde_json::json!({"rule": format!("Host(`{}`)", inst.name), "service": inst.name}),
        );
        services.insert(
            inst.name.clone(),
            serde_json::json!({"loadBalancer": {"servers": [{"url": url}]}}),
        );
        routes.push(InstanceRoutes {
            instance_id: inst.id.clone(),
            address: Some(addr.ip.clone()),
            routers: vec![inst.name.clone()],
        });
    }
    let config = if routers.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"http": {"routers": routers, "services": services}})
    };
    Ok(Output {
        config: config.to_string(),
        diagnostics: Vec::new(),
        routes,
    })
}
