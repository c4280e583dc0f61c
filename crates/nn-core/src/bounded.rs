//! Serde helpers that refuse long sequences while decoding.
//!
//! A file format's decoder builds a `Vec` element by element, so a list that claims more
//! entries than the file holds fails when the bytes run out. But a list of *small* entries
//! (an empty name, an empty tensor) can still decode to many times its size in memory. The
//! lists of the toolkit's files that could do that are bounded with these helpers:
//!
//! ```
//! #[derive(serde::Deserialize, Debug)]
//! struct Names {
//!     #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, 4>")]
//!     names: Vec<String>,
//! }
//! let ok: Names = serde_json::from_str(r#"{"names": ["a", "b"]}"#).unwrap();
//! assert_eq!(ok.names.len(), 2);
//! let e = serde_json::from_str::<Names>(r#"{"names": ["a", "b", "c", "d", "e"]}"#);
//! assert!(e.unwrap_err().to_string().contains("more than 4 entries"));
//! ```
//!
//! Nothing is reserved beyond what serde's own `Vec` would (at most 1 MiB ahead of the
//! entries actually read); the bound only stops the list.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// At most `N` entries, as a `Vec`.
///
/// # Errors
/// The deserializer's error for a longer list, naming `N`.
pub fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(SeqVisitor::<T, N>(PhantomData))
}

/// At most `N` entries, as an `Option<Vec>`.
///
/// # Errors
/// As [`vec()`].
pub fn option_vec<'de, D, T, const N: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_option(OptionVisitor::<T, N>(PhantomData))
}

struct OptionVisitor<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for OptionVisitor<T, N> {
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nothing, or a list of at most {N} entries")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        vec::<D, T, N>(d).map(Some)
    }
}

/// At most `N` entries, as a `BTreeMap`.
///
/// # Errors
/// As [`vec()`].
pub fn map<'de, D, K, V, const N: usize>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    d.deserialize_map(MapVisitor::<K, V, N>(PhantomData))
}

fn too_many(n: usize) -> String {
    format!("a list with more than {n} entries")
}

/// The most entries reserved ahead of reading them: what fits in 1 MiB.
fn cautious<T>(hint: Option<usize>) -> usize {
    hint.unwrap_or(0).min((1 << 20) / size_of::<T>().max(1))
}

struct SeqVisitor<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for SeqVisitor<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {N} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if seq.size_hint().is_some_and(|n| n > N) {
            return Err(A::Error::custom(too_many(N)));
        }
        let mut out = Vec::with_capacity(cautious::<T>(seq.size_hint()));
        while let Some(x) = seq.next_element()? {
            if out.len() == N {
                return Err(A::Error::custom(too_many(N)));
            }
            out.push(x);
        }
        Ok(out)
    }
}

struct MapVisitor<K, V, const N: usize>(PhantomData<(K, V)>);

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>, const N: usize> Visitor<'de>
    for MapVisitor<K, V, N>
{
    type Value = BTreeMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map of at most {N} entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BTreeMap<K, V>, A::Error> {
        if map.size_hint().is_some_and(|n| n > N) {
            return Err(A::Error::custom(too_many(N)));
        }
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry()? {
            if out.len() == N {
                return Err(A::Error::custom(too_many(N)));
            }
            out.insert(k, v);
        }
        Ok(out)
    }
}
