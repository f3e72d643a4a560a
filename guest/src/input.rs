//! Offline formats: instances and test cases read from JSON, and a run's
//! result written as JSON, for running a policy without a cloud (the
//! component's `wasi:cli/run`, the host's `render --instances` and `test`).
//! Pure parsing and printing, no I/O.
//!
//! Instances come in either of two formats, told apart by the JSON kind at
//! the top:
//!
//! - an **array**: the inventory format, one [`Instance`] per element, as in
//!   `tests/golden/*/instances.json` (missing fields take their defaults);
//! - an **object**: a Nova `GET /servers/detail` body, `{"servers": [...]}`,
//!   of any microversion from 2.1 on, mapped as the host maps a live
//!   listing (see `NovaServer::instance`).
//!
//! Parsing is one pass over the text, so an error keeps its line and column
//! and [`InputError`] can say where in the document it went wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::model::{Address, AddressKind, Instance, Output};

/// What an instances document may be; also the start of every error about one.
const INSTANCES_EXPECTED: &str = "a JSON array of instances (the output of \"traefik-openstack inventory\") \
     or a Nova servers/detail body {\"servers\": [...]}";

const CASE_EXPECTED: &str = "a case {\"settings\": {...}, \"instances\": [...]} \
     (settings: the [routes] table as a JSON object or string; instances: \
     a JSON array of instances or a Nova servers/detail body {\"servers\": [...]})";

/// A test case: the policy's settings and the instances to run it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The `[routes]` table as JSON text, ready for [`crate::generate`].
    pub settings: String,
    pub instances: Vec<Instance>,
}

/// Input that is not one of the accepted formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// What was being read: `instances` or `case`.
    pub document: &'static str,
    /// The formats accepted there.
    pub expected: &'static str,
    /// Where parsing stopped, e.g. `servers[3].addresses.private[0].version`;
    /// empty when the document itself is wrong.
    pub path: String,
    /// The parser's complaint, with line and column.
    pub detail: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}: ", self.document, self.expected)?;
        if !self.path.is_empty() {
            write!(f, "at {}: ", self.path)?;
        }
        f.write_str(&self.detail)
    }
}

impl std::error::Error for InputError {}

/// Reads instances in the inventory or the Nova format (see the module docs).
pub fn parse_instances(json: &str) -> Result<Vec<Instance>, InputError> {
    parse::<Instances>(json, "instances", INSTANCES_EXPECTED).map(|i| i.0)
}

/// Reads a case: `{"settings": <object or JSON string>, "instances": <either
/// instances format>}`. Missing settings mean the policy's defaults (`{}`).
pub fn parse_case(json: &str) -> Result<Case, InputError> {
    // serde's derive would also take `[settings, instances]`.
    if json.trim_start().starts_with('[') {
        return Err(InputError {
            document: "case",
            expected: CASE_EXPECTED,
            path: String::new(),
            detail: "found a JSON array; a case is an object".into(),
        });
    }
    let raw: RawCase = parse(json, "case", CASE_EXPECTED)?;
    Ok(Case {
        settings: raw.settings.0,
        instances: raw.instances.0,
    })
}

/// A run's result as one JSON document, the shape of the golden cases'
/// `expected.json`: `{"config": {...}, "diagnostics": [...], "routes": [...]}`,
/// with the config as an object rather than the string the contract carries.
/// Fails only if `config` is not JSON (a policy's bug).
pub fn output_json(output: &Output) -> Result<Value, String> {
    let config: Value = serde_json::from_str(&output.config)
        .map_err(|e| format!("the policy's config is not JSON: {e}"))?;
    Ok(serde_json::json!({
        "config": config,
        "diagnostics": output.diagnostics,
        "routes": output.routes,
    }))
}

fn parse<'a, T: Deserialize<'a>>(
    json: &'a str,
    document: &'static str,
    expected: &'static str,
) -> Result<T, InputError> {
    let fail = |path: String, detail: String| InputError {
        document,
        expected,
        // `.` is the library's name for "the top".
        path: if path == "." { String::new() } else { path },
        detail,
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| fail(e.path().to_string(), e.into_inner().to_string()))?;
    // Trailing garbage after a valid document is an error too.
    de.end().map_err(|e| fail(String::new(), e.to_string()))?;
    Ok(value)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    settings: Settings,
    instances: Instances,
}

/// Settings written inline as an object, or as the JSON text `generate` takes.
struct Settings(String);

impl Default for Settings {
    fn default() -> Self {
        Settings("{}".into())
    }
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(text) => Ok(Settings(text)),
            object @ Value::Object(_) => Ok(Settings(object.to_string())),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"the [routes] settings as a JSON object or a JSON string",
            )),
        }
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// Instances in either format, decided by the JSON kind (array or object).
/// A visitor rather than a `Value` first, so errors keep line and column.
struct Instances(Vec<Instance>);

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InstancesVisitor)
    }
}

struct InstancesVisitor;

impl<'de> Visitor<'de> for InstancesVisitor {
    type Value = Instances;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(INSTANCES_EXPECTED)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Instances, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(i) = seq.next_element::<Instance>()? {
            out.push(i);
        }
        Ok(Instances(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Instances, A::Error> {
        let mut servers: Option<Vec<NovaServer>> = None;
        // Nova's body also holds `servers_links`; anything else is ignored
        // too, as the host does.
        while let Some(key) = map.next_key::<String>()? {
            if key == "servers" {
                if servers.is_some() {
                    return Err(de::Error::duplicate_field("servers"));
                }
                servers = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let servers = servers.ok_or_else(|| de::Error::missing_field("servers"))?;
        Ok(Instances(
            servers
                .into_iter()
                .filter_map(NovaServer::instance)
                .collect(),
        ))
    }
}

/// One server of `/servers/detail`, read the same way offline and by the
/// host's live listing. Every field but `id` may be missing (older
/// microversions, down cells).
#[derive(Debug, Clone, Deserialize)]
pub struct NovaServer {
    pub id: String,
    name: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(rename = "OS-EXT-AZ:availability_zone")]
    availability_zone: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state")]
    vm_state: Option<String>,
    /// A full flavor (2.47+, `original_name`) or a reference (`id`).
    #[serde(default)]
    flavor: Value,
    /// `""` for a server booted from a volume.
    #[serde(default)]
    image: Value,
    #[serde(default)]
    created: String,
    /// When Nova last changed it: the host's `changes-since` watermark.
    #[serde(default)]
    pub updated: String,
    description: Option<String>,
    /// A BTreeMap, like the host: metadata comes out in key order.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    addresses: BTreeMap<String, Vec<NovaAddress>>,
}

#[derive(Debug, Clone, Deserialize)]
struct NovaAddress {
    addr: String,
    version: u8,
    #[serde(rename = "OS-EXT-IPS:type")]
    kind: Option<String>,
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr")]
    mac: Option<String>,
}

impl NovaServer {
    /// Deleted servers show up in `changes-since` listings; they leave.
    pub fn is_deleted(&self) -> bool {
        self.status.eq_ignore_ascii_case("DELETED")
            || self
                .vm_state
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("deleted"))
    }

    /// A record from a cell that is down (microversion 2.69): id and
    /// status only.
    pub fn is_partial(&self) -> bool {
        self.name.is_none()
    }

    /// The instance offline: `None` for a deleted server or a partial
    /// record. Live, the host keeps what it knew of such a server; offline
    /// there is nothing to keep, and a nameless record is no instance to
    /// route.
    fn instance(self) -> Option<Instance> {
        if self.is_deleted() || self.is_partial() {
            return None;
        }
        Some(self.into_instance("", ""))
    }

    /// This server as an instance of `cloud` and `region` (which the body
    /// does not carry).
    pub fn into_instance(self, cloud: &str, region: &str) -> Instance {
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let flavor_name = text(&self.flavor, "original_name").or_else(|| text(&self.flavor, "id"));
        let image_id = text(&self.image, "id");
        let addresses = self
            .addresses
            .into_iter()
            .flat_map(|(network, addrs)| {
                addrs.into_iter().map(move |a| Address {
                    network: network.clone(),
                    ip: a.addr,
                    version: a.version,
                    kind: match a.kind.as_deref() {
                        Some("floating") => AddressKind::Floating,
                        _ => AddressKind::Fixed,
                    },
                    mac: a.mac.filter(|m| !m.is_empty()),
                })
            })
            .collect();
        Instance {
            id: self.id,
            name: self.name.unwrap_or_default(),
            status: self.status,
            project_id: self.tenant_id,
            user_id: self.user_id,
            cloud: cloud.to_owned(),
            region: region.to_owned(),
            availability_zone: self.availability_zone.filter(|z| !z.is_empty()),
            flavor_name,
            image_id,
            created: self.created,
            updated: self.updated,
            description: self.description.filter(|d| !d.is_empty()),
            metadata: self.metadata.into_iter().collect(),
            tags: self.tags,
            addresses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! nova {
        ($name:literal) => {
            include_str!(concat!("../../host/tests/fixtures/openstack/nova/", $name))
        };
    }

    fn one(json: &str) -> Instance {
        let mut all = parse_instances(json).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn nova_v2_100_maps_like_the_host() {
        let i = one(nova!("servers-detail-v2.100.json"));
        assert_eq!(i.id, "f5dc173b-6804-445a-a6d8-c705dad5b5eb");
        assert_eq!(i.name, "new-server-test");
        assert_eq!(i.status, "ACTIVE");
        assert_eq!(i.project_id, "6f70656e737461636b20342065766572");
        assert_eq!(i.user_id, "fake");
        assert_eq!((i.cloud.as_str(), i.region.as_str()), ("", ""));
        assert_eq!(i.availability_zone.as_deref(), Some("us-west"));
        assert_eq!(i.flavor_name.as_deref(), Some("m1.tiny"));
        assert_eq!(
            i.image_id.as_deref(),
            Some("70a599e0-31e7-49b7-b260-868f441e862b")
        );
        assert_eq!(i.created, "2013-09-03T04:01:32Z");
        assert_eq!(i.description, None); // "" in the sample
        assert_eq!(
            i.metadata,
            vec![("My Server Name".into(), "Apache1".into())]
        );
        assert_eq!(
            i.addresses,
            vec![Address {
                network: "private".into(),
                ip: "192.168.1.30".into(),
                version: 4,
                kind: AddressKind::Fixed,
                mac: Some("00:0c:29:0d:11:74".into()),
            }]
        );
    }

    #[test]
    fn older_microversions() {
        // 2.1: no tags, no description; the flavor is a reference.
        let i = one(nova!("servers-detail-v2.1.json"));
        assert_eq!(i.flavor_name.as_deref(), Some("1"));
        assert_eq!((i.tags.len(), i.description), (0, None));
        assert_eq!(i.user_id, "admin");
        let i = one(nova!("servers-detail-v2.26-tags.json"));
        assert_eq!(i.tags, vec!["tag1", "tag2"]);
        let i = one(nova!("servers-detail-v2.47.json"));
        assert_eq!(i.flavor_name.as_deref(), Some("m1.tiny.specs"));
    }

    #[test]
    fn down_cell_records_are_skipped() {
        assert_eq!(
            parse_instances(nova!("servers-detail-v2.69-down-cell.json")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn boot_from_volume_deleted_and_floating() {
        let mut body: Value = serde_json::from_str(nova!("servers-detail-v2.47.json")).unwrap();
        let mut server = body["servers"][0].clone();
        server["image"] = "".into();
        server["metadata"] = serde_json::json!({"b": "2", "a": "1"});
        server["OS-EXT-AZ:availability_zone"] = "".into();
        server["addresses"] = serde_json::json!({
            "public": [{"addr": "203.0.113.5", "version": 4, "OS-EXT-IPS:type": "floating"}],
            "private": [
                {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": ""},
                {"addr": "fd00::5", "version": 6}
            ]
        });
        let mut deleted = server.clone();
        deleted["id"] = "gone".into();
        deleted["status"] = "DELETED".into();
        let mut soft = server.clone();
        soft["id"] = "gone-too".into();
        soft["OS-EXT-STS:vm_state"] = "deleted".into();
        body["servers"] = serde_json::json!([server, deleted, soft]);

        let i = one(&body.to_string());
        assert_eq!(i.image_id, None);
        assert_eq!(i.availability_zone, None);
        assert_eq!(
            i.metadata,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let got: Vec<_> = i
            .addresses
            .iter()
            .map(|a| {
                (
                    a.network.as_str(),
                    a.ip.as_str(),
                    a.version,
                    a.kind,
                    a.mac.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("private", "10.0.0.5", 4, AddressKind::Fixed, None),
                ("private", "fd00::5", 6, AddressKind::Fixed, None),
                ("public", "203.0.113.5", 4, AddressKind::Floating, None),
            ]
        );
    }

    #[test]
    fn inventory_format_is_the_model() {
        let json = include_str!("../tests/golden/seed/instances.json");
        let all = parse_instances(json).unwrap();
        assert_eq!(all, serde_json::from_str::<Vec<Instance>>(json).unwrap());
        assert_eq!(all.len(), 4);
        assert_eq!(parse_instances(" [ ] ").unwrap(), vec![]);
        assert_eq!(parse_instances(r#"{"servers": []}"#).unwrap(), vec![]);
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        let mut body: Value = serde_json::from_str(nova!("servers-detail-v2.100.json")).unwrap();
        body["servers"][0]["addresses"]["private"][0]["version"] = "four".into();
        let e = parse_instances(&serde_json::to_string_pretty(&body).unwrap()).unwrap_err();
        assert_eq!(e.path, "servers[0].addresses.private[0].version");
        let text = e.to_string();
        assert!(
            text.starts_with("instances: expected a JSON array of instances"),
            "{text}"
        );
        assert!(text.contains(r#"or a Nova servers/detail body {"servers": [...]}"#));
        assert!(
            text.contains(
                "at servers[0].addresses.private[0].version: invalid type: string \"four\""
            ),
            "{text}"
        );
        assert!(text.contains("line "), "{text}");

        let e = parse_instances(r#"[{"id": "a"}, {"name": 5}]"#).unwrap_err();
        assert_eq!(e.path, "[1].name");

        // Neither format: the message names both.
        for bad in ["42", "\"x\"", "null"] {
            let e = parse_instances(bad).unwrap_err();
            assert_eq!(e.path, "");
            assert!(
                e.detail.contains("expected a JSON array of instances"),
                "{e}"
            );
            assert!(e.detail.contains("servers/detail"), "{e}");
        }
        let e = parse_instances(r#"{"instances": []}"#).unwrap_err();
        assert!(e.detail.contains("missing field `servers`"), "{e}");
        let e = parse_instances(r#"{"servers": [{"name": "x"}]}"#).unwrap_err();
        assert_eq!(e.path, "servers[0]");
        assert!(e.detail.contains("missing field `id`"), "{e}");
        assert!(parse_instances("[] []").is_err());
        assert!(parse_instances("[").unwrap_err().detail.contains("EOF"));
    }

    #[test]
    fn output_document() {
        let out = crate::generate(
            "{}",
            &parse_instances(nova!("servers-detail-v2.1.json")).unwrap(),
        )
        .unwrap();
        let doc = output_json(&out).unwrap();
        assert!(
            doc["config"]["http"]["routers"]["new-server-test"].is_object(),
            "{doc}"
        );
        assert_eq!(doc["routes"][0]["address"], "192.168.1.30");
        let bad = Output {
            config: "{".into(),
            diagnostics: vec![],
            routes: vec![],
        };
        assert!(output_json(&bad).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn cases() {
        let seed = format!(
            r#"{{"settings": {}, "instances": {}}}"#,
            include_str!("../tests/golden/seed/settings.json"),
            include_str!("../tests/golden/seed/instances.json")
        );
        let case = parse_case(&seed).unwrap();
        assert_eq!(case.instances.len(), 4);
        let settings: Value = serde_json::from_str(&case.settings).unwrap();
        assert_eq!(settings["address"], "floating");

        let case = parse_case(&format!(
            r#"{{"settings": "{{\"address\": \"fixed\"}}", "instances": {}}}"#,
            nova!("servers-detail-v2.26-tags.json")
        ))
        .unwrap();
        assert_eq!(case.settings, r#"{"address": "fixed"}"#);
        assert_eq!(case.instances[0].tags, vec!["tag1", "tag2"]);

        let case = parse_case(r#"{"instances": []}"#).unwrap();
        assert_eq!(case.settings, "{}");

        let e = parse_case(r#"{"settings": 3, "instances": []}"#).unwrap_err();
        assert_eq!(e.path, "settings");
        assert!(e.detail.contains("JSON object or a JSON string"), "{e}");
        let e =
            parse_case(r#"{"settings": {}, "instances": {"servers": [{"id": 1}]}}"#).unwrap_err();
        assert_eq!(e.path, "instances.servers[0].id");
        assert!(e.to_string().starts_with("case: expected a case"), "{e}");
        let e = parse_case(r#"{"settings": {}}"#).unwrap_err();
        assert!(e.detail.contains("missing field `instances`"), "{e}");
        let e = parse_case(r#"{"instance": []}"#).unwrap_err();
        assert!(e.detail.contains("unknown field `instance`"), "{e}");
        let e = parse_case("[]").unwrap_err();
        assert!(e.detail.contains("found a JSON array"), "{e}");
        let e = parse_case("7").unwrap_err();
        assert!(e.detail.contains("invalid type: integer `7`"), "{e}");
    }
}
