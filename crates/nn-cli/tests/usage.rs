//! The `nn` binary's usage handling (its end-to-end runs are in the workspace's `tests/`).

use std::process::Command;

fn nn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nn"))
}

#[test]
fn help_lists_every_command() {
    let out = nn().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["train", "eval", "predict", "inspect", "gradcheck"] {
        assert!(text.contains(cmd), "`{cmd}` missing from:\n{text}");
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = nn().arg("fly").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'fly'"));
}
