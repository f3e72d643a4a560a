//! The operator's `default_labels`, rendered for one instance into labels
//! that `decode` reads before the instance's own.
//!
//! Any problem drops the instance: applying only part of the operator's
//! defaults (say, the routers without the redirect middleware) could expose
//! something the operator did not intend.

use crate::collect::{Label, Origin};
use crate::model::Instance;
use crate::safety;
use crate::settings::Settings;
use crate::template::{Data, V};

/// Only the fields some template reads are filled in: copying every
/// instance's metadata into a map nobody looks at was a good part of the
/// per-instance cost. A field that is absent renders as it would if empty.
pub fn template_data(inst: &Instance, own: &[Label], s: &Settings) -> Data {
    let opt = |o: &Option<String>| o.clone().map(V::Str).unwrap_or(V::Nil);
    let mut d = Data::default();
    let f = &mut d.fields;
    let mut put = |name: &'static str, value: &dyn Fn() -> V| {
        if s.template_fields.contains(name) {
            f.insert(name, value());
        }
    };
    put("Name", &|| V::Str(inst.name.clone()));
    put("ID", &|| V::Str(inst.id.clone()));
    put("ProjectID", &|| V::Str(inst.project_id.clone()));
    put("UserID", &|| V::Str(inst.user_id.clone()));
    put("Region", &|| V::Str(inst.region.clone()));
    put("Cloud", &|| V::Str(inst.cloud.clone()));
    put("Status", &|| V::Str(inst.status.clone()));
    put("AvailabilityZone", &|| opt(&inst.availability_zone));
    put("FlavorName", &|| opt(&inst.flavor_name));
    put("ImageID", &|| opt(&inst.image_id));
    put("Metadata", &|| {
        V::Map(inst.metadata.iter().cloned().collect())
    });
    put("Labels", &|| {
        V::Map(
            own.iter()
                .map(|l| (l.key.clone(), l.value.clone()))
                .collect(),
        )
    });
    put("Tags", &|| V::List(inst.tags.clone()));
    d
}

/// Renders every default label, in the order of their keys.
pub fn render(s: &Settings, data: &Data) -> Result<Vec<Label>, String> {
    let mut out = Vec::with_capacity(s.default_labels.len());
    for (raw, kt, vt) in &s.default_labels {
        let ctx = |e: String| format!("default label {raw:?}: {e}");
        // A name written without a template is the same for every instance:
        // the operator's, whichever project the instance is in.
        let shared = raw
            .get(s.label_prefix.len() + 1..)
            .is_some_and(|rest| rest.splitn(4, '.').take(3).all(|p| !p.contains("{{")));
        let key = kt
            .render(data)
            .map_err(|e| ctx(format!("template error: {e}")))?;
        safety::check_key(&key).map_err(ctx)?;
        let value = vt
            .render(data)
            .map_err(|e| ctx(format!("template error in value: {e}")))?;
        out.push(Label {
            key: key.text,
            value: value.text,
            origin: Origin::Operator { shared },
            // Rules and lists are checked by `decode`, which knows the option.
            tainted: value.tainted,
        });
    }
    Ok(out)
}
