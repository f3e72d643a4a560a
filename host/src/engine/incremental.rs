//! Generation that re-runs only what changed, for modules that export
//! `phases`.
//!
//! Each instance's part (phase one) is kept for as long as the instance,
//! the module and the settings are unchanged. Parts that share a key form a
//! group; each group's merge (phase two) is kept until one of its members
//! changes or leaves, or a new part shares a key with it. A run therefore
//! routes the changed instances, merges the groups they touch, and joins
//! the groups' entries (see `join`). One changed VM among 100,000 costs a
//! `route` of one instance and a `merge` of its group.
//!
//! What is kept is only a cache: a failed run forgets it (the next run
//! starts over) and never touches what is published. Parts themselves are
//! not kept (about a kilobyte each, most of the cache at 100k instances):
//! a slot keeps the hashes of its part's keys, and the rare unchanged
//! member of a group that must be merged again is routed again (`route`
//! is a pure function; a module whose keys then differ is refused).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::join::{GroupId, Joined, Packed, Path};
use super::{Engine, Findings, GenerateError, Generated, LogLine, Module, Piece, Route};
use crate::wit::{Diagnostic, Instance, Merged, Part};

/// Instances per `route` call: small enough that a call's memory stays
/// small, large enough that instantiation is a small share of it.
const ROUTE_BATCH: usize = 1024;
/// Parts per `merge` call (a larger group goes alone).
const MERGE_BATCH: usize = 2048;

/// What the last successful run left, to be reused by the next.
#[derive(Default)]
pub struct Incremental {
    /// The module (digest) and settings the parts were made with.
    made_with: Option<(String, Arc<str>)>,
    slots: BTreeMap<Arc<str>, Slot>,
    /// Hash of a key -> the instances whose parts have it (almost always
    /// one: held inline). A collision only merges two groups that need not
    /// be, which changes nothing but cost.
    index: HashMap<u64, SmallVec<[Arc<str>; 1]>>,
    hasher: RandomState,
    groups: HashMap<GroupId, Group>,
    next_group: GroupId,
    joined: Joined,
    /// Instances routed into `slots` since it was last compacted.
    inserted: usize,
    /// What `prime` did since the last run, and how long it took,
    /// reported with that run.
    primed: Work,
    primed_for: Duration,
    primed_logs: Vec<LogLine>,
}

struct Slot {
    instance: Arc<Instance>,
    /// Hashes of its part's keys.
    keys: Box<[u64]>,
    group: GroupId,
}

impl Slot {
    /// Whether `i` is the instance this slot was made from. An equal one
    /// behind a new `Arc` takes over the slot's, so that only one copy is
    /// held.
    fn holds(&mut self, i: &Arc<Instance>) -> bool {
        if Arc::ptr_eq(&self.instance, i) {
            return true;
        }
        let same = *self.instance == **i;
        if same {
            self.instance = i.clone();
        }
        same
    }
}

/// Groups merged in one call: their members, and their parts until a
/// worker takes them.
#[derive(Default)]
struct Batch {
    members: Vec<Vec<Arc<str>>>,
    parts: std::sync::Mutex<Vec<Vec<Part>>>,
}

/// One group's merge, as held.
struct Group {
    /// Almost always one: held inline.
    members: SmallVec<[Arc<str>; 1]>,
    paths: Vec<Path>,
    /// Its members' diagnostics (both phases) and routes, shared with
    /// every run's output until the group is merged again.
    findings: Arc<Piece>,
}

/// What one run did, for logs and benches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Instances routed (phase one): changed ones, and unchanged members
    /// of the groups merged again.
    pub routed: usize,
    /// Groups merged again (phase two), and the parts they held.
    pub groups: usize,
    /// Parts in those groups.
    pub merged_parts: usize,
    /// Of `routed`, the instances routed by `prime`, as their listing's
    /// pages came in.
    pub primed: usize,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.routed += other.routed;
        self.groups += other.groups;
        self.merged_parts += other.merged_parts;
        self.primed += other.primed;
    }
}

impl Incremental {
    /// Brings the configuration up to `instances`, re-running only what
    /// changed since the last successful run with this module and these
    /// settings (everything, the first time), and what `prime` did not do
    /// already.
    pub fn run(
        &mut self,
        engine: &Engine,
        module: &Module,
        settings: &Arc<str>,
        instances: &[Arc<Instance>],
    ) -> Result<(Generated, Work), GenerateError> {
        self.made_with(module, settings);
        if instances.is_empty() {
            // Neither phase would be called, so settings the module refuses
            // (or a module that traps on every call) would pass unseen:
            // the module's own `generate` of nothing decides, and the cache
            // starts over empty.
            let made_with = self.made_with.take();
            *self = Self {
                made_with,
                ..Self::default()
            };
            let ran = engine.generate(module, settings, instances);
            return self.forget_on_error(ran.map(|g| (g, Work::default())));
        }
        let ran = self.apply(engine, module, settings, instances);
        self.forget_on_error(ran)
    }

    /// Routes and merges `page`, a part of the instances a coming `run`
    /// will be given (a page of a listing, as it arrives), so that the run
    /// finds them done. Nothing is removed and no configuration is made:
    /// until that run, what is held is a cache like any other, and the run
    /// re-runs whatever differs from what it is given.
    pub fn prime(
        &mut self,
        engine: &Engine,
        module: &Module,
        settings: &Arc<str>,
        page: &[Arc<Instance>],
    ) -> Result<Work, GenerateError> {
        let started = Instant::now();
        self.made_with(module, settings);
        let changed = self.changed_in(page);
        let mut logs = Vec::new();
        let ran = self.advance(engine, module, settings, changed, Vec::new(), &mut logs);
        let mut work = self.forget_on_error(ran)?;
        work.primed = work.routed;
        self.primed += work;
        self.primed_for += started.elapsed();
        self.primed_logs.append(&mut logs);
        Ok(work)
    }

    /// Starts over unless the cache was made with this module and these
    /// settings.
    fn made_with(&mut self, module: &Module, settings: &Arc<str>) {
        let made_with = (module.digest.clone(), settings.clone());
        if self.made_with.as_ref() != Some(&made_with) {
            *self = Self::default();
            self.made_with = Some(made_with);
        }
    }

    fn forget_on_error<T>(&mut self, ran: Result<T, GenerateError>) -> Result<T, GenerateError> {
        if ran.is_err() {
            // Half-applied: start over next time.
            *self = Self::default();
        }
        ran
    }

    fn apply(
        &mut self,
        engine: &Engine,
        module: &Module,
        settings: &str,
        instances: &[Arc<Instance>],
    ) -> Result<(Generated, Work), GenerateError> {
        let started = Instant::now();
        let mut logs = std::mem::take(&mut self.primed_logs);
        let (changed, removed) = self.diff(instances);
        let diffed = started.elapsed();
        let mut work = self.advance(engine, module, settings, changed, removed, &mut logs)?;
        let advanced = started.elapsed();
        if crate::memory::worth_compacting(self.slots.len(), self.inserted) {
            crate::memory::compact_map(&mut self.slots);
            self.inserted = 0;
        }
        let primed = std::mem::take(&mut self.primed);
        work += primed;
        let mut out = self.output(logs, started);
        // The module's time for this configuration, the pages routed as
        // they came in included: what `generate` would have taken.
        out.duration += std::mem::take(&mut self.primed_for);
        tracing::debug!(
            ?work,
            ?primed,
            ?diffed,
            ?advanced,
            done = ?started.elapsed(),
            "incremental run"
        );
        Ok((out, work))
    }

    /// Routes `changed`, forgets `removed`, and merges every group either
    /// touches.
    fn advance(
        &mut self,
        engine: &Engine,
        module: &Module,
        settings: &str,
        changed: Vec<Arc<Instance>>,
        removed: Vec<Arc<str>>,
        logs: &mut Vec<LogLine>,
    ) -> Result<Work, GenerateError> {
        let started = Instant::now();
        let parts = route_all(engine, module, settings, &changed, logs)?;
        let mut routed = changed.len();
        self.inserted += changed.len();

        // Every group a changed or removed instance was in is merged again.
        let mut seeds: Vec<Arc<str>> = Vec::new();
        let mut stale: HashSet<GroupId> = HashSet::new();
        for id in changed
            .iter()
            .map(|i| &*i.id)
            .chain(removed.iter().map(|i| &**i))
        {
            if let Some(slot) = self.slots.get(id) {
                stale.insert(slot.group);
            }
        }
        for g in &stale {
            if let Some(group) = self.groups.get(g) {
                seeds.extend(group.members.iter().cloned());
            }
        }
        for id in &removed {
            if let Some(slot) = self.slots.remove(id) {
                self.unindex(id, &slot.keys);
            }
        }
        // This run's parts, by instance.
        let mut fresh: HashMap<Arc<str>, Part> = HashMap::with_capacity(parts.len());
        for (instance, part) in changed.into_iter().zip(parts) {
            let id: Arc<str> = instance.id.clone();
            if let Some(old) = self.slots.remove(&id) {
                self.unindex(&id, &old.keys);
            }
            let keys = self.hash_keys(&part);
            self.index(&id, &keys);
            seeds.push(id.clone());
            fresh.insert(id.clone(), part);
            self.slots.insert(
                id,
                Slot {
                    instance,
                    keys,
                    group: 0,
                },
            );
        }

        let components = self.components(seeds, &mut stale);
        for g in stale {
            if let Some(group) = self.groups.remove(&g) {
                self.joined.remove(g, &group.paths);
            }
        }
        routed += self.route_members(engine, module, settings, &components, &mut fresh, logs)?;
        let routed_in = started.elapsed();
        let work = Work {
            routed,
            groups: components.len(),
            merged_parts: components.iter().map(Vec::len).sum(),
            primed: 0,
        };
        self.merge_all(engine, module, settings, components, fresh, logs)?;
        tracing::trace!(?work, ?routed_in, merged_in = ?started.elapsed() - routed_in, "routed and merged");
        Ok(work)
    }

    /// The instances that are new or differ from their slot, and the ids
    /// that are gone. An unchanged instance behind a new `Arc` takes over
    /// its slot's, so that only one copy is held.
    fn diff(&mut self, instances: &[Arc<Instance>]) -> (Vec<Arc<Instance>>, Vec<Arc<str>>) {
        // The inventory hands them sorted by id; then one walk beside the
        // slots (also by id) finds everything, with no lookups.
        let mut list: Vec<&Arc<Instance>> = instances.iter().collect();
        if !list.windows(2).all(|w| w[0].id < w[1].id) {
            list.sort_by(|a, b| a.id.cmp(&b.id));
            // A repeated id is ignored: the inventory is keyed by id.
            list.dedup_by(|a, b| a.id == b.id);
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        let mut slots = self.slots.iter_mut().peekable();
        for i in list {
            while let Some((id, _)) = slots.next_if(|(id, _)| ***id < *i.id) {
                removed.push(id.clone());
            }
            let slot = slots.next_if(|(id, _)| ***id == *i.id);
            if !slot.is_some_and(|(_, slot)| slot.holds(i)) {
                changed.push(i.clone());
            }
        }
        removed.extend(slots.map(|(id, _)| id.clone()));
        (changed, removed)
    }

    /// The instances of `page` that are new or differ from their slot (the
    /// first of a repeated id, as in `diff`).
    fn changed_in(&mut self, page: &[Arc<Instance>]) -> Vec<Arc<Instance>> {
        let mut seen: HashSet<&str> = HashSet::with_capacity(page.len());
        let mut changed = Vec::new();
        for i in page {
            if !seen.insert(&i.id) {
                continue;
            }
            if !self.slots.get_mut(&i.id).is_some_and(|slot| slot.holds(i)) {
                changed.push(i.clone());
            }
        }
        changed
    }

    fn hash_keys(&self, part: &Part) -> Box<[u64]> {
        let mut keys: Vec<u64> = part.keys.iter().map(|k| self.hasher.hash_one(k)).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into()
    }

    fn index(&mut self, id: &Arc<str>, keys: &[u64]) {
        for h in keys {
            self.index.entry(*h).or_default().push(id.clone());
        }
    }

    fn unindex(&mut self, id: &str, keys: &[u64]) {
        for h in keys {
            if let Some(ids) = self.index.get_mut(h) {
                ids.retain(|x| &**x != id);
                if ids.is_empty() {
                    self.index.remove(h);
                }
            }
        }
    }

    /// Routes the members of `components` that have no part from this run
    /// (unchanged members of groups merged again); returns how many.
    fn route_members(
        &self,
        engine: &Engine,
        module: &Module,
        settings: &str,
        components: &[Vec<Arc<str>>],
        fresh: &mut HashMap<Arc<str>, Part>,
        logs: &mut Vec<LogLine>,
    ) -> Result<usize, GenerateError> {
        let missing: Vec<Arc<Instance>> = components
            .iter()
            .flatten()
            .filter(|id| !fresh.contains_key(*id))
            .map(|id| self.slots[id].instance.clone())
            .collect();
        let parts = route_all(engine, module, settings, &missing, logs)?;
        for (instance, part) in missing.iter().zip(parts) {
            let id = &self.slots.get_key_value(&*instance.id).expect("a member").0;
            if self.hash_keys(&part) != self.slots[*id].keys {
                return Err(GenerateError::InvalidOutput(format!(
                    "route gave instance {} other keys than before for the same input; a policy must be a pure function",
                    instance.id
                )));
            }
            fresh.insert((*id).clone(), part);
        }
        Ok(missing.len())
    }

    /// The groups the seeds are in now: connected by shared keys. Every
    /// held group one of them reaches is added to `stale` (all its members
    /// are reached too: they still share its keys).
    fn components(&self, seeds: Vec<Arc<str>>, stale: &mut HashSet<GroupId>) -> Vec<Vec<Arc<str>>> {
        let mut done: HashSet<Arc<str>> = HashSet::new();
        let mut out = Vec::new();
        for seed in seeds {
            if done.contains(&seed) || !self.slots.contains_key(&seed) {
                continue;
            }
            done.insert(seed.clone());
            let mut component = vec![seed];
            let mut at = 0;
            while at < component.len() {
                let slot = &self.slots[&component[at]];
                if slot.group != 0 {
                    stale.insert(slot.group);
                }
                for key in &slot.keys {
                    for other in self.index.get(key).into_iter().flatten() {
                        if done.insert(other.clone()) {
                            component.push(other.clone());
                        }
                    }
                }
                at += 1;
            }
            out.push(component);
        }
        out
    }

    /// Merges the components, a batch of groups per call spread over the
    /// cores, and holds the results.
    fn merge_all(
        &mut self,
        engine: &Engine,
        module: &Module,
        settings: &str,
        components: Vec<Vec<Arc<str>>>,
        mut fresh: HashMap<Arc<str>, Part>,
        logs: &mut Vec<LogLine>,
    ) -> Result<(), GenerateError> {
        let total = components.iter().map(Vec::len).sum();
        let limit = even_batch(total, MERGE_BATCH, cores());
        let mut batches: Vec<Batch> = Vec::new();
        let mut size = 0;
        for c in components {
            if batches.is_empty() || size + c.len() > limit {
                batches.push(Batch::default());
                size = 0;
            }
            size += c.len();
            let batch = batches.last_mut().expect("pushed above");
            let parts = c.iter().filter_map(|id| fresh.remove(id)).collect();
            batch
                .parts
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .push(parts);
            batch.members.push(c);
        }
        drop(fresh);
        in_parallel(
            &batches,
            |batch| {
                // Taken, so that the parts go once merged: at 100,000
                // instances they are most of what a first run adds.
                let groups =
                    std::mem::take(&mut *batch.parts.lock().unwrap_or_else(|p| p.into_inner()));
                let ran = engine.merge(module, settings, &groups)?;
                let routed: Vec<Vec<Diagnostic>> = groups
                    .into_iter()
                    .map(|g| g.into_iter().flat_map(|p| p.diagnostics).collect())
                    .collect();
                Ok((ran, routed))
            },
            |at, (ran, routed)| {
                logs.extend(ran.logs);
                self.hold(&batches[at].members, ran.value, routed)
            },
        )
    }

    /// Holds one batch's merged groups; `routed` has each group's
    /// diagnostics from phase one.
    fn hold(
        &mut self,
        members: &[Vec<Arc<str>>],
        merged: Vec<Merged>,
        routed: Vec<Vec<Diagnostic>>,
    ) -> Result<(), GenerateError> {
        let mut values = Packed::new(merged.iter().flat_map(|m| &m.entries));
        for ((members, merged), mut diagnostics) in members.iter().zip(merged).zip(routed) {
            super::join::Joined::check(&merged.entries)
                .map_err(|e| GenerateError::InvalidOutput(e.to_string()))?;
            let id = self.next_group.max(1);
            self.next_group = id + 1;
            for m in members {
                if let Some(slot) = self.slots.get_mut(m) {
                    slot.group = id;
                }
            }
            let slots = &self.slots;
            let intern = |d: &str| slots.get_key_value(d).map(|(k, _)| k.clone());
            let paths = self.joined.add(id, merged.entries, &mut values, intern);
            // Phase one's messages first: each instance's stay in the order
            // they arose.
            diagnostics.extend(merged.diagnostics);
            let routes = merged
                .routes
                .into_iter()
                .map(|r| Route::new(r, intern))
                .collect();
            let findings = Arc::new(Piece {
                diagnostics,
                routes,
            });
            self.groups.insert(
                id,
                Group {
                    members: members.iter().cloned().collect(),
                    paths,
                    findings,
                },
            );
        }
        Ok(())
    }

    /// The configuration and reports of all held groups.
    fn output(&mut self, logs: Vec<LogLine>, started: Instant) -> Generated {
        let doc = self.joined.document();
        tracing::debug!(chunks = ?doc.rewritten, "document chunks written again, of all");
        let mut pieces: Vec<Arc<Piece>> = Vec::with_capacity(self.groups.len() + 1);
        for g in self.groups.values() {
            let mentions_dropped = !doc.dropped_routers.is_empty()
                && g.findings
                    .routes
                    .iter()
                    .any(|r| r.routers.iter().any(|n| doc.dropped(&r.instance_id, n)));
            if !mentions_dropped {
                pieces.push(g.findings.clone());
                continue;
            }
            // Rare: the join dropped a router this group made.
            let mut routes = g.findings.routes.clone();
            for r in &mut routes {
                r.routers = r
                    .routers
                    .iter()
                    .filter(|n| !doc.dropped(&r.instance_id, n))
                    .cloned()
                    .collect();
            }
            pieces.push(Arc::new(Piece {
                diagnostics: g.findings.diagnostics.clone(),
                routes,
            }));
        }
        // The join's errors come after each instance's own.
        pieces.push(Arc::new(Piece {
            diagnostics: doc.diagnostics,
            routes: Vec::new(),
        }));
        Generated {
            config: doc.config,
            findings: Findings::from_pieces(pieces),
            logs,
            duration: started.elapsed(),
        }
    }
}

/// Phase one for `instances`, in batches spread over the cores; the parts
/// come back in the order of `instances`.
fn route_all(
    engine: &Engine,
    module: &Module,
    settings: &str,
    instances: &[Arc<Instance>],
    logs: &mut Vec<LogLine>,
) -> Result<Vec<Part>, GenerateError> {
    let size = even_batch(instances.len(), ROUTE_BATCH, cores());
    let batches: Vec<&[Arc<Instance>]> = instances.chunks(size).collect();
    let mut parts = Vec::with_capacity(instances.len());
    in_parallel(
        &batches,
        |batch| engine.route(module, settings, batch),
        |_, ran| {
            logs.extend(ran.logs);
            parts.extend(ran.value);
            Ok(())
        },
    )?;
    Ok(parts)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A batch size of at most `max` that cuts `total` into a multiple of
/// `cores` batches of about the same size, so that no core is left alone
/// with the last one: 10,000 parts in batches of 2,048 were five calls on
/// two cores, the fifth alone for a third of the phase. Batches are never
/// under 128 instances or parts: a run that small is one call.
fn even_batch(total: usize, max: usize, cores: usize) -> usize {
    const SMALLEST: usize = 128;
    let batches = total.div_ceil(max).next_multiple_of(cores.max(1)).max(1);
    total.div_ceil(batches).max(SMALLEST).min(max)
}

/// `call` on every batch, spread over the cores (each call has its own
/// store), and `each` on the results in the order of `batches`, on this
/// thread, as soon as a result and all before it are in. Results are
/// handed on while later batches run rather than all held at once: a large
/// first run's merged groups, held together, left what `hold` kept
/// scattered in the holes they left (at 100,000 instances about 20 MiB of
/// the heap was such holes). The first failure ends the run: the workers
/// take no new batch.
fn in_parallel<B: Sync, T: Send>(
    batches: &[B],
    call: impl Fn(&B) -> Result<T, GenerateError> + Sync,
    mut each: impl FnMut(usize, T) -> Result<(), GenerateError>,
) -> Result<(), GenerateError> {
    let workers = cores().min(batches.len());
    if workers <= 1 {
        for (at, batch) in batches.iter().enumerate() {
            each(at, call(batch)?)?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = || next.store(usize::MAX / 2, Ordering::Relaxed);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..workers {
            let (tx, call, next, stop) = (tx.clone(), &call, &next, &stop);
            s.spawn(move || {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(at) else { break };
                    let r = call(batch);
                    let failed = r.is_err();
                    if failed {
                        stop();
                    }
                    if tx.send((at, r)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Results that came before an earlier batch's.
        let mut waiting: BTreeMap<usize, T> = BTreeMap::new();
        let mut due = 0;
        let mut outcome = Ok(());
        // Ends when every worker has stopped.
        for (at, r) in rx {
            match r {
                Ok(value) if outcome.is_ok() => {
                    waiting.insert(at, value);
                }
                Ok(_) => {}
                Err(e) => {
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
            }
            while outcome.is_ok() {
                let Some(value) = waiting.remove(&due) else {
                    break;
                };
                outcome = each(due, value);
                due += 1;
            }
            if outcome.is_err() {
                stop();
            }
        }
        outcome?;
        if due != batches.len() {
            return Err(GenerateError::Trap("a batch did not run".into()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn batches_are_even_over_the_cores() {
        // 10,000 parts: 6 calls of 1,667 on two cores, not 5 of 2,048.
        assert_eq!(even_batch(10_000, 2048, 2), 1667);
        assert_eq!(even_batch(10_000, 1024, 2), 1000);
        assert_eq!(even_batch(10_000, 1024, 4), 834);
        // Never above the cap, nor below 128 (a run that small is one call).
        assert_eq!(even_batch(2049, 2048, 1), 1025);
        assert_eq!(even_batch(100_000, 1024, 2), 1021);
        assert_eq!(even_batch(1, 1024, 2), 128);
        assert_eq!(even_batch(200, 1024, 2), 128);
        assert_eq!(even_batch(0, 1024, 2), 128);
    }

    #[test]
    fn results_are_handed_on_in_batch_order_whatever_order_they_finish_in() {
        // The first batches take longest, so later ones finish first.
        let batches: Vec<u64> = (0..8).collect();
        let mut seen = Vec::new();
        in_parallel(
            &batches,
            |b| {
                std::thread::sleep(Duration::from_millis(5 * (8 - b)));
                Ok(b * 10)
            },
            |at, v| {
                seen.push((at, v));
                Ok(())
            },
        )
        .unwrap();
        let expected: Vec<(usize, u64)> = (0..8).map(|b| (b as usize, b * 10)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_failed_batch_ends_the_run_and_nothing_after_it_is_handed_on() {
        let batches: Vec<u64> = (0..64).collect();
        let mut seen = Vec::new();
        let err = in_parallel(
            &batches,
            |&b| {
                if b == 3 {
                    Err(GenerateError::Trap(format!("batch {b}")))
                } else {
                    Ok(b)
                }
            },
            |at, _| {
                seen.push(at);
                Ok(())
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, GenerateError::Trap(ref m) if m == "batch 3"),
            "{err:?}"
        );
        assert!(seen.iter().all(|&at| at < 3), "{seen:?}");
    }

    #[test]
    fn a_refusal_while_handing_on_ends_the_run() {
        let batches: Vec<u64> = (0..64).collect();
        let ran = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let err = in_parallel(
            &batches,
            |&b| {
                ran.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
                Ok(b)
            },
            |at, _| {
                seen.push(at);
                if at == 1 {
                    return Err(GenerateError::InvalidOutput("refused".into()));
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(matches!(err, GenerateError::InvalidOutput(_)), "{err:?}");
        assert_eq!(seen, [0, 1]);
        assert!(
            ran.load(Ordering::Relaxed) < 64,
            "the workers stopped early"
        );
    }
}
