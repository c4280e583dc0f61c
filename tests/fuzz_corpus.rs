//! The fuzz targets' seeds and every crash the fuzzer found, replayed on the stable
//! toolchain through the same code the targets run (`nn_cli::fuzzing`): `fuzz/seeds/TARGET`
//! and `fuzz/regressions/TARGET` (where `cargo xtask fuzz` keeps crashing inputs).

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("model_file", nn_cli::fuzzing::model_file),
    ("checkpoint_file", nn_cli::fuzzing::checkpoint_file),
    ("csv", nn_cli::fuzzing::csv),
    ("idx", nn_cli::fuzzing::idx),
    ("layers", nn_cli::fuzzing::layers),
    ("spec_file", nn_cli::fuzzing::spec_file),
    ("safetensors_file", nn_cli::fuzzing::safetensors_file),
];

/// The files of `fuzz/<kind>/<target>`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn seeds_and_regressions_run_without_a_panic() {
    let mut total = 0;
    for (name, run) in TARGETS {
        let seeds = inputs("seeds", name);
        assert!(!seeds.is_empty(), "fuzz target {name} has no seeds");
        for path in seeds.iter().chain(&inputs("regressions", name)) {
            let bytes = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            total += 1;
        }
    }
    assert!(total >= 20, "{total} inputs");
}
