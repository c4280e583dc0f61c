//! The configuration of a [`Conv2d`](super::Conv2d): sizes, their validation, and the
//! shape arithmetic (checked) of a call.

use nn_core::conv::Geometry;
use nn_core::{Init, Rng};
use serde::{Deserialize, Serialize};

use super::Conv2d;
use crate::config::{Context, LayerConfig, TensorSpec, checked_output, ensure, param_elements};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::spec::{Attr, LayerSpec};

/// Configuration of a [`Conv2d`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2dConfig {
    /// Input channels `c_in`.
    pub in_channels: usize,
    /// Output channels (filters) `c_out`.
    pub out_channels: usize,
    /// Kernel `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Zero padding `(ph, pw)` on each side.
    pub padding: (usize, usize),
    /// Whether the layer has a bias per output channel.
    pub bias: bool,
    /// Weight initialiser (He uniform with fan-in `c_in·kh·kw` by default).
    pub init: Init,
}

impl Conv2dConfig {
    /// `c_in → c_out` channels with a square `k×k` kernel, stride 1, no padding, a bias.
    pub fn new(in_channels: usize, out_channels: usize, k: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: (k, k),
            stride: (1, 1),
            padding: (0, 0),
            bias: true,
            init: Init::HeUniform,
        }
    }

    /// With stride `s` in both directions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }

    /// With zero padding `p` on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }

    /// With or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Checks the sizes: channels, kernel and stride positive, the weight within the
    /// parameter limit.
    ///
    /// # Errors
    /// [`Error::Config`] or a limit error naming the layer.
    pub fn validate(&self) -> Result<()> {
        let (k, s) = (self.kernel, self.stride);
        ensure(
            self.in_channels > 0
                && self.out_channels > 0
                && k.0 > 0
                && k.1 > 0
                && s.0 > 0
                && s.1 > 0,
            "conv2d",
            || {
                format!(
                    "channels, kernel and stride must be positive, got {} → {} channels, kernel {}×{}, stride {}×{}",
                    self.in_channels, self.out_channels, k.0, k.1, s.0, s.1
                )
            },
        )?;
        param_elements(
            || format!("{} weight", self.name()),
            &[self.out_channels, self.in_channels, k.0, k.1],
        )?;
        Ok(())
    }

    /// Reads `in_channels` (inferred from a `[n, c, h, w]` input when absent),
    /// `out_channels`, `kernel`, `stride` (default 1), `padding` (default 0) and `bias`
    /// (default true), and validates them. Sizes are pairs or one integer for both axes.
    ///
    /// # Errors
    /// [`Error::Spec`] for a missing, unknown or ill-typed attribute; as
    /// [`Conv2dConfig::validate`].
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&[
            "in_channels",
            "out_channels",
            "kernel",
            "stride",
            "padding",
            "bias",
        ])?;
        if spec.get("kernel").is_none() {
            return Err(spec.invalid("missing attribute `kernel`"));
        }
        let cfg = Conv2dConfig {
            in_channels: ctx.width(spec, "in_channels", &[4], "[n, c, h, w]")?,
            out_channels: spec.usize("out_channels")?,
            kernel: spec.pair_or("kernel", (0, 0))?,
            stride: spec.pair_or("stride", (1, 1))?,
            padding: spec.pair_or("padding", (0, 0))?,
            bias: spec.bool_or("bias", true)?,
            init: Init::HeUniform,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The sizes of a call with input shape `input`, computed with checked arithmetic, or
    /// the error naming both shapes (or the limit an output or a sample's columns exceed).
    pub(crate) fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let bad = |why: &str| -> Error {
            nn_core::Error::shape(
                format!("{} forward{why}", self.name()),
                format!(
                    "[n, {}, h, w] with h + 2·{} ≥ {} and w + 2·{} ≥ {}",
                    self.in_channels, self.padding.0, self.kernel.0, self.padding.1, self.kernel.1
                ),
                input,
            )
            .into()
        };
        if input.len() != 4 || input[1] != self.in_channels {
            return Err(bad(""));
        }
        let padded = |size: usize, pad: usize| {
            let p = pad.checked_mul(2).and_then(|p| p.checked_add(size));
            p.ok_or_else(|| -> Error {
                nn_core::Error::Limit {
                    what: format!("{} padded input", self.name()),
                    amount: "too many elements to count".into(),
                    limit: format!(
                        "{} elements per tensor",
                        nn_core::limits::MAX_TENSOR_ELEMENTS
                    ),
                }
                .into()
            })
        };
        let oh = out_len(
            padded(input[2], self.padding.0)?,
            self.kernel.0,
            self.stride.0,
        );
        let ow = out_len(
            padded(input[3], self.padding.1)?,
            self.kernel.1,
            self.stride.1,
        );
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(bad(" (kernel larger than the padded input)"));
        };
        let g = Geometry {
            n: input[0],
            c: input[1],
            h: input[2],
            w: input[3],
            c_out: self.out_channels,
            oh,
            ow,
            k: self.kernel,
            s: self.stride,
            p: self.padding,
        };
        // one sample's columns, [c_in·kh·kw, oh·ow], are each thread's working memory
        let kdim = [g.c, g.k.0, g.k.1];
        let kdim = nn_core::limits::product(&kdim).unwrap_or(usize::MAX);
        nn_core::limits::elements(
            || format!("{} columns of one sample", self.name()),
            &[kdim, oh, ow],
        )?;
        Ok(g)
    }
}

/// Output positions along one axis of padded size `padded = size + 2·pad`:
/// `(padded − k) / stride + 1`, or `None` if the kernel does not fit.
fn out_len(padded: usize, k: usize, stride: usize) -> Option<usize> {
    (padded >= k).then(|| (padded - k) / stride + 1)
}

impl LayerConfig for Conv2dConfig {
    fn spec(&self) -> LayerSpec {
        let pair = |p: (usize, usize)| Attr::Ints(vec![p.0 as i64, p.1 as i64]);
        LayerSpec::new("conv2d")
            .with("in_channels", Attr::Int(self.in_channels as i64))
            .with("out_channels", Attr::Int(self.out_channels as i64))
            .with("kernel", pair(self.kernel))
            .with("stride", pair(self.stride))
            .with("padding", pair(self.padding))
            .with("bias", Attr::Bool(self.bias))
    }

    fn name(&self) -> String {
        format!(
            "conv2d({} → {}, {}×{}, stride {}, padding {})",
            self.in_channels,
            self.out_channels,
            self.kernel.0,
            self.kernel.1,
            self.stride.0,
            self.padding.0
        )
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        let (k, c) = (self.kernel, self.out_channels);
        let mut t = vec![TensorSpec::param(
            "weight",
            vec![c, self.in_channels, k.0, k.1],
        )];
        if self.bias {
            t.push(TensorSpec::param("bias", vec![c]));
        }
        Ok(t)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        checked_output(|| self.name(), vec![g.n, g.c_out, g.oh, g.ow])
    }

    fn build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Conv2d::new(self, rng)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_must_be_positive() {
        let ok = Conv2dConfig::new(2, 3, 3);
        ok.validate().unwrap();
        let spoilt: [fn(&mut Conv2dConfig); 6] = [
            |c| c.in_channels = 0,
            |c| c.out_channels = 0,
            |c| c.kernel.0 = 0,
            |c| c.kernel.1 = 0,
            |c| c.stride.0 = 0,
            |c| c.stride.1 = 0,
        ];
        for spoil in spoilt {
            let mut c = ok.clone();
            spoil(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.starts_with(
                    "conv2d: invalid configuration: channels, kernel and stride must be positive"
                ),
                "{e}"
            );
        }
        // padding may be 0, and a kernel of 1
        let one = Conv2dConfig {
            kernel: (1, 1),
            padding: (0, 0),
            ..ok
        };
        one.validate().unwrap();
    }
}
