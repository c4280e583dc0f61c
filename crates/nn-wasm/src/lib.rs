//! # nn-wasm: a trained model in the browser
//!
//! [`Predictor`] loads a model file (`.nnm`) from bytes and turns raw feature rows into
//! class probabilities (or values, for regression models) exactly as `nn predict` does:
//! the model's normalisation, a forward pass in [`Mode::Eval`], then softmax over the
//! outputs (softmax cross-entropy models) or `σ(z)` for class 1 (binary cross-entropy).
//!
//! On `wasm32`, [`Classifier`] exposes it to JavaScript through `wasm-bindgen`:
//!
//! ```js
//! import init, { Classifier } from "./pkg/nn_wasm.js";
//! await init();
//! const model = new Classifier(new Uint8Array(await (await fetch("digits.nnm")).arrayBuffer()));
//! const p = model.predict(new Float32Array(64)); // probabilities, one per class
//! model.class_names();                            // ["0", "1", …]
//! ```
//!
//! The library runs on one thread there (no helper threads, no clock, no files): model
//! loading reads the bytes it is given, and prediction allocates its buffers once.
//!
//! ## Features and targets
//!
//! No cargo features: the default build is the whole crate. [`Classifier`] compiles on every
//! target; its JavaScript bindings come from the `wasm32-unknown-unknown` build, which
//! `cargo xtask web` makes and runs through the `wasm-bindgen` CLI. The crate is not
//! published (`publish = false`); it ships as the page that command builds.

use std::path::Path;

use ndarray::{ArrayView1, IxDyn};
use nn_core::{Buffer, Tensor};
use nn_io::Metadata;
use nn_layers::{Layer, Mode, Registry};
use wasm_bindgen::prelude::*;

/// A loaded model and the buffers one prediction uses.
pub struct Predictor {
    model: Box<dyn Layer>,
    metadata: Metadata,
    input: Vec<usize>,
    out: Buffer,
}

impl Predictor {
    /// Loads a model file's bytes, checked as `nn` checks files.
    ///
    /// # Errors
    /// The loader's message (corrupt file, unknown layer kind, limits).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let loaded = nn_io::model_from_bytes(bytes, Path::new("model"), &Registry::new())
            .map_err(|e| e.to_string())?;
        let mut input = vec![1];
        input.extend_from_slice(&loaded.metadata.input_shape);
        Ok(Predictor {
            model: loaded.model,
            metadata: loaded.metadata,
            input,
            out: Buffer::new(),
        })
    }

    /// Values in one input row (64 for the digits model).
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// The class names stored in the model (empty for regression models).
    pub fn class_names(&self) -> Vec<String> {
        self.metadata.class_names.clone().unwrap_or_default()
    }

    /// Probabilities of each class for one raw row (`p = softmax(z)`, or `[1 − σ(z), σ(z)]`
    /// for a one-output binary classifier), or the outputs of a regression model.
    ///
    /// # Errors
    /// A row of another length than [`Predictor::input_len`], or the model's own error.
    pub fn predict(&mut self, row: &[f32]) -> Result<Vec<f32>, String> {
        if row.len() != self.input_len() {
            return Err(format!(
                "a row of {} values for a model that takes {}",
                row.len(),
                self.input_len()
            ));
        }
        let mut x =
            Tensor::from_shape_vec(IxDyn(&self.input), row.to_vec()).map_err(|e| e.to_string())?;
        if let Some(n) = &self.metadata.normalization {
            n.apply(&mut x).map_err(|e| e.to_string())?;
        }
        self.model
            .forward(x.view(), &mut self.out, Mode::Eval)
            .map_err(|e| e.to_string())?;
        let z = self.out.view();
        let z = ArrayView1::from(z.as_slice().unwrap_or_default());
        Ok(self
            .metadata
            .class_probabilities(z)
            .unwrap_or_else(|| z.to_vec()))
    }
}

/// A model in the browser: [`Predictor`] for JavaScript.
#[wasm_bindgen]
pub struct Classifier(Predictor);

#[wasm_bindgen]
impl Classifier {
    /// Loads a model file's bytes (a `Uint8Array`).
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8]) -> Result<Classifier, JsError> {
        Predictor::from_bytes(bytes)
            .map(Classifier)
            .map_err(|e| JsError::new(&e))
    }

    /// Values in one input row.
    pub fn input_len(&self) -> usize {
        self.0.input_len()
    }

    /// The class names stored in the model.
    pub fn class_names(&self) -> Vec<String> {
        self.0.class_names()
    }

    /// Probabilities of each class for one raw row (a `Float32Array`).
    pub fn predict(&mut self, row: &[f32]) -> Result<Vec<f32>, JsError> {
        self.0.predict(row).map_err(|e| JsError::new(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use nn_io::Normalization;
    use nn_layers::{Dense, Sequential};

    /// `z = W·x' + b` with `x' = (x − μ)/σ`, saved and loaded as the page loads it.
    fn model(loss: &str, w: Tensor, b: Tensor) -> Predictor {
        let mut net = Sequential::new().with(Dense::from_weights(w, Some(b)).unwrap());
        let meta = Metadata {
            input_shape: vec![2],
            loss: loss.into(),
            normalization: Some(Normalization::Standardize {
                mean: vec![1.0, 2.0],
                std: vec![2.0, 4.0],
            }),
            class_names: (loss != "mse").then(|| vec!["no".into(), "yes".into()]),
            ..Metadata::default()
        };
        let bytes = nn_io::model_bytes(&mut net, &meta).unwrap();
        Predictor::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn probabilities_by_hand() {
        // x = [3, 6] → x' = [1, 1]; z = [1·1 + 0·1 + 0, 0·1 + 1·1 + ln 3] = [1, 1 + ln 3]
        let w = array![[1.0f32, 0.0], [0.0, 1.0]].into_dyn();
        let b = array![0.0f32, 3f32.ln()].into_dyn();
        let mut p = model("softmax_cross_entropy", w.clone(), b.clone());
        assert_eq!(p.input_len(), 2);
        assert_eq!(p.class_names(), vec!["no", "yes"]);
        // softmax: e^1 : 3e^1 → [1/4, 3/4]
        let got = p.predict(&[3.0, 6.0]).unwrap();
        assert!(
            (got[0] - 0.25).abs() < 1e-6 && (got[1] - 0.75).abs() < 1e-6,
            "{got:?}"
        );
        // a regression model gives z itself
        let got = model("mse", w, b).predict(&[3.0, 6.0]).unwrap();
        assert!((got[0] - 1.0).abs() < 1e-6 && (got[1] - (1.0 + 3f32.ln())).abs() < 1e-6);
    }

    #[test]
    fn one_logit_gives_both_classes() {
        // x' = [1, 1], z = 0.5 + 0.5 + ln 3 − 1 = ln 3 → σ = 3/4
        let w = array![[0.5f32, 0.5]].into_dyn();
        let b = array![3f32.ln() - 1.0].into_dyn();
        let got = model("bce_with_logits", w, b).predict(&[3.0, 6.0]).unwrap();
        assert!(
            (got[0] - 0.25).abs() < 1e-6 && (got[1] - 0.75).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn refusals_are_messages() {
        let w = array![[1.0f32, 0.0]].into_dyn();
        let mut p = model("mse", w, array![0.0f32].into_dyn());
        assert!(
            p.predict(&[1.0])
                .unwrap_err()
                .contains("a row of 1 values for a model that takes 2")
        );
        assert!(Predictor::from_bytes(b"not a model").is_err());
    }
}
