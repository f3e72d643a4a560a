//! A route module whose behaviour is chosen at build time by a feature.

#[cfg(not(feature = "future-version"))]
wit_bindgen::generate!({ path: "../../../wit", world: "route-policy" });
// A contract from the future: the same world under a version this host does
// not accept (build.rs writes it from `wit/`).
#[cfg(feature = "future-version")]
wit_bindgen::generate!({
    path: concat!(env!("OUT_DIR"), "/wit-future"),
    world: "route-policy",
});

use exports::traefik_openstack::routes::policy::Guest;
use traefik_openstack::routes::types::{Instance, InstanceRoutes, Output};

struct Policy;

impl Guest for Policy {
    #[allow(unreachable_code, unused_variables)]
    fn generate(settings: String, instances: Vec<Instance>) -> Result<Output, String> {
        #[cfg(feature = "trap")]
        panic!("test-policy: trap on purpose");
        #[cfg(feature = "loop")]
        loop {
            std::hint::black_box(&instances);
        }
        #[cfg(feature = "memory")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        // What the host's WASI grants, reported as the settings error so a
        // test can read it: nothing but fixed clocks and seeded random.
        #[cfg(feature = "wasi")]
        return Err(wasi_probe());
        #[cfg(feature = "flood")]
        loop {
            println!("{}", "flood ".repeat(100));
        }
        #[cfg(feature = "print")]
        {
            println!("test-policy: {} instances", instances.len());
            eprintln!("test-policy: a line on stderr");
            print!("no newline at the end");
            // Line-buffered, and a reactor never exits: flush by hand.
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        #[cfg(feature = "settings-error")]
        return Err("test-policy: settings refused on purpose".into());
        #[cfg(feature = "notjson")]
        return Ok(output("this is not json".into(), vec![]));
        #[cfg(feature = "array")]
        return Ok(output("[]".into(), vec![]));

        let mut routers = Vec::new();
        let mut routes = Vec::new();
        for (n, i) in instances.iter().enumerate() {
            routers.push(format!(
                "\"swapped-{n}\":{{\"rule\":\"Host(`swapped-{n}.test`)\",\"service\":\"noop@internal\"}}"
            ));
            routes.push(InstanceRoutes {
                instance_id: i.id.clone(),
                address: None,
                routers: vec![format!("swapped-{n}")],
            });
        }
        routers.push(
            "\"swapped\":{\"rule\":\"Host(`swapped.test`)\",\"service\":\"noop@internal\"}".into(),
        );
        let config = format!("{{\"http\":{{\"routers\":{{{}}}}}}}", routers.join(","));
        Ok(output(config, routes))
    }
}

#[cfg(feature = "wasi")]
fn wasi_probe() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let denied = |r: std::io::Result<()>| if r.is_ok() { "granted" } else { "denied" };
    let file = denied(std::fs::read("/etc/passwd").map(drop));
    let dir = denied(std::fs::read_dir(".").map(drop));
    let net = denied(std::net::TcpStream::connect("127.0.0.1:80").map(drop));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // std's HashMap seeds itself from wasi:random: the same seed each run.
    let seeded = std::collections::hash_map::RandomState::new();
    let hash = std::hash::BuildHasher::hash_one(&seeded, 42u8);
    format!(
        "env={} args={} file={file} dir={dir} net={net} now={now} hash={hash:x}",
        std::env::vars().count(),
        std::env::args().count(),
    )
}

fn output(config: String, routes: Vec<InstanceRoutes>) -> Output {
    Output {
        config,
        diagnostics: vec![],
        routes,
    }
}

export!(Policy);
