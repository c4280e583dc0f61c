//! What `nn` writes it reads back (a checkpoint after 2000 epochs resumes), a tampered
//! checkpoint is refused, and every refusal is one sentence that says what to do: each
//! cause once, echoed values cut short, a failed plot after a saved model, settings that
//! `--resume` would silently ignore, outputs that would overwrite inputs, divergence.

mod support;

use std::path::Path;

use nn::core::TensorData;
use nn::io::{load_checkpoint, load_model, save_checkpoint};
use nn::layers::Registry;
use nn_cli::settings::CheckpointState;
use support::run::{fails_with, nn, repo, stderr, stdout, succeeds};

fn train(dir: &Path, extra: &[&str]) -> std::process::Output {
    let iris = repo("data/iris.csv");
    let mut args = vec![
        "train",
        "--data",
        &iris,
        "--label",
        "species",
        "--layers",
        "dense:4,relu,dense:3",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    nn(&args, dir)
}

#[test]
fn the_checkpoint_of_epoch_2000_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = train(
        d,
        &[
            "--epochs",
            "2000",
            "--batch-size",
            "150",
            "--checkpoint-dir",
            "ck",
            "--out",
            "a.nnm",
        ],
    );
    succeeds(&o);
    // every checkpoint loads, the last with 2000 epochs of history
    let (loaded, state): (_, CheckpointState) =
        load_checkpoint(&d.join("ck/epoch-2000.nnck"), &Registry::new()).unwrap();
    assert_eq!(state.trainer.epoch, 2000);
    assert_eq!(state.trainer.history.epochs.len(), 2000);
    assert_eq!(loaded.metadata.class_names.as_ref().unwrap().len(), 3);
    // resuming it (with the same flags as the first run) continues to epoch 2005
    let o = train(
        d,
        &[
            "--epochs",
            "2005",
            "--batch-size",
            "150",
            "--resume",
            "ck/epoch-2000.nnck",
            "--out",
            "b.nnm",
        ],
    );
    succeeds(&o);
    assert!(
        stdout(&o).contains(
            "resuming ck/epoch-2000.nnck after epoch 2000: the schedule (0.001) continues at epoch 2001 with learning rate 0.001"
        ),
        "{}",
        stdout(&o)
    );
    let model = load_model(&d.join("b.nnm"), &Registry::new()).unwrap();
    assert_eq!(model.metadata.training.unwrap().epochs, 2005);
}

/// A checkpoint after 3 epochs with early stopping (so it holds best weights).
fn checkpoint(d: &Path) -> std::path::PathBuf {
    succeeds(&train(
        d,
        &[
            "--epochs",
            "3",
            "--early-stopping",
            "50",
            "--checkpoint-dir",
            "ck",
            "--out",
            "a.nnm",
        ],
    ));
    d.join("ck/epoch-0003.nnck")
}

/// Loads `path`, lets `edit` change its state, saves it as `name`.
fn tamper(path: &Path, name: &str, edit: impl FnOnce(&mut CheckpointState)) -> String {
    let (mut loaded, mut state): (_, CheckpointState) =
        load_checkpoint(path, &Registry::new()).unwrap();
    edit(&mut state);
    let out = path.with_file_name(name);
    save_checkpoint(&out, loaded.model.as_mut(), &loaded.metadata, &state).unwrap();
    out.display().to_string()
}

#[test]
fn a_tampered_checkpoint_is_refused_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = checkpoint(d);
    let resume = |p: &str| train(d, &["--epochs", "5", "--resume", p, "--out", "r.nnm"]);
    succeeds(&resume(&ck.display().to_string()));
    let nan = tamper(&ck, "nan.nnck", |s| {
        s.trainer.best.as_mut().unwrap().weights[0].1.data[0] = f32::NAN;
    });
    fails_with(
        &resume(&nan),
        "the training state does not fit its model: best weights: `0.weight` holds NaN",
    );
    let shape = tamper(&ck, "shape.nnck", |s| {
        s.trainer.best.as_mut().unwrap().weights[2].1 = TensorData {
            shape: vec![3, 4],
            data: vec![0.0; 5],
        };
    });
    fails_with(
        &resume(&shape),
        "best weights: the model's `2.weight` [3, 4] meets `2.weight` [3, 4] with 5 values",
    );
    let moments = tamper(&ck, "moments.nnck", |s| {
        let slot = s.optimizer.slots.values_mut().next().unwrap();
        slot[0].data[0] = f32::INFINITY;
    });
    fails_with(&resume(&moments), "holds inf");
    assert!(!d.join("r2.nnm").exists());
}

#[test]
fn resume_refuses_settings_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = checkpoint(d).display().to_string();
    // the first run's own flags are accepted again
    succeeds(&train(
        d,
        &[
            "--epochs",
            "4",
            "--early-stopping",
            "50",
            "--resume",
            &ck,
            "--out",
            "r.nnm",
        ],
    ));
    let iris = repo("data/iris.csv");
    let with = |extra: &[&str]| {
        let mut a = vec!["train", "--data", &iris, "--resume", &ck, "--out", "r.nnm"];
        a.extend_from_slice(extra);
        nn(&a, d)
    };
    fails_with(&with(&["--lr", "0.5"]), "--lr differs from the checkpoint");
    fails_with(
        &with(&["--layers", "dense:9,relu,dense:3"]),
        "--layers differs from the checkpoint",
    );
    fails_with(
        &with(&["--optimizer", "sgd", "--label", "sepal_length"]),
        "--label, --optimizer differ from the checkpoint",
    );
}

#[test]
fn messages_name_each_cause_once_and_cut_long_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = nn(&["eval", "--model", "missing.nnm", "--data", "x.csv"], d);
    fails_with(&o, "missing.nnm: No such file or directory (os error 2)");
    assert_eq!(
        stderr(&o).matches("No such file").count(),
        1,
        "{}",
        stderr(&o)
    );
    let iris = repo("data/iris.csv");
    let layers = |spec: &str| {
        nn(
            &[
                "train", "--data", &iris, "--label", "species", "--layers", spec, "--out", "x.nnm",
            ],
            d,
        )
    };
    let long = format!("dense:3,{}", "q".repeat(500));
    let o = layers(&long);
    fails_with(&o, "--layers item 2 `qqqq");
    assert!(stderr(&o).contains("… (500 bytes)`"), "{}", stderr(&o));
    assert!(stderr(&o).len() < 400, "{}", stderr(&o));
    let o = layers("dense:4,relu,conv:2:3");
    fails_with(
        &o,
        "layer 2: conv2d: expected shape [n, c, h, w], got [32, 4]",
    );
    assert_eq!(stderr(&o).matches("layer 2").count(), 1, "{}", stderr(&o));
    fails_with(
        &train(d, &["--lr", "-1", "--out", "x.nnm"]),
        "invalid learning rate: must be finite and ≥ 0, got -1",
    );
    fails_with(
        &train(d, &["--batch-size", "0", "--out", "x.nnm"]),
        "batch size",
    );
}

#[test]
fn a_failed_plot_keeps_the_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = train(
        d,
        &[
            "--epochs",
            "2",
            "--out",
            "m.nnm",
            "--plot",
            "no/such/folder/p.png",
        ],
    );
    fails_with(
        &o,
        "the model is saved as m.nnm; the plot is not: no/such/folder/p.png: No such file or directory (os error 2)",
    );
    assert!(load_model(&d.join("m.nnm"), &Registry::new()).is_ok());
}

#[test]
fn outputs_never_overwrite_inputs_or_leave_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("iris.csv");
    std::fs::copy(repo("data/iris.csv"), &data).unwrap();
    let before = std::fs::read(&data).unwrap();
    let o = nn(
        &[
            "train",
            "--data",
            "iris.csv",
            "--label",
            "species",
            "--layers",
            "dense:3",
            "--out",
            "./iris.csv",
        ],
        d,
    );
    fails_with(
        &o,
        "--out ./iris.csv is the --data file; writing it would destroy the input",
    );
    assert_eq!(std::fs::read(&data).unwrap(), before);
    let o = nn(
        &[
            "train",
            "--data",
            "iris.csv",
            "--label",
            "species",
            "--layers",
            "dense:3",
            "--out",
            "m.nnm",
            "--metrics-json",
            "iris.csv",
        ],
        d,
    );
    fails_with(&o, "--metrics-json iris.csv is the --data file");
    // a temporary file a killed save left behind (its process is gone) is removed by the next save
    let stale = d.join(".m.nnm.tmp-4000000000-0");
    std::fs::write(&stale, b"half a model").unwrap();
    succeeds(&nn(
        &[
            "train", "--data", "iris.csv", "--label", "species", "--layers", "dense:3", "--epochs",
            "1", "--out", "m.nnm", "--quiet",
        ],
        d,
    ));
    assert!(!stale.exists(), "the stale temporary file is still there");
}

#[test]
fn divergence_says_what_to_try() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = std::fs::read_to_string(repo("data/iris.csv")).unwrap();
    let numeric: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    std::fs::write(d.join("num.csv"), numeric).unwrap();
    let o = nn(
        &[
            "train",
            "--data",
            "num.csv",
            "--label",
            "sepal_length",
            "--task",
            "regress",
            "--layers",
            "dense:8,relu,dense:1",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--normalize",
            "none",
            "--out",
            "x.nnm",
        ],
        d,
    );
    fails_with(&o, "training diverged at epoch 1, step ");
    assert!(
        stderr(&o).contains("try a lower learning rate, gradient clipping or normalised inputs"),
        "{}",
        stderr(&o)
    );
}
