//! An instance's metadata held in two allocations, whatever its size.
//!
//! Most metadata keys and values are the instance's own (labels naming its
//! routers and services, its host name): held as separate shared strings
//! they cost about 60 bytes each besides their text, and a place in the
//! interner's table. At 100,000 instances with 9 pairs each that was the
//! largest part of the inventory.

use std::fmt;
use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// Nova's key/value pairs, in Nova's order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Every key and value, one after the other.
    text: Box<str>,
    /// Where each key, then its value, ends in `text`.
    ends: Box<[u32]>,
}

impl Metadata {
    /// Pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        self.ends.chunks_exact(2).enumerate().map(|(n, e)| {
            let start = match n {
                0 => 0,
                _ => self.ends[2 * n - 1] as usize,
            };
            let (k, v) = (e[0] as usize, e[1] as usize);
            (&self.text[start..k], &self.text[k..v])
        })
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Owned copies of the pairs.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Changes the pairs through a vector of them (rare: tests, redaction).
    pub fn edit(&mut self, f: impl FnOnce(&mut Vec<(String, String)>)) {
        let mut pairs = self.to_vec();
        f(&mut pairs);
        *self = pairs.into_iter().collect();
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let len: usize = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(2 * pairs.len());
        for (k, v) in &pairs {
            for s in [k.as_ref(), v.as_ref()] {
                text.push_str(s);
                // Nova allows 128 pairs of 255 characters: far below 4 GiB.
                ends.push(u32::try_from(text.len()).expect("metadata under 4 GiB"));
            }
        }
        Metadata {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> From<Vec<(K, V)>> for Metadata {
    fn from(pairs: Vec<(K, V)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The contract's `list<tuple<string, string>>`, as the borrowed pairs
/// would be: lowering copies the text into the module's memory anyway, so
/// a list of borrowed pairs made for the call costs one small vector.
type Pairs<'a> = [(&'a str, &'a str)];

// SAFETY: every item forwards to the implementation for a slice of string
// pairs, whose lowered form this type produces (see `Lower` below).
unsafe impl ComponentType for Metadata {
    type Lower = <Pairs<'static> as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Pairs<'static> as ComponentType>::ABI;
    const MAY_REQUIRE_REALLOC: bool = <Pairs<'static> as ComponentType>::MAY_REQUIRE_REALLOC;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Pairs<'static> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lowers exactly what the slice of its pairs lowers.
unsafe impl Lower for Metadata {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        let pairs: Vec<(&str, &str)> = self.iter().collect();
        <Pairs<'_> as Lower>::linear_lower_to_flat(&pairs, cx, ty, dst)
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let pairs: Vec<(&str, &str)> = self.iter().collect();
        <Pairs<'_> as Lower>::linear_lower_to_memory(&pairs, cx, ty, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_in_order_with_empty_keys_and_values() {
        let pairs = vec![
            ("port", "8080"),
            ("", "empty key"),
            ("empty value", ""),
            ("ü", "ß"),
        ];
        let m: Metadata = pairs.clone().into();
        assert_eq!(m.len(), 4);
        assert_eq!(m.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(m.get("empty value"), Some(""));
        assert_eq!(m.get("missing"), None);
        assert!(Metadata::default().is_empty());
        assert_eq!(Metadata::default().iter().count(), 0);
    }

    #[test]
    fn an_edit_rebuilds_the_pairs() {
        let mut m: Metadata = vec![("a", "1"), ("b", "2")].into();
        m.edit(|p| {
            p[0].1 = "one".into();
            p.push(("c".into(), "3".into()));
        });
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [("a", "one"), ("b", "2"), ("c", "3")]
        );
        assert_eq!(
            format!("{m:?}"),
            r#"[("a", "one"), ("b", "2"), ("c", "3")]"#
        );
    }
}
