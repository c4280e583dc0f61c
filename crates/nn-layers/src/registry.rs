//! The layer registry: from a [`LayerSpec`] back to a layer.
//!
//! Model files store each layer's spec (`kind` + attributes) next to its named tensors. To
//! load a file, a [`Registry`] maps every kind to a constructor; the built-in kinds are
//! registered by [`Registry::new`], and a crate that defines its own layer registers its
//! kind once before loading. A file holding a kind nobody registered fails with
//! [`Error::UnknownKind`] naming it.

use std::collections::BTreeMap;

use nn_core::{Init, Rng};

use crate::activation::{Identity, LeakyRelu, Relu, Sigmoid, Tanh};
use crate::batchnorm::BatchNorm;
use crate::conv::{Conv2d, Conv2dConfig};
use crate::dense::{Dense, DenseConfig};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::flatten::Flatten;
use crate::layer::Layer;
use crate::pool::Pool2d;
use crate::sequential::Sequential;
use crate::softmax::Softmax;
use crate::spec::{Attr, LayerSpec};

/// Builds a layer from its spec. Weights are drawn from `rng` (a file then overwrites them);
/// containers build their children through the registry.
pub type Constructor = fn(&LayerSpec, &Registry, &mut Rng) -> Result<Box<dyn Layer>>;

/// Layer kinds and their constructors.
#[derive(Clone, Debug)]
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry holding the built-in kinds: `dense`, `identity`, `sigmoid`, `tanh`,
    /// `relu`, `leaky_relu`, `softmax`, `flatten`, `conv2d`, `maxpool2d`, `avgpool2d`,
    /// `batchnorm`, `dropout`, `sequential`.
    pub fn new() -> Self {
        let mut r = Self::empty();
        r.register("dense", build_dense);
        r.register("identity", |_, _, _| Ok(Box::new(Identity::new())));
        r.register("sigmoid", |_, _, _| Ok(Box::new(Sigmoid::new())));
        r.register("tanh", |_, _, _| Ok(Box::new(Tanh::new())));
        r.register("relu", |_, _, _| Ok(Box::new(Relu::new())));
        r.register("leaky_relu", |s, _, _| {
            Ok(Box::new(LeakyRelu::leaky(s.float("alpha")? as f32)?))
        });
        r.register("softmax", |_, _, _| Ok(Box::new(Softmax::new())));
        r.register("flatten", |_, _, _| Ok(Box::new(Flatten::new())));
        r.register("conv2d", build_conv);
        r.register("maxpool2d", |s, _, _| {
            Ok(Box::new(Pool2d::max(
                s.usize("kernel")?,
                s.usize("stride")?,
            )?))
        });
        r.register("avgpool2d", |s, _, _| {
            Ok(Box::new(Pool2d::avg(
                s.usize("kernel")?,
                s.usize("stride")?,
            )?))
        });
        r.register("batchnorm", |s, _, _| {
            Ok(Box::new(BatchNorm::new(
                s.usize("features")?,
                s.float("eps")? as f32,
                s.float("momentum")? as f32,
            )?))
        });
        r.register("dropout", |s, _, _| {
            Ok(Box::new(Dropout::new(
                s.float("p")? as f32,
                s.usize("seed")? as u64,
            )?))
        });
        r.register("sequential", |s, reg, rng| {
            Ok(Box::new(reg.build_sequential(s.layers("layers")?, rng)?))
        });
        r
    }

    /// A registry with no kind at all.
    pub fn empty() -> Self {
        Registry {
            constructors: BTreeMap::new(),
        }
    }

    /// Registers (or replaces) the constructor of `kind`; returns the one it replaced.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        constructor: Constructor,
    ) -> Option<Constructor> {
        self.constructors.insert(kind.into(), constructor)
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.constructors.contains_key(kind)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// Builds the layer a spec describes.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] for an unregistered kind; the constructor's errors (a missing
    /// attribute, a bad configuration).
    pub fn build(&self, spec: &LayerSpec, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        let c = self
            .constructors
            .get(&spec.kind)
            .ok_or_else(|| Error::UnknownKind {
                kind: spec.kind.clone(),
                known: self.kinds().collect::<Vec<_>>().join(", "),
            })?;
        c(spec, self, rng)
    }

    /// Builds a [`Sequential`] from the specs of its layers.
    ///
    /// # Errors
    /// As [`Registry::build`], wrapped in [`Error::AtLayer`] with the failing position.
    pub fn build_sequential(&self, specs: &[LayerSpec], rng: &mut Rng) -> Result<Sequential> {
        let mut s = Sequential::new();
        for (i, spec) in specs.iter().enumerate() {
            s.push_boxed(self.build(spec, rng).map_err(|e| e.at_layer(i))?);
        }
        Ok(s)
    }
}

/// `dense`: `n_in`, `n_out`, optional `bias` (default true) and `init` (default `he_uniform`).
fn build_dense(s: &LayerSpec, _: &Registry, rng: &mut Rng) -> Result<Box<dyn Layer>> {
    let mut cfg = DenseConfig::new(s.usize("n_in")?, s.usize("n_out")?);
    if s.get("bias").is_some() {
        cfg.bias = s.bool("bias")?;
    }
    if let Some(Attr::Str(name)) = s.get("init") {
        cfg.init = parse_init(name).ok_or_else(|| Error::Spec {
            kind: s.kind.clone(),
            message: format!(
                "unknown init `{name}`; expected xavier_uniform, xavier_normal, he_uniform or he_normal"
            ),
        })?;
    }
    Ok(Box::new(Dense::new(&cfg, rng)?))
}

/// `conv2d`: `in_channels`, `out_channels`, `kernel`, `stride`, `padding` (pairs), `bias`.
fn build_conv(s: &LayerSpec, _: &Registry, rng: &mut Rng) -> Result<Box<dyn Layer>> {
    let pair = |key: &str| -> Result<(usize, usize)> {
        match s.get(key) {
            Some(Attr::Ints(v)) if v.len() == 2 && v.iter().all(|d| *d >= 0) => {
                Ok((v[0] as usize, v[1] as usize))
            }
            Some(Attr::Int(d)) if *d >= 0 => Ok((*d as usize, *d as usize)),
            other => Err(Error::Spec {
                kind: s.kind.clone(),
                message: format!(
                    "attribute `{key}` must be a pair of non-negative integers, got {other:?}"
                ),
            }),
        }
    };
    let mut cfg = Conv2dConfig::new(s.usize("in_channels")?, s.usize("out_channels")?, 1);
    cfg.kernel = pair("kernel")?;
    if s.get("stride").is_some() {
        cfg.stride = pair("stride")?;
    }
    if s.get("padding").is_some() {
        cfg.padding = pair("padding")?;
    }
    if s.get("bias").is_some() {
        cfg.bias = s.bool("bias")?;
    }
    Ok(Box::new(Conv2d::new(&cfg, rng)?))
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
    use crate::layer::Mode;
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
        let spec = net.spec();
        let mut rebuilt = Registry::new().build(&spec, &mut rng).unwrap();
        assert_eq!(rebuilt.spec(), spec);
        let x = ndarray::Array2::<f32>::ones((2, 3)).into_dyn();
        assert_eq!(
            rebuilt.forward(x.view(), Mode::Eval).unwrap().shape(),
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
}
