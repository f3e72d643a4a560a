//! Traefik's constraint expressions: ``Tag(`x`)``, ``TagRegex(`re`)``,
//! ``Label(`k`,`v`)``, ``LabelRegex(`k`,`re`)``, `!`, `&&`, `||` and
//! parentheses. Regexes are unanchored, as Traefik's `regexp.MatchString`.

use regex_automata::meta::Regex;
use std::collections::BTreeMap;

const MAX_DEPTH: usize = 64;
/// Long `a || b || ...` chains build deep trees too; bound them.
const MAX_TOKENS: usize = 4096;

#[derive(Debug, Clone)]
pub enum Expr {
    Tag(String),
    TagRegex(Regex),
    Label(String, String),
    LabelRegex(String, Regex),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn eval(&self, tags: &[String], labels: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::Tag(t) => tags.iter().any(|x| x == t),
            Expr::TagRegex(re) => tags.iter().any(|x| re.is_match(x)),
            Expr::Label(k, v) => labels.get(k).is_some_and(|x| x == v),
            Expr::LabelRegex(k, re) => labels.get(k).is_some_and(|x| re.is_match(x)),
            Expr::Not(e) => !e.eval(tags, labels),
            Expr::And(a, b) => a.eval(tags, labels) && b.eval(tags, labels),
            Expr::Or(a, b) => a.eval(tags, labels) || b.eval(tags, labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Open,
    Close,
    Comma,
    Not,
    And,
    Or,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            ',' => out.push(Tok::Comma),
            '!' => out.push(Tok::Not),
            '&' | '|' => {
                if it.next().map(|(_, d)| d) != Some(c) {
                    return Err(format!("expected {c}{c} at {i}"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
            }
            '`' => {
                let mut v = String::new();
                loop {
                    match it.next() {
                        Some((_, '`')) => break,
                        Some((_, d)) => v.push(d),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Tok::Str(v));
            }
            '"' => {
                let mut v = String::new();
                loop {
                    match it.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match it.next() {
                            Some((_, d)) => v.push(d),
                            None => return Err("unterminated string".into()),
                        },
                        Some((_, d)) => v.push(d),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_alphabetic() => {
                let mut v = String::from(c);
                while let Some((_, d)) = it
                    .peek()
                    .copied()
                    .filter(|(_, d)| d.is_ascii_alphanumeric())
                {
                    v.push(d);
                    it.next();
                }
                out.push(Tok::Ident(v));
            }
            _ => return Err(format!("unexpected {c:?} at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {t:?}"))
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        let mut e = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and(depth)?));
        }
        Ok(e)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut e = self.unary(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary(depth)?));
        }
        Ok(e)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err("expression nested too deeply".into());
        }
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or(depth + 1)?;
                self.expect(Tok::Close)?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                self.expect(Tok::Open)?;
                let mut args = Vec::new();
                while let Some(Tok::Str(s)) = self.peek().cloned() {
                    self.pos += 1;
                    args.push(s);
                    if self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                self.expect(Tok::Close)?;
                let re = |s: &str| Regex::new(s).map_err(|e| format!("{name}: bad regex: {e}"));
                match (name.as_str(), args.as_slice()) {
                    ("Tag", [t]) => Ok(Expr::Tag(t.clone())),
                    ("TagRegex", [t]) => Ok(Expr::TagRegex(re(t)?)),
                    ("Label", [k, v]) => Ok(Expr::Label(k.clone(), v.clone())),
                    ("LabelRegex", [k, v]) => Ok(Expr::LabelRegex(k.clone(), re(v)?)),
                    ("Tag" | "TagRegex" | "Label" | "LabelRegex", _) => {
                        Err(format!("{name}: wrong number of arguments"))
                    }
                    _ => Err(format!("unknown matcher {name}")),
                }
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

pub fn parse(s: &str) -> Result<Expr, String> {
    let toks = lex(s)?;
    if toks.len() > MAX_TOKENS {
        return Err("expression too long".into());
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or(0)?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str) -> bool {
        let tags = vec!["web".to_string(), "env=prod".to_string()];
        let mut labels = BTreeMap::new();
        labels.insert("env".to_string(), "prod".to_string());
        labels.insert("team".to_string(), "blue-1".to_string());
        parse(expr).unwrap().eval(&tags, &labels)
    }

    #[test]
    fn matchers() {
        assert!(eval("Tag(`web`)"));
        assert!(!eval("Tag(`db`)"));
        assert!(eval("TagRegex(`^w`)"));
        assert!(eval("TagRegex(`e`)"));
        assert!(eval("Label(`env`, `prod`)"));
        assert!(eval("Label(\"env\", \"prod\")"));
        assert!(!eval("Label(`env`, `dev`)"));
        assert!(eval("LabelRegex(`team`, `^blue-\\d$`)"));
        assert!(!eval("LabelRegex(`missing`, `.*`)"));
    }

    #[test]
    fn operators_and_precedence() {
        assert!(eval("!Tag(`db`)"));
        assert!(eval("Tag(`db`) || Tag(`web`) && Label(`env`,`prod`)"));
        assert!(!eval("(Tag(`db`) || Tag(`web`)) && Label(`env`,`dev`)"));
        assert!(eval("!!Tag(`web`)"));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "Tag(`a`",
            "Tag(`a`, `b`)",
            "Foo(`a`)",
            "TagRegex(`(`)",
            "Tag(`a`) &",
            "Tag(`a`) Tag(`b`)",
            "Tag(a)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"!".repeat(1000)).is_err());
        assert!(parse(&format!("{}Tag(`a`){}", "(".repeat(500), ")".repeat(500))).is_err());
    }
}
