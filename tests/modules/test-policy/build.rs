//! The `future-version` variant speaks the workspace contract (`wit/`) under
//! a version this host does not accept: the contract is read from `wit/`
//! and only its package version is changed, into `OUT_DIR/wit-future/`.

use std::path::PathBuf;

const VERSION: &str = "@0.1.1;";
const FUTURE: &str = "@0.2.0;";

fn main() {
    let contract = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../../../wit/routes.wit");
    println!("cargo:rerun-if-changed={}", contract.display());
    let text = std::fs::read_to_string(&contract)
        .unwrap_or_else(|e| panic!("{}: {e}", contract.display()));
    let package = text
        .lines()
        .find(|l| l.starts_with("package "))
        .expect("wit/routes.wit declares its package");
    assert!(
        package.ends_with(VERSION),
        "wit/routes.wit is no longer {VERSION}: move FUTURE past it ({package})"
    );
    let future = text.replacen(package, &package.replace(VERSION, FUTURE), 1);
    let dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("wit-future");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("routes.wit"), future).unwrap();
}
