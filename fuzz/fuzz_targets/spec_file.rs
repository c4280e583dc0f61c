//! Fuzz target `spec_file`: see `nn_cli::fuzzing::spec_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::spec_file(data));
