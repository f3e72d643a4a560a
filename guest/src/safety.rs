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
/// characters are refused too, as no host or path legitimately holds them.
pub fn check_rule(r: &Rendered) -> Result<(), String> {
    let spans = literal_spans(&r.text);
    for range in &r.tainted {
        let piece = &r.text[range.clone()];
        if piece.contains(['`', '"', '\\']) || piece.chars().any(char::is_control) {
            return Err(format!(
                "instance data {piece:?} in a rule contains a quote, backslash or control character"
            ));
        }
        if !spans
            .iter()
            .any(|s| s.start <= range.start && range.end <= s.end)
        {
            return Err(format!(
                "instance data {piece:?} is used outside a quoted string of the rule"
            ));
        }
    }
    Ok(())
}

/// Byte ranges of the contents of `` `...` `` and `"..."` literals.
fn literal_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
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
            _ => continue,
        };
        match close {
            Some((j, _)) => spans.push(i + 1..j),
            None => break,
        }
    }
    spans
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
        assert!(check_rule(&render("Host(\"{{ .Name }}\")", "a b")).is_ok());
        assert!(check_rule(&render(t, "a\nb")).is_err());
        // Harmless even though it looks like syntax: it stays one string.
        assert!(check_rule(&render(t, "a) || Host(b")).is_ok());
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
    fn keys_and_lists() {
        let k = "traefik.http.routers.{{ .Name }}.rule";
        assert!(check_key(&render(k, "web")).is_ok());
        assert!(check_key(&render(k, "web.x")).is_err());
        assert!(check_list(&render("{{ .Name }}-auth", "a,b")).is_err());
        assert!(check_list(&render("{{ .Name }}-auth", "ab")).is_ok());
    }
}
