//! Which address of an instance its servers point at.
//!
//! The choice must be deterministic whatever order Nova lists addresses in,
//! so candidates are ranked by (kind preference, IPv4 before IPv6, network
//! name, address).

use crate::model::{AddressKind, Instance};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    Floating,
    Fixed,
    /// Floating first, then fixed.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSettings {
    pub kind: AddressType,
    pub network: Option<String>,
    pub ip_version: Option<u8>,
}

impl Default for AddressSettings {
    fn default() -> Self {
        AddressSettings {
            kind: AddressType::Any,
            network: None,
            ip_version: None,
        }
    }
}

/// The chosen address, as it goes into a URL or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Bracketed for IPv6.
    pub host: String,
}

impl Chosen {
    pub fn with_port(&self, port: &str) -> String {
        format!("{}:{port}", self.host)
    }
}

/// (kind preference, IP version, network, address): lowest wins.
type Rank<'a> = (u8, u8, &'a str, String);

/// Picks the address; `network` (from the instance's label) overrides the
/// settings' network. The error is the "skipped: ..." reason.
pub fn choose(
    inst: &Instance,
    s: &AddressSettings,
    network: Option<&str>,
) -> Result<Chosen, String> {
    let network = network.or(s.network.as_deref());
    let mut best: Option<(Rank, IpAddr)> = None;
    for a in &inst.addresses {
        // Nova data is trusted more than names, but an unparsable address
        // must not end up in a URL.
        let Ok(ip) = a.ip.trim().parse::<IpAddr>() else {
            continue;
        };
        let version = if ip.is_ipv4() { 4 } else { 6 };
        if network.is_some_and(|n| n != a.network) || s.ip_version.is_some_and(|v| v != version) {
            continue;
        }
        let rank = match (s.kind, a.kind) {
            (AddressType::Floating, AddressKind::Floating) => 0,
            (AddressType::Fixed, AddressKind::Fixed) => 0,
            (AddressType::Any, AddressKind::Floating) => 0,
            (AddressType::Any, AddressKind::Fixed) => 1,
            _ => continue,
        };
        let key = (rank, version, a.network.as_str(), ip.to_string());
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, ip));
        }
    }
    match best {
        Some((_, IpAddr::V4(ip))) => Ok(Chosen {
            host: ip.to_string(),
        }),
        Some((_, IpAddr::V6(ip))) => Ok(Chosen {
            host: format!("[{ip}]"),
        }),
        None => {
            let mut why = match s.kind {
                AddressType::Floating => "skipped: no floating address".to_string(),
                AddressType::Fixed => "skipped: no fixed address".to_string(),
                AddressType::Any => "skipped: no address".to_string(),
            };
            if let Some(v) = s.ip_version {
                why.push_str(&format!(" (IPv{v})"));
            }
            if let Some(n) = network {
                why.push_str(&format!(" on network {n:?}"));
            }
            Err(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Address;

    fn addr(net: &str, ip: &str, kind: AddressKind) -> Address {
        Address {
            network: net.into(),
            ip: ip.into(),
            version: if ip.contains(':') { 6 } else { 4 },
            kind,
            mac: None,
        }
    }

    fn inst() -> Instance {
        Instance {
            addresses: vec![
                addr("private", "10.0.0.5", AddressKind::Fixed),
                addr("private", "fd00::5", AddressKind::Fixed),
                addr("private", "203.0.113.9", AddressKind::Floating),
                addr("b-net", "10.1.0.5", AddressKind::Fixed),
                addr("bad", "not-an-ip", AddressKind::Fixed),
            ],
            ..Default::default()
        }
    }

    fn pick(kind: AddressType, network: Option<&str>, v: Option<u8>) -> Result<String, String> {
        let s = AddressSettings {
            kind,
            network: None,
            ip_version: v,
        };
        choose(&inst(), &s, network).map(|c| c.host)
    }

    #[test]
    fn preferences() {
        assert_eq!(pick(AddressType::Any, None, None).unwrap(), "203.0.113.9");
        assert_eq!(
            pick(AddressType::Floating, None, None).unwrap(),
            "203.0.113.9"
        );
        assert_eq!(pick(AddressType::Fixed, None, None).unwrap(), "10.1.0.5");
        assert_eq!(
            pick(AddressType::Fixed, Some("private"), None).unwrap(),
            "10.0.0.5"
        );
        assert_eq!(pick(AddressType::Any, None, Some(6)).unwrap(), "[fd00::5]");
        assert_eq!(
            pick(AddressType::Floating, None, Some(6)).unwrap_err(),
            "skipped: no floating address (IPv6)"
        );
        assert_eq!(
            pick(AddressType::Any, Some("bad"), None).unwrap_err(),
            "skipped: no address on network \"bad\""
        );
    }

    #[test]
    fn order_independent() {
        let mut i = inst();
        i.addresses.reverse();
        let s = AddressSettings {
            kind: AddressType::Fixed,
            ..Default::default()
        };
        assert_eq!(choose(&i, &s, None).unwrap().host, "10.1.0.5");
    }
}
