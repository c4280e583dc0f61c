//! Fuzz target `safetensors_file`: see `nn_cli::fuzzing::safetensors_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nn_cli::fuzzing::safetensors_file(data));
