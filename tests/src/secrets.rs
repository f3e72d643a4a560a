//! No secret leaves the host: every log line (stdout and stderr, at
//! whatever level it ran), `/metrics`, `/api/instances`, `/readyz` and the
//! served configuration are searched for the password, the application
//! credential's secret, every Keystone token the host used and the bearer
//! token Traefik sends.

use crate::scenario::Scenario;

/// The secrets of one case: `(what, value)`.
#[derive(Debug, Default, Clone)]
pub struct Secrets(pub Vec<(String, String)>);

impl Secrets {
    /// The case's password, its bearer token (if any) and every token the
    /// lab's proxy saw so far.
    pub fn of(s: &Scenario<'_>) -> Secrets {
        let mut out = Secrets::default();
        out.add("password", &s.project.password);
        if let Some(t) = &s.host().token {
            out.add("bearer token", t);
        }
        out.add_tokens(s);
        out
    }

    pub fn add(&mut self, what: &str, value: &str) {
        if !value.is_empty() && !self.0.iter().any(|(_, v)| v == value) {
            self.0.push((what.to_owned(), value.to_owned()));
        }
    }

    /// Every Keystone token the lab's proxy has seen.
    pub fn add_tokens(&mut self, s: &Scenario<'_>) {
        for t in s.lab.proxy.tokens() {
            self.add("Keystone token", &t);
        }
    }
}

/// What the host shows now: `(where, text)`. The log is the whole file
/// the process (and any restart of it) wrote stdout and stderr to.
pub async fn host_outputs(s: &Scenario<'_>) -> Vec<(String, String)> {
    let host = s.host();
    let mut out = vec![("host log (stdout+stderr)".to_owned(), host.log())];
    for path in ["/metrics", "/api/instances", "/readyz", "/traefik"] {
        match host.get(path).await {
            Ok((st, body)) => out.push((format!("GET {path} ({st})"), body)),
            Err(e) => out.push((format!("GET {path}"), format!("{e:#}"))),
        }
    }
    out
}

/// Panics naming the secret and where it was found, with the line around it.
pub fn assert_absent(secrets: &Secrets, outputs: &[(String, String)], what: &str) {
    assert!(
        secrets.0.iter().any(|(w, _)| w == "Keystone token"),
        "{what}: no Keystone token to look for: the scan would prove little"
    );
    for (place, text) in outputs {
        for (name, secret) in &secrets.0 {
            if let Some(at) = text.find(secret.as_str()) {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!(
                    "{what}: the {name} is in {place}:\n{}",
                    &text[line_start..line_end]
                );
            }
        }
    }
}

/// [`host_outputs`] of `s`, plus `more`, searched for [`Secrets::of`] `s`
/// and `more_secrets`; returns how many bytes were searched.
pub async fn assert_no_secrets(
    s: &Scenario<'_>,
    more_secrets: &Secrets,
    more: &[(String, String)],
    what: &str,
) -> usize {
    let mut secrets = Secrets::of(s);
    for (w, v) in &more_secrets.0 {
        secrets.add(w, v);
    }
    let mut outputs = host_outputs(s).await;
    outputs.extend_from_slice(more);
    assert_absent(&secrets, &outputs, what);
    outputs.iter().map(|(_, t)| t.len()).sum()
}
