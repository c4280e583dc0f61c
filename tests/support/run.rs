//! Running the real `nn` binary: with a memory bound, with standard input from a file or a
//! pipe, and checking that a refusal is one clean `error:` line.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `nn` binary cargo built for this test run (next to the test executable's folder).
pub fn nn_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap(); // target/<profile>/deps → target/<profile>
    let bin = dir.join(format!("nn{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "nn-cli", "--bin", "nn"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build the nn binary");
    }
    bin
}

/// A path inside the repository.
pub fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// Runs `nn args` in `dir` with its address space limited to `mem_mib` MiB (so that an
/// allocation beyond it fails and aborts the process, which the checks below catch), and
/// standard input from `stdin`.
pub fn nn_within(args: &[&str], dir: &Path, mem_mib: u64, stdin: Stdio) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", mem_mib * 1024))
        .arg(nn_binary())
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(stdin)
        .output()
        .unwrap()
}

/// Runs `nn args` in `dir` within 512 MiB, with no standard input.
pub fn nn(args: &[&str], dir: &Path) -> Output {
    nn_within(args, dir, 512, Stdio::null())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean refusal: exit code 1, exactly one `error:` line (notes aside) naming
/// `needle`, no panic, no abort.
pub fn fails_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit status {:?}; stderr: {err}",
        o.status
    );
    assert!(
        !err.contains("panicked")
            && !err.contains("backtrace")
            && !err.contains("memory allocation"),
        "panic output: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "`{needle}` not in: {err}"
    );
}

/// Asserts success, showing stderr otherwise.
pub fn succeeds(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}; stderr: {}",
        o.status,
        stderr(o)
    );
}
