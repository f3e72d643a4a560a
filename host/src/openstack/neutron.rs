//! Neutron floating IPs, for clouds whose Nova does not list them in a
//! server's `addresses` (its network info cache lags or is not kept).
//!
//! A floating IP names the port it is NAT-ed to and the fixed address on
//! it; the port's `device_id` is the server. Recent Neutron embeds the port
//! (`port_details`, extension `fip-port-details`); older ones need one ports
//! listing, whose answer is cached by the caller.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use reqwest::Url;
use serde::Deserialize;

use super::{Error, OpenStack, Service, Tally};
use crate::wit;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct FloatingIp {
    pub(crate) floating_ip_address: String,
    pub(crate) fixed_ip_address: Option<String>,
    pub(crate) port_id: Option<String>,
    pub(crate) port_details: Option<PortDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PortDetails {
    pub(crate) device_id: Option<String>,
}

#[derive(Deserialize)]
struct FloatingIps {
    floatingips: Vec<FloatingIp>,
    #[serde(default)]
    floatingips_links: Vec<Link>,
}

#[derive(Deserialize)]
struct Ports {
    ports: Vec<Port>,
    #[serde(default)]
    ports_links: Vec<Link>,
}

/// What one listing may hold: a Neutron (or a proxy) that keeps handing
/// out new markers must not hold up the refresh forever.
const MAX_ITEMS: usize = 4_000_000;

/// A page's link to the next one (Neutron pages its answers when the
/// deployment sets `pagination_max_limit`).
#[derive(Deserialize)]
struct Link {
    rel: String,
    href: String,
}

/// The marker of the next page, if there is one. Only the marker is
/// read, so a link made relative by a rewriting proxy reads as well as an
/// absolute one: it is resolved against a placeholder base.
fn next_marker(links: &[Link]) -> Result<Option<String>, String> {
    let Some(next) = links.iter().find(|l| l.rel == "next") else {
        return Ok(None);
    };
    let base = Url::parse("http://placeholder.invalid/").expect("a valid URL");
    base.join(&next.href)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "marker")
                .map(|(_, v)| v.into_owned())
        })
        .map(Some)
        .ok_or_else(|| format!("a next link without a marker: {:?}", next.href))
}

#[derive(Deserialize)]
struct Port {
    id: String,
    #[serde(default)]
    device_id: String,
}

impl FloatingIp {
    /// The port it is attached to, if any.
    pub(crate) fn port(&self) -> Option<&str> {
        self.port_id.as_deref().filter(|p| !p.is_empty())
    }

    /// The server, when Neutron embedded the port.
    pub(crate) fn embedded_device(&self) -> Option<&str> {
        self.port_details
            .as_ref()?
            .device_id
            .as_deref()
            .filter(|d| !d.is_empty())
    }
}

/// `<network endpoint>/v2.0/<resource>`; the catalog may or may not
/// include the `v2.0` segment.
pub(crate) fn resource_url(endpoint: &Url, resource: &str) -> Url {
    let mut url = endpoint.clone();
    url.set_query(None);
    let has_version = url
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        .is_some_and(|last| last == "v2.0");
    {
        let mut path = url.path_segments_mut().expect("http endpoints have paths");
        path.pop_if_empty();
        if !has_version {
            path.push("v2.0");
        }
        path.push(resource);
    }
    url
}

impl OpenStack {
    /// Floating IPs of the token's project (of every project when
    /// `all_projects`), with only the fields used.
    pub(crate) async fn list_floating_ips(
        &self,
        all_projects: bool,
        tally: &mut Tally,
    ) -> Result<Vec<FloatingIp>, Error> {
        let mut url = resource_url(
            &self.endpoint(Service::Network, tally).await?,
            "floatingips",
        );
        self.filter(
            &mut url,
            all_projects,
            &[
                "floating_ip_address",
                "fixed_ip_address",
                "port_id",
                "port_details",
            ],
            tally,
        )
        .await?;
        self.get_all(url, tally, floating_ips_page).await
    }

    /// Port id to device (server) id, from one ports listing.
    pub(crate) async fn port_devices(
        &self,
        all_projects: bool,
        tally: &mut Tally,
    ) -> Result<HashMap<String, String>, Error> {
        let mut url = resource_url(&self.endpoint(Service::Network, tally).await?, "ports");
        self.filter(&mut url, all_projects, &["id", "device_id"], tally)
            .await?;
        let ports = self.get_all(url, tally, ports_page).await?;
        Ok(ports_to_devices(ports))
    }

    /// Every page of the listing at `url`. The next page is asked for with
    /// the link's marker on the configured endpoint, as Nova's are: the
    /// link's host may be an internal name, or one the token must not go to.
    async fn get_all<T>(
        &self,
        url: Url,
        tally: &mut Tally,
        page: impl Fn(&[u8]) -> Result<(Vec<T>, Option<String>), String>,
    ) -> Result<Vec<T>, Error> {
        let mut all = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = url.clone();
        loop {
            let reply = self.get(Service::Network, &next, None, tally).await?;
            let (items, marker) = page(&reply.body).map_err(malformed)?;
            all.extend(items);
            if all.len() > MAX_ITEMS {
                return Err(malformed(format!(
                    "more than {MAX_ITEMS} entries in one listing"
                )));
            }
            let Some(marker) = marker else {
                return Ok(all);
            };
            if !seen.insert(marker.clone()) {
                return Err(malformed(format!(
                    "pagination does not advance (marker {marker} came back)"
                )));
            }
            next = url.clone();
            next.query_pairs_mut().append_pair("marker", &marker);
        }
    }

    async fn filter(
        &self,
        url: &mut Url,
        all_projects: bool,
        fields: &[&str],
        tally: &mut Tally,
    ) -> Result<(), Error> {
        let project = if all_projects {
            None
        } else {
            Some(self.project_id(tally).await?)
        };
        let mut q = url.query_pairs_mut();
        if let Some(project) = project {
            q.append_pair("project_id", &project);
        }
        for field in fields {
            q.append_pair("fields", field);
        }
        Ok(())
    }
}

fn malformed(message: String) -> Error {
    Error::Malformed {
        service: Service::Network,
        message,
    }
}

/// A floating IPs listing (one page), with only the fields used.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_floating_ips(body: &[u8]) -> Result<Vec<FloatingIp>, String> {
    floating_ips_page(body).map(|(fips, _)| fips)
}

/// A ports listing (one page): port id to device (server) id, for ports
/// on a device.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_port_devices(body: &[u8]) -> Result<HashMap<String, String>, String> {
    ports_page(body).map(|(ports, _)| ports_to_devices(ports))
}

fn floating_ips_page(body: &[u8]) -> Result<(Vec<FloatingIp>, Option<String>), String> {
    let page: FloatingIps =
        serde_json::from_slice(body).map_err(|e| format!("floating IPs: {e}"))?;
    let next = next_marker(&page.floatingips_links).map_err(|e| format!("floating IPs: {e}"))?;
    Ok((page.floatingips, next))
}

fn ports_page(body: &[u8]) -> Result<(Vec<Port>, Option<String>), String> {
    let page: Ports = serde_json::from_slice(body).map_err(|e| format!("ports: {e}"))?;
    let next = next_marker(&page.ports_links).map_err(|e| format!("ports: {e}"))?;
    Ok((page.ports, next))
}

fn ports_to_devices(ports: Vec<Port>) -> HashMap<String, String> {
    ports
        .into_iter()
        .filter(|p| !p.device_id.is_empty())
        .map(|p| (p.id, p.device_id))
        .collect()
}

/// Adds each floating IP to the server its port belongs to, next to the
/// fixed address it maps to (same network name and MAC). Addresses Nova
/// already shows are not repeated; floating IPs whose fixed address the
/// server does not show (yet) are left out rather than guessed.
pub(crate) fn attach_floating_ips(
    instances: &mut BTreeMap<crate::instance::Text, Arc<wit::Instance>>,
    floating_ips: &[FloatingIp],
    port_devices: &HashMap<String, String>,
) {
    for fip in floating_ips {
        let (Some(port), Some(fixed)) = (fip.port(), fip.fixed_ip_address.as_deref()) else {
            continue;
        };
        let Some(device) = fip
            .embedded_device()
            .or_else(|| port_devices.get(port).map(String::as_str))
        else {
            continue;
        };
        let Some(instance) = instances.get_mut(device) else {
            continue;
        };
        if instance
            .addresses
            .iter()
            .any(|a| *a.ip == *fip.floating_ip_address)
        {
            continue;
        }
        let Some(on) = instance
            .addresses
            .iter()
            .find(|a| a.kind == wit::AddressKind::Fixed && &*a.ip == fixed)
        else {
            tracing::debug!(server = %instance.id, "floating IP's fixed address not on the server yet");
            continue;
        };
        let version = match fip.floating_ip_address.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => 6,
            _ => 4,
        };
        let floating = wit::Address {
            network: on.network.clone(),
            ip: fip.floating_ip_address.as_str().into(),
            version,
            kind: wit::AddressKind::Floating,
            mac: on.mac.clone(),
        };
        // Copied only here: the other instances keep their `Arc`.
        Arc::make_mut(instance).addresses.push(floating);
    }
}

/// Whether some attached floating IP names a port whose server is unknown:
/// then (and only then) a ports listing is worth its cost.
pub(crate) fn needs_ports(
    floating_ips: &[FloatingIp],
    port_devices: &HashMap<String, String>,
) -> bool {
    floating_ips.iter().any(|f| {
        f.port()
            .is_some_and(|p| f.embedded_device().is_none() && !port_devices.contains_key(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_fips() -> Vec<FloatingIp> {
        parse_floating_ips(&crate::testing::fake_cloud::fixture(
            "neutron/floatingips.json",
        ))
        .unwrap()
    }

    #[test]
    fn listings_keep_what_is_used_and_name_what_they_could_not_read() {
        let ports =
            parse_port_devices(&crate::testing::fake_cloud::fixture("neutron/ports.json")).unwrap();
        assert!(!ports.is_empty());
        assert!(ports.values().all(|d| !d.is_empty()));
        let err = parse_floating_ips(br#"{"floatingips": {}}"#).unwrap_err();
        assert!(err.starts_with("floating IPs: invalid type"), "{err}");
        let err = parse_port_devices(b"[]").unwrap_err();
        assert!(err.starts_with("ports: "), "{err}");
    }

    fn instance(id: &str, addresses: Vec<wit::Address>) -> wit::Instance {
        wit::Instance {
            id: id.into(),
            name: "vm".into(),
            status: "ACTIVE".into(),
            addresses,
            ..wit::Instance::default()
        }
    }

    fn addr(ip: &str, kind: wit::AddressKind) -> wit::Address {
        wit::Address {
            network: "private".into(),
            ip: ip.into(),
            version: 4,
            kind,
            mac: Some("fa:16:3e:b1:3b:30".into()),
        }
    }

    #[test]
    fn next_markers_from_absolute_or_relative_links() {
        let links = |href: &str| {
            vec![Link {
                rel: "next".into(),
                href: href.into(),
            }]
        };
        for href in [
            "https://neutron.example/v2.0/ports?limit=2&marker=p-2",
            "/v2.0/ports?limit=2&marker=p-2",
            "ports?marker=p-2",
        ] {
            assert_eq!(next_marker(&links(href)), Ok(Some("p-2".into())), "{href}");
        }
        assert_eq!(next_marker(&[]), Ok(None));
        let err = next_marker(&links("/v2.0/ports?limit=2")).unwrap_err();
        assert!(err.contains("without a marker"), "{err}");
    }

    #[test]
    fn urls_with_or_without_version() {
        let url = |s: &str| resource_url(&Url::parse(s).unwrap(), "floatingips").to_string();
        assert_eq!(url("http://n:9696/"), "http://n:9696/v2.0/floatingips");
        assert_eq!(url("http://n:9696"), "http://n:9696/v2.0/floatingips");
        assert_eq!(url("http://n:9696/v2.0/"), "http://n:9696/v2.0/floatingips");
        assert_eq!(
            url("https://c/network"),
            "https://c/network/v2.0/floatingips"
        );
    }

    #[test]
    fn attaches_by_embedded_port_and_by_ports_listing_without_duplicates() {
        use wit::AddressKind::{Fixed, Floating};
        let fips = fixture_fips();
        // The sample's first floating IP: 172.24.4.228 -> 10.0.0.3 on a port of
        // server 8e3941b4-...; the others are unattached.
        let server = "8e3941b4-a6e9-499f-a1ac-2a4662025cba";
        let mut instances = BTreeMap::from([(
            server.into(),
            Arc::new(instance(server, vec![addr("10.0.0.3", Fixed)])),
        )]);
        assert!(!needs_ports(&fips, &HashMap::new()));
        attach_floating_ips(&mut instances, &fips, &HashMap::new());
        assert_eq!(
            instances[server].addresses,
            vec![addr("10.0.0.3", Fixed), addr("172.24.4.228", Floating)]
        );
        // Again: Nova (or the last pass) already shows it.
        attach_floating_ips(&mut instances, &fips, &HashMap::new());
        assert_eq!(instances[server].addresses.len(), 2);

        // Without port_details the ports listing maps the port.
        let mut bare = fips.clone();
        bare[0].port_details = None;
        let ports = HashMap::new();
        assert!(needs_ports(&bare, &ports));
        let ports = HashMap::from([(
            "ce705c24-c1ef-408a-bda3-7bbd946164ab".to_owned(),
            server.to_owned(),
        )]);
        assert!(!needs_ports(&bare, &ports));
        let mut instances = BTreeMap::from([(
            server.into(),
            Arc::new(instance(server, vec![addr("10.0.0.3", Fixed)])),
        )]);
        attach_floating_ips(&mut instances, &bare, &ports);
        assert_eq!(&*instances[server].addresses[1].ip, "172.24.4.228");
    }
}
