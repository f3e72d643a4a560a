//! The binary's commands as an operator runs them.

mod support;

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
    assert!(shown.contains("module: built-in (routes@0.1.0"), "{shown}");
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
