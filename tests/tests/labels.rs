//! Differential test of the label semantics against Traefik's own docker
//! provider, the oracle.
//!
//! Every label set of `tests/labels/corpus.toml` is put (a) on containers of
//! a fake Docker Engine API (`src/docker.rs`) and (b) as Nova metadata on
//! instances of the lab. One real Traefik loads both, through its docker
//! provider and through its HTTP provider polling the host, and the test
//! compares, set by set, the routers, services and middlewares (HTTP, TCP,
//! UDP) of `/api/rawdata`, after normalising what must differ (see
//! [`normalise`]).
//!
//! Sets known to differ today are listed with the reason in
//! `tests/labels/known-differences.toml`. The test fails when a set differs
//! that is not listed, and when a listed set no longer differs (so that the
//! list only shrinks). Every run writes the full report (each differing set
//! with its diff) to `target/e2e/labels-*/report.txt`.
//!
//! Both sides see the same thing: each container reports as its address the
//! fixed IPv4 of its instance and exposes port 80 (the host's `default_port`),
//! both default rules are ``Host(`{{ .Name }}.diff.example.test`)``, both
//! expose by default, and `web` + `websecure` are Traefik's default
//! entrypoints (a `udp` one exists for UDP routers). The service defaults
//! (`passHostHeader`, `strategy`, `responseForwarding`) show on both sides:
//! Traefik's HTTP provider decodes with the same defaults as its label
//! decoder, so they need no normalising.
//!
//! What rawdata cannot show: a router the docker provider gives its default
//! rule carries a hidden flag (`Router.DefaultRule`, `json:"-"`) that makes
//! Traefik wrap it in its router-recursion guard and skip the entrypoint's
//! `defaultRuleSyntax`; a router from the HTTP provider never has it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use traefik_openstack_e2e::docker::{Container, FakeDocker};
use traefik_openstack_e2e::host::{Host, HostOptions};
use traefik_openstack_e2e::lab::ServerSpec;
use traefik_openstack_e2e::traefik::{Ports, Traefik};
use traefik_openstack_e2e::util::{free_port, run_dir, workspace_root};
use traefik_openstack_e2e::{POLL_INTERVAL, shared_lab};

type R = anyhow::Result<()>;

/// The domain of both sides' default rule.
const DOMAIN: &str = "diff.example.test";

/// Sections of `/api/rawdata` compared.
const SECTIONS: &[&str] = &[
    "routers",
    "services",
    "middlewares",
    "tcpRouters",
    "tcpServices",
    "tcpMiddlewares",
    "udpRouters",
    "udpServices",
];

/// The pseudo-set of entries no set claims.
const UNATTRIBUTED: &str = "(unattributed)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    set: Vec<LabelSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelSet {
    name: String,
    #[allow(dead_code)]
    about: String,
    labels: Option<BTreeMap<String, String>>,
    containers: Option<Vec<ContainerSpec>>,
    /// How the labels go onto the instances: Nova metadata (default) or
    /// `key=value` tags.
    #[serde(default)]
    nova: Spelling,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Spelling {
    #[default]
    Metadata,
    Tags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerSpec {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl LabelSet {
    /// (container / instance name, labels)
    fn containers(&self) -> anyhow::Result<Vec<(String, BTreeMap<String, String>)>> {
        match (&self.labels, &self.containers) {
            (Some(l), None) => Ok(vec![(self.name.clone(), l.clone())]),
            (None, Some(cs)) if !cs.is_empty() => Ok(cs
                .iter()
                .map(|c| (c.name.clone(), c.labels.clone()))
                .collect()),
            _ => bail!(
                "set {}: give either `labels` or a non-empty `containers`",
                self.name
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Known {
    differences: BTreeMap<String, String>,
}

fn load_corpus() -> anyhow::Result<Vec<LabelSet>> {
    let file = workspace_root().join("tests/labels/corpus.toml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let c: Corpus = toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    Ok(c.set)
}

fn load_known() -> anyhow::Result<BTreeMap<String, String>> {
    let file = workspace_root().join("tests/labels/known-differences.toml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let k: Known = toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    Ok(k.differences)
}

/// Traefik's `provider.Normalize`: runs of non-alphanumerics become `-`.
fn docker_normalize(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The router / service / middleware name a label key defines, if any:
/// `traefik.<proto>.<kind>.<name>.…` (case-insensitive root and kinds).
fn defined_name(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.splitn(5, '.').collect();
    if parts.len() < 5 || !parts[0].eq_ignore_ascii_case("traefik") {
        return None;
    }
    let proto = parts[1].to_ascii_lowercase();
    let kind = parts[2].to_ascii_lowercase();
    let ok_proto = ["http", "tcp", "udp"].contains(&proto.as_str());
    let ok_kind = ["routers", "services", "middlewares"].contains(&kind.as_str());
    (ok_proto && ok_kind).then(|| parts[3].to_ascii_lowercase())
}

/// Name (lowercase) -> set, for every container and every name a set's labels
/// define. Fails when two sets share a name.
fn owners(sets: &[LabelSet]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut seen_sets = BTreeSet::new();
    for set in sets {
        if !seen_sets.insert(set.name.clone()) {
            problems.push(format!("set name {:?} appears twice", set.name));
        }
        let mut names = BTreeSet::new();
        for (cname, labels) in set.containers()? {
            if docker_normalize(&cname) != cname {
                problems.push(format!(
                    "set {}: container name {cname:?} is not a normalised name (Traefik would call its service {:?})",
                    set.name,
                    docker_normalize(&cname)
                ));
            }
            names.insert(cname.to_ascii_lowercase());
            names.extend(labels.keys().filter_map(|k| defined_name(k)));
        }
        for n in names {
            if let Some(other) = owner.insert(n.clone(), set.name.clone()) {
                problems.push(format!(
                    "name {n:?} is used by sets {other:?} and {:?}: names must be unique across sets",
                    set.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("corpus: {}", problems.join("\n"));
    }
    Ok(owner)
}

/// Docker spelling to Nova metadata spelling: `domains[0].main` ->
/// `domains.0.main`.
fn nova_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j) if j > 0 && after[..j].bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str(&rest[..i]);
                out.push('.');
                out.push_str(&after[..j]);
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What Nova's API accepts as metadata (the lab seeds its database directly,
/// so check here what `PUT /servers/{id}/metadata` would refuse).
fn nova_metadata_ok(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= 255
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
    if !key_ok {
        return Err(format!("Nova refuses metadata key {key:?}"));
    }
    if value.chars().count() > 255 {
        return Err(format!("Nova refuses the value of {key:?}: over 255 chars"));
    }
    Ok(())
}

/// Nova tag spelling of a label: `key=value` with `%`, `,` and `/` of the
/// value written `%25`, `%2C`, `%2F` (Nova refuses `,` and `/` in tags).
fn nova_tag(key: &str, value: &str) -> String {
    let mut v = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => v.push_str("%25"),
            ',' => v.push_str("%2C"),
            '/' => v.push_str("%2F"),
            c => v.push(c),
        }
    }
    format!("{key}={v}")
}

/// What Nova's API accepts as a tag: at most 60 characters, no `,` or `/`.
fn nova_tag_ok(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.chars().count() > 60 || tag.contains([',', '/']) {
        return Err(format!(
            "Nova refuses tag {tag:?} (1-60 characters, no ',' or '/')"
        ));
    }
    Ok(())
}

/// Replaces the provider suffixes `@docker` / `@http` (followed by a
/// non-word character or the end) in `s`.
fn strip_providers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while let Some(i) = rest.find('@') {
        for p in ["@docker", "@http"] {
            if rest[i..].starts_with(p) {
                let end = i + p.len();
                let next = rest[end..].chars().next();
                if !next.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                    out.push_str(&rest[..i]);
                    rest = &rest[end..];
                    continue 'outer;
                }
            }
        }
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

/// What is compared of one rawdata entry:
/// - `provider` is dropped (docker vs http, by construction);
/// - `@docker` / `@http` suffixes are removed from every string (qualified
///   names in `service`, `middlewares`, `using`, `usedBy`, error messages);
/// - `serverStatus` is dropped: the live result of active health checks
///   against addresses nobody listens on, which depends on timing;
/// - `usedBy` / `using` are sorted (Traefik builds them from map iteration).
///
/// Server addresses are NOT normalised: each container reports as its
/// address the IPv4 its instance has in Nova, and both sides default to
/// port 80, so `http://IP:PORT` must agree exactly.
fn normalise(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(strip_providers(s)),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if k == "provider" || k == "serverStatus" {
                    continue;
                }
                let mut nv = normalise(v);
                if (k == "usedBy" || k == "using")
                    && let Value::Array(a) = &mut nv
                {
                    a.sort_by_key(|x| x.to_string());
                }
                out.insert(strip_providers(k), nv);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Per set, per side (docker, http): section -> name -> normalised entry.
type Side = BTreeMap<String, BTreeMap<String, Value>>;

fn split_by_set(raw: &Value, owner: &BTreeMap<String, String>) -> BTreeMap<String, (Side, Side)> {
    let mut out: BTreeMap<String, (Side, Side)> = BTreeMap::new();
    for section in SECTIONS {
        let Some(entries) = raw[*section].as_object() else {
            continue;
        };
        for (qualified, entry) in entries {
            let (name, provider) = qualified
                .rsplit_once('@')
                .unwrap_or((qualified.as_str(), ""));
            if provider != "docker" && provider != "http" {
                continue;
            }
            let set = owner
                .get(&name.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| UNATTRIBUTED.to_string());
            let sides = out.entry(set).or_default();
            let side = if provider == "docker" {
                &mut sides.0
            } else {
                &mut sides.1
            };
            side.entry(section.to_string())
                .or_default()
                .insert(name.to_string(), normalise(entry));
        }
    }
    out
}

fn side_json(s: &Side) -> Value {
    json!(s)
}

/// `path = value` lines of a JSON value, for a line diff.
fn flatten(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().any(|x| x.is_object()) => {
            for (i, v) in a.iter().enumerate() {
                flatten(v, &format!("{path}[{i}]"), out);
            }
        }
        _ if path.is_empty() => out.push("(nothing)".into()),
        _ => out.push(format!("{} = {v}", path.trim_start_matches('.'))),
    }
}

/// Lines only in docker's (`- docker`) and only in ours (`+ ours`).
fn diff(docker: &Value, ours: &Value) -> String {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten(docker, "", &mut a);
    flatten(ours, "", &mut b);
    let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
    let mut s = String::new();
    for l in &a {
        if !sb.contains(l) {
            s += &format!("    - docker  {l}\n");
        }
    }
    for l in &b {
        if !sa.contains(l) {
            s += &format!("    + ours    {l}\n");
        }
    }
    s
}

/// Polls rawdata until both providers' entries are there and the snapshot
/// holds still over two HTTP-provider polls.
async fn settled_rawdata(
    traefik: &Traefik,
    docker: &FakeDocker,
    host: &Host,
    instances: usize,
    deadline: Duration,
) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut last: Option<Value> = None;
    let mut state = String::new();
    while start.elapsed() < deadline {
        tokio::time::sleep(POLL_INTERVAL + Duration::from_millis(500)).await;
        let raw = match traefik.rawdata().await {
            Ok(r) => r,
            Err(e) => {
                state = format!("{e:#}");
                continue;
            }
        };
        let count = |p: &str| {
            SECTIONS
                .iter()
                .filter_map(|s| raw[*s].as_object())
                .flat_map(|m| m.keys())
                .filter(|k| k.ends_with(p))
                .count()
        };
        let (d, h) = (count("@docker"), count("@http"));
        // the host has seen every instance (its /api/instances lists them)
        let seen = match host.get("/api/instances").await {
            Ok((_, body)) => serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0),
            Err(_) => 0,
        };
        state = format!(
            "{d} docker entries, {h} http entries; docker inspected all: {}; host sees {seen} of {instances} instances",
            docker.all_inspected()
        );
        if d == 0 || h == 0 || !docker.all_inspected() || seen != instances {
            last = None;
            continue;
        }
        if last.as_ref() == Some(&raw) {
            return Ok(raw);
        }
        last = Some(raw);
    }
    bail!("Traefik's rawdata did not settle within {deadline:?}: {state}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_match_traefiks_docker_provider() -> R {
    let sets = load_corpus()?;
    let owner = owners(&sets)?;
    let known = load_known()?;
    let set_names: BTreeSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    let stale: Vec<&String> = known
        .keys()
        .filter(|k| !set_names.contains(k.as_str()) && *k != UNATTRIBUTED)
        .collect();
    if !stale.is_empty() {
        bail!("known-differences.toml names sets the corpus lacks: {stale:?}");
    }

    // the same labels on containers and on instances, at the same address
    let mut containers = Vec::new();
    let mut servers = Vec::new();
    let mut problems = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let i = u8::try_from(i + 1).context("over 254 sets")?;
        for (j, (name, labels)) in set.containers()?.into_iter().enumerate() {
            let j = u8::try_from(j + 1).context("over 254 containers in a set")?;
            let ip = Ipv4Addr::new(127, 77, i, j);
            let mut spec = ServerSpec::new(&name).fixed(ip);
            for (k, v) in &labels {
                spec = match set.nova {
                    Spelling::Metadata => {
                        let key = nova_key(k);
                        if let Err(e) = nova_metadata_ok(&key, v) {
                            problems.push(format!("set {}: {e}", set.name));
                        }
                        spec.meta(&key, v)
                    }
                    Spelling::Tags => {
                        let tag = nova_tag(k, v);
                        if let Err(e) = nova_tag_ok(&tag) {
                            problems.push(format!("set {}: {e}", set.name));
                        }
                        spec.tag(&tag)
                    }
                };
            }
            servers.push(spec);
            containers.push(Container::new(&name, ip, labels.into_iter().collect()));
        }
    }
    if !problems.is_empty() {
        bail!("corpus: {}", problems.join("\n"));
    }

    let lab = shared_lab();
    let dir = run_dir("labels");
    let project = lab.project("labels-diff")?;
    lab.seed(&project, &servers)?;
    let docker = FakeDocker::start(containers).await?;

    let default_rule = format!("Host(`{{{{ .Name }}}}.{DOMAIN}`)");
    let mut routes = toml::Table::new();
    routes.insert("default_rule".into(), default_rule.clone().into());
    routes.insert("exposed_by_default".into(), true.into());
    routes.insert("address".into(), "fixed".into());
    routes.insert("default_port".into(), 80.into());
    routes.insert("statuses".into(), toml::Value::Array(vec!["ACTIVE".into()]));
    let opts = HostOptions::new(project, routes);
    let extra = json!({
        // routers without entrypoints go to web + websecure only, never to
        // the API's entrypoint (a TCP router there would take it over)
        "entryPoints": {
            "web": {"asDefault": true},
            "websecure": {"asDefault": true},
            "udp": {"address": format!("127.0.0.1:{}/udp", free_port())},
        },
        "providers": {
            "docker": {
                "endpoint": docker.endpoint(),
                "exposedByDefault": true,
                "watch": false,
                "defaultRule": default_rule,
            },
        },
    });
    let traefik_bin = lab.prepared.traefik.clone();
    let (host, traefik) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || -> anyhow::Result<(Host, Traefik)> {
            let host = Host::start(lab, &dir.join("host"), &opts)?;
            let traefik = Traefik::start_with(
                &traefik_bin,
                &dir.join("traefik"),
                Ports::free(),
                &host.url("/traefik"),
                None,
                extra,
            )?;
            Ok((host, traefik))
        }
    })
    .await??;

    let logs = || {
        format!(
            "--- host log ({}):\n{}\n--- traefik log ({}):\n{}\n--- fake docker requests: {:?}",
            host.dir.display(),
            host.log_tail(30),
            traefik.dir.display(),
            traefik.log_tail(30),
            docker.requests()
        )
    };
    let instances = servers.len();
    let raw =
        match settled_rawdata(&traefik, &docker, &host, instances, Duration::from_secs(60)).await {
            Ok(r) => r,
            Err(e) => bail!("{e:#}\n{}", logs()),
        };
    let unknown = docker.unknown_requests();
    if !unknown.is_empty() {
        bail!(
            "Traefik called endpoints the fake Docker API does not serve: {unknown:?}\n{}",
            logs()
        );
    }
    std::fs::write(
        dir.join("rawdata.json"),
        serde_json::to_string_pretty(&raw)?,
    )?;
    std::fs::write(
        dir.join("docker-requests.txt"),
        docker.requests().join("\n") + "\n",
    )?;
    // the host's view (its diagnostics say why a label was refused)
    for (path, file) in [
        ("/api/instances", "instances.json"),
        ("/traefik", "dynamic.json"),
    ] {
        if let Ok((_, body)) = host.get(path).await {
            std::fs::write(dir.join(file), body)?;
        }
    }

    let by_set = split_by_set(&raw, &owner);
    let mut report = String::new();
    let mut differing = BTreeSet::new();
    let empty = (Side::new(), Side::new());
    let mut order: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    order.push(UNATTRIBUTED);
    for name in order {
        let (d, h) = by_set.get(name).unwrap_or(&empty);
        let (dj, hj) = (side_json(d), side_json(h));
        if dj != hj {
            differing.insert(name.to_string());
            report += &format!(
                "{name}{}\n{}",
                known
                    .get(name)
                    .map(|r| format!("  (known: {r})"))
                    .unwrap_or_default(),
                diff(&dj, &hj)
            );
        }
    }
    let report_file = dir.join("report.txt");
    std::fs::write(&report_file, &report)?;
    println!(
        "{} label sets, {} differ from Traefik's docker provider ({} known); report: {}",
        sets.len(),
        differing.len(),
        known.len(),
        report_file.display()
    );

    let unexpected: Vec<&String> = differing
        .iter()
        .filter(|s| !known.contains_key(*s))
        .collect();
    let fixed: Vec<&String> = known.keys().filter(|s| !differing.contains(*s)).collect();
    let mut failure = String::new();
    if !unexpected.is_empty() {
        failure += "label sets that differ from Traefik's docker provider (- docker, + ours):\n";
        for s in &unexpected {
            let (d, h) = by_set.get(s.as_str()).unwrap_or(&empty);
            failure += &format!("{s}\n{}", diff(&side_json(d), &side_json(h)));
        }
    }
    if !fixed.is_empty() {
        failure += &format!(
            "listed in tests/labels/known-differences.toml but now the same as Traefik's: {fixed:?} (remove them from the list)\n"
        );
    }
    if !failure.is_empty() {
        bail!(
            "{failure}full report: {}; rawdata: {}",
            report_file.display(),
            dir.join("rawdata.json").display()
        );
    }
    Ok(())
}

#[test]
fn nova_spelling_of_indexed_keys() {
    assert_eq!(
        nova_key("traefik.http.routers.r.tls.domains[0].main"),
        "traefik.http.routers.r.tls.domains.0.main"
    );
    assert_eq!(
        nova_key("traefik.http.services.s.weighted.services[12].name"),
        "traefik.http.services.s.weighted.services.12.name"
    );
    assert_eq!(nova_key("a[x].b[]"), "a[x].b[]");
    assert_eq!(
        nova_tag("traefik.http.routers.r.entrypoints", "web,websecure"),
        "traefik.http.routers.r.entrypoints=web%2Cwebsecure"
    );
    assert_eq!(nova_tag("k", "/100%"), "k=%2F100%25");
    assert!(nova_tag_ok("a=b%2Cc").is_ok());
    assert!(nova_tag_ok("a=b,c").is_err());
    assert!(nova_tag_ok(&"x".repeat(61)).is_err());
    assert_eq!(strip_providers("foo@docker"), "foo");
    assert_eq!(
        strip_providers("a@http, b@httpx, api@internal"),
        "a, b@httpx, api@internal"
    );
    assert_eq!(docker_normalize("/my_app.1"), "my-app-1");
}

#[test]
fn corpus_names_must_not_collide() {
    let corpus: Corpus = toml::from_str(
        r#"
        [[set]]
        name = "one"
        about = "x"
        [set.labels]
        "traefik.http.routers.Shared.rule" = "Host(`a`)"
        [[set]]
        name = "two"
        about = "y"
        [set.labels]
        "traefik.tcp.services.shared.loadbalancer.server.port" = "1"
        "#,
    )
    .expect("corpus");
    let e = owners(&corpus.set).expect_err("a collision");
    assert!(
        e.to_string()
            .contains(r#"name "shared" is used by sets "one" and "two""#),
        "{e}"
    );
    // and the checked-in corpus is fine
    owners(&load_corpus().expect("corpus.toml")).expect("unique names");
}
