//! Incremental generation with the built-in (phased) policy: after every
//! kind of change, the configuration, routes and diagnostics are those a
//! whole `generate` gives, and only the touched instances and groups are
//! run again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use traefik_openstack::config::EngineConfig;
use traefik_openstack::engine::{Engine, Generated, Incremental, Module, Work};
use traefik_openstack::testing::synthetic as common;
use traefik_openstack::wit;

fn engine() -> Engine {
    Engine::new(&EngineConfig {
        timeout: Duration::from_secs(5),
        cache_dir: Some("".into()),
        ..EngineConfig::default()
    })
    .unwrap()
}

struct Rig {
    engine: Engine,
    module: Module,
    settings: Arc<str>,
    cache: Incremental,
}

impl Rig {
    fn new() -> Self {
        let engine = engine();
        let module = engine.load_default().unwrap();
        assert!(module.is_phased(), "the built-in policy exports phases");
        Rig {
            engine,
            module,
            settings: common::SETTINGS.into(),
            cache: Incremental::default(),
        }
    }

    /// Runs incrementally, checks the result against a whole `generate`,
    /// and returns what was re-run.
    fn step(&mut self, instances: &[Arc<wit::Instance>]) -> Work {
        let (inc, work) = self
            .cache
            .run(&self.engine, &self.module, &self.settings, instances)
            .unwrap();
        let whole = self
            .engine
            .generate(&self.module, &self.settings, instances)
            .unwrap();
        same(&inc, &whole);
        work
    }
}

fn same(inc: &Generated, whole: &Generated) {
    assert_eq!(inc.config, whole.config, "config bytes differ");
    let routes = |g: &Generated| {
        let mut r: Vec<_> = g.findings.routes().cloned().collect();
        r.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        r
    };
    assert_eq!(routes(inc), routes(whole), "routes differ");
    // Per instance, the same messages in the same order.
    let by_instance = |g: &Generated| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in g.findings.diagnostics() {
            m.entry(d.instance_id.clone())
                .or_default()
                .push(d.message.clone());
        }
        m
    };
    assert_eq!(by_instance(inc), by_instance(whole), "diagnostics differ");
}

fn cloud(n: usize) -> Vec<Arc<wit::Instance>> {
    common::wit_instances(n).into_iter().map(Arc::new).collect()
}

fn edit(list: &mut [Arc<wit::Instance>], at: usize, f: impl FnOnce(&mut wit::Instance)) {
    let mut i = (*list[at]).clone();
    f(&mut i);
    list[at] = Arc::new(i);
}

fn label(i: &mut wit::Instance, key: &str, value: &str) {
    i.metadata.edit(|m| m.push((key.into(), value.into())));
}

#[test]
fn each_change_reruns_only_what_it_touches_and_gives_what_generate_gives() {
    let mut rig = Rig::new();
    let mut list = cloud(120);

    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups, w.merged_parts), (120, 120, 120));

    // Nothing changed, even behind new Arcs: nothing runs.
    let copies: Vec<_> = list.iter().map(|i| Arc::new((**i).clone())).collect();
    assert_eq!(rig.step(&copies), Work::default());

    // One VM's port: one route, one merge of one.
    edit(&mut list, 7, |i| {
        i.metadata.edit(|m| m[0].1 = "9090".into())
    });
    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups, w.merged_parts), (1, 1, 1));

    // A VM leaves and another arrives.
    list.remove(3);
    list.push(Arc::new(common::to_wit(&common::instance(5000))));
    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups, w.merged_parts), (1, 1, 1));

    // A router pointing at a neighbour's service ties the two together.
    let neighbour = list[11].name.clone();
    edit(&mut list, 10, |i| {
        let name = i.name.clone();
        label(
            i,
            &format!("traefik.http.routers.{name}-https.service"),
            &neighbour,
        );
    });
    // The neighbour is routed again: parts are not kept between runs.
    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups, w.merged_parts), (2, 1, 2));

    // Two VMs defining one router differently: both dropped, in one group;
    // then one of them gives up the name and the other keeps it.
    for at in [20, 21] {
        edit(&mut list, at, |i| {
            let rule = format!("Host(`{}.x`)", i.name);
            label(i, "traefik.http.routers.shared.rule", &rule);
        });
    }
    rig.step(&list);
    edit(&mut list, 21, |i| {
        i.metadata.edit(|m| m.pop().map(drop).unwrap_or(()))
    });
    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups, w.merged_parts), (2, 2, 2));

    // A bad label fails that VM closed; nothing else moves.
    edit(&mut list, 30, |i| {
        label(i, "traefik.http.routers.x.priority", "abc")
    });
    let w = rig.step(&list);
    assert_eq!((w.routed, w.groups), (1, 1));
}

#[test]
fn instances_of_several_projects_keep_their_names() {
    let mut rig = Rig::new();
    let mut list = cloud(40);
    let owned = format!("{}-https", list[5].name);
    // Project b's VM claims a router name of project a's older VM: as it
    // is, and in another case, which Traefik's KV providers read as the
    // same name.
    for taken in [owned.clone(), owned.to_uppercase()] {
        edit(&mut list, 6, |i| {
            i.project_id = "other-project".into();
            i.created = "2027-01-01T00:00:00Z".into();
            label(
                i,
                &format!("traefik.http.routers.{taken}.rule"),
                "Host(`evil.example.com`)",
            );
        });
        rig.step(&list);
        let whole = rig
            .engine
            .generate(&rig.module, &rig.settings, &list)
            .unwrap();
        let config: serde_json::Value = serde_json::from_reader(whole.config.reader()).unwrap();
        let routers = config["http"]["routers"].as_object().unwrap();
        // The owner's router stands, with its own rule; the claim is gone.
        let rule = routers.get(&owned).map(|r| r["rule"].as_str().unwrap());
        assert!(
            rule.is_some_and(|r| r.contains(&*list[5].name)),
            "{taken}: {rule:?}"
        );
        assert!(taken == owned || !routers.contains_key(&taken), "{taken}");
        let refused = whole
            .findings
            .diagnostics()
            .any(|d| *d.instance_id == *list[6].id && d.message.contains("another project"));
        assert!(refused, "{taken}: no diagnostic on the claiming VM");
        // And lets go of it.
        edit(&mut list, 6, |i| {
            i.metadata.edit(|m| m.retain(|(k, _)| !k.contains(&taken)))
        });
        rig.step(&list);
    }
}

#[test]
fn new_settings_or_a_failed_run_start_over() {
    let mut rig = Rig::new();
    let list = cloud(30);
    rig.step(&list);
    rig.settings = common::SETTINGS
        .replace("apps.example.com", "labs.example.com")
        .into();
    let w = rig.step(&list);
    assert_eq!(w.routed, 30);

    // Settings the module refuses: an error, and the next good run redoes
    // everything rather than trust a half-applied cache.
    let good = rig.settings.clone();
    rig.settings = r#"{"nope": 1}"#.into();
    let err = rig
        .cache
        .run(&rig.engine, &rig.module, &rig.settings, &list)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    rig.settings = good;
    assert_eq!(rig.step(&list).routed, 30);
}

#[test]
fn with_no_instances_the_module_still_judges_the_settings() {
    let mut rig = Rig::new();
    rig.step(&cloud(5));
    // Every instance gone: what a whole `generate` of nothing gives.
    rig.step(&[]);

    // Nothing to route calls neither phase, yet settings the module
    // refuses must fail as `generate` fails (a module swap or a settings
    // reload is judged on the current instances, which may be none).
    rig.settings = r#"{"nope": 1}"#.into();
    let whole = rig
        .engine
        .generate::<Arc<wit::Instance>>(&rig.module, &rig.settings, &[])
        .map(|_| ())
        .unwrap_err();
    assert!(whole.to_string().contains("nope"), "{whole}");
    let err = rig
        .cache
        .run(&rig.engine, &rig.module, &rig.settings, &[])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.to_string(), whole.to_string());

    rig.settings = common::SETTINGS.into();
    assert_eq!(rig.step(&cloud(5)).routed, 5);
}

impl Rig {
    /// Primes the cache with `pages`, as the listing's pages arrive;
    /// returns what that did.
    fn prime(&mut self, pages: std::slice::Chunks<'_, Arc<wit::Instance>>) -> Work {
        let mut done = Work::default();
        for page in pages {
            done += self
                .cache
                .prime(&self.engine, &self.module, &self.settings, page)
                .unwrap();
        }
        done
    }
}

#[test]
fn pages_primed_as_they_arrive_leave_the_run_only_what_differs() {
    let mut rig = Rig::new();
    let mut list = cloud(300);
    // A VM of the last page points at a service of the first: the group
    // the first page made is merged again when the last arrives.
    let neighbour = list[5].name.clone();
    edit(&mut list, 250, |i| {
        let name = i.name.clone();
        label(
            i,
            &format!("traefik.http.routers.{name}-https.service"),
            &neighbour,
        );
    });
    let primed = rig.prime(list.chunks(100));
    assert_eq!(
        (primed.routed, primed.groups, primed.primed),
        (301, 300, 301)
    );
    // The run finds every page done: it reports the primed work, no more,
    // and the module's time for the configuration, the pages' included.
    let started = Instant::now();
    let (inc, work) = rig
        .cache
        .run(&rig.engine, &rig.module, &rig.settings, &list)
        .unwrap();
    let run_alone = started.elapsed();
    same(
        &inc,
        &rig.engine
            .generate(&rig.module, &rig.settings, &list)
            .unwrap(),
    );
    assert_eq!(work, primed);
    assert!(
        inc.duration > run_alone,
        "{:?} reported, the run alone took {run_alone:?}",
        inc.duration
    );
    // The next run has nothing left to report.
    assert_eq!(rig.step(&list), Work::default());

    // A listing whose pages differ from what the run is given (a VM
    // changed, one dropped, one never listed): the run redoes what
    // differs and gives what `generate` gives.
    let mut listed = cloud(300);
    edit(&mut listed, 40, |i| {
        i.metadata.edit(|m| m[0].1 = "7070".into())
    });
    listed.push(Arc::new(common::to_wit(&common::instance(9000))));
    rig.prime(listed.chunks(64));
    let mut given = listed.clone();
    given.remove(300);
    given.remove(12);
    edit(&mut given, 40, |i| {
        i.metadata.edit(|m| m[0].1 = "6060".into())
    });
    given.push(Arc::new(common::to_wit(&common::instance(9001))));
    let w = rig.step(&given);
    assert!(w.routed >= 2, "{w:?}");

    // Pages primed with other settings: the run starts over.
    rig.settings = common::SETTINGS
        .replace("apps.example.com", "labs.example.com")
        .into();
    rig.prime(listed.chunks(100));
    rig.settings = common::SETTINGS.into();
    assert_eq!(rig.step(&given).routed, given.len());
}
