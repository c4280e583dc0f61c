//! Files written by the build before format version 2 (`tests/fixtures/v1/`, made with
//! that build's `nn train`, its predictions saved beside them by its `nn predict`) still
//! load, predict the same, and a version-1 checkpoint still resumes.

mod support;

use nn::io::load_model;
use nn::layers::Registry;
use support::run::{nn, repo, stdout, succeeds};

fn fixture(name: &str) -> String {
    repo(&format!("tests/fixtures/v1/{name}"))
}

#[test]
fn version_1_models_load_and_predict_as_they_did() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (model, input) in [
        ("digits-mlp.nnm", fixture("digits-rows.csv")),
        ("cnn-bn.nnm", fixture("idx12/t10k-images-idx3-ubyte")),
    ] {
        let loaded = load_model(std::path::Path::new(&fixture(model)), &Registry::new()).unwrap();
        assert_eq!(loaded.header.version, 1);
        let o = nn(
            &["predict", "--model", &fixture(model), "--input", &input],
            d,
        );
        succeeds(&o);
        let want =
            std::fs::read_to_string(fixture(&model.replace(".nnm", ".predict.csv"))).unwrap();
        assert_eq!(stdout(&o), want, "{model}");
    }
}

#[test]
fn a_version_1_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = nn(&["inspect", &fixture("digits-mlp-epoch3.nnck")], d);
    succeeds(&o);
    assert!(
        stdout(&o).contains("format:      version 1 (this build reads 1 to 2)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("checkpoint:  after epoch 3, step 120"),
        "{}",
        stdout(&o)
    );
    let o = nn(
        &[
            "train",
            "--data",
            &repo("data/digits.csv"),
            "--label",
            "digit",
            "--epochs",
            "4",
            "--resume",
            &fixture("digits-mlp-epoch3.nnck"),
            "--out",
            "r.nnm",
            "--quiet",
        ],
        d,
    );
    succeeds(&o);
    let model = load_model(&d.join("r.nnm"), &Registry::new()).unwrap();
    assert_eq!(model.header.version, nn::io::FORMAT_VERSION);
    assert_eq!(model.metadata.training.unwrap().epochs, 4);
}
