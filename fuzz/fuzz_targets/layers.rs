//! Fuzz target `layers`: see `nn_cli::fuzzing::layers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::layers(data));
