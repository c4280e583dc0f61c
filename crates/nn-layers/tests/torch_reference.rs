//! Forward outputs and gradients against PyTorch (float64), on every code path a gradient
//! check cannot vouch for: a gradient check proves that backward agrees with forward, not
//! that forward is right. The values come from `tests/reference/layers.py` (the script
//! beside `layers.json`): convolutions on images wider than 8 columns (the 8-float row
//! blocks), with stride, asymmetric kernels and padding, without bias, 1×1 over many
//! channels, and as the first layer of a network (whose input gradient is skipped); max and
//! average pooling in the general window loop and the 2×2 fast path, overlapping and with
//! rows left over; batch norm in train mode (output, gradients, running statistics) and in
//! eval mode; LeakyReLU at and around 0; softmax cross-entropy with soft targets whose rows
//! do not sum to 1.

use ndarray::{ArrayD, IxDyn};
use nn_core::{Buffer, seeded};
use nn_layers::layer::{apply, apply_backward};
use nn_layers::loss::{Loss, SoftmaxCrossEntropy, Target};
use nn_layers::{
    BatchNorm, Conv2d, Conv2dConfig, Layer, LeakyRelu, Mode, Pool2d, Sequential, Slot,
};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = include_str!("reference/layers.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// A tensor stored as `{shape, data}`.
fn tensor(v: &Value) -> ArrayD<f32> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap() as f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap()
}

/// `|got − want| ≤ 1e-5·(1 + |want|)` everywhere, shapes equal.
fn close(what: &str, got: &ArrayD<f32>, want: &ArrayD<f32>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: entry {i} is {g}, PyTorch says {w}"
        );
    }
}

/// The gradient of parameter `name` of `layer`.
fn grad(layer: &mut dyn Layer, name: &str) -> ArrayD<f32> {
    let mut out = None;
    layer.visit(&mut |n, slot| {
        if let (true, Slot::Param(p)) = (n == name, slot) {
            out = Some(p.grad.clone());
        }
    });
    out.unwrap_or_else(|| panic!("no parameter `{name}`"))
}

/// Runs `layer` forward in train mode and backward with the case's `dy`; checks `y` and
/// `dx` and returns nothing else (parameter gradients stay in the layer).
fn forward_backward(name: &str, layer: &mut dyn Layer, case: &Value) {
    layer.zero_grad();
    let (x, dy) = (tensor(&case["x"]), tensor(&case["dy"]));
    let (y, dx) = apply_backward(layer, x.view(), dy.view()).unwrap();
    close(&format!("{name}: y"), &y, &tensor(&case["y"]));
    close(&format!("{name}: dx"), &dx, &tensor(&case["dx"]));
}

fn conv(case: &Value) -> Conv2d {
    let pair = |k: &str| {
        let v = case[k].as_array().unwrap();
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    let w = tensor(&case["weight"]);
    let mut cfg = Conv2dConfig::new(w.shape()[1], w.shape()[0], 1);
    cfg.kernel = pair("kernel");
    cfg.stride = pair("stride");
    cfg.padding = pair("padding");
    cfg.bias = case.get("bias").is_some();
    let mut c = Conv2d::new(&cfg, &mut seeded(0)).unwrap();
    c.set_weights(w, case.get("bias").map(tensor)).unwrap();
    c
}

fn check_conv(case: &Value) {
    let name = format!("conv2d {}", case["name"]);
    let mut c = conv(case);
    forward_backward(&name, &mut c, case);
    close(
        &format!("{name}: dW"),
        &grad(&mut c, "weight"),
        &tensor(&case["dweight"]),
    );
    if case.get("dbias").is_some() {
        close(
            &format!("{name}: db"),
            &grad(&mut c, "bias"),
            &tensor(&case["dbias"]),
        );
    }
    // as the first layer of a network: the same parameter gradients without ∂E/∂x
    let mut net = Sequential::new().with(conv(case));
    let (x, mut y) = (tensor(&case["x"]), Buffer::new());
    net.forward(x.view(), &mut y, Mode::Train).unwrap();
    net.backward(x.view(), y.view(), tensor(&case["dy"]).view(), None)
        .unwrap();
    close(
        &format!("{name} (first layer): dW"),
        &grad(&mut net, "0.weight"),
        &tensor(&case["dweight"]),
    );
    if case.get("dbias").is_some() {
        close(
            &format!("{name} (first layer): db"),
            &grad(&mut net, "0.bias"),
            &tensor(&case["dbias"]),
        );
    }
    // and in eval mode, the same output
    let y = apply(&mut c, x.view(), Mode::Eval).unwrap();
    close(&format!("{name}: eval y"), &y, &tensor(&case["y"]));
}

fn check_pool(case: &Value) {
    let name = format!("{} {}", case["kind"], case["name"]);
    let (k, s) = (
        case["kernel"].as_u64().unwrap() as usize,
        case["stride"].as_u64().unwrap() as usize,
    );
    let mut p = if case["kind"] == "maxpool2d" {
        Pool2d::max(k, s).unwrap()
    } else {
        Pool2d::avg(k, s).unwrap()
    };
    forward_backward(&name, &mut p, case);
}

fn check_batchnorm(case: &Value) {
    let name = format!("batchnorm {}", case["name"]);
    let f = tensor(&case["weight"]).len();
    let mut bn = BatchNorm::with_features(f).unwrap();
    let start = &case["start"];
    bn.visit(&mut |n, slot| match (n, slot) {
        ("weight", Slot::Param(p)) => p.value = tensor(&case["weight"]),
        ("bias", Slot::Param(p)) => p.value = tensor(&case["bias"]),
        ("running_mean", Slot::Buffer(b)) => *b = tensor(&start["running_mean"]),
        ("running_var", Slot::Buffer(b)) => *b = tensor(&start["running_var"]),
        _ => {}
    });
    forward_backward(&name, &mut bn, case);
    close(
        &format!("{name}: dγ"),
        &grad(&mut bn, "weight"),
        &tensor(&case["dweight"]),
    );
    close(
        &format!("{name}: dβ"),
        &grad(&mut bn, "bias"),
        &tensor(&case["dbias"]),
    );
    let (mean, var) = bn.running_stats();
    close(
        &format!("{name}: running mean"),
        mean,
        &tensor(&case["running_mean"]),
    );
    close(
        &format!("{name}: running var"),
        var,
        &tensor(&case["running_var"]),
    );
    let y = apply(&mut bn, tensor(&case["x_eval"]).view(), Mode::Eval).unwrap();
    close(&format!("{name}: eval y"), &y, &tensor(&case["y_eval"]));
}

fn check_leaky(case: &Value) {
    let mut l = LeakyRelu::leaky(case["alpha"].as_f64().unwrap() as f32).unwrap();
    forward_backward("leaky_relu", &mut l, case);
}

fn check_soft_ce(case: &Value) {
    let mut l = SoftmaxCrossEntropy::new();
    let (z, t) = (tensor(&case["z"]), tensor(&case["t"]));
    let e = l.forward(z.view(), Target::Values(t.view())).unwrap();
    let want = case["loss"].as_f64().unwrap() as f32;
    assert!(
        (e - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "loss {e}, PyTorch says {want}"
    );
    let dz = l.backward().unwrap().to_owned();
    close("softmax_cross_entropy: dz", &dz, &tensor(&case["dz"]));
}

#[test]
fn every_case_matches_pytorch() {
    let cases = cases();
    assert_eq!(cases.len(), 15);
    for case in &cases {
        match case["kind"].as_str().unwrap() {
            "conv2d" => check_conv(case),
            "maxpool2d" | "avgpool2d" => check_pool(case),
            "batchnorm" => check_batchnorm(case),
            "leaky_relu" => check_leaky(case),
            "softmax_cross_entropy" => check_soft_ce(case),
            other => panic!("unknown case kind {other}"),
        }
    }
}
