//! A route module whose behaviour is chosen at build time by a feature.

#[cfg(not(feature = "future-version"))]
wit_bindgen::generate!({ path: "../../../wit", world: "route-policy" });
// A contract from the future: the same world under a version this host does
// not accept.
#[cfg(feature = "future-version")]
wit_bindgen::generate!({ path: "wit-future", world: "route-policy" });

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
        #[cfg(feature = "wasi")]
        return Err(format!("{} env vars", std::env::vars().count()));
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

fn output(config: String, routes: Vec<InstanceRoutes>) -> Output {
    Output {
        config,
        diagnostics: vec![],
        routes,
    }
}

export!(Policy);
