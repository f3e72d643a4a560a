//! Keeps the host's heap close to what it holds: one arena, and memory
//! freed by a large run handed back to the system.
//!
//! A first run at 100,000 instances briefly holds every instance's part
//! (about a kilobyte each) and the module's output; glibc's malloc keeps
//! what was freed for reuse, so without this the process would go on
//! showing its peak as its steady size.

/// Once, at start: one malloc arena for every thread. The engine's worker
/// threads lift the module's output (kept for as long as the groups it
/// describes), and with an arena per thread those long-lived pieces
/// scatter over several heaps: at 100,000 instances the steady RSS was
/// about 1 GiB with the default arenas and 865 MiB with one, at the same
/// speed (the host's threads allocate little and rarely at once).
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; called before the
    // runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Runs below this size are left alone: their garbage is small, and
/// trimming after every small change would cost more than it returns.
const LARGE: usize = 1000;

/// After a run that routed `routed` instances.
pub(crate) fn after_run(routed: usize) {
    if routed >= LARGE {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free heap memory to the system; it
    // touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        // SAFETY: mallinfo2 only reads malloc's counters.
        let info = unsafe { libc::mallinfo2() };
        let mib = |b: usize| b / (1024 * 1024);
        // What is in use against what malloc holds: the gap is free memory
        // scattered between live blocks (fragmentation).
        tracing::debug!(
            in_use_mib = mib(info.uordblks + info.hblkhd),
            heap_mib = mib(info.arena + info.hblkhd),
            free_mib = mib(info.fordblks),
            "heap after trimming"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

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
