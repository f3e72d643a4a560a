//! Names for routers and services.
//!
//! Instance names are written by tenants and may hold dots, `@`, spaces,
//! unicode or be very long; Traefik names must not contain `@` (it separates
//! the provider) and dots would break the label syntax, so default names are
//! reduced to ASCII alphanumerics and dashes.

/// Longest default name; longer ones are cut and get a hash suffix so that two
/// long names sharing a prefix stay distinct.
pub const MAX_NAME: usize = 63;

/// Longest name accepted from a label: Nova metadata keys are at most 255
/// characters, so a name cannot legitimately exceed that.
const MAX_LABEL_NAME: usize = 255;

/// Traefik's `provider.Normalize`: every run of characters that are neither
/// letters nor digits becomes one `-`, leading and trailing runs vanish.
pub fn normalize(s: &str) -> String {
    // One pass into one buffer: this runs for every templated label.
    let mut out = String::with_capacity(s.len());
    for part in s.split(|c: char| !c.is_alphanumeric()) {
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(part);
    }
    out
}

/// FNV-1a: stable across platforms and releases, unlike std's hasher.
pub fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hash8(s: &str) -> String {
    format!("{:08x}", fnv64(s) as u32)
}

/// The default router/service name of an instance.
pub fn safe_name(raw: &str) -> String {
    let ascii = raw
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if ascii.is_empty() {
        return format!("instance-{}", hash8(raw));
    }
    if ascii.len() > MAX_NAME {
        // ASCII only, so any byte index is a char boundary.
        let head = ascii[..MAX_NAME - 9].trim_end_matches('-');
        return format!("{head}-{}", hash8(raw));
    }
    ascii
}

/// A name as Traefik's KV providers (etcd, Redis) compare names: they
/// match a key's segments with Go's `strings.EqualFold`, so `API` and `api`
/// are one router there. Lowercasing the uppercase of each character's
/// lowercase folds what `EqualFold` folds (`ſ` with `s`, `ς` with `σ`, the
/// Kelvin sign with `k`, `ẞ` with `ß`) and a little more (`ß` with `ss`),
/// which errs only towards treating two names as one.
pub fn fold(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return name.to_ascii_lowercase().into();
        }
        return name.into();
    }
    name.chars()
        .flat_map(char::to_lowercase)
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .into()
}

/// Checks a router/service/middleware name a tenant wrote in a label.
pub fn check_label_name(name: &str) -> Result<(), String> {
    // Fast path for the usual name: printable ASCII (no control character
    // or whitespace) and none of the refused characters.
    if !name.is_empty()
        && name.len() <= MAX_LABEL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'@' | b'`' | b'"'))
    {
        return Ok(());
    }
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('@') {
        return Err(format!("name {name:?} must not contain '@'"));
    }
    if name.len() > MAX_LABEL_NAME {
        return Err("name too long".into());
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '`' || c == '"')
    {
        return Err(format!("name {name:?} contains forbidden characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_matches_traefik() {
        assert_eq!(normalize("web.example.com"), "web-example-com");
        assert_eq!(normalize("--a..b--"), "a-b");
        assert_eq!(normalize("évé 1"), "évé-1");
        assert_eq!(normalize("evil`) || Host(`x"), "evil-Host-x");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn names_fold_as_traefiks_kv_providers_match_them() {
        for (a, b) in [
            ("API", "api"),
            ("Web-1", "wEB-1"),
            ("\u{17f}vc", "svc"),
            ("\u{3a3}\u{3c2}", "\u{3c3}\u{3c3}"),
            ("\u{212a}ey", "key"),
            ("Évé", "évé"),
            ("stra\u{df}e", "STRA\u{1e9e}E"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} and {b}");
        }
        assert_ne!(fold("api"), fold("apis"));
        // Go's `EqualFold` treats a character as equal to its simple
        // upper- and lowercase partners (and theirs): every such pair folds
        // alike.
        fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
            let first = it.next();
            first.filter(|_| it.next().is_none())
        }
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            for partner in [single(c.to_uppercase()), single(c.to_lowercase())]
                .into_iter()
                .flatten()
            {
                let (a, b) = (c.to_string(), partner.to_string());
                assert_eq!(
                    fold(&a),
                    fold(&b),
                    "{c:?} (U+{:04X}) and {partner:?}",
                    c as u32
                );
            }
        }
        assert!(matches!(fold("web-1"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("web-1"), "web-1");
        assert_eq!(safe_name("a@b c.d"), "a-b-c-d");
        let uni = safe_name("日本");
        assert!(uni.starts_with("instance-") && uni.len() == 17);
        let long = "x".repeat(1000);
        let n = safe_name(&long);
        assert!(n.len() <= MAX_NAME);
        assert_ne!(n, safe_name(&"x".repeat(999)));
        assert_eq!(n, safe_name(&long));
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("web").is_ok());
        assert!(check_label_name("a@b").is_err());
        assert!(check_label_name("").is_err());
        assert!(check_label_name("a b").is_err());
        assert!(check_label_name(&"a".repeat(300)).is_err());
    }
}
