//! Every call into bincode lives here.
//!
//! bincode is pinned to the 2.x line: 3.0.0 on crates.io is a deliberate `compile_error!`
//! stub and the crate is marked unmaintained (RUSTSEC-2025-0141). Swapping the payload
//! encoding for another serde format (postcard, wincode…) is a change to this file alone;
//! the framing around it (magic, version, length, checksum) does not depend on it.
//!
//! # Decoding without trusting length prefixes
//!
//! A hostile payload can put any number in a length prefix. Decoding here never allocates
//! from such a number before the bytes it describes have been seen:
//!
//! - strings and byte strings are read by borrowing them from the payload, which fails
//!   when fewer bytes remain than the prefix claims, and are copied only then (bincode's own
//!   `String` decoder would first reserve whatever the prefix says);
//! - sequences and maps are filled element by element as elements really decode; serde
//!   reserves at most 1 MiB ahead of them (its "cautious" size hint), whatever the prefix.
//!
//! The first two points are made true for every type by `Frugal`, a wrapper around the
//! bincode deserializer that turns requests for owned strings into requests for borrowed
//! ones; bincode's own byte limit is not used, because it counts decoded in-memory sizes
//! and so refuses payloads the encoder wrote. Each decoded element takes at least one byte
//! of the payload and at most 24 bytes of memory (a `String` or a `Vec`), and a `Vec` grows
//! by doubling; the payload's lists of small entries are also bounded in length
//! (`nn_core::bounded`). Decoding a payload of `n` bytes therefore allocates at most
//! [`MAX_EXPANSION`]` · n` plus [`MAX_DECODE_OVERHEAD`]; `tests/hostile_files.rs` checks that
//! bound with a counting allocator on crafted and mutated files, and what the encoder writes
//! always decodes, whatever its size.

use serde::Serialize;
use serde::de::DeserializeOwned;

mod frugal;

use frugal::Frugal;

/// The most bytes a payload may hold: 2 GiB, room for a checkpoint of a model at the
/// parameter limit (weights, best weights and two optimizer moments).
pub const LIMIT: usize = 1 << 31;

/// The most memory a decode allocates per byte of payload: an element of 24 bytes in memory
/// for each byte of payload, twice over while its `Vec` doubles.
pub const MAX_EXPANSION: usize = 48;

/// The most a decode may allocate beyond [`MAX_EXPANSION`] times the payload's size: the
/// read-ahead of nested sequences (1 MiB each) and the bounded lists' slack.
pub const MAX_DECODE_OVERHEAD: usize = 16 << 20;

/// Encodes `value` into bytes.
///
/// # Errors
/// The encoder's message, or the payload limit when the encoding is larger.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| e.to_string())?;
    if bytes.len() > LIMIT {
        return Err(format!(
            "the payload would be {} bytes, more than the limit of {LIMIT}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Decodes a value that must use every byte of `bytes`.
///
/// # Errors
/// A sentence saying what did not decode.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (Decoded(value), used): (Decoded<T>, usize) =
        bincode::serde::borrow_decode_from_slice(bytes, bincode::config::standard())
            .map_err(describe)?;
    if used != bytes.len() {
        return Err(format!(
            "{} bytes left over after the payload's {used}",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// A `T` decoded through [`Frugal`].
struct Decoded<T>(T);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Decoded<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(Frugal(d)).map(Decoded)
    }
}

/// A sentence for a decoder error.
fn describe(e: bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { additional } => format!(
            "the payload ends {additional} byte(s) before its contents do (a length or count is wrong)"
        ),
        E::LimitExceeded => "a length in the payload is larger than the payload".into(),
        E::Utf8 { .. } => "a name in the payload is not valid UTF-8".into(),
        E::OutsideUsizeRange(n) => format!("a length in the payload ({n}) is out of range"),
        E::UnexpectedVariant {
            type_name, found, ..
        } => format!("an unknown variant {found} of `{type_name}`"),
        other => other.to_string(),
    }
}
