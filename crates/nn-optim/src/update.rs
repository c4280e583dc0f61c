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

/// `rule(w, g, s)` for every entry of `p` with its gradient and its `K` state values;
/// `state` holds tensors of `p`'s shape.
pub(crate) fn update<const K: usize>(
    p: &mut Param,
    state: &mut [Tensor; K],
    rule: &(impl Fn(&mut f32, f32, [&mut f32; K]) + Sync),
) where
    Lanes<K>: Walk<K>,
{
    let w = contiguous(&mut p.value);
    let g: &[f32] = contiguous(&mut p.grad);
    let s = state.each_mut().map(contiguous);
    let work = (K + 2) * w.len();
    nn_core::parallel::split_each(w, s, work, &|run, w, s| {
        let pass = Pass {
            w,
            g: &g[run],
            s,
            rule,
        };
        pulp::Arch::new().dispatch(pass);
    });
}

/// One run of [`update`], compiled once more for each instruction set `pulp` dispatches to
/// (AVX-512, AVX2, …): the loop is the same, but the compiler may then use the wider
/// registers for the rule's arithmetic — the same operations on each entry, so the same
/// results. Measured on W5 (Adam, 235 K parameters, two threads): see `docs/PERFORMANCE.md`.
struct Pass<'a, const K: usize, R> {
    w: &'a mut [f32],
    g: &'a [f32],
    s: [&'a mut [f32]; K],
    rule: &'a R,
}

impl<const K: usize, R: Fn(&mut f32, f32, [&mut f32; K])> pulp::WithSimd for Pass<'_, K, R>
where
    Lanes<K>: Walk<K>,
{
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        Lanes::<K>::walk(self.w, self.g, self.s, self.rule);
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
}

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
            update(&mut p, &mut state, &|w, g, [a, b]| {
                *a = *w + g; // 3i
                *b += g; // 1 + 2i
                *w = -*w;
            });
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
        update(&mut p, &mut [], &|w, g, []| *w += 10.0 * g);
        assert_eq!(p.value, value.mapv(|v| 11.0 * v));
    }
}
