//! Serializes `serde_json::Value`s with every object's keys in byte order.
//!
//! Traefik hashes the body to skip reloads, so the bytes must not depend on
//! whether some other crate in the build turned on serde_json's
//! `preserve_order` (insertion-ordered maps). Without it, `Map` is a
//! `BTreeMap` and the keys are already sorted: the check is one pass, and
//! nothing is copied, unlike rebuilding the whole tree before writing it.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

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

/// A JSON value held as its text: compact, every object's keys in byte
/// order. Options the policy passes through to Traefik untouched (TLS,
/// health checks, middlewares) are kept so. As `Value`s, each level of a
/// small object was a B-tree node of 512 bytes in wasm32 (632 natively),
/// and every instance's were held until the merge: most of a run's memory,
/// and of its page faults. Equal values have equal texts, so comparing the
/// texts compares the values.
#[derive(Clone)]
pub struct Json(Box<RawValue>);

impl Json {
    pub fn new(v: &Value) -> Self {
        Json(serde_json::value::to_raw_value(&Sorted(v)).expect("a JSON value always serializes"))
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The value again, for tests.
    #[cfg(test)]
    pub fn value(&self) -> Value {
        serde_json::from_str(self.text()).expect("held text is JSON")
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Written as it is held (serde_json copies the text).
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Read as a value, then held in the canonical form, whatever the source's
/// key order or spacing.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Json::new(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_held_canonical_and_compared_by_value() {
        let a: Json = serde_json::from_str(r#"{ "b": [1, {"z": 1, "a": 2}], "a": 1.5 }"#).unwrap();
        let b = Json::new(&json!({"a": 1.5, "b": [1, {"a": 2, "z": 1}]}));
        assert_eq!(a.text(), r#"{"a":1.5,"b":[1,{"a":2,"z":1}]}"#);
        assert_eq!(a, b);
        assert_ne!(a, Json::new(&json!({"a": 1.5, "b": [1, {"a": 2, "z": 2}]})));
        assert_eq!(
            serde_json::to_string(&[&a]).unwrap(),
            format!("[{}]", a.text())
        );
        assert_eq!(a.value(), b.value());
    }

    #[test]
    fn nested_keys_sorted() {
        let v = json!({"b": [{"z": 1, "a": 2}], "a": {"y": true, "x": null}});
        assert_eq!(
            serde_json::to_string(&Sorted(&v)).unwrap(),
            r#"{"a":{"x":null,"y":true},"b":[{"a":2,"z":1}]}"#
        );
    }
}
