//! Stage 1: an instance's labels, as Traefik's docker provider would find
//! them on a container.
//!
//! Labels are Nova metadata keys under the prefix and Nova tags
//! `prefix.key=value`; metadata wins over a tag with the same key. Nova
//! cannot hold every label as Docker can, so two spellings are accepted:
//!
//! - a metadata key may not contain `[` or `]`: an index is written as a
//!   segment of its own, `tls.domains.0.main` for `tls.domains[0].main`
//!   (`decode` reads it, as it knows which options are lists);
//! - a tag may not contain `,` or `/`: in a tag, `%2C` stands for `,`,
//!   `%2F` for `/` and `%25` for `%`.

use crate::model::Instance;
use std::collections::BTreeMap;
use std::ops::Range;

/// Who wrote a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The instance's own metadata or tags: untrusted.
    Tenant,
    /// The operator's `default_labels`; `shared` when the definition's name
    /// has no template in it, so it is the same for every instance.
    Operator { shared: bool },
}

/// One label, key and value as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub key: String,
    pub value: String,
    pub origin: Origin,
    /// Byte ranges of `value` that came from instance data through a
    /// template (operator labels only).
    pub tainted: Vec<Range<usize>>,
}

/// The instance's own labels, in key order (the order in which Traefik's
/// decoder reads a container's labels), and the tags it could not read.
#[derive(Debug, Default)]
pub struct Collected {
    pub labels: Vec<Label>,
    pub problems: Vec<String>,
}

impl Label {
    /// A label as `collect` makes it from the instance's own metadata.
    pub fn tenant(key: &str, value: &str) -> Label {
        Label {
            key: key.to_string(),
            value: value.to_string(),
            origin: Origin::Tenant,
            tainted: Vec::new(),
        }
    }

    /// An operator's label without template data in its value.
    #[cfg(test)]
    pub fn operator(key: &str, value: &str, shared: bool) -> Label {
        Label {
            origin: Origin::Operator { shared },
            ..Label::tenant(key, value)
        }
    }
}

/// Tenant labels in key order, as `collect` gives them.
#[cfg(test)]
pub fn tenant_labels<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<Label> {
    let mut v: Vec<Label> = pairs
        .iter()
        .map(|(k, v)| Label::tenant(k.as_ref(), v.as_ref()))
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// `key` is under `prefix.` (prefix compared case-insensitively, as
/// Traefik's label filters are; `decode` then insists on the exact root).
pub fn has_prefix(key: &str, prefix: &str) -> bool {
    key.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        && key.as_bytes().get(prefix.len()) == Some(&b'.')
}

pub fn collect(inst: &Instance, prefix: &str) -> Collected {
    let mut problems = Vec::new();
    let mut by_key: BTreeMap<&str, String> = BTreeMap::new();
    for tag in &inst.tags {
        match tag.split_once('=') {
            Some((k, v)) if has_prefix(k, prefix) => {
                by_key.insert(k, unescape_tag(v));
            }
            None if has_prefix(tag, prefix) => problems.push(format!(
                "tag {tag:?}: expected {prefix}.<option>=<value> (a label in a tag needs '=')"
            )),
            _ => {}
        }
    }
    for (k, v) in &inst.metadata {
        if has_prefix(k, prefix) {
            by_key.insert(k, v.clone());
        }
    }
    let labels = by_key
        .into_iter()
        .map(|(k, value)| Label {
            value,
            ..Label::tenant(k, "")
        })
        .collect();
    Collected { labels, problems }
}

/// `%2C`, `%2F` and `%25` (either case) in a tag; any other `%` stays.
fn unescape_tag(v: &str) -> String {
    if !v.contains('%') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).map(str::to_ascii_uppercase);
        let decoded = match code.as_deref() {
            Some("2C") => Some(','),
            Some("2F") => Some('/'),
            Some("25") => Some('%'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `prefix.enable` label (key case-insensitive, as Traefik reads it):
/// `Some(Ok(b))`, or `Some(Err(raw))` when it is not a boolean.
pub fn enable(c: &Collected, prefix: &str) -> Option<Result<bool, String>> {
    c.labels
        .iter()
        .rev()
        .find(|l| l.key[prefix.len() + 1..].eq_ignore_ascii_case("enable"))
        .map(|l| parse_bool(&l.value).ok_or_else(|| l.value.clone()))
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

/// Go's `strconv.ParseBool`, which Traefik uses for boolean labels (no
/// surrounding spaces allowed).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_then_metadata_in_key_order() {
        let inst = Instance {
            tags: vec![
                "traefik.enable=true".into(),
                "other".into(),
                "traefik.bad".into(),
                "traefik.http.routers.r.rule=T".into(),
                "traefik.http.routers.r.rule2=PathPrefix(`%2Fapi`)%2C100%".into(),
            ],
            metadata: vec![
                ("traefik.http.routers.r.rule".into(), "M".into()),
                ("owner".into(), "bob".into()),
            ],
            ..Default::default()
        };
        let c = collect(&inst, "traefik");
        assert_eq!(
            c.problems,
            vec![
                "tag \"traefik.bad\": expected traefik.<option>=<value> (a label in a tag needs '=')"
            ]
        );
        let kv: Vec<(&str, &str)> = c
            .labels
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("traefik.enable", "true"),
                ("traefik.http.routers.r.rule", "M"),
                ("traefik.http.routers.r.rule2", "PathPrefix(`/api`),100%"),
            ]
        );
        assert_eq!(enable(&c, "traefik"), Some(Ok(true)));
        assert_eq!(all_labels(&inst)["owner"], "bob");
    }

    #[test]
    fn tag_escapes() {
        assert_eq!(unescape_tag("a%2cb%2F%25%zz%"), "a,b/%%zz%");
        assert_eq!(unescape_tag("plain"), "plain");
    }
}
