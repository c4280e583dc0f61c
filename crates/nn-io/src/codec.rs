//! Every call into bincode lives here.
//!
//! bincode is pinned to the 2.x line: 3.0.0 on crates.io is a deliberate `compile_error!`
//! stub and the crate is marked unmaintained (RUSTSEC-2025-0141). Swapping the payload
//! encoding for another serde format (postcard, wincode…) is a change to this file alone;
//! the framing around it (magic, version, length, checksum) does not depend on it.
//!
//! Decoding runs with a byte limit scaled to the payload: the smallest of 64 KiB, 1 MiB,
//! 16 MiB, 256 MiB and [`LIMIT`] (1 GiB) that holds it. A length prefix inside a hostile
//! payload that claims more than that is refused before anything is reserved for it, so a
//! small file cannot make the loader allocate much more than its own size.
//!
//! One allowance remains: serde's `Vec` deserializer reserves room for up to 1 MiB of
//! elements ahead of reading them (its "cautious" size hint), whatever the prefix claims.
//! The payload types nest sequences at most four deep and never recurse (nested layers are
//! stored by index, see `model`), so decoding any payload allocates at most
//! [`MAX_DECODE_OVERHEAD`] beyond a small multiple of its size. `tests/hostile_files.rs`
//! checks this bound on 10,000 mutated files with a counting allocator.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most bytes a payload may hold, and the decoder's largest limit.
pub const LIMIT: usize = 1 << 30;

/// The most a decode may allocate beyond 16 times the payload's size: four levels of
/// serde's 1 MiB read-ahead.
pub const MAX_DECODE_OVERHEAD: usize = 4 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes `value` into bytes.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes a value that must use every byte of `bytes`, with a limit of the smallest tier
/// that holds them.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    use bincode::config::standard;
    let n = bytes.len();
    if n <= 1 << 16 {
        decode_with(bytes, standard().with_limit::<{ 1 << 16 }>())
    } else if n <= 1 << 20 {
        decode_with(bytes, standard().with_limit::<{ 1 << 20 }>())
    } else if n <= 1 << 24 {
        decode_with(bytes, standard().with_limit::<{ 1 << 24 }>())
    } else if n <= 1 << 28 {
        decode_with(bytes, standard().with_limit::<{ 1 << 28 }>())
    } else {
        decode_with(bytes, config())
    }
}

fn decode_with<T: DeserializeOwned>(
    bytes: &[u8],
    cfg: impl bincode::config::Config,
) -> Result<T, String> {
    let (value, used): (T, usize) =
        bincode::serde::decode_from_slice(bytes, cfg).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} bytes left over after the payload's {used}",
            bytes.len() - used
        ));
    }
    Ok(value)
}
