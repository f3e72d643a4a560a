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
