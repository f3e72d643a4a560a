//! The binary's commands as an operator runs them.

use traefik_openstack::testing as support;

use std::process::{Command, Output};

const PASSWORD: &str = "Sup3r-s3cret-pw";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_traefik-openstack"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    let home = tempfile::tempdir().unwrap();
    // No clouds.yaml from the machine running the tests.
    cmd.env("HOME", home.path()).current_dir(home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn os_env() -> Vec<(&'static str, &'static str)> {
    vec![
        // Nothing listens there: commands that must not touch OpenStack
        // succeed anyway, the others fail fast.
        ("OS_AUTH_URL", "http://127.0.0.1:9/v3"),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", PASSWORD),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
    ]
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_validates_config_and_module_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[routes]\ndefault_rule = \"Host(`{{ .Name }}.training.example.com`)\"\n",
    )
    .unwrap();
    let out = run(&["check", "--config", config.to_str().unwrap()], &os_env());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("module: built-in (routes@0.1.1"), "{shown}");
    assert!(shown.contains("configuration ok"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[test]
fn check_refuses_unknown_keys_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[openstack]\nrefresh_intervall = \"5s\"\n").unwrap();
    let out = run(&["check", "--config", config.to_str().unwrap()], &os_env());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("config.toml"), "{shown}");
    assert!(shown.contains("refresh_intervall"), "{shown}");
}

#[test]
fn check_reports_bad_route_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[routes]\nno_such_setting = 1\n").unwrap();
    let out = run(&["check", "--config", config.to_str().unwrap()], &os_env());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("no_such_setting"), "{shown}");
}

#[test]
fn check_takes_a_module_and_refuses_a_broken_one() {
    let good = support::test_policy(None);
    let out = run(&["check", "--module", good.to_str().unwrap()], &os_env());
    assert!(out.status.success(), "{}", text(&out));
    let trap = support::test_policy(Some("trap"));
    let out = run(&["check", "--module", trap.to_str().unwrap()], &os_env());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("trapped"), "{shown}");
}

#[test]
fn render_fails_cleanly_without_leaking_the_password() {
    let out = run(&["render"], &os_env());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout on failure: {shown}"
    );
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[test]
fn errors_print_each_cause_once() {
    let out = run(&["render", "--config", "/nonexistent/t.toml"], &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("/nonexistent/t.toml"),
        "names the file: {shown}"
    );
    assert_eq!(
        shown.matches("No such file or directory").count(),
        1,
        "{shown}"
    );

    // A refused connection: reqwest's chain under our own message.
    let out = run(&["render"], &os_env());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert_eq!(shown.matches("Connection refused").count(), 1, "{shown}");
    assert_eq!(shown.matches("identity").count(), 1, "{shown}");
}

#[test]
fn logs_carry_no_colour_codes_when_not_at_a_terminal() {
    // stderr is a pipe here, as it is for a file or journald.
    let out = run(
        &["render"],
        &[os_env(), vec![("RUST_LOG", "debug")]].concat(),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() > 1, "debug logs expected: {log}");
    assert!(!log.contains('\x1b'), "ANSI escape codes in: {log}");
}

#[test]
fn json_logs_have_stable_field_names() {
    let env = [os_env(), vec![("RUST_LOG", "info")]].concat();
    let out = run(&["--log-format", "json", "render"], &env);
    let log = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!events.is_empty(), "no JSON log line in: {log}");
    for e in &events {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn without_credentials_the_error_says_what_is_missing() {
    let out = run(&["render"], &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("OS_") || shown.contains("clouds.yaml"),
        "{shown}"
    );
}

#[test]
fn the_shipped_example_configuration_checks() {
    let config = support::workspace().join("traefik/traefik-openstack.toml");
    let out = run(&["check", "--config", config.to_str().unwrap()], &os_env());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        !shown.contains("warning") && !shown.contains("error"),
        "{shown}"
    );
}

/// A copy of one of the built-in module's golden cases, to change at will.
fn golden_case(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = support::workspace().join("guest/tests/golden").join(name);
    for file in ["settings.json", "instances.json", "expected.json"] {
        std::fs::copy(from.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

#[test]
fn test_runs_the_built_in_golden_cases() {
    let golden = support::workspace().join("guest/tests/golden");
    let out = run(&["test", golden.to_str().unwrap()], &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let cases = std::fs::read_dir(&golden).unwrap().count();
    assert!(cases >= 9, "{cases}");
    assert_eq!(
        shown.lines().last(),
        Some(format!("{cases} passed, 0 failed").as_str()),
        "{shown}"
    );
    assert_eq!(shown.matches("\nok ").count() + 1, cases, "{shown}");
}

#[test]
fn test_shows_a_readable_diff_fails_and_updates() {
    let case = golden_case("seed");
    let expected = case.path().join("expected.json");
    let good = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(
        &expected,
        good.replace("student01.training", "student99.training"),
    )
    .unwrap();
    let path = case.path().to_str().unwrap();
    let out = run(&["test", path], &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("FAILED"), "{shown}");
    assert!(
        shown.contains("-          \"rule\": \"Host(`student99.training.example.com`)\",")
            && shown.contains("+          \"rule\": \"Host(`student01.training.example.com`)\","),
        "a line diff of the pretty JSON: {shown}"
    );
    assert!(shown.ends_with("0 passed, 1 failed\n"), "{shown}");

    let out = run(&["test", "--update", path], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let updated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let good: serde_json::Value = serde_json::from_str(&good).unwrap();
    assert_eq!(updated, good);
    assert!(run(&["test", path], &[]).status.success());
}

#[test]
fn test_compares_only_what_a_case_pins_and_expects_errors() {
    let case = golden_case("seed");
    std::fs::write(
        case.path().join("expected.json"),
        r#"{"config": {"http": {}}}"#,
    )
    .unwrap();
    let out = run(&["test", case.path().to_str().unwrap()], &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(!shown.contains("diagnostics"), "not pinned: {shown}");

    std::fs::write(case.path().join("settings.json"), r#"{"adress": "any"}"#).unwrap();
    std::fs::write(case.path().join("expected.json"), r#"{"error": "adress"}"#).unwrap();
    let out = run(&["test", case.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn render_runs_on_a_file_of_instances_in_either_format() {
    let seed = support::workspace().join("guest/tests/golden/seed");
    let config = tempfile::NamedTempFile::new().unwrap();
    let settings: toml::Table =
        serde_json::from_str(&std::fs::read_to_string(seed.join("settings.json")).unwrap())
            .unwrap();
    let mut file = toml::Table::new();
    file.insert("routes".into(), settings.into());
    std::fs::write(config.path(), toml::to_string(&file).unwrap()).unwrap();
    let config = config.path().to_str().unwrap();

    // No credentials at all: nothing is asked of OpenStack.
    let instances = seed.join("instances.json");
    let out = run(
        &[
            "render",
            "--config",
            config,
            "--instances",
            instances.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let config_out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed.join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(config_out, expected["config"]);

    // A Nova servers/detail body as curl returns it.
    let nova =
        support::workspace().join("host/tests/fixtures/openstack/nova/servers-detail-v2.100.json");
    let out = run(&["render", "--instances", nova.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let config_out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        config_out["http"]["routers"]
            .as_object()
            .is_some_and(|r| !r.is_empty()),
        "{config_out}"
    );
}

#[test]
fn render_says_which_instance_formats_it_expected() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "{\"servers\": [{\"id\": 7}]}").unwrap();
    let out = run(
        &["render", "--instances", file.path().to_str().unwrap()],
        &[],
    );
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(out.stdout.is_empty(), "{shown}");
    assert!(
        shown.contains(file.path().to_str().unwrap())
            && shown.contains("traefik-openstack inventory")
            && shown.contains("servers/detail")
            && shown.contains("servers[0].id"),
        "{shown}"
    );
}

#[test]
fn the_binary_allocates_with_jemalloc_as_configured() {
    // jemalloc prints its options at exit when asked; the settings in
    // main.rs must reach it (a renamed symbol would silently drop them
    // and bring back the memory figures of bench/NOTES.md's first rows).
    let out = run(&["--help"], &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    let text = text(&out);
    for option in [
        "opt.narenas: 1",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
        "opt.tcache_max: 1024",
    ] {
        assert!(
            text.contains(option),
            "{option} missing from:\n{}",
            &text[..text.len().min(4000)]
        );
    }
}
