//! The options Traefik's label providers accept, with their JSON names and
//! types, so that labels decode to what Traefik's own decoder would produce.
//!
//! The tables are in `generated.rs`, written by `guest/schema/derive.py`
//! from the Go structs of Traefik's `pkg/config/dynamic` at the tag named
//! there (`TRAEFIK_TAG`), read with the rules of Traefik's label decoder
//! (github.com/traefik/paerser): option names match case-insensitively,
//! `label:"-"` fields are left out, `label-slice-as-struct` slices appear
//! as the one struct they are filled from (`loadBalancer.server`), and
//! `label:"allowEmpty"` is kept on each struct. Do not edit the tables by
//! hand: change the script and run it; a test checks they agree.

#[rustfmt::skip]
mod generated;

pub use generated::{
    HTTP_SERVICE, MIDDLEWARE, ROUTER, TCP_MIDDLEWARE, TCP_ROUTER, TCP_SERVICE, UDP_ROUTER,
    UDP_SERVICE,
};

/// The type of one option, as paerser fills the Go type behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `bool`, `*bool`: Go's `strconv.ParseBool`.
    Bool,
    /// `int`, `int64` and pointers to them: a base-10 signed 64-bit integer.
    Int,
    /// `string`, `*string` and named string types, kept as written.
    Str,
    /// paerser's `types.Duration`: a number of seconds, or a Go duration
    /// (`10s`, `1m30s`).
    Duration,
    /// `[]string`: the value split at commas, each part trimmed.
    List,
    /// `map[string]T`: the next label segment is the key, kept as written;
    /// the value is of the given kind (`Str`, `Int`, or `Any` for maps of
    /// free-form maps such as `plugin.<name>.*`).
    Map(&'static Kind),
    /// `map[string]any` (plugin configuration): every segment below is a
    /// key of a nested map, values are strings, kept as written.
    Any,
    /// A struct or pointer to one: options below it. `name=true` alone is
    /// accepted only when `allow_empty` (Go tag `label:"allowEmpty"`), and
    /// creates it empty; any other value leaves it out.
    Struct {
        fields: &'static [Field],
        allow_empty: bool,
    },
    /// A slice of structs, addressed as `name[n].option`.
    Indexed(&'static [Field]),
}

/// An option: its JSON name (camelCase, as in Traefik's dynamic
/// configuration; labels may spell it in any case) and its type.
pub type Field = (&'static str, Kind);

/// Finds an option by its case-insensitive label spelling.
pub fn field(fields: &'static [Field], seg: &str) -> Option<&'static Field> {
    fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(seg))
}

#[cfg(test)]
mod tests {
    use super::generated::{TRAEFIK_COMMIT, TRAEFIK_TAG};
    use crate::decode::{Decoded, LabelError, decode as decode_labels};
    use crate::resource::Resource;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Decodes tenant labels.
    fn decode(pairs: &[(String, String)], prefix: &str) -> Result<Decoded, Vec<LabelError>> {
        decode_labels(&[], &crate::collect::tenant_labels(pairs), prefix)
    }

    fn schema_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema")
    }

    /// The `key=value` lines of Traefik's reference, by resource
    /// (`http.routers.router0`, ...), in file order.
    fn reference() -> BTreeMap<String, Vec<(String, String)>> {
        let path = schema_dir().join(format!("traefik-{TRAEFIK_TAG}-docker-labels.yml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("- ")) {
            let label = line[2..].trim().trim_matches('"');
            let (key, value) = label.split_once('=').expect("key=value");
            let resource: Vec<&str> = key.splitn(5, '.').take(4).collect();
            out.entry(resource.join("."))
                .or_default()
                .push((key.to_string(), value.to_string()));
        }
        out
    }

    /// Every label Traefik documents decodes without a warning, each
    /// resource's labels as one set.
    #[test]
    fn traefik_reference_labels_decode() {
        let mut decoded = 0;
        for (resource, labels) in reference() {
            // Traefik reads only `traefik.tls.stores.default` of these, and
            // the policy reads no TLS store from instances: TLS stores are
            // the operator's, not a tenant's.
            if resource.starts_with("traefik.tls.") {
                continue;
            }
            let d = decode(&labels, "traefik").unwrap_or_else(|e| panic!("{resource}: {e:#?}"));
            assert!(d.notes.is_empty(), "{resource}: {:?}", d.notes);
            let objects: usize = Resource::ALL.iter().map(|r| d.defs[*r].len()).sum();
            assert_eq!(objects, 1, "{resource}: {d:?}");
            decoded += labels.len();
        }
        // The v3.7.9 reference has 282 labels, 6 of them TLS stores.
        assert_eq!(decoded, 276);
    }

    /// Values are typed by the Go type behind each option.
    #[test]
    fn reference_values_are_typed() {
        let labels = &reference()["traefik.http.middlewares.middleware09"];
        let d = decode(labels, "traefik").unwrap();
        assert_eq!(
            Value::Object(d.defs[Resource::HttpMiddleware]["middleware09"].clone()),
            json!({"errors": {
                "errorRequestHeaders": ["foobar", "foobar"],
                "query": "foobar",
                "service": "foobar",
                "status": ["foobar", "foobar"],
                "statusRewrites": {"name0": 42, "name1": 42}}})
        );
        let labels = &reference()["traefik.http.middlewares.middleware17"];
        let d = decode(labels, "traefik").unwrap();
        assert_eq!(
            Value::Object(d.defs[Resource::HttpMiddleware]["middleware17"].clone()),
            json!({"plugin": {
                "pluginconf0": {"name0": "foobar", "name1": "foobar"},
                "pluginconf1": {"name0": "foobar", "name1": "foobar"}}})
        );
    }

    /// `=true` alone creates only `allowEmpty` structs; Traefik rejects it
    /// on the others ("cannot be a standalone element").
    #[test]
    fn allow_empty() {
        let l = |k: &str, v: &str| vec![(format!("traefik.{k}"), v.to_string())];
        for ok in [
            "http.routers.r.tls",
            "http.middlewares.m.compress",
            "http.services.s.loadbalancer.sticky.cookie",
            "tcp.services.s.loadbalancer.proxyprotocol",
        ] {
            assert!(decode(&l(ok, "true"), "traefik").is_ok(), "{ok}");
        }
        for bad in [
            "http.routers.r.observability",
            "http.middlewares.m.headers",
            "http.services.s.loadbalancer.healthcheck",
            "http.middlewares.m.errors.statusrewrites",
            "http.middlewares.m.plugin.p",
        ] {
            let e = decode(&l(bad, "true"), "traefik").unwrap_err();
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
        }
        let e = decode(
            &l("http.middlewares.m.errors.statusrewrites.404", "x"),
            "traefik",
        )
        .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "label traefik.http.middlewares.m.errors.statusrewrites.404=\"x\": expected an integer"
        );
    }

    /// The checked-in tables and reference are what `derive.py` writes
    /// (without a Traefik mirror, it checks the header only).
    #[test]
    fn derive_py_agrees() {
        let script = schema_dir().join("derive.py");
        let out = match std::process::Command::new("python3")
            .arg(&script)
            .arg("--check")
            .output()
        {
            Ok(out) => out,
            Err(e) => panic!("python3 (needed to check {script:?}): {e}"),
        };
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(TRAEFIK_COMMIT.len(), 40);
    }
}
