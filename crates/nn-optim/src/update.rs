//! Applying an update rule to every entry of every parameter.
//!
//! Each optimizer writes its rule once, for one entry:
//!
//! ```text
//! rule(w, g, [s₁ … s_K])     w the weight, g = ∂E/∂w, s the optimizer's K state values for
//!                            this entry (SGD's velocity v; Adam's moments m, v)
//! ```
//!
//! and [`update`] runs it over a whole parameter, cut into one contiguous run per thread
//! when the parameter is large ([`nn_core::parallel::split_each`]), on the calling thread
//! otherwise. The rule is the same function on every path, so threading cannot change what
//! an optimizer computes, only how fast.
//!
//! Asked to, [`update`] also sets the gradient to zero in the same pass, block by block
//! right after the rule has read it (`g ← 0`, what [`Layer::zero_grad`] does before the
//! next backward pass): the gradient is then read and cleared while it is in the core's
//! cache, instead of being brought in again by a pass of its own.

use nn_core::{Param, Tensor};
use nn_layers::weights::try_visit;
use nn_layers::{Layer, Slot};

use crate::error::Result;

/// Calls `f(name, parameter)` for every trainable parameter of `model` (buffers such as
/// batch norm's running statistics are not trained), stopping at the first error.
///
/// # Errors
/// The first error `f` returned.
pub(crate) fn each_param(
    model: &mut dyn Layer,
    mut f: impl FnMut(&str, &mut Param) -> Result<()>,
) -> Result<()> {
    try_visit(model, |name, slot| match slot {
        Slot::Param(p) => f(name, p),
        Slot::Buffer(_) => Ok(()),
    })
}

/// Whether [`update`] leaves the gradient as it is or sets it to zero after reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grad {
    /// Leave `∂E/∂w` as it is.
    Keep,
    /// `∂E/∂w ← 0` once the rule has read it.
    Zero,
}

/// `rule(w, g, s)` for every entry of `p` with its gradient and its `K` state values;
/// `state` holds tensors of `p`'s shape. With [`Grad::Zero`], `p.grad` is all zeros after.
pub(crate) fn update<const K: usize>(
    p: &mut Param,
    state: &mut [Tensor; K],
    rule: &(impl Fn(&mut f32, f32, [&mut f32; K]) + Sync),
    grad: Grad,
) where
    Lanes<K>: Walk<K>,
{
    let w = contiguous(&mut p.value);
    let g = contiguous(&mut p.grad);
    let s = state.each_mut().map(contiguous);
    let work = (K + 2) * w.len();
    Lanes::<K>::split(w, g, s, work, &|w, g, s| {
        let pass = Pass {
            w,
            g,
            s,
            rule,
            grad,
        };
        pulp::Arch::new().dispatch(pass);
    });
}

/// Entries walked before their gradient is cleared, when [`update`] clears it: small enough
/// that the block's gradient is still in the first-level cache.
const ZERO_BLOCK: usize = 1024;

/// One run of [`update`], compiled once more for each instruction set `pulp` dispatches to
/// (AVX-512, AVX2, …): the loop is the same, but the compiler may then use the wider
/// registers for the rule's arithmetic — the same operations on each entry, so the same
/// results. Measured on W5 (Adam, 235 K parameters, two threads): see `docs/PERFORMANCE.md`.
struct Pass<'a, const K: usize, R> {
    w: &'a mut [f32],
    g: &'a mut [f32],
    s: [&'a mut [f32]; K],
    rule: &'a R,
    grad: Grad,
}

impl<const K: usize, R: Fn(&mut f32, f32, [&mut f32; K])> pulp::WithSimd for Pass<'_, K, R>
where
    Lanes<K>: Walk<K>,
{
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Pass {
            w,
            g,
            mut s,
            rule,
            grad,
        } = self;
        if grad == Grad::Keep {
            return Lanes::<K>::walk(w, g, s, rule);
        }
        for start in (0..w.len()).step_by(ZERO_BLOCK) {
            let block = start..(start + ZERO_BLOCK).min(w.len());
            let sb = s.each_mut().map(|s| &mut s[block.clone()]);
            Lanes::<K>::walk(&mut w[block.clone()], &g[block.clone()], sb, rule);
            g[block].fill(0.0); // ∂E/∂w ← 0, while the block is in cache
        }
    }
}

/// `K` state slices walked in step with a parameter's run.
pub(crate) struct Lanes<const K: usize>;

/// The loop over one run of entries. Written out for each `K` as a chain of slice
/// iterators, the form the compiler turns into vector code: an index into an array of
/// slices would keep it from seeing that the slices do not overlap (measured 2–4× slower).
pub(crate) trait Walk<const K: usize> {
    /// `rule(w, g, s)` for every entry of the run.
    fn walk(
        w: &mut [f32],
        g: &[f32],
        s: [&mut [f32]; K],
        rule: &impl Fn(&mut f32, f32, [&mut f32; K]),
    );

    /// `f(w, g, s)` on one run of each slice per thread
    /// ([`nn_core::parallel::split_each`], which takes the gradient as one more slice).
    fn split(w: &mut [f32], g: &mut [f32], s: [&mut [f32]; K], work: usize, f: &RunFn<'_, K>);
}

/// What [`Walk::split`] applies to each run: weights, gradient, state.
pub(crate) type RunFn<'f, const K: usize> =
    dyn Fn(&mut [f32], &mut [f32], [&mut [f32]; K]) + Sync + 'f;

impl Walk<0> for Lanes<0> {
    #[inline(always)]
    fn walk(
        w: &mut [f32],
        g: &[f32],
        _: [&mut [f32]; 0],
        rule: &impl Fn(&mut f32, f32, [&mut f32; 0]),
    ) {
        for (w, &g) in w.iter_mut().zip(g) {
            rule(w, g, []);
        }
    }

    fn split(w: &mut [f32], g: &mut [f32], []: [&mut [f32]; 0], work: usize, f: &RunFn<'_, 0>) {
        nn_core::parallel::split_each(w, [g], work, &|_, w, [g]| f(w, g, []));
    }
}

impl Walk<1> for Lanes<1> {
    #[inline(always)]
    fn walk(
        w: &mut [f32],
        g: &[f32],
        [a]: [&mut [f32]; 1],
        rule: &impl Fn(&mut f32, f32, [&mut f32; 1]),
    ) {
        for ((w, &g), a) in w.iter_mut().zip(g).zip(a) {
            rule(w, g, [a]);
        }
    }

    fn split(w: &mut [f32], g: &mut [f32], [a]: [&mut [f32]; 1], work: usize, f: &RunFn<'_, 1>) {
        nn_core::parallel::split_each(w, [g, a], work, &|_, w, [g, a]| f(w, g, [a]));
    }
}

impl Walk<2> for Lanes<2> {
    #[inline(always)]
    fn walk(
        w: &mut [f32],
        g: &[f32],
        [a, b]: [&mut [f32]; 2],
        rule: &impl Fn(&mut f32, f32, [&mut f32; 2]),
    ) {
        for (((w, &g), a), b) in w.iter_mut().zip(g).zip(a).zip(b) {
            rule(w, g, [a, b]);
        }
    }

    fn split(w: &mut [f32], g: &mut [f32], [a, b]: [&mut [f32]; 2], work: usize, f: &RunFn<'_, 2>) {
        nn_core::parallel::split_each(w, [g, a, b], work, &|_, w, [g, a, b]| f(w, g, [a, b]));
    }
}

/// The values of `t` as one slice in row-major order (copied into that layout first in the
/// rare case a tensor was given another).
fn contiguous(t: &mut Tensor) -> &mut [f32] {
    if !t.is_standard_layout() {
        *t = t.as_standard_layout().into_owned();
    }
    t.as_slice_mut().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_gets_its_own_gradient_and_state() {
        // large enough to be split across threads, and a small one that is not
        for n in [5usize, 1 << 14] {
            let value = Tensor::from_shape_fn(vec![n], |i| i[0] as f32);
            let mut p = Param::new(value);
            p.grad = Tensor::from_shape_fn(vec![n], |i| 2.0 * i[0] as f32);
            let mut state = [Tensor::zeros(vec![n]), Tensor::ones(vec![n])];
            update(
                &mut p,
                &mut state,
                &|w, g, [a, b]| {
                    *a = *w + g; // 3i
                    *b += g; // 1 + 2i
                    *w = -*w;
                },
                Grad::Keep,
            );
            for i in 0..n {
                let f = i as f32;
                assert_eq!(
                    (p.value[i], state[0][i], state[1][i]),
                    (-f, 3.0 * f, 1.0 + 2.0 * f)
                );
            }
        }
    }

    #[test]
    fn a_transposed_parameter_is_updated_entry_by_entry() {
        let value = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]])
            .reversed_axes()
            .into_dyn();
        let mut p = Param::new(value.clone());
        p.grad = value.clone();
        update(&mut p, &mut [], &|w, g, []| *w += 10.0 * g, Grad::Keep);
        assert_eq!(p.value, value.mapv(|v| 11.0 * v));
    }

    #[test]
    fn the_gradient_is_cleared_after_the_rule_has_read_it() {
        // short (one block), across blocks with a partial last one, and split across threads
        for n in [5usize, 2 * ZERO_BLOCK + 3, 1 << 15] {
            let mut p = Param::new(Tensor::from_shape_fn(vec![n], |i| i[0] as f32));
            p.grad = Tensor::from_shape_fn(vec![n], |i| 1.0 + i[0] as f32);
            let mut state = [Tensor::zeros(vec![n])];
            // v ← g, w ← w − g: every entry must see its own gradient before it is cleared
            update(
                &mut p,
                &mut state,
                &|w, g, [v]| {
                    *v = g;
                    *w -= g;
                },
                Grad::Zero,
            );
            for i in 0..n {
                assert_eq!(
                    (p.value[i], state[0][i], p.grad[i]),
                    (-1.0, 1.0 + i as f32, 0.0)
                );
            }
        }
    }
}
