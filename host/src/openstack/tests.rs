//! The client against the fake cloud: the token's life (reuse, renewal,
//! 401), redirects, pagination that cycles, microversions, the body cap and
//! finding the cloud in clouds.yaml.

use std::sync::Arc;
use std::time::Duration;

use super::clouds::CaBundle;
use super::nova::{Listing, ServerQuery};
use super::{Error, Lookup, OpenStack, Tally};
use crate::config::OpenStackConfig;
use crate::metrics::Metrics;
use crate::testing::fake_cloud::{Canned, FakeCloud, PASSWORD, PROJECT, server, servers};

fn client(fake: &FakeCloud) -> OpenStack {
    OpenStack::new(
        fake.cloud_config(),
        Duration::from_millis(500),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

/// One full listing of the project's servers, `page_size` a page.
async fn list_paged(client: &OpenStack, page_size: u32) -> Result<(Listing, Tally), Error> {
    let query = ServerQuery {
        all_projects: false,
        changes_since: None,
        page_size,
    };
    let mut tally = Tally::default();
    let listing = client.list_servers(&query, &mut tally).await?;
    Ok((listing, tally))
}

async fn list(client: &OpenStack) -> Result<(Listing, Tally), Error> {
    list_paged(client, 1000).await
}

#[tokio::test]
async fn token_reused_renewed_when_expiring_and_after_401() {
    let fake = FakeCloud::start().await;
    fake.set_servers(servers(5));
    let client = client(&fake);
    list(&client).await.unwrap();
    list(&client).await.unwrap();
    assert_eq!(fake.with(|s| s.tokens_issued), 1);

    // Revoked: 401, one new token, the request is retried.
    fake.revoke_tokens();
    fake.take_requests();
    let (_, tally) = list(&client).await.unwrap();
    assert_eq!(tally.requests, 3);
    let paths: Vec<String> = fake.take_requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths[1] == "/v3/auth/tokens" && paths[2].ends_with("/servers/detail"),
        "{paths:?}"
    );
    assert_eq!(fake.with(|s| s.tokens_issued), 2);

    // A token about to expire is replaced before use.
    fake.with(|s| s.token_lifetime = Duration::from_millis(500));
    fake.revoke_tokens();
    list(&client).await.unwrap(); // 401 -> token 3, short-lived
    list(&client).await.unwrap(); // token 3 expiring -> token 4 up front
    let reqs = fake.take_requests();
    assert_eq!(fake.with(|s| s.tokens_issued), 4);
    assert_eq!(
        reqs.last().unwrap().headers["x-auth-token"],
        "gAAAAA-token-4"
    );
    assert_eq!(
        reqs.iter().filter(|r| r.path == "/v3/auth/tokens").count(),
        2
    );
}

#[tokio::test]
async fn a_service_refusing_fresh_tokens_is_an_auth_error() {
    let fake = FakeCloud::start().await;
    fake.set_servers(servers(5));
    let client = client(&fake);
    let unauthorized = Canned::status(401, r#"{"error": {"message": "no"}}"#);
    fake.fault("/servers/detail", 0, unauthorized.clone());
    fake.fault("/servers/detail", 0, unauthorized);
    let err = list(&client).await.unwrap_err();
    assert_eq!(err.reason(), "auth", "{err}");
    assert_eq!(fake.with(|s| s.tokens_issued), 2);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_secret() {
    let fake = FakeCloud::start().await;
    let mut cloud = fake.cloud_config();
    if let super::clouds::Credentials::Password { password, .. } = &mut cloud.credentials {
        *password = "wrong-Pa55word".into();
    }
    let metrics = Arc::new(Metrics::new());
    let client = OpenStack::new(cloud, Duration::from_secs(1), metrics.clone()).unwrap();
    let err = list(&client).await.unwrap_err();
    assert_eq!(err.reason(), "auth");
    let shown = format!(
        "{err} {err:?} {client:?} {} {}",
        client.describe(),
        metrics.encode()
    );
    assert!(
        err.to_string()
            .contains("Keystone refused user admin project id"),
        "{err}"
    );
    for secret in ["wrong-Pa55word", PASSWORD, "gAAAAA"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn pagination_that_cycles_stops() {
    let fake = FakeCloud::start().await;
    fake.set_servers(servers(5));
    let client = client(&fake);
    // A Nova whose markers go a, b, a, b, ... forever.
    for n in 0..40 {
        let id = if n % 2 == 0 { "id-a" } else { "id-b" };
        let page = serde_json::json!({
            "servers": [server(id, id, "2024-01-01T00:00:00Z")],
            "servers_links": [{"href": "http://x/", "rel": "next"}],
        });
        fake.fault("/servers/detail", 0, Canned::status(200, &page.to_string()));
    }
    let err = list_paged(&client, 1).await.unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");
    assert!(err.to_string().contains("does not advance"), "{err}");
    let pages = fake
        .take_requests()
        .iter()
        .filter(|r| r.path.ends_with("/servers/detail"))
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let fake = FakeCloud::start().await;
    fake.set_servers(servers(5));
    let client = client(&fake).with_max_body(64 * 1024);
    let big = format!(r#"{{"servers": [], "pad": "{}"}}"#, "x".repeat(100_000));
    fake.fault("/servers/detail", 0, Canned::status(200, &big));
    let err = list(&client).await.unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");
    assert!(err.to_string().contains("larger than"), "{err}");
    // Normal answers still fit.
    list(&client).await.unwrap();
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_token_stays_home() {
    let fake = FakeCloud::start().await;
    let elsewhere = FakeCloud::start().await;
    fake.set_servers(servers(5));
    let client = client(&fake);
    let target = format!("{}/v2.1/{PROJECT}/servers/detail", elsewhere.base);
    fake.fault(
        "/servers/detail",
        0,
        Canned::status(302, "").header("Location", &target),
    );
    let err = list(&client).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 302"), "{err}");
    assert!(elsewhere.take_requests().is_empty());
}

#[tokio::test]
async fn microversion_follows_an_older_nova() {
    let fake = FakeCloud::start().await;
    fake.set_servers(servers(5));
    fake.with(|s| s.max_version = "2.20".into());
    list(&client(&fake)).await.unwrap();
    let reqs = fake.take_requests();
    assert_eq!(reqs[2].headers["openstack-api-version"], "compute 2.20");
}

#[tokio::test]
async fn from_lookup_reads_clouds_yaml() {
    let fake = FakeCloud::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), fake.clouds_yaml()).unwrap();
    let lookup = Lookup {
        env: [("OS_CLOUD".to_owned(), "fake".to_owned())].into(),
        search_dirs: vec![dir.path().to_owned()],
    };
    let cfg = OpenStackConfig {
        page_size: 10,
        request_timeout: Duration::from_millis(500),
        ..OpenStackConfig::default()
    };
    let client = OpenStack::from_lookup(&cfg, &lookup, Arc::new(Metrics::new())).unwrap();
    assert_eq!(
        client.describe(),
        format!(
            "cloud fake, region RegionOne, auth {}/v3 as user admin project admin",
            fake.base
        )
    );
    let (listing, _) = list_paged(&client, 10).await.unwrap();
    assert!(listing.servers.is_empty());
}

#[tokio::test]
async fn a_ca_bundle_that_cannot_be_read_is_named_by_the_key_written() {
    let fake = FakeCloud::start().await;
    for (key, path) in [("verify", "ture"), ("cacert", "/nonexistent/ca.pem")] {
        let mut cloud = fake.cloud_config();
        cloud.cacert = Some(CaBundle {
            path: path.into(),
            key,
        });
        let Err(err) = OpenStack::new(cloud, Duration::from_millis(500), Arc::new(Metrics::new()))
        else {
            panic!("{key}: an unreadable bundle was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains(&format!(": {key} {path}: cannot read")),
            "{err}"
        );
    }
}
