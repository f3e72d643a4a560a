//! The OpenStack client: one authenticated session with one cloud.
//!
//! - `clouds`: which cloud and credentials (clouds.yaml, secure.yaml, `OS_*`).
//! - `keystone`: the token request, its lifetime and the catalog.
//! - `nova`: microversion negotiation and the paginated server listing.
//! - `neutron`: floating IPs for clouds whose Nova does not show them.
//!
//! This module owns the HTTP plumbing all of them share: the token (reused
//! until shortly before it expires, fetched again after a 401, once), the
//! metrics of every exchange, and turning transport failures into [`Error`]s.

pub(crate) mod clouds;
mod error;
pub(crate) mod keystone;
pub(crate) mod neutron;
pub(crate) mod nova;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{ACCEPT, DATE, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};

use clouds::CaBundle;
pub use clouds::{CloudConfig, Lookup};
pub use error::{Error, Service};
use nova::Microversion;

use crate::config::OpenStackConfig;
use crate::metrics::Metrics;

/// The largest response body read. A full listing of 50k servers with
/// metadata is tens of MiB; anything past this is a broken or hostile
/// endpoint, and must not take the host's memory with it.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// One authenticated client for one cloud. Cheap to clone: clones share the
/// token and the negotiated microversion.
#[derive(Clone)]
pub struct OpenStack {
    inner: Arc<Inner>,
}

struct Inner {
    cloud: CloudConfig,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    /// [`MAX_BODY`], smaller in tests.
    max_body: u64,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// `None` inside: negotiated, and the cloud only speaks 2.0.
    compute_version: tokio::sync::Mutex<Option<Option<Microversion>>>,
}

/// A token and the catalog that came with it.
struct Session {
    token: SecretString,
    /// Local time after which the token is replaced before use.
    renew_at: SystemTime,
    project_id: String,
    catalog: keystone::Catalog,
}

impl std::fmt::Debug for OpenStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStack")
            .field("cloud", &self.inner.cloud)
            .finish_non_exhaustive()
    }
}

/// One HTTP answer, body read in full.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The server's clock (`Date` header), for `changes-since`.
    pub(crate) fn date(&self) -> Option<SystemTime> {
        let text = self.headers.get(DATE)?.to_str().ok()?;
        httpdate::parse_http_date(text).ok()
    }
}

/// What a sequence of exchanges cost, for [`crate::inventory::RefreshStats`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) requests: u32,
    pub(crate) bytes: u64,
}

impl OpenStack {
    /// Resolves the cloud as openstacksdk does, from this process's
    /// environment and openstacksdk's directories.
    pub fn from_config(cfg: &OpenStackConfig, metrics: Arc<Metrics>) -> Result<Self, Error> {
        Self::from_lookup(cfg, &Lookup::from_process(), metrics)
    }

    /// [`Self::from_config`] with the environment and directories given.
    pub fn from_lookup(
        cfg: &OpenStackConfig,
        lookup: &Lookup,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let cloud = clouds::resolve(
            lookup,
            cfg.cloud.as_deref(),
            cfg.region.as_deref(),
            cfg.interface.as_deref(),
        )?;
        Self::new(cloud, cfg.request_timeout, metrics)
    }

    /// A client of `cloud`; nothing is sent until the first request.
    pub fn new(
        cloud: CloudConfig,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let mut http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("traefik-openstack/", env!("CARGO_PKG_VERSION")))
            // reqwest strips only `Authorization`-like headers on a redirect
            // to another host: `X-Auth-Token` would follow it, and a 307/308
            // from Keystone would send the password along. Endpoints come
            // from the catalog; a redirect is reported, not followed.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(CaBundle { path, key }) = &cloud.cacert {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!("{key} {}: cannot read: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!("{key} {}: not a PEM bundle: {e}", path.display()))
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        if !cloud.verify {
            http = http.tls_danger_accept_invalid_certs(true);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cloud,
                http,
                metrics,
                request_timeout,
                max_body: MAX_BODY,
                session: tokio::sync::Mutex::new(None),
                compute_version: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// A smaller body limit, before the client is cloned.
    #[cfg(test)]
    pub(crate) fn with_max_body(mut self, max_body: u64) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_max_body before cloning")
            .max_body = max_body;
        self
    }

    /// "cloud training, region RegionOne, auth http://.../v3 as user admin
    /// project admin": for the start-up log; no secret.
    pub fn describe(&self) -> String {
        keystone::describe(&self.inner.cloud)
    }

    pub(crate) fn cloud(&self) -> &CloudConfig {
        &self.inner.cloud
    }

    /// The project the token is scoped to (authenticating if needed).
    pub(crate) async fn project_id(&self, tally: &mut Tally) -> Result<String, Error> {
        Ok(self.any_session(tally).await?.project_id.clone())
    }

    /// The catalog's endpoint of `service` for the cloud's interface and region.
    pub(crate) async fn endpoint(&self, service: Service, tally: &mut Tally) -> Result<Url, Error> {
        let session = self.any_session(tally).await?;
        let cloud = &self.inner.cloud;
        session
            .catalog
            .endpoint(service.name(), &cloud.interface, cloud.region.as_deref())
    }

    /// An authenticated GET; a 401 re-authenticates and retries once. Any
    /// answer but 2xx is an error.
    pub(crate) async fn get(
        &self,
        service: Service,
        url: &Url,
        microversion: Option<Microversion>,
        tally: &mut Tally,
    ) -> Result<Reply, Error> {
        let mut retried = false;
        loop {
            let session = self.session(tally).await?;
            let mut token = HeaderValue::from_str(session.token.expose_secret()).map_err(|_| {
                Error::Auth("Keystone issued a token that is not a header value".into())
            })?;
            token.set_sensitive(true);
            let mut request = self
                .inner
                .http
                .get(url.clone())
                .header("X-Auth-Token", token)
                .header(ACCEPT, "application/json");
            if let Some(v) = microversion {
                request = request
                    .header("OpenStack-API-Version", format!("compute {v}"))
                    .header("X-OpenStack-Nova-API-Version", v.to_string());
            }
            let reply = self.exchange(service, request, tally).await?;
            match reply.status {
                200..=299 => return Ok(reply),
                401 if !retried => {
                    // Revoked or expired early: one fresh token, one retry.
                    tracing::debug!(%service, "token refused, authenticating again");
                    self.forget_session(&session).await;
                    retried = true;
                }
                401 => {
                    return Err(Error::Auth(format!(
                        "{service} refused a fresh token of {} (HTTP 401)",
                        self.inner.cloud.identity()
                    )));
                }
                status => {
                    return Err(Error::Http {
                        service,
                        status,
                        message: self.error_message(&reply.body),
                    });
                }
            }
        }
    }

    async fn session(&self, tally: &mut Tally) -> Result<Arc<Session>, Error> {
        let mut slot = self.inner.session.lock().await;
        if let Some(session) = slot.as_ref()
            && SystemTime::now() < session.renew_at
        {
            return Ok(session.clone());
        }
        let session = Arc::new(self.authenticate(tally).await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// The current session even if its token is due for renewal: enough
    /// for the catalog and the project, which do not expire. Without this a
    /// token living less than the renewal margin would be fetched twice for
    /// one request.
    async fn any_session(&self, tally: &mut Tally) -> Result<Arc<Session>, Error> {
        if let Some(session) = self.inner.session.lock().await.as_ref() {
            return Ok(session.clone());
        }
        self.session(tally).await
    }

    /// Drops `stale` unless another caller already replaced it.
    async fn forget_session(&self, stale: &Arc<Session>) {
        let mut slot = self.inner.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *slot = None;
        }
    }

    async fn authenticate(&self, tally: &mut Tally) -> Result<Session, Error> {
        let cloud = &self.inner.cloud;
        let url = keystone::tokens_url(&cloud.auth_url)?;
        let body = keystone::auth_body(&cloud.credentials);
        let request = self
            .inner
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .json(&body);
        drop(body);
        let reply = self.exchange(Service::Identity, request, tally).await?;
        let received = SystemTime::now();
        match reply.status {
            200..=299 => {}
            401 | 403 => {
                return Err(Error::Auth(format!(
                    "Keystone refused {} (HTTP {}: {})",
                    cloud.identity(),
                    reply.status,
                    self.error_message(&reply.body)
                )));
            }
            status => {
                return Err(Error::Http {
                    service: Service::Identity,
                    status,
                    message: self.error_message(&reply.body),
                });
            }
        }
        let subject = reply
            .headers
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok());
        let token = keystone::parse_token(subject, &reply.body, received).map_err(|message| {
            Error::Malformed {
                service: Service::Identity,
                message,
            }
        })?;
        let lifetime = token
            .valid_until
            .duration_since(received)
            .unwrap_or_default();
        tracing::debug!(
            lifetime = %humantime::format_duration(Duration::from_secs(lifetime.as_secs())),
            "new Keystone token"
        );
        Ok(Session {
            token: token.value,
            renew_at: token.valid_until - keystone::renewal_margin(lifetime),
            project_id: token.project_id,
            catalog: token.catalog,
        })
    }

    /// Sends one request, reads the whole body, counts it.
    async fn exchange(
        &self,
        service: Service,
        request: RequestBuilder,
        tally: &mut Tally,
    ) -> Result<Reply, Error> {
        tally.requests += 1;
        let metrics = &self.inner.metrics;
        let fail = |e: reqwest::Error| {
            let err = self.transport_error(service, &e);
            metrics.openstack_request(service.name(), err.reason());
            err
        };
        let mut response = request.send().await.map_err(fail)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let max = self.inner.max_body;
        let too_large = || {
            let err = Error::Malformed {
                service,
                message: format!("HTTP {status}: response body larger than {} bytes", max),
            };
            metrics.openstack_request(service.name(), err.reason());
            err
        };
        if response.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        // Counted as it arrives: chunked answers have no length up front.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            tally.bytes += chunk.len() as u64;
            if (body.len() + chunk.len()) as u64 > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        metrics.openstack_request(service.name(), status);
        Ok(Reply {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    fn transport_error(&self, service: Service, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                service,
                timeout: humantime::format_duration(self.inner.request_timeout).to_string(),
            };
        }
        // reqwest's top message is generic; the causes say what happened.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        // reqwest's message names the URL in full: a password written into
        // `auth_url` as `https://user:pass@...` must not reach the log.
        if let Some(url) = e.url()
            && (!url.username().is_empty() || url.password().is_some())
        {
            let mut clean = url.clone();
            let _ = clean.set_username("");
            let _ = clean.set_password(None);
            message = message.replace(url.as_str(), clean.as_str());
        }
        for secret in self.inner.cloud.secrets() {
            let secret = secret.expose_secret();
            if !secret.is_empty() {
                message = message.replace(secret, "[redacted]");
            }
        }
        Error::Network { service, message }
    }

    fn error_message(&self, body: &[u8]) -> String {
        let secrets = self.inner.cloud.secrets();
        let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        error::error_message(body, &exposed)
    }
}
