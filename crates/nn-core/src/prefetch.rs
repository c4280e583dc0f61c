//! Asking the core to bring memory into its second-level cache ahead of use.
//!
//! A kernel that does much arithmetic per value it reads can ask for the input of its next
//! round of work a little at a time while it computes the current one: the memory system
//! brings it in while the multiply-add units are busy, and the next round reads it from L2
//! instead of waiting on memory (`skip_zeros`' tiled product does this for its next group
//! of rows). A prefetch is only a hint: it never faults, never changes a value, and does
//! nothing on CPUs this module has no hint for.

// The x86-64 prefetch instruction is reached through an intrinsic that takes a raw
// pointer; the pointer always comes from a live slice.
#![allow(unsafe_code)]

/// Bytes in one cache line.
pub const LINE: usize = 64;

/// Hints that `data` will be read soon, one prefetch to L2 per cache line it spans.
pub fn to_l2<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let bytes = size_of_val(data);
        let start = data.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(LINE) {
            // SAFETY: `offset < bytes`, so the address lies inside `data`; SSE, which the
            // instruction needs, is part of every x86-64 CPU; a prefetch reads nothing into
            // the program and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_leaves_the_data_as_it_was() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        to_l2(&v);
        to_l2(&v[999..]);
        to_l2::<f32>(&[]);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
    }
}
