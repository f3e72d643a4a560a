//! Bytes held as a list of chunks, never concatenated on the way: the
//! configuration the engine's cache writes chunk by chunk (about 60 MB at
//! 100,000 instances) is served from those very chunks, so the process
//! holds it once, not once per stage.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// A sequence of bytes in chunks; cloning it shares them.
#[derive(Clone, Default)]
pub struct Chunked {
    chunks: Arc<[Bytes]>,
    len: usize,
}

impl Chunked {
    /// The chunks in order (empty ones are left out).
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let chunks: Arc<[Bytes]> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = chunks.iter().map(Bytes::len).sum();
        Chunked { chunks, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, none empty.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// All of it in one buffer: shared when it is one chunk, otherwise
    /// copied (for the rare reader that needs it whole).
    pub fn to_bytes(&self) -> Bytes {
        match &*self.chunks {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for c in many {
                    out.extend_from_slice(c);
                }
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for Chunked {
    fn from(bytes: Bytes) -> Self {
        Chunked::new(vec![bytes])
    }
}

impl From<String> for Chunked {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&str> for Chunked {
    fn from(text: &str) -> Self {
        Bytes::copy_from_slice(text.as_bytes()).into()
    }
}

/// Equal bytes, however they are cut.
impl PartialEq for Chunked {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .chunks
                .iter()
                .flat_map(|c| c.iter())
                .eq(other.chunks.iter().flat_map(|c| c.iter()))
    }
}

impl Eq for Chunked {}

impl std::fmt::Debug for Chunked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Chunked({} bytes in {} chunks)",
            self.len,
            self.chunks.len()
        )
    }
}

/// The text, when it is text (a configuration is).
impl std::fmt::Display for Chunked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A cut may fall inside a character: decode the whole.
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_are_equal_however_cut() {
        let whole = Chunked::from("{\"a\":1}");
        let cut = Chunked::new(vec![
            Bytes::from_static(b"{"),
            Bytes::new(),
            Bytes::from_static(b"\"a\":1"),
            Bytes::from_static(b"}"),
        ]);
        assert_eq!(whole, cut);
        assert_eq!(cut.chunks().len(), 3);
        assert_eq!(cut.len(), 7);
        assert_eq!(cut.to_bytes(), whole.to_bytes());
        assert_eq!(cut.to_string(), "{\"a\":1}");
        assert_ne!(cut, Chunked::from("{\"a\":2}"));
    }
}
