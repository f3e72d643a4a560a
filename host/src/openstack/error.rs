//! Errors of the OpenStack client.
//!
//! Messages are written for the operator and never carry a secret: request
//! bodies (passwords, application credential secrets) and tokens are not
//! quoted, and messages taken from OpenStack responses are shortened and
//! scrubbed of known secrets before they get here.

/// A service of the catalog, as the metrics and messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Keystone.
    Identity,
    /// Nova.
    Compute,
    /// Neutron.
    Network,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Network => "network",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong talking to the cloud; never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// clouds.yaml, secure.yaml or `OS_*` variables are missing or wrong.
    #[error("OpenStack credentials: {0}")]
    Config(String),
    /// Keystone refused the credentials, or a service kept refusing the token.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The catalog has no endpoint for what was asked.
    #[error("{0}")]
    Catalog(String),
    /// No answer within the request timeout.
    #[error("{service}: request timed out after {timeout}")]
    Timeout {
        /// The service asked.
        service: Service,
        /// The timeout, human-readable.
        timeout: String,
    },
    /// The connection failed (DNS, TCP, TLS).
    #[error("{service}: {message}")]
    Network {
        /// The service asked.
        service: Service,
        /// What failed, secrets removed.
        message: String,
    },
    /// An answer other than 2xx.
    #[error("{service}: HTTP {status}: {message}")]
    Http {
        /// The service asked.
        service: Service,
        /// The HTTP status.
        status: u16,
        /// The error message of the body, secrets removed.
        message: String,
    },
    /// A response that is not the JSON the API documents.
    #[error("{service}: unexpected response: {message}")]
    Malformed {
        /// The service asked.
        service: Service,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// A fixed word for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Auth(_) => "auth",
            Error::Catalog(_) => "catalog",
            Error::Timeout { .. } => "timeout",
            Error::Network { .. } => "network",
            Error::Http { status, .. } if *status >= 500 => "http_5xx",
            Error::Http { .. } => "http_4xx",
            Error::Malformed { .. } => "malformed",
        }
    }
}

/// The human part of an OpenStack error body (`{"error": {"message": ..}}`,
/// `{"itemNotFound": {"message": ..}}`, `{"NeutronError": {"message": ..}}`),
/// shortened; never the raw body, which might echo what was sent.
pub(crate) fn error_message(body: &[u8], secrets: &[&str]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.as_object())
        .and_then(|o| o.values().find_map(|inner| inner.get("message")))
        .and_then(|m| m.as_str())
        .unwrap_or("no error message in the response");
    let mut message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret, "[redacted]");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_takes_the_message_only_and_scrubs_secrets() {
        let body = br#"{"error": {"code": 401, "title": "Unauthorized", "message": "bad password s3cret for admin"}}"#;
        assert_eq!(
            error_message(body, &["s3cret"]),
            "bad password [redacted] for admin"
        );
        let neutron = br#"{"NeutronError": {"type": "X", "message": "Port p could not be found.", "detail": ""}}"#;
        assert_eq!(error_message(neutron, &[]), "Port p could not be found.");
        assert_eq!(
            error_message(b"<html>s3cret</html>", &["s3cret"]),
            "no error message in the response"
        );
    }

    #[test]
    fn reasons_are_fixed_words() {
        let e = Error::Http {
            service: Service::Compute,
            status: 503,
            message: String::new(),
        };
        assert_eq!(e.reason(), "http_5xx");
        let e = Error::Http {
            service: Service::Compute,
            status: 404,
            message: String::new(),
        };
        assert_eq!(e.reason(), "http_4xx");
    }
}
