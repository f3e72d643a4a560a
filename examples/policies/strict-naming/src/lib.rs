//! Strict naming: the built-in route policy, except that every router must
//! answer only for its own VM's host name.
//!
//! The built-in policy trusts a tenant with the rules of its own routers: a
//! VM may label itself ``Host(`victim.example.com`)``. Here a router survives
//! only if its rule is exactly ``Host(`<vm>.<domain>`)`` (HTTP) or
//! ``HostSNI(`<vm>.<domain>`)`` (TCP), or names a host under it
//! (`api.<vm>.<domain>`), where `<vm>` is the instance name normalized as
//! `{{ normalize .Name }}` does and `<domain>` is the `strict_domain`
//! setting. Every other router is dropped, with an error diagnostic naming
//! it and its rule; UDP routers have no host and are always dropped.
//!
//! Settings: the built-in policy's `[routes]` table plus `strict_domain`,
//! which is taken out before the rest goes to the built-in policy.

mod rule;

#[cfg(target_arch = "wasm32")]
mod component;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use traefik_openstack_guest::{Diagnostic, Instance, Level, Output};

/// The settings key this policy adds.
pub const DOMAIN_KEY: &str = "strict_domain";

/// The policy: the built-in one, then the strict-naming filter.
pub fn generate(settings: &str, instances: &[Instance]) -> Result<Output, String> {
    let (domain, rest) = split_settings(settings)?;
    let output = traefik_openstack_guest::generate(&rest, instances)?;
    enforce(&domain, instances, output)
}

/// `strict_domain` (lower case, without a trailing dot) and the JSON of the
/// other settings, for the built-in policy.
fn split_settings(settings: &str) -> Result<(String, String), String> {
    let mut table: Map<String, Value> = if settings.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(settings).map_err(|e| format!("settings: {e}"))?
    };
    let domain = match table.remove(DOMAIN_KEY) {
        Some(Value::String(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(other) => {
            return Err(format!(
                "settings: {DOMAIN_KEY}: expected a string, got {other}"
            ));
        }
        None => {
            return Err(format!(
                "settings: {DOMAIN_KEY} is required (e.g. \"example.com\")"
            ));
        }
    };
    if !rule::is_dns_name(&domain) {
        return Err(format!(
            "settings: {DOMAIN_KEY}: {domain:?} is not a DNS name"
        ));
    }
    Ok((domain, Value::Object(table).to_string()))
}

/// Drops the routers whose rule leaves their instances' names, from the
/// config and from `routes`, with a diagnostic per instance and router.
fn enforce(domain: &str, instances: &[Instance], output: Output) -> Result<Output, String> {
    let mut config: Value = serde_json::from_str(&output.config)
        .map_err(|e| format!("the built-in policy's config is not JSON: {e}"))?;
    // By id: a router is listed under the ids of the instances it serves.
    let mut names: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for i in instances {
        let own = format!("{}.{domain}", traefik_openstack_guest::normalize(&i.name));
        names
            .entry(&i.id)
            .or_default()
            .insert(own.to_ascii_lowercase());
    }

    let mut diagnostics = output.diagnostics;
    let mut dropped: BTreeSet<(String, String)> = BTreeSet::new(); // (protocol, router)
    for route in &output.routes {
        let own = names.get(route.instance_id.as_str());
        for router in &route.routers {
            for protocol in ["http", "tcp", "udp"] {
                let Some(definition) = config[protocol]["routers"].get(router) else {
                    continue;
                };
                let rule_text = definition["rule"].as_str().unwrap_or("");
                let host = rule::single_host(protocol, rule_text);
                let allowed = host.is_some_and(|h| {
                    own.is_some_and(|own| own.iter().any(|o| rule::is_under(&h, o)))
                });
                if !allowed {
                    let shown = own.and_then(|o| o.first()).map_or("?", String::as_str);
                    diagnostics.push(Diagnostic {
                        instance_id: route.instance_id.clone(),
                        level: Level::Error,
                        message: format!(
                            "{protocol} router {router} dropped: rule {rule_text:?} must be \
                             {}(`{shown}`) or a host under it",
                            if protocol == "tcp" { "HostSNI" } else { "Host" }
                        ),
                    });
                    dropped.insert((protocol.to_owned(), router.clone()));
                }
            }
        }
    }

    for (protocol, router) in &dropped {
        remove_router(&mut config, protocol, router);
    }
    let gone: BTreeSet<&str> = dropped.iter().map(|(_, r)| r.as_str()).collect();
    let routes = output
        .routes
        .into_iter()
        .filter_map(|mut r| {
            // A name may be an HTTP and a TCP router at once; it leaves the
            // summary only when no router of that name is left.
            r.routers
                .retain(|name| !gone.contains(name.as_str()) || still_defined(&config, name));
            (!r.routers.is_empty()).then_some(r)
        })
        .collect();
    // Stable, as the built-in policy's: each instance's messages in order.
    diagnostics.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(Output {
        config: config.to_string(),
        diagnostics,
        routes,
    })
}

/// Removes `config.<protocol>.routers.<router>` and the maps it leaves empty:
/// the built-in policy never writes an empty `routers` or protocol object,
/// and neither does this one. Services stay; without a router they serve
/// nothing.
fn remove_router(config: &mut Value, protocol: &str, router: &str) {
    let Some(section) = config.get_mut(protocol).and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(routers) = section.get_mut("routers").and_then(Value::as_object_mut) {
        routers.remove(router);
        if routers.is_empty() {
            section.remove("routers");
        }
    }
    if section.is_empty()
        && let Some(top) = config.as_object_mut()
    {
        top.remove(protocol);
    }
}

fn still_defined(config: &Value, router: &str) -> bool {
    ["http", "tcp", "udp"]
        .iter()
        .any(|p| config[p]["routers"].get(router).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use traefik_openstack_guest::{Address, AddressKind};

    fn vm(id: &str, name: &str, metadata: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            status: "ACTIVE".into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            addresses: vec![Address {
                network: "net".into(),
                ip: format!("10.0.0.{}", id.len()),
                version: 4,
                kind: AddressKind::Fixed,
                mac: None,
            }],
            ..Default::default()
        }
    }

    const SETTINGS: &str = r#"{"strict_domain": "Example.COM.",
        "default_rule": "Host(`{{ normalize .Name }}.example.com`)"}"#;

    #[test]
    fn settings_need_a_domain_and_pass_the_rest_on() {
        assert!(
            generate("{}", &[])
                .unwrap_err()
                .contains("strict_domain is required")
        );
        assert!(
            generate("", &[])
                .unwrap_err()
                .contains("strict_domain is required")
        );
        assert!(
            generate(r#"{"strict_domain": 1}"#, &[])
                .unwrap_err()
                .contains("expected a string")
        );
        assert!(
            generate(r#"{"strict_domain": "a b"}"#, &[])
                .unwrap_err()
                .contains("not a DNS name")
        );
        // Unknown keys are still the built-in policy's business.
        let e = generate(r#"{"strict_domain": "x.org", "nope": 1}"#, &[]).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        assert_eq!(
            generate(r#"{"strict_domain": "x.org"}"#, &[])
                .unwrap()
                .config,
            "{}"
        );
    }

    #[test]
    fn own_hosts_stay_others_go() {
        let instances = [
            vm("a", "Web_01", &[]),
            vm(
                "bb",
                "api",
                &[
                    (
                        "traefik.http.routers.sub.rule",
                        "Host(`v1.api.example.com`)",
                    ),
                    (
                        "traefik.http.routers.evil.rule",
                        "Host(`victim.example.com`)",
                    ),
                    (
                        "traefik.http.routers.wide.rule",
                        "Host(`api.example.com`) || PathPrefix(`/`)",
                    ),
                ],
            ),
            vm(
                "ccc",
                "db",
                &[("traefik.tcp.routers.pg.rule", "HostSNI(`*`)")],
            ),
        ];
        let out = generate(SETTINGS, &instances).unwrap();
        let config: Value = serde_json::from_str(&out.config).unwrap();
        let routers: Vec<&String> = config["http"]["routers"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(routers, ["Web-01", "sub"]);
        // The TCP router is gone; its service stays, serving nothing.
        assert!(config["tcp"].get("routers").is_none(), "{config}");
        assert!(config["tcp"]["services"]["db"].is_object(), "{config}");
        let routes: Vec<(&str, Vec<&str>)> = out
            .routes
            .iter()
            .map(|r| {
                (
                    r.instance_id.as_str(),
                    r.routers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(routes, [("a", vec!["Web-01"]), ("bb", vec!["sub"])]);
        let errors: Vec<&str> = out
            .diagnostics
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("router evil dropped"), "{errors:?}");
        assert!(errors[0].contains("Host(`api.example.com`)"), "{errors:?}");
        assert!(errors[2].contains("tcp router pg dropped"), "{errors:?}");
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut instances = vec![
            vm(
                "a",
                "one",
                &[("traefik.http.routers.x.rule", "Host(`two.example.com`)")],
            ),
            vm("b", "two", &[]),
        ];
        let a = generate(SETTINGS, &instances).unwrap();
        instances.reverse();
        assert_eq!(generate(SETTINGS, &instances).unwrap(), a);
    }
}
