//! Fuzz target `csv`: see `nn_cli::fuzzing::csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::csv(data));
