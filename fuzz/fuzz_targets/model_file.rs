//! Fuzz target `model_file`: see `nn_cli::fuzzing::model_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::model_file(data));
