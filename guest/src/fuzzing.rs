//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
//! the private parsers, called as the policy calls them. Nothing here is
//! part of the library's interface.

use crate::collect;
use crate::constraints;
use crate::default_labels::template_data;
use crate::model::Instance;
use crate::safety;
use crate::settings::Settings;
use crate::template::{FIELDS, Template};
use std::collections::BTreeMap;

/// Parses `src` as a template and renders it with `inst`'s data, as
/// `default_labels` does; then checks the rendering as a rule. Panics if a
/// tainted range does not lie on character boundaries of the text.
pub fn template(src: &str, inst: &Instance) -> Result<String, String> {
    let template = Template::parse(src)?;
    let mut settings = Settings::parse("{}")?;
    settings.template_fields = FIELDS.iter().copied().collect();
    let own = collect::collect(inst, &settings.label_prefix).labels;
    let rendered = template.render(&template_data(inst, &own, &settings))?;
    let mut end = 0;
    for range in &rendered.tainted {
        assert!(
            range.start >= end && range.start < range.end,
            "{rendered:?}"
        );
        assert!(rendered.text.get(range.clone()).is_some(), "{rendered:?}");
        end = range.end;
    }
    // The checks rendered rules and lists go through must hold up too.
    let _ = safety::check_rule(&rendered);
    let _ = safety::check_key(&rendered);
    let _ = safety::check_list(&rendered);
    Ok(rendered.text)
}

/// Parses `expr` as a constraints expression and evaluates it on `tags`
/// and `labels`.
pub fn constraints(
    expr: &str,
    tags: &[String],
    labels: &[(String, String)],
) -> Result<bool, String> {
    let expr = constraints::parse(expr)?;
    let labels: BTreeMap<String, String> = labels.iter().cloned().collect();
    Ok(expr.eval(tags, &labels))
}

/// Parses `json` as the `[routes]` settings.
pub fn settings(json: &str) -> Result<(), String> {
    Settings::parse(json).map(drop)
}
