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
//!
//! Each thread's share of a pass is compiled once more for each instruction set `pulp`
//! dispatches to (AVX-512, AVX2, …) and chosen at run time: the same operations on every
//! value, in the same order, so the same results on every CPU. Rows (`sp = 1`) take loops
//! along the channels of each row instead of runs of one value.

use crate::ops::lanes_sum;
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

/// A per-channel reduction: which sums each run of `sp` values of channel `j` adds.
#[derive(Clone, Copy)]
enum Sums<'a> {
    /// `Σ x`
    Plain(&'a [f32]),
    /// `Σ (x − μⱼ)²`, with the means `μ`
    SqDev(&'a [f32], &'a [f32]),
    /// `(Σ dy, Σ dy·(x − μⱼ))` of `dy`, `x` and the means `μ`
    DotDev(&'a [f32], &'a [f32], &'a [f32]),
}

impl Sums<'_> {
    /// How many sums each channel gets.
    fn width(self) -> usize {
        match self {
            Sums::DotDev(..) => 2,
            Sums::Plain(_) | Sums::SqDev(..) => 1,
        }
    }

    /// Adds one row of `[n, f]` data (from `o` on, one value per channel) to the sums: a
    /// loop along the channels (the same additions as runs of one value each would make).
    #[inline(always)]
    fn add_row(self, o: usize, f: usize, acc: &mut [f64]) {
        match self {
            Sums::Plain(xs) => {
                for (a, &x) in acc.iter_mut().zip(&xs[o..o + f]) {
                    *a += x as f64;
                }
            }
            Sums::SqDev(xs, mean) => {
                for ((a, &x), &mu) in acc.iter_mut().zip(&xs[o..o + f]).zip(mean) {
                    *a += ((x - mu) * (x - mu)) as f64;
                }
            }
            Sums::DotDev(dy, xs, mean) => {
                let (s, d) = acc.split_at_mut(f);
                for (s, &dy) in s.iter_mut().zip(&dy[o..o + f]) {
                    *s += dy as f64;
                }
                let pairs = dy[o..o + f].iter().zip(&xs[o..o + f]).zip(mean);
                for (d, ((&dy, &x), &mu)) in d.iter_mut().zip(pairs) {
                    *d += (dy * (x - mu)) as f64;
                }
            }
        }
    }

    /// The sums of the `sp` values of channel `j` from `o` on (`[Σ, 0]` for one sum).
    #[inline(always)]
    fn of_run(self, j: usize, o: usize, sp: usize) -> [f32; 2] {
        match self {
            Sums::Plain(xs) => [lanes_sum(&xs[o..o + sp], |x| x), 0.0],
            Sums::SqDev(xs, mean) => {
                let mu = mean[j];
                [lanes_sum(&xs[o..o + sp], |x| (x - mu) * (x - mu)), 0.0]
            }
            Sums::DotDev(dy, xs, mean) => {
                let (dy, xs, mu) = (&dy[o..o + sp], &xs[o..o + sp], mean[j]);
                [lanes_sum(dy, |d| d), lanes_dot(dy, xs, |x| x - mu)]
            }
        }
    }
}

/// One thread's samples of a reduction, their sums added into `acc` in f64 (sum `s` of
/// channel `j` at `[s·f + j]`). Compiled once more for each instruction set `pulp`
/// dispatches to (AVX-512, AVX2, …): the loops are the same whatever the vector width, and
/// each of their 16 lanes adds its values in the same order, so the results are the same to
/// the last bit. Without it the crate's baseline (SSE2: 16 registers of 4 floats) cannot
/// hold two sums of 16 lanes and their loads without spilling, and the compiler had turned
/// `DotDev` into scalar code (measured in `docs/PERFORMANCE.md`).
struct Reduce<'a> {
    sums: Sums<'a>,
    c: Channels,
    samples: std::ops::Range<usize>,
    acc: &'a mut [f64],
}

impl pulp::WithSimd for Reduce<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Reduce {
            sums,
            c,
            samples,
            acc,
        } = self;
        let (f, w) = (c.f, sums.width());
        if c.sp == 1 {
            return samples.for_each(|i| sums.add_row(i * f, f, acc));
        }
        for i in samples {
            for j in 0..f {
                let s = sums.of_run(j, (i * f + j) * c.sp, c.sp);
                for (k, v) in s[..w].iter().enumerate() {
                    acc[k * f + j] += *v as f64;
                }
            }
        }
    }
}

/// `Σ a·g(b)` in 16 f32 lanes, as [`lanes_sum`]. One sum per loop: a loop carrying two
/// sums of 16 lanes is the one the compiler left scalar.
#[inline(always)]
fn lanes_dot(a: &[f32], b: &[f32], g: impl Fn(f32) -> f32) -> f32 {
    let (ab, ar) = a.as_chunks::<16>();
    let (bb, br) = b.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for (x, y) in ab.iter().zip(bb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * g(y);
        }
    }
    let tail = ar.iter().zip(br).map(|(&x, &y)| x * g(y));
    lanes.iter().sum::<f32>() + tail.sum::<f32>()
}

/// Runs `op` compiled for the widest vectors the CPU has (`pulp` picks AVX-512, AVX2, …,
/// at run time). On `wasm32` it runs the one baseline build: a copy per instruction set
/// would grow the page's download more than it speeds up a small model there.
#[inline]
fn widest<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    #[cfg(not(target_arch = "wasm32"))]
    return pulp::Arch::new().dispatch(op);
    #[cfg(target_arch = "wasm32")]
    op.with_simd(pulp::Scalar::new())
}

/// Per channel, the sums of `sums` over all samples, in f64: sum `s` of channel `j` at
/// `[s·f + j]`.
fn reduce<'p>(c: Channels, partials: &'p mut Partials, sums: Sums<'_>) -> &'p [f64] {
    let width = sums.width() * c.f;
    partials.runs.clear();
    partials.runs.resize(MAX_RUNS * width, 0.0);
    let mut chunks = partials.runs.chunks_mut(width);
    let mut states: [&mut [f64]; MAX_RUNS] =
        std::array::from_fn(|_| chunks.next().unwrap_or_default());
    split_runs_with(
        c.n,
        (&mut [] as &mut [f32], 0),
        &mut states,
        c.len(),
        &|samples, _, acc| {
            widest(Reduce {
                sums,
                c,
                samples,
                acc,
            });
        },
    );
    partials.sums.clear();
    partials.sums.resize(width, 0.0);
    for p in partials.runs.chunks(width) {
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
    let m = c.m() as f64;
    let sums = reduce(c, partials, Sums::Plain(xs));
    for (mu, s) in mean.iter_mut().zip(sums) {
        *mu = (s / m) as f32; // μ = (1/m)·Σ x
    }
    let mean = &*mean;
    let sums = reduce(c, partials, Sums::SqDev(xs, mean));
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
    let f = c.f;
    let sums = reduce(c, partials, Sums::DotDev(dy, xs, mean));
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
    let per = c.per_sample();
    split_runs(c.n, (y, per), c.len(), &|samples, y| {
        let u = &xs[samples.start * per..samples.end * per];
        let (f, sp) = (c.f, c.sp);
        let (v, scale, shift) = (None, a, b);
        widest(Affine {
            y,
            u,
            v,
            scale,
            shift,
            f,
            sp,
        });
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
    let per = c.per_sample();
    split_runs(c.n, (y, per), 2 * c.len(), &|samples, y| {
        let range = samples.start * per..samples.end * per;
        let (u, v) = (&u[range.clone()], Some((&v[range], b)));
        let (f, sp) = (c.f, c.sp);
        widest(Affine {
            y,
            u,
            v,
            scale: a,
            shift: cc,
            f,
            sp,
        });
    });
}

/// One run of whole samples of [`affine`] (`y = aⱼ·u + cⱼ`, no `v`) or [`affine2`]
/// (`y = aⱼ·u + bⱼ·v + cⱼ`), compiled per instruction set as [`Sums`] is (the same
/// operations on every value, so the same results).
struct Affine<'a> {
    y: &'a mut [f32],
    u: &'a [f32],
    /// `v` and its coefficients `bⱼ`.
    v: Option<(&'a [f32], &'a [f32])>,
    /// `aⱼ`.
    scale: &'a [f32],
    /// `cⱼ`.
    shift: &'a [f32],
    f: usize,
    sp: usize,
}

impl pulp::WithSimd for Affine<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Affine {
            y,
            u,
            v,
            scale: a,
            shift: c,
            f,
            sp,
        } = self;
        if sp == 1 {
            // rows `[n, f]`: a loop along the channels of each row
            let rows = y.chunks_mut(f).zip(u.chunks(f));
            match v {
                None => rows.for_each(|(y, u)| {
                    for (((y, &u), &a), &c) in y.iter_mut().zip(u).zip(a).zip(c) {
                        *y = a * u + c;
                    }
                }),
                Some((v, b)) => rows.zip(v.chunks(f)).for_each(|((y, u), v)| {
                    let coef = a.iter().zip(b).zip(c);
                    for (((y, &u), &v), ((&a, &b), &c)) in y.iter_mut().zip(u).zip(v).zip(coef) {
                        *y = a * u + b * v + c;
                    }
                }),
            }
            return;
        }
        let runs = y.chunks_mut(sp).zip(u.chunks(sp)).enumerate();
        match v {
            None => {
                for (k, (y, u)) in runs {
                    let j = k % f;
                    for (y, &u) in y.iter_mut().zip(u) {
                        *y = a[j] * u + c[j];
                    }
                }
            }
            Some((v, b)) => {
                for ((k, (y, u)), v) in runs.zip(v.chunks(sp)) {
                    let j = k % f;
                    for ((y, &u), &v) in y.iter_mut().zip(u).zip(v) {
                        *y = a[j] * u + b[j] * v + c[j];
                    }
                }
            }
        }
    }
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

    /// Rows `[n, f]` (one value per channel and sample) take their own loops, by hand.
    #[test]
    fn rows_by_hand() {
        let c = Channels { n: 3, f: 2, sp: 1 };
        let x = [1., 10., 2., 20., 6., 60.];
        let (mut mean, mut var, mut p) = ([0.0; 2], [0.0; 2], Partials::default());
        moments(c, &x, &mut p, &mut mean, &mut var);
        // channel 0: 1 2 6 → μ = 3, σ² = (4 + 1 + 9)/3; channel 1: 10 20 60 → μ = 30, σ² = 1400/3
        assert_eq!(mean, [3.0, 30.0]);
        assert_eq!(var, [14.0f32 / 3.0, 1400.0f32 / 3.0]);
        let dy = [1., 0., -1., 2., 0.5, 1.];
        let (mut s, mut d) = ([0.0; 2], [0.0; 2]);
        grad_sums(c, &dy, &x, &mean, &mut p, (&mut s, &mut d));
        // channel 0: dy 1 −1 0.5, x − μ = −2 −1 3 → Σdy = 0.5, Σdy·(x − μ) = −2 + 1 + 1.5
        // channel 1: dy 0 2 1, x − μ = −20 −10 30 → Σdy = 3, Σdy·(x − μ) = −20 + 30
        assert_eq!((s, d), ([0.5, 3.0], [0.5, 10.0]));
        let mut y = [0.0; 6];
        affine(c, &x, (&[2.0, 0.5], &[1.0, -1.0]), &mut y);
        assert_eq!(y, [3., 4., 5., 9., 13., 29.]);
        affine2(
            c,
            (&x, &[1.0; 6]),
            (&[1.0, 0.0], &[2.0, 3.0], &[0.0, 1.0]),
            &mut y,
        );
        assert_eq!(y, [3., 4., 4., 4., 8., 4.]); // channel 0: x + 2; channel 1: 3 + 1
    }

    /// The passes as dispatched (AVX-512 on a CPU that has it) against the same code
    /// compiled for the crate's baseline: the same bits, for runs with tails of every length.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        use pulp::WithSimd;
        let scalar = pulp::Scalar::new;
        for sp in [1, 5, 16, 37, 203] {
            let c = Channels { n: 3, f: 2, sp };
            let wave = |k: usize, a: usize, b: usize| ((k * a % b) as f32 - b as f32 / 2.0) * 0.013;
            let a: Vec<f32> = (0..c.len()).map(|k| wave(k, 37, 101)).collect();
            let b: Vec<f32> = (0..c.len()).map(|k| wave(k, 11, 29) * 50.0).collect();
            let mean = [0.3, -1.5];
            for sums in [
                Sums::Plain(&a),
                Sums::SqDev(&a, &mean),
                Sums::DotDev(&a, &b, &mean),
            ] {
                let (mut wide, mut base) = ([0.0; 4], [0.0; 4]); // 2 sums × 2 channels
                let run = |acc| Reduce {
                    sums,
                    c,
                    samples: 0..c.n,
                    acc,
                };
                pulp::Arch::new().dispatch(run(&mut wide));
                run(&mut base).with_simd(scalar());
                assert_eq!(wide.map(f64::to_bits), base.map(f64::to_bits), "sp {sp}");
                // and the sums are those of the formulas, added in f64 (μ is not the mean here)
                for (j, mu) in mean.iter().map(|&m| m as f64).enumerate() {
                    let at = (0..c.n).flat_map(|i| (0..sp).map(move |k| (i * c.f + j) * sp + k));
                    let (x, y) = (|k: usize| a[k] as f64, |k: usize| b[k] as f64);
                    let want = match sums {
                        Sums::Plain(_) => [at.map(x).sum(), 0.0],
                        Sums::SqDev(..) => [at.map(|k| (x(k) - mu).powi(2)).sum(), 0.0],
                        Sums::DotDev(..) => [
                            at.clone().map(x).sum(),
                            at.map(|k| x(k) * (y(k) - mu)).sum(),
                        ],
                    };
                    for (w, want) in want.iter().enumerate().take(sums.width()) {
                        let got = wide[w * c.f + j];
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "sp {sp}: {got} vs {want}"
                        );
                    }
                }
            }
            let (scale, shift, coef) =
                (&[1.7f32, 0.5][..], &[-0.2f32, 3.0][..], &[0.9f32, -2.0][..]);
            for v in [None, Some((&b[..], coef))] {
                let (mut wide, mut base) = (vec![0.0f32; c.len()], vec![0.0f32; c.len()]);
                let (f, u) = (c.f, &a[..]);
                let op = |y| Affine {
                    y,
                    u,
                    v,
                    scale,
                    shift,
                    f,
                    sp,
                };
                pulp::Arch::new().dispatch(op(&mut wide));
                op(&mut base).with_simd(scalar());
                assert_eq!(wide, base, "sp {sp}");
                // channel 1 of sample 0: y = 0.5·u + (−2)·v + 3 (or 0.5·u + 3)
                let k = sp;
                let want = 0.5 * a[k] + v.map_or(0.0, |(v, _)| -2.0 * v[k]) + 3.0;
                assert_eq!(wide[k], want, "sp {sp}");
            }
        }
    }

    /// More channels than there are runs (`MAX_RUNS`), cut across threads: each thread's
    /// partial sums have a slot for every channel.
    #[test]
    fn many_channels_cut_across_threads() {
        let c = Channels {
            n: 64,
            f: 40,
            sp: 16,
        };
        assert!(c.len() >= crate::parallel::SPLIT_MIN && c.f > MAX_RUNS);
        let x: Vec<f32> = (0..c.len()).map(|k| (k % 7) as f32).collect();
        let (mut mean, mut var) = (vec![0.0; c.f], vec![0.0; c.f]);
        moments(c, &x, &mut Partials::default(), &mut mean, &mut var);
        let x = &x[..];
        for j in 0..c.f {
            let values = (0..c.n).flat_map(|i| (0..c.sp).map(move |k| x[(i * c.f + j) * c.sp + k]));
            let mu = values.clone().map(f64::from).sum::<f64>() / c.m() as f64;
            assert!(
                (mean[j] as f64 - mu).abs() < 1e-6,
                "channel {j}: {} vs {mu}",
                mean[j]
            );
        }
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
        affine(c, &x, (&a, &cc), &mut y);
        for j in 0..3 {
            for k in values(j) {
                assert_eq!(y[k], a[j] * x[k] + cc[j]);
            }
        }
    }
}
