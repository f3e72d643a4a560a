//! The operator's `default_labels`, rendered for one instance into labels
//! that `decode` reads before the instance's own.
//!
//! Any problem drops the instance: applying only part of the operator's
//! defaults (say, the routers without the redirect middleware) could expose
//! something the operator did not intend.

use crate::collect::{Label, Origin};
use crate::model::Instance;
use crate::resource::Resource;
use crate::safety;
use crate::settings::Settings;
use crate::template::{Data, V};
use std::collections::{BTreeMap, BTreeSet};

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
    for l in &s.default_labels {
        let ctx = |e: String| format!("default label {:?}: {e}", l.raw);
        let key = l
            .key
            .render(data)
            .map_err(|e| ctx(format!("template error: {e}")))?;
        safety::check_key(&key).map_err(ctx)?;
        let value = l
            .value
            .render(data)
            .map_err(|e| ctx(format!("template error in value: {e}")))?;
        out.push(Label {
            key: key.text,
            value: value.text,
            origin: Origin::Operator { shared: l.shared },
            // Rules and lists are checked by `decode`, which knows the option.
            tainted: value.tainted,
        });
    }
    Ok(out)
}

/// What the default labels say about one fixed name.
#[derive(Default)]
struct Fixed {
    /// Every label of it is free of templates, key and value.
    literal: bool,
    /// Its options (first segment after the name), lowercase.
    options: BTreeSet<String>,
}

/// The routers and middlewares the operator's labels define under a fixed
/// name with the same definition for every instance: (kind, name in ASCII
/// lowercase, as names merge in `decode`). Decided from the settings alone,
/// so every instance agrees. Not constant: a template anywhere in its
/// labels, a templated name of the same kind (it could render to this
/// one), or a router whose rule or service the defaults would fill in
/// from the instance.
pub fn constant_names(s: &Settings) -> BTreeSet<(Resource, String)> {
    let mut fixed: BTreeMap<(Resource, String), Fixed> = BTreeMap::new();
    let mut templated: BTreeSet<Resource> = BTreeSet::new();
    for l in &s.default_labels {
        let vt = &l.value;
        let Some(rest) = l.raw.get(s.label_prefix.len() + 1..) else {
            continue;
        };
        let mut segs = rest.splitn(4, '.');
        let (layer, section) = (segs.next().unwrap_or(""), segs.next().unwrap_or(""));
        if layer.contains("{{") || section.contains("{{") {
            // Could be any kind.
            templated.extend(Resource::ALL);
            continue;
        }
        let Some(kind) = Resource::from_label(layer, section) else {
            continue;
        };
        let name = segs.next().unwrap_or("");
        if name.contains("{{") {
            templated.insert(kind);
            continue;
        }
        let option = segs.next().unwrap_or("");
        let f = fixed
            .entry((kind, name.to_ascii_lowercase()))
            .or_insert_with(|| Fixed {
                literal: true,
                options: BTreeSet::new(),
            });
        f.literal &= !option.contains("{{") && vt.is_literal();
        // An empty rule or service is one the defaults fill in.
        if !vt.is_empty() {
            let first = option.split('.').next().unwrap_or("");
            f.options.insert(first.to_ascii_lowercase());
        }
    }
    fixed
        .into_iter()
        .filter(|((kind, _), f)| f.literal && !templated.contains(kind) && complete(*kind, f))
        .map(|(k, _)| k)
        .collect()
}

/// Whether the defaults leave the definition as the labels wrote it.
fn complete(kind: Resource, f: &Fixed) -> bool {
    let has = |o: &str| f.options.contains(o);
    match kind {
        Resource::HttpMiddleware | Resource::TcpMiddleware => true,
        Resource::UdpRouter => has("service"),
        Resource::HttpRouter | Resource::TcpRouter => has("service") && has("rule"),
        // Services merge their servers: never shared across groups.
        _ => false,
    }
}
