//! etcd v3 through its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/*`, `/v3/auth/authenticate`) over the reqwest client the host
//! already uses: no gRPC stack and no `protoc` at build time for a handful
//! of unary calls. Keys and values travel base64-encoded; 64-bit numbers as
//! strings.
//!
//! The lease: a leader key put with `create_revision == 0` under a granted
//! lease, kept alive every third of its TTL; every publication is one `txn`
//! that first compares the leader key's value with our token, so a sidecar
//! whose lease expired can never write, whatever it believes.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::StoreError;
use super::diff::{Changes, Names};
use crate::config::EtcdConfig;

/// A connection to one etcd cluster.
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    current: usize,
    credentials: Option<(String, SecretString)>,
    token: Option<SecretString>,
    /// The leader lease, while we hold one.
    lease: Option<Lease>,
    /// Leases taken so far: a new one is a new term, in which the store
    /// may hold what another leader wrote.
    terms: u64,
    /// Of one ordinary request; reads and writes of a whole configuration
    /// get [`BULK_TIMEOUT`].
    timeout: Duration,
}

/// How long a transaction or a read of a whole configuration may take: at
/// 10k instances one is 190k keys, which a loaded machine takes seconds to
/// write. The lease is kept alive beside it.
const BULK_TIMEOUT: Duration = Duration::from_secs(120);

struct Lease {
    id: String,
    ttl: Duration,
    /// Until when the lease is surely alive (last keep-alive sent + TTL).
    alive_until: Instant,
}

#[derive(Deserialize)]
struct Kv {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

fn unb64(s: &str) -> Result<String, StoreError> {
    let bytes = B64
        .decode(s)
        .map_err(|e| StoreError::protocol(format!("etcd sent bad base64: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| StoreError::protocol("etcd sent a key or value that is not UTF-8"))
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return B64.encode(&bytes);
        }
    }
    B64.encode([0u8])
}

impl Etcd {
    /// A client for `config`; reads the password and TLS files.
    pub fn new(config: &EtcdConfig) -> Result<Self, String> {
        let tls = config.tls_ca_file.is_some() || config.tls_cert_file.is_some();
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if let Some(ca) = &config.tls_ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("publish.etcd.tls_ca_file {}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("publish.etcd.tls_ca_file {}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| format!("publish.etcd.tls_cert_file {}: {e}", cert.display()))?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| format!("publish.etcd.tls_key_file {}: {e}", key.display()))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("publish.etcd.tls_cert_file/tls_key_file: {e}"))?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| format!("publish.etcd: HTTP client: {e}"))?;
        let scheme = if tls { "https" } else { "http" };
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.contains("://") {
                    e.to_owned()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        let credentials = match (&config.username, &config.password_file) {
            (Some(user), Some(file)) => Some((user.clone(), super::read_password("etcd", file)?)),
            (None, None) => None,
            _ => return Err("publish.etcd: username and password_file go together".into()),
        };
        Ok(Self {
            http,
            endpoints,
            current: 0,
            credentials,
            token: None,
            lease: None,
            terms: 0,
            timeout: config.timeout,
        })
    }

    /// One call, on the endpoint that answered last, then the others.
    async fn call(&mut self, path: &str, body: &Value) -> Result<Value, StoreError> {
        self.call_with(path, body, false).await
    }

    /// A transaction or range over a whole configuration: a long timeout,
    /// and the lease kept alive while it runs.
    async fn call_bulk(&mut self, path: &str, body: &Value) -> Result<Value, StoreError> {
        self.call_with(path, body, true).await
    }

    async fn call_with(
        &mut self,
        path: &str,
        body: &Value,
        bulk: bool,
    ) -> Result<Value, StoreError> {
        let mut last = None;
        for attempt in 0..self.endpoints.len() {
            let i = (self.current + attempt) % self.endpoints.len();
            match self.call_at(i, path, body, bulk).await {
                Ok(v) => {
                    self.current = i;
                    return Ok(v);
                }
                Err(e) if e.reason == "unreachable" || e.reason == "timeout" => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    async fn call_at(
        &mut self,
        i: usize,
        path: &str,
        body: &Value,
        bulk: bool,
    ) -> Result<Value, StoreError> {
        if self.token.is_none() && self.credentials.is_some() && path != "/v3/auth/authenticate" {
            self.authenticate(i).await?;
        }
        match self.send(i, path, body, bulk).await {
            // A token expires (etcd's simple tokens after 5 minutes): once more.
            Err(e) if e.reason == "auth" && self.credentials.is_some() && self.token.is_some() => {
                self.token = None;
                self.authenticate(i).await?;
                self.send(i, path, body, bulk).await
            }
            other => other,
        }
    }

    async fn authenticate(&mut self, i: usize) -> Result<(), StoreError> {
        let (user, password) = self.credentials.as_ref().expect("checked");
        let body = json!({"name": user, "password": password.expose_secret()});
        let v = self
            .post(i, "/v3/auth/authenticate", &body, self.timeout)
            .await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| StoreError::protocol("etcd: authenticate answered no token"))?;
        self.token = Some(SecretString::from(token.to_owned()));
        Ok(())
    }

    async fn send(
        &mut self,
        i: usize,
        path: &str,
        body: &Value,
        bulk: bool,
    ) -> Result<Value, StoreError> {
        if !bulk {
            return self.post(i, path, body, self.timeout).await;
        }
        let timeout = self.timeout.max(BULK_TIMEOUT);
        let (r, renewed) = self.keeping_alive(self.post(i, path, body, timeout)).await;
        if let (Some(sent), Some(lease)) = (renewed, self.lease.as_mut()) {
            lease.alive_until = sent + lease.ttl;
        }
        r
    }

    /// Runs `work` while renewing the lease every third of its TTL; returns
    /// when the last renewal was sent, if any succeeded.
    async fn keeping_alive<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> (T, Option<Instant>) {
        let Some(lease) = &self.lease else {
            return (work.await, None);
        };
        let renewed = std::sync::Mutex::new(None);
        let keep = async {
            loop {
                tokio::time::sleep(lease.ttl / 3).await;
                let sent = Instant::now();
                let body = json!({"ID": lease.id});
                if let Ok(v) = self
                    .post(self.current, "/v3/lease/keepalive", &body, self.timeout)
                    .await
                    && ttl_left(&v) > 0
                {
                    *renewed.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
                }
            }
        };
        tokio::select! {
            t = work => (t, *renewed.lock().unwrap_or_else(|p| p.into_inner())),
            () = keep => unreachable!("keeps renewing until the work is done"),
        }
    }

    async fn post(
        &self,
        i: usize,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, StoreError> {
        let url = format!("{}{path}", self.endpoints[i]);
        let mut req = self.http.post(&url).timeout(timeout).json(body);
        if let Some(t) = &self.token {
            req = req.header("Authorization", t.expose_secret());
        }
        let resp = req.send().await.map_err(|e| {
            let reason = if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            };
            // reqwest's message names the URL, never the body (no password).
            StoreError::new(reason, format!("etcd {url}: {}", super::error_chain(&e)))
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            StoreError::new(
                "unreachable",
                format!("etcd {url}: reading the answer: {e}"),
            )
        })?;
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            // etcd's own refusals in front of the gateway are plain text.
            Err(_) if !status.is_success() => return Err(classify(&url, status, text.trim())),
            Err(_) => {
                return Err(StoreError::protocol(format!(
                    "etcd {url}: {status}, not JSON: {:.200}",
                    text
                )));
            }
        };
        if status.is_success() && v.get("error").is_none() {
            return Ok(v);
        }
        let message = v["message"]
            .as_str()
            .or(v["error"].as_str())
            .unwrap_or("")
            .to_owned();
        Err(classify(&url, status, &message))
    }

    /// Every key under the root and every index key of owned resources.
    pub async fn read(
        &mut self,
        names: &Names,
    ) -> Result<(Vec<(String, String)>, Vec<String>), StoreError> {
        let root = self.range_prefix(&names.root_prefix(), false).await?;
        let index = self.range_prefix(&names.owned_prefix(), true).await?;
        Ok((root, index.into_iter().map(|(k, _)| k).collect()))
    }

    /// Whether any key starts with `prefix` (one key read at most).
    pub async fn holds_any_under(&mut self, prefix: &str) -> Result<bool, StoreError> {
        self.any_key(json!({
            "key": b64(prefix),
            "range_end": prefix_end(prefix),
            "keys_only": true,
            "limit": 1,
        }))
        .await
    }

    /// Whether `key` exists.
    pub async fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.any_key(json!({"key": b64(key), "keys_only": true}))
            .await
    }

    /// Whether the range `body` asks for holds a key.
    async fn any_key(&mut self, body: Value) -> Result<bool, StoreError> {
        let v = self.call("/v3/kv/range", &body).await?;
        let r: RangeResponse = serde_json::from_value(v)
            .map_err(|e| StoreError::protocol(format!("etcd range: {e}")))?;
        Ok(!r.kvs.is_empty())
    }

    async fn range_prefix(
        &mut self,
        prefix: &str,
        keys_only: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let body =
            json!({"key": b64(prefix), "range_end": prefix_end(prefix), "keys_only": keys_only});
        let v = self.call_bulk("/v3/kv/range", &body).await?;
        let r: RangeResponse = serde_json::from_value(v)
            .map_err(|e| StoreError::protocol(format!("etcd range: {e}")))?;
        r.kvs
            .into_iter()
            .map(|kv| Ok((unb64(&kv.key)?, unb64(&kv.value)?)))
            .collect()
    }

    /// Holds the lease, or takes it if it is free; `token` is what the
    /// leader key holds while it is ours. Returns whether we lead.
    pub async fn lead(
        &mut self,
        names: &Names,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // etcd grants whole seconds: believing in the fraction as well
        // would outlive the lease.
        let ttl = Duration::from_secs(ttl.as_secs().max(1));
        if let Some(lease) = &self.lease {
            let id = lease.id.clone();
            let sent = Instant::now();
            let v = self.call("/v3/lease/keepalive", &json!({"ID": id})).await;
            match v {
                Ok(v) => {
                    if ttl_left(&v) > 0 {
                        self.lease = Some(Lease {
                            id,
                            ttl,
                            alive_until: sent + ttl,
                        });
                        return self.holds(names, token).await;
                    }
                    // Expired: the leader key went with it.
                    self.lease = None;
                }
                // etcd forgot the lease (it expired): seek a new one.
                Err(e) if e.message.contains("lease not found") => self.lease = None,
                Err(e) => {
                    if self
                        .lease
                        .as_ref()
                        .is_some_and(|l| Instant::now() >= l.alive_until)
                    {
                        self.lease = None;
                    }
                    return Err(e);
                }
            }
        }
        self.acquire(names, token, ttl).await
    }

    async fn acquire(
        &mut self,
        names: &Names,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let sent = Instant::now();
        let v = self
            .call(
                "/v3/lease/grant",
                &json!({"TTL": ttl.as_secs().to_string()}),
            )
            .await?;
        let id = v["ID"]
            .as_str()
            .ok_or_else(|| StoreError::protocol("etcd lease grant answered no ID"))?
            .to_owned();
        let key = b64(&names.leader_key());
        let body = json!({
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": b64(token), "lease": id}}],
        });
        let v = self.call("/v3/kv/txn", &body).await?;
        if v["succeeded"].as_bool() == Some(true) {
            self.terms += 1;
            self.lease = Some(Lease {
                id,
                ttl,
                alive_until: sent + ttl,
            });
            Ok(true)
        } else {
            // Someone else leads: our lease is of no use.
            let _ = self.call("/v3/lease/revoke", &json!({"ID": id})).await;
            Ok(false)
        }
    }

    async fn holds(&mut self, names: &Names, token: &str) -> Result<bool, StoreError> {
        let key = names.leader_key();
        let v = self
            .call("/v3/kv/range", &json!({"key": b64(&key)}))
            .await?;
        let r: RangeResponse = serde_json::from_value(v)
            .map_err(|e| StoreError::protocol(format!("etcd range: {e}")))?;
        let ours = r
            .kvs
            .first()
            .map(|kv| unb64(&kv.value))
            .transpose()?
            .as_deref()
            == Some(token);
        if !ours {
            self.lease = None;
        }
        Ok(ours)
    }

    /// Gives the lease up (at shutdown): a standby takes over at once.
    pub async fn resign(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = self
                .call("/v3/lease/revoke", &json!({"ID": lease.id}))
                .await;
        }
    }

    /// Leases taken so far (see `terms`).
    pub fn terms(&self) -> u64 {
        self.terms
    }

    /// Whether we believe we hold the lease.
    pub fn leading(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| Instant::now() < l.alive_until)
    }

    /// Writes `changes` in one transaction, only if the leader key still
    /// holds `token` (`Ok(false)`: fenced out, nothing written). Without a
    /// lease of our own (`fence` = `None`) the write is unconditional.
    pub async fn commit(
        &mut self,
        changes: &Changes,
        fence: Option<(&Names, &str)>,
    ) -> Result<bool, StoreError> {
        let mut ops = Vec::with_capacity(changes.len());
        for (k, v) in &changes.puts {
            ops.push(json!({"request_put": {"key": b64(k), "value": b64(v)}}));
        }
        for k in &changes.deletes {
            ops.push(json!({"request_delete_range": {"key": b64(k)}}));
        }
        let compare: Vec<Value> = fence
            .map(|(names, token)| {
                json!({"key": b64(&names.leader_key()), "target": "VALUE", "result": "EQUAL", "value": b64(token)})
            })
            .into_iter()
            .collect();
        let body = json!({"compare": compare, "success": ops});
        let v = self.call_bulk("/v3/kv/txn", &body).await?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }
}

/// Seconds a keep-alive answer says the lease has left (0: it expired).
fn ttl_left(v: &Value) -> u64 {
    v["result"]["TTL"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

fn classify(url: &str, status: reqwest::StatusCode, message: &str) -> StoreError {
    let m = message.to_ascii_lowercase();
    if m.contains("too many operations in txn request") || m.contains("request is too large") {
        StoreError::new(
            "too_large",
            format!(
                "etcd {url}: {message}: one publication is one transaction; raise the server's \
                 --max-txn-ops and --max-request-bytes (defaults 128 and 1.5 MiB) above a first \
                 publication's size"
            ),
        )
    } else if m.contains("commonname of client") {
        StoreError::new(
            "auth",
            format!(
                "etcd {url}: {message}: with --client-cert-auth, etcd refuses JSON-gateway clients \
                 whose certificate has a Common Name; issue the sidecar's client certificate \
                 without one (subject alternative names only)"
            ),
        )
    } else if m.contains("auth") || m.contains("permission denied") || status == 401 {
        StoreError::new("auth", format!("etcd {url}: {message}"))
    } else if m.contains("space exceeded") || m.contains("no space") || m.contains("quota") {
        StoreError::new("full", format!("etcd {url}: {message}"))
    } else {
        StoreError::new("refused", format!("etcd {url}: {status}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("traefik/"), b64("traefik0"));
        assert_eq!(B64.decode(prefix_end("a\u{7f}")).unwrap(), b"a\x80");
    }

    #[test]
    fn errors_name_the_flags_to_raise() {
        let e = classify(
            "http://e:2379/v3/kv/txn",
            reqwest::StatusCode::BAD_REQUEST,
            "etcdserver: too many operations in txn request",
        );
        assert_eq!(e.reason, "too_large");
        assert!(e.message.contains("--max-txn-ops"), "{}", e.message);
        let e = classify(
            "u",
            reqwest::StatusCode::BAD_REQUEST,
            "etcdserver: user name is empty",
        );
        assert_eq!(e.reason, "refused");
    }

    #[test]
    fn a_full_store_and_a_named_client_certificate_are_told_apart() {
        let e = classify(
            "u",
            reqwest::StatusCode::BAD_REQUEST,
            "etcdserver: mvcc: database space exceeded",
        );
        assert_eq!(e.reason, "full");
        // etcd 3.5's words, in plain text in front of the gateway.
        let e = classify(
            "u",
            reqwest::StatusCode::BAD_REQUEST,
            "CommonName of client sending a request against gateway will be ignored and not used as expected",
        );
        assert_eq!(e.reason, "auth");
        assert!(e.message.contains("without one"), "{}", e.message);
    }
}
