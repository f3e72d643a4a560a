//! Stage 2: labels to typed definitions, as Traefik's label decoder reads
//! them, failing closed.
//!
//! Traefik (paerser) sorts a container's labels, splits each key at dots
//! into a tree whose nodes merge case-insensitively (the first spelling
//! names a node, the last value wins), then types the tree against its Go
//! structs; any error drops the whole container. The same two seams here:
//! each key is split once into the tree ([`Tree::add`]), then [`typed`]
//! walks it against the schema derived from Traefik's structs. Any error
//! leaves the instance unrouted, with a diagnostic that names the label,
//! its value and what Traefik expects there.
//!
//! Labels Traefik's docker provider does not read (`traefik.foo`) are
//! ignored with a warning, as Traefik ignores them. Not from Traefik: a
//! tenant's router that points at a service of another provider
//! (`api@internal`, `...@file`) is dropped, and Traefik's default TLS store
//! (`tls.stores.default`) is the operator's.

use crate::collect::{Label, Origin, parse_bool};
use crate::model::Level;
use crate::names::check_label_name;
use crate::resource::{PerResource, Resource};
use crate::safety;
use crate::schema::{self, Field, Kind};
use crate::template::Rendered;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

pub type Object = Map<String, Value>;

/// An instance's labels, decoded.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub enable: Option<bool>,
    pub network: Option<String>,
    /// Definitions by kind and name (the name as first spelled).
    pub defs: PerResource<BTreeMap<String, Object>>,
    /// Definitions only the operator's labels wrote, under a fixed name:
    /// shared by every project (`http-to-https`).
    pub operator: BTreeSet<(Resource, String)>,
    /// Definitions the operator's labels make under a fixed name and the
    /// instance's own labels also write to: the operator owns the name, so
    /// the instance's definition is dropped (by `instance`, after the
    /// defaults, which must not replace it).
    pub overridden: BTreeSet<(Resource, String)>,
    /// Labels ignored and definitions dropped, the instance still routed.
    pub notes: Vec<(Level, String)>,
    /// Kinds of which a definition was refused (a router to another
    /// provider's service): the defaults must not replace it.
    pub refused: BTreeSet<Resource>,
}

/// Why a label cannot be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelError {
    pub key: String,
    pub value: String,
    pub why: String,
}

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "label {}={:?}: {}", self.key, self.value, self.why)
    }
}

/// Indexed lists (`domains[n]`) are short in practice; the cap keeps a
/// hostile `domains[4000000000]` from meaning anything.
const MAX_INDEX: usize = 100;

/// Decodes the operator's labels, then the instance's own on top (so its
/// own win), into one tree per definition, then types them.
pub fn decode(operator: &[Label], own: &[Label], prefix: &str) -> Result<Decoded, Vec<LabelError>> {
    let mut tree = Tree::default();
    let mut errors = Vec::new();
    for label in operator.iter().chain(own) {
        if let Err(why) = tree.add(label, prefix) {
            errors.push(LabelError {
                key: label.key.clone(),
                value: label.value.clone(),
                why,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    tree.typed()
}

/// One node of a definition's label tree; it borrows from the labels, so
/// building the tree allocates little more than the child lists.
#[derive(Debug, Default)]
struct Node<'l> {
    /// As first spelled.
    name: &'l str,
    value: Option<&'l str>,
    /// The label that last set `value`, for diagnostics.
    key: &'l str,
    /// The last value came from a tenant label.
    tenant: bool,
    /// Ranges of `value` rendered from instance data (operator templates).
    tainted: &'l [Range<usize>],
    children: Vec<Node<'l>>,
}

impl<'l> Node<'l> {
    fn child(&mut self, name: &'l str) -> &mut Node<'l> {
        // Few children per node: a scan beats a map.
        let at = match self.children.iter().position(|c| same_name(c.name, name)) {
            Some(at) => at,
            None => {
                self.children.push(Node {
                    name,
                    ..Node::default()
                });
                self.children.len() - 1
            }
        };
        &mut self.children[at]
    }

    /// A label that wrote this node or one below it, to name in a diagnostic.
    fn any_key(&self) -> &'l str {
        if self.key.is_empty() {
            self.children.first().map_or("", Node::any_key)
        } else {
            self.key
        }
    }

    fn error(&self, why: impl Into<String>) -> LabelError {
        LabelError {
            key: self.any_key().to_string(),
            value: self.value.unwrap_or_default().to_string(),
            why: why.into(),
        }
    }
}

/// Names merge case-insensitively; an index is the same node whether
/// written `[0]` (Traefik) or `0` (Nova metadata).
fn same_name(a: &str, b: &str) -> bool {
    fn index(s: &str) -> Option<&str> {
        let n = s
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(s);
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
    }
    a.eq_ignore_ascii_case(b) || index(a).is_some_and(|n| index(b) == Some(n))
}

/// One definition's tree and who wrote it.
#[derive(Debug, Default)]
struct Def<'l> {
    root: Node<'l>,
    tenant: bool,
    shared_operator: bool,
}

#[derive(Default)]
struct Tree<'l> {
    /// By kind; names merge case-insensitively, as in Traefik. A scan:
    /// an instance has a few definitions (Nova caps metadata at 128 items).
    defs: PerResource<Vec<Def<'l>>>,
    enable: Option<bool>,
    network: Option<String>,
    notes: Vec<(Level, String)>,
}

impl<'l> Tree<'l> {
    fn add(&mut self, label: &'l Label, prefix: &str) -> Result<(), String> {
        // Traefik's filters match case-insensitively, its root does not.
        if !label.key.starts_with(prefix) {
            return Err(format!("the label root must be written {prefix:?}"));
        }
        let rest = &label.key[prefix.len() + 1..];
        let starts = |p: &str| {
            rest.get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
        };
        if starts("enable") {
            if !rest.eq_ignore_ascii_case("enable") {
                return Err(unknown(rest, "label", &[("enable", Kind::Bool)]));
            }
            self.enable = Some(parse_bool(&label.value).ok_or_else(|| expected(Kind::Bool))?);
            return Ok(());
        }
        if starts("openstack.") {
            let opt = &rest["openstack.".len()..];
            if !opt.eq_ignore_ascii_case("network") {
                return Err(unknown(opt, "openstack label", &[("network", Kind::Str)]));
            }
            let v = label.value.trim();
            self.network = (!v.is_empty()).then(|| v.to_string());
            return Ok(());
        }
        if starts("tls.stores.default") {
            return Err("Traefik's default TLS store is the operator's to configure".into());
        }
        if !(starts("http") || starts("tcp") || starts("udp")) {
            self.notes.push((
                Level::Warning,
                format!(
                    "label {}: ignored: Traefik reads {prefix}.http.*, .tcp.*, .udp.*, .enable (and this provider .openstack.network)",
                    label.key
                ),
            ));
            return Ok(());
        }

        // A predicate, not a char pattern: keys are short, and in wasm32 a
        // `char` pattern's memchr set-up cost more than the scan (a tenth of
        // a run at 1k instances, with `find('[')` below).
        #[allow(clippy::manual_pattern_char_comparison, reason = "see above")]
        let mut segs = rest.split(|c: char| c == '.');
        let (layer, section) = (segs.next().unwrap_or(""), segs.next().unwrap_or(""));
        let kind = Resource::from_label(layer, section).ok_or_else(|| {
            format!(
                "unknown section \"{layer}.{section}\": expected http.routers, http.services, http.middlewares, tcp.routers, tcp.services, tcp.middlewares, udp.routers or udp.services"
            )
        })?;
        let name = segs.next().unwrap_or("");
        check_label_name(name).map_err(|e| format!("{} {e}", kind.noun()))?;
        let defs = &mut self.defs[kind];
        let at = match defs
            .iter()
            .position(|d| d.root.name.eq_ignore_ascii_case(name))
        {
            Some(at) => at,
            None => {
                defs.push(Def {
                    root: Node {
                        name,
                        ..Node::default()
                    },
                    ..Def::default()
                });
                defs.len() - 1
            }
        };
        let def = &mut defs[at];
        match label.origin {
            Origin::Tenant => def.tenant = true,
            Origin::Operator { shared } => def.shared_operator |= shared,
        }
        let mut node = &mut def.root;
        let mut depth = 0;
        for seg in segs {
            if seg.is_empty() {
                return Err("empty segment in the key (two dots in a row?)".into());
            }
            // `domains[0]` is two nodes, as in Traefik.
            match seg.bytes().position(|b| b == b'[') {
                Some(0) => return Err(format!("segment {seg:?} starts with '['")),
                Some(open) if seg.ends_with(']') => {
                    node = node.child(&seg[..open]).child(&seg[open..]);
                }
                _ => node = node.child(seg),
            }
            depth += 1;
        }
        if depth == 0 {
            return Err(format!(
                "a {} cannot stand alone: expected an option after its name",
                kind.noun()
            ));
        }
        node.value = Some(&label.value);
        node.key = &label.key;
        node.tenant = label.origin == Origin::Tenant;
        node.tainted = &label.tainted;
        Ok(())
    }

    fn typed(mut self) -> Result<Decoded, Vec<LabelError>> {
        let mut out = Decoded {
            enable: self.enable,
            network: self.network,
            notes: std::mem::take(&mut self.notes),
            ..Decoded::default()
        };
        let mut errors = Vec::new();
        for kind in Resource::ALL {
            for def in std::mem::take(&mut self.defs[kind]) {
                let name = def.root.name.to_string();
                if let Some(why) = foreign_service(kind, &def.root) {
                    out.notes.push((
                        Level::Error,
                        format!("{} {name}: {why}; {} dropped", kind.noun(), kind.noun()),
                    ));
                    out.refused.insert(kind);
                    continue;
                }
                let before = errors.len();
                let obj = fill(kind.fields(), &def.root, kind.noun(), &mut errors);
                if errors.len() == before {
                    if def.shared_operator && !def.tenant {
                        out.operator.insert((kind, name.clone()));
                    } else if def.shared_operator {
                        out.overridden.insert((kind, name.clone()));
                    }
                    out.defs[kind].insert(name, obj);
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// A tenant may not point a router (or an `errors` middleware) at a service
/// of another provider: `api@internal` would publish Traefik's own API, and
/// `...@file` the operator's backends. The operator's labels may.
fn foreign_service(kind: Resource, root: &Node) -> Option<String> {
    fn find<'n, 'l>(n: &'n Node<'l>, name: &str) -> Option<&'n Node<'l>> {
        n.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
    let service = if kind.is_router() {
        find(root, "service")
    } else if kind == Resource::HttpMiddleware {
        find(root, "errors").and_then(|e| find(e, "service"))
    } else {
        None
    }?;
    let v = service.value?;
    (service.tenant && v.contains('@')).then(|| {
        format!(
            "label {}: service {v:?} of another provider is not allowed",
            service.key
        )
    })
}

/// Types a node's children against `fields`; `what` names the node in
/// diagnostics. Every bad label is reported, not only the first.
fn fill(fields: &'static [Field], node: &Node, what: &str, errors: &mut Vec<LabelError>) -> Object {
    let mut obj = Object::new();
    for child in &node.children {
        let Some((json, kind)) = schema::field(fields, child.name) else {
            errors.push(child.error(unknown(child.name, what, fields)));
            continue;
        };
        match typed(*kind, child, json, errors) {
            Ok(Some(v)) => {
                obj.insert((*json).to_string(), v);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    obj
}

/// One option's value; `None` when the option is absent (an empty list, a
/// section turned off with `=false`).
fn typed(
    kind: Kind,
    node: &Node,
    json: &str,
    errors: &mut Vec<LabelError>,
) -> Result<Option<Value>, LabelError> {
    let value = node.value;
    match kind {
        Kind::Struct {
            fields: sub,
            allow_empty,
        } => {
            // On a section Traefik allows empty (`tls`, `compress`), `=true`
            // makes it exist and any other value turns it off, whatever
            // options it has. Other sections need an option.
            if allow_empty && value.is_some_and(|v| !v.eq_ignore_ascii_case("true")) {
                return Ok(None);
            }
            if node.children.is_empty() && !allow_empty {
                return Err(node.error(format!(
                    "{json} cannot be set alone: set one of its options ({})",
                    options(sub)
                )));
            }
            Ok(Some(Value::Object(fill(sub, node, json, errors))))
        }
        Kind::Indexed(sub) => {
            if node.children.is_empty() {
                return Err(node.error(format!(
                    "{json} is a list of sections: write {json}[0].<option> ({json}.0.<option> in Nova metadata)"
                )));
            }
            let mut items = Vec::with_capacity(node.children.len());
            for item in &node.children {
                let n = item
                    .name
                    .strip_prefix('[')
                    .and_then(|n| n.strip_suffix(']'))
                    .unwrap_or(item.name);
                if !n.parse::<usize>().is_ok_and(|n| n < MAX_INDEX) {
                    return Err(item.error(format!(
                        "{json} is a list of sections: expected an index from 0 to {} after it, not {:?}",
                        MAX_INDEX - 1,
                        item.name
                    )));
                }
                if item.children.is_empty() {
                    return Err(item.error(format!("{json}[{n}] needs an option after it")));
                }
                items.push(Value::Object(fill(sub, item, json, errors)));
            }
            Ok(Some(Value::Array(items)))
        }
        Kind::Map(elem) => {
            if node.children.is_empty() {
                return Err(node.error(format!("{json} is a map: write {json}.<key>=<value>")));
            }
            let mut m = Object::new();
            for entry in &node.children {
                let v = match elem {
                    Kind::Any if entry.children.is_empty() => {
                        return Err(
                            entry.error(format!("{json}.{} needs options below it", entry.name))
                        );
                    }
                    Kind::Any => raw(entry),
                    _ if !entry.children.is_empty() => {
                        return Err(entry.error(format!(
                            "{json}.{} takes a value, not options below it",
                            entry.name
                        )));
                    }
                    leaf => {
                        let raw = entry.value.unwrap_or_default();
                        match scalar(*leaf, raw, entry) {
                            Ok(Some(v)) => v,
                            Ok(None) => continue,
                            Err(why) => return Err(entry.error(why)),
                        }
                    }
                };
                m.insert(entry.name.to_string(), v);
            }
            Ok(Some(Value::Object(m)))
        }
        Kind::Any => Ok(Some(raw(node))),
        leaf => {
            if !node.children.is_empty() {
                let sub = &node.children[0];
                return Err(sub.error(format!(
                    "{json} takes a value, it has no option {:?}",
                    sub.name
                )));
            }
            let raw = value.unwrap_or_default();
            scalar(leaf, raw, node).map_err(|why| node.error(why))
        }
    }
}

/// Instance data rendered into an operator's label must not change what
/// the label means (see `safety`): checked here, where the option is known.
fn check_tainted(kind: Kind, node: &Node) -> Result<(), String> {
    let r = Rendered {
        text: node.value.unwrap_or_default().to_string(),
        tainted: node.tainted.to_vec(),
    };
    match kind {
        Kind::Str if node.name.eq_ignore_ascii_case("rule") => safety::check_rule(&r),
        Kind::List => safety::check_list(&r),
        _ => Ok(()),
    }
}

fn scalar(kind: Kind, raw: &str, node: &Node) -> Result<Option<Value>, String> {
    if !node.tainted.is_empty() {
        check_tainted(kind, node)?;
    }
    let v = match kind {
        Kind::Str => Value::String(raw.to_string()),
        Kind::Bool => Value::Bool(parse_bool(raw).ok_or_else(|| expected(kind))?),
        Kind::Int => Value::from(raw.parse::<i64>().map_err(|_| expected(kind))?),
        Kind::Duration => {
            if raw.parse::<i64>().is_ok() {
                // Traefik reads a bare number as seconds.
                Value::String(format!("{raw}s"))
            } else if is_go_duration(raw) {
                Value::String(raw.to_string())
            } else {
                return Err(expected(kind));
            }
        }
        Kind::List => {
            if raw.is_empty() {
                return Ok(None);
            }
            Value::Array(
                raw.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            )
        }
        Kind::Struct { .. } | Kind::Indexed(_) | Kind::Map(_) | Kind::Any => {
            unreachable!("not a scalar")
        }
    };
    Ok(Some(v))
}

/// What a value of this kind must look like.
fn expected(kind: Kind) -> String {
    match kind {
        Kind::Bool => "expected a boolean: true or false".into(),
        Kind::Int => "expected an integer".into(),
        Kind::Duration => {
            "expected a duration such as 10s, 1m30s or 500ms, or a number of seconds".into()
        }
        Kind::List => "expected a comma-separated list".into(),
        Kind::Str => "expected a string".into(),
        Kind::Struct { .. } => "expected true or false, or options below it".into(),
        Kind::Indexed(_) => "expected [n] and options below it".into(),
        Kind::Map(_) | Kind::Any => "expected <key>=<value> below it".into(),
    }
}

/// Free-form configuration (plugins): nested maps of strings, `[n]`
/// children making a list, as Traefik reads a raw map.
fn raw(node: &Node) -> Value {
    if node.children.is_empty() {
        return Value::String(node.value.unwrap_or_default().to_string());
    }
    if node.children[0].name.starts_with('[') {
        return Value::Array(node.children.iter().map(raw).collect());
    }
    Value::Object(
        node.children
            .iter()
            .map(|c| (c.name.to_string(), raw(c)))
            .collect(),
    )
}

/// The options of a section, as labels spell them.
fn options(fields: &[Field]) -> String {
    let names: Vec<String> = fields.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.join(", ")
}

/// "unknown option "rul" for a router; did you mean "rule"?", or the list
/// of options when nothing is close.
fn unknown(seg: &str, what: &str, fields: &[Field]) -> String {
    let lower = seg.to_ascii_lowercase();
    let best = fields
        .iter()
        .map(|(n, _)| (strsim::levenshtein(&lower, &n.to_ascii_lowercase()), *n))
        .min();
    match best {
        Some((d, n)) if d <= 2 || (d <= 3 && lower.len() > 8) => {
            format!(
                "unknown option {seg:?} of {what}; did you mean {:?}?",
                n.to_ascii_lowercase()
            )
        }
        _ => {
            let names: Vec<String> = fields.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
            format!(
                "unknown option {seg:?} of {what}; expected one of: {}",
                names.join(", ")
            )
        }
    }
}

/// Go's `time.ParseDuration` syntax.
fn is_go_duration(s: &str) -> bool {
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num == 0 || rest[..num] == *"." || rest[..num].matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn own(pairs: &[(&str, &str)]) -> Vec<Label> {
        crate::collect::tenant_labels(pairs)
    }

    fn ok(pairs: &[(&str, &str)]) -> Decoded {
        decode(&[], &own(pairs), "traefik").unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn errs(pairs: &[(&str, &str)]) -> Vec<String> {
        match decode(&[], &own(pairs), "traefik") {
            Ok(d) => panic!("decoded: {d:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn def(d: &Decoded, kind: Resource, name: &str) -> Value {
        Value::Object(d.defs[kind][name].clone())
    }

    #[test]
    fn routers_case_insensitive_names_and_options() {
        let d = ok(&[
            ("traefik.http.routers.Web.Rule", "Host(`a`)"),
            ("traefik.http.routers.web.EntryPoints", "web, websecure"),
            ("traefik.http.routers.Web.priority", "10"),
            ("traefik.http.routers.Web.tls", "true"),
            ("traefik.http.routers.Web.tls.certresolver", "le"),
            ("traefik.http.routers.Web.tls.domains[1].main", "b.example"),
            ("traefik.http.routers.Web.tls.domains[0].main", "a.example"),
            (
                "traefik.http.routers.Web.tls.domains.0.sans",
                "x.a.example,y.a.example",
            ),
        ]);
        assert_eq!(d.defs[Resource::HttpRouter].len(), 1);
        assert_eq!(
            def(&d, Resource::HttpRouter, "Web"),
            json!({"rule": "Host(`a`)", "entryPoints": ["web", "websecure"], "priority": 10,
                   "tls": {"certResolver": "le", "domains": [
                       {"main": "a.example", "sans": ["x.a.example", "y.a.example"]},
                       {"main": "b.example"}]}})
        );
    }

    #[test]
    fn any_bad_label_fails_the_instance() {
        assert_eq!(
            errs(&[
                ("traefik.http.routers.web.rul", "Host(`a`)"),
                ("traefik.http.routers.ok.rule", "Host(`b`)"),
            ]),
            vec![
                "label traefik.http.routers.web.rul=\"Host(`a`)\": unknown option \"rul\" of router; did you mean \"rule\"?"
            ]
        );
        let e = errs(&[("traefik.http.routers.web.priority", "abc")]);
        assert_eq!(
            e,
            vec!["label traefik.http.routers.web.priority=\"abc\": expected an integer"]
        );
        assert!(
            errs(&[("Traefik.http.routers.web.rule", "x")])[0].contains("root must be written")
        );
        assert!(
            errs(&[("traefik.http.services.s.loadbalancer.passhostheader", "yes")])[0]
                .ends_with("expected a boolean: true or false")
        );
        assert!(
            errs(&[(
                "traefik.http.services.s.loadbalancer.healthcheck.interval",
                "10 minutes"
            )])[0]
                .contains("expected a duration")
        );
        assert!(errs(&[("traefik.http.routers.a@b.rule", "x")])[0].contains("'@'"));
        assert!(errs(&[("traefik.http.routers.web", "x")])[0].contains("cannot stand alone"));
        assert!(errs(&[("traefik.http.routers..rule", "x")])[0].contains("router empty name"));
        assert!(errs(&[("traefik.http.routers.r.rule.x", "x")])[0].contains("takes a value"));
        assert!(errs(&[("traefik.httpx.routers.r.rule", "x")])[0].contains("unknown section"));
    }

    #[test]
    fn unknown_option_lists_choices_when_nothing_is_close() {
        let e = errs(&[("traefik.udp.routers.r.zzzzzzzzz", "x")]);
        assert_eq!(
            e,
            vec![
                "label traefik.udp.routers.r.zzzzzzzzz=\"x\": unknown option \"zzzzzzzzz\" of udp router; expected one of: entrypoints, service"
            ]
        );
    }

    #[test]
    fn labels_traefik_does_not_read_are_ignored() {
        let d = ok(&[("traefik.foo", "bar"), ("traefik.http.routers.r.rule", "x")]);
        assert_eq!(d.notes.len(), 1);
        assert!(d.notes[0].1.starts_with("label traefik.foo: ignored"));
        assert!(errs(&[("traefik.enabled", "true")])[0].contains("did you mean \"enable\""));
        assert!(
            errs(&[(
                "traefik.tls.stores.default.defaultcertificate.certfile",
                "x"
            )])[0]
                .contains("operator's")
        );
    }

    #[test]
    fn sections_on_and_off() {
        let d = ok(&[
            ("traefik.http.routers.r.tls", "false"),
            ("traefik.http.routers.r.tls.certresolver", "le"),
            ("traefik.http.routers.r.rule", "x"),
            ("traefik.http.middlewares.c.compress", "true"),
        ]);
        assert_eq!(def(&d, Resource::HttpRouter, "r"), json!({"rule": "x"}));
        assert_eq!(
            def(&d, Resource::HttpMiddleware, "c"),
            json!({"compress": {}})
        );
    }

    #[test]
    fn middlewares_typed() {
        let d = ok(&[
            (
                "traefik.http.middlewares.h.headers.customrequestheaders.X-Foo",
                "bar",
            ),
            ("traefik.http.middlewares.h.headers.stsseconds", "31536000"),
            ("traefik.http.middlewares.r.ratelimit.period", "60"),
            ("traefik.http.middlewares.s.stripprefix.prefixes", "/a, /b"),
        ]);
        assert_eq!(
            def(&d, Resource::HttpMiddleware, "h"),
            json!({"headers": {"customRequestHeaders": {"X-Foo": "bar"}, "stsSeconds": 31536000}})
        );
        assert_eq!(
            def(&d, Resource::HttpMiddleware, "r"),
            json!({"rateLimit": {"period": "60s"}})
        );
        assert_eq!(
            def(&d, Resource::HttpMiddleware, "s"),
            json!({"stripPrefix": {"prefixes": ["/a", "/b"]}})
        );
    }

    #[test]
    fn tenant_routers_to_other_providers_are_dropped() {
        let d = ok(&[
            ("traefik.http.routers.r.rule", "Host(`a`)"),
            ("traefik.http.routers.r.service", "api@internal"),
            ("traefik.http.routers.ok.rule", "Host(`b`)"),
            ("traefik.http.middlewares.e.errors.service", "x@file"),
            ("traefik.http.middlewares.e.errors.status", "500"),
        ]);
        assert_eq!(
            d.defs[Resource::HttpRouter].keys().collect::<Vec<_>>(),
            vec!["ok"]
        );
        assert!(d.defs[Resource::HttpMiddleware].is_empty());
        assert_eq!(d.notes.len(), 2);
        assert_eq!(
            d.notes[0].1,
            "router r: label traefik.http.routers.r.service: service \"api@internal\" of another provider is not allowed; router dropped"
        );
        // The operator may.
        let op = [Label::operator(
            "traefik.http.routers.dash.service",
            "api@internal",
            true,
        )];
        let d = decode(
            &op,
            &own(&[("traefik.http.routers.dash.rule", "x")]),
            "traefik",
        )
        .unwrap();
        assert_eq!(
            d.defs[Resource::HttpRouter]["dash"]["service"],
            "api@internal"
        );
        assert!(d.operator.is_empty(), "the tenant wrote to it");
    }

    #[test]
    fn own_labels_win_over_operator_labels() {
        let op = [Label::operator("traefik.http.routers.r.rule", "A", true)];
        let d = decode(
            &op,
            &own(&[("traefik.http.routers.R.RULE", "B")]),
            "traefik",
        )
        .unwrap();
        assert_eq!(def(&d, Resource::HttpRouter, "r"), json!({"rule": "B"}));
        let d = decode(&op, &[], "traefik").unwrap();
        assert!(
            d.operator
                .contains(&(Resource::HttpRouter, "r".to_string()))
        );
    }

    #[test]
    fn lists_keep_traefiks_shape() {
        let d = ok(&[
            ("traefik.http.routers.r.entrypoints", "a,, b "),
            ("traefik.http.routers.r.middlewares", ""),
        ]);
        assert_eq!(
            def(&d, Resource::HttpRouter, "r"),
            json!({"entryPoints": ["a", "", "b"]})
        );
    }

    #[test]
    fn enable_and_network() {
        let d = ok(&[
            ("traefik.Enable", "false"),
            ("traefik.openstack.NETWORK", " public "),
        ]);
        assert_eq!(d.enable, Some(false));
        assert_eq!(d.network.as_deref(), Some("public"));
        assert!(errs(&[("traefik.enable", "yes")])[0].contains("boolean"));
        assert!(
            errs(&[("traefik.openstack.netwrok", "x")])[0].contains("did you mean \"network\"")
        );
    }

    #[test]
    fn durations() {
        for ok in ["10s", "1m30s", "1.5h", "300ms", "2µs", "0", "-1s"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "s", "10x", "1..2s", "-", "10 s", "42"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn hostile_keys_are_errors_not_panics() {
        for key in [
            "traefik.",
            "traefik..",
            "traefik.http.routers.r.tls.domains[99999999999999999999].main",
            "traefik.http.routers.r.tls.domains[",
            "traefik.http.routers.r.tls.domains[0]",
            "traefik.http.routers.r.tls.[0]",
            "traefik.http.middlewares.m.headers.customrequestheaders",
            "traefik.http.routers.r.tls.domains.x.main",
        ] {
            let r = decode(&[], &own(&[(key, "x")]), "traefik");
            assert!(
                r.is_err() || r.as_ref().is_ok_and(|d| !d.notes.is_empty()),
                "{key}: {r:?}"
            );
        }
    }
}
