//! Keeps tenant data from changing the meaning of operator templates.
//!
//! Templates are written by the operator, but `.Name`, `.Metadata` and
//! `.Tags` are written by tenants. Where a rendered template is parsed again
//! (a rule, a label key, a comma-separated list), text that came from
//! instance data must not be able to add structure: a VM named
//! ``evil`) || Host(`victim.example.com`` must not widen a `Host` rule.

use crate::template::Rendered;

/// Instance data in a rule must lie inside a quoted string literal and hold
/// no quote or backslash, so it can only ever be part of one string; control
/// characters are refused too, as no host or path legitimately holds them,
/// and so are `{`/`}` (patterns under `ruleSyntax=v2`).
///
/// What the string means depends on its matcher, so instance data must
/// also keep to what that matcher takes literally:
/// - in `Host`/`HostSNI`, the whole string must be a DNS name (ASCII
///   letters, digits, `-` and `.`, at most 253 characters, labels of at
///   most 63): Traefik v3 refuses a non-ASCII `Host`, and a name `*` in
///   ``HostSNI(`{{ .Name }}`)`` would catch every TLS connection;
/// - in regular expressions (`*Regexp`) and `ClientIP`, only letters,
///   digits, `-` and `_`: a name `.*` would widen the match to any host.
pub fn check_rule(r: &Rendered) -> Result<(), String> {
    let lits = literals(&r.text);
    for range in &r.tainted {
        let piece = &r.text[range.clone()];
        if piece.contains(['`', '"', '\\', '{', '}']) || piece.chars().any(char::is_control) {
            return Err(format!(
                "instance data {piece:?} in a rule contains a quote, backslash, brace or control character"
            ));
        }
        let Some(lit) = lits
            .iter()
            .find(|l| l.span.start <= range.start && range.end <= l.span.end)
        else {
            return Err(format!(
                "instance data {piece:?} is used outside a quoted string of the rule"
            ));
        };
        let matcher = lit.matcher;
        if matcher == "Host" || matcher == "HostSNI" {
            let host = &r.text[lit.span.clone()];
            if let Err(why) = check_domain(host) {
                return Err(format!(
                    "{matcher} {host:?} is not a valid domain name: {why}"
                ));
            }
        } else if (matcher.ends_with("Regexp") || matcher == "ClientIP")
            && !piece
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "instance data {piece:?} in {matcher} may only hold letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(())
}

/// A host name Traefik accepts and DNS can hold.
pub fn check_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty".into());
    }
    if host.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!("{c:?} is not a letter, digit, '-' or '.'"));
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters".into());
        }
    }
    Ok(())
}

/// A string literal of a rule and the matcher it is an argument of.
struct Literal<'a> {
    /// Byte range of the contents, quotes excluded.
    span: std::ops::Range<usize>,
    /// `Host`, `PathPrefix`, ...; empty outside any call.
    matcher: &'a str,
}

/// The `` `...` `` and `"..."` literals of a rule, with their matcher.
/// An unterminated literal ends the scan: nothing after it counts.
/// Identifiers are slices of `text`, not copies.
fn literals(text: &str) -> Vec<Literal<'_>> {
    let mut out = Vec::new();
    let mut calls: Vec<&str> = Vec::new();
    // Start of the run of identifier characters that ends here, if any.
    let mut ident: Option<usize> = None;
    let mut it = text.char_indices();
    while let Some((i, c)) = it.next() {
        let close = match c {
            '`' => it.find(|&(_, d)| d == '`'),
            '"' => loop {
                match it.next() {
                    Some((_, '\\')) => {
                        it.next();
                    }
                    Some((j, '"')) => break Some((j, '"')),
                    Some(_) => {}
                    None => break None,
                }
            },
            c if c.is_alphanumeric() || c == '_' => {
                ident.get_or_insert(i);
                continue;
            }
            '(' => {
                calls.push(ident.take().map_or("", |start| &text[start..i]));
                continue;
            }
            ')' => {
                calls.pop();
                ident = None;
                continue;
            }
            _ => {
                ident = None;
                continue;
            }
        };
        ident = None;
        match close {
            Some((j, _)) => out.push(Literal {
                span: i + 1..j,
                matcher: calls.last().copied().unwrap_or_default(),
            }),
            None => break,
        }
    }
    out
}

/// Instance data in a label key must not contain the separator `.`,
/// which would move it to another option or router.
pub fn check_key(r: &Rendered) -> Result<(), String> {
    for range in &r.tainted {
        let piece = &r.text[range.clone()];
        if piece.contains('.') {
            return Err(format!(
                "instance data {piece:?} in a label key contains '.'"
            ));
        }
    }
    Ok(())
}

/// Instance data in a list value must not contain `,`, which would add items.
pub fn check_list(r: &Rendered) -> Result<(), String> {
    for range in &r.tainted {
        let piece = &r.text[range.clone()];
        if piece.contains(',') {
            return Err(format!("instance data {piece:?} in a list contains ','"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Data, Template, V};

    fn render(t: &str, name: &str) -> Rendered {
        let mut d = Data::default();
        d.fields.insert("Name", V::Str(name.into()));
        Template::parse(t).unwrap().render(&d).unwrap()
    }

    #[test]
    fn rule_injection_rejected() {
        let t = "Host(`{{ .Name }}.example.com`)";
        assert!(check_rule(&render(t, "web")).is_ok());
        assert!(check_rule(&render(t, "evil`) || Host(`victim.example.com")).is_err());
        assert!(check_rule(&render("Host(\"{{ .Name }}\")", "a\\\"b")).is_err());
        assert!(check_rule(&render("Header(\"X\", \"{{ .Name }}\")", "a b")).is_ok());
        assert!(check_rule(&render(t, "a\nb")).is_err());
        // Harmless even though it looks like syntax: it stays one string.
        assert!(check_rule(&render("Path(`/{{ .Name }}`)", "a) || Host(b")).is_ok());
        // Data outside literals is structure.
        assert!(check_rule(&render("{{ .Name }}", "Host(`x`)")).is_err());
        assert!(check_rule(&render("Host(`a`) || {{ .Name }}", "PathPrefix(`/`)")).is_err());
        // normalize makes any name safe.
        let t = "Host(`{{ normalize .Name }}.example.com`)";
        assert!(check_rule(&render(t, "evil`) || Host(`victim.example.com")).is_ok());
        // An unterminated literal before the data does not count as a span.
        assert!(check_rule(&render("Host(`a) || {{ .Name }}", "x")).is_err());
    }

    #[test]
    fn data_must_keep_to_what_its_matcher_takes_literally() {
        let host = "Host(`{{ .Name }}.example.com`)";
        assert!(check_rule(&render(host, "web-1")).is_ok());
        // Traefik v3 refuses non-ASCII hosts; DNS refuses long labels.
        assert!(check_rule(&render(host, "évé")).is_err());
        assert!(check_rule(&render(host, &"a".repeat(64))).is_err());
        assert!(check_rule(&render(host, &"a".repeat(63))).is_ok());
        assert!(check_rule(&render(host, &["a"; 130].join("."))).is_err());
        assert!(check_rule(&render(host, "a b")).is_err());
        assert!(check_rule(&render(host, "a..b")).is_err());
        // `*` would match every SNI.
        let sni = "HostSNI(`{{ .Name }}`)";
        assert!(check_rule(&render(sni, "*")).is_err());
        assert!(check_rule(&render(sni, "db.example.com")).is_ok());
        // Regular expressions: `.*` would match any host.
        let re = "HostRegexp(`^{{ .Name }}\\.example\\.com$`)";
        assert!(check_rule(&render(re, ".*")).is_err());
        assert!(check_rule(&render(re, "web_1")).is_ok());
        let path = "Host(`a`) && PathRegexp(`^/{{ .Name }}/`)";
        assert!(check_rule(&render(path, "x|.*")).is_err());
        // Elsewhere a path is taken as written, but not a v2 pattern.
        let prefix = "Host(`a`) && PathPrefix(`/{{ .Name }}`)";
        assert!(check_rule(&render(prefix, "a.b/c")).is_ok());
        assert!(check_rule(&render(prefix, "{p:.*}")).is_err());
        // The operator's own literals are not checked.
        assert!(check_rule(&render("HostSNI(`*`) || Host(`{{ .Name }}`)", "a")).is_ok());
        // Nested calls: the innermost matcher counts.
        assert!(check_rule(&render("!(Host(`{{ .Name }}`))", "*")).is_err());
    }

    #[test]
    fn keys_and_lists() {
        let k = "traefik.http.routers.{{ .Name }}.rule";
        assert!(check_key(&render(k, "web")).is_ok());
        assert!(check_key(&render(k, "web.x")).is_err());
        assert!(check_list(&render("{{ .Name }}-auth", "a,b")).is_err());
        assert!(check_list(&render("{{ .Name }}-auth", "ab")).is_ok());
    }
}
