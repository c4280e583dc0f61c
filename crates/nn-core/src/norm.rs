//! Per-channel passes for batch normalisation, threaded over samples.
//!
//! The data is `n` samples × `f` channels × `sp` values per channel, row-major: value `k` of
//! channel `j` in sample `i` sits at `(i·f + j)·sp + k` (`sp = 1` for rows `[n, f]`,
//! `h·w` for images `[n, f, h, w]`). A channel's values are `n` runs of `sp`, so each pass
//! cuts the samples into one run per thread; a reduction sums each `sp`-run in 16 f32 lanes,
//! adds the runs in f64 into per-thread partials, and adds the partials in thread order (the
//! same result for the same thread count, whatever the timing).
//!
//! ```text
//! moments       μⱼ = (1/m)·Σ x,   σⱼ² = (1/m)·Σ (x − μⱼ)²        (two passes: no cancellation)
//! grad_sums     Σ dy,   Σ dy·(x − μⱼ)                              (one pass)
//! affine        y = aⱼ·x + bⱼ                                     (one pass)
//! affine2       y = aⱼ·u + bⱼ·v + cⱼ                              (one pass)
//! ```

use crate::parallel::{MAX_RUNS, split_runs, split_runs_with};

/// The shape of the data: samples, channels and values per channel in a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channels {
    /// Samples.
    pub n: usize,
    /// Channels (features).
    pub f: usize,
    /// Values of one channel in one sample (1 for rows).
    pub sp: usize,
}

impl Channels {
    /// Values per sample.
    fn per_sample(self) -> usize {
        self.f * self.sp
    }

    /// Values in the batch: `n·f·sp`.
    pub fn len(self) -> usize {
        self.n * self.per_sample()
    }

    /// Whether the batch holds no values.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Values per channel over the whole batch: `m = n·sp`.
    pub fn m(self) -> usize {
        self.n * self.sp
    }
}

/// Per-thread partial sums and their totals, kept by the caller so that steady-state passes
/// allocate nothing.
#[derive(Clone, Debug, Default)]
pub struct Partials {
    runs: Vec<f64>,
    sums: Vec<f64>,
}

/// `Σ (x − μ)²` of one run in 16 f32 lanes.
fn run_sq_dev(xs: &[f32], mu: f32) -> f32 {
    let (blocks, rest) = xs.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for b in blocks {
        for (l, &v) in lanes.iter_mut().zip(b) {
            *l += (v - mu) * (v - mu);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>()
}

/// `(Σ a, Σ a·(b − μ))` of one run in 16 f32 lanes.
fn run_dot_dev(a: &[f32], b: &[f32], mu: f32) -> (f32, f32) {
    let (ab, ar) = a.as_chunks::<16>();
    let (bb, br) = b.as_chunks::<16>();
    let (mut s, mut d) = ([0.0f32; 16], [0.0f32; 16]);
    for (x, y) in ab.iter().zip(bb) {
        for l in 0..16 {
            s[l] += x[l];
            d[l] += x[l] * (y[l] - mu);
        }
    }
    let tail = ar.iter().zip(br);
    let s = s.iter().sum::<f32>() + ar.iter().sum::<f32>();
    (
        s,
        d.iter().sum::<f32>() + tail.map(|(x, y)| x * (y - mu)).sum::<f32>(),
    )
}

/// Per channel, `W` sums over all samples: `run(j, offset)` gives one sample's contribution
/// to channel `j` (its values start at `offset`). Returns the sums, in f64, sum `s` of
/// channel `j` at `[s·f + j]`.
fn reduce<'p, const W: usize>(
    c: Channels,
    partials: &'p mut Partials,
    run: &(dyn Fn(usize, usize) -> [f32; W] + Sync),
) -> &'p [f64] {
    let f = c.f;
    partials.runs.clear();
    partials.runs.resize(MAX_RUNS * W * f, 0.0);
    let mut chunks = partials.runs.chunks_mut(W * f);
    let mut states: [&mut [f64]; MAX_RUNS] =
        std::array::from_fn(|_| chunks.next().unwrap_or_default());
    split_runs_with(
        c.n,
        (&mut [] as &mut [f32], 0),
        &mut states,
        c.len(),
        &|samples, _, acc| {
            for i in samples {
                for j in 0..f {
                    let sums = run(j, (i * f + j) * c.sp);
                    for (s, v) in sums.iter().enumerate() {
                        acc[s * f + j] += *v as f64;
                    }
                }
            }
        },
    );
    partials.sums.clear();
    partials.sums.resize(W * f, 0.0);
    for p in partials.runs.chunks(W * f) {
        for (o, v) in partials.sums.iter_mut().zip(p) {
            *o += v;
        }
    }
    &partials.sums
}

/// The batch mean and (biased) variance of every channel of `xs`, in two passes.
///
/// # Panics
/// If `xs` is not `n·f·sp` long or `mean`/`var` not `f` long.
pub fn moments(
    c: Channels,
    xs: &[f32],
    partials: &mut Partials,
    mean: &mut [f32],
    var: &mut [f32],
) {
    assert_eq!(xs.len(), c.len(), "moments: data length");
    let (sp, m) = (c.sp, c.m() as f64);
    let sums = reduce::<1>(c, partials, &|_, o| [crate::ops::sum(&xs[o..o + sp])]);
    for (mu, s) in mean.iter_mut().zip(sums) {
        *mu = (s / m) as f32; // μ = (1/m)·Σ x
    }
    let mean = &*mean;
    let sums = reduce::<1>(c, partials, &|j, o| [run_sq_dev(&xs[o..o + sp], mean[j])]);
    for (v, s) in var.iter_mut().zip(sums) {
        *v = (s / m) as f32; // σ² = (1/m)·Σ (x − μ)²
    }
}

/// `(Σ dy, Σ dy·(x − μⱼ))` of every channel, into `sdy` and `sdyx`.
///
/// # Panics
/// If `dy` and `xs` are not `n·f·sp` long or the per-channel slices not `f` long.
pub fn grad_sums(
    c: Channels,
    dy: &[f32],
    xs: &[f32],
    mean: &[f32],
    partials: &mut Partials,
    (sdy, sdyx): (&mut [f32], &mut [f32]),
) {
    assert!(
        dy.len() == xs.len() && xs.len() == c.len(),
        "grad_sums: data length"
    );
    let (f, sp) = (c.f, c.sp);
    let sums = reduce::<2>(c, partials, &|j, o| {
        let (s, d) = run_dot_dev(&dy[o..o + sp], &xs[o..o + sp], mean[j]);
        [s, d]
    });
    for j in 0..f {
        (sdy[j], sdyx[j]) = (sums[j] as f32, sums[f + j] as f32);
    }
}

/// `y = aⱼ·x + bⱼ` for every value of channel `j`.
///
/// # Panics
/// If `xs` and `y` differ in length from `n·f·sp`.
pub fn affine(c: Channels, xs: &[f32], (a, b): (&[f32], &[f32]), y: &mut [f32]) {
    assert!(
        xs.len() == y.len() && y.len() == c.len(),
        "affine: data length"
    );
    let (f, sp, per) = (c.f, c.sp, c.per_sample());
    split_runs(c.n, (y, per), c.len(), &|samples, y| {
        let xs = &xs[samples.start * per..samples.end * per];
        for (k, (y, x)) in y.chunks_mut(sp).zip(xs.chunks(sp)).enumerate() {
            let j = k % f;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = a[j] * x + b[j];
            }
        }
    });
}

/// `y = aⱼ·u + bⱼ·v + cⱼ` for every value of channel `j`.
///
/// # Panics
/// If `u`, `v` and `y` differ in length from `n·f·sp`.
pub fn affine2(
    c: Channels,
    (u, v): (&[f32], &[f32]),
    (a, b, cc): (&[f32], &[f32], &[f32]),
    y: &mut [f32],
) {
    assert!(
        u.len() == c.len() && v.len() == c.len() && y.len() == c.len(),
        "affine2: data length"
    );
    let (f, sp, per) = (c.f, c.sp, c.per_sample());
    split_runs(c.n, (y, per), 2 * c.len(), &|samples, y| {
        let range = samples.start * per..samples.end * per;
        let (u, v) = (&u[range.clone()], &v[range]);
        for (k, ((y, u), v)) in y
            .chunks_mut(sp)
            .zip(u.chunks(sp))
            .zip(v.chunks(sp))
            .enumerate()
        {
            let j = k % f;
            for ((y, &u), &v) in y.iter_mut().zip(u).zip(v) {
                *y = a[j] * u + b[j] * v + cc[j];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 samples × 2 channels × 3 values, by hand.
    const X: [f32; 12] = [1., 2., 3., 10., 20., 30., 3., 4., 5., 30., 40., 50.];
    const C: Channels = Channels { n: 2, f: 2, sp: 3 };

    #[test]
    fn moments_by_hand() {
        let (mut mean, mut var) = ([0.0; 2], [0.0; 2]);
        moments(C, &X, &mut Partials::default(), &mut mean, &mut var);
        // channel 0: 1 2 3 3 4 5 → μ = 3, σ² = (4+1+0+0+1+4)/6 = 5/3
        // channel 1: 10 20 30 30 40 50 → μ = 30, σ² = (400+100+0+0+100+400)/6 = 500/3
        assert_eq!(mean, [3.0, 30.0]);
        assert!((var[0] - 5.0 / 3.0).abs() < 1e-6 && (var[1] - 500.0 / 3.0).abs() < 1e-4);
    }

    #[test]
    fn grad_sums_by_hand() {
        let dy = [1., 0., -1., 1., 1., 1., 2., 0., 0., 0., 0., 1.];
        let (mut s, mut d) = ([0.0; 2], [0.0; 2]);
        grad_sums(
            C,
            &dy,
            &X,
            &[3.0, 30.0],
            &mut Partials::default(),
            (&mut s, &mut d),
        );
        // channel 0: dy 1 0 −1 2 0 0, x − μ = −2 −1 0 0 1 2 → Σdy = 2, Σdy·(x − μ) = −2
        // channel 1: dy 1 1 1 0 0 1, x − μ = −20 −10 0 0 10 20 → Σdy = 4, Σ = −10
        assert_eq!((s, d), ([2.0, 4.0], [-2.0, -10.0]));
    }

    #[test]
    fn affine_passes_by_hand() {
        let mut y = [0.0; 12];
        affine(C, &X, (&[2.0, 0.5], &[1.0, -1.0]), &mut y);
        assert_eq!(y, [3., 5., 7., 4., 9., 14., 7., 9., 11., 14., 19., 24.]);
        let ones = [1.0; 12];
        affine2(
            C,
            (&X, &ones),
            (&[1.0, 0.0], &[2.0, 3.0], &[0.0, 1.0]),
            &mut y,
        );
        // channel 0: x + 2; channel 1: 3 + 1 = 4
        assert_eq!(y, [3., 4., 5., 4., 4., 4., 5., 6., 7., 4., 4., 4.]);
    }

    /// Big enough to be cut across threads: every pass against a plain f64 loop.
    #[test]
    fn threaded_passes_match_a_plain_reference() {
        let c = Channels {
            n: 64,
            f: 3,
            sp: 200,
        };
        let len = c.n * c.f * c.sp;
        let x: Vec<f32> = (0..len)
            .map(|k| ((k * 37 % 101) as f32 - 40.0) * 0.1)
            .collect();
        let dy: Vec<f32> = (0..len)
            .map(|k| ((k * 11 % 29) as f32 - 14.0) * 0.01)
            .collect();
        let at = |i: usize, j: usize, k: usize| (i * c.f + j) * c.sp + k;
        let values = |j: usize| (0..c.n).flat_map(move |i| (0..c.sp).map(move |k| at(i, j, k)));
        let (mut mean, mut var, mut p) = ([0.0; 3], [0.0; 3], Partials::default());
        moments(c, &x, &mut p, &mut mean, &mut var);
        let (mut sdy, mut sdx) = ([0.0; 3], [0.0; 3]);
        grad_sums(c, &dy, &x, &mean, &mut p, (&mut sdy, &mut sdx));
        let m = c.m() as f64;
        for j in 0..3 {
            let mu = values(j).map(|k| x[k] as f64).sum::<f64>() / m;
            let v = values(j).map(|k| (x[k] as f64 - mu).powi(2)).sum::<f64>() / m;
            let s = values(j).map(|k| dy[k] as f64).sum::<f64>();
            let d = values(j)
                .map(|k| dy[k] as f64 * (x[k] as f64 - mean[j] as f64))
                .sum::<f64>();
            assert!(
                (mean[j] as f64 - mu).abs() < 1e-5,
                "mean {j}: {} vs {mu}",
                mean[j]
            );
            assert!(
                (var[j] as f64 - v).abs() < 1e-4 * v,
                "var {j}: {} vs {v}",
                var[j]
            );
            assert!(
                (sdy[j] as f64 - s).abs() < 1e-3,
                "Σdy {j}: {} vs {s}",
                sdy[j]
            );
            assert!(
                (sdx[j] as f64 - d).abs() < 1e-3,
                "Σdy·(x−μ) {j}: {} vs {d}",
                sdx[j]
            );
        }
        let (a, b, cc) = ([1.5, -2.0, 0.5], [0.25, 1.0, -1.0], [3.0, 0.0, -0.5]);
        let mut y = vec![0.0; len];
        affine2(c, (&dy, &x), (&a, &b, &cc), &mut y);
        for j in 0..3 {
            for k in values(j) {
                assert_eq!(y[k], a[j] * dy[k] + b[j] * x[k] + cc[j]);
            }
        }
    }
}
