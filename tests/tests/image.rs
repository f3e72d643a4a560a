//! The container image, built here without a container registry
//! (`traefik/image.sh`: a static musl binary in an image FROM scratch), and
//! run under podman against the lab and a real Traefik.
//!
//! Podman, runc and musl-tools are Debian's (pinned, installed on first
//! use); podman runs rootful with runc and no default ulimits, which is
//! what works in this machine's sandbox (crun and the default ulimits fail).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use traefik_openstack_e2e::host::Container;
use traefik_openstack_e2e::scenario::Scenario;
use traefik_openstack_e2e::shared_lab;
use traefik_openstack_e2e::tools::{cargo_cyclonedx, debian};
use traefik_openstack_e2e::util::{run_dir, target_dir, workspace_root};

type R = anyhow::Result<()>;

const TAG: &str = "traefik-openstack:e2e";

fn podman(conf: &Path, args: &[&str]) -> Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", conf)
        .args(args)
        .output()
        .expect("running podman")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the image once: the tools, then `traefik/image.sh`.
fn build_image(dir: &Path) -> PathBuf {
    debian(&[
        ("podman", "4.3.1*", "podman"),
        ("runc", "1.1.5*", "runc"),
        ("musl-tools", "1.2.3*", "musl-gcc"),
        ("ca-certificates", "2023*", "update-ca-certificates"),
    ]);
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    // A release build for another target: its own directory, removed once
    // the image is built (about 2 GB the rest of the suite does not need),
    // unless IMAGE_KEEP_BUILD is set to keep it for the next run.
    let build = target_dir().join("image-build");
    let out = Command::new("sh")
        .arg(workspace_root().join("traefik/image.sh"))
        .arg(TAG)
        .env("CONTAINERS_CONF", &conf)
        .env("CARGO_TARGET_DIR", &build)
        .env("CARGO_CYCLONEDX", cargo_cyclonedx())
        .output()
        .expect("running traefik/image.sh");
    std::fs::write(dir.join("image.log"), text(&out)).unwrap();
    assert!(out.status.success(), "traefik/image.sh: {}", text(&out));
    std::fs::copy(build.join("image/sbom.cdx.json"), dir.join("sbom.cdx.json")).unwrap();
    if std::env::var_os("IMAGE_KEEP_BUILD").is_none() {
        let _ = std::fs::remove_dir_all(&build);
    }
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_without_a_registry_and_routes_the_lab_under_podman() -> R {
    let dir = run_dir("image");
    let conf = build_image(&dir);

    // FROM scratch: one layer, a non-root user, nothing but the binary's files.
    let inspect: Value = serde_json::from_slice(&podman(&conf, &["image", "inspect", TAG]).stdout)?;
    let image = &inspect[0];
    assert_eq!(image["Config"]["User"], "65532:65532", "{image}");
    assert_eq!(
        image["Config"]["Entrypoint"][0],
        "/usr/local/bin/traefik-openstack"
    );
    let size = image["Size"].as_u64().unwrap_or(0);
    assert!(size > 0 && size < 100 << 20, "image size {size} bytes");
    std::fs::write(dir.join("image-size.txt"), format!("{size}\n"))?;
    let shell = podman(
        &conf,
        &["run", "--rm", "--entrypoint", "/bin/sh", TAG, "-c", "true"],
    );
    assert!(
        !shell.status.success(),
        "a shell in the image: {}",
        text(&shell)
    );

    // The SBOM lists the crates compiled in.
    let sbom_file = dir.join("sbom.cdx.json");
    let sbom: Value = serde_json::from_str(&std::fs::read_to_string(&sbom_file)?)?;
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let names: Vec<&str> = sbom["components"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    for krate in ["wasmtime", "tokio", "hyper", "reqwest", "rustls"] {
        assert!(names.contains(&krate), "{krate} not in the SBOM: {names:?}");
    }

    // Run it: read-only root, host network, the lab's credentials mounted.
    let lab = shared_lab();
    let mut s = Scenario::new(lab, "image").await?;
    let vms = [s.vm("boxed-1", 1)?, s.vm("boxed-2", 2)?];
    s.seed(&vms)?;
    let mut opts = s.options(s.plain_routes());
    opts.container = Some(Container {
        image: TAG.into(),
        containers_conf: conf.clone(),
    });
    s.start(&opts)?;
    s.wait_reaches(&Scenario::fqdn("boxed-1"), "boxed-1").await;
    s.wait_reaches(&Scenario::fqdn("boxed-2"), "boxed-2").await;

    // Its health check works without a shell or curl in the image.
    let host = s.host();
    let name = format!("traefik-openstack-e2e-{}", host.port);
    let config = host.config_file.display().to_string();
    let health = podman(
        &conf,
        &[
            "exec",
            &name,
            "/usr/local/bin/traefik-openstack",
            "healthcheck",
            "--config",
            &config,
        ],
    );
    assert!(health.status.success(), "healthcheck: {}", text(&health));
    Ok(())
}
