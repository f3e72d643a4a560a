//! The groups' entries joined into one configuration, kept between runs so
//! that a run replaces only the groups it merged again.
//!
//! The rule is the contract's: an entry several groups give identically is
//! kept once; one they give differently is dropped, with an error on each
//! instance that defined it (as Traefik treats a name two containers define
//! differently). The document is written with its keys sorted, as the
//! built-in policy's `generate` writes it, so both forms give the same bytes.
//!
//! Each value is held once: a written entry's value is a slice of its
//! chunk's text, and the chunks are what the publisher serves.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::chunked::Chunked;

use crate::wit::{Diagnostic, Entry, Level};

/// A group's identity while it is held.
pub(crate) type GroupId = u64;

/// About one entry in this many ends a chunk of the served body (~40 KB).
const CUT_EVERY: u64 = 256;

/// Instances named in one conflict message; the rest are counted.
const MAX_NAMED: usize = 5;

/// `kind`, `table` and `name` in one string, separated by NUL: one
/// allocation per entry, shared by the join and the group that gave it,
/// and its byte order is the document's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Path(Arc<str>);

impl Path {
    fn new(kind: &str, table: &str, name: &str) -> Self {
        Path(format!("{kind}\0{table}\0{name}").into())
    }

    /// Whether a chunk of the body ends after this entry: a fixed hash, so
    /// the same entries cut the same way in every run and process.
    fn cuts_after(&self) -> bool {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: stable, and good enough to spread cuts.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish().is_multiple_of(CUT_EVERY)
    }

    /// (kind, table, name).
    pub(crate) fn parts(&self) -> (&str, &str, &str) {
        let mut it = self.0.splitn(3, '\0');
        let kind = it.next().unwrap_or_default();
        let table = it.next().unwrap_or_default();
        (kind, table, it.next().unwrap_or_default())
    }
}

/// One group's definition of an entry.
#[derive(Debug)]
struct Given {
    group: GroupId,
    /// JSON; once written, a slice of its chunk's text.
    value: Bytes,
    /// Almost always one instance: held inline.
    definers: SmallVec<[Arc<str>; 1]>,
}

/// A batch's entry values in one buffer, handed out in order. The values
/// stay slices of it until their chunks are written (then they are slices
/// of those), so that when they go they leave one large free block, not a
/// hole per value between the cache's long-lived pieces (at 100,000
/// instances such holes kept about a third of the heap from being handed
/// back).
pub(crate) struct Packed {
    buf: Bytes,
    at: usize,
}

impl Packed {
    pub(crate) fn new<'a>(entries: impl Iterator<Item = &'a Entry> + Clone) -> Self {
        let total = entries.clone().map(|e| e.value.len()).sum();
        let mut buf = Vec::with_capacity(total);
        for e in entries {
            buf.extend_from_slice(e.value.as_bytes());
        }
        Packed {
            buf: buf.into(),
            at: 0,
        }
    }

    fn next(&mut self, len: usize) -> Bytes {
        let value = self.buf.slice(self.at..self.at + len);
        self.at += len;
        value
    }
}

/// Why a group's entries were refused: the module broke the contract.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("entry {kind:?}.{table:?}.{name:?}: {what}")]
    Bad {
        kind: String,
        table: String,
        name: String,
        what: String,
    },
}

/// Every held group's entries, by path, and the document's text in chunks
/// that are written again only when one of their entries changed.
#[derive(Debug)]
pub(crate) struct Joined {
    entries: BTreeMap<Path, Slot>,
    /// Entries made since `entries` was last compacted.
    inserted: usize,
    /// One per cut entry (the chunk ends after it) and the tail.
    chunks: BTreeMap<End, Chunk>,
}

impl Default for Joined {
    fn default() -> Self {
        Joined {
            entries: BTreeMap::new(),
            inserted: 0,
            chunks: BTreeMap::from([(End::Tail, Chunk::dirty())]),
        }
    }
}

/// The groups' definitions of one path.
#[derive(Debug)]
struct Slot {
    /// Whether a chunk of the body ends after it (see `Path::cuts_after`),
    /// decided once.
    cut: bool,
    /// Almost always one group's: held inline.
    given: SmallVec<[Given; 1]>,
}

/// Where a chunk ends: after a cut entry, or at the end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    At(Path),
    Tail,
}

/// The (kind, table) of the last entry written before a point, which the
/// text after it depends on (separators and closing braces).
type Open = Option<(Box<str>, Box<str>)>;

/// A chunk's text as last written.
#[derive(Debug)]
struct Chunk {
    /// Needs writing again: one of its entries changed.
    dirty: bool,
    /// What was open before it when it was written.
    opened: Open,
    /// What is open after it.
    closed: Open,
    /// Its entries' values are slices of it.
    text: Bytes,
    /// The join's errors on its entries.
    diagnostics: Vec<Diagnostic>,
    /// Its routers the join dropped, with their definers.
    dropped: Vec<(String, Vec<Arc<str>>)>,
}

impl Chunk {
    fn dirty() -> Self {
        Chunk {
            dirty: true,
            opened: None,
            closed: None,
            text: Bytes::new(),
            diagnostics: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

/// The joined document and what the join itself decided.
pub(crate) struct Document {
    /// The text, in the chunks the join holds (see `publish`): each ends
    /// after an entry whose path hashes to a multiple of `CUT_EVERY`, so
    /// that the cuts depend on the entries alone and a change moves none
    /// but its own.
    pub(crate) config: Chunked,
    /// Errors on the definers of entries dropped by the join.
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Routers dropped by the join, by name, with the instances that
    /// defined them; but for an instance that also defines a router of
    /// that name that stands (of another kind: an instance's routes list
    /// names only).
    pub(crate) dropped_routers: BTreeMap<String, BTreeSet<Arc<str>>>,
    /// Chunks written again, of all chunks (for logs and tests).
    pub(crate) rewritten: (usize, usize),
}

impl Document {
    /// Whether the join dropped `instance`'s router `router`.
    pub(crate) fn dropped(&self, instance: &str, router: &str) -> bool {
        self.dropped_routers
            .get(router)
            .is_some_and(|definers| definers.contains(instance))
    }
}

impl Joined {
    /// Checks a group's entries before any is held: names and tables are
    /// plain, values are JSON, no path twice.
    pub(crate) fn check(entries: &[Entry]) -> Result<(), EntryError> {
        let mut seen = BTreeSet::new();
        for e in entries {
            let bad = |what: &str| EntryError::Bad {
                kind: e.kind.clone(),
                table: e.table.clone(),
                name: e.name.clone(),
                what: what.into(),
            };
            if e.kind.is_empty() || e.table.is_empty() || e.name.is_empty() {
                return Err(bad("kind, table and name must not be empty"));
            }
            if [&e.kind, &e.table, &e.name]
                .iter()
                .any(|s| s.contains('\0'))
            {
                return Err(bad("contains NUL"));
            }
            if e.definers.is_empty() {
                return Err(bad("no definer"));
            }
            if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&e.value) {
                return Err(bad(&format!("value is not JSON: {err}")));
            }
            if !seen.insert((&e.kind, &e.table, &e.name)) {
                return Err(bad("given twice by one group"));
            }
        }
        Ok(())
    }

    /// Holds a group's entries (checked by [`Joined::check`]). `intern`
    /// gives the shared copy of an instance id, when there is one.
    /// `values` hands out the entries' values, packed in their order.
    pub(crate) fn add(
        &mut self,
        group: GroupId,
        entries: Vec<Entry>,
        values: &mut Packed,
        intern: impl Fn(&str) -> Option<Arc<str>>,
    ) -> Vec<Path> {
        let mut paths = Vec::with_capacity(entries.len());
        for e in entries {
            let new = Path::new(&e.kind, &e.table, &e.name);
            // The join's own copy, when it has one.
            let path = match self.entries.get_key_value(&new) {
                Some((p, _)) => p.clone(),
                None => new,
            };
            let (slot, created) = match self.entries.get_mut(&path) {
                Some(slot) => (slot, false),
                None => {
                    let slot = Slot {
                        cut: path.cuts_after(),
                        given: SmallVec::new(),
                    };
                    self.inserted += 1;
                    (self.entries.entry(path.clone()).or_insert(slot), true)
                }
            };
            slot.given.push(Given {
                group,
                value: values.next(e.value.len()),
                definers: e
                    .definers
                    .into_iter()
                    .map(|d| intern(&d).unwrap_or_else(|| d.into()))
                    .collect(),
            });
            let new_cut = created && slot.cut;
            self.touch(&path, new_cut.then_some(true));
            paths.push(path);
        }
        paths
    }

    /// Forgets what `group` gave at `paths`.
    pub(crate) fn remove(&mut self, group: GroupId, paths: &[Path]) {
        for path in paths {
            let Some(slot) = self.entries.get_mut(path) else {
                continue;
            };
            slot.given.retain(|g| g.group != group);
            let gone_cut = slot.given.is_empty() && slot.cut;
            if slot.given.is_empty() {
                self.entries.remove(path);
            }
            self.touch(path, gone_cut.then_some(false));
        }
    }

    /// Marks the chunk holding `path` for writing; when a cut entry comes
    /// (`Some(true)`) or goes (`Some(false)`), its chunk is made or
    /// removed, and the chunk after it changes too.
    fn touch(&mut self, path: &Path, cut: Option<bool>) {
        let at = End::At(path.clone());
        match cut {
            Some(true) => {
                self.chunks.insert(at.clone(), Chunk::dirty());
            }
            Some(false) => {
                self.chunks.remove(&at);
            }
            None => {}
        }
        // The chunk holding `path` (its own, when it is a cut), and when a
        // cut came or went, the next one, which lost or gained entries.
        let mut after = self.chunks.range_mut(at..);
        if let Some((_, c)) = after.next() {
            c.dirty = true;
        }
        if cut == Some(true)
            && let Some((_, c)) = after.next()
        {
            c.dirty = true;
        }
    }

    /// The document Traefik reads: `{"kind":{"table":{"name":value}}}`,
    /// keys in byte order, empty levels left out. Only chunks with a
    /// changed entry (or a changed context) are written again.
    pub(crate) fn document(&mut self) -> Document {
        if crate::memory::worth_compacting(self.entries.len(), self.inserted) {
            crate::memory::compact_map(&mut self.entries);
            self.inserted = 0;
        }
        let mut chunks = Vec::with_capacity(self.chunks.len() + 2);
        let mut diagnostics = Vec::new();
        let mut dropped_routers: BTreeMap<String, BTreeSet<Arc<str>>> = BTreeMap::new();
        let mut rewritten = 0;
        let mut open: Open = None;
        let mut start: Option<End> = None;
        chunks.push(Bytes::from_static(b"{"));
        for (end, chunk) in self.chunks.iter_mut() {
            if chunk.dirty || chunk.opened != open {
                rewritten += 1;
                let range = entries_in(&mut self.entries, start.as_ref(), end);
                write_chunk(chunk, range, open.clone());
            }
            chunks.push(chunk.text.clone());
            diagnostics.extend(chunk.diagnostics.iter().cloned());
            for (name, definers) in &chunk.dropped {
                dropped_routers
                    .entry(name.clone())
                    .or_default()
                    .extend(definers.iter().cloned());
            }
            open = chunk.closed.clone();
            start = Some(end.clone());
        }
        chunks.push(Bytes::from_static(match open {
            Some(_) => b"}}}",
            None => b"}",
        }));
        // The routes summary lists router names without their kind: for an
        // instance whose router of another kind by that name stands, the
        // name stays.
        for (name, definers) in &mut dropped_routers {
            for kind in ["http", "tcp", "udp"] {
                if let Some(slot) = self.entries.get(&Path::new(kind, "routers", name))
                    && resolve(&slot.given).is_some()
                {
                    for g in &slot.given {
                        for d in &g.definers {
                            definers.remove(d);
                        }
                    }
                }
            }
        }
        dropped_routers.retain(|_, definers| !definers.is_empty());
        Document {
            config: Chunked::new(chunks),
            diagnostics,
            dropped_routers,
            rewritten: (rewritten, self.chunks.len()),
        }
    }
}

/// The entries after `start` (exclusive) up to `end` (inclusive).
fn entries_in<'a>(
    entries: &'a mut BTreeMap<Path, Slot>,
    start: Option<&End>,
    end: &End,
) -> impl Iterator<Item = (&'a Path, &'a mut Slot)> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let lower = match start {
        Some(End::At(p)) => Excluded(p.clone()),
        _ => Unbounded,
    };
    let upper = match end {
        End::At(p) => Included(p.clone()),
        End::Tail => Unbounded,
    };
    entries.range_mut((lower, upper))
}

/// Writes one chunk's text after `open`; its entries' values then point
/// into it.
fn write_chunk<'a>(
    chunk: &mut Chunk,
    entries: impl Iterator<Item = (&'a Path, &'a mut Slot)>,
    opened: Open,
) {
    // Sized up front: a buffer grown by doubling would keep up to half
    // of itself unused for as long as the chunk lives.
    let entries: Vec<(&Path, &mut Slot)> = entries.collect();
    let bound: usize = entries
        .iter()
        .map(|(p, s)| p.0.len() * 2 + 16 + s.given.first().map_or(0, |g| g.value.len()))
        .sum();
    let mut text: Vec<u8> = Vec::with_capacity(bound);
    chunk.diagnostics.clear();
    chunk.dropped.clear();
    let mut written: Vec<(&mut Slot, Range<usize>)> = Vec::new();
    let mut open: Option<(&str, &str)> = opened.as_ref().map(|(k, t)| (&**k, &**t));
    for (path, slot) in entries {
        let (kind, table, name) = path.parts();
        let Some(value) = resolve(&slot.given) else {
            conflict(kind, table, name, &slot.given, &mut chunk.diagnostics);
            if table == "routers" {
                let definers = slot.given.iter().flat_map(|g| g.definers.iter().cloned());
                chunk.dropped.push((name.to_owned(), definers.collect()));
            }
            // Their own copies: not written, they must not keep an old
            // chunk's text alive.
            for g in &mut slot.given {
                g.value = Bytes::copy_from_slice(&g.value);
            }
            continue;
        };
        match open {
            Some((k, t)) if k == kind && t == table => text.push(b','),
            Some((k, _)) if k == kind => {
                text.extend_from_slice(b"},");
                push_key(&mut text, table);
                text.push(b'{');
            }
            Some(_) => {
                text.extend_from_slice(b"}},");
                push_key(&mut text, kind);
                text.push(b'{');
                push_key(&mut text, table);
                text.push(b'{');
            }
            None => {
                push_key(&mut text, kind);
                text.push(b'{');
                push_key(&mut text, table);
                text.push(b'{');
            }
        }
        open = Some((kind, table));
        push_key(&mut text, name);
        let at = text.len();
        text.extend_from_slice(value);
        written.push((slot, at..text.len()));
    }
    chunk.closed = open.map(|(k, t)| (k.into(), t.into()));
    chunk.opened = opened;
    text.shrink_to_fit();
    let text = Bytes::from(text);
    for (slot, range) in written {
        let value = text.slice(range);
        for g in &mut slot.given {
            g.value = value.clone();
        }
    }
    chunk.text = text;
    chunk.dirty = false;
}

/// The one value all groups agree on, if they do.
fn resolve(given: &[Given]) -> Option<&[u8]> {
    let first = &given.first()?.value;
    given[1..]
        .iter()
        .all(|g| g.value == *first)
        .then_some(first)
}

/// An error on every definer of a path the groups define differently.
fn conflict(kind: &str, table: &str, name: &str, given: &[Given], out: &mut Vec<Diagnostic>) {
    let ids: BTreeSet<&str> = given
        .iter()
        .flat_map(|g| g.definers.iter().map(|d| &**d))
        .collect();
    let mut named = ids
        .iter()
        .take(MAX_NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX_NAMED {
        named.push_str(&format!(" and {} more", ids.len() - MAX_NAMED));
    }
    let noun = noun(kind, table);
    for id in ids {
        out.push(Diagnostic {
            instance_id: id.to_owned(),
            level: Level::Error,
            message: format!(
                "{noun} {name} defined differently by several instances ({named}); dropped"
            ),
        });
    }
}

/// "router" for `http.routers`, "tcp service" for `tcp.services`.
fn noun(kind: &str, table: &str) -> String {
    let one = table.strip_suffix('s').unwrap_or(table);
    match kind {
        "http" => one.to_owned(),
        _ => format!("{kind} {one}"),
    }
}

fn push_key(out: &mut Vec<u8>, key: &str) {
    // Most names need no escaping: copy them as they are.
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        return;
    }
    // Writing a str into a String cannot fail.
    let quoted = serde_json::to_string(key).expect("a string serializes");
    out.extend_from_slice(quoted.as_bytes());
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds a group's entries, with no shared ids to intern.
    fn add(j: &mut Joined, group: GroupId, entries: Vec<Entry>) -> Vec<Path> {
        let mut values = Packed::new(entries.iter());
        j.add(group, entries, &mut values, |_| None)
    }

    fn entry(kind: &str, table: &str, name: &str, value: &str, by: &str) -> Entry {
        Entry {
            kind: kind.into(),
            table: table.into(),
            name: name.into(),
            value: value.into(),
            definers: vec![by.into()],
        }
    }

    #[test]
    fn groups_join_in_key_order_and_identical_entries_are_kept_once() {
        let mut j = Joined::default();
        add(
            &mut j,
            1,
            vec![
                entry("http", "routers", "b", r#"{"rule":"x"}"#, "i1"),
                entry("http", "middlewares", "to-https", r#"{"a":1}"#, "i1"),
            ],
        );
        add(
            &mut j,
            2,
            vec![
                entry("udp", "services", "u\"q", "{}", "i2"),
                entry("http", "routers", "a", r#"{"rule":"y"}"#, "i2"),
                entry("http", "middlewares", "to-https", r#"{"a":1}"#, "i2"),
            ],
        );
        let d = j.document();
        assert_eq!(
            d.config.to_string(),
            r#"{"http":{"middlewares":{"to-https":{"a":1}},"routers":{"a":{"rule":"y"},"b":{"rule":"x"}}},"udp":{"services":{"u\"q":{}}}}"#
        );
        assert!(d.diagnostics.is_empty());
        serde_json::from_str::<serde_json::Value>(&d.config.to_string()).unwrap();
    }

    #[test]
    fn different_definitions_are_dropped_with_an_error_on_each_definer() {
        let mut j = Joined::default();
        add(&mut j, 1, vec![entry("tcp", "routers", "r", "1", "i1")]);
        let p2 = add(&mut j, 2, vec![entry("tcp", "routers", "r", "2", "i2")]);
        let d = j.document();
        assert_eq!(d.config.to_string(), "{}");
        let msgs: Vec<_> = d
            .diagnostics
            .iter()
            .map(|d| (d.instance_id.as_str(), d.message.as_str()))
            .collect();
        let m = "tcp router r defined differently by several instances (i1, i2); dropped";
        assert_eq!(msgs, [("i1", m), ("i2", m)]);
        assert!(d.dropped("i1", "r") && d.dropped("i2", "r"));
        // An http router `r` that stands keeps the name in its definer's
        // routes, not in those of the tcp router's definers.
        let p3 = add(&mut j, 3, vec![entry("http", "routers", "r", "{}", "i3")]);
        let d = j.document();
        assert!(d.dropped("i1", "r") && !d.dropped("i3", "r"));
        let p4 = add(&mut j, 4, vec![entry("http", "routers", "r", "{}", "i1")]);
        assert!(!j.document().dropped("i1", "r"));
        j.remove(4, &p4);
        j.remove(3, &p3);
        // Once group 2 is gone, group 1's definition stands.
        j.remove(2, &p2);
        assert_eq!(
            j.document().config.to_string(),
            r#"{"tcp":{"routers":{"r":1}}}"#
        );
    }

    #[test]
    fn entries_that_break_the_contract_are_refused() {
        let ok = entry("http", "routers", "r", "{}", "i");
        assert!(Joined::check(std::slice::from_ref(&ok)).is_ok());
        let cases = [
            (entry("http", "routers", "r", "{", "i"), "not JSON"),
            (entry("", "routers", "r", "{}", "i"), "empty"),
            (entry("http", "rou\0ters", "r", "{}", "i"), "NUL"),
            (
                Entry {
                    definers: vec![],
                    ..ok.clone()
                },
                "definer",
            ),
        ];
        for (e, what) in cases {
            let err = Joined::check(&[e]).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let err = Joined::check(&[ok.clone(), ok]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    /// The same groups held from scratch.
    fn fresh(groups: &BTreeMap<GroupId, Vec<Entry>>) -> Joined {
        let mut j = Joined::default();
        for (g, e) in groups {
            add(&mut j, *g, e.clone());
        }
        j
    }

    #[test]
    fn chunks_are_written_again_only_where_entries_changed() {
        // 3000 groups of two entries; about 23 cuts among 6000 paths.
        let group = |i: u64, v: u64| {
            vec![
                entry(
                    "http",
                    "routers",
                    &format!("vm-{i:05}"),
                    &format!("{{\"v\":{v}}}"),
                    "x",
                ),
                entry("http", "services", &format!("vm-{i:05}"), "{}", "x"),
            ]
        };
        let mut groups: BTreeMap<GroupId, Vec<Entry>> =
            (1..=3000).map(|i| (i, group(i, 0))).collect();
        let mut j = fresh(&groups);
        let first = j.document();
        assert_eq!(first.rewritten.0, first.rewritten.1);
        assert!(first.rewritten.1 > 5, "{:?}", first.rewritten);
        assert_eq!(j.document().rewritten.0, 0);

        // xorshift: each step changes, removes or adds one group.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..300u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let g = x % 3300 + 1;
            if let Some(old) = groups.remove(&g) {
                let paths: Vec<Path> = old
                    .iter()
                    .map(|e| Path::new(&e.kind, &e.table, &e.name))
                    .collect();
                j.remove(g, &paths);
            }
            if step % 3 != 0 {
                let e = group(g, step);
                add(&mut j, g, e.clone());
                groups.insert(g, e);
            }
            let d = j.document();
            assert!(d.rewritten.0 <= 3, "step {step}: {:?}", d.rewritten);
            let whole = fresh(&groups).document();
            assert_eq!(d.config, whole.config, "step {step}");
            let cuts = |c: &Chunked| c.chunks().iter().map(Bytes::len).collect::<Vec<_>>();
            assert_eq!(cuts(&d.config), cuts(&whole.config), "step {step}");
        }
        serde_json::from_str::<serde_json::Value>(&j.document().config.to_string()).unwrap();
    }
}
