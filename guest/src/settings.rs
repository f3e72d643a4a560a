//! The policy's settings: the JSON of the host's `[routes]` table.
//!
//! Unknown keys and bad values are errors that name the key, so that a typo
//! in the config file is reported at start-up instead of silently changing
//! routing.

use crate::address::{AddressSettings, AddressType};
use crate::collect::has_prefix;
use crate::constraints::{self, Expr};
use crate::glob::Glob;
use crate::template::Template;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub const DEFAULT_RULE: &str = "Host(`{{ normalize .Name }}`)";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    default_rule: Option<String>,
    exposed_by_default: Option<bool>,
    default_labels: Option<BTreeMap<String, String>>,
    address: Option<Value>,
    entry_points: Option<Vec<String>>,
    constraints: Option<String>,
    statuses: Option<Vec<String>>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    default_port: Option<u16>,
    label_prefix: Option<String>,
}

/// One of the operator's `default_labels`.
#[derive(Debug, Clone)]
pub struct DefaultLabel {
    /// As written.
    pub raw: String,
    pub key: Template,
    pub value: Template,
    /// The key names its router, service or middleware without a template.
    pub shared: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub default_rule: Template,
    pub exposed_by_default: bool,
    /// In key order.
    pub default_labels: Vec<DefaultLabel>,
    pub address: AddressSettings,
    pub entry_points: Vec<String>,
    pub constraints: Option<Expr>,
    pub statuses: Vec<String>,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    pub default_port: u16,
    pub label_prefix: String,
    /// Fields read by `default_rule` or `default_labels`: only these are
    /// copied out of each instance for rendering.
    pub template_fields: BTreeSet<&'static str>,
}

impl Settings {
    pub fn parse(json: &str) -> Result<Settings, String> {
        let json = json.trim();
        let raw: Raw = if json.is_empty() || json == "null" {
            Raw::default()
        } else {
            serde_json::from_str(json).map_err(|e| format!("routes settings: {e}"))?
        };
        let err = |key: &str, e: String| format!("routes settings: {key}: {e}");

        let label_prefix = raw.label_prefix.unwrap_or_else(|| "traefik".into());
        let prefix_ok = !label_prefix.is_empty()
            && !label_prefix.starts_with('.')
            && !label_prefix.ends_with('.')
            && label_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !prefix_ok {
            return Err(err(
                "label_prefix",
                format!("{label_prefix:?} is not a valid label prefix"),
            ));
        }

        let default_rule = Template::parse(raw.default_rule.as_deref().unwrap_or(DEFAULT_RULE))
            .map_err(|e| err("default_rule", e))?;

        let mut default_labels = Vec::new();
        for (k, v) in raw.default_labels.unwrap_or_default() {
            if !has_prefix(&k, &label_prefix) {
                return Err(err(
                    "default_labels",
                    format!("key {k:?} is not under the label prefix {label_prefix:?}"),
                ));
            }
            let kt = Template::parse(&k)
                .map_err(|e| err("default_labels", format!("key {k:?}: {e}")))?;
            let vt = Template::parse(&v)
                .map_err(|e| err("default_labels", format!("value of {k:?}: {e}")))?;
            // A name written without a template is the same for every
            // instance: the operator's, whichever project the instance is in.
            // Known here once, not at every instance's render.
            let shared = k
                .get(label_prefix.len() + 1..)
                .is_some_and(|rest| rest.splitn(4, '.').take(3).all(|p| !p.contains("{{")));
            default_labels.push(DefaultLabel {
                raw: k,
                key: kt,
                value: vt,
                shared,
            });
        }

        let address = parse_address(raw.address.as_ref()).map_err(|e| err("address", e))?;

        let entry_points = raw.entry_points.unwrap_or_default();
        if entry_points
            .iter()
            .any(|e| e.trim().is_empty() || e.contains(','))
        {
            return Err(err(
                "entry_points",
                "entry point names must be non-empty, without commas".into(),
            ));
        }

        let constraints = match raw.constraints.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(constraints::parse(c).map_err(|e| err("constraints", e))?),
        };

        let globs = |key: &str, v: Option<Vec<String>>| -> Result<Vec<Glob>, String> {
            v.unwrap_or_default()
                .iter()
                .map(|g| Glob::new(g).map_err(|e| err(key, e)))
                .collect()
        };

        let default_port = raw.default_port.unwrap_or(80);
        if default_port == 0 {
            return Err(err("default_port", "must be between 1 and 65535".into()));
        }

        let mut template_fields = BTreeSet::new();
        default_rule.fields(&mut template_fields);
        for l in &default_labels {
            l.key.fields(&mut template_fields);
            l.value.fields(&mut template_fields);
        }

        Ok(Settings {
            template_fields,
            default_rule,
            exposed_by_default: raw.exposed_by_default.unwrap_or(true),
            default_labels,
            address,
            entry_points,
            constraints,
            statuses: raw.statuses.unwrap_or_else(|| vec!["ACTIVE".into()]),
            include: globs("include", raw.include)?,
            exclude: globs("exclude", raw.exclude)?,
            default_port,
            label_prefix,
        })
    }
}

fn address_type(s: &str) -> Result<AddressType, String> {
    match s {
        "floating" => Ok(AddressType::Floating),
        "fixed" => Ok(AddressType::Fixed),
        "any" => Ok(AddressType::Any),
        _ => Err(format!(
            "type {s:?}: expected \"floating\", \"fixed\" or \"any\""
        )),
    }
}

/// `"floating"` or `{"type": "floating", "network": "public", "ip_version": 4}`.
fn parse_address(v: Option<&Value>) -> Result<AddressSettings, String> {
    let mut out = AddressSettings::default();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.kind = address_type(s)?,
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("type", Value::String(s)) => out.kind = address_type(s)?,
                    ("network", Value::String(s)) if !s.is_empty() => out.network = Some(s.clone()),
                    ("ip_version", Value::Number(n))
                        if n.as_u64() == Some(4) || n.as_u64() == Some(6) =>
                    {
                        out.ip_version = n.as_u64().map(|v| v as u8)
                    }
                    ("type" | "network" | "ip_version", _) => {
                        return Err(format!("{k}: invalid value {v}"));
                    }
                    _ => {
                        return Err(format!(
                            "unknown key {k:?} (expected type, network, ip_version)"
                        ));
                    }
                }
            }
        }
        Some(other) => return Err(format!("expected a string or a table, got {other}")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        for empty in ["", "{}", "null", "  "] {
            let s = Settings::parse(empty).unwrap();
            assert!(s.exposed_by_default);
            assert_eq!(s.statuses, vec!["ACTIVE"]);
            assert_eq!(s.default_port, 80);
            assert_eq!(s.label_prefix, "traefik");
            assert_eq!(s.address, AddressSettings::default());
        }
    }

    #[test]
    fn address_forms() {
        let s = Settings::parse(r#"{"address": "fixed"}"#).unwrap();
        assert_eq!(s.address.kind, AddressType::Fixed);
        let s = Settings::parse(
            r#"{"address": {"type": "floating", "network": "pub", "ip_version": 6}}"#,
        )
        .unwrap();
        assert_eq!(
            s.address,
            AddressSettings {
                kind: AddressType::Floating,
                network: Some("pub".into()),
                ip_version: Some(6)
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"defualt_rule": "x"}"#, "defualt_rule"),
            (r#"{"address": "public"}"#, "address"),
            (r#"{"address": {"ip_version": 5}}"#, "ip_version"),
            (r#"{"address": {"net": "x"}}"#, "net"),
            (r#"{"default_port": 0}"#, "default_port"),
            (r#"{"default_port": 70000}"#, "70000"),
            (r#"{"default_rule": "{{ .Nope }}"}"#, "default_rule"),
            (r#"{"constraints": "Tag(`a`"}"#, "constraints"),
            (r#"{"label_prefix": "a b"}"#, "label_prefix"),
            (r#"{"default_labels": {"foo.bar": "x"}}"#, "default_labels"),
            (r#"{"exposed_by_default": "yes"}"#, "invalid type"),
            (r#"{"entry_points": ["a,b"]}"#, "entry_points"),
            ("[1]", "routes settings"),
        ];
        for (json, needle) in cases {
            let e = Settings::parse(json).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
