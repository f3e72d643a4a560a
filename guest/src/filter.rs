//! Which instances are routed at all: status, name globs, `enable`,
//! constraints. Each refusal is a "skipped: ..." reason for the diagnostics.

use crate::labels;
use crate::model::Instance;
use crate::settings::Settings;

/// A shell-style glob on instance names: `*` any run, `?` one character,
/// everything else literal; the whole name must match.
#[derive(Debug, Clone)]
pub struct Glob {
    pub pattern: String,
    chars: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        Ok(Glob {
            pattern: pattern.to_string(),
            chars: pattern.chars().collect(),
        })
    }

    /// Iterative matching with one backtrack point (the last `*`): linear
    /// memory and O(n·m) time whatever the name, no recursion.
    pub fn matches(&self, s: &str) -> bool {
        let p = &self.chars;
        let t: Vec<char> = s.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// `own` are the instance's own labels (not the default ones).
pub fn check(inst: &Instance, s: &Settings, own: &[(String, String)]) -> Result<(), String> {
    if !s.statuses.is_empty()
        && !s
            .statuses
            .iter()
            .any(|x| x.eq_ignore_ascii_case(&inst.status))
    {
        return Err(format!("skipped: status {}", inst.status));
    }
    if !s.include.is_empty() && !s.include.iter().any(|g| g.matches(&inst.name)) {
        return Err("skipped: name matches no include glob".into());
    }
    if let Some(g) = s.exclude.iter().find(|g| g.matches(&inst.name)) {
        return Err(format!(
            "skipped: name matches exclude glob {:?}",
            g.pattern
        ));
    }
    let p = &s.label_prefix;
    match labels::enable(own, p) {
        Some(Ok(false)) => return Err(format!("skipped: {p}.enable=false")),
        Some(Err(raw)) if !s.exposed_by_default => {
            return Err(format!(
                "skipped: not exposed by default and {p}.enable={raw:?} is not a boolean"
            ));
        }
        None if !s.exposed_by_default => {
            return Err(format!(
                "skipped: not exposed by default and no {p}.enable=true"
            ));
        }
        _ => {}
    }
    if let Some(c) = &s.constraints
        && !c.eval(&inst.tags, &labels::all_labels(inst))
    {
        return Err("skipped: constraints".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Settings {
        Settings::parse(json).unwrap()
    }

    fn inst(name: &str, status: &str) -> Instance {
        Instance {
            name: name.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    fn own(i: &Instance) -> Vec<(String, String)> {
        labels::collect(i, "traefik").0
    }

    #[test]
    fn globs() {
        let g = Glob::new("web-*.prod?").unwrap();
        assert!(g.matches("web-1.prod2"));
        assert!(!g.matches("web-1.prod"));
        assert!(!g.matches("xweb-1.prod2"));
        assert!(Glob::new("a(b").unwrap().matches("a(b"));
        assert!(Glob::new("*").unwrap().matches(""));
        assert!(Glob::new("a*b*c").unwrap().matches("aXbYbZc"));
        assert!(!Glob::new("a*b*c").unwrap().matches("aXbYbZ"));
        assert!(Glob::new("é?").unwrap().matches("éé"));
        assert!(!Glob::new("").unwrap().matches("x"));
    }

    #[test]
    fn status_and_names() {
        let s = settings(r#"{"include": ["web-*"], "exclude": ["web-old*"]}"#);
        let i = inst("web-1", "SHUTOFF");
        assert_eq!(
            check(&i, &s, &own(&i)).unwrap_err(),
            "skipped: status SHUTOFF"
        );
        let i = inst("db-1", "ACTIVE");
        assert_eq!(
            check(&i, &s, &own(&i)).unwrap_err(),
            "skipped: name matches no include glob"
        );
        let i = inst("web-old-1", "ACTIVE");
        assert!(check(&i, &s, &own(&i)).unwrap_err().contains("exclude"));
        let i = inst("web-1", "active");
        assert!(check(&i, &s, &own(&i)).is_ok());
    }

    #[test]
    fn enable_overrides_default_both_ways() {
        let mut i = inst("a", "ACTIVE");
        i.metadata.push(("traefik.enable".into(), "false".into()));
        let s = settings("{}");
        assert_eq!(
            check(&i, &s, &own(&i)).unwrap_err(),
            "skipped: traefik.enable=false"
        );
        let s = settings(r#"{"exposed_by_default": false}"#);
        let i2 = inst("a", "ACTIVE");
        assert!(
            check(&i2, &s, &own(&i2))
                .unwrap_err()
                .contains("not exposed by default")
        );
        let mut i3 = inst("a", "ACTIVE");
        i3.tags.push("traefik.enable=true".into());
        assert!(check(&i3, &s, &own(&i3)).is_ok());
    }

    #[test]
    fn constraints() {
        let s = settings(r#"{"constraints": "Tag(`public`) && !Label(`env`, `dev`)"}"#);
        let mut i = inst("a", "ACTIVE");
        assert_eq!(check(&i, &s, &own(&i)).unwrap_err(), "skipped: constraints");
        i.tags.push("public".into());
        assert!(check(&i, &s, &own(&i)).is_ok());
        i.metadata.push(("env".into(), "dev".into()));
        assert_eq!(check(&i, &s, &own(&i)).unwrap_err(), "skipped: constraints");
    }
}
