//! Fuzz target `idx`: see `nn_cli::fuzzing::idx`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::idx(data));
