//! Publishing to etcd and Redis, where Traefik's KV providers read.
//!
//! A [`KvWriter`] task follows the publisher's snapshots and writes the
//! latest one (intermediate ones are skipped) to each store configured, as
//! a diff against what the store holds of ours ([`diff`]) in Traefik's key
//! layout ([`layout`]), one transaction per publication. Only the holder of
//! the leader lease writes: in etcd when etcd is configured (Redis then
//! follows it), else in Redis. The task is the only one that waits on a
//! store: a slow, unreachable or refusing store never holds up the sync
//! loop or the HTTP endpoint; its error shows in `/readyz`, `/metrics` and
//! the log, and the next round catches up.

pub mod diff;
pub mod etcd;
pub mod layout;
pub mod redis;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use serde::Serialize;

use crate::config::{EtcdConfig, PublishConfig, RedisConfig};
use crate::events::{self, Event};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use diff::{Changes, Held, Names, diff};
use layout::{Layout, flatten};

/// Why a store call failed: a fixed word for metrics, and the message.
#[derive(Debug, Clone)]
pub struct StoreError {
    /// `unreachable`, `timeout`, `auth`, `too_large`, `full`, `refused`,
    /// `protocol`.
    pub reason: &'static str,
    /// What failed, where; never a password.
    pub message: String,
}

impl StoreError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn protocol(message: impl Into<String>) -> Self {
        Self::new("protocol", message)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads a password file (one line; surrounding whitespace dropped).
fn read_password(store: &str, path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("publish.{store}.password_file {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "publish.{store}.password_file {}: the file is empty",
            path.display()
        ));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// An error with its causes, each once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What `/readyz` says about one store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStatus {
    /// This sidecar holds the lease and writes.
    pub leader: bool,
    /// The last error, until a round succeeds.
    pub error: Option<String>,
    /// Redis only: keyspace notifications are off, or could not be checked.
    pub keyspace_events: Option<String>,
    /// The ETag of the configuration the store holds from us.
    pub published_etag: Option<String>,
    /// Keys under the root that are ours.
    pub keys: usize,
    /// Unix time of the last publication that changed keys.
    pub last_publication: Option<f64>,
}

/// One store and what we know of it.
struct Side<C> {
    client: C,
    names: Names,
    /// What the store holds of ours; `None`: read it again before the next
    /// diff (at start, after an error, after a leadership change).
    held: Option<Held>,
    /// The ETag of the snapshot the store holds.
    written: Option<String>,
    /// Foreign resources (folded names, see [`Held::foreign`]) that keep
    /// one of ours out, looked for again at every round until they go.
    refused_by: Vec<String>,
}

impl<C> Side<C> {
    fn new(client: C, names: Names) -> Self {
        Self {
            client,
            names,
            held: None,
            written: None,
            refused_by: Vec::new(),
        }
    }

    fn forget(&mut self) {
        self.held = None;
        self.written = None;
        self.refused_by.clear();
    }

    /// Whether the snapshot `etag` still has to be written here: we lead
    /// and the store does not hold it (or what it holds is unknown).
    fn due(&self, etag: &str, status: &StoreStatus) -> bool {
        status.leader && (self.written.as_deref() != Some(etag) || self.held.is_none())
    }
}

/// Writes the publisher's configuration to etcd and/or Redis while this
/// sidecar holds the leader lease.
pub struct KvWriter {
    etcd: Option<Side<etcd::Etcd>>,
    redis: Option<Side<redis::Redis>>,
    ttl: Duration,
    /// Names this sidecar in tokens and index values.
    node: String,
    /// The etcd leader key's value while we hold or try for the lease.
    token: String,
    acquisitions: u64,
    /// Withdrawn, its routes deleted and the lease given up: it seeks the
    /// lease again only once some sidecar has published since (whose
    /// routes would stay behind if it died), not at every round.
    stepped_back: bool,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    status: BTreeMap<&'static str, StoreStatus>,
}

/// The name of this sidecar: host name and process id, and the start time
/// so a restarted process with a reused pid is another node.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{host}:{}:{nanos:x}", std::process::id())
}

impl KvWriter {
    /// The writer for the stores in `config`; `Ok(None)` when none is
    /// configured. Reads password and TLS files now (the error names them).
    pub fn new(
        config: &PublishConfig,
        publisher: Arc<Publisher>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, String> {
        // A request that outlives half the lease would let it lapse.
        let bound = |t: Duration| t.min(config.lease_ttl / 2);
        let etcd = match &config.etcd {
            Some(c) => Some(Side::new(
                etcd::Etcd::new(&EtcdConfig {
                    timeout: bound(c.timeout),
                    ..c.clone()
                })?,
                Names::new(&c.root_key, &c.index_key),
            )),
            None => None,
        };
        let redis = match &config.redis {
            Some(c) => Some(Side::new(
                redis::Redis::new(&RedisConfig {
                    timeout: bound(c.timeout),
                    ..c.clone()
                })?,
                Names::new(&c.root_key, &c.index_key),
            )),
            None => None,
        };
        if etcd.is_none() && redis.is_none() {
            return Ok(None);
        }
        let mut status = BTreeMap::new();
        if etcd.is_some() {
            status.insert("etcd", StoreStatus::default());
        }
        if redis.is_some() {
            status.insert("redis", StoreStatus::default());
        }
        let node = node_name();
        let writer = Self {
            etcd,
            redis,
            ttl: config.lease_ttl,
            token: node.clone(),
            node,
            acquisitions: 0,
            stepped_back: false,
            publisher,
            metrics,
            status,
        };
        writer.report();
        for store in writer.status.keys() {
            writer.metrics.store_known(store);
            events::KvLeadership {
                store,
                leader: false,
                node: &writer.node,
            }
            .emit(&writer.metrics);
        }
        Ok(Some(writer))
    }

    /// Writes until `shutdown`, then gives the lease up so that a standby
    /// takes over at once.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut changed = self.publisher.subscribe();
        let mut shutdown = std::pin::pin!(shutdown);
        // Renewing three times per TTL leaves two chances to fail.
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
                r = changed.changed() => if r.is_err() { break },
            }
            changed.mark_unchanged();
            self.step().await;
        }
        self.resign().await;
    }

    /// One round: once there is a configuration, hold or seek the lease,
    /// then, as leader, bring every store to the latest snapshot.
    pub async fn step(&mut self) {
        self.check_keyspace().await;
        // A sidecar with nothing to publish yet (OpenStack not answered)
        // does not seek the lease: a standby that has a configuration will.
        let current = self.publisher.current();
        // What was served is older than `max_stale`: as in the HTTP
        // endpoint, the stores stop routing it (our keys are deleted), since
        // its addresses may belong to other tenants by now.
        let withdrawn = current.is_none() && self.publisher.readiness().status.withdrawn.is_some();
        if !withdrawn {
            self.stepped_back = false;
        } else if self.stepped_back && !self.anyone_published().await {
            // Nothing to delete: it stays away from the lease.
            self.report();
            return;
        }
        if (current.is_some() || withdrawn) && self.lead().await {
            self.look_again().await;
            match current {
                // Every store holds it already: the renewal round ends
                // here, without reading a configuration that may be tens
                // of megabytes.
                Some(snapshot) if !self.due(&snapshot.etag) => {}
                Some(snapshot) => match serde_json::from_reader(snapshot.body.reader()) {
                    Ok(config) => self.publish(&config, &snapshot.etag).await,
                    // The served body is the module's validated JSON: this
                    // would be a bug, and it must not empty the stores.
                    Err(e) => {
                        tracing::error!(error = %e, "the served configuration is not JSON; not published to the stores")
                    }
                },
                None => {
                    self.publish(&serde_json::json!({}), "withdrawn").await;
                    // Its routes are gone from every store: it lets go of
                    // the lease, so that a healthy sidecar (one started
                    // since, say) leads without waiting out a TTL. It seeks
                    // the lease again only once some sidecar has published
                    // since (see `stepped_back`), to delete what a leader
                    // that stopped left behind.
                    if self.every_store_holds("withdrawn") {
                        self.resign().await;
                        self.stepped_back = true;
                    }
                }
            }
        }
        self.report();
    }

    /// Whether some store's ownership index has routes in it (a sidecar
    /// published since this one withdrew); a store that cannot be asked is
    /// taken to have some.
    async fn anyone_published(&mut self) -> bool {
        if let Some(side) = &mut self.etcd
            && side.index_has_keys().await
        {
            return true;
        }
        match &mut self.redis {
            Some(side) => side.index_has_keys().await,
            None => false,
        }
    }

    /// Whether every store holds the snapshot `etag` from us.
    fn every_store_holds(&self, etag: &str) -> bool {
        let holds = |written: &Option<String>| written.as_deref() == Some(etag);
        self.etcd.as_ref().is_none_or(|s| holds(&s.written))
            && self.redis.as_ref().is_none_or(|s| holds(&s.written))
    }

    /// In each store we lead, looks for the foreign resources that kept
    /// ours out again.
    async fn look_again(&mut self) {
        if let Some(side) = self.etcd.as_mut().filter(|_| self.status["etcd"].leader)
            && let Err(err) = side.look_again().await
        {
            side.forget();
            fail(&self.metrics, &mut self.status, "etcd", &err);
        }
        if let Some(side) = self.redis.as_mut().filter(|_| self.status["redis"].leader)
            && let Err(err) = side.look_again().await
        {
            side.forget();
            fail(&self.metrics, &mut self.status, "redis", &err);
        }
    }

    /// Gives the lease up (the leader key is deleted).
    pub async fn resign(&mut self) {
        if let Some(e) = &mut self.etcd {
            e.client.resign().await;
        }
        if let Some(r) = &mut self.redis {
            r.client.resign(&r.names).await;
        }
        for (store, s) in &mut self.status {
            if s.leader {
                s.leader = false;
                events::KvLeadership {
                    store,
                    leader: false,
                    node: &self.node,
                }
                .emit(&self.metrics);
            }
        }
        self.report();
    }

    /// Whether this sidecar holds the lease (as of the last round).
    pub fn leader(&self) -> bool {
        self.status.values().any(|s| s.leader)
    }

    /// What `/readyz` shows, by store.
    pub fn status(&self) -> &BTreeMap<&'static str, StoreStatus> {
        &self.status
    }

    fn report(&self) {
        let status = self.status.clone();
        self.publisher.update_status(|s| s.stores = status);
    }

    async fn check_keyspace(&mut self) {
        let Some(r) = &mut self.redis else { return };
        let st = self.status.get_mut("redis").expect("status per store");
        if st.keyspace_events.is_none() && st.published_etag.is_some() {
            // Checked fine once; a write error will show anything new.
            return;
        }
        let verdict = match r.client.keyspace_events().await {
            Ok(Ok(())) => None,
            Ok(Err(off)) => Some(off),
            // Not answering: the round's own calls report that.
            Err(e) if matches!(e.reason, "unreachable" | "timeout") => return,
            Err(e) => Some(format!(
                "could not verify notify-keyspace-events (CONFIG GET refused): {e}"
            )),
        };
        if verdict != st.keyspace_events {
            if let Some(v) = &verdict {
                events::KvKeyspace { error: v }.emit(&self.metrics);
            }
            st.keyspace_events = verdict;
        }
    }

    /// Holds or seeks the lease; whether we lead.
    async fn lead(&mut self) -> bool {
        let ttl = self.ttl;
        let was = self.leader();
        let terms = self.terms();
        let leader = if let Some(e) = &mut self.etcd {
            if !e.client.leading() {
                self.acquisitions += 1;
                self.token = format!("{}/{}", self.node, self.acquisitions);
            }
            let r = e.client.lead(&e.names, &self.token, ttl).await;
            let leader = lease_round(
                &self.metrics,
                &mut self.status,
                "etcd",
                r,
                e.client.leading(),
            );
            set_leader(&self.metrics, &mut self.status, "etcd", leader, &self.node);
            if let Some(r) = &mut self.redis {
                // Redis follows etcd's lease: the etcd leader's token goes
                // into the Redis leader key, fencing out the previous one.
                let followed = if leader {
                    match r.client.follow(&r.names, &self.token, ttl).await {
                        Ok(()) => true,
                        Err(err) => {
                            fail(&self.metrics, &mut self.status, "redis", &err);
                            false
                        }
                    }
                } else {
                    false
                };
                set_leader(
                    &self.metrics,
                    &mut self.status,
                    "redis",
                    followed,
                    &self.node,
                );
            }
            leader
        } else if let Some(r) = &mut self.redis {
            let round = r.client.lead(&r.names, &self.node, ttl).await;
            let leader = lease_round(
                &self.metrics,
                &mut self.status,
                "redis",
                round,
                r.client.leading(),
            );
            set_leader(&self.metrics, &mut self.status, "redis", leader, &self.node);
            leader
        } else {
            false
        };
        // A new term (one taken again after losing it unnoticed, while
        // another leader wrote, included): what the stores hold is read
        // again before a diff.
        let (etcd_term, redis_term) = self.terms();
        if let Some(e) = &mut self.etcd
            && (leader != was || etcd_term != terms.0)
        {
            e.forget();
        }
        if let Some(r) = &mut self.redis
            && (leader != was || redis_term != terms.1)
        {
            r.forget();
        }
        // A store that failed or changed hands may hold anything now.
        if let Some(e) = &mut self.etcd
            && (self.status["etcd"].error.is_some() || !self.status["etcd"].leader)
        {
            e.forget();
        }
        if let Some(r) = &mut self.redis
            && (self.status["redis"].error.is_some() || !self.status["redis"].leader)
        {
            r.forget();
        }
        leader
    }

    /// The terms (leases taken) each store's client has begun, etcd's and
    /// Redis's (see `Etcd::terms`).
    pub fn terms(&self) -> (u64, u64) {
        (
            self.etcd.as_ref().map_or(0, |e| e.client.terms()),
            self.redis.as_ref().map_or(0, |r| r.client.terms()),
        )
    }

    /// Whether any store has to be written `etag`.
    fn due(&self, etag: &str) -> bool {
        let etcd = self
            .etcd
            .as_ref()
            .is_some_and(|s| s.due(etag, &self.status["etcd"]));
        let redis = self
            .redis
            .as_ref()
            .is_some_and(|s| s.due(etag, &self.status["redis"]));
        etcd || redis
    }

    /// Writes `config` to each store we lead that does not hold it yet; the
    /// stores are written at the same time, so replicas reading the slower
    /// one do not also wait for the other.
    async fn publish(&mut self, config: &serde_json::Value, etag: &str) {
        let Self {
            etcd,
            redis,
            status,
            token,
            node,
            ttl,
            ..
        } = self;
        let follows_etcd = etcd.is_some();
        let etcd_round = async {
            let side = etcd.as_mut().filter(|s| s.due(etag, &status["etcd"]))?;
            let layout = flatten(config, &side.names.root);
            let r = publish_etcd(side, &layout, token, node).await;
            Some((r, layout))
        };
        let redis_round = async {
            let side = redis.as_mut().filter(|s| s.due(etag, &status["redis"]))?;
            let layout = flatten(config, &side.names.root);
            // Following etcd's lease: renewed right before writing, since
            // a large etcd publication may have outlasted the last renewal.
            let renewed = if follows_etcd {
                side.client.follow(&side.names, token, *ttl).await
            } else {
                Ok(())
            };
            let r = match renewed {
                Ok(()) => publish_redis(side, &layout, node).await,
                Err(e) => Err(e),
            };
            Some((r, layout))
        };
        let (etcd_done, redis_done) = tokio::join!(etcd_round, redis_round);
        if let Some((r, layout)) = etcd_done {
            self.settle("etcd", r, &layout, etag);
        }
        if let Some((r, layout)) = redis_done {
            self.settle("redis", r, &layout, etag);
        }
    }

    fn settle(
        &mut self,
        store: &'static str,
        outcome: Result<Outcome, StoreError>,
        layout: &Layout,
        etag: &str,
    ) {
        let metrics = self.metrics.clone();
        match outcome {
            Ok(Outcome::Written { changes, elapsed }) => {
                let keys = match store {
                    "etcd" => self
                        .etcd
                        .as_mut()
                        .expect("store")
                        .written(layout, &changes, etag),
                    _ => self
                        .redis
                        .as_mut()
                        .expect("store")
                        .written(layout, &changes, etag),
                };
                let st = self.status.get_mut(store).expect("status per store");
                st.error = None;
                st.published_etag = Some(etag.to_owned());
                st.keys = keys;
                if !changes.is_empty() {
                    st.last_publication = Some(
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64(),
                    );
                }
                events::KvPublished {
                    store,
                    puts: changes.puts.len(),
                    deletes: changes.deletes.len(),
                    keys,
                    etag,
                    elapsed,
                    left_out: &left_out(layout, &changes),
                }
                .emit(&metrics);
            }
            Ok(Outcome::Fenced) => {
                events::KvFenced { store }.emit(&metrics);
                set_leader(&metrics, &mut self.status, store, false, &self.node);
                match store {
                    "etcd" => self.etcd.as_mut().expect("store").forget(),
                    _ => self.redis.as_mut().expect("store").forget(),
                }
            }
            Err(err) => {
                match store {
                    "etcd" => self.etcd.as_mut().expect("store").forget(),
                    _ => self.redis.as_mut().expect("store").forget(),
                }
                fail(&metrics, &mut self.status, store, &err);
            }
        }
    }
}

impl<C> Side<C> {
    /// Takes in a committed publication; returns how many keys are ours.
    fn written(&mut self, layout: &Layout, changes: &Changes, etag: &str) -> usize {
        let before = self.held.take().unwrap_or_default();
        let held = before.after(layout, changes, &self.names.root);
        let keys = held.keys.len();
        self.held = Some(held);
        self.written = Some(etag.to_owned());
        self.refused_by = changes
            .refused
            .iter()
            .map(|r| traefik_openstack_guest::fold(r).into_owned())
            .collect();
        keys
    }
}

impl<C: KeyLookup> Side<C> {
    /// Looks again for the foreign resources that keep ours out; once one
    /// is gone, the next round writes ours (without waiting for the
    /// configuration to change).
    async fn look_again(&mut self) -> Result<(), StoreError> {
        let Some(held) = &mut self.held else {
            return Ok(());
        };
        let mut gone = false;
        for name in &self.refused_by {
            let Some(keys) = held.foreign.get(name) else {
                continue;
            };
            if !self.client.still_there(&self.names.root, keys).await? {
                held.foreign.remove(name);
                gone = true;
            }
        }
        if gone {
            self.refused_by.clear();
            self.written = None;
        }
        Ok(())
    }

    /// Whether the ownership index has keys; a store that cannot be asked
    /// is taken to have some.
    async fn index_has_keys(&mut self) -> bool {
        let prefix = self.names.owned_prefix();
        self.client.any_under(&prefix).await.unwrap_or(true)
    }
}

/// What the writer asks a store beside reading and writing it.
trait KeyLookup {
    /// Is the foreign resource these keys (under `root`) were read from
    /// still there?
    async fn still_there(&mut self, root: &str, keys: &[String]) -> Result<bool, StoreError>;

    /// Does any key start with `prefix`?
    async fn any_under(&mut self, prefix: &str) -> Result<bool, StoreError>;
}

impl KeyLookup for etcd::Etcd {
    async fn any_under(&mut self, prefix: &str) -> Result<bool, StoreError> {
        self.holds_any_under(prefix).await
    }

    /// Any key under the resources the keys belong to: the resource is
    /// there even if rewritten with other keys.
    async fn still_there(&mut self, root: &str, keys: &[String]) -> Result<bool, StoreError> {
        let resources: std::collections::BTreeSet<&str> = keys
            .iter()
            .filter_map(|k| layout::resource_of(k, root))
            .collect();
        for resource in resources {
            // A key at the resource's own path is one too (`.../Web`), and
            // a range without the `/` would take in `.../Web-2`.
            let path = format!("{root}/{resource}");
            if self.holds_any_under(&format!("{path}/")).await? || self.exists(&path).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl KeyLookup for redis::Redis {
    async fn any_under(&mut self, prefix: &str) -> Result<bool, StoreError> {
        self.holds_any_under(prefix).await
    }

    /// Any of the keys: a prefix would cost a `SCAN` of the keyspace, so a
    /// resource rewritten with only other keys is taken for gone until the
    /// store is read back.
    async fn still_there(&mut self, _root: &str, keys: &[String]) -> Result<bool, StoreError> {
        self.any_exists(keys).await
    }
}

/// What the publication left out: what the layout cannot express, and
/// what a foreign resource keeps out.
fn left_out(layout: &Layout, changes: &Changes) -> Vec<String> {
    let mut out = layout.problems.clone();
    out.extend(changes.refused.iter().map(|r| {
        format!("{r}: the store has a resource of this name (in some case) that no sidecar wrote; ours is left out until it is gone")
    }));
    out
}

/// How a publication to one store ended.
enum Outcome {
    Written {
        changes: Changes,
        elapsed: Duration,
    },
    /// The leader key no longer held our token: nothing was written.
    Fenced,
}

async fn publish_etcd(
    side: &mut Side<etcd::Etcd>,
    layout: &Layout,
    token: &str,
    node: &str,
) -> Result<Outcome, StoreError> {
    let started = Instant::now();
    if side.held.is_none() {
        let (root, index) = side.client.read(&side.names).await?;
        side.held = Some(Held::read(
            &side.names,
            root.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            index.iter().map(String::as_str),
        ));
    }
    let changes = diff(layout, side.held.as_ref().expect("read"), &side.names, node);
    if !changes.is_empty()
        && !side
            .client
            .commit(&changes, Some((&side.names, token)))
            .await?
    {
        return Ok(Outcome::Fenced);
    }
    Ok(Outcome::Written {
        changes,
        elapsed: started.elapsed(),
    })
}

async fn publish_redis(
    side: &mut Side<redis::Redis>,
    layout: &Layout,
    node: &str,
) -> Result<Outcome, StoreError> {
    let started = Instant::now();
    let Some(token) = side.client.token().map(str::to_owned) else {
        return Ok(Outcome::Fenced);
    };
    if side.held.is_none() {
        let (root, index) = side.client.read(&side.names).await?;
        side.held = Some(Held::read(
            &side.names,
            root.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            index.iter().map(String::as_str),
        ));
    }
    let changes = diff(layout, side.held.as_ref().expect("read"), &side.names, node);
    if !changes.is_empty() && !side.client.commit(&changes, &side.names, &token).await? {
        return Ok(Outcome::Fenced);
    }
    Ok(Outcome::Written {
        changes,
        elapsed: started.elapsed(),
    })
}

fn fail(
    metrics: &Metrics,
    status: &mut BTreeMap<&'static str, StoreStatus>,
    store: &'static str,
    err: &StoreError,
) {
    events::KvFailed {
        store,
        reason: err.reason,
        error: &err.message,
    }
    .emit(metrics);
    status.get_mut(store).expect("status per store").error = Some(err.message.clone());
}

/// Whether this sidecar leads `store` after a lease round: what the store
/// said, or after an error what the client last knew (a lease outlives a
/// failed renewal until its TTL); the store's status follows.
fn lease_round(
    metrics: &Metrics,
    status: &mut BTreeMap<&'static str, StoreStatus>,
    store: &'static str,
    round: Result<bool, StoreError>,
    leading: bool,
) -> bool {
    match round {
        Ok(leader) => {
            clear(status, store);
            leader
        }
        Err(err) => {
            fail(metrics, status, store, &err);
            leading
        }
    }
}

fn clear(status: &mut BTreeMap<&'static str, StoreStatus>, store: &'static str) {
    status.get_mut(store).expect("status per store").error = None;
}

fn set_leader(
    metrics: &Metrics,
    status: &mut BTreeMap<&'static str, StoreStatus>,
    store: &'static str,
    leader: bool,
    node: &str,
) {
    let st = status.get_mut(store).expect("status per store");
    if st.leader != leader {
        st.leader = leader;
        events::KvLeadership {
            store,
            leader,
            node,
        }
        .emit(metrics);
    }
}
