//! Redis with the `redis` crate (tokio, rustls).
//!
//! A publication is `WATCH <leader>`, a check that the leader key still
//! holds our token, then `MULTI` ... `EXEC`: Redis runs it whole or, when
//! the leader key changed in between, not at all. The lease is the leader
//! key itself, `SET NX PX`, renewed only while it still holds our token (a
//! script, so check and renewal are one step). The token starts with a
//! number drawn from `INCR <fence>`, so every holder's token differs from
//! every earlier one. When etcd holds the lease, Redis follows it: the etcd
//! leader writes its own token into the Redis leader key, which fences a
//! previous leader out of Redis as well.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Value};
use secrecy::ExposeSecret;

use super::StoreError;
use super::diff::{Changes, Names};
use crate::config::RedisConfig;

/// Keys per `SCAN` step and per `MGET`.
const BATCH: usize = 1000;

/// How long the `EXEC` of a whole configuration may take.
const BULK_TIMEOUT: Duration = Duration::from_secs(120);

/// Renews the leader key only while it holds our token.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// A connection to one Redis server (the first of `endpoints` that answers).
pub struct Redis {
    clients: Vec<(String, redis::Client)>,
    current: usize,
    timeout: Duration,
    con: Option<MultiplexedConnection>,
    /// Our token in the leader key, while we believe it is there.
    token: Option<String>,
    alive_until: Option<Instant>,
    /// Leader keys taken or overwritten so far: each is a new term, in
    /// which the store may hold what another leader wrote.
    terms: u64,
}

fn failed(endpoint: &str, e: redis::RedisError) -> StoreError {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "auth"
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        "unreachable"
    } else {
        match e.code() {
            Some("NOAUTH" | "WRONGPASS" | "NOPERM") => "auth",
            Some("OOM") => "full",
            _ => "refused",
        }
    };
    StoreError::new(reason, format!("redis {endpoint}: {e}"))
}

/// `*`, `?`, `[` and `\` taken literally in a `SCAN MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Redis {
    /// A client for `config`; reads the password and TLS files. Connects
    /// on first use.
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let password = config
            .password_file
            .as_ref()
            .map(|f| super::read_password("redis", f))
            .transpose()?;
        let read = |what: &str, f: &std::path::Path| {
            std::fs::read(f).map_err(|e| format!("publish.redis.{what} {}: {e}", f.display()))
        };
        let root_cert = config
            .tls_ca_file
            .as_deref()
            .map(|f| read("tls_ca_file", f))
            .transpose()?;
        let client_tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                client_cert: read("tls_cert_file", c)?,
                client_key: read("tls_key_file", k)?,
            }),
            _ => None,
        };
        let mut clients = Vec::new();
        for endpoint in &config.endpoints {
            let scheme = if config.tls { "rediss" } else { "redis" };
            let url = format!("{scheme}://{endpoint}/{}", config.db);
            let bad = |e: redis::RedisError| format!("publish.redis.endpoints {endpoint:?}: {e}");
            let info = url.as_str().into_connection_info().map_err(bad)?;
            let mut settings = info.redis_settings().clone();
            if let Some(user) = &config.username {
                settings = settings.set_username(user);
            }
            if let Some(p) = &password {
                settings = settings.set_password(p.expose_secret());
            }
            let info = info.set_redis_settings(settings);
            let client = if config.tls {
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: client_tls.clone(),
                        root_cert: root_cert.clone(),
                    },
                )
            } else {
                redis::Client::open(info)
            }
            .map_err(bad)?;
            clients.push((endpoint.clone(), client));
        }
        Ok(Self {
            clients,
            current: 0,
            timeout: config.timeout,
            con: None,
            token: None,
            alive_until: None,
            terms: 0,
        })
    }

    fn endpoint(&self) -> &str {
        &self.clients[self.current].0
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(c) = &self.con {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut last = None;
        for attempt in 0..self.clients.len() {
            let i = (self.current + attempt) % self.clients.len();
            let (endpoint, client) = &self.clients[i];
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => {
                    self.current = i;
                    self.con = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => last = Some(failed(endpoint, e)),
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    /// Runs `f` on the connection; a failed connection is dropped so that
    /// the next call connects again.
    async fn with<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.with_timeout(self.timeout, f).await
    }

    /// As [`Redis::with`], with the answer awaited up to `timeout` (a whole
    /// configuration's worth of keys takes longer than one command).
    async fn with_timeout<T>(
        &mut self,
        timeout: Duration,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut con = self.connection().await?;
        con.set_response_timeout(timeout);
        match f(&mut con).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if !e.is_unrecoverable_error() && e.code().is_some() {
                    // The server answered with an error: the connection is fine.
                } else {
                    self.con = None;
                }
                Err(failed(self.endpoint(), e))
            }
        }
    }

    /// Whether keyspace notifications are on for what Traefik's Redis
    /// provider watches (`K`, and string and generic events: `$` and `g`,
    /// or `A`). `Err` when `CONFIG GET` is refused.
    pub async fn keyspace_events(&mut self) -> Result<Result<(), String>, StoreError> {
        let reply: Vec<String> = self
            .with(async |c| {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async(c)
                    .await
            })
            .await?;
        let flags = reply.get(1).cloned().unwrap_or_default();
        let ok = flags.contains('K')
            && (flags.contains('A') || (flags.contains('$') && flags.contains('g')));
        Ok(if ok {
            Ok(())
        } else {
            Err(format!(
                "redis {}: notify-keyspace-events is {flags:?}: Traefik's Redis provider sees no \
                 change without keyspace events (K) for strings and deletions ($ and g); set it \
                 to \"KEA\" (CONFIG SET notify-keyspace-events KEA, or in redis.conf)",
                self.endpoint()
            ))
        })
    }

    /// Every key under the root (with values) and every owned index key.
    pub async fn read(
        &mut self,
        names: &Names,
    ) -> Result<(Vec<(String, String)>, Vec<String>), StoreError> {
        let root_keys = self.scan(&names.root_prefix()).await?;
        let mut root = Vec::with_capacity(root_keys.len());
        for chunk in root_keys.chunks(BATCH) {
            let values: Vec<Option<String>> = self
                .with(async |c| redis::cmd("MGET").arg(chunk).query_async(c).await)
                .await?;
            for (k, v) in chunk.iter().zip(values) {
                if let Some(v) = v {
                    root.push((k.clone(), v));
                }
            }
        }
        let index = self.scan(&names.owned_prefix()).await?;
        Ok((root, index))
    }

    /// Whether any key starts with `prefix`: a `SCAN` until one is found,
    /// through the whole keyspace when none is.
    pub async fn holds_any_under(&mut self, prefix: &str) -> Result<bool, StoreError> {
        let mut found = false;
        self.scan_each(prefix, |batch| {
            found = !batch.is_empty();
            !found
        })
        .await?;
        Ok(found)
    }

    /// Whether any of `keys` exists.
    pub async fn any_exists(&mut self, keys: &[String]) -> Result<bool, StoreError> {
        for chunk in keys.chunks(BATCH) {
            let n: u64 = self
                .with(async |c| redis::cmd("EXISTS").arg(chunk).query_async(c).await)
                .await?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn scan(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        self.scan_each(prefix, |batch| {
            keys.extend(batch);
            true
        })
        .await?;
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Hands each `SCAN` batch of the keys under `prefix` to `more`, until
    /// the scan ends or `more` says it wants no more.
    async fn scan_each(
        &mut self,
        prefix: &str,
        mut more: impl FnMut(Vec<String>) -> bool,
    ) -> Result<(), StoreError> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .with(async |c| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(BATCH)
                        .query_async(c)
                        .await
                })
                .await?;
            if !more(batch) || next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Holds the leader key, or takes it if it is free (Redis holds the
    /// lease). Returns whether we lead.
    pub async fn lead(
        &mut self,
        names: &Names,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        if let Some(token) = self.token.clone() {
            if self.renew(names, &token, ttl).await? {
                return Ok(true);
            }
            self.token = None;
        }
        let (leader, fence) = (names.leader_key(), names.fence_key());
        let sent = Instant::now();
        let n: u64 = self
            .with(async |c| redis::cmd("INCR").arg(&fence).query_async(c).await)
            .await?;
        let token = format!("{n}/{node}");
        let set: Option<String> = self
            .with(async |c| {
                redis::cmd("SET")
                    .arg(&leader)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(c)
                    .await
            })
            .await?;
        if set.is_some() {
            self.terms += 1;
            self.token = Some(token);
            self.alive_until = Some(sent + ttl);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Follows a lease held elsewhere (etcd): `token` is the leader's. The
    /// leader key is renewed while it holds `token`, else overwritten with
    /// it, which fences out whoever held it before.
    pub async fn follow(
        &mut self,
        names: &Names,
        token: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if self.renew(names, token, ttl).await? {
            return Ok(());
        }
        let leader = names.leader_key();
        let sent = Instant::now();
        let _: () = self
            .with(async |c| {
                redis::cmd("SET")
                    .arg(&leader)
                    .arg(token)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(c)
                    .await
            })
            .await?;
        self.terms += 1;
        self.token = Some(token.to_owned());
        self.alive_until = Some(sent + ttl);
        Ok(())
    }

    async fn renew(
        &mut self,
        names: &Names,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let leader = names.leader_key();
        let sent = Instant::now();
        let renewed: i64 = self
            .with(async |c| {
                redis::Script::new(RENEW)
                    .key(&leader)
                    .arg(token)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(c)
                    .await
            })
            .await?;
        if renewed == 1 {
            self.token = Some(token.to_owned());
            self.alive_until = Some(sent + ttl);
        }
        Ok(renewed == 1)
    }

    /// Leader keys taken or overwritten so far (see `terms`).
    pub fn terms(&self) -> u64 {
        self.terms
    }

    /// Whether we believe we hold the leader key.
    pub fn leading(&self) -> bool {
        self.token.is_some() && self.alive_until.is_some_and(|t| Instant::now() < t)
    }

    /// Our token while we hold the leader key.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Deletes the leader key if it is ours (at shutdown).
    pub async fn resign(&mut self, names: &Names) {
        if let Some(token) = self.token.take() {
            let leader = names.leader_key();
            let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                return redis.call('DEL', KEYS[1]) else return 0 end";
            let _: Result<i64, _> = self
                .with(async |c| {
                    redis::Script::new(script)
                        .key(&leader)
                        .arg(&token)
                        .invoke_async(c)
                        .await
                })
                .await;
        }
    }

    /// Writes `changes` in one `MULTI`/`EXEC`, only while the leader key
    /// holds `token`: `Ok(false)` when fenced out (nothing written).
    pub async fn commit(
        &mut self,
        changes: &Changes,
        names: &Names,
        token: &str,
    ) -> Result<bool, StoreError> {
        let leader = names.leader_key();
        // WATCH belongs to the connection: the whole exchange runs on one
        // connection that only this writer uses, one command after another.
        self.with(async |c| redis::cmd("WATCH").arg(&leader).query_async::<()>(c).await)
            .await?;
        let holder: Option<String> = self
            .with(async |c| redis::cmd("GET").arg(&leader).query_async(c).await)
            .await?;
        if holder.as_deref() != Some(token) {
            let _ = self
                .with(async |c| redis::cmd("UNWATCH").query_async::<()>(c).await)
                .await;
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in &changes.puts {
            pipe.cmd("SET").arg(k).arg(v).ignore();
        }
        for chunk in changes.deletes.chunks(BATCH) {
            pipe.cmd("DEL").arg(chunk).ignore();
        }
        let bulk = self.timeout.max(BULK_TIMEOUT);
        let done: Value = self
            .with_timeout(bulk, async |c| pipe.query_async(c).await)
            .await?;
        Ok(!matches!(done, Value::Nil))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_take_the_prefix_literally() {
        assert_eq!(glob_escape("traefik/"), "traefik/");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
