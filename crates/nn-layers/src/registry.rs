//! The layer registry: from a [`LayerSpec`] to a validated [`LayerConfig`], and from there
//! to a layer.
//!
//! Model files and spec files hold each layer as a spec (`kind` + attributes). A
//! [`Registry`] maps every kind to the function that reads its configuration; the built-in
//! kinds are registered by [`Registry::new`], and a crate that defines its own layer
//! registers its kind once before loading. A spec of a kind nobody registered fails with
//! [`Error::UnknownKind`] naming it.
//!
//! Reading a spec yields a configuration, not a layer: its tensors and output shapes can be
//! checked (against a file's contents, against the limits) before anything is allocated.

use std::collections::BTreeMap;

use nn_core::{Init, Rng};

use crate::activation::{ActivationConfig, IdentityFn, LeakyReluFn, ReluFn, SigmoidFn, TanhFn};
use crate::batchnorm::BatchNormConfig;
use crate::config::{Context, LayerConfig};
use crate::conv::Conv2dConfig;
use crate::dense::DenseConfig;
use crate::dropout::DropoutConfig;
use crate::error::{Error, Result};
use crate::flatten::FlattenConfig;
use crate::layer::Layer;
use crate::pool::{Pool2dConfig, Reduce};
use crate::sequential::{Sequential, SequentialConfig};
use crate::softmax::SoftmaxConfig;
use crate::spec::LayerSpec;

/// Reads and validates the configuration a spec describes. `ctx` carries the registry (for
/// nested layers) and, when known, the shape of the layer's input (to infer widths).
pub type Parser = fn(&LayerSpec, &Context<'_>) -> Result<Box<dyn LayerConfig>>;

/// Layer kinds and the functions that read their configurations.
#[derive(Clone, Debug)]
pub struct Registry {
    parsers: BTreeMap<String, Parser>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Boxes the configuration a typed reader returns.
macro_rules! boxed {
    ($read:expr) => {
        |s, c| Ok(Box::new($read(s, c)?) as Box<dyn LayerConfig>)
    };
}

impl Registry {
    /// A registry holding the built-in kinds: `dense`, `identity`, `sigmoid`, `tanh`,
    /// `relu`, `leaky_relu`, `softmax`, `flatten`, `conv2d`, `maxpool2d`, `avgpool2d`,
    /// `batchnorm`, `dropout`, `sequential`.
    pub fn new() -> Self {
        let mut r = Self::empty();
        r.register("dense", boxed!(DenseConfig::from_spec));
        r.register(
            "identity",
            boxed!(ActivationConfig::<IdentityFn>::from_spec),
        );
        r.register("sigmoid", boxed!(ActivationConfig::<SigmoidFn>::from_spec));
        r.register("tanh", boxed!(ActivationConfig::<TanhFn>::from_spec));
        r.register("relu", boxed!(ActivationConfig::<ReluFn>::from_spec));
        r.register(
            "leaky_relu",
            boxed!(ActivationConfig::<LeakyReluFn>::from_spec),
        );
        r.register("softmax", boxed!(SoftmaxConfig::from_spec));
        r.register("flatten", boxed!(FlattenConfig::from_spec));
        r.register("conv2d", boxed!(Conv2dConfig::from_spec));
        r.register("maxpool2d", |s, c| {
            Ok(Box::new(Pool2dConfig::from_spec(Reduce::Max, s, c)?))
        });
        r.register("avgpool2d", |s, c| {
            Ok(Box::new(Pool2dConfig::from_spec(Reduce::Avg, s, c)?))
        });
        r.register("batchnorm", boxed!(BatchNormConfig::from_spec));
        r.register("dropout", boxed!(DropoutConfig::from_spec));
        r.register("sequential", boxed!(SequentialConfig::from_spec));
        r
    }

    /// A registry with no kind at all.
    pub fn empty() -> Self {
        Registry {
            parsers: BTreeMap::new(),
        }
    }

    /// Registers (or replaces) the reader of `kind`; returns the one it replaced.
    pub fn register(&mut self, kind: impl Into<String>, parser: Parser) -> Option<Parser> {
        self.parsers.insert(kind.into(), parser)
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.parsers.contains_key(kind)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.parsers.keys().map(String::as_str)
    }

    /// Reads and validates the configuration `spec` describes, in context `ctx`.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] for an unregistered kind; the kind's own errors (a missing or
    /// unknown attribute, a size out of range or beyond a limit).
    pub fn config(&self, spec: &LayerSpec, ctx: &Context<'_>) -> Result<Box<dyn LayerConfig>> {
        let parse = self
            .parsers
            .get(&spec.kind)
            .ok_or_else(|| Error::UnknownKind {
                kind: nn_core::limits::excerpt(&spec.kind),
                known: self.kinds().collect::<Vec<_>>().join(", "),
            })?;
        parse(spec, ctx)
    }

    /// The configuration of a stack of `specs` whose first layer receives inputs of shape
    /// `input` (batch axis first): widths left out of the specs are inferred and every
    /// layer's input shape is checked.
    ///
    /// # Errors
    /// The first failing layer's error wrapped in [`Error::AtLayer`].
    pub fn sequential(&self, specs: &[LayerSpec], input: &[usize]) -> Result<SequentialConfig> {
        let spec =
            LayerSpec::new("sequential").with("layers", crate::spec::Attr::Layers(specs.to_vec()));
        SequentialConfig::from_spec(&spec, &Context::new(self).with_input(input))
    }

    /// Builds the layer a spec describes (its configuration read with no input shape).
    ///
    /// # Errors
    /// As [`Registry::config`].
    pub fn build(&self, spec: &LayerSpec, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        self.config(spec, &Context::new(self))?.build(rng)
    }

    /// Builds a [`Sequential`] from the specs of its layers.
    ///
    /// # Errors
    /// As [`Registry::build`], wrapped in [`Error::AtLayer`] with the failing position.
    pub fn build_sequential(&self, specs: &[LayerSpec], rng: &mut Rng) -> Result<Sequential> {
        let mut s = Sequential::new();
        for (i, spec) in specs.iter().enumerate() {
            let ctx = Context {
                index: i,
                depth: 1,
                ..Context::new(self)
            };
            let cfg = self.config(spec, &ctx).map_err(|e| e.at_layer(i))?;
            s.push_boxed(cfg.build(rng).map_err(|e| e.at_layer(i))?);
        }
        Ok(s)
    }
}

/// The initialiser called `name` in specs and on the command line.
pub fn parse_init(name: &str) -> Option<Init> {
    Some(match name {
        "xavier_uniform" | "glorot_uniform" => Init::XavierUniform,
        "xavier_normal" | "glorot_normal" => Init::XavierNormal,
        "he_uniform" | "kaiming_uniform" => Init::HeUniform,
        "he_normal" | "kaiming_normal" => Init::HeNormal,
        "zeros" => Init::Zeros,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{LeakyRelu, Tanh};
    use crate::dense::Dense;
    use crate::layer::Mode;
    use crate::softmax::Softmax;
    use crate::spec::Attr;
    use nn_core::seeded;

    #[test]
    fn round_trips_built_in_specs() {
        let mut rng = seeded(0);
        let net = Sequential::new()
            .with(Dense::new(&DenseConfig::new(3, 4).with_bias(false), &mut rng).unwrap())
            .with(LeakyRelu::leaky(0.2).unwrap())
            .with(Tanh::new())
            .with(Dense::new(&DenseConfig::new(4, 2), &mut rng).unwrap())
            .with(Softmax::new());
        let spec = net.config().spec();
        let mut rebuilt = Registry::new().build(&spec, &mut rng).unwrap();
        assert_eq!(rebuilt.config().spec(), spec);
        let x = ndarray::Array2::<f32>::ones((2, 3)).into_dyn();
        assert_eq!(
            crate::layer::apply(rebuilt.as_mut(), x.view(), Mode::Eval)
                .unwrap()
                .shape(),
            &[2, 2]
        );
    }

    #[test]
    fn unknown_kind_is_named() {
        let e = Registry::new()
            .build(&LayerSpec::new("gated_unit"), &mut seeded(0))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("unknown layer kind `gated_unit` (register it before loading; known: avgpool2d, batchnorm, conv2d, dense, dropout, flatten, identity"),
            "{e}"
        );
        let seq = LayerSpec::new("sequential").with(
            "layers",
            Attr::Layers(vec![LayerSpec::new("relu"), LayerSpec::new("x")]),
        );
        let e = Registry::new().build(&seq, &mut seeded(0)).unwrap_err();
        assert!(
            e.to_string().starts_with("layer 1: unknown layer kind `x`"),
            "{e}"
        );
    }

    #[test]
    fn dense_spec_errors() {
        let s = LayerSpec::new("dense").with("n_in", Attr::Int(3));
        let e = Registry::new().build(&s, &mut seeded(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer spec `dense`: missing attribute `n_out`"
        );
        let s = s
            .with("n_out", Attr::Int(2))
            .with("init", Attr::Str("magic".into()));
        assert!(Registry::new().build(&s, &mut seeded(0)).is_err());
    }

    #[test]
    fn kinds_initialisers_and_built_stacks() {
        let registry = Registry::new();
        assert!(registry.contains("dense") && registry.contains("sequential"));
        assert!(!registry.contains("swish"));
        let names = [
            ("xavier_uniform", Init::XavierUniform),
            ("glorot_uniform", Init::XavierUniform),
            ("xavier_normal", Init::XavierNormal),
            ("glorot_normal", Init::XavierNormal),
            ("he_uniform", Init::HeUniform),
            ("kaiming_uniform", Init::HeUniform),
            ("he_normal", Init::HeNormal),
            ("kaiming_normal", Init::HeNormal),
            ("zeros", Init::Zeros),
        ];
        for (name, init) in names {
            assert_eq!(parse_init(name), Some(init), "{name}");
        }
        assert_eq!(parse_init("ones"), None);
        // a built stack: its layers in order, each knowing its position (dropout's seed)
        let drop = LayerSpec::new("dropout").with("p", 0.5);
        let specs = [
            LayerSpec::new("dense")
                .with("n_in", 3usize)
                .with("n_out", 2usize),
            drop,
        ];
        let mut net = registry.build_sequential(&specs, &mut seeded(0)).unwrap();
        assert_eq!(net.name(), "sequential[dense(3 → 2), dropout(0.5)]");
        let spec = net.config().spec();
        let seed = spec.layers("layers").unwrap()[1].get("seed").cloned();
        assert_eq!(seed, Some(Attr::Int(2)));
        assert_eq!(net.num_params(), 8);
    }

    #[test]
    fn containers_nest_at_most_max_depth_levels() {
        use crate::sequential::MAX_DEPTH;
        let registry = Registry::new();
        let nest = |levels: usize| {
            (0..levels).fold(LayerSpec::new("relu"), |inner, _| {
                LayerSpec::new("sequential").with("layers", Attr::Layers(vec![inner]))
            })
        };
        let ctx = Context::new(&registry);
        registry.config(&nest(MAX_DEPTH), &ctx).unwrap();
        let e = registry.config(&nest(MAX_DEPTH + 1), &ctx).unwrap_err();
        assert!(e.to_string().contains("nest deeper than 64 levels"), "{e}");
        // a stack built from a list is itself the first level
        let mut rng = seeded(0);
        registry
            .build_sequential(&[nest(MAX_DEPTH - 1)], &mut rng)
            .unwrap();
        let e = registry
            .build_sequential(&[nest(MAX_DEPTH)], &mut rng)
            .unwrap_err();
        assert!(e.to_string().contains("nest deeper than 64 levels"), "{e}");
    }
}
