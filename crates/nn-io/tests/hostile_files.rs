//! Hostile model files fed to the loader: payloads crafted for the worst ratio of decoded
//! memory to file size, length prefixes claiming terabytes, and 10,000 random mutations of a
//! valid file — bit flips, truncations, extensions, overwritten header fields, huge length
//! fields, and payload edits with the checksum recomputed so that they reach the decoder.
//! The loader must return an error (or, for harmless edits, a model) without panicking, and
//! no load may allocate more than `codec::MAX_EXPANSION` (48) times the file's size plus
//! `codec::MAX_DECODE_OVERHEAD` (16 MiB), whatever its length prefixes claim.
//!
//! The test counts live heap bytes with a wrapping global allocator; it is the only test in
//! its binary so that no other test's allocations are counted.

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

/// Loads `bytes`; returns whether it panicked and the peak heap growth during the load.
fn load_peak(bytes: &[u8]) -> (bool, usize) {
    let registry = Registry::new();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = std::panic::catch_unwind(|| {
        model_from_bytes(bytes, Path::new("fuzz.nnm"), &registry).map(|_| ())
    });
    (result.is_err(), PEAK.load(Ordering::Relaxed) - base)
}

/// The allocation bound of `nn_io::codec`: nothing is reserved from a length prefix before
/// its bytes are seen, serde reserves at most 1 MiB ahead per open sequence, and a decoded
/// element takes at most `MAX_EXPANSION` bytes of memory per byte of payload.
fn bound(len: usize) -> usize {
    nn_io::codec::MAX_DECODE_OVERHEAD + nn_io::codec::MAX_EXPANSION * len
}

/// A payload of the model file's layout (see `tests/support/craft.rs` at the workspace
/// root for the same mirror, used through the binary).
#[derive(serde::Serialize)]
struct Payload {
    layers: Vec<(String, Vec<(String, u8)>)>,
    tensors: Vec<(String, nn_core::TensorData)>,
    metadata: Metadata,
}

fn framed(p: &Payload) -> Vec<u8> {
    let bytes = bincode::serde::encode_to_vec(p, bincode::config::standard()).unwrap();
    nn_io::container::frame(nn_io::FileKind::Model, &bytes)
}

/// Payloads built for the worst decoded size per byte: a million empty tensors (three
/// bytes each in the file, 72 in memory), a million empty layers, ten thousand layers of 64
/// attributes, a million empty feature names.
fn crafted_worst_cases() {
    let empty = nn_core::TensorData {
        shape: Vec::new(),
        data: Vec::new(),
    };
    let many_tensors = Payload {
        layers: vec![("relu".into(), Vec::new())],
        tensors: vec![(String::new(), empty); 1_000_000],
        metadata: Metadata::default(),
    };
    let many_layers = Payload {
        layers: vec![(String::new(), Vec::new()); 1_000_000],
        tensors: Vec::new(),
        metadata: Metadata::default(),
    };
    let many_attrs = Payload {
        layers: vec![(String::new(), vec![(String::new(), 0u8); 64]); 10_001],
        tensors: Vec::new(),
        metadata: Metadata::default(),
    };
    let many_names = Payload {
        layers: vec![("relu".into(), Vec::new())],
        tensors: Vec::new(),
        metadata: Metadata {
            feature_names: vec![String::new(); 1 << 20],
            class_names: Some(vec![String::new(); 1 << 16]),
            ..Default::default()
        },
    };
    for p in [many_tensors, many_layers, many_attrs, many_names] {
        let bytes = framed(&p);
        drop(p);
        let (panicked, peak) = load_peak(&bytes);
        assert!(!panicked);
        assert!(
            peak <= bound(bytes.len()),
            "{} bytes allocated {peak} at peak",
            bytes.len()
        );
        eprintln!(
            "crafted payload of {} bytes: {peak} bytes at peak",
            bytes.len()
        );
    }
    // length prefixes claiming 2^40 elements or bytes, with nothing behind them
    let mut base = framed(&Payload {
        layers: vec![("relu".into(), Vec::new())],
        tensors: Vec::new(),
        metadata: Metadata::default(),
    })[24..]
        .to_vec();
    base.truncate(3); // the layer list's count and the first layer's kind length
    for tail in [vec![0xfdu8], vec![0x01, 0xfd]] {
        let mut payload = base.clone();
        payload.extend_from_slice(&tail);
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let bytes = nn_io::container::frame(nn_io::FileKind::Model, &payload);
        let (panicked, peak) = load_peak(&bytes);
        assert!(!panicked);
        assert!(peak <= bound(bytes.len()), "{peak} bytes at peak");
    }
}

#[test]
fn hostile_files_never_panic_or_overallocate() {
    crafted_worst_cases();
    let config = ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(muts in proptest::collection::vec(mutation(), 1..4), reach_decoder in any::<bool>())| {
        let mut bytes = valid_file();
        for m in &muts {
            apply(&mut bytes, m);
        }
        if reach_decoder {
            fix_header(&mut bytes);
        }
        let (panicked, peak) = load_peak(&bytes);
        prop_assert!(!panicked, "loader panicked on mutations {muts:?}");
        prop_assert!(peak <= bound(bytes.len()), "a load of {} bytes allocated {peak} bytes at peak ({muts:?})", bytes.len());
    });
}
