//! `wasi:cli/run`, so the stock `wasmtime run policy.wasm < case.json` runs
//! the policy without the host: a case (see `input`) on stdin, the result as
//! JSON on stdout, a message on stderr and a failing exit for bad input.
//!
//! Only the `run` interface is declared here; stdin, stdout and stderr come
//! through Rust's std, which imports the WASI interfaces it needs itself.

wit_bindgen::generate!({
    inline: r#"
        package traefik-openstack:command;

        package wasi:cli@0.2.6 {
            interface run {
                run: func() -> result;
            }
        }

        world run-command {
            export wasi:cli/run@0.2.6;
        }
    "#,
    world: "traefik-openstack:command/run-command",
});

use std::io::{Read, Write};

struct Command;

impl exports::wasi::cli::run::Guest for Command {
    fn run() -> Result<(), ()> {
        // First, before anything allocates: std's stdin reads get buffers
        // that wasi-libc frees with its own `free` (see `wasm_alloc`).
        crate::wasm_alloc::system_only();
        let printed = run_case().and_then(|doc| {
            let mut out = std::io::stdout().lock();
            out.write_all(doc.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("writing stdout: {e}"))
        });
        printed.map_err(|message| {
            eprintln!("traefik-openstack-guest: {message}");
        })
    }
}

/// The result document, pretty-printed, for the case on stdin.
fn run_case() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the case from stdin: {e}"))?;
    let case = crate::input::parse_case(&text).map_err(|e| e.to_string())?;
    let output = crate::generate(&case.settings, &case.instances)
        .map_err(|e| format!("settings rejected: {e}"))?;
    let doc = crate::input::output_json(&output)?;
    serde_json::to_string_pretty(&doc)
        .map(|s| s + "\n")
        .map_err(|e| format!("serializing the result: {e}"))
}

export!(Command);
