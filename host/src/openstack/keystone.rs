//! Keystone v3: the token request and what its answer tells us (token,
//! lifetime, catalog).

use std::time::{Duration, SystemTime};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Error;
use super::clouds::{AppCredentialRef, CloudConfig, Credentials, Domain, Named};

/// `POST` target for a token: `auth_url` may or may not end in `/v3`.
pub(crate) fn tokens_url(auth_url: &str) -> Result<Url, Error> {
    let base = auth_url.trim_end_matches('/');
    let base = base.strip_suffix("/v2.0").unwrap_or(base);
    let v3 = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    Url::parse(&v3).map_err(|e| Error::Config(format!("auth_url {auth_url:?}: {e}")))
}

/// The JSON body of `POST /v3/auth/tokens`. It holds the secret: never log
/// it, never put it in an error.
pub(crate) fn auth_body(credentials: &Credentials) -> Value {
    fn domain(d: &Domain) -> Value {
        match d {
            Domain::Id(id) => json!({ "id": id }),
            Domain::Name(name) => json!({ "name": name }),
        }
    }
    fn named(n: &Named) -> Value {
        match n {
            Named::Id(id) => json!({ "id": id }),
            Named::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
        }
    }
    match credentials {
        Credentials::Password {
            user,
            password,
            project,
        } => {
            let mut user = named(user);
            user["password"] = json!(password.expose_secret());
            json!({ "auth": {
                "identity": { "methods": ["password"], "password": { "user": user } },
                "scope": { "project": named(project) },
            }})
        }
        Credentials::ApplicationCredential { credential, secret } => {
            let mut cred = match credential {
                AppCredentialRef::Id(id) => json!({ "id": id }),
                AppCredentialRef::Name { name, user } => {
                    json!({ "name": name, "user": named(user) })
                }
            };
            cred["secret"] = json!(secret.expose_secret());
            json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": cred,
            }}})
        }
    }
}

/// A scoped token and what came with it.
#[derive(Debug)]
pub(crate) struct Token {
    pub(crate) value: SecretString,
    /// On the local clock: when to stop using it.
    pub(crate) valid_until: SystemTime,
    pub(crate) project_id: String,
    pub(crate) catalog: Catalog,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenFields,
}

#[derive(Deserialize)]
struct TokenFields {
    expires_at: String,
    issued_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogService>,
    project: Option<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Reads Keystone's 201 answer. `received` is the local time of the answer:
/// the token's lifetime (`expires_at - issued_at`) is counted from it, so a
/// Keystone clock ahead of or behind ours does not matter.
pub(crate) fn parse_token(
    subject_token: Option<&str>,
    body: &[u8],
    received: SystemTime,
) -> Result<Token, String> {
    let value = subject_token
        .filter(|t| !t.is_empty())
        .ok_or("no X-Subject-Token header")?;
    let body: TokenBody = serde_json::from_slice(body).map_err(|e| format!("token body: {e}"))?;
    let t = body.token;
    let expires = parse_time(&t.expires_at).ok_or("token expires_at is not a time")?;
    let lifetime = match t.issued_at.as_deref().and_then(parse_time) {
        Some(issued) => expires.duration_since(issued).unwrap_or_default(),
        None => expires.duration_since(received).unwrap_or_default(),
    };
    let project_id = t
        .project
        .map(|p| p.id)
        .ok_or("the token is not scoped to a project")?;
    Ok(Token {
        value: SecretString::from(value),
        valid_until: received + lifetime,
        project_id,
        catalog: Catalog(t.catalog),
    })
}

/// Keystone and Nova times: RFC 3339, with or without fraction or `Z`.
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

/// How long before `valid_until` a token is replaced, so a request never
/// leaves with a token that expires on the way.
pub(crate) fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CatalogService {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Endpoint {
    pub(crate) interface: String,
    pub(crate) region: Option<String>,
    pub(crate) region_id: Option<String>,
    pub(crate) url: String,
}

#[derive(Debug)]
pub(crate) struct Catalog(pub Vec<CatalogService>);

impl Catalog {
    /// The endpoint of `kind` for `interface`, in `region` when one is set.
    pub(crate) fn endpoint(
        &self,
        kind: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Result<Url, Error> {
        let in_region = |e: &Endpoint| {
            region
                .is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r))
        };
        let matching: Vec<&Endpoint> = self
            .0
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| &s.endpoints)
            .filter(|e| e.interface == interface && in_region(e))
            .collect();
        // Without a region, the catalog's order would choose, and it may
        // differ from one token to the next: a changes-since listing of
        // another region merged into this one's picture. (Regions that
        // give the same URL, aliases, leave nothing to choose.)
        let mut urls: Vec<&str> = matching.iter().map(|e| e.url.as_str()).collect();
        urls.sort_unstable();
        urls.dedup();
        let mut regions: Vec<&str> = matching
            .iter()
            .filter_map(|e| e.region_id.as_deref().or(e.region.as_deref()))
            .collect();
        regions.sort_unstable();
        regions.dedup();
        if region.is_none() && urls.len() > 1 && regions.len() > 1 {
            return Err(Error::Catalog(format!(
                "{kind} is offered in several regions ({}): set the cloud's region_name",
                regions.join(", ")
            )));
        }
        match matching.first() {
            Some(e) => match Url::parse(&e.url) {
                // Requests go there with the token, and the URLs of
                // listings are built on its path.
                Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
                Ok(_) => Err(Error::Catalog(format!(
                    "{kind} endpoint {:?}: not an http or https URL",
                    e.url
                ))),
                Err(err) => Err(Error::Catalog(format!(
                    "{kind} endpoint {:?}: {err}",
                    e.url
                ))),
            },
            None => {
                let region = region
                    .map(|r| format!(" in region {r}"))
                    .unwrap_or_default();
                Err(Error::Catalog(format!(
                    "no {kind} endpoint for interface {interface}{region}; the catalog has: {}",
                    self.summary()
                )))
            }
        }
    }

    /// "compute public RegionOne, network internal RegionOne, ...".
    fn summary(&self) -> String {
        let all: Vec<String> = self
            .0
            .iter()
            .flat_map(|s| {
                s.endpoints.iter().map(move |e| {
                    let region = e
                        .region_id
                        .as_deref()
                        .or(e.region.as_deref())
                        .unwrap_or("-");
                    format!("{} {} {}", s.kind, e.interface, region)
                })
            })
            .collect();
        if all.is_empty() {
            "nothing (is the token scoped to a project?)".into()
        } else {
            all.join(", ")
        }
    }
}

/// Who and where, for [`super::OpenStack::describe`].
pub(crate) fn describe(cloud: &CloudConfig) -> String {
    format!(
        "cloud {}, region {}, auth {} as {}",
        cloud.name,
        cloud.region.as_deref().unwrap_or("(any)"),
        cloud.auth_url,
        cloud.identity()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::testing::fake_cloud::fixture(&format!("keystone/{name}"))
    }

    #[test]
    fn tokens_url_with_or_without_v3() {
        for url in [
            "http://k:5000",
            "http://k:5000/",
            "http://k:5000/v3",
            "http://k:5000/v3/",
            "http://k:5000/v2.0",
        ] {
            assert_eq!(
                tokens_url(url).unwrap().as_str(),
                "http://k:5000/v3/auth/tokens"
            );
        }
        assert_eq!(
            tokens_url("https://cloud/identity").unwrap().as_str(),
            "https://cloud/identity/v3/auth/tokens"
        );
    }

    #[test]
    fn lifetime_counts_from_local_receipt() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let t = parse_token(
            Some("tok"),
            &fixture("token-password-project-scoped.json"),
            now,
        )
        .unwrap();
        // issued 01:58:43.578929, expires 02:58:43.578887: one hour less 42µs.
        let lifetime = t.valid_until.duration_since(now).unwrap();
        assert!(lifetime > Duration::from_secs(3599) && lifetime <= Duration::from_secs(3600));
        assert_eq!(t.project_id, "a6944d763bf64ee6a275f1263fae0352");
        assert!(parse_token(None, &fixture("token-password-project-scoped.json"), now).is_err());
    }

    #[test]
    fn catalog_selects_by_type_interface_and_region() {
        let now = SystemTime::now();
        let t = parse_token(
            Some("tok"),
            &fixture("token-password-project-scoped.json"),
            now,
        )
        .unwrap();
        let c = &t.catalog;
        assert_eq!(
            c.endpoint("compute", "public", Some("RegionOne"))
                .unwrap()
                .as_str(),
            "http://23.253.248.171:8774/v2.1/a6944d763bf64ee6a275f1263fae0352"
        );
        assert_eq!(
            c.endpoint("network", "internal", None).unwrap().as_str(),
            "http://23.253.248.171:9696/"
        );
        let err = c
            .endpoint("compute", "public", Some("RegionTwo"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "no compute endpoint for interface public in region RegionTwo; the catalog has: "
            ) && err.contains("compute public RegionOne"),
            "{err}"
        );
    }

    #[test]
    fn without_a_region_a_catalog_of_several_is_refused() {
        let endpoint = |region: &str| Endpoint {
            interface: "public".into(),
            region: Some(region.into()),
            region_id: Some(region.into()),
            url: format!("http://nova.{region}:8774/v2.1"),
        };
        let catalog = Catalog(vec![CatalogService {
            kind: "compute".into(),
            endpoints: vec![endpoint("RegionTwo"), endpoint("RegionOne")],
        }]);
        let err = catalog
            .endpoint("compute", "public", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("several regions (RegionOne, RegionTwo): set the cloud's region_name"),
            "{err}"
        );
        assert_eq!(
            catalog
                .endpoint("compute", "public", Some("RegionOne"))
                .unwrap()
                .host_str(),
            Some("nova.regionone")
        );
        // Two names for one endpoint leave nothing to choose.
        let alias = Endpoint {
            url: "http://nova.RegionOne:8774/v2.1".into(),
            ..endpoint("RegionOneAlias")
        };
        let catalog = Catalog(vec![CatalogService {
            kind: "compute".into(),
            endpoints: vec![endpoint("RegionOne"), alias],
        }]);
        assert!(catalog.endpoint("compute", "public", None).is_ok());
    }

    /// Found writing the `keystone_token` fuzz target: a catalog URL with no
    /// path (`a:b`) made building the servers and floating IP URLs panic.
    #[test]
    fn catalog_endpoints_must_be_http() {
        for (url, ok) in [
            ("http://nova:8774/v2.1", true),
            ("https://nova/compute/v2.1", true),
            ("a:b", false),
            ("mailto:nova@example.com", false),
            ("file:///etc/passwd", false),
        ] {
            let catalog = Catalog(vec![CatalogService {
                kind: "compute".into(),
                endpoints: vec![Endpoint {
                    interface: "public".into(),
                    region: None,
                    region_id: None,
                    url: url.into(),
                }],
            }]);
            match catalog.endpoint("compute", "public", None) {
                Ok(endpoint) => {
                    assert!(ok, "{url}");
                    let query = super::super::nova::ServerQuery {
                        all_projects: false,
                        changes_since: None,
                        page_size: 10,
                    };
                    let _ = super::super::nova::servers_detail_url(&endpoint, &query, None);
                    let _ = super::super::neutron::resource_url(&endpoint, "ports");
                }
                Err(e) => {
                    assert!(!ok, "{url}");
                    assert!(e.to_string().contains("not an http or https URL"), "{e}");
                }
            }
        }
    }

    #[test]
    fn auth_bodies_match_keystone_samples() {
        use crate::openstack::clouds::*;
        let password = auth_body(&Credentials::Password {
            user: Named::Id("ee4dfb6e5540447cb3741905149d9b6e".into()),
            password: "devstacker".into(),
            project: Named::Name {
                name: "admin".into(),
                domain: Domain::Id("default".into()),
            },
        });
        let sample: Value =
            serde_json::from_slice(&fixture("request-password-project-name.json")).unwrap();
        assert_eq!(password, sample);
        let app = auth_body(&Credentials::ApplicationCredential {
            credential: AppCredentialRef::Id("423f19a4ac1e4f48bbb4180756e6eb6c".into()),
            secret: "rEaqvJka48mpv".into(),
        });
        let sample: Value =
            serde_json::from_slice(&fixture("request-application-credential-id.json")).unwrap();
        assert_eq!(app, sample);
    }
}
