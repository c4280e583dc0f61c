//! Fuzz target `checkpoint_file`: see `nn_cli::fuzzing::checkpoint_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::checkpoint_file(data));
