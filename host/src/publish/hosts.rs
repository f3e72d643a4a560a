//! The host names each router answers, read back from the served
//! configuration, so that operators see (and can click) where a VM is
//! reachable without reading rules.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One host name a router matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Link {
    /// The name, as in the rule.
    pub(crate) host: String,
    /// `https://host/` or `http://host/`; absent for TCP routers, which
    /// carry no HTTP, and for names that are not plain DNS names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
}

#[derive(Deserialize)]
struct Dynamic {
    #[serde(default)]
    http: Option<Section>,
    #[serde(default)]
    tcp: Option<Section>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(default)]
    routers: HashMap<String, Router>,
}

#[derive(Deserialize)]
struct Router {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    tls: Option<serde::de::IgnoredAny>,
}

/// Router name -> the host names its rule matches. Only the fields needed
/// are decoded: the rest of a large configuration is skipped, not built.
pub(crate) fn by_router(config: impl std::io::Read) -> HashMap<String, Vec<Link>> {
    let Ok(dynamic) = serde_json::from_reader::<_, Dynamic>(config) else {
        return HashMap::new();
    };
    let mut out: HashMap<String, Vec<Link>> = HashMap::new();
    for (section, web) in [(dynamic.http, true), (dynamic.tcp, false)] {
        for (name, router) in section.map(|s| s.routers).unwrap_or_default() {
            let scheme = if router.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let links = out.entry(name).or_default();
            for host in hosts_in(&router.rule) {
                let url = (web && is_dns_name(&host)).then(|| format!("{scheme}://{host}/"));
                links.push(Link { host, url });
            }
        }
    }
    out
}

/// The arguments of `Host(...)` and `HostSNI(...)` matchers in a Traefik
/// rule (v3 syntax: each argument a backquoted or double-quoted string).
fn hosts_in(rule: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    let mut rest = rule;
    while let Some(at) = rest.find("Host") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "Host".len()..];
        rest = after;
        // Not the tail of a longer name such as `XHost(`.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(args) = after
            .strip_prefix("SNI(")
            .or_else(|| after.strip_prefix('('))
        else {
            continue;
        };
        let mut args = args.trim_start();
        while let Some(quote) = args.chars().next().filter(|c| *c == '`' || *c == '"') {
            let Some(end) = args[1..].find(quote) else {
                break;
            };
            hosts.push(args[1..1 + end].to_string());
            args = args[end + 2..].trim_start();
            match args.strip_prefix(',') {
                Some(next) => args = next.trim_start(),
                None => break,
            }
        }
        rest = args;
    }
    hosts
}

/// Letters, digits, `-` and `.` only: safe to put in a link as it is.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_rules() {
        assert_eq!(hosts_in("Host(`a.example.com`)"), ["a.example.com"]);
        assert_eq!(
            hosts_in("Host(`a.example.com`) || (Host(\"b.example.com\") && PathPrefix(`/x`))"),
            ["a.example.com", "b.example.com"]
        );
        assert_eq!(hosts_in("HostSNI(`db.example.com`)"), ["db.example.com"]);
        assert_eq!(
            hosts_in("HostRegexp(`^.+\\.example\\.com$`)"),
            Vec::<String>::new()
        );
        assert_eq!(hosts_in("PathPrefix(`/Host(`)"), Vec::<String>::new());
        assert_eq!(hosts_in("Host(`unterminated"), Vec::<String>::new());
        assert_eq!(hosts_in("MyHost(`x`)"), Vec::<String>::new());
    }

    #[test]
    fn links_follow_tls_and_only_for_dns_names() {
        let config = br#"{
            "http": {"routers": {
                "web": {"rule": "Host(`vm-1.example.com`)", "service": "s"},
                "secure": {"rule": "Host(`vm-1.example.com`)", "tls": {}},
                "odd": {"rule": "Host(`javascript:alert(1)`)"}
            }},
            "tcp": {"routers": {"db": {"rule": "HostSNI(`db.example.com`)", "tls": {}}}}
        }"#;
        let links = by_router(&config[..]);
        assert_eq!(
            links["web"][0].url.as_deref(),
            Some("http://vm-1.example.com/")
        );
        assert_eq!(
            links["secure"][0].url.as_deref(),
            Some("https://vm-1.example.com/")
        );
        assert_eq!(links["odd"][0].url, None);
        assert_eq!(links["db"][0].host, "db.example.com");
        assert_eq!(links["db"][0].url, None);
        assert!(by_router(&b"not json"[..]).is_empty());
    }
}
