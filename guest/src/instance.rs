//! One instance through the per-instance stages: `collect` its labels,
//! `filter` it, render the operator's `default_labels`, `decode` both,
//! pick its `address`, apply the provider `defaults`.

use crate::collect;
use crate::decode;
use crate::default_labels;
use crate::defaults::{self, Contribution, Diags};
use crate::filter;
use crate::model::{Diagnostic, Instance, Level};
use crate::settings::Settings;

pub fn route(inst: &Instance, s: &Settings, out: &mut Vec<Diagnostic>) -> Option<Contribution> {
    let mut d = Diags {
        id: &inst.id,
        out: &mut *out,
    };
    let own = collect::collect(inst, &s.label_prefix);
    if let Err(why) = filter::check(inst, s, &own) {
        d.push(Level::Info, why);
        return None;
    }
    // Fail closed, as Traefik drops a container with one bad label: a typo
    // in `middlewares` must not publish the VM without its auth.
    for p in &own.problems {
        d.push(Level::Error, format!("dropped: {p}"));
    }
    let data = default_labels::template_data(inst, &own.labels, s);
    let operator = match default_labels::render(s, &data) {
        Ok(l) => l,
        Err(e) => {
            d.push(Level::Error, format!("dropped: {e}"));
            return None;
        }
    };
    let mut decoded = match decode::decode(&operator, &own.labels, &s.label_prefix) {
        Ok(_) if !own.problems.is_empty() => return None,
        Ok(dec) => dec,
        Err(errors) => {
            for e in errors {
                d.push(Level::Error, format!("dropped: {e}"));
            }
            return None;
        }
    };
    for (level, note) in std::mem::take(&mut decoded.notes) {
        d.push(level, note);
    }
    let chosen = match crate::address::choose(inst, &s.address, decoded.network.as_deref()) {
        Ok(c) => c,
        Err(why) => {
            d.push(Level::Info, why);
            return None;
        }
    };
    let overridden = std::mem::take(&mut decoded.overridden);
    let mut c = defaults::build(inst, s, &data, &chosen, decoded, d)?;
    crate::ownership::drop_overridden(&mut c, &overridden, out);
    Some(c)
}
