//! A small subset of Go's `text/template` with the sprig functions people use
//! in Traefik's `defaultRule`: actions `{{ }}` with `{{-`/`-}}` trimming,
//! fields (`.Name`, `.Metadata.key`), string/number/bool literals, function
//! calls, parentheses and pipelines. No `if`/`range`/variables.
//!
//! Every value remembers whether it came from instance data ("tainted"), and
//! rendering reports where tainted text landed in the output, so that callers
//! can check that tenant data stays inside string literals of a rule.

use crate::names::normalize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Fields a template may read; see `Data`.
pub const FIELDS: &[&str] = &[
    "Name",
    "ID",
    "ProjectID",
    "UserID",
    "Region",
    "Cloud",
    "Status",
    "AvailabilityZone",
    "FlavorName",
    "ImageID",
    "Metadata",
    "Labels",
    "Tags",
];

/// (name, min args, max args) including a piped argument.
const FUNCS: &[(&str, usize, usize)] = &[
    ("normalize", 1, 1),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("trim", 1, 1),
    ("replace", 3, 3),
    ("trimPrefix", 2, 2),
    ("trimSuffix", 2, 2),
    ("hasPrefix", 2, 2),
    ("hasSuffix", 2, 2),
    ("contains", 2, 2),
    ("default", 2, 2),
    ("printf", 1, usize::MAX),
    ("index", 1, usize::MAX),
    ("join", 2, 2),
];

/// Parentheses nest at most this deep; templates come from the operator, but
/// recursion must stay bounded anyway.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Nil,
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

static NIL: V = V::Nil;

/// The values a template sees, keyed by the names in `FIELDS`.
#[derive(Debug, Default)]
pub struct Data {
    pub fields: BTreeMap<&'static str, V>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of `text` produced from instance data.
    pub tainted: Vec<Range<usize>>,
}

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone)]
struct Command(Vec<Arg>);

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Lit(V),
    Func(String),
    Sub(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut nodes = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next {
                text = text.trim_start();
            }
            let mut after = &rest[open + 2..];
            if after.starts_with('-') && after[1..].starts_with(char::is_whitespace) {
                text = text.trim_end();
                after = &after[1..];
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            let (toks, used, trim) = lex_action(after)?;
            trim_next = trim;
            let mut p = Parser {
                toks: &toks,
                pos: 0,
            };
            let pipe = p.pipeline(0)?;
            if p.pos != toks.len() {
                return Err("unexpected \")\" in action".into());
            }
            nodes.push(Node::Action(pipe));
            rest = &after[used..];
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Renders the same text for every instance: no action in it.
    pub fn is_literal(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }

    /// Renders nothing, for every instance.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The top-level fields (`Name`, `Metadata`, ...) the template reads.
    pub fn fields(&self, out: &mut BTreeSet<&'static str>) {
        fn pipeline(p: &Pipeline, out: &mut BTreeSet<&'static str>) {
            for arg in p.0.iter().flat_map(|c| &c.0) {
                match arg {
                    Arg::Field(path) => {
                        if let Some(f) = FIELDS.iter().find(|f| **f == path[0]) {
                            out.insert(*f);
                        }
                    }
                    Arg::Sub(p) => pipeline(p, out),
                    Arg::Lit(_) | Arg::Func(_) => {}
                }
            }
        }
        for node in &self.nodes {
            if let Node::Action(p) = node {
                pipeline(p, out);
            }
        }
    }

    pub fn render(&self, data: &Data) -> Result<Rendered, String> {
        // Sized for the literal text plus a few substitutions, so that a
        // typical label grows its buffer once at most.
        let literal: usize = self
            .nodes
            .iter()
            .map(|n| match n {
                Node::Text(t) => t.len(),
                Node::Action(_) => 16,
            })
            .sum();
        let mut out = Rendered {
            text: String::with_capacity(literal),
            tainted: Vec::new(),
        };
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.text.push_str(t),
                Node::Action(p) => {
                    let (v, tainted) = eval_pipeline(p, data)?;
                    let start = out.text.len();
                    out.text.push_str(&print(&v));
                    if tainted && out.text.len() > start {
                        out.tainted.push(start..out.text.len());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Lexes one action up to its closing `}}`; returns the tokens, the bytes
/// consumed including the delimiter, and whether it ended with `-}}`.
fn lex_action(s: &str) -> Result<(Vec<Tok>, usize, bool), String> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let at_space = i > 0 && b[i - 1].is_ascii_whitespace();
        if i >= b.len() {
            return Err("unclosed action".into());
        }
        if s[i..].starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        if at_space && s[i..].starts_with("-}}") {
            return Ok((toks, i + 3, true));
        }
        let c = b[i];
        match c {
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            b'(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            b')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            b'"' => {
                let mut v = String::new();
                let mut chars = s[i + 1..].char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some((j, '"')) => break i + 1 + j + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => v.push('\n'),
                            Some((_, 't')) => v.push('\t'),
                            Some((_, c @ ('\\' | '"' | '`'))) => v.push(c),
                            _ => return Err("unsupported escape in string".into()),
                        },
                        Some((_, c)) => v.push(c),
                    }
                };
                toks.push(Tok::Str(v));
                i = end;
            }
            b'`' => {
                let close = s[i + 1..].find('`').ok_or("unterminated raw string")?;
                toks.push(Tok::Str(s[i + 1..i + 1 + close].to_string()));
                i += close + 2;
            }
            b'.' => {
                let mut path = Vec::new();
                while i < b.len() && b[i] == b'.' {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                        j += 1;
                    }
                    if j == start {
                        return Err("`.` alone is not supported; name a field such as .Name".into());
                    }
                    path.push(s[start..j].to_string());
                    i = j;
                }
                toks.push(Tok::Field(path));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = s[start..i]
                    .parse()
                    .map_err(|_| format!("bad number {:?}", &s[start..i]))?;
                toks.push(Tok::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok::Ident(s[start..i].to_string()));
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} in action"));
            }
        }
    }
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn pipeline(&mut self, depth: usize) -> Result<Pipeline, String> {
        if depth > MAX_DEPTH {
            return Err("parentheses nested too deeply".into());
        }
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            while let Some(t) = self.toks.get(self.pos) {
                let arg = match t {
                    Tok::Pipe | Tok::Close => break,
                    Tok::Field(path) => {
                        if !FIELDS.contains(&path[0].as_str()) {
                            return Err(format!("unknown field .{}", path[0]));
                        }
                        Arg::Field(path.clone())
                    }
                    Tok::Str(s) => Arg::Lit(V::Str(s.clone())),
                    Tok::Int(n) => Arg::Lit(V::Int(*n)),
                    Tok::Ident(id) => match id.as_str() {
                        "true" => Arg::Lit(V::Bool(true)),
                        "false" => Arg::Lit(V::Bool(false)),
                        "nil" => Arg::Lit(V::Nil),
                        f if FUNCS.iter().any(|(n, ..)| *n == f) => Arg::Func(id.clone()),
                        "if" | "else" | "end" | "range" | "with" | "define" | "block" => {
                            return Err(format!("{id:?} actions are not supported"));
                        }
                        _ => return Err(format!("function {id:?} not defined")),
                    },
                    Tok::Open => {
                        self.pos += 1;
                        let p = self.pipeline(depth + 1)?;
                        if self.toks.get(self.pos) != Some(&Tok::Close) {
                            return Err("unclosed parenthesis".into());
                        }
                        Arg::Sub(p)
                    }
                };
                self.pos += 1;
                args.push(arg);
            }
            if args.is_empty() {
                return Err("missing value in action".into());
            }
            let piped = usize::from(!cmds.is_empty());
            match &args[0] {
                Arg::Func(name) => {
                    let n = args.len() - 1 + piped;
                    if let Some((_, min, max)) = FUNCS.iter().find(|(f, ..)| f == name)
                        && (n < *min || n > *max)
                    {
                        return Err(format!("wrong number of arguments for {name}: {n}"));
                    }
                }
                _ if args.len() + piped > 1 => {
                    return Err("can't give argument to non-function".into());
                }
                _ => {}
            }
            if args[1..].iter().any(|a| matches!(a, Arg::Func(_))) {
                return Err("a function used as an argument needs parentheses".into());
            }
            cmds.push(Command(args));
            if self.toks.get(self.pos) == Some(&Tok::Pipe) {
                self.pos += 1;
            } else {
                return Ok(Pipeline(cmds));
            }
        }
    }
}

fn eval_pipeline(p: &Pipeline, data: &Data) -> Result<(V, bool), String> {
    let mut prev: Option<(V, bool)> = None;
    for cmd in &p.0 {
        prev = Some(eval_command(cmd, data, prev)?);
    }
    prev.ok_or_else(|| "empty pipeline".into())
}

fn eval_command(cmd: &Command, data: &Data, piped: Option<(V, bool)>) -> Result<(V, bool), String> {
    let Arg::Func(name) = &cmd.0[0] else {
        return eval_arg(&cmd.0[0], data);
    };
    let mut args = Vec::with_capacity(cmd.0.len());
    for a in &cmd.0[1..] {
        args.push(eval_arg(a, data)?);
    }
    args.extend(piped);
    let tainted = args.iter().any(|(_, t)| *t);
    let vals: Vec<V> = args.into_iter().map(|(v, _)| v).collect();
    Ok((call(name, &vals)?, tainted))
}

fn eval_arg(a: &Arg, data: &Data) -> Result<(V, bool), String> {
    match a {
        Arg::Lit(v) => Ok((v.clone(), false)),
        Arg::Sub(p) => eval_pipeline(p, data),
        Arg::Func(f) => Err(format!("function {f} used as a value")),
        Arg::Field(path) => {
            // Walked by reference: `.Metadata.port` copies one string, not
            // the whole map.
            let mut v = data.fields.get(path[0].as_str()).unwrap_or(&NIL);
            let mut keys = path[1..].iter();
            while let Some(key) = keys.next() {
                let V::Map(m) = v else {
                    return Err(format!("can't evaluate field {key}"));
                };
                match m.get(key) {
                    None => v = &NIL,
                    Some(s) => {
                        // A string has no fields.
                        if let Some(next) = keys.next() {
                            return Err(format!("can't evaluate field {next}"));
                        }
                        return Ok((V::Str(s.clone()), true));
                    }
                }
            }
            Ok((v.clone(), true))
        }
    }
}

/// How a value prints; strings are borrowed, not copied.
fn print(v: &V) -> Cow<'_, str> {
    match v {
        V::Nil => Cow::Borrowed(""),
        V::Str(s) => Cow::Borrowed(s),
        V::Int(n) => n.to_string().into(),
        V::Bool(b) => b.to_string().into(),
        V::List(l) => format!("[{}]", l.join(" ")).into(),
        V::Map(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", items.join(" ")).into()
        }
    }
}

fn empty(v: &V) -> bool {
    match v {
        V::Nil => true,
        V::Str(s) => s.is_empty(),
        V::Int(n) => *n == 0,
        V::Bool(b) => !b,
        V::List(l) => l.is_empty(),
        V::Map(m) => m.is_empty(),
    }
}

fn call(name: &str, a: &[V]) -> Result<V, String> {
    let s = |i: usize| print(&a[i]);
    Ok(match name {
        "normalize" => V::Str(normalize(&s(0))),
        "lower" => V::Str(s(0).to_lowercase()),
        "upper" => V::Str(s(0).to_uppercase()),
        "trim" => V::Str(s(0).trim().to_string()),
        "replace" => {
            let old = s(0);
            if old.is_empty() {
                // Go inserts `new` between every rune; not worth the surprise.
                return Err("replace: empty search string".into());
            }
            V::Str(s(2).replace(&*old, &s(1)))
        }
        "trimPrefix" => {
            let v = s(1);
            V::Str(v.strip_prefix(&*s(0)).unwrap_or(&v).to_string())
        }
        "trimSuffix" => {
            let v = s(1);
            V::Str(v.strip_suffix(&*s(0)).unwrap_or(&v).to_string())
        }
        "hasPrefix" => V::Bool(s(1).starts_with(&*s(0))),
        "hasSuffix" => V::Bool(s(1).ends_with(&*s(0))),
        "contains" => V::Bool(s(1).contains(&*s(0))),
        "default" => {
            if empty(&a[1]) {
                a[0].clone()
            } else {
                a[1].clone()
            }
        }
        "join" => match &a[1] {
            V::List(l) => V::Str(l.join(&s(0))),
            other => V::Str(print(other).into_owned()),
        },
        "index" => {
            let mut v = a[0].clone();
            for key in &a[1..] {
                v = match (v, key) {
                    (V::Map(m), k) => m.get(&*print(k)).cloned().map(V::Str).unwrap_or(V::Nil),
                    (V::List(l), V::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .map(V::Str)
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (V::Nil, _) => V::Nil,
                    _ => return Err("index of a value that is not a map or list".into()),
                };
            }
            v
        }
        "printf" => V::Str(printf(&s(0), &a[1..])?),
        _ => return Err(format!("function {name:?} not defined")),
    })
}

fn printf(fmt: &str, args: &[V]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("printf: dangling %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args.next().ok_or("printf: missing argument")?;
        match (verb, arg) {
            ('s' | 'v', a) => out.push_str(&print(a)),
            ('d', V::Int(n)) => out.push_str(&n.to_string()),
            ('q', a) => out.push_str(&format!("{:?}", print(a))),
            _ => return Err(format!("printf: unsupported %{verb} for this argument")),
        }
    }
    if args.next().is_some() {
        return Err("printf: too many arguments".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        let mut d = Data::default();
        d.fields.insert("Name", V::Str("Web.Prod 1".into()));
        d.fields.insert("ID", V::Str("abc".into()));
        let mut m = BTreeMap::new();
        m.insert("host".to_string(), "h.example".to_string());
        m.insert("my-key".to_string(), "v".to_string());
        d.fields.insert("Metadata", V::Map(m));
        d.fields
            .insert("Tags", V::List(vec!["a".into(), "b".into()]));
        d
    }

    fn r(t: &str) -> String {
        Template::parse(t).unwrap().render(&data()).unwrap().text
    }

    #[test]
    fn fields_and_functions() {
        assert_eq!(r("Host(`{{ normalize .Name }}`)"), "Host(`Web-Prod-1`)");
        assert_eq!(r("{{ .Name | lower | replace \" \" \"-\" }}"), "web.prod-1");
        assert_eq!(r("{{ .Metadata.host }}"), "h.example");
        assert_eq!(r("{{ index .Metadata \"my-key\" }}"), "v");
        assert_eq!(r("{{ index .Tags 1 }}"), "b");
        assert_eq!(r("{{ .Metadata.nope | default \"x\" }}"), "x");
        assert_eq!(r("{{ default \"x\" .Metadata.host }}"), "h.example");
        assert_eq!(r("{{ printf \"%s-%s\" .ID (upper .ID) }}"), "abc-ABC");
        assert_eq!(r("{{ trimPrefix \"Web.\" .Name }}"), "Prod 1");
        assert_eq!(r("{{ .Name | trimSuffix \" 1\" }}"), "Web.Prod");
        assert_eq!(r("{{ join \",\" .Tags }}"), "a,b");
        assert_eq!(r("a {{- \" b \" -}} c"), "a b c");
        assert_eq!(r("{{`raw`}}"), "raw");
        assert_eq!(r("no action"), "no action");
    }

    #[test]
    fn taint_ranges() {
        let out = Template::parse("Host(`{{ .ID }}.{{ \"lit\" }}`)")
            .unwrap()
            .render(&data())
            .unwrap();
        assert_eq!(out.text, "Host(`abc.lit`)");
        assert_eq!(out.tainted, vec![6..9]);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "{{ .Nope }}",
            "{{ nofunc .Name }}",
            "{{ .Name",
            "{{ if .Name }}x{{ end }}",
            "{{ lower }}",
            "{{ .Name .ID }}",
            "{{ (lower .Name }}",
            "{{ \"abc }}",
            "{{ . }}",
            "{{ lower upper }}",
            "{{ # }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{{{{ {}.Name{} }}}}", "(".repeat(100), ")".repeat(100));
        assert!(Template::parse(&deep).is_err());
    }

    #[test]
    fn exec_errors() {
        let t = Template::parse("{{ .Name.x }}").unwrap();
        assert!(t.render(&data()).is_err());
        let t = Template::parse("{{ index .Tags 9 }}").unwrap();
        assert!(t.render(&data()).is_err());
        let t = Template::parse("{{ printf \"%d\" .Name }}").unwrap();
        assert!(t.render(&data()).is_err());
    }
}
