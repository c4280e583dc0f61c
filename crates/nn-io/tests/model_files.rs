//! Model files on disk: round trips, every corruption a loader must refuse, user-defined
//! layer kinds, and saves that fail midway.

use std::path::{Path, PathBuf};

use ndarray::{ArrayViewD, array};
use nn_core::{Buffer, Param, seeded};
use nn_io::{Error, Metadata, Normalization, load_model, save_model, write_atomic};
use nn_layers::layer::apply;
use nn_layers::{
    Attr, Context, Dense, DenseConfig, Layer, LayerConfig, LayerSpec, Mode, Registry, Relu,
    Sequential, Slot, TensorSpec,
};

fn model() -> Sequential {
    let mut r = seeded(3);
    Sequential::new()
        .with(Dense::new(&DenseConfig::new(4, 5), &mut r).unwrap())
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(5, 3).with_bias(false), &mut r).unwrap())
}

fn metadata() -> Metadata {
    Metadata {
        input_shape: vec![4],
        class_names: Some(vec!["a".into(), "b".into(), "c".into()]),
        feature_names: vec!["w".into(), "x".into(), "y".into(), "z".into()],
        normalization: Some(Normalization::Standardize {
            mean: vec![1.0, 2.0, 3.0, 4.0],
            std: vec![1.0; 4],
        }),
        label: Some("class".into()),
        loss: "softmax_cross_entropy".into(),
        training: None,
    }
}

fn saved(dir: &Path) -> PathBuf {
    let p = dir.join("m.nnm");
    save_model(&p, &mut model(), &metadata()).unwrap();
    p
}

fn load_err(p: &Path) -> String {
    load_model(p, &Registry::new()).unwrap_err().to_string()
}

#[test]
fn round_trip_keeps_weights_metadata_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    let mut loaded = load_model(&p, &Registry::new()).unwrap();
    assert_eq!(loaded.metadata, metadata());
    assert_eq!(loaded.header.version, nn_io::FORMAT_VERSION);
    let x = array![[1.0f32, -2.0, 0.5, 3.0], [0.0, 1.0, 1.0, -1.0]].into_dyn();
    let mut original = model();
    let want = apply(&mut original, x.view(), Mode::Eval).unwrap();
    let got = apply(loaded.model.as_mut(), x.view(), Mode::Eval).unwrap();
    assert_eq!(want, got, "bit-identical predictions after save → load");
    assert_eq!(loaded.model.config().spec(), original.config().spec());
}

#[test]
fn every_corruption_is_its_own_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    let good = std::fs::read(&p).unwrap();
    let name = p.display().to_string();
    let write = |bytes: &[u8]| std::fs::write(&p, bytes).unwrap();

    write(&good[..good.len() - 10]);
    assert!(matches!(
        load_model(&p, &Registry::new()),
        Err(Error::Length { .. })
    ));
    assert!(
        load_err(&p).starts_with(&format!("{name}: header declares a")),
        "{}",
        load_err(&p)
    );

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    write(&flipped);
    assert!(
        load_err(&p).starts_with(&format!("{name}: checksum mismatch")),
        "{}",
        load_err(&p)
    );

    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"PK\x03\x04");
    write(&magic);
    assert!(
        load_err(&p).starts_with(&format!("{name}: not a model file")),
        "{}",
        load_err(&p)
    );

    let mut future = good.clone();
    future[8..12].copy_from_slice(&7u32.to_le_bytes());
    write(&future);
    assert_eq!(
        load_err(&p),
        format!("{name}: format version 7 is not supported; this build reads versions 1 to 2")
    );

    write(b"");
    assert!(
        load_err(&p).starts_with(&format!("{name}: not a model file: found magic bytes []")),
        "{}",
        load_err(&p)
    );

    let missing = dir.path().join("nope.nnm");
    assert!(load_err(&missing).starts_with(&format!("{}: ", missing.display())));
}

/// `y = x ⊙ s`, a user-defined layer whose kind the default registry does not know.
#[derive(Debug)]
struct Scale {
    s: Param,
    /// Declared width in the spec (may differ from the real one, to corrupt files).
    declared: usize,
}

impl Scale {
    fn new(n: usize) -> Self {
        Scale {
            s: Param::new(ndarray::Array1::from_elem(n, 2.0f32).into_dyn()),
            declared: n,
        }
    }
}

impl Layer for Scale {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("scale", Slot::Param(&mut self.s));
    }

    fn forward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: &mut Buffer,
        _mode: Mode,
    ) -> nn_layers::Result<()> {
        y.assign(x);
        let mut y = y.view_mut();
        for mut row in y.rows_mut() {
            row *= &self.s.value;
        }
        Ok(())
    }
    fn backward(
        &mut self,
        _x: ArrayViewD<'_, f32>,
        _y: ArrayViewD<'_, f32>,
        _dy: ArrayViewD<'_, f32>,
        _dx: Option<&mut Buffer>,
    ) -> nn_layers::Result<()> {
        Err(nn_layers::Error::Custom {
            layer: "scale".into(),
            message: "inference only".into(),
        })
    }
    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(ScaleConfig {
            n: self.s.len(),
            declared: self.declared,
        })
    }
}

/// The configuration of [`Scale`]; `declared` is what its spec says (a liar's differs from
/// `n`, the width it really has).
#[derive(Debug)]
struct ScaleConfig {
    n: usize,
    declared: usize,
}

impl LayerConfig for ScaleConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("scale").with("n", Attr::Int(self.declared as i64))
    }
    fn tensors(&self) -> nn_layers::Result<Vec<TensorSpec>> {
        Ok(vec![TensorSpec::param("scale", vec![self.n])])
    }
    fn output_shape(&self, input: &[usize]) -> nn_layers::Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn build(&self, _: &mut nn_core::Rng) -> nn_layers::Result<Box<dyn Layer>> {
        Ok(Box::new(Scale::new(self.n)))
    }
}

fn read_scale(s: &LayerSpec, _: &Context<'_>) -> nn_layers::Result<Box<dyn LayerConfig>> {
    let n = s.usize("n")?;
    Ok(Box::new(ScaleConfig { n, declared: n }))
}

#[test]
fn user_kinds_load_once_registered() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scale.nnm");
    let mut m = Sequential::new().with(Scale::new(4)).with(Relu::new());
    save_model(
        &p,
        &mut m,
        &Metadata {
            input_shape: vec![4],
            ..Default::default()
        },
    )
    .unwrap();
    let e = load_err(&p);
    assert!(
        e.starts_with(&format!(
            "{}: layer 0: unknown layer kind `scale`",
            p.display()
        )),
        "{e}"
    );
    let mut reg = Registry::new();
    reg.register("scale", read_scale);
    let mut loaded = load_model(&p, &reg).unwrap();
    let x = array![[1.0f32, -1.0, 2.0, 0.5]].into_dyn();
    assert_eq!(
        apply(loaded.model.as_mut(), x.view(), Mode::Eval).unwrap(),
        array![[2.0f32, 0.0, 4.0, 1.0]].into_dyn()
    );
}

#[test]
fn stored_shapes_must_fit_the_architecture() {
    // The spec says n = 3, the stored tensor has 4 entries: the loader reads the spec,
    // declares a tensor of [3] and refuses the file before building anything.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.nnm");
    let mut liar = Scale::new(4);
    liar.declared = 3;
    save_model(
        &p,
        &mut liar,
        &Metadata {
            input_shape: vec![4],
            ..Default::default()
        },
    )
    .unwrap();
    let mut reg = Registry::new();
    reg.register("scale", read_scale);
    let e = load_model(&p, &reg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: tensor `scale` has shape [4], the architecture needs [3]",
            p.display()
        )
    );
}

#[test]
fn a_save_that_fails_midway_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    let before = std::fs::read(&p).unwrap();
    // A writer that runs out of space after 100 bytes, as a full disk would.
    let e = write_atomic(&p, |w| {
        w.write_all(&[0u8; 100])?;
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device",
        ))
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: could not save: no space left on device", p.display())
    );
    assert_eq!(std::fs::read(&p).unwrap(), before, "old file changed");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("m.nnm")],
        "temporary file left behind"
    );
    // a save into a folder that does not exist fails without creating anything
    let e = save_model(&dir.path().join("missing/m.nnm"), &mut model(), &metadata()).unwrap_err();
    assert!(matches!(e, Error::Save { .. }), "{e}");
    assert!(load_model(&p, &Registry::new()).is_ok());
}
