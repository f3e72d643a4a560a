//! Which instances are routed at all: status, name globs, `enable`,
//! constraints. Each refusal is a "skipped: ..." reason for the diagnostics.

use crate::collect::{self, Collected};
use crate::model::Instance;
use crate::settings::Settings;

/// `own` are the instance's own labels (not the default ones).
pub fn check(inst: &Instance, s: &Settings, own: &Collected) -> Result<(), String> {
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
    match collect::enable(own, p) {
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
        && !c.eval(&inst.tags, &collect::all_labels(inst))
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

    fn own(i: &Instance) -> Collected {
        collect::collect(i, "traefik")
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
