//! `GET /`: one self-contained HTML page for operators, answering "why is
//! VM x not routed?" without reading JSON.
//!
//! The page carries its data inline (readiness and the `/api/instances`
//! report) so that one request, guarded by the same bearer token as the
//! API, is enough; a script renders it with search, a filter and paging,
//! so 10k instances stay usable. Tenant text is only ever set as text by
//! the script, and a Content-Security-Policy allows that one script and
//! nothing else, so a hostile VM name cannot run code in an operator's
//! browser.

use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine as _;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::server::{AppState, Body};

const TEMPLATE: &str = include_str!("status_page.html");
const DATA: &str = "__DATA__";

/// The page for the current state.
pub(crate) fn page(state: &AppState) -> Response<Body> {
    let readiness = serde_json::to_string(&state.publisher.readiness()).expect("plain data");
    let instances = state
        .publisher
        .current()
        .map_or_else(|| b"[]".to_vec(), |s| s.instances_report());
    let generated_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut data = Vec::with_capacity(readiness.len() + instances.len() + 96);
    data.extend_from_slice(b"{\"readiness\":");
    data.extend_from_slice(readiness.as_bytes());
    data.extend_from_slice(b",\"generated_at\":\"");
    data.extend_from_slice(generated_at.as_bytes());
    data.extend_from_slice(b"\",\"instances\":");
    data.extend_from_slice(&instances);
    data.push(b'}');

    let (head, tail) = TEMPLATE
        .split_once(DATA)
        .expect("the template has a data slot");
    let mut html = Vec::with_capacity(TEMPLATE.len() + data.len() + data.len() / 16);
    html.extend_from_slice(head.as_bytes());
    escape_into(&mut html, &data);
    html.extend_from_slice(tail.as_bytes());

    let mut resp = Response::new(Body::from(html));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(policy()).expect("ascii"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// JSON inside `<script type="application/json">`: the text must not be
/// able to close the element (`</script>`) or open a comment. `<`, `>` and
/// `&` only occur inside JSON strings, where their `\u` escapes mean the
/// same; U+2028/9 are escaped for old parsers.
fn escape_into(out: &mut Vec<u8>, json: &[u8]) {
    let mut rest = json;
    while let Some(at) = rest
        .iter()
        .position(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2))
    {
        out.extend_from_slice(&rest[..at]);
        match rest[at] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ if rest[at..].starts_with("\u{2028}".as_bytes()) => {
                out.extend_from_slice(b"\\u2028");
                rest = &rest[at + 3..];
                continue;
            }
            _ if rest[at..].starts_with("\u{2029}".as_bytes()) => {
                out.extend_from_slice(b"\\u2029");
                rest = &rest[at + 3..];
                continue;
            }
            other => out.push(other),
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// The Content-Security-Policy: the page's own inline style and script, by
/// hash, and nothing else (no other script, no fetch, no frame, no form).
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let style = between(TEMPLATE, "<style>", "</style>");
        let script = between(TEMPLATE, "<script>", "</script>");
        format!(
            "default-src 'none'; style-src '{}'; script-src '{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(style),
            sha256_source(script)
        )
    })
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).expect("template element") + open.len();
    let len = text[start..].find(close).expect("template element end");
    &text[start..start + len]
}

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script_element() {
        let json = serde_json::to_vec(&serde_json::json!({
            "name": "</script><script>alert(1)</script><!-- & \u{2028}\u{2029}"
        }))
        .unwrap();
        let mut out = Vec::new();
        escape_into(&mut out, &json);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'));
        assert!(!text.contains('\u{2028}') && !text.contains('\u{2029}'));
        // Still the same JSON.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()
        );
    }

    #[test]
    fn the_policy_names_the_page_s_own_script() {
        let p = policy();
        assert!(p.starts_with("default-src 'none';"), "{p}");
        assert_eq!(p.matches("'sha256-").count(), 2, "{p}");
        assert!(!p.contains("unsafe"), "{p}");
        // The template's only executable script is the one hashed.
        assert_eq!(TEMPLATE.matches("<script>").count(), 1);
    }
}
