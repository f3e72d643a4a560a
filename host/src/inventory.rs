//! The picture of the cloud's instances, kept up to date cheaply.
//!
//! The first refresh lists every server; later ones ask Nova only for what
//! changed since the last listing began (`changes-since`, on Nova's clock,
//! minus a safety margin), which in steady state is one small request.
//! Every `full_sync_interval` a full listing replaces the picture, to heal
//! what `changes-since` cannot show (e.g. a server moved out of the project).
//!
//! A refresh builds the new picture aside and swaps it in only when every
//! request succeeded: a failed refresh leaves the snapshot exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::OpenStackConfig;
use crate::instance::{Interner, Text};
use crate::openstack::nova::{NovaServer, ServerQuery};
use crate::openstack::{self, OpenStack, Tally, keystone, neutron};
use crate::wit;

/// Subtracted from the last listing's start before asking for changes:
/// covers the `Date` header's one-second resolution and updates committed
/// while the listing ran. Repeats cost little: an unchanged server does not
/// count as a change.
const CHANGES_SINCE_MARGIN: Duration = Duration::from_secs(5);

/// How far Nova's `Date` may stray from what the local clock says it should
/// read (the last listing's `Date` plus the local time since) before it is
/// a jump: logged, and never followed forward.
const CLOCK_JUMP: Duration = Duration::from_secs(30);

/// How far ahead of the baseline offset between the clocks a `Date` may be
/// and still be taken as is: its one-second resolution and the latency of a
/// request. Well within [`CHANGES_SINCE_MARGIN`].
const CLOCK_TOLERANCE: Duration = Duration::from_secs(2);

/// How far the baseline offset between the clocks may rise per listing (it
/// falls at once): an API node whose clock runs an hour ahead would take
/// 1,800 listings to be believed, while a `Date` that jumped back, then
/// forward again, is caught up with at this pace.
const CLOCK_RISE: Duration = Duration::from_secs(2);

/// `a - b` in milliseconds.
fn signed_millis(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// A snapshot of the instances, sorted by id.
pub type Instances = Arc<Vec<Arc<wit::Instance>>>;

/// The cloud's instances as last refreshed, and what the next refresh needs to ask only for changes.
pub struct Inventory {
    client: OpenStack,
    all_projects: bool,
    page_size: u32,
    full_sync_interval: Duration,
    neutron_floating_ips: bool,
    /// Nova's picture by id, before Neutron's floating IPs are added.
    /// Instances are shared (`Arc`) with the snapshot and the engine: a
    /// change copies pointers, and an unchanged instance keeps its `Arc`,
    /// which is how the engine tells it has not changed.
    servers: BTreeMap<Text, Arc<wit::Instance>>,
    /// What [`Inventory::instances`] hands out.
    snapshot: Instances,
    /// Local time of the last successful full listing.
    last_full: Option<Instant>,
    /// Nova's time at the start of the last successful listing.
    watermark: Option<SystemTime>,
    /// Local time when that listing began: the watermark plus the time
    /// since is the most Nova's clock can read now.
    watermark_at: Option<Instant>,
    /// Nova's `Date` less the local clock at the last listing, in seconds.
    clock_offset: Option<i64>,
    /// The offset a `Date` is checked against, in milliseconds: the
    /// first listing's, then each listing's if lower, or else at most
    /// [`CLOCK_RISE`] higher than the last.
    clock_baseline: Option<i64>,
    /// Neutron port id -> server id, for floating IPs without `port_details`.
    port_devices: HashMap<String, String>,
    /// The strings servers share (status, project, metadata, ...), held
    /// once; pruned after each full listing.
    interner: std::sync::Mutex<Interner>,
}

/// What one refresh did and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshStats {
    /// A full listing (not `changes-since`).
    pub full: bool,
    /// The snapshot differs from the previous one (always true the first time).
    pub changed: bool,
    /// HTTP exchanges, authentication included.
    pub requests: u32,
    /// Response body bytes.
    pub bytes: u64,
    /// Instances in the snapshot.
    pub total: usize,
    /// Nova's `Date` less the local clock at this listing's start, in
    /// seconds (`None` without a `Date`).
    pub clock_offset: Option<i64>,
}

/// Why a refresh failed (the snapshot is then untouched).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Nova's server listing failed.
    #[error("listing servers ({}): {source}", if *full { "full" } else { "changes" })]
    Servers {
        /// It was a full listing, not `changes-since`.
        full: bool,
        /// Why.
        source: openstack::Error,
    },
    /// Neutron's floating IPs (or ports) could not be listed.
    #[error("listing floating IPs: {source}")]
    FloatingIps {
        /// Why.
        source: openstack::Error,
    },
}

impl RefreshError {
    /// A fixed word for metrics: auth, timeout, network, http_5xx,
    /// http_4xx, malformed, catalog or config.
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::Servers { source, .. } | RefreshError::FloatingIps { source } => {
                source.reason()
            }
        }
    }
}

/// A refresh's result before it is committed.
/// What a refresh found.
enum Next {
    /// Nothing changed; only Nova's clock moved on.
    Unchanged {
        watermark: Option<SystemTime>,
        /// Nova's `Date` when the listing began.
        date: Option<SystemTime>,
    },
    Picture(Picture),
}

/// Where a listing hands each page's new and changed instances as it
/// arrives, so that routing them can begin before the listing ends (see
/// `Incremental::prime`). A closed receiver only stops the handing on.
pub type Feed = std::sync::mpsc::Sender<Vec<Arc<wit::Instance>>>;

struct Picture {
    servers: BTreeMap<Text, Arc<wit::Instance>>,
    snapshot: Vec<Arc<wit::Instance>>,
    watermark: Option<SystemTime>,
    /// Nova's `Date` when the listing began.
    date: Option<SystemTime>,
    port_devices: HashMap<String, String>,
}

/// Nova's picture after a listing, built page by page as they arrive: the
/// listing itself when full, otherwise the current picture with the
/// changes applied (copied at the first change, not before).
struct Fold<'a> {
    full: bool,
    known: &'a BTreeMap<Text, Arc<wit::Instance>>,
    cloud: &'a crate::openstack::clouds::CloudConfig,
    interner: &'a std::sync::Mutex<Interner>,
    servers: Option<BTreeMap<Text, Arc<wit::Instance>>>,
    feed: Option<&'a Feed>,
    /// Servers listed.
    listed: usize,
    /// The newest `updated` seen.
    max_updated: Option<SystemTime>,
}

impl<'a> Fold<'a> {
    fn new(
        full: bool,
        known: &'a BTreeMap<Text, Arc<wit::Instance>>,
        cloud: &'a crate::openstack::clouds::CloudConfig,
        interner: &'a std::sync::Mutex<Interner>,
        feed: Option<&'a Feed>,
    ) -> Self {
        Fold {
            full,
            known,
            cloud,
            interner,
            servers: None,
            feed,
            listed: 0,
            max_updated: None,
        }
    }

    fn page(&mut self, page: Vec<NovaServer>) {
        let region = self.cloud.region.as_deref().unwrap_or_default();
        let (full, known) = (self.full, self.known);
        let servers = self.servers.get_or_insert_with(|| match full {
            true => BTreeMap::new(),
            false => known.clone(),
        });
        self.listed += page.len();
        let mut fed = Vec::new();
        let mut interner = self.interner.lock().unwrap_or_else(|p| p.into_inner());
        for server in page {
            self.max_updated = self.max_updated.max(keystone::parse_time(&server.updated));
            if server.is_deleted() {
                servers.remove(server.id.as_str());
            } else if server.is_partial()
                && let Some((id, known)) = known.get_key_value(server.id.as_str())
            {
                // Its cell is down: what we knew beats an empty record.
                servers.insert(id.clone(), known.clone());
            } else {
                let instance = wit::Instance::from_model(
                    server.into_instance(&self.cloud.name, region),
                    &mut interner,
                );
                // An instance Nova reports unchanged keeps its `Arc`: the
                // engine then knows without comparing that it is the same.
                let same = known.get(&instance.id).filter(|k| ***k == instance);
                let arc = match same {
                    Some(same) => same.clone(),
                    None => {
                        let arc = Arc::new(instance);
                        if self.feed.is_some() {
                            fed.push(arc.clone());
                        }
                        arc
                    }
                };
                servers.insert(arc.id.clone(), arc);
            }
        }
        if let Some(feed) = self.feed
            && !fed.is_empty()
        {
            let _ = feed.send(fed);
        }
    }

    fn finish(self) -> BTreeMap<Text, Arc<wit::Instance>> {
        match (self.servers, self.full) {
            (Some(mut s), true) => {
                // Filled in Nova's order, not the map's.
                if crate::memory::worth_compacting(s.len(), s.len()) {
                    crate::memory::compact_map(&mut s);
                }
                s
            }
            (Some(s), false) => s,
            (None, true) => BTreeMap::new(),
            (None, false) => self.known.clone(),
        }
    }
}

impl Inventory {
    /// Makes the next refresh a full listing, as after `full_sync_interval`.
    #[cfg(test)]
    pub(crate) fn request_full_sync(&mut self) {
        self.last_full = None;
    }

    /// An empty inventory of the cloud `client` speaks to; the first refresh fills it.
    pub fn new(client: OpenStack, cfg: &OpenStackConfig) -> Self {
        Self {
            client,
            all_projects: cfg.all_projects,
            page_size: cfg.page_size,
            full_sync_interval: cfg.full_sync_interval,
            neutron_floating_ips: cfg.neutron_floating_ips,
            servers: BTreeMap::new(),
            snapshot: Arc::new(Vec::new()),
            last_full: None,
            watermark: None,
            watermark_at: None,
            clock_offset: None,
            clock_baseline: None,
            port_devices: HashMap::new(),
            interner: Default::default(),
        }
    }

    /// The current snapshot, sorted by instance id.
    pub fn instances(&self) -> Instances {
        self.snapshot.clone()
    }

    /// One refresh: a full listing on the first call and every
    /// `full_sync_interval`, otherwise only what changed. On error the
    /// snapshot is untouched.
    pub async fn refresh(&mut self) -> Result<RefreshStats, RefreshError> {
        self.refresh_feeding(None).await
    }

    /// [`refresh`](Self::refresh), handing each page's new and changed
    /// instances to `feed` as it arrives. Not with Neutron's floating IPs:
    /// they are attached once the listing ends, so the instances served
    /// are not those of the pages.
    pub async fn refresh_feeding(
        &mut self,
        feed: Option<&Feed>,
    ) -> Result<RefreshStats, RefreshError> {
        let feed = feed.filter(|_| !self.neutron_floating_ips);
        let first = self.last_full.is_none();
        let full = self.watermark.is_none()
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= self.full_sync_interval);
        let began = Instant::now();
        let began_wall = SystemTime::now();
        let mut tally = Tally::default();
        let next = self.build(full, &mut tally, feed).await?;
        let (listed, date) = match &next {
            Next::Unchanged { watermark, date } => (*watermark, *date),
            Next::Picture(p) => (p.watermark, p.date),
        };
        let watermark = self.next_watermark(listed, date, began, began_wall);
        let changed = match next {
            Next::Unchanged { .. } => false,
            Next::Picture(picture) => {
                let changed = first || *self.snapshot != picture.snapshot;
                if changed {
                    self.snapshot = Arc::new(picture.snapshot);
                }
                self.servers = picture.servers;
                self.port_devices = picture.port_devices;
                changed
            }
        };
        self.watermark = watermark;
        self.watermark_at = Some(began);
        if full {
            // Counted from the end: a listing that takes longer than the
            // interval (a slow Nova, a large cloud) would otherwise make
            // every refresh a full one, and each change wait for a whole
            // listing instead of one refresh interval.
            self.last_full = Some(Instant::now());
            let took = began.elapsed();
            if !first && took > self.full_sync_interval {
                tracing::warn!(
                    took = ?took,
                    full_sync_interval = ?self.full_sync_interval,
                    "a full listing took longer than full_sync_interval; changes made meanwhile wait for it to end"
                );
            }
            // Strings of servers gone or changed since the last full
            // listing, held only by the interner (after the first one
            // there is nothing to forget).
            if !first {
                self.interner
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .prune();
            }
        }
        let stats = RefreshStats {
            full,
            changed,
            requests: tally.requests,
            bytes: tally.bytes,
            total: self.snapshot.len(),
            clock_offset: self.clock_offset,
        };
        tracing::debug!(?stats, "inventory refreshed");
        Ok(stats)
    }

    /// The watermark after a listing that began at `began` (`began_wall` on
    /// the local clock) and found `listed`, Nova's `Date` being `date`.
    ///
    /// A `Date` jumping ahead (a skewed API node, a clock set wrong) must
    /// not become the watermark: `changes-since` would skip every change
    /// until that time comes, or until a full listing. So the watermark is
    /// never later than the last one plus the local time since, unless it
    /// agrees with the baseline offset between Nova's clock and the local
    /// one (which is how it catches up after a jump back).
    /// A `Date` behind is followed: asking for more changes than needed
    /// costs requests, never a change.
    fn next_watermark(
        &mut self,
        listed: Option<SystemTime>,
        date: Option<SystemTime>,
        began: Instant,
        began_wall: SystemTime,
    ) -> Option<SystemTime> {
        // This listing's `Date` is judged against the baseline before it.
        let baseline = self.clock_baseline;
        if let Some(date) = date {
            let offset_ms = signed_millis(date, began_wall);
            let offset = offset_ms.div_euclid(1000);
            if let Some(before) = self.clock_offset
                && offset.abs_diff(before) > CLOCK_JUMP.as_secs()
            {
                tracing::warn!(
                    cloud = %self.client.cloud().name,
                    offset_seconds = offset,
                    before_seconds = before,
                    "Nova's Date jumped; changes-since does not follow it ahead"
                );
            }
            self.clock_offset = Some(offset);
            let rise = CLOCK_RISE.as_millis() as i64;
            self.clock_baseline = Some(match self.clock_baseline {
                Some(base) => offset_ms.min(base + rise),
                None => offset_ms,
            });
        }
        let (Some(listed), Some(last), Some(at)) = (listed, self.watermark, self.watermark_at)
        else {
            return listed.or(self.watermark);
        };
        // what Nova's clock reads now if it kept the baseline offset (the
        // `Date`'s one-second resolution and the request's latency allowed)
        let agrees = baseline.or(self.clock_baseline).is_some_and(|base| {
            signed_millis(listed, began_wall) <= base + CLOCK_TOLERANCE.as_millis() as i64
        });
        let most = last + began.saturating_duration_since(at);
        Some(if agrees { listed } else { listed.min(most) })
    }

    /// The next picture, built aside from the current one.
    async fn build(
        &self,
        full: bool,
        tally: &mut Tally,
        feed: Option<&Feed>,
    ) -> Result<Next, RefreshError> {
        let mut fold = Fold::new(
            full,
            &self.servers,
            self.client.cloud(),
            &self.interner,
            feed,
        );
        let started = self.list_servers(full, tally, &mut fold).await?;
        // The steady state: Nova reports no change and no Neutron lookup can
        // bring one. Copying the whole picture to find that out would cost
        // more than the request itself.
        if !full && fold.listed == 0 && !self.neutron_floating_ips {
            return Ok(Next::Unchanged {
                watermark: started.or(self.watermark),
                date: started,
            });
        }
        // Nova's clock when the listing began; failing that the newest
        // change seen (never moving backwards); failing that ours.
        let watermark = started
            .or_else(|| fold.max_updated.max(self.watermark))
            .or_else(|| Some(SystemTime::now()));
        let servers = fold.finish();
        let (snapshot, port_devices) = match self.neutron_floating_ips {
            true => {
                let mut published = servers.clone();
                let ports = self
                    .attach_floating_ips(full, &mut published, tally)
                    .await?;
                (published.into_values().collect(), ports)
            }
            false => (servers.values().cloned().collect(), HashMap::new()),
        };
        Ok(Next::Picture(Picture {
            servers,
            snapshot,
            watermark,
            date: started,
            port_devices,
        }))
    }

    /// Every server (`full`), or those changed since the watermark, folded
    /// into `fold` page by page.
    async fn list_servers(
        &self,
        full: bool,
        tally: &mut Tally,
        fold: &mut Fold<'_>,
    ) -> Result<Option<SystemTime>, RefreshError> {
        let query = ServerQuery {
            all_projects: self.all_projects,
            changes_since: match full {
                true => None,
                false => self.watermark.map(|w| w - CHANGES_SINCE_MARGIN),
            },
            page_size: self.page_size,
        };
        self.client
            .list_servers_paged(&query, tally, |page| fold.page(page))
            .await
            .map_err(|source| RefreshError::Servers { full, source })
    }

    /// Adds Neutron's floating IPs to `published`; returns the port ->
    /// server map they were matched with.
    async fn attach_floating_ips(
        &self,
        full: bool,
        published: &mut BTreeMap<Text, Arc<wit::Instance>>,
        tally: &mut Tally,
    ) -> Result<HashMap<String, String>, RefreshError> {
        let fail = |source| RefreshError::FloatingIps { source };
        let fips = self
            .client
            .list_floating_ips(self.all_projects, tally)
            .await
            .map_err(fail)?;
        // Ports are re-read at each full sync (ports move between servers)
        // and otherwise only for a port never seen.
        let mut port_devices = match full {
            true => HashMap::new(),
            false => self.port_devices.clone(),
        };
        if neutron::needs_ports(&fips, &port_devices) {
            port_devices = self
                .client
                .port_devices(self.all_projects, tally)
                .await
                .map_err(fail)?;
        }
        neutron::attach_floating_ips(published, &fips, &port_devices);
        Ok(port_devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::testing::fake_cloud::{Canned, FakeCloud, server, servers};

    fn config(page_size: u32) -> OpenStackConfig {
        OpenStackConfig {
            page_size,
            request_timeout: Duration::from_millis(500),
            ..OpenStackConfig::default()
        }
    }

    /// A fake cloud of five servers whose `Date` reads 2023-11-14T22:13:20Z
    /// plus `ahead`; and that `Date`.
    async fn five_servers_on_nova_time(ahead: Duration) -> (FakeCloud, SystemTime) {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + ahead;
        fake.with(|s| s.date = Some(date));
        (fake, date)
    }

    async fn inventory(fake: &FakeCloud, cfg: &OpenStackConfig) -> (Inventory, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let client =
            OpenStack::new(fake.cloud_config(), cfg.request_timeout, metrics.clone()).unwrap();
        (Inventory::new(client, cfg), metrics)
    }

    fn ids(inv: &Inventory) -> Vec<String> {
        inv.instances().iter().map(|i| i.id.to_string()).collect()
    }

    #[tokio::test]
    async fn first_refresh_lists_all_pages_with_markers_it_builds_itself() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let (mut inv, metrics) = inventory(&fake, &config(2)).await;
        let stats = inv.refresh().await.unwrap();
        assert_eq!(
            (stats.full, stats.changed, stats.total, stats.requests),
            (true, true, 5, 5)
        );
        assert!(stats.bytes > 0);
        assert_eq!(ids(&inv), ["id-0", "id-1", "id-2", "id-3", "id-4"]);
        let reqs = fake.take_requests();
        let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths[..2], ["/v3/auth/tokens", "/v2.1/"]);
        assert_eq!(reqs[0].method, "POST");
        let pages: Vec<_> = reqs[2..]
            .iter()
            .map(|r| (r.param("limit"), r.param("marker")))
            .collect();
        // servers_links pointed at nova-internal.invalid: not followed.
        assert_eq!(
            pages,
            [
                (Some("2"), None),
                (Some("2"), Some("id-3")),
                (Some("2"), Some("id-1"))
            ]
        );
        for page in &reqs[2..] {
            assert_eq!(
                page.path,
                format!(
                    "/v2.1/{}/servers/detail",
                    crate::testing::fake_cloud::PROJECT
                )
            );
            assert_eq!(page.headers["openstack-api-version"], "compute 2.100");
            assert_eq!(page.headers["x-openstack-nova-api-version"], "2.100");
            assert_eq!(page.param("all_tenants"), None);
            assert_eq!(page.headers["x-auth-token"], "gAAAAA-token-1");
        }
        let text = metrics.encode();
        assert!(
            text.contains(r#"service="compute",status="200"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"service="identity",status="201"} 1"#),
            "{text}"
        );
        let i = &inv.instances()[0];
        assert_eq!((&*i.cloud, &*i.region), ("fake", "RegionOne"));
    }

    #[tokio::test]
    async fn steady_refresh_is_one_request_and_reports_no_change() {
        let (fake, _) = five_servers_on_nova_time(Duration::ZERO).await;
        let (mut inv, _) = inventory(&fake, &config(1000)).await;
        inv.refresh().await.unwrap();
        let before = inv.instances();
        fake.take_requests();
        let stats = inv.refresh().await.unwrap();
        assert_eq!(
            (stats.full, stats.changed, stats.requests, stats.total),
            (false, false, 1, 5)
        );
        assert!(Arc::ptr_eq(&before, &inv.instances()));
        let reqs = fake.take_requests();
        // Nova's clock at the listing start, less the margin.
        assert_eq!(reqs[0].param("changes-since"), Some("2023-11-14T22:13:15Z"));
        assert_eq!(reqs[0].headers["x-auth-token"], "gAAAAA-token-1");
    }

    /// Nova's `Date` jumping a day ahead must not become the watermark:
    /// `changes-since` would skip every change until then. One jumping
    /// back is followed (a wider window, nothing missed). Both show in the
    /// stats' clock offset.
    #[tokio::test]
    async fn a_date_jumping_ahead_does_not_move_changes_since_ahead() {
        let (fake, nova_now) = five_servers_on_nova_time(Duration::ZERO).await;
        let (mut inv, _) = inventory(&fake, &config(1000)).await;
        let first = inv.refresh().await.unwrap();
        let offset = first.clock_offset.unwrap();
        // a day ahead, twice
        fake.with(|s| s.date = Some(nova_now + Duration::from_secs(86_400)));
        let skewed = inv.refresh().await.unwrap();
        assert!(
            skewed.clock_offset.unwrap() - offset >= 86_399,
            "{skewed:?}"
        );
        inv.refresh().await.unwrap();
        let reqs = fake.take_requests();
        let since: Vec<_> = reqs
            .iter()
            .filter_map(|r| r.param("changes-since"))
            .collect();
        // the watermark stayed on the local clock (the test takes well
        // under a second)
        assert_eq!(since, ["2023-11-14T22:13:15Z", "2023-11-14T22:13:15Z"]);
        // 10 minutes back: followed
        fake.with(|s| s.date = Some(nova_now - Duration::from_secs(600)));
        let back = inv.refresh().await.unwrap();
        assert!(back.clock_offset.unwrap() - offset <= -599, "{back:?}");
        inv.refresh().await.unwrap();
        let reqs = fake.take_requests();
        assert_eq!(reqs[1].param("changes-since"), Some("2023-11-14T22:03:15Z"));
        // back to normal, as the first listing saw it: caught up once the
        // baseline has risen back, 2 s a listing
        fake.with(|s| s.date = Some(nova_now));
        for _ in 0..600 / CLOCK_RISE.as_secs() {
            inv.refresh().await.unwrap();
        }
        fake.take_requests();
        inv.refresh().await.unwrap();
        let reqs = fake.take_requests();
        assert_eq!(reqs[0].param("changes-since"), Some("2023-11-14T22:13:15Z"));
    }

    /// The first listing's `Date` from a node a day ahead: once another
    /// node has answered, that node's `Date` is not followed again.
    #[tokio::test]
    async fn a_first_listing_from_a_node_ahead_does_not_set_the_baseline_for_good() {
        let (fake, ahead) = five_servers_on_nova_time(Duration::from_secs(86_400)).await;
        let nova_now = ahead - Duration::from_secs(86_400);
        let (mut inv, _) = inventory(&fake, &config(1000)).await;
        inv.refresh().await.unwrap();
        // a node on time answers (followed: a day back), then the one ahead,
        // twenty times in a row
        fake.with(|s| s.date = Some(nova_now));
        inv.refresh().await.unwrap();
        fake.with(|s| s.date = Some(ahead));
        for _ in 0..20 {
            inv.refresh().await.unwrap();
        }
        let reqs = fake.take_requests();
        let since: Vec<_> = reqs
            .iter()
            .filter_map(|r| r.param("changes-since"))
            .collect();
        // the node ahead's `Date`s stayed out of the watermark
        assert_eq!(since.len(), 21);
        assert_eq!(since[0], "2023-11-15T22:13:15Z");
        assert!(
            since[1..].iter().all(|s| *s == "2023-11-14T22:13:15Z"),
            "{since:?}"
        );
    }

    #[tokio::test]
    async fn changes_since_merges_updates_new_servers_and_deletions() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        fake.with(|s| s.date = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200))); // 2024-01-01
        let (mut inv, _) = inventory(&fake, &config(2)).await;
        inv.refresh().await.unwrap();
        let before = inv.instances();
        fake.with(|s| {
            let later = "2024-01-01T00:01:00Z";
            s.servers[0]["name"] = "vm-4-renamed".into(); // id-4
            s.servers[0]["updated"] = later.into();
            s.servers[2]["status"] = "DELETED".into(); // id-2
            s.servers[2]["OS-EXT-STS:vm_state"] = "deleted".into();
            s.servers[2]["updated"] = later.into();
            s.servers.insert(0, server("id-5", "vm-5", later));
        });
        let stats = inv.refresh().await.unwrap();
        assert_eq!((stats.full, stats.changed, stats.total), (false, true, 5));
        assert_eq!(ids(&inv), ["id-0", "id-1", "id-3", "id-4", "id-5"]);
        assert_eq!(&*inv.instances()[3].name, "vm-4-renamed");
        // Unchanged instances are shared, not copied: that is how the
        // engine knows, without comparing, that they did not change.
        let after = inv.instances();
        for (old, new) in [(0, 0), (1, 1), (3, 2)] {
            assert!(Arc::ptr_eq(&before[old], &after[new]), "{}", after[new].id);
        }
        assert!(!Arc::ptr_eq(&before[4], &after[3]));
    }

    #[tokio::test]
    async fn each_page_hands_on_its_new_and_changed_instances_as_served() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let (mut inv, _) = inventory(&fake, &config(2)).await;
        let (feed, pages) = std::sync::mpsc::channel();
        inv.refresh_feeding(Some(&feed)).await.unwrap();
        let fed: Vec<Vec<Arc<wit::Instance>>> = pages.try_iter().collect();
        // Three pages, in Nova's order, each the very instances served.
        let ids: Vec<Vec<&str>> = fed
            .iter()
            .map(|p| p.iter().map(|i| &*i.id).collect())
            .collect();
        assert_eq!(
            ids,
            [vec!["id-4", "id-3"], vec!["id-2", "id-1"], vec!["id-0"]]
        );
        let served = inv.instances();
        for i in fed.iter().flatten() {
            assert!(served.iter().any(|s| Arc::ptr_eq(s, i)), "{}", i.id);
        }

        // A full listing again: only the server that changed is handed on.
        fake.with(|s| s.servers[1]["name"] = "vm-3-renamed".into());
        inv.request_full_sync();
        inv.refresh_feeding(Some(&feed)).await.unwrap();
        let fed: Vec<_> = pages.try_iter().flatten().collect();
        assert_eq!(fed.len(), 1);
        assert_eq!(&*fed[0].name, "vm-3-renamed");

        // With Neutron's floating IPs, what is served is made after the
        // listing: nothing is handed on.
        let mut cfg = config(2);
        cfg.neutron_floating_ips = true;
        let (mut inv, _) = inventory(&fake, &cfg).await;
        inv.refresh_feeding(Some(&feed)).await.unwrap();
        assert_eq!(inv.instances().len(), 5);
        assert_eq!(pages.try_iter().count(), 0);
    }

    #[tokio::test]
    async fn full_sync_interval_brings_back_a_full_listing() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let mut cfg = config(1000);
        cfg.full_sync_interval = Duration::ZERO;
        let (mut inv, _) = inventory(&fake, &cfg).await;
        inv.refresh().await.unwrap();
        let before = inv.instances();
        // A server gone without a trace in changes-since (e.g. moved away).
        fake.with(|s| s.servers.remove(0));
        let stats = inv.refresh().await.unwrap();
        assert!(stats.full && stats.changed);
        assert_eq!(stats.total, 4);
        // A full listing too keeps the Arcs of what did not change.
        let after = inv.instances();
        assert!(
            after
                .iter()
                .all(|a| before.iter().any(|b| Arc::ptr_eq(a, b)))
        );
    }

    #[tokio::test]
    async fn a_full_listing_slower_than_the_interval_is_followed_by_changes_since() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let mut cfg = config(1000);
        cfg.full_sync_interval = Duration::from_millis(300);
        cfg.request_timeout = Duration::from_secs(5);
        let (mut inv, _) = inventory(&fake, &cfg).await;
        let body = serde_json::json!({ "servers": servers(5) }).to_string();
        let mut slow = Canned::status(200, &body).header("date", "Tue, 14 Nov 2023 22:13:20 GMT");
        slow.delay = Duration::from_millis(600);
        fake.fault("/servers/detail", 0, slow);
        assert!(inv.refresh().await.unwrap().full);
        // Counted from its start, the listing's 600 ms would be past the
        // 300 ms interval already: every refresh a full one.
        assert!(!inv.refresh().await.unwrap().full);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(inv.refresh().await.unwrap().full);
    }

    /// Nova stamps `Date` once the first page is made, after it read the
    /// servers: a change committed meanwhile is older than `Date`, and the
    /// next changes-since must still ask for it.
    #[tokio::test]
    async fn a_slow_first_page_takes_the_watermark_back_by_its_round_trip() {
        let (fake, _) = five_servers_on_nova_time(Duration::ZERO).await;
        let mut cfg = config(1000);
        cfg.request_timeout = Duration::from_secs(5);
        let (mut inv, _) = inventory(&fake, &cfg).await;
        let body = serde_json::json!({ "servers": servers(5) }).to_string();
        let mut slow = Canned::status(200, &body);
        slow.delay = Duration::from_millis(1200);
        fake.fault("/servers/detail", 0, slow);
        assert!(inv.refresh().await.unwrap().full);
        fake.take_requests();
        assert!(!inv.refresh().await.unwrap().full);
        let reqs = fake.take_requests();
        // 22:13:20, less the whole seconds the first page took (one, or
        // more on a loaded machine), less the margin.
        let since = reqs[0].param("changes-since").unwrap();
        assert!(
            ("2023-11-14T22:13:00Z"..="2023-11-14T22:13:14Z").contains(&since),
            "{since}"
        );
    }

    #[tokio::test]
    async fn failures_leave_the_snapshot_untouched() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        let mut cfg = config(2);
        cfg.request_timeout = Duration::from_millis(100);
        let (mut inv, metrics) = inventory(&fake, &cfg).await;
        inv.refresh().await.unwrap();
        let before = inv.instances();
        fake.with(|s| s.servers.truncate(3));
        let mut slow = Canned::status(200, "{}");
        slow.delay = Duration::from_secs(5);
        let cases = [
            (
                "http_5xx",
                Canned::status(500, r#"{"computeFault": {"code": 500, "message": "boom"}}"#),
                1,
            ),
            (
                "malformed",
                Canned::status(200, r#"{"servers": [{"id": 5"#),
                0,
            ),
            (
                "malformed",
                Canned::status(200, r#"{"servers": "nope"}"#),
                1,
            ),
            ("timeout", slow, 0),
            ("http_4xx", Canned::status(404, "{}"), 0),
        ];
        for (reason, reply, skip) in cases {
            // Force a full, paginated listing so `skip` lands mid-pagination.
            inv.last_full = None;
            fake.fault("/servers/detail", skip, reply);
            let err = inv.refresh().await.unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
            assert!(Arc::ptr_eq(&before, &inv.instances()));
            assert_eq!(inv.servers.len(), 5);
        }
        assert!(
            metrics
                .encode()
                .contains(r#"service="compute",status="timeout"} 1"#)
        );
        // And the next good refresh picks the new state up.
        let stats = inv.refresh().await.unwrap();
        assert!(stats.full && stats.changed);
        assert_eq!(stats.total, 3);
    }

    #[tokio::test]
    async fn all_projects_and_no_date_header() {
        let fake = FakeCloud::start().await;
        fake.set_servers(servers(5));
        fake.with(|s| s.date = None);
        let mut cfg = config(1000);
        cfg.all_projects = true;
        let (mut inv, _) = inventory(&fake, &cfg).await;
        inv.refresh().await.unwrap();
        inv.refresh().await.unwrap();
        let reqs = fake.take_requests();
        assert_eq!(reqs[2].param("all_tenants"), Some("1"));
        // Without Nova's clock, the newest `updated` seen (less the margin).
        assert_eq!(reqs[3].param("changes-since"), Some("2023-12-31T23:59:55Z"));
    }

    /// A cloud of one server whose fixed address 10.0.0.3 the Neutron
    /// sample's floating IP 172.24.4.228 NATs.
    async fn neutron_sample_cloud() -> FakeCloud {
        let fake = FakeCloud::start().await;
        let mut vm = server(
            "8e3941b4-a6e9-499f-a1ac-2a4662025cba",
            "web",
            "2024-01-01T00:00:00Z",
        );
        vm["addresses"]["private"][0]["addr"] = "10.0.0.3".into();
        fake.set_servers(vec![vm]);
        fake
    }

    #[tokio::test]
    async fn neutron_floating_ips_are_attached_and_cost_one_request_when_steady() {
        let fake = neutron_sample_cloud().await;
        let mut cfg = config(1000);
        cfg.neutron_floating_ips = true;
        let (mut inv, _) = inventory(&fake, &cfg).await;
        inv.refresh().await.unwrap();
        let addrs = inv.instances()[0].addresses.clone();
        assert_eq!(addrs.len(), 2);
        assert_eq!(
            (
                &*addrs[1].ip,
                addrs[1].kind,
                &*addrs[1].network,
                addrs[1].mac.as_deref()
            ),
            (
                "172.24.4.228",
                wit::AddressKind::Floating,
                "private",
                Some("00:0c:29:0d:11:74")
            )
        );
        let reqs = fake.take_requests();
        let fip = reqs.iter().find(|r| r.path == "/v2.0/floatingips").unwrap();
        assert_eq!(
            fip.param("project_id"),
            Some(crate::testing::fake_cloud::PROJECT)
        );
        assert!(
            !reqs.iter().any(|r| r.path == "/v2.0/ports"),
            "port_details made ports unnecessary"
        );

        let stats = inv.refresh().await.unwrap();
        assert_eq!((stats.requests, stats.changed), (2, false));

        // A Neutron without port_details: one ports listing, then cached.
        fake.with(|s| {
            s.floating_ips["floatingips"][0]["port_details"] = serde_json::Value::Null;
            s.ports["ports"][0]["id"] = "ce705c24-c1ef-408a-bda3-7bbd946164ab".into();
            s.ports["ports"][0]["device_id"] = "8e3941b4-a6e9-499f-a1ac-2a4662025cba".into();
        });
        fake.take_requests();
        let stats = inv.refresh().await.unwrap();
        assert_eq!((stats.requests, stats.changed), (3, false));
        let stats = inv.refresh().await.unwrap();
        assert_eq!(stats.requests, 2);
    }

    /// Neutron pages its answers when the deployment sets
    /// `pagination_max_limit`: a floating IP on a later page is attached
    /// too, asked for on the configured endpoint, not the link's host.
    #[tokio::test]
    async fn neutron_pages_are_followed_on_the_configured_endpoint() {
        let fake = neutron_sample_cloud().await;
        let first = serde_json::json!({
            "floatingips": [],
            "floatingips_links": [{
                "rel": "next",
                "href": "http://neutron.internal:9696/v2.0/floatingips?limit=1&marker=m1"
            }]
        });
        fake.fault(
            "/v2.0/floatingips",
            0,
            Canned::status(200, &first.to_string()),
        );
        let mut cfg = config(1000);
        cfg.neutron_floating_ips = true;
        let (mut inv, _) = inventory(&fake, &cfg).await;
        inv.refresh().await.unwrap();
        let floating = inv.instances()[0]
            .addresses
            .iter()
            .filter(|a| &*a.ip == "172.24.4.228")
            .count();
        assert_eq!(floating, 1, "the second page's floating IP");
        let pages: Vec<_> = fake
            .take_requests()
            .into_iter()
            .filter(|r| r.path == "/v2.0/floatingips")
            .collect();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].param("marker"), Some("m1"));
        assert_eq!(
            pages[1].param("project_id"),
            Some(crate::testing::fake_cloud::PROJECT)
        );
    }
}
