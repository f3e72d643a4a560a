//! Keeps the host's heap close to what it holds.
//!
//! The allocator is jemalloc (set in `main.rs`, with its settings): a first
//! run at 100,000 instances briefly holds every instance's part and the
//! module's output, freed between the blocks that stay. glibc's malloc kept
//! those holes: after the run about a third of its heap was free yet
//! resident (343 MiB in use, 620 MiB of heap, VmRSS 524 MiB). jemalloc
//! keeps blocks of one size together and hands back each page as it
//! empties (VmRSS 400 MiB for the same run). What is left to this module:
//! maps rebuilt dense after large runs, and a debug line on the heap.

/// Runs below this size are left alone: their garbage is small, and
/// rebuilding maps after every small change would cost more than it returns.
const LARGE: usize = 1000;

/// After a run that routed `routed` instances: at debug level, what the
/// heap holds (jemalloc's counters; zero where another allocator serves).
pub(crate) fn after_run(routed: usize) {
    if routed < LARGE || !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counters are a snapshot taken when the epoch advances.
    if epoch::advance().is_err() {
        return;
    }
    let mib = |b: Result<usize, _>| b.map_or(0, |b| b / (1024 * 1024));
    tracing::debug!(
        allocated_mib = mib(stats::allocated::read()),
        resident_mib = mib(stats::resident::read()),
        "heap after a large run"
    );
}

/// Rebuilds `map` with full nodes. A `BTreeMap` filled one insert at a
/// time keeps its nodes about half full when the keys come in order (and
/// two thirds when they do not): at 100,000 instances the join's entries
/// alone held some 30 MiB of empty slots. Built from sorted pairs, every
/// node but the last on each level is full. Worth it only after a run
/// that inserted a good share of the map.
pub(crate) fn compact_map<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>) {
    *map = std::mem::take(map).into_iter().collect();
}

/// Whether a map of `len` entries, `inserted` of them since it was last
/// compacted, is worth compacting: a quarter of it new, and large enough
/// for its slack to matter.
pub(crate) fn worth_compacting(len: usize, inserted: usize) -> bool {
    len >= LARGE && inserted >= len / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_compacted_map_holds_the_same_pairs_in_order() {
        // Filled out of order, as a listing fills the inventory.
        let mut map: BTreeMap<u32, String> = (0..5000u32)
            .map(|i| ((i * 7919) % 5000, i.to_string()))
            .collect();
        map.remove(&17);
        let before: Vec<(u32, String)> = map.clone().into_iter().collect();
        compact_map(&mut map);
        assert_eq!(map.into_iter().collect::<Vec<_>>(), before);
    }

    #[test]
    fn only_large_maps_with_a_quarter_new_are_compacted() {
        assert!(worth_compacting(100_000, 100_000));
        assert!(worth_compacting(100_000, 25_000));
        assert!(!worth_compacting(100_000, 1));
        assert!(!worth_compacting(999, 999));
    }
}
