//! Property tests: every layer's and loss's analytic gradient agrees with central
//! differences, over random shapes (batch 1–8, widths 1–16) and random values.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use nn_core::{Buffer, Init, Param, seeded};
use nn_layers::gradcheck::{GradCheckConfig, check_layer, check_loss};
use nn_layers::{
    AvgPool2d, BatchNorm, BceWithLogits, Conv2d, Conv2dConfig, Dense, DenseConfig, Dropout,
    Flatten, Identity, Layer, LayerConfig, LayerSpec, LeakyRelu, MaxPool2d, Mode, Mse, Relu,
    Sequential, Sigmoid, Slot, Softmax, SoftmaxCrossEntropy, Tanh, Target, TensorSpec,
};
use proptest::prelude::*;

/// A `[n, k]` tensor with entries from `values`.
fn tensor(
    n: usize,
    k: usize,
    values: impl Strategy<Value = f32>,
) -> impl Strategy<Value = ArrayD<f32>> {
    proptest::collection::vec(values, n * k)
        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&[n, k]), v).expect("n·k values"))
}

/// Batch 1–8, width 1–16, values in [−2, 2].
fn batch() -> impl Strategy<Value = ArrayD<f32>> {
    (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| tensor(n, k, -2.0f32..2.0))
}

/// Values at least 0.05 away from zero (ReLU's kink), either sign.
fn away_from_zero() -> impl Strategy<Value = f32> {
    (0.05f32..2.0, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v })
}

/// Images `[n, c, h, w]` whose values are all distinct and at least 0.05 apart, so that a
/// perturbation of ±ε = 0.01 never changes which entry of a pooling window is the largest.
fn distinct_images() -> impl Strategy<Value = ArrayD<f32>> {
    (1usize..=2, 1usize..=2, 1usize..=5, 1usize..=5).prop_flat_map(|(n, c, h, w)| {
        let len = n * c * h * w;
        Just((0..len).map(|i| i as f32 * 0.05 - 1.0).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), v).unwrap())
    })
}

/// The smallest standard deviation of any column of `[m, f]` rows (a batch norm with an
/// almost constant feature has enormous, ill-conditioned gradients).
fn min_spread(x: &ArrayD<f32>) -> f32 {
    let m = x.shape()[0] as f32;
    (0..x.shape()[1])
        .map(|j| {
            let col: Vec<f32> = (0..x.shape()[0]).map(|i| x[[i, j]]).collect();
            let mean = col.iter().sum::<f32>() / m;
            (col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / m).sqrt()
        })
        .fold(f32::INFINITY, f32::min)
}

/// A batch norm with non-trivial scale and shift.
fn with_affine(mut bn: BatchNorm, seed: u64) -> BatchNorm {
    let mut r = seeded(seed);
    bn.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            p.value
                .iter_mut()
                .for_each(|v| *v = nn_core::rng::uniform(&mut r, 0.5, 1.5));
        }
    });
    bn
}

fn assert_passes(report: &nn_layers::GradCheckReport) {
    assert!(report.passed(), "{report}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn dense_with_bias(x in batch(), n_out in 1usize..=16, seed in any::<u64>()) {
        let cfg = DenseConfig::new(x.shape()[1], n_out).with_init(Init::XavierUniform);
        let mut layer = Dense::new(&cfg, &mut seeded(seed)).unwrap();
        // a non-zero bias so that a missing bias term would show
        layer.visit(&mut |n, slot| if let (Slot::Param(p), "bias") = (slot, n) {
            p.value.iter_mut().enumerate().for_each(|(i, b)| *b = 0.1 * i as f32 - 0.3);
        });
        let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
        prop_assert_eq!(report.tensors.len(), 3);
        assert_passes(&report);
    }

    #[test]
    fn dense_without_bias(x in batch(), n_out in 1usize..=16, seed in any::<u64>()) {
        let cfg = DenseConfig::new(x.shape()[1], n_out).with_bias(false);
        let mut layer = Dense::new(&cfg, &mut seeded(seed)).unwrap();
        let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
        prop_assert_eq!(report.tensors.len(), 2);
        assert_passes(&report);
    }

    #[test]
    fn identity(x in batch()) {
        assert_passes(&check_layer(&mut Identity::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn sigmoid(x in batch()) {
        assert_passes(&check_layer(&mut Sigmoid::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn tanh(x in batch()) {
        assert_passes(&check_layer(&mut Tanh::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn relu(x in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| tensor(n, k, away_from_zero()))) {
        assert_passes(&check_layer(&mut Relu::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn leaky_relu(
        x in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| tensor(n, k, away_from_zero())),
        alpha in 0.0f32..1.0,
    ) {
        let mut layer = LeakyRelu::leaky(alpha).unwrap();
        assert_passes(&check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn softmax(x in batch()) {
        assert_passes(&check_layer(&mut Softmax::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn flatten(x in (1usize..=4, 1usize..=3, 1usize..=4, 1usize..=4).prop_flat_map(|(n, c, h, w)| {
        proptest::collection::vec(-2.0f32..2.0, n * c * h * w)
            .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), v).unwrap())
    })) {
        assert_passes(&check_layer(&mut Flatten::new(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn conv2d(
        (x, c_out, k, s, p, bias, seed) in (1usize..=3, 1usize..=3, 1usize..=4, 1usize..=4, 1usize..=3, 1usize..=3, 0usize..=2)
            .prop_flat_map(|(n, c, kh, kw, s, p_in, p)| {
                // input large enough for the kernel after padding: h + 2p ≥ kh
                let (h0, w0) = (kh.saturating_sub(2 * p).max(1), kw.saturating_sub(2 * p).max(1));
                (h0..h0 + 5, w0..w0 + 5, Just((n, c, kh, kw, s, p, p_in)))
            })
            .prop_flat_map(|(h, w, (n, c, kh, kw, s, p, c_out))| {
                (
                    proptest::collection::vec(-2.0f32..2.0, n * c * h * w)
                        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), v).unwrap()),
                    Just(c_out), Just((kh, kw)), Just(s), Just(p), any::<bool>(), any::<u64>(),
                )
            })
    ) {
        let mut cfg = Conv2dConfig::new(x.shape()[1], c_out, 1).stride(s).padding(p).with_bias(bias);
        cfg.kernel = k;
        cfg.init = Init::XavierUniform;
        let mut layer = Conv2d::new(&cfg, &mut seeded(seed)).unwrap();
        layer.visit(&mut |n, slot| if let (Slot::Param(p), "bias") = (slot, n) {
            p.value.iter_mut().enumerate().for_each(|(i, b)| *b = 0.2 * i as f32 - 0.1);
        });
        let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
        prop_assert_eq!(report.tensors.len(), if bias { 3 } else { 2 });
        assert_passes(&report);
    }

    #[test]
    fn max_pool(x in distinct_images(), k in 1usize..=3, s in 1usize..=3) {
        prop_assume!(x.shape()[2] >= k && x.shape()[3] >= k);
        assert_passes(&check_layer(&mut MaxPool2d::max(k, s).unwrap(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    /// A stack that runs the ReLU after the pooling (see `Sequential`); values shifted to
    /// stay 0.025 away from ReLU's kink.
    #[test]
    fn relu_then_max_pool(x in distinct_images(), k in 1usize..=3, s in 1usize..=3) {
        prop_assume!(x.shape()[2] >= k && x.shape()[3] >= k);
        let x = x.mapv(|v| v + 0.025);
        let mut net = Sequential::new().with(Relu::new()).with(MaxPool2d::max(k, s).unwrap());
        assert_passes(&check_layer(&mut net, x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn avg_pool(x in distinct_images(), k in 1usize..=3, s in 1usize..=3) {
        prop_assume!(x.shape()[2] >= k && x.shape()[3] >= k);
        assert_passes(&check_layer(&mut AvgPool2d::avg(k, s).unwrap(), x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn batchnorm_rows(x in (2usize..=8, 1usize..=6).prop_flat_map(|(n, f)| tensor(n, f, -2.0f32..2.0)), seed in any::<u64>()) {
        prop_assume!(min_spread(&x) > 0.3);
        let mut bn = with_affine(BatchNorm::with_features(x.shape()[1]).unwrap(), seed);
        assert_passes(&check_layer(&mut bn, x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn batchnorm_images(x in (1usize..=3, 1usize..=3, 1usize..=3, 2usize..=3).prop_flat_map(|(n, c, h, w)| {
        proptest::collection::vec(-2.0f32..2.0, n * c * h * w)
            .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), v).unwrap())
    }), seed in any::<u64>()) {
        // channels as columns: [n·h·w, c]
        let c = x.shape()[1];
        let values: Vec<f32> = x.view().permuted_axes(IxDyn(&[0, 2, 3, 1])).iter().copied().collect();
        let cols = ArrayD::from_shape_vec(IxDyn(&[x.len() / c, c]), values).unwrap();
        prop_assume!(min_spread(&cols) > 0.3);
        let mut bn = with_affine(BatchNorm::with_features(c).unwrap(), seed);
        assert_passes(&check_layer(&mut bn, x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn dropout_with_a_fixed_seed(x in batch(), p in 0.0f32..0.9, seed in any::<u64>()) {
        let mut d = Dropout::frozen(p, seed).unwrap();
        assert_passes(&check_layer(&mut d, x.view(), &GradCheckConfig::default()).unwrap());
    }

    #[test]
    fn sequential_stack(x in batch(), hidden in 1usize..=16, n_out in 1usize..=16, seed in any::<u64>()) {
        let mut rng = seeded(seed);
        let k = x.shape()[1];
        let mut net = Sequential::new()
            .with(Dense::new(&DenseConfig::new(k, hidden).with_init(Init::XavierUniform), &mut rng).unwrap())
            .with(Tanh::new())
            .with(Dense::new(&DenseConfig::new(hidden, n_out).with_init(Init::XavierUniform), &mut rng).unwrap())
            .with(Sigmoid::new());
        let report = check_layer(&mut net, x.view(), &GradCheckConfig::default()).unwrap();
        prop_assert_eq!(report.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            vec!["input", "0.weight", "0.bias", "2.weight", "2.bias"]);
        assert_passes(&report);
    }

    #[test]
    fn mse(
        (y, t) in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| (tensor(n, k, -2.0f32..2.0), tensor(n, k, -2.0f32..2.0)))
    ) {
        let r = check_loss(&mut Mse::new(), y.view(), Target::Values(t.view()), &GradCheckConfig::default()).unwrap();
        assert_passes(&r);
    }

    #[test]
    fn bce_with_logits(
        (z, t) in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| (tensor(n, k, -4.0f32..4.0), tensor(n, k, 0.0f32..=1.0)))
    ) {
        let r = check_loss(&mut BceWithLogits::new(), z.view(), Target::Values(t.view()), &GradCheckConfig::default()).unwrap();
        assert_passes(&r);
    }

    #[test]
    fn bce_with_logits_classes(
        (z, c) in (1usize..=8).prop_flat_map(|n| (tensor(n, 1, -4.0f32..4.0), proptest::collection::vec(0usize..2, n)))
    ) {
        let r = check_loss(&mut BceWithLogits::new(), z.view(), Target::Classes(&c), &GradCheckConfig::default()).unwrap();
        assert_passes(&r);
    }

    #[test]
    fn softmax_cross_entropy_classes(
        (z, c) in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| (tensor(n, k, -4.0f32..4.0), proptest::collection::vec(0..k, n)))
    ) {
        let r = check_loss(&mut SoftmaxCrossEntropy::new(), z.view(), Target::Classes(&c), &GradCheckConfig::default()).unwrap();
        assert_passes(&r);
    }

    #[test]
    fn softmax_cross_entropy_soft_targets(
        (z, w) in (1usize..=8, 1usize..=16).prop_flat_map(|(n, k)| (tensor(n, k, -4.0f32..4.0), tensor(n, k, 0.01f32..1.0)))
    ) {
        // rows of positive weights normalised to distributions
        let mut t = w.clone();
        for mut row in t.rows_mut() {
            let s = row.sum();
            row.mapv_inplace(|v| v / s);
        }
        let r = check_loss(&mut SoftmaxCrossEntropy::new(), z.view(), Target::Values(t.view()), &GradCheckConfig::default()).unwrap();
        assert_passes(&r);
    }
}

/// `y = x ⊙ s` with a learnable scale `s` (one per feature), whose backward is broken on
/// purpose in one of two ways.
#[derive(Debug)]
struct BrokenScale {
    scale: Param,
    /// Break ∂E/∂x (drop the factor s) instead of ∂E/∂s (flip its sign).
    break_input: bool,
}

impl BrokenScale {
    fn new(k: usize, break_input: bool) -> Self {
        let s = ArrayD::from_shape_fn(IxDyn(&[k]), |i| 0.5 + 0.25 * i[0] as f32);
        BrokenScale {
            scale: Param::new(s),
            break_input,
        }
    }
}

impl Layer for BrokenScale {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("scale", Slot::Param(&mut self.scale));
    }

    fn forward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: &mut Buffer,
        _mode: Mode,
    ) -> nn_layers::Result<()> {
        y.assign(x.view());
        let mut y = y.view_mut();
        for mut row in y.rows_mut() {
            row *= &self.scale.value; // y = x ⊙ s
        }
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        _y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> nn_layers::Result<()> {
        if let Some(dx) = dx {
            dx.assign(dy.view());
            if !self.break_input {
                let mut dx = dx.view_mut();
                for mut row in dx.rows_mut() {
                    row *= &self.scale.value; // correct: ∂E/∂x = dy ⊙ s
                }
            } // broken: ∂E/∂x = dy
        }
        let sign = if self.break_input { 1.0 } else { -1.0 }; // broken: −Σ dy ⊙ x
        for (dy, x) in dy.rows().into_iter().zip(x.rows()) {
            for ((g, &d), &x) in self.scale.grad.iter_mut().zip(dy.iter()).zip(x.iter()) {
                *g += sign * d * x;
            }
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(BrokenScaleConfig {
            k: self.scale.len(),
            break_input: self.break_input,
        })
    }
}

#[derive(Debug)]
struct BrokenScaleConfig {
    k: usize,
    break_input: bool,
}

impl LayerConfig for BrokenScaleConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("broken_scale")
    }
    fn tensors(&self) -> nn_layers::Result<Vec<TensorSpec>> {
        Ok(vec![TensorSpec::param("scale", vec![self.k])])
    }
    fn output_shape(&self, input: &[usize]) -> nn_layers::Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn build(&self, _rng: &mut nn_core::Rng) -> nn_layers::Result<Box<dyn Layer>> {
        Ok(Box::new(BrokenScale::new(self.k, self.break_input)))
    }
}

#[test]
fn checker_reports_a_wrong_input_gradient() {
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| i[0] as f32 - 0.7 * i[1] as f32);
    let mut layer = BrokenScale::new(4, true);
    let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
    assert!(!report.passed(), "{report}");
    let input = &report.tensors[0];
    assert_eq!(input.name, "input");
    // scale[0] = 0.5, so the analytic value is off by a factor of 2 at feature 0 (those
    // with s = 1, feature 2, are right by luck); every other feature fails
    assert_eq!(input.failed, 9, "{report}");
    assert_eq!(
        report.tensors[1].failed, 0,
        "the scale gradient is correct: {report}"
    );
    let worst = report.worst_abs().unwrap();
    assert_eq!(worst.tensor, "input");
    assert!(report.to_string().contains("FAILED"));
}

#[test]
fn checker_reports_a_wrong_parameter_gradient() {
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| 1.0 + i[0] as f32 + 0.5 * i[1] as f32);
    let mut layer = BrokenScale::new(3, false);
    let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
    assert!(!report.passed());
    assert_eq!(report.tensors[0].failed, 0, "{report}");
    let scale = &report.tensors[1];
    assert_eq!(
        (scale.name.as_str(), scale.failed),
        ("scale", 3),
        "{report}"
    );
    let c = scale.first_failure.as_ref().unwrap();
    // the sign is flipped: analytic = −numeric
    assert!((c.analytic + c.numeric).abs() < 1e-3, "{c:?}");
}

/// Softmax with a backward that gives no input gradient at all. Its outputs sum to 1 in
/// every row, so only a projection `Σ r ⊙ y` with unequal weights `r` sees the mistake.
struct ZeroGradSoftmax(Softmax);

impl Layer for ZeroGradSoftmax {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}

    fn forward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: &mut Buffer,
        mode: Mode,
    ) -> nn_layers::Result<()> {
        self.0.forward(x, y, mode)
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        _y: ArrayViewD<'_, f32>,
        _dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> nn_layers::Result<()> {
        if let Some(dx) = dx {
            dx.resized(x.shape()).fill(0.0); // wrong: ∂E/∂x = 0
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        self.0.config()
    }
}

#[test]
fn checker_projects_with_unequal_weights() {
    // with r = 1 everywhere, L = Σ y = rows is constant and a zero gradient would pass
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 4]), |i| 0.3 * i[1] as f32 - 0.2 * i[0] as f32);
    let mut layer = ZeroGradSoftmax(Softmax::new());
    let report = check_layer(&mut layer, x.view(), &GradCheckConfig::default()).unwrap();
    assert!(!report.passed(), "{report}");
    assert!(report.tensors[0].failed > 0, "{report}");
}
