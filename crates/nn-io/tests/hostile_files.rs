//! 10,000 random mutations of a valid model file — bit flips, truncations, extensions,
//! overwritten header fields, huge length fields, and payload edits with the checksum
//! recomputed so that they reach the decoder — are fed to the loader. It must return an
//! error (or, for harmless edits, a model) without panicking, and no load may allocate more
//! than `codec::MAX_DECODE_OVERHEAD` (4 MiB) plus 16 times the file's size, whatever its
//! length prefixes claim.
//!
//! The test counts live heap bytes with a wrapping global allocator; it is alone in its
//! test binary so that no other test's allocations are counted.

// The counting allocator below forwards to the system allocator; it is the only unsafe code
// in the workspace and exists for this measurement.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use nn_core::seeded;
use nn_io::{Metadata, model_bytes, model_from_bytes};
use nn_layers::{Dense, DenseConfig, Registry, Relu, Sequential};
use proptest::prelude::*;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// How one file is spoiled.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Truncate {
        to: usize,
    },
    Extend {
        bytes: Vec<u8>,
    },
    /// Overwrite 4 or 8 bytes at a position with an extreme value.
    Overwrite {
        at: usize,
        value: u64,
        wide: bool,
    },
    /// Set the header's payload length.
    Length {
        value: u64,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let extreme = prop_oneof![
        Just(u64::MAX),
        Just(u32::MAX as u64),
        Just(1u64 << 31),
        Just(1u64 << 40),
        any::<u64>(),
        0u64..300
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Mutation::Extend { bytes }),
        (any::<usize>(), extreme.clone(), any::<bool>())
            .prop_map(|(at, value, wide)| Mutation::Overwrite { at, value, wide }),
        extreme.prop_map(|value| Mutation::Length { value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    if n == 0 {
        return;
    }
    match m {
        Mutation::FlipBit { at, bit } => bytes[at % n] ^= 1 << bit,
        Mutation::Truncate { to } => bytes.truncate(to % n),
        Mutation::Extend { bytes: more } => bytes.extend_from_slice(more),
        Mutation::Overwrite { at, value, wide } => {
            let w = if *wide { 8 } else { 4 };
            if n > w {
                let at = at % (n - w);
                bytes[at..at + w].copy_from_slice(&value.to_le_bytes()[..w]);
            }
        }
        Mutation::Length { value } if n >= 20 => {
            bytes[12..20].copy_from_slice(&value.to_le_bytes())
        }
        Mutation::Length { .. } => {}
    }
}

/// Recomputes the payload length and checksum so the mutated payload reaches the decoder.
fn fix_header(bytes: &mut [u8]) {
    if bytes.len() >= 24 {
        let len = (bytes.len() - 24) as u64;
        bytes[12..20].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&bytes[24..]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    }
}

fn valid_file() -> Vec<u8> {
    let mut r = seeded(1);
    let mut m = Sequential::new()
        .with(Dense::new(&DenseConfig::new(6, 5), &mut r).unwrap())
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(5, 3), &mut r).unwrap());
    let meta = Metadata {
        input_shape: vec![6],
        class_names: Some(vec!["x".into(), "y".into(), "z".into()]),
        loss: "softmax_cross_entropy".into(),
        ..Default::default()
    };
    model_bytes(&mut m, &meta).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic_or_overallocate(
        muts in proptest::collection::vec(mutation(), 1..4),
        reach_decoder in any::<bool>(),
    ) {
        let registry = Registry::new();
        let mut bytes = valid_file();
        for m in &muts {
            apply(&mut bytes, m);
        }
        if reach_decoder {
            fix_header(&mut bytes);
        }
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let result = std::panic::catch_unwind(|| model_from_bytes(&bytes, Path::new("fuzz.nnm"), &registry).map(|_| ()));
        let peak = PEAK.load(Ordering::Relaxed) - base;
        prop_assert!(result.is_ok(), "loader panicked on mutations {muts:?}");
        // The allocation bound of `nn_io::codec`: claims beyond the file are refused by the
        // byte limit, serde reserves at most 1 MiB ahead per sequence, and the payload types
        // nest sequences at most 4 deep.
        let bound = nn_io::codec::MAX_DECODE_OVERHEAD + 16 * bytes.len();
        prop_assert!(peak <= bound, "a load of {} bytes allocated {peak} bytes at peak ({muts:?})", bytes.len());
    }
}
