//! The served body in chunks, each with its digest and its compressed form,
//! so that a new configuration compresses and hashes only the chunks that
//! changed: at 100,000 instances the body is about 60 MB, and compressing it
//! whole took longer than everything else a one-VM change costs.
//!
//! The gzip form stays one gzip member (what every client reads): each
//! chunk is raw deflate ended by a full flush (byte-aligned, no reference
//! to earlier chunks), the chunks are joined, an empty final block ends the
//! stream, and the CRC-32 of the whole is combined from the chunks' own.
//!
//! The plain form is never concatenated: it is served chunk by chunk, and
//! its chunks are the very buffers the engine's cache wrote. The gzip form
//! (a twentieth of the size) is one buffer, written out in one go.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use sha2::{Digest, Sha256};

use crate::chunked::Chunked;

/// Where to cut a chunk larger than this (a whole run's configuration is
/// one): equal bodies cut equally.
const WINDOW: usize = 256 * 1024;

/// The gzip header: deflate, no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One chunk of a body.
#[derive(Debug)]
struct Chunk {
    /// Its bytes: a chunk (or a window of one) of the body it was made for.
    plain: Bytes,
    sha256: [u8; 32],
    deflate: Bytes,
    crc: u32,
}

/// A body and its encodings.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) plain: Chunked,
    pub(crate) gzip: Bytes,
    /// SHA-256 over the chunks' SHA-256s: changes whenever the body does.
    pub(crate) digest: [u8; 32],
    chunks: Vec<Chunk>,
}

/// What making a body cost, for the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reuse {
    pub(crate) chunks: usize,
    pub(crate) compressed: usize,
}

impl Body {
    /// `plain` in its chunks, each larger than [`WINDOW`] cut in windows.
    /// Chunks equal to one of `previous` are taken from it as they are.
    pub(crate) fn new(plain: &Chunked, previous: Option<&Body>) -> (Self, Reuse) {
        let pieces = pieces(plain);
        let known: HashMap<(usize, &[u8]), &Chunk> = previous
            .map(|p| p.chunks.iter().map(|c| (key(&c.plain), c)).collect())
            .unwrap_or_default();
        let mut reuse = Reuse::default();
        // The same chunk, but holding the new body's bytes: a chunk must
        // not keep its old body (60 MB) alive.
        let found: Vec<Result<Chunk, Bytes>> = pieces
            .into_iter()
            .map(|bytes| match known.get(&key(&bytes)).copied() {
                Some(c) if c.plain == bytes => Ok(Chunk {
                    plain: bytes,
                    sha256: c.sha256,
                    deflate: c.deflate.clone(),
                    crc: c.crc,
                }),
                _ => Err(bytes),
            })
            .collect();
        reuse.chunks = found.len();
        let missing: Vec<Bytes> = found
            .iter()
            .filter_map(|f| f.as_ref().err().cloned())
            .collect();
        reuse.compressed = missing.len();
        let mut compressed = compress_all(missing).into_iter();
        let chunks: Vec<Chunk> = found
            .into_iter()
            .map(|f| f.unwrap_or_else(|_| compressed.next().expect("one per missing chunk")))
            .collect();
        drop(known);
        let mut digest = Sha256::new();
        for c in &chunks {
            digest.update(c.sha256);
        }
        let body = Body {
            gzip: gzip(&chunks, plain.len()),
            plain: plain.clone(),
            digest: digest.finalize().into(),
            chunks,
        };
        (body, reuse)
    }
}

/// Below this much text to compress, one thread does it all.
const PARALLEL_FROM: usize = 2 * WINDOW;

/// The chunks of `pieces`, in order, compressed over the cores when there
/// is much to do: a first configuration's 6 MB at 10k instances took 76 ms
/// on one core, 60 MB at 100k over half a second.
fn compress_all(pieces: Vec<Bytes>) -> Vec<Chunk> {
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers <= 1 || total < PARALLEL_FROM {
        return compress_each(pieces);
    }
    // Contiguous shares of about equal size.
    let share = total.div_ceil(workers);
    let mut shares: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut size = 0;
    for p in pieces {
        if size >= share {
            shares.push(Vec::new());
            size = 0;
        }
        size += p.len();
        shares.last_mut().expect("pushed above").push(p);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| s.spawn(|| compress_each(share)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compressing a chunk cannot panic"))
            .collect()
    })
}

/// The chunks of `pieces` with one compressor: its state (some 300 KB)
/// allocated once, not per chunk.
fn compress_each(pieces: Vec<Bytes>) -> Vec<Chunk> {
    let mut z = Compress::new(Compression::default(), false);
    pieces
        .into_iter()
        .map(|p| {
            z.reset();
            Chunk::new(p, &mut z)
        })
        .collect()
}

/// How a chunk is recognised: its length and first bytes (then compared
/// whole).
fn key(bytes: &[u8]) -> (usize, &[u8]) {
    (bytes.len(), &bytes[..bytes.len().min(48)])
}

fn pieces(plain: &Chunked) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(plain.chunks().len());
    for c in plain.chunks() {
        let mut at = 0;
        while c.len() - at > WINDOW {
            out.push(c.slice(at..at + WINDOW));
            at += WINDOW;
        }
        out.push(c.slice(at..));
    }
    out
}

impl Chunk {
    /// `plain`, compressed with `z` (reset).
    fn new(plain: Bytes, z: &mut Compress) -> Self {
        let mut out = Vec::with_capacity(plain.len() / 4 + 64);
        loop {
            let consumed = z.total_in() as usize;
            out.reserve(plain.len() / 8 + 64);
            z.compress_vec(&plain[consumed..], &mut out, FlushCompress::Full)
                .expect("deflating into memory cannot fail");
            // Done once all input is in and the flush left room to spare.
            if z.total_in() as usize == plain.len() && out.len() < out.capacity() {
                break;
            }
        }
        // Deflate gives about a twentieth: the spare capacity would be most
        // of what the chunk holds.
        out.shrink_to_fit();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&plain);
        Chunk {
            sha256: Sha256::digest(&plain).into(),
            crc: crc.finalize(),
            deflate: out.into(),
            plain,
        }
    }
}

/// One gzip member of the chunks, in order.
fn gzip(chunks: &[Chunk], len: usize) -> Bytes {
    let size: usize = chunks.iter().map(|c| c.deflate.len()).sum();
    let mut out = BytesMut::with_capacity(GZIP_HEADER.len() + size + 16);
    out.extend_from_slice(&GZIP_HEADER);
    let mut crc = crc32fast::Hasher::new();
    for c in chunks {
        out.extend_from_slice(&c.deflate);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            c.crc,
            c.plain.len() as u64,
        ));
    }
    // An empty final block (fixed Huffman: BFINAL, type 01, end code).
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // One member: the single-member reader must read it all.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn text(n: usize, seed: u32) -> Bytes {
        let mut s = String::from("{");
        for i in 0..n {
            s.push_str(&format!(
                "\"vm-{i:05}\":{{\"rule\":\"Host(`vm-{i}.x`)\",\"p\":{seed}}},"
            ));
        }
        s.push('}');
        Bytes::from(s)
    }

    /// `body` cut at `cuts`, as the engine's cache hands it over.
    fn cut(body: &Bytes, cuts: &[usize]) -> Chunked {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([&body.len()]) {
            chunks.push(body.slice(start..end));
            start = end;
        }
        Chunked::new(chunks)
    }

    #[test]
    fn the_gzip_form_is_one_member_that_any_reader_reads_whole() {
        for (body, cuts) in [
            (Bytes::new(), vec![]),
            (Bytes::from_static(b"{}"), vec![]),
            (text(20_000, 1), vec![]),
            (text(3_000, 1), vec![10, 11, 5000, 90_000]),
        ] {
            let (b, _) = Body::new(&cut(&body, &cuts), None);
            assert_eq!(b.plain.to_bytes(), body);
            assert_eq!(gunzip(&b.gzip), body);
            let mut multi = Vec::new();
            flate2::read::MultiGzDecoder::new(&b.gzip[..])
                .read_to_end(&mut multi)
                .unwrap();
            assert_eq!(multi, body);
            assert!(b.gzip.len() < body.len() / 3 + 64);
        }
    }

    #[test]
    fn chunks_compressed_over_the_cores_are_those_of_one_thread_in_order() {
        let body = text(60_000, 3);
        let pieces = pieces(&cut(&body, &[1000, 300_000, 300_001]));
        assert!(body.len() >= PARALLEL_FROM && pieces.len() > 4);
        let spread = compress_all(pieces.clone());
        let alone = compress_each(pieces);
        assert_eq!(spread.len(), alone.len());
        for (a, b) in spread.iter().zip(&alone) {
            assert_eq!(
                (&a.plain, a.sha256, &a.deflate, a.crc),
                (&b.plain, b.sha256, &b.deflate, b.crc)
            );
        }
    }

    #[test]
    fn only_changed_chunks_are_compressed_again() {
        let one = text(40_000, 1);
        let (a, r) = Body::new(&one.clone().into(), None);
        assert_eq!(r.compressed, r.chunks);
        assert!(r.chunks > 4);
        // Same body: nothing compressed, same digest and bytes.
        let (b, r) = Body::new(&one.clone().into(), Some(&a));
        assert_eq!(r.compressed, 0);
        assert_eq!((a.digest, &a.gzip), (b.digest, &b.gzip));
        // One byte changed in the middle: one chunk.
        let mut v = one.to_vec();
        let mid = v.len() / 2;
        v[mid] = if v[mid] == b'x' { b'y' } else { b'x' };
        let (c, r) = Body::new(&Bytes::from(v.clone()).into(), Some(&b));
        assert_eq!(r.compressed, 1);
        assert_ne!(c.digest, b.digest);
        assert_eq!(gunzip(&c.gzip), v);
    }

    #[test]
    fn marked_cuts_keep_chunks_when_a_change_moves_everything_after_it() {
        let one = text(2_000, 1);
        // Cut after every 100th entry, at its closing brace.
        let cuts = |b: &Bytes| -> Vec<usize> {
            b.windows(2)
                .enumerate()
                .filter(|(_, w)| w == b"},")
                .map(|(i, _)| i + 2)
                .step_by(100)
                .collect()
        };
        let (a, _) = Body::new(&cut(&one, &cuts(&one)), None);
        let two = Bytes::from(String::from_utf8(one.to_vec()).unwrap().replacen(
            "vm-7.x",
            "vm-7-longer.x",
            1,
        ));
        let (b, r) = Body::new(&cut(&two, &cuts(&two)), Some(&a));
        assert_eq!(r.compressed, 1, "{r:?}");
        assert_eq!(gunzip(&b.gzip), two);
    }

    #[test]
    fn a_reused_chunk_does_not_keep_the_old_body_alive() {
        let one = text(40_000, 1);
        let (a, _) = Body::new(&one.clone().into(), None);
        let (b, r) = Body::new(&Bytes::from(one.to_vec()).into(), Some(&a));
        assert_eq!(r.compressed, 0);
        drop(a);
        // Only `one` itself and nothing of `b` point at the first body.
        assert!(one.is_unique(), "a chunk of the new body holds the old one");
        drop(b);
    }
}
