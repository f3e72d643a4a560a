//! Traefik labels of an instance, and their decoding.
//!
//! Labels come from Nova metadata keys under the prefix and from Nova tags
//! `prefix.key=value`. They are decoded the way Traefik's `pkg/config/label`
//! does: option names case-insensitive, router/service/middleware names kept
//! as written, lists comma-separated. A bad label is reported and ignored; it
//! never stops the rest of the instance.

use crate::model::Instance;
use crate::names::check_label_name;
use crate::schema::{self, Field, Kind};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub type Object = Map<String, Value>;

/// Indexed lists (`domains[n]`) are short in practice; the cap keeps a
/// hostile `domains[4000000000]` from meaning anything.
const MAX_INDEX: usize = 100;

/// `key` is under `prefix.` (prefix compared case-insensitively).
pub fn has_prefix(key: &str, prefix: &str) -> bool {
    key.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        && key.as_bytes().get(prefix.len()) == Some(&b'.')
        && key.len() > prefix.len() + 1
}

/// The instance's own labels in decoding order: tags first, then metadata,
/// so that metadata wins for the same option. Warnings are returned for tags
/// under the prefix that are not `key=value`.
pub fn collect(inst: &Instance, prefix: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut tags: Vec<&String> = inst.tags.iter().collect();
    tags.sort();
    for tag in tags {
        match tag.split_once('=') {
            Some((k, v)) if has_prefix(k, prefix) => out.push((k.to_string(), v.to_string())),
            None if has_prefix(tag, prefix) => {
                warnings.push(format!("tag {tag}: expected {prefix}.<key>=<value>"))
            }
            _ => {}
        }
    }
    let mut meta: Vec<&(String, String)> = inst
        .metadata
        .iter()
        .filter(|(k, _)| has_prefix(k, prefix))
        .collect();
    meta.sort();
    out.extend(meta.into_iter().cloned());
    (out, warnings)
}

/// Every metadata entry plus every `key=value` tag (metadata wins), for
/// `Label(...)` constraints, which look at all labels like Traefik's do.
pub fn all_labels(inst: &Instance) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for tag in &inst.tags {
        if let Some((k, v)) = tag.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    for (k, v) in &inst.metadata {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// Go's `strconv.ParseBool`, which Traefik uses for boolean labels.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The last `prefix.enable` label: `Some(Ok(b))`, or `Some(Err(raw))` when
/// it is not a boolean.
pub fn enable(labels: &[(String, String)], prefix: &str) -> Option<Result<bool, String>> {
    labels
        .iter()
        .rev()
        .find(|(k, _)| {
            has_prefix(k, prefix) && k[prefix.len() + 1..].eq_ignore_ascii_case("enable")
        })
        .map(|(_, v)| parse_bool(v.trim()).ok_or_else(|| v.clone()))
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Section {
    pub routers: BTreeMap<String, Object>,
    pub services: BTreeMap<String, Object>,
    pub middlewares: BTreeMap<String, Object>,
}

impl Section {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.middlewares.is_empty()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub enable: Option<bool>,
    pub network: Option<String>,
    pub http: Section,
    pub tcp: Section,
    pub udp: Section,
}

enum Problem {
    Unknown,
    Invalid(String),
}

enum Step {
    Key(&'static str),
    Index(usize),
    MapKey(String),
}

/// What a label does at the end of its path.
enum Action {
    Set(Value),
    /// `struct=true`: make it exist, keep what it already holds.
    Ensure,
    /// `struct=false`.
    Remove,
}

/// Decodes labels in order (later ones win); returns warnings for labels
/// that were ignored.
#[cfg(test)]
pub fn decode(labels: &[(String, String)], prefix: &str) -> (Decoded, Vec<String>) {
    let mut d = Decoded::default();
    let mut warnings = Vec::new();
    decode_into(&mut d, labels, prefix, &mut warnings);
    finish(&mut d);
    (d, warnings)
}

/// Decodes `labels` on top of what `d` already holds, as if they followed
/// the labels decoded before: a caller can check one batch's warnings
/// before adding the next, without decoding anything twice. Whether a label
/// is ignored depends only on the label itself. `finish` must follow.
pub fn decode_into(
    d: &mut Decoded,
    labels: &[(String, String)],
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    // Scratch space, reused for every label of the batch.
    let mut segs = Vec::new();
    let mut steps = Vec::new();
    for (key, value) in labels {
        if !has_prefix(key, prefix) {
            continue;
        }
        let rest = &key[prefix.len() + 1..];
        segs.clear();
        segs.extend(rest.split('.'));
        if let Err(p) = decode_one(d, &segs, value, &mut steps) {
            warnings.push(match p {
                Problem::Unknown => format!("label {key}: unknown option"),
                Problem::Invalid(why) => format!("label {key}: {why}"),
            });
        }
    }
}

/// Turns the indexed options of every decoded object into arrays.
pub fn finish(d: &mut Decoded) {
    finalize_section(
        &mut d.http,
        schema::ROUTER,
        schema::HTTP_SERVICE,
        schema::MIDDLEWARE,
    );
    finalize_section(
        &mut d.tcp,
        schema::TCP_ROUTER,
        schema::TCP_SERVICE,
        schema::TCP_MIDDLEWARE,
    );
    finalize_section(&mut d.udp, schema::UDP_ROUTER, schema::UDP_SERVICE, &[]);
}

/// The layer (`http`, `tcp`, `udp`) a label's first segment names.
#[derive(Clone, Copy)]
enum Layer {
    Http,
    Tcp,
    Udp,
}

fn layer(seg: &str) -> Option<Layer> {
    [
        ("http", Layer::Http),
        ("tcp", Layer::Tcp),
        ("udp", Layer::Udp),
    ]
    .into_iter()
    .find(|(n, _)| seg.eq_ignore_ascii_case(n))
    .map(|(_, l)| l)
}

/// The schema of `<layer>.<kind>` (`http.routers`, ...); `kind` is compared
/// case-insensitively without allocating, as this runs for every label.
fn kind_fields(layer: Layer, kind: &str) -> Option<(usize, &'static [Field])> {
    let k = |n: &str| kind.eq_ignore_ascii_case(n);
    match layer {
        Layer::Http if k("routers") => Some((0, schema::ROUTER)),
        Layer::Http if k("services") => Some((1, schema::HTTP_SERVICE)),
        Layer::Http if k("middlewares") => Some((2, schema::MIDDLEWARE)),
        Layer::Tcp if k("routers") => Some((0, schema::TCP_ROUTER)),
        Layer::Tcp if k("services") => Some((1, schema::TCP_SERVICE)),
        Layer::Tcp if k("middlewares") => Some((2, schema::TCP_MIDDLEWARE)),
        Layer::Udp if k("routers") => Some((0, schema::UDP_ROUTER)),
        Layer::Udp if k("services") => Some((1, schema::UDP_SERVICE)),
        _ => None,
    }
}

/// `segs` are the label's key split at dots, after the prefix.
fn decode_one(
    d: &mut Decoded,
    segs: &[&str],
    value: &str,
    steps: &mut Vec<Step>,
) -> Result<(), Problem> {
    let head = segs[0];
    if segs.len() == 1 && head.eq_ignore_ascii_case("enable") {
        d.enable = Some(
            parse_bool(value.trim())
                .ok_or_else(|| Problem::Invalid(format!("invalid boolean {value:?}")))?,
        );
        return Ok(());
    }
    if segs.len() == 2
        && head.eq_ignore_ascii_case("openstack")
        && segs[1].eq_ignore_ascii_case("network")
    {
        let v = value.trim();
        d.network = (!v.is_empty()).then(|| v.to_string());
        return Ok(());
    }
    let Some(layer) = layer(head).filter(|_| segs.len() >= 4) else {
        return Err(Problem::Unknown);
    };
    let (which, fields) = kind_fields(layer, segs[1]).ok_or(Problem::Unknown)?;
    let section = match layer {
        Layer::Http => &mut d.http,
        Layer::Tcp => &mut d.tcp,
        Layer::Udp => &mut d.udp,
    };
    let map = match which {
        0 => &mut section.routers,
        1 => &mut section.services,
        _ => &mut section.middlewares,
    };
    let name = segs[2];
    check_label_name(name).map_err(Problem::Invalid)?;
    steps.clear();
    let action = resolve(fields, &segs[3..], value, steps)?;
    // Most labels add to an object that exists: look up before allocating.
    let obj = match map.get_mut(name) {
        Some(o) => o,
        None => map.entry(name.to_string()).or_default(),
    };
    apply(obj, steps, action);
    Ok(())
}

/// The label names a service: a router's `service`, or an `errors`
/// middleware's `service`.
pub fn names_service(key: &str, prefix: &str) -> bool {
    if !has_prefix(key, prefix) {
        return false;
    }
    let segs: Vec<String> = key[prefix.len() + 1..]
        .split('.')
        .map(str::to_ascii_lowercase)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    matches!(
        segs.as_slice(),
        [_, "routers", _, "service"] | ["http", "middlewares", _, "errors", "service"]
    )
}

/// The type of the option a label sets, if the label is valid.
pub fn option_kind(key: &str, prefix: &str) -> Option<Kind> {
    if !has_prefix(key, prefix) {
        return None;
    }
    let mut segs = key[prefix.len() + 1..].split('.');
    let (Some(l), Some(k), Some(_name)) = (segs.next(), segs.next(), segs.next()) else {
        return None;
    };
    let (_, mut fields) = kind_fields(layer(l)?, k)?;
    let mut segs = segs.peekable();
    while let Some(seg) = segs.next() {
        let (name, _) = split_index(seg).ok()?;
        let (_, kind) = schema::field(fields, name)?;
        match kind {
            Kind::Struct { fields: sub, .. } | Kind::Indexed(sub) if segs.peek().is_some() => {
                fields = sub
            }
            k => return Some(*k),
        }
    }
    None
}

/// `domains[3]` → (`domains`, Some(3)).
fn split_index(seg: &str) -> Result<(&str, Option<usize>), Problem> {
    let Some(open) = seg.bytes().position(|b| b == b'[') else {
        return Ok((seg, None));
    };
    let idx = seg[open + 1..]
        .strip_suffix(']')
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < MAX_INDEX)
        .ok_or(Problem::Unknown)?;
    Ok((&seg[..open], Some(idx)))
}

/// Validates a label path against the schema before touching the tree, so
/// that a bad label leaves no half-created option behind.
/// The path goes to `steps` (empty on entry), the action is returned.
fn resolve(
    fields: &'static [Field],
    segs: &[&str],
    raw: &str,
    steps: &mut Vec<Step>,
) -> Result<Action, Problem> {
    let mut fields = fields;
    let mut i = 0;
    loop {
        let Some(seg) = segs.get(i) else {
            return Err(Problem::Unknown);
        };
        let (name, idx) = split_index(seg)?;
        let (fname, kind) = schema::field(fields, name).ok_or(Problem::Unknown)?;
        steps.push(Step::Key(fname));
        let last = i + 1 == segs.len();
        match (*kind, idx) {
            (Kind::Indexed(sub), Some(n)) if !last => {
                steps.push(Step::Index(n));
                fields = sub;
            }
            (_, Some(_)) | (Kind::Indexed(_), None) => return Err(Problem::Unknown),
            (Kind::Struct { allow_empty, .. }, None) if last => {
                if !allow_empty {
                    return Err(Problem::Invalid(format!(
                        "{fname} cannot be set alone, only its options"
                    )));
                }
                return match parse_bool(raw.trim()) {
                    Some(true) => Ok(Action::Ensure),
                    Some(false) => Ok(Action::Remove),
                    None => Err(Problem::Invalid(format!("invalid boolean {raw:?}"))),
                };
            }
            (Kind::Struct { fields: sub, .. }, None) => fields = sub,
            (Kind::Map(elem), None) => {
                // One key; a map of free-form maps (`plugin.<name>.<key>...`)
                // needs keys below it too.
                let keys = &segs[i + 1..];
                let ok = if matches!(elem, Kind::Any) {
                    keys.len() >= 2
                } else {
                    keys.len() == 1
                };
                if !ok {
                    return Err(Problem::Unknown);
                }
                return any_keys(keys, steps).and_then(|()| match elem {
                    Kind::Any | Kind::Str => Ok(Action::Set(Value::String(raw.to_string()))),
                    k => Ok(Action::Set(leaf_value(*k, raw)?)),
                });
            }
            (Kind::Any, None) => {
                any_keys(&segs[i + 1..], steps)?;
                return Ok(Action::Set(Value::String(raw.to_string())));
            }
            (leaf, None) if last => return Ok(Action::Set(leaf_value(leaf, raw)?)),
            (_, None) => return Err(Problem::Unknown),
        }
        i += 1;
    }
}

/// Map keys below a map option, kept as written. `[n]` (a list in
/// Traefik's raw maps) is not supported here.
fn any_keys(keys: &[&str], steps: &mut Vec<Step>) -> Result<(), Problem> {
    for k in keys {
        if k.is_empty() || k.contains('[') {
            return Err(Problem::Unknown);
        }
        steps.push(Step::MapKey(k.to_string()));
    }
    Ok(())
}

fn leaf_value(kind: Kind, raw: &str) -> Result<Value, Problem> {
    Ok(match kind {
        Kind::Bool => Value::Bool(
            parse_bool(raw.trim())
                .ok_or_else(|| Problem::Invalid(format!("invalid boolean {raw:?}")))?,
        ),
        Kind::Int => Value::from(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| Problem::Invalid(format!("invalid integer {raw:?}")))?,
        ),
        Kind::Duration => {
            let v = raw.trim();
            if !is_duration(v) {
                return Err(Problem::Invalid(format!("invalid duration {raw:?}")));
            }
            Value::String(v.to_string())
        }
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(raw.to_string()),
    })
}

/// Go's `time.ParseDuration` syntax, or a plain number of seconds.
fn is_duration(s: &str) -> bool {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let mut rest = s.strip_prefix('-').unwrap_or(s);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num == 0 || rest[..num].matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

impl Step {
    fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Step::Key(k) => (*k).into(),
            Step::Index(n) => n.to_string().into(),
            Step::MapKey(k) => k.as_str().into(),
        }
    }
}

/// The object under `key`, created (or replacing a non-object) if needed.
fn child<'o>(cur: &'o mut Object, key: &str) -> Option<&'o mut Object> {
    // Look up first: the key is only allocated when the slot is new.
    if !cur.get(key).is_some_and(Value::is_object) {
        cur.insert(key.to_string(), Value::Object(Map::new()));
    }
    cur.get_mut(key).and_then(Value::as_object_mut)
}

fn apply(obj: &mut Object, steps: &[Step], action: Action) {
    let (last, path) = match steps.split_last() {
        Some(x) => x,
        None => return,
    };
    let mut cur = obj;
    for step in path {
        let Some(next) = child(cur, &step.key()) else {
            return;
        };
        cur = next;
    }
    let key = last.key();
    match action {
        Action::Set(v) => match cur.get_mut(key.as_ref()) {
            Some(slot) => *slot = v,
            None => {
                cur.insert(key.into_owned(), v);
            }
        },
        Action::Ensure => {
            child(cur, &key);
        }
        Action::Remove => {
            cur.remove(key.as_ref());
        }
    }
}

fn finalize_section(s: &mut Section, router: &[Field], service: &[Field], mw: &[Field]) {
    for o in s.routers.values_mut() {
        finalize(router, o);
    }
    for o in s.services.values_mut() {
        finalize(service, o);
    }
    for o in s.middlewares.values_mut() {
        finalize(mw, o);
    }
}

/// Turns `{"0": {...}, "2": {...}}` of indexed options into arrays.
/// Walks the object's entries, not the schema: only nested objects can hold
/// indexed options, and most values are scalars.
fn finalize(fields: &[Field], obj: &mut Object) {
    for (name, v) in obj.iter_mut() {
        if !v.is_object() {
            continue;
        }
        let Some((_, kind)) = fields.iter().find(|(n, _)| n == name) else {
            continue;
        };
        match (kind, v) {
            (Kind::Struct { fields: sub, .. }, Value::Object(inner)) => finalize(sub, inner),
            (Kind::Indexed(sub), v @ Value::Object(_)) => {
                let Value::Object(items) = std::mem::take(v) else {
                    continue;
                };
                let mut items: Vec<(usize, Value)> = items
                    .into_iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|n| (n, v)))
                    .collect();
                items.sort_by_key(|(n, _)| *n);
                *v = Value::Array(
                    items
                        .into_iter()
                        .map(|(_, mut item)| {
                            if let Value::Object(o) = &mut item {
                                finalize(sub, o);
                            }
                            item
                        })
                        .collect(),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn routers_case_insensitive_options() {
        let (d, w) = decode(
            &l(&[
                ("traefik.http.routers.Web.Rule", "Host(`a`)"),
                ("traefik.http.routers.Web.EntryPoints", "web, websecure"),
                ("traefik.http.routers.Web.priority", "10"),
                ("traefik.http.routers.Web.tls", "true"),
                ("traefik.http.routers.Web.tls.certresolver", "le"),
                ("traefik.http.routers.Web.tls.domains[1].main", "b.example"),
                ("traefik.http.routers.Web.tls.domains[0].main", "a.example"),
                (
                    "traefik.http.routers.Web.tls.domains[0].sans",
                    "x.a.example,y.a.example",
                ),
            ]),
            "traefik",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            Value::Object(d.http.routers["Web"].clone()),
            json!({"rule": "Host(`a`)", "entryPoints": ["web", "websecure"], "priority": 10,
                   "tls": {"certResolver": "le", "domains": [
                       {"main": "a.example", "sans": ["x.a.example", "y.a.example"]},
                       {"main": "b.example"}]}})
        );
    }

    #[test]
    fn unknown_and_invalid() {
        let (d, w) = decode(
            &l(&[
                ("traefik.http.routers.web.rul", "Host(`a`)"),
                ("traefik.http.routers.web.priority", "abc"),
                ("traefik.http.routers.web.tls.bogus", "x"),
                ("traefik.foo", "bar"),
                ("traefik.http.routers.a@b.rule", "x"),
                ("traefik.http.middlewares.m.headers.stsseconds", "1y"),
            ]),
            "traefik",
        );
        assert_eq!(
            w,
            vec![
                "label traefik.http.routers.web.rul: unknown option",
                "label traefik.http.routers.web.priority: invalid integer \"abc\"",
                "label traefik.http.routers.web.tls.bogus: unknown option",
                "label traefik.foo: unknown option",
                "label traefik.http.routers.a@b.rule: name \"a@b\" must not contain '@'",
                "label traefik.http.middlewares.m.headers.stsseconds: invalid integer \"1y\"",
            ]
        );
        // A rejected label must not leave an empty `tls` behind.
        assert!(d.http.routers.is_empty());
    }

    #[test]
    fn middlewares_typed() {
        let (d, w) = decode(
            &l(&[
                (
                    "traefik.http.middlewares.h.headers.customrequestheaders.X-Foo",
                    "bar",
                ),
                ("traefik.http.middlewares.h.headers.stsseconds", "31536000"),
                ("traefik.http.middlewares.h.headers.framedeny", "true"),
                ("traefik.http.middlewares.r.ratelimit.average", "100"),
                ("traefik.http.middlewares.r.ratelimit.period", "1m"),
                ("traefik.http.middlewares.c.compress", "true"),
                ("traefik.http.middlewares.s.stripprefix.prefixes", "/a,/b"),
                (
                    "traefik.http.middlewares.f.forwardauth.address",
                    "http://auth",
                ),
                (
                    "traefik.http.middlewares.f.forwardauth.tls.insecureskipverify",
                    "true",
                ),
            ]),
            "traefik",
        );
        assert!(w.is_empty(), "{w:?}");
        let m = &d.http.middlewares;
        assert_eq!(
            Value::Object(m["h"].clone()),
            json!({"headers": {"customRequestHeaders": {"X-Foo": "bar"}, "stsSeconds": 31536000, "frameDeny": true}})
        );
        assert_eq!(
            Value::Object(m["r"].clone()),
            json!({"rateLimit": {"average": 100, "period": "1m"}})
        );
        assert_eq!(Value::Object(m["c"].clone()), json!({"compress": {}}));
        assert_eq!(
            Value::Object(m["s"].clone()),
            json!({"stripPrefix": {"prefixes": ["/a", "/b"]}})
        );
        assert_eq!(
            Value::Object(m["f"].clone()),
            json!({"forwardAuth": {"address": "http://auth", "tls": {"insecureSkipVerify": true}}})
        );
    }

    #[test]
    fn enable_network_tcp_udp() {
        let (d, w) = decode(
            &l(&[
                ("traefik.enable", "false"),
                ("Traefik.OpenStack.Network", "public"),
                ("traefik.tcp.routers.db.rule", "HostSNI(`*`)"),
                ("traefik.tcp.routers.db.tls.passthrough", "true"),
                ("traefik.tcp.services.db.loadbalancer.server.port", "5432"),
                ("traefik.udp.routers.dns.entrypoints", "dns"),
                ("traefik.udp.services.dns.loadbalancer.server.port", "53"),
                ("traefik.udp.middlewares.x.foo", "1"),
            ]),
            "traefik",
        );
        assert_eq!(
            w,
            vec!["label traefik.udp.middlewares.x.foo: unknown option"]
        );
        assert_eq!(d.enable, Some(false));
        assert_eq!(d.network.as_deref(), Some("public"));
        assert_eq!(
            Value::Object(d.tcp.routers["db"].clone()),
            json!({"rule": "HostSNI(`*`)", "tls": {"passthrough": true}})
        );
        assert_eq!(
            Value::Object(d.udp.services["dns"].clone()),
            json!({"loadBalancer": {"server": {"port": "53"}}})
        );
    }

    #[test]
    fn later_labels_win_and_struct_false_removes() {
        let (d, _) = decode(
            &l(&[
                ("traefik.http.routers.r.rule", "A"),
                ("traefik.http.routers.r.tls", "true"),
                ("traefik.http.routers.r.RULE", "B"),
                ("traefik.http.routers.r.tls", "false"),
            ]),
            "traefik",
        );
        assert_eq!(
            Value::Object(d.http.routers["r"].clone()),
            json!({"rule": "B"})
        );
    }

    #[test]
    fn collect_tags_and_metadata() {
        let inst = Instance {
            tags: vec![
                "traefik.enable=true".into(),
                "other".into(),
                "traefik.bad".into(),
                "traefik.http.routers.r.rule=T".into(),
            ],
            metadata: vec![
                ("traefik.http.routers.r.rule".into(), "M".into()),
                ("owner".into(), "bob".into()),
            ],
            ..Default::default()
        };
        let (labels, warnings) = collect(&inst, "traefik");
        assert_eq!(
            warnings,
            vec!["tag traefik.bad: expected traefik.<key>=<value>"]
        );
        assert_eq!(enable(&labels, "traefik"), Some(Ok(true)));
        let (d, _) = decode(&labels, "traefik");
        assert_eq!(d.http.routers["r"]["rule"], "M");
        assert_eq!(all_labels(&inst)["owner"], "bob");
    }

    #[test]
    fn option_kinds() {
        let k = |key: &str| option_kind(key, "traefik");
        assert!(matches!(
            k("traefik.http.routers.r.entrypoints"),
            Some(Kind::List)
        ));
        assert!(matches!(k("traefik.http.routers.r.rule"), Some(Kind::Str)));
        assert!(matches!(
            k("traefik.http.routers.r.tls.domains[0].sans"),
            Some(Kind::List)
        ));
        assert!(matches!(
            k("traefik.http.routers.r.tls"),
            Some(Kind::Struct { .. })
        ));
        assert!(k("traefik.http.routers.r.nope").is_none());
    }

    #[test]
    fn durations() {
        for ok in ["10s", "1m30s", "1.5h", "300ms", "42", "2µs"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "s", "10x", "1..2s", "-"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn hostile_keys_do_not_panic() {
        let (_, w) = decode(
            &l(&[
                ("traefik.", "x"),
                ("traefik..", "x"),
                ("traefik.http.routers..rule", "x"),
                (
                    "traefik.http.routers.r.tls.domains[99999999999999999999].main",
                    "x",
                ),
                ("traefik.http.routers.r.tls.domains[", "x"),
                ("traefik.http.routers.r.tls.domains[0]", "x"),
                ("traefiké.x", "x"),
                (
                    "traefik.http.middlewares.m.headers.customrequestheaders",
                    "x",
                ),
            ]),
            "traefik",
        );
        assert_eq!(w.len(), 6, "{w:?}");
    }
}
