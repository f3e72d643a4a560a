//! The built-in policy component also exports `wasi:cli/run`: the stock
//! wasmtime CLI (pinned, `tests/tools/install-wasmtime.sh`) runs it on a case
//! read from stdin and prints the result, without the host; the policy
//! export stays beside it. No lab needed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use traefik_openstack_e2e::host::default_module;
use traefik_openstack_e2e::tools::wasmtime_cli;
use traefik_openstack_e2e::util::workspace_root;

/// `wasmtime run <built-in> < stdin`, with no other option: no directory,
/// environment variable or network is granted.
fn run(stdin: &[u8]) -> Output {
    let mut child = Command::new(wasmtime_cli())
        .arg("run")
        .arg(default_module().expect("the built-in component"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wasmtime");
    // A policy that fails early closes stdin; that is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().expect("waiting for wasmtime")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ok_json(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wasmtime run: {}: {stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn seed_case_gives_the_golden_result() {
    let dir = workspace_root().join("guest/tests/golden/seed");
    let case = json!({
        "settings": read_json(&dir.join("settings.json")),
        "instances": read_json(&dir.join("instances.json")),
    });
    let bytes = serde_json::to_vec(&case).unwrap();
    let first = run(&bytes);
    let doc = ok_json(&first);
    let expected = read_json(&dir.join("expected.json"));
    assert!(doc["config"].is_object(), "config must be an object: {doc}");
    assert_eq!(doc["config"], expected["config"]);
    assert_eq!(doc, expected);
    // Same input, same bytes: nothing seeds from the clock or randomness.
    assert_eq!(run(&bytes).stdout, first.stdout);
}

#[test]
fn nova_servers_detail_body_and_settings_as_a_string() {
    let body = read_json(
        &workspace_root().join("host/tests/fixtures/openstack/nova/servers-detail-v2.100.json"),
    );
    let settings = r#"{"default_rule": "Host(`{{ .Name }}.example.com`)", "address": "fixed"}"#;
    let doc = ok_json(&run(&serde_json::to_vec(
        &json!({"settings": settings, "instances": body}),
    )
    .unwrap()));
    let http = &doc["config"]["http"];
    assert_eq!(
        http["routers"]["new-server-test"]["rule"], "Host(`new-server-test.example.com`)",
        "{doc}"
    );
    assert_eq!(
        http["services"]["new-server-test"]["loadBalancer"]["servers"][0]["url"],
        "http://192.168.1.30:80",
        "{doc}"
    );
    assert_eq!(
        doc["routes"],
        json!([{
            "instance_id": "f5dc173b-6804-445a-a6d8-c705dad5b5eb",
            "address": "192.168.1.30",
            "routers": ["new-server-test"],
        }])
    );
}

#[test]
fn bad_input_fails_and_names_the_formats() {
    let out = run(br#"{"settings": {}, "instances": 42}"#);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "at instances",
        "a JSON array of instances",
        r#"a Nova servers/detail body {"servers": [...]}"#,
        "line 1 column",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }

    let out = run(b"not json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("case: expected a case"));
}

#[test]
fn bad_settings_fail_and_name_the_key() {
    let out = run(br#"{"settings": {"default_rul": "Host(`x`)"}, "instances": []}"#);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("settings rejected"), "{stderr}");
    assert!(stderr.contains("default_rul"), "{stderr}");
}

/// The same file still exports the policy the host calls: the CLI's
/// `--invoke` reaches `generate` beside `wasi:cli/run`.
#[test]
fn the_policy_export_is_there_too() {
    let out = Command::new(wasmtime_cli())
        .args(["run", "--invoke", r#"generate("{}", [])"#])
        .arg(default_module().expect("the built-in component"))
        .output()
        .expect("running wasmtime");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"ok({config: "{}", diagnostics: [], routes: []})"#
    );
}
