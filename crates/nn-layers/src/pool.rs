//! Max and average pooling over `[n, c, h, w]`, window `k×k`, stride `s` (no padding).
//!
//! ```text
//! oh = (h − k) / s + 1,   ow = (w − k) / s + 1
//!
//! max pooling       Y[i, c, y, x] = max_{u, v < k} X[i, c, y·s + u, x·s + v]
//!                   ∂E/∂X[i, c, p, q] += dY[i, c, y, x]   only at (p, q) = the window's argmax
//! average pooling   Y[i, c, y, x] = (1/k²) · Σ_{u, v < k} X[i, c, y·s + u, x·s + v]
//!                   ∂E/∂X[i, c, y·s + u, x·s + v] += dY[i, c, y, x] / k²   for every u, v
//! ```
//!
//! Max pooling routes the whole gradient to the one input that won; on a tie the first
//! position in row-major order wins (so a gradient check must use inputs without ties).
//! Overlapping windows (`s < k`) add their gradients.

use ndarray::ArrayViewD;
use nn_core::parallel::{split_runs, split_runs2};
use nn_core::{Buffer, Rng, row_major};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output, ensure};
use crate::error::{Error, Result};
use crate::layer::{Layer, Mode, Slot, check_backward, require_forward};
use crate::spec::{Attr, LayerSpec};

/// Which reduction a pooling layer applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// The largest value of each window (`maxpool2d`).
    Max,
    /// The mean of each window (`avgpool2d`).
    Avg,
}

impl Reduce {
    /// The layer kind: `"maxpool2d"` or `"avgpool2d"`.
    pub fn kind(self) -> &'static str {
        match self {
            Reduce::Max => "maxpool2d",
            Reduce::Avg => "avgpool2d",
        }
    }
}

/// Configuration of a [`Pool2d`] layer: `k×k` windows with stride `s`, no padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Max or average.
    pub reduce: Reduce,
    /// Window size `k`.
    pub kernel: usize,
    /// Stride `s`.
    pub stride: usize,
}

impl Pool2dConfig {
    /// Checks that the window and the stride are positive.
    ///
    /// # Errors
    /// [`Error::Config`] naming the kind.
    pub fn validate(&self) -> Result<()> {
        let (k, s) = (self.kernel, self.stride);
        ensure(k > 0 && s > 0, self.reduce.kind(), || {
            format!("kernel and stride must be positive, got {k} and {s}")
        })
    }

    /// Reads `kernel` and `stride` (default: the kernel) for the kind `reduce`.
    ///
    /// # Errors
    /// [`Error::Spec`] for a missing, unknown or ill-typed attribute;
    /// as [`Pool2dConfig::validate`].
    pub fn from_spec(reduce: Reduce, spec: &LayerSpec, _ctx: &Context<'_>) -> Result<Self> {
        spec.only(&["kernel", "stride"])?;
        let kernel = spec.usize("kernel")?;
        let cfg = Pool2dConfig {
            reduce,
            kernel,
            stride: spec.usize_or("stride", kernel)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// `(oh, ow)` for an input `[n, c, h, w]`, or the error naming both shapes.
    fn geometry(&self, input: &[usize]) -> Result<(usize, usize)> {
        let k = self.kernel;
        if input.len() != 4 || input[2] < k || input[3] < k {
            return Err(nn_core::Error::shape(
                format!("{} forward", self.name()),
                format!("[n, c, h, w] with h, w ≥ {k}"),
                input,
            )
            .into());
        }
        Ok((
            (input[2] - k) / self.stride + 1,
            (input[3] - k) / self.stride + 1,
        ))
    }
}

impl LayerConfig for Pool2dConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new(self.reduce.kind())
            .with("kernel", Attr::Int(self.kernel as i64))
            .with("stride", Attr::Int(self.stride as i64))
    }

    fn name(&self) -> String {
        let k = self.kernel;
        format!("{}({k}×{k}, stride {})", self.reduce.kind(), self.stride)
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        Ok(Vec::new())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (oh, ow) = self.geometry(input)?;
        checked_output(|| self.name(), vec![input[0], input[1], oh, ow])
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Pool2d::build(
            self.reduce,
            self.kernel,
            self.stride,
        )?))
    }
}

/// A pooling layer (see [`MaxPool2d`] and [`AvgPool2d`]).
#[derive(Clone, Debug)]
pub struct Pool2d {
    reduce: Reduce,
    k: usize,
    s: usize,
    /// For max pooling: the flat input index of each output's maximum, from the last
    /// train-mode forward.
    argmax: Vec<u32>,
    ready: bool,
}

/// `k×k` max pooling with stride `s`.
pub type MaxPool2d = Pool2d;
/// `k×k` average pooling with stride `s`.
pub type AvgPool2d = Pool2d;

impl Pool2d {
    fn build(reduce: Reduce, k: usize, s: usize) -> Result<Self> {
        Pool2dConfig {
            reduce,
            kernel: k,
            stride: s,
        }
        .validate()?;
        Ok(Pool2d {
            reduce,
            k,
            s,
            argmax: Vec::new(),
            ready: false,
        })
    }

    /// Max pooling over `k×k` windows with stride `s`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero kernel or stride.
    pub fn max(k: usize, s: usize) -> Result<Self> {
        Self::build(Reduce::Max, k, s)
    }

    /// Average pooling over `k×k` windows with stride `s`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero kernel or stride.
    pub fn avg(k: usize, s: usize) -> Result<Self> {
        Self::build(Reduce::Avg, k, s)
    }

    /// Max or average.
    pub fn reduce(&self) -> Reduce {
        self.reduce
    }

    fn pool_config(&self) -> Pool2dConfig {
        Pool2dConfig {
            reduce: self.reduce,
            kernel: self.k,
            stride: self.s,
        }
    }

    fn label(&self) -> String {
        self.pool_config().name()
    }

    fn geometry(&self, input: &[usize]) -> Result<(usize, usize)> {
        self.pool_config().geometry(input)
    }
}

/// The sizes of one plane: input width `w`, output `(oh, ow)`, window `k`, stride `s`.
#[derive(Clone, Copy, Debug)]
struct Plane {
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    s: usize,
}

impl Plane {
    /// Max pooling of one plane `x` (`[h, w]`, starting at flat index `base` of the batch):
    /// the maxima into `y`, their flat input indices into `at`.
    fn max(&self, x: &[f32], base: usize, y: &mut [f32], at: &mut [u32]) {
        let Plane { w, ow, k, s, .. } = *self;
        if k == 2 && s == 2 {
            // the usual 2×2 window: a kernel with the same scan order and tie rule
            nn_core::pool::max_2x2(x, w, base, y, at, ow);
            return;
        }
        for oy in 0..self.oh {
            for ox in 0..ow {
                let o = oy * ow + ox;
                let (mut best, mut idx) = (f32::NEG_INFINITY, oy * s * w + ox * s);
                for u in 0..k {
                    for v in 0..k {
                        let i = (oy * s + u) * w + ox * s + v;
                        if x[i] > best {
                            best = x[i]; // max over the window; the first one wins a tie
                            idx = i;
                        }
                    }
                }
                y[o] = best;
                at[o] = (base + idx) as u32;
            }
        }
    }

    /// Average pooling of one plane.
    fn avg(&self, x: &[f32], y: &mut [f32]) {
        let Plane {
            w, oh, ow, k, s, ..
        } = *self;
        let inv = 1.0 / (k * k) as f32;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0;
                for u in 0..k {
                    let row = (oy * s + u) * w + ox * s;
                    sum += x[row..row + k].iter().sum::<f32>();
                }
                y[oy * ow + ox] = sum * inv; // (1/k²)·Σ window
            }
        }
    }

    /// `∂E/∂X` of one plane under average pooling (`dx` zeroed by the caller).
    fn avg_backward(&self, dy: &[f32], dx: &mut [f32]) {
        let Plane {
            w, oh, ow, k, s, ..
        } = *self;
        let inv = 1.0 / (k * k) as f32;
        for oy in 0..oh {
            for ox in 0..ow {
                let g = dy[oy * ow + ox] * inv; // dY / k²
                for u in 0..k {
                    let row = (oy * s + u) * w + ox * s;
                    dx[row..row + k].iter_mut().for_each(|d| *d += g);
                }
            }
        }
    }
}

impl Layer for Pool2d {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        let (oh, ow) = self.geometry(x.shape())?;
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let xs = row_major(&x);
        y.resize(&[n, c, oh, ow]);
        let pl = Plane {
            w,
            oh,
            ow,
            k: self.k,
            s: self.s,
        };
        let reduce = self.reduce;
        match reduce {
            Reduce::Max => self.argmax.resize(n * c * oh * ow, 0),
            Reduce::Avg => self.argmax.clear(),
        }
        // one plane per unit, the planes spread over the threads
        split_runs2(
            n * c,
            (y.as_mut_slice(), oh * ow),
            (&mut self.argmax[..], oh * ow),
            xs.len(),
            &|planes, y, at| {
                if reduce == Reduce::Max && (pl.k, pl.s) == (2, 2) && h == 2 * oh {
                    // 2×2 windows that tile whole rows: the run's planes are one tall plane
                    let xr = &xs[planes.start * h * w..planes.end * h * w];
                    return nn_core::pool::max_2x2(xr, w, planes.start * h * w, y, at, ow);
                }
                for (j, p) in planes.enumerate() {
                    let xp = &xs[p * h * w..(p + 1) * h * w];
                    let yp = &mut y[j * oh * ow..(j + 1) * oh * ow];
                    match reduce {
                        Reduce::Max => {
                            pl.max(xp, p * h * w, yp, &mut at[j * oh * ow..(j + 1) * oh * ow])
                        }
                        Reduce::Avg => pl.avg(xp, yp),
                    }
                }
            },
        );
        self.ready = mode == Mode::Train;
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        require_forward(self.ready || self.reduce == Reduce::Avg, || self.label())?;
        let (oh, ow) = self.geometry(x.shape())?;
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        check_backward(|| self.label(), &[n, c, oh, ow], &y, &dy)?;
        if self.reduce == Reduce::Max && self.argmax.len() != n * c * oh * ow {
            return Err(Error::NoForward {
                layer: self.label(),
            }); // the forward saw another x
        }
        let Some(dx) = dx else {
            return Ok(()); // no parameters
        };
        let dys = row_major(&dy);
        dx.resize(x.shape());
        let pl = Plane {
            w,
            oh,
            ow,
            k: self.k,
            s: self.s,
        };
        let (reduce, argmax) = (self.reduce, &self.argmax[..]);
        let work = dx.len();
        split_runs(n * c, (dx.as_mut_slice(), h * w), work, &|planes, dx| {
            dx.fill(0.0);
            let first = planes.start;
            let outs = planes.start * oh * ow..planes.end * oh * ow;
            match reduce {
                Reduce::Max => {
                    let origin = first * h * w;
                    for (&at, &g) in argmax[outs.clone()].iter().zip(&dys[outs]) {
                        dx[at as usize - origin] += g; // the gradient goes to the window's maximum
                    }
                }
                Reduce::Avg => {
                    for j in 0..planes.len() {
                        pl.avg_backward(
                            &dys[(first + j) * oh * ow..(first + j + 1) * oh * ow],
                            &mut dx[j * h * w..(j + 1) * h * w],
                        );
                    }
                }
            }
        });
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.pool_config())
    }

    fn name(&self) -> String {
        self.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::apply_backward;
    use ndarray::Array4;

    #[test]
    fn max_and_average_by_hand() {
        // one 4×4 plane, 2×2 windows, stride 2:
        // [[1 5 | 2 0]      max: [[6 4]     avg: [[(1+5+3+6)/4 = 3.75, (2+0+4+1)/4 = 1.75]
        //  [3 6 | 4 1]            [9 8]]           [(7+2+0+9)/4 = 4.5,  (8+3+5+5)/4 = 5.25]]
        //  [7 2 | 8 3]
        //  [0 9 | 5 5]]
        let x = Array4::from_shape_vec(
            (1, 1, 4, 4),
            vec![
                1., 5., 2., 0., 3., 6., 4., 1., 7., 2., 8., 3., 0., 9., 5., 5.,
            ],
        )
        .unwrap()
        .into_dyn();
        let mut mp = MaxPool2d::max(2, 2).unwrap();
        let dy = Array4::from_shape_vec((1, 1, 2, 2), vec![10., 20., 30., 40.])
            .unwrap()
            .into_dyn();
        let (y, dx) = apply_backward(&mut mp, x.view(), dy.view()).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [6., 4., 9., 8.]);
        // gradients land on the maxima: 6 at (1,1), 4 at (1,2), 9 at (3,1), 8 at (2,2)
        let mut want = vec![0.0f32; 16];
        want[5] = 10.;
        want[6] = 20.;
        want[13] = 30.;
        want[10] = 40.;
        assert_eq!(dx.iter().copied().collect::<Vec<_>>(), want);

        let mut ap = AvgPool2d::avg(2, 2).unwrap();
        let (y, dx) = apply_backward(&mut ap, x.view(), dy.view()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [3.75, 1.75, 4.5, 5.25]
        );
        assert_eq!(dx[[0, 0, 0, 0]], 2.5); // 10/4
        assert_eq!(dx[[0, 0, 3, 3]], 10.0); // 40/4
    }

    #[test]
    fn ties_go_to_the_first_position() {
        // a window of equal values: the whole gradient goes to its first (top-left) entry
        let x = nn_core::Tensor::from_elem(vec![1, 1, 2, 2], 3.0);
        let mut mp = MaxPool2d::max(2, 2).unwrap();
        let dy = nn_core::Tensor::ones(vec![1, 1, 1, 1]);
        let (_, dx) = apply_backward(&mut mp, x.view(), dy.view()).unwrap();
        assert_eq!(dx.iter().copied().collect::<Vec<_>>(), [1.0, 0.0, 0.0, 0.0]);
        // backward with another input than the forward saw is refused, not a wrong index
        let (y2, x2) = (
            nn_core::Tensor::ones(vec![1, 2, 1, 1]),
            nn_core::Tensor::ones(vec![1, 2, 2, 2]),
        );
        let e = mp.backward(x2.view(), y2.view(), y2.view(), Some(&mut Buffer::new()));
        assert!(matches!(e, Err(Error::NoForward { .. })), "{e:?}");
    }

    #[test]
    fn window_larger_than_input_is_an_error() {
        let mut mp = MaxPool2d::max(3, 3).unwrap();
        let x = nn_core::Tensor::zeros(vec![1, 1, 2, 2]);
        let e = crate::layer::apply(&mut mp, x.view(), Mode::Eval)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "maxpool2d(3×3, stride 3) forward: expected shape [n, c, h, w] with h, w ≥ 3, got [1, 1, 2, 2]"
        );
        assert!(MaxPool2d::max(0, 1).is_err());
        assert!(MaxPool2d::max(2, 0).is_err());
        // too short or too narrow alone is enough to refuse
        for shape in [[1, 1, 2, 3], [1, 1, 3, 2]] {
            let x = nn_core::Tensor::zeros(shape.to_vec());
            assert!(crate::layer::apply(&mut mp, x.view(), Mode::Eval).is_err());
        }
    }

    #[test]
    fn ties_and_windows_of_minus_infinity_on_every_path() {
        // every window holds equal values: the output is that value and the whole gradient
        // of each window goes to its first (top-left) entry, (oy·s, ox·s)
        for (k, s) in [(2, 2), (2, 1), (3, 1), (3, 2)] {
            for v in [3.0f32, f32::NEG_INFINITY] {
                let x = nn_core::Tensor::from_elem(vec![1, 1, 5, 5], v);
                let mut mp = MaxPool2d::max(k, s).unwrap();
                let o = (5 - k) / s + 1;
                let dy = nn_core::Tensor::ones(vec![1, 1, o, o]);
                let (y, dx) = apply_backward(&mut mp, x.view(), dy.view()).unwrap();
                assert!(y.iter().all(|&y| y == v), "k {k} s {s}: {y}");
                let mut want = nn_core::Tensor::zeros(vec![1, 1, 5, 5]);
                for oy in 0..o {
                    for ox in 0..o {
                        want[[0, 0, oy * s, ox * s]] += 1.0;
                    }
                }
                assert_eq!(dx, want, "k {k} s {s} value {v}");
            }
        }
    }

    /// Max or mean pooling and its backward, one window at a time, straight from the
    /// definitions: `y = max` (first maximum) or `y = mean` of the window; `∂E/∂x` gets
    /// `∂E/∂y` at the window's maximum, or `∂E/∂y / k²` on every entry of the window.
    fn by_definition(
        max: bool,
        (k, s): (usize, usize),
        x: &Array4<f32>,
        dy: &Array4<f32>,
    ) -> (Array4<f32>, Array4<f32>) {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
        let mut y = Array4::zeros((n, c, oh, ow));
        let mut dx = Array4::zeros((n, c, h, w));
        for (i, ch, oy, ox) in ndarray::indices((n, c, oh, ow)) {
            let window = || {
                ndarray::indices((k, k))
                    .into_iter()
                    .map(|(u, v)| (oy * s + u, ox * s + v))
            };
            let g = dy[[i, ch, oy, ox]];
            if max {
                let (mut best, mut at) = (f32::NEG_INFINITY, (oy * s, ox * s));
                for (r, q) in window() {
                    if x[[i, ch, r, q]] > best {
                        (best, at) = (x[[i, ch, r, q]], (r, q));
                    }
                }
                y[[i, ch, oy, ox]] = best;
                dx[[i, ch, at.0, at.1]] += g;
            } else {
                y[[i, ch, oy, ox]] =
                    window().map(|(r, q)| x[[i, ch, r, q]]).sum::<f32>() / (k * k) as f32;
                window().for_each(|(r, q)| dx[[i, ch, r, q]] += g / (k * k) as f32);
            }
        }
        (y, dx)
    }

    #[test]
    fn batches_large_enough_to_split_across_threads_match_the_definition() {
        // 2·8·48·48 = 36 864 values: over the split threshold, so each thread takes a run of
        // planes, the second one starting inside the batch
        let mut rng = nn_core::seeded(4);
        let x = Array4::from_shape_fn((2, 8, 48, 48), |_| {
            nn_core::rng::uniform(&mut rng, -1.0, 1.0)
        });
        for (max, k, s) in [(true, 2, 2), (true, 3, 2), (false, 2, 2), (false, 3, 1)] {
            let o = (48 - k) / s + 1;
            let dy = Array4::from_shape_fn((2, 8, o, o), |(i, c, a, b)| {
                (i + 2 * c + 3 * a + 5 * b) as f32 * 0.01
            });
            let (want_y, want_dx) = by_definition(max, (k, s), &x, &dy);
            let mut pool = if max {
                MaxPool2d::max(k, s)
            } else {
                AvgPool2d::avg(k, s)
            }
            .unwrap();
            let (y, dx) =
                apply_backward(&mut pool, x.view().into_dyn(), dy.view().into_dyn()).unwrap();
            let close = |a: &ndarray::ArrayD<f32>, b: ndarray::ArrayD<f32>| {
                a.shape() == b.shape() && a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6)
            };
            assert!(close(&y, want_y.into_dyn()), "y: max {max} k {k} s {s}");
            assert!(close(&dx, want_dx.into_dyn()), "dx: max {max} k {k} s {s}");
        }
    }

    /// 2×2 max pooling over planes of odd height (the last row outside every window) and
    /// odd width, several planes per thread's run: each plane pooled on its own rows.
    #[test]
    fn odd_planes_match_the_definition() {
        let mut rng = nn_core::seeded(5);
        for (h, w) in [(49, 48), (48, 49), (5, 6)] {
            let x =
                Array4::from_shape_fn((2, 8, h, w), |_| nn_core::rng::uniform(&mut rng, -1.0, 1.0));
            let dy = Array4::from_shape_fn((2, 8, h / 2, w / 2), |(i, c, a, b)| {
                (i + 2 * c + 3 * a + 5 * b) as f32 * 0.01
            });
            let (want_y, want_dx) = by_definition(true, (2, 2), &x, &dy);
            let mut pool = MaxPool2d::max(2, 2).unwrap();
            let (y, dx) =
                apply_backward(&mut pool, x.view().into_dyn(), dy.view().into_dyn()).unwrap();
            assert_eq!(y, want_y.into_dyn(), "{h}×{w}");
            assert_eq!(dx, want_dx.into_dyn(), "{h}×{w}");
        }
    }
}
