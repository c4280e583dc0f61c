//! The one description of a layer kind: its configuration.
//!
//! Every layer kind has one configuration type ([`DenseConfig`](crate::DenseConfig),
//! [`Conv2dConfig`](crate::Conv2dConfig), …) implementing [`LayerConfig`]. It is the only
//! place that knows the kind's attributes, their defaults and their valid ranges, and it is
//! what everything else goes through:
//!
//! - a model file stores [`LayerConfig::spec`] (kind and attributes) and the registry reads
//!   it back through the kind's `from_spec`;
//! - the `--layers` grammar and spec files produce a [`LayerSpec`] that the same `from_spec`
//!   completes (input widths inferred from the running shape) and validates;
//! - a layer reports its configuration through [`Layer::config`].
//!
//! A configuration knows, *before anything is allocated*, the tensors its layer will own
//! ([`LayerConfig::tensors`]) and the output shape for an input shape
//! ([`LayerConfig::output_shape`]), both computed with checked arithmetic against the
//! [`limits`]. A loader compares the declared tensors with what a file
//! holds and only then builds the layer; a trainer checks every activation of a batch
//! against the limits before the first step.

use std::fmt::Debug;

use nn_core::{Rng, limits};

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::registry::Registry;
use crate::spec::LayerSpec;

/// What the values of a stored tensor must satisfy besides being finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Any finite number.
    Real,
    /// A finite number `≥ 0` (a variance, a counter).
    NonNegative,
}

/// One tensor a layer owns, as its configuration declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name the layer's [`visit`](crate::Layer::visit) gives it (`"weight"`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Trained by optimizers (`true`) or a buffer that is only saved (`false`).
    pub trainable: bool,
    /// What its values must satisfy.
    pub domain: Domain,
}

impl TensorSpec {
    /// A trainable parameter of any finite value.
    pub fn param(name: &str, shape: Vec<usize>) -> Self {
        TensorSpec {
            name: name.into(),
            shape,
            trainable: true,
            domain: Domain::Real,
        }
    }

    /// A saved, untrained buffer whose values lie in `domain`.
    pub fn buffer(name: &str, shape: Vec<usize>, domain: Domain) -> Self {
        TensorSpec {
            name: name.into(),
            shape,
            trainable: false,
            domain,
        }
    }

    /// Number of elements (the shape was checked when the configuration was validated).
    pub fn len(&self) -> usize {
        limits::product(&self.shape).unwrap_or(usize::MAX)
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The configuration of one layer kind: the kind's single description.
///
/// # Contract
/// - [`tensors`](LayerConfig::tensors) lists exactly the names and shapes the built layer's
///   [`visit`](crate::Layer::visit) shows, in the same order;
/// - [`output_shape`](LayerConfig::output_shape) is the shape the built layer's `forward`
///   returns, and refuses (never panics on) an input the layer cannot take;
/// - neither allocates anything sized by the configuration's numbers: they only compute.
pub trait LayerConfig: Send + Sync {
    /// The kind and its attributes, as model files store them.
    fn spec(&self) -> LayerSpec;

    /// A short human-readable name, e.g. `dense(784 → 128)`.
    fn name(&self) -> String {
        self.spec().kind
    }

    /// The tensors the layer owns, in visiting order.
    ///
    /// # Errors
    /// [`Error::Core`] with a [`limits`] error when a tensor would be too large.
    fn tensors(&self) -> Result<Vec<TensorSpec>>;

    /// The output shape for an input of shape `input` (batch axis first), computed with
    /// checked arithmetic; the output must fit within [`limits::MAX_TENSOR_ELEMENTS`]. The
    /// default keeps the input's shape, as element-wise layers do.
    ///
    /// # Errors
    /// A shape error naming both shapes, or a limit error.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        checked_output(|| self.name(), input.to_vec())
    }

    /// Builds the layer, drawing initial weights from `rng`.
    ///
    /// # Errors
    /// As the kind's validation.
    fn build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>>;

    /// The elements of every output the layer produces for an input of shape `input`: its
    /// own output, or, for a container, all its layers' outputs together (what a forward
    /// pass keeps in memory). The default counts [`LayerConfig::output_shape`].
    ///
    /// # Errors
    /// As [`LayerConfig::output_shape`].
    fn output_elements(&self, input: &[usize]) -> Result<usize> {
        Ok(limits::product(&self.output_shape(input)?).unwrap_or(usize::MAX))
    }
}

/// A configuration shows as its spec (kind and attributes), so that a configuration type
/// need not derive `Debug`.
impl Debug for dyn LayerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.spec())
    }
}

/// What a configuration is read in: the registry (for nested layers), the shape of the
/// input the layer will receive when known (to infer widths such as `n_in`), the layer's
/// position in its container and how deeply it is nested.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The registry that resolves nested layer kinds.
    pub registry: &'a Registry,
    /// The shape of the layer's input, batch axis first, when known.
    pub input: Option<&'a [usize]>,
    /// The layer's position in its container, from 0.
    pub index: usize,
    /// Containers around the layer.
    pub depth: usize,
}

impl<'a> Context<'a> {
    /// The context of a top-level layer with an unknown input.
    pub fn new(registry: &'a Registry) -> Self {
        Context {
            registry,
            input: None,
            index: 0,
            depth: 0,
        }
    }

    /// With the shape of the input the layer receives (batch axis first).
    pub fn with_input(mut self, input: &'a [usize]) -> Self {
        self.input = Some(input);
        self
    }

    /// The attribute `key` of `spec`, or, when the spec leaves it out, axis 1 of the input
    /// (features or channels), which must then have one of the `ranks`; `expected` describes
    /// that input in the error (`"[n, features]"`).
    ///
    /// # Errors
    /// [`Error::Spec`] when the attribute is missing and there is no input to infer it
    /// from; a shape error naming both shapes when the input does not fit.
    pub fn width(
        &self,
        spec: &LayerSpec,
        key: &str,
        ranks: &[usize],
        expected: &str,
    ) -> Result<usize> {
        match self.input {
            Some(input) if spec.get(key).is_none() => {
                if !ranks.contains(&input.len()) {
                    let hint = if spec.kind == "dense" && input.len() > 2 {
                        " (put `flatten` before it)"
                    } else {
                        ""
                    };
                    return Err(nn_core::Error::shape(
                        format!("{}{hint}", spec.kind),
                        expected,
                        input,
                    )
                    .into());
                }
                Ok(input[1])
            }
            _ => spec.usize_or_inferred(key, None),
        }
    }
}

/// `Err` naming the layer kind when `ok` is false.
pub(crate) fn ensure(ok: bool, kind: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            layer: kind.into(),
            message: message(),
        })
    }
}

/// The output shape `out` of layer `name`, checked against the per-tensor limit.
pub(crate) fn checked_output(name: impl FnOnce() -> String, out: Vec<usize>) -> Result<Vec<usize>> {
    limits::elements(|| format!("{} output", name()), &out)?;
    Ok(out)
}

/// Element count of a parameter tensor of layer `name`, checked against the model-wide
/// parameter limit (a single tensor can be no larger than all of them together).
pub(crate) fn param_elements(name: impl FnOnce() -> String, shape: &[usize]) -> Result<usize> {
    Ok(limits::check(
        name,
        shape,
        limits::MAX_PARAMETERS,
        "parameters in a model",
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Mode, Slot};
    use crate::spec::Attr;
    use ndarray::ArrayD;
    use nn_core::seeded;

    /// One spec of every built-in kind and an input it takes.
    fn every_kind() -> Vec<(LayerSpec, Vec<usize>)> {
        let int = |v: i64| Attr::Int(v);
        vec![
            (LayerSpec::new("dense").with("n_out", int(3)), vec![2, 5]),
            (
                LayerSpec::new("conv2d")
                    .with("out_channels", int(3))
                    .with("kernel", int(3))
                    .with("padding", int(1))
                    .with("stride", int(2)),
                vec![2, 2, 5, 4],
            ),
            (
                LayerSpec::new("maxpool2d").with("kernel", int(2)),
                vec![1, 2, 4, 4],
            ),
            (
                LayerSpec::new("avgpool2d")
                    .with("kernel", int(2))
                    .with("stride", int(1)),
                vec![1, 2, 3, 3],
            ),
            (LayerSpec::new("batchnorm"), vec![3, 2, 2, 2]),
            (
                LayerSpec::new("batchnorm")
                    .with("eps", 0.0009765625) // 2⁻¹⁰, exact in f32
                    .with("momentum", 0.25),
                vec![3, 4],
            ),
            (
                LayerSpec::new("dropout").with("p", Attr::Float(0.5)),
                vec![2, 3],
            ),
            (LayerSpec::new("relu"), vec![2, 3]),
            (LayerSpec::new("sigmoid"), vec![2, 3]),
            (LayerSpec::new("tanh"), vec![2, 3]),
            (LayerSpec::new("identity"), vec![2, 3]),
            (LayerSpec::new("leaky_relu"), vec![2, 3]),
            (LayerSpec::new("leaky_relu").with("alpha", 0.25), vec![2, 3]),
            (LayerSpec::new("softmax"), vec![2, 3]),
            (LayerSpec::new("flatten"), vec![2, 3, 2]),
            (
                LayerSpec::new("sequential").with(
                    "layers",
                    Attr::Layers(vec![
                        LayerSpec::new("dense").with("n_out", int(4)),
                        LayerSpec::new("batchnorm"),
                        LayerSpec::new("dense").with("n_out", int(2)),
                    ]),
                ),
                vec![3, 5],
            ),
        ]
    }

    #[test]
    fn tensors_and_output_shapes_are_what_the_built_layer_has() {
        let registry = Registry::new();
        for (spec, input) in every_kind() {
            let ctx = Context::new(&registry).with_input(&input);
            let cfg = registry.config(&spec, &ctx).unwrap();
            let mut layer = cfg.build(&mut seeded(1)).unwrap();
            let mut seen = Vec::new();
            layer.visit(&mut |name, slot| {
                let (shape, trainable) = match slot {
                    Slot::Param(p) => (p.value.shape().to_vec(), true),
                    Slot::Buffer(b) => (b.shape().to_vec(), false),
                };
                seen.push((name.to_string(), shape, trainable));
            });
            let declared: Vec<_> = cfg
                .tensors()
                .unwrap()
                .into_iter()
                .map(|t| (t.name, t.shape, t.trainable))
                .collect();
            assert_eq!(declared, seen, "{}", spec.kind);
            let n = limits::product(&input).unwrap();
            let x = ArrayD::from_shape_vec(
                input.clone(),
                (0..n).map(|v| (v % 7) as f32 * 0.3 - 0.8).collect(),
            )
            .unwrap();
            let y = crate::layer::apply(layer.as_mut(), x.view(), Mode::Train).unwrap();
            assert_eq!(
                cfg.output_shape(&input).unwrap(),
                y.shape(),
                "{}",
                spec.kind
            );
            // the layer reports the same configuration it was built from, every attribute
            // given kept, and that spec reads back to the same configuration
            assert_eq!(layer.config().spec(), cfg.spec(), "{}", spec.kind);
            for (key, given) in &spec.attrs {
                let kept = cfg.spec().get(key).cloned();
                let same = match (&kept, given) {
                    (Some(Attr::Ints(v)), Attr::Int(i)) => v.iter().all(|x| x == i), // k → (k, k)
                    (_, Attr::Layers(_)) => true, // the nested kinds are cases of their own
                    (kept, given) => kept.as_ref() == Some(given),
                };
                assert!(same, "{} {key}: {kept:?} for {given:?}", spec.kind);
            }
            let again = registry
                .config(&cfg.spec(), &Context::new(&registry))
                .unwrap();
            assert_eq!(again.spec(), cfg.spec(), "{}", spec.kind);
            assert_eq!(layer.name(), cfg.name());
        }
    }

    #[test]
    fn widths_are_inferred_from_the_input_and_stored() {
        let registry = Registry::new();
        let specs = [
            LayerSpec::new("conv2d")
                .with("out_channels", Attr::Int(4))
                .with("kernel", Attr::Ints(vec![3, 3])),
            LayerSpec::new("batchnorm"),
            LayerSpec::new("flatten"),
            LayerSpec::new("dense").with("n_out", Attr::Int(10)),
        ];
        let cfg = registry.sequential(&specs, &[1, 2, 6, 6]).unwrap();
        // 6 − 3 + 1 = 4: conv output [1, 4, 4, 4], flattened 64
        let spec = cfg.spec();
        let layers = spec.layers("layers").unwrap();
        assert_eq!(layers[0].usize("in_channels").unwrap(), 2);
        assert_eq!(layers[1].usize("features").unwrap(), 4);
        assert_eq!(layers[1].float("eps").unwrap(), f64::from(1e-5f32));
        assert_eq!(layers[3].usize("n_in").unwrap(), 64);
        assert_eq!(cfg.output_shape(&[7, 2, 6, 6]).unwrap(), vec![7, 10]);
        // without an input shape a width cannot be left out
        let e = registry
            .config(&specs[3], &Context::new(&registry))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer spec `dense`: missing attribute `n_in` (and no input shape to infer it from)"
        );
    }

    #[test]
    fn sizes_beyond_the_limits_are_refused_before_building() {
        let registry = Registry::new();
        let refuse = |spec: LayerSpec, input: &[usize]| -> String {
            let ctx = Context::new(&registry).with_input(input);
            match registry.config(&spec, &ctx) {
                Err(e) => e.to_string(),
                Ok(cfg) => cfg.output_shape(input).unwrap_err().to_string(),
            }
        };
        let e = refuse(
            LayerSpec::new("dense").with("n_out", Attr::Int(99_999_999_999)),
            &[32, 64],
        );
        assert_eq!(
            e,
            "dense(64 → 99999999999) weight [99999999999, 64]: 6399999999936 elements, more than the limit of 67108864 parameters in a model"
        );
        let e = refuse(
            LayerSpec::new("dense")
                .with("n_in", Attr::Int(1 << 32))
                .with("n_out", Attr::Int(1 << 32)),
            &[1, 1 << 32],
        );
        assert!(e.contains("too many elements to count"), "{e}");
        let e = refuse(
            LayerSpec::new("dense").with("n_out", Attr::Int(i64::MAX)),
            &[1, 784],
        );
        assert!(e.contains("more than the limit"), "{e}");
        // 100000 filters: few parameters, but a batch of outputs beyond the tensor limit
        let e = refuse(
            LayerSpec::new("conv2d")
                .with("out_channels", Attr::Int(100_000))
                .with("kernel", Attr::Int(3)),
            &[32, 1, 28, 28],
        );
        assert!(
            e.starts_with(
                "conv2d(1 → 100000, 3×3, stride 1, padding 0) output [32, 100000, 26, 26]"
            ),
            "{e}"
        );
        // padding whose arithmetic overflows is a limit error, not a panic or a wrap
        for p in [1i64 << 62, i64::MAX] {
            let e = refuse(
                LayerSpec::new("conv2d")
                    .with("out_channels", Attr::Int(3))
                    .with("kernel", Attr::Int(3))
                    .with("padding", Attr::Int(p)),
                &[1, 1, 28, 28],
            );
            assert!(e.contains("too many elements to count"), "{p}: {e}");
        }
        let e = refuse(
            LayerSpec::new("conv2d")
                .with("out_channels", Attr::Int(3))
                .with("kernel", Attr::Int(3))
                .with("padding", Attr::Int(1000)),
            &[32, 1, 28, 28],
        );
        assert!(e.contains("output [32, 3, 2026, 2026]"), "{e}"); // 28 + 2·1000 − 3 + 1
        let e = refuse(
            LayerSpec::new("batchnorm").with("features", Attr::Int(1 << 40)),
            &[1, 2],
        );
        assert!(e.contains("parameters in a model"), "{e}");
        let e = refuse(
            LayerSpec::new("conv2d")
                .with("out_channels", Attr::Int(1 << 40))
                .with("kernel", Attr::Int(1)),
            &[1, 1, 2, 2],
        );
        assert!(e.contains("parameters in a model"), "{e}");
    }

    #[test]
    fn a_network_refuses_too_many_layers_and_too_many_parameters() {
        let registry = Registry::new();
        let relu = vec![LayerSpec::new("relu"); limits::MAX_LAYERS + 1];
        let e = registry.sequential(&relu, &[1, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network: 10001 layers, more than the limit of 10000"
        );
        // each 4096×4096 weight is within the limit, five together are not
        let wide = vec![LayerSpec::new("dense").with("n_out", Attr::Int(4096)); 5];
        let cfg = registry.sequential(&wide, &[1, 4096]).unwrap();
        let e = cfg.tensors().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the model's parameters and buffers: 67121152 elements, more than the limit of 67108864"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_misspelt_attributes_are_refused() {
        let registry = Registry::new();
        let spec = LayerSpec::new("dense")
            .with("n_in", Attr::Int(3))
            .with("n_ot", Attr::Int(2));
        let e = registry
            .config(&spec, &Context::new(&registry))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer spec `dense`: unknown attribute `n_ot` (expected: n_in, n_out, bias, init)"
        );
        let e = registry
            .config(
                &LayerSpec::new("relu").with("alpha", Attr::Float(0.1)),
                &Context::new(&registry),
            )
            .unwrap_err();
        assert!(e.to_string().contains("expected: none"), "{e}");
    }

    #[test]
    fn settings_out_of_range_are_refused_naming_the_kind() {
        let registry = Registry::new();
        let ctx = Context::new(&registry).with_input(&[2, 3]);
        let bn = |eps: f64, m: f64| {
            LayerSpec::new("batchnorm")
                .with("eps", eps)
                .with("momentum", m)
        };
        let cases = [
            (bn(0.0, 0.1), "batchnorm"),
            (bn(-1e-5, 0.1), "batchnorm"),
            (bn(f64::INFINITY, 0.1), "batchnorm"),
            (bn(f64::NAN, 0.1), "batchnorm"),
            (bn(1e-5, -0.1), "batchnorm"),
            (bn(1e-5, 1.5), "batchnorm"),
            (
                LayerSpec::new("batchnorm").with("features", 0usize),
                "batchnorm",
            ),
            (
                LayerSpec::new("leaky_relu").with("alpha", -0.1),
                "leaky_relu",
            ),
            (
                LayerSpec::new("leaky_relu").with("alpha", f64::NAN),
                "leaky_relu",
            ),
            (LayerSpec::new("dropout").with("p", 1.0), "dropout"),
            (LayerSpec::new("dropout").with("p", -0.5), "dropout"),
            (LayerSpec::new("dense").with("n_out", 0usize), "dense"),
            (
                LayerSpec::new("maxpool2d").with("kernel", 0usize),
                "maxpool2d",
            ),
        ];
        for (spec, kind) in cases {
            let e = registry.config(&spec, &ctx).map(|c| c.spec()).unwrap_err();
            assert!(e.to_string().contains(kind), "{spec:?}: {e}");
        }
        // the edges of the ranges are accepted: momentum 0 and 1, α = 0
        for spec in [
            bn(1e-9, 0.0),
            bn(1e-5, 1.0),
            LayerSpec::new("leaky_relu").with("alpha", 0.0),
        ] {
            registry.config(&spec, &ctx).unwrap();
        }
    }

    /// A configuration that keeps every default: output of the input's shape.
    struct Plain;

    impl LayerConfig for Plain {
        fn spec(&self) -> LayerSpec {
            LayerSpec::new("plain").with("width", 3usize)
        }
        fn tensors(&self) -> Result<Vec<TensorSpec>> {
            Ok(vec![TensorSpec::param("w", vec![3, 0])])
        }
        fn build(&self, _: &mut Rng) -> Result<Box<dyn Layer>> {
            Ok(Box::new(crate::Identity::new()))
        }
    }

    #[test]
    fn the_defaults_of_a_configuration() {
        let cfg: Box<dyn LayerConfig> = Box::new(Plain);
        assert_eq!(cfg.name(), "plain");
        assert_eq!(cfg.output_shape(&[4, 3]).unwrap(), [4, 3]);
        assert_eq!(cfg.output_elements(&[4, 3, 2]).unwrap(), 24);
        let huge = [1usize << 20, 1 << 20];
        let e = cfg.output_shape(&huge).unwrap_err().to_string();
        assert!(e.starts_with("plain output [1048576, 1048576]: "), "{e}");
        assert_eq!(
            format!("{cfg:?}"),
            r#"LayerSpec { kind: "plain", attrs: [("width", Int(3))] }"#
        );
        let t = &cfg.tensors().unwrap()[0];
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert!(!TensorSpec::param("b", vec![2, 3]).is_empty());
        assert_eq!(TensorSpec::param("b", vec![2, 3]).len(), 6);
    }

    #[test]
    fn an_inferred_width_needs_an_input_of_a_rank_the_kind_takes() {
        let registry = Registry::new();
        let dense = LayerSpec::new("dense").with("n_out", 2usize);
        let width = |input: &[usize]| {
            registry
                .config(&dense, &Context::new(&registry).with_input(input))
                .map(|c| c.spec().usize("n_in").unwrap())
                .map_err(|e| e.to_string())
        };
        assert_eq!(width(&[8, 5]), Ok(5));
        assert_eq!(
            width(&[8, 1, 4, 4]),
            Err(
                "dense (put `flatten` before it): expected shape [n, features], got [8, 1, 4, 4]"
                    .into()
            )
        );
        assert_eq!(
            width(&[8]),
            Err("dense: expected shape [n, features], got [8]".into())
        );
        // batch norm takes rank 2 or 4, and no flatten hint is given for it
        let bn = LayerSpec::new("batchnorm");
        let ctx = Context::new(&registry).with_input(&[2, 3, 4]);
        let e = registry.config(&bn, &ctx).unwrap_err().to_string();
        assert_eq!(
            e,
            "batchnorm: expected shape [n, f] or [n, c, h, w], got [2, 3, 4]"
        );
        // a width given is used, whatever the input
        let given = LayerSpec::new("dense")
            .with("n_in", 7usize)
            .with("n_out", 2usize);
        let ctx = Context::new(&registry).with_input(&[8, 5]);
        let cfg = registry.config(&given, &ctx).unwrap();
        assert_eq!(cfg.spec().usize("n_in").unwrap(), 7);
    }
}
