//! Serializes `serde_json::Value`s with every object's keys in byte order.
//!
//! Traefik hashes the body to skip reloads, so the bytes must not depend on
//! whether some other crate in the build turned on serde_json's
//! `preserve_order` (insertion-ordered maps). Without it, `Map` is a
//! `BTreeMap` and the keys are already sorted: the check is one pass, and
//! nothing is copied, unlike rebuilding the whole tree before writing it.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A value written with sorted object keys.
pub struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => object(m, s),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

fn object<S: Serializer>(m: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
    let in_order = m.keys().zip(m.keys().skip(1)).all(|(a, b)| a <= b);
    let mut out = s.serialize_map(Some(m.len()))?;
    if in_order {
        for (k, v) in m {
            out.serialize_entry(k, &Sorted(v))?;
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in entries {
            out.serialize_entry(k, &Sorted(v))?;
        }
    }
    out.end()
}

/// `serialize_with` for an optional value.
pub fn option<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => Sorted(v).serialize(s),
        None => s.serialize_none(),
    }
}

/// `serialize_with` for a map of values (the map itself is a `BTreeMap`).
pub fn map<S: Serializer>(m: &BTreeMap<String, Value>, s: S) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        out.serialize_entry(k, &Sorted(v))?;
    }
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_sorted() {
        let v = json!({"b": [{"z": 1, "a": 2}], "a": {"y": true, "x": null}});
        assert_eq!(
            serde_json::to_string(&Sorted(&v)).unwrap(),
            r#"{"a":{"x":null,"y":true},"b":[{"a":2,"z":1}]}"#
        );
    }
}
