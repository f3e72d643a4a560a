//! Nova: microversion negotiation and the paginated `GET /servers/detail`
//! (what a server becomes is the guest library's `input::NovaServer`).

use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::{Error, OpenStack, Service, Tally};

/// A compute API microversion, `2.47` is `Microversion(2, 47)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Microversion(pub u16, pub u16);

impl Microversion {
    /// The newest this client has been checked against.
    pub(crate) const CLIENT_MAX: Microversion = Microversion(2, 100);

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The version to speak, from a version document (`{"version": ..}` of
/// `/v2.1/`, or `{"versions": [..]}` of `/`): the highest both sides know.
/// `Ok(None)`: the cloud only has the legacy 2.0 API (no microversions).
pub(crate) fn negotiate(document: &Value) -> Result<Option<Microversion>, String> {
    let candidates: Vec<&Value> = match (document.get("version"), document.get("versions")) {
        (Some(v), _) => vec![v],
        (None, Some(Value::Array(vs))) => vs.iter().collect(),
        _ => return Err("no \"version\" or \"versions\" in the version document".into()),
    };
    let field = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .and_then(Microversion::parse)
    };
    // The 2.1 API is the one with microversions; prefer it, whatever its status.
    let v21 = candidates
        .iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some("v2.1"))
        .or_else(|| candidates.iter().find(|v| field(v, "version").is_some()));
    let Some(v21) = v21 else {
        return Ok(None);
    };
    let (Some(server_max), server_min) = (field(v21, "version"), field(v21, "min_version")) else {
        return Ok(None);
    };
    if let Some(min) = server_min
        && min > Microversion::CLIENT_MAX
    {
        return Err(format!(
            "Nova needs at least microversion {min}; this client knows up to {}",
            Microversion::CLIENT_MAX
        ));
    }
    Ok(Some(server_max.min(Microversion::CLIENT_MAX)))
}

/// Where the version document of a compute endpoint is: the endpoint cut
/// after its version segment (`http://nova:8774/v2.1/<project>` gives
/// `http://nova:8774/v2.1/`), or the endpoint itself.
pub(crate) fn version_document_url(endpoint: &Url) -> Url {
    let mut url = endpoint.clone();
    url.set_query(None);
    let segments: Vec<String> = endpoint
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(pos) = segments.iter().position(|s| is_version_segment(s)) {
        url.set_path(&format!("{}/", segments[..=pos].join("/")));
    }
    url
}

fn is_version_segment(s: &str) -> bool {
    s.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
    })
}

/// What to list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerQuery {
    pub(crate) all_projects: bool,
    /// Only servers changed since then, deleted ones included.
    pub(crate) changes_since: Option<SystemTime>,
    pub(crate) page_size: u32,
}

/// `GET <endpoint>/servers/detail?...`, built from the configured endpoint:
/// the host in Nova's `servers_links` may be an internal name we cannot
/// reach (or one we should not send a token to).
pub(crate) fn servers_detail_url(endpoint: &Url, query: &ServerQuery, marker: Option<&str>) -> Url {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.path_segments_mut()
        .expect("http endpoints have paths")
        .pop_if_empty()
        .extend(["servers", "detail"]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("limit", &query.page_size.to_string());
        if let Some(marker) = marker {
            q.append_pair("marker", marker);
        }
        if query.all_projects {
            q.append_pair("all_tenants", "1");
        }
        if let Some(since) = query.changes_since {
            // A `Date` or `updated` at the epoch (a broken proxy) less the
            // margin is before it, which the formatter cannot print.
            let since = since.max(SystemTime::UNIX_EPOCH);
            q.append_pair(
                "changes-since",
                &humantime::format_rfc3339_seconds(since).to_string(),
            );
        }
    }
    url
}

/// One server of `/servers/detail`: the guest library's reading of it, so
/// that a live listing and an offline Nova body map the same way.
pub(crate) use traefik_openstack_guest::input::NovaServer;

#[derive(Deserialize)]
struct ServersPage {
    servers: Vec<NovaServer>,
    #[serde(default)]
    servers_links: Vec<Link>,
}

#[derive(Deserialize)]
struct Link {
    rel: String,
}

/// One page of `/servers/detail`: its servers, and whether a next page
/// follows.
pub(crate) fn parse_servers_page(body: &[u8]) -> Result<(Vec<NovaServer>, bool), String> {
    let page: ServersPage =
        serde_json::from_slice(body).map_err(|e| format!("servers page: {e}"))?;
    let has_next = page.servers_links.iter().any(|l| l.rel == "next");
    Ok((page.servers, has_next))
}

/// A listing longer than this is a Nova paging without end, not a cloud.
const MAX_SERVERS: usize = 2_000_000;

/// A complete listing, collected (the tests' view).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) servers: Vec<NovaServer>,
}

impl OpenStack {
    /// The microversion to speak, negotiated once per client.
    pub(crate) async fn compute_microversion(
        &self,
        tally: &mut Tally,
    ) -> Result<Option<Microversion>, Error> {
        let mut cached = self.inner.compute_version.lock().await;
        if let Some(version) = *cached {
            return Ok(version);
        }
        let endpoint = self.endpoint(Service::Compute, tally).await?;
        let url = version_document_url(&endpoint);
        let reply = self.get(Service::Compute, &url, None, tally).await?;
        let malformed = |message: String| Error::Malformed {
            service: Service::Compute,
            message,
        };
        let document: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| malformed(format!("version document {url}: {e}")))?;
        let version = negotiate(&document).map_err(malformed)?;
        tracing::info!(
            microversion = %version.map_or("2.0".into(), |v| v.to_string()),
            "negotiated the compute API version"
        );
        *cached = Some(version);
        Ok(version)
    }

    /// Every page of `/servers/detail` for `query`. Any page failing fails
    /// the whole listing: half a listing is not a picture of the cloud.
    /// Every server of the listing, collected (the tests' view).
    #[cfg(test)]
    pub(crate) async fn list_servers(
        &self,
        query: &ServerQuery,
        tally: &mut Tally,
    ) -> Result<Listing, Error> {
        let mut servers: Vec<NovaServer> = Vec::new();
        self.list_servers_paged(query, tally, |page| servers.extend(page))
            .await?;
        Ok(Listing { servers })
    }

    /// Every page of servers, handed to `fold` as it arrives, so that a
    /// listing of 100,000 servers is never held whole; returns Nova's clock
    /// when the listing started (`Date` of the first page, less its round
    /// trip).
    pub(crate) async fn list_servers_paged(
        &self,
        query: &ServerQuery,
        tally: &mut Tally,
        mut fold: impl FnMut(Vec<NovaServer>),
    ) -> Result<Option<SystemTime>, Error> {
        let microversion = self.compute_microversion(tally).await?;
        let endpoint = self.endpoint(Service::Compute, tally).await?;
        let mut listed = 0usize;
        let mut started = None;
        let mut marker: Option<String> = None;
        // Every marker used so far: a Nova going a, b, a, ... would
        // otherwise be listed forever.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let stuck = |message: String| Error::Malformed {
            service: Service::Compute,
            message,
        };
        loop {
            let url = servers_detail_url(&endpoint, query, marker.as_deref());
            let sent = Instant::now();
            let reply = self
                .get(Service::Compute, &url, microversion, tally)
                .await?;
            if marker.is_none() {
                // Nova stamps `Date` once the page is made, after it read
                // the servers: taken back by the round trip (whole seconds;
                // the changes-since margin covers the rest), it is no later
                // than that read, so a change committed meanwhile is asked
                // for again.
                let round_trip = Duration::from_secs(sent.elapsed().as_secs());
                started = reply.date().map(|d| d.checked_sub(round_trip).unwrap_or(d));
            }
            let (servers, has_next) =
                parse_servers_page(&reply.body).map_err(|message| Error::Malformed {
                    service: Service::Compute,
                    message,
                })?;
            let last = servers.last().map(|s| s.id.clone());
            listed += servers.len();
            fold(servers);
            if listed > MAX_SERVERS {
                return Err(stuck(format!(
                    "more than {MAX_SERVERS} servers in one listing"
                )));
            }
            match last {
                Some(last) if has_next => {
                    if !seen.insert(last.clone()) {
                        return Err(stuck(format!(
                            "pagination does not advance (marker {last} came back)"
                        )));
                    }
                    marker = Some(last);
                }
                _ => break,
            }
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit;

    fn fixture(name: &str) -> Value {
        serde_json::from_slice(&crate::testing::fake_cloud::fixture(&format!(
            "nova/{name}"
        )))
        .unwrap()
    }

    fn host_model(s: NovaServer, cloud: &str, region: &str) -> wit::Instance {
        wit::Instance::from_model(s.into_instance(cloud, region), &mut Default::default())
    }

    fn servers(name: &str) -> Vec<NovaServer> {
        serde_json::from_value(fixture(name)["servers"].clone()).unwrap()
    }

    #[test]
    fn negotiation_picks_the_highest_both_know() {
        let doc = fixture("version-v2.1.json"); // announces 2.104
        assert_eq!(negotiate(&doc).unwrap(), Some(Microversion(2, 100)));
        let doc = fixture("versions.json");
        assert_eq!(negotiate(&doc).unwrap(), Some(Microversion(2, 100)));
        let mut doc = fixture("version-v2.1.json");
        doc["version"]["version"] = "2.20".into();
        assert_eq!(negotiate(&doc).unwrap(), Some(Microversion(2, 20)));
        doc["version"]["version"] = "2.100".into();
        assert_eq!(negotiate(&doc).unwrap(), Some(Microversion(2, 100)));
        doc["version"]["min_version"] = "2.101".into();
        assert!(
            negotiate(&doc)
                .unwrap_err()
                .contains("at least microversion 2.101")
        );
        // Legacy: only v2.0, no microversions.
        let mut doc = fixture("versions.json");
        doc["versions"].as_array_mut().unwrap().remove(1);
        assert_eq!(negotiate(&doc).unwrap(), None);
        assert!(negotiate(&serde_json::json!({})).is_err());
        assert!(Microversion(2, 9) < Microversion(2, 10));
    }

    #[test]
    fn version_document_next_to_the_endpoint() {
        let url = |s: &str| version_document_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            url("http://nova:8774/v2.1/a6944d76"),
            "http://nova:8774/v2.1/"
        );
        assert_eq!(url("http://nova:8774/v2.1"), "http://nova:8774/v2.1/");
        assert_eq!(
            url("https://cloud/compute/v2.1/"),
            "https://cloud/compute/v2.1/"
        );
        assert_eq!(url("https://cloud/compute"), "https://cloud/compute");
    }

    #[test]
    fn servers_url_carries_the_filters() {
        let endpoint = Url::parse("http://nova:8774/v2.1/p1/").unwrap();
        let query = ServerQuery {
            all_projects: true,
            changes_since: Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000),
            ),
            page_size: 2,
        };
        assert_eq!(
            servers_detail_url(&endpoint, &query, Some("f5dc173b")).as_str(),
            "http://nova:8774/v2.1/p1/servers/detail?limit=2&marker=f5dc173b&all_tenants=1\
             &changes-since=2017-07-14T02%3A40%3A00Z"
        );
        // Before the epoch (a `Date` of 1970 less the margin): the epoch.
        let query = ServerQuery {
            changes_since: SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(5)),
            ..query
        };
        assert!(
            servers_detail_url(&endpoint, &query, None)
                .as_str()
                .ends_with("&changes-since=1970-01-01T00%3A00%3A00Z")
        );
    }

    #[test]
    fn server_maps_to_the_host_model() {
        let s = servers("servers-detail-v2.100.json").remove(0);
        assert!(!s.is_deleted() && !s.is_partial());
        let i = host_model(s, "training", "RegionOne");
        assert_eq!(&*i.id, "f5dc173b-6804-445a-a6d8-c705dad5b5eb");
        assert_eq!(&*i.name, "new-server-test");
        assert_eq!(&*i.status, "ACTIVE");
        assert_eq!(&*i.project_id, "6f70656e737461636b20342065766572");
        assert_eq!(&*i.user_id, "fake");
        assert_eq!(&*i.cloud, "training");
        assert_eq!(&*i.region, "RegionOne");
        assert_eq!(i.availability_zone.as_deref(), Some("us-west"));
        assert_eq!(i.flavor_name.as_deref(), Some("m1.tiny"));
        assert_eq!(
            i.image_id.as_deref(),
            Some("70a599e0-31e7-49b7-b260-868f441e862b")
        );
        assert_eq!(&*i.created, "2013-09-03T04:01:32Z");
        assert_eq!(i.description, None); // "" in the sample
        assert_eq!(
            i.metadata.iter().collect::<Vec<_>>(),
            [("My Server Name", "Apache1")]
        );
        assert_eq!(
            i.addresses,
            vec![wit::Address {
                network: "private".into(),
                ip: "192.168.1.30".into(),
                version: 4,
                kind: wit::AddressKind::Fixed,
                mac: Some("00:0c:29:0d:11:74".into()),
            }]
        );

        // Before 2.47 the flavor is a reference: its id stands in for a name.
        let i = host_model(servers("servers-detail-v2.1.json").remove(0), "", "");
        assert_eq!(i.flavor_name.as_deref(), Some("1"));
        let i = host_model(servers("servers-detail-v2.26-tags.json").remove(0), "", "");
        assert_eq!(i.tags, [std::sync::Arc::<str>::from("tag1"), "tag2".into()]);
    }

    #[test]
    fn boot_from_volume_deleted_and_partial_servers() {
        let mut v = fixture("servers-detail-v2.47.json")["servers"][0].clone();
        v["image"] = "".into();
        v["metadata"] = serde_json::json!({"b": "2", "a": "1"});
        let s: NovaServer = serde_json::from_value(v.clone()).unwrap();
        let i = host_model(s, "", "");
        assert_eq!(i.image_id, None);
        assert_eq!(i.flavor_name.as_deref(), Some("m1.tiny.specs"));
        assert_eq!(
            i.metadata.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2")]
        );
        v["status"] = "DELETED".into();
        v["OS-EXT-STS:vm_state"] = "deleted".into();
        assert!(
            serde_json::from_value::<NovaServer>(v)
                .unwrap()
                .is_deleted()
        );
        let partial = servers("servers-detail-v2.69-down-cell.json").remove(0);
        assert!(partial.is_partial() && !partial.is_deleted());
    }
}
