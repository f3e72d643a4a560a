//! The one rule shape this policy accepts: a single `Host` (HTTP) or
//! `HostSNI` (TCP) matcher with one host name, and nothing else. Anything
//! richer (`||`, `PathPrefix`, `HostRegexp`, several hosts) could widen what
//! the router answers for, so it is refused rather than analysed.

/// The host of a rule that is exactly ``Host(`h`)`` (``HostSNI(`h`)`` for
/// `tcp`), lower-cased; `None` for any other rule, and for `udp`.
pub fn single_host(protocol: &str, rule: &str) -> Option<String> {
    let matcher = match protocol {
        "http" => "Host(",
        "tcp" => "HostSNI(",
        _ => return None,
    };
    let quoted = rule.trim().strip_prefix(matcher)?.strip_suffix(')')?.trim();
    let host = ['`', '"']
        .iter()
        .find_map(|q| quoted.strip_prefix(*q)?.strip_suffix(*q))?;
    let host = host.to_ascii_lowercase();
    is_dns_name(&host).then_some(host)
}

/// `host` is `own` or a name under it (`api.vm.example.com` under
/// `vm.example.com`).
pub fn is_under(host: &str, own: &str) -> bool {
    host == own
        || host
            .strip_suffix(own)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// Letters, digits, `-` and dots between non-empty labels: no wildcard, no
/// quote, nothing a matcher could read as more than one name.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_plain_host() {
        let host = |p, r| single_host(p, r);
        assert_eq!(
            host("http", "Host(`A.example.com`)").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host("http", " Host( \"a.example.com\" ) ").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host("tcp", "HostSNI(`a.example.com`)").as_deref(),
            Some("a.example.com")
        );
        for bad in [
            "Host(`a.example.com`) || Host(`b.example.com`)",
            "Host(`a.example.com`) && PathPrefix(`/`)",
            "Host(`a.example.com`,`b.example.com`)",
            "Host(`a.example.com\")",
            "Host(`*.example.com`)",
            "HostRegexp(`.*`)",
            "PathPrefix(`/`)",
            "HostSNI(`a.example.com`)",
            "",
        ] {
            assert_eq!(host("http", bad), None, "{bad}");
        }
        assert_eq!(host("tcp", "HostSNI(`*`)"), None);
        assert_eq!(host("udp", "Host(`a.example.com`)"), None);
    }

    #[test]
    fn under() {
        assert!(is_under("vm.example.com", "vm.example.com"));
        assert!(is_under("api.vm.example.com", "vm.example.com"));
        assert!(!is_under("evilvm.example.com", "vm.example.com"));
        assert!(!is_under("example.com", "vm.example.com"));
    }
}
