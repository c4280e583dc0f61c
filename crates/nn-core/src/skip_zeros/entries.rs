//! The non-zero entries of a few rows, sorted by which of the rows are non-zero there.
//!
//! For `R` rows `x_0 … x_{R−1}` of `X` (one to three), every position `k` has a pattern
//! `p = Σ_r [x_rk ≠ 0]·2^r`; list `p` holds the positions with that pattern:
//!
//! ```text
//! R = 2:   list 1 = { k : x_0k ≠ 0, x_1k = 0 }    list 2 = { k : x_0k = 0, x_1k ≠ 0 }
//!          list 3 = { k : x_0k ≠ 0, x_1k ≠ 0 }    (pattern 0, all zero, is never listed)
//! R = 3:   lists 1 … 7, list 5 = { k : x_0k ≠ 0, x_1k = 0, x_2k ≠ 0 } and so on
//! ```
//!
//! The product reads row `k` of `B` once for all rows of the pattern and does one
//! multiply-add per non-zero value: every row of `B` that any of the `R` rows needs is read
//! once for all of them, and no zero is multiplied. NaN counts as non-zero (it must reach
//! the output, as in the dense product); −0 counts as zero.
//!
//! With AVX-512 the lists are built 16 positions at a time: one comparison per row gives a
//! mask of its non-zero values, the masks combine into one mask per pattern, and each
//! pattern's positions are compressed in a register and stored at the end of its list.
//! Elsewhere a portable loop computes each position's pattern and appends it.

/// Most rows handled together (patterns `1 .. 2^ROWS`). Measured on W4's batch of 1024
/// Fashion-MNIST images: two rows read 34 % fewer rows of `B` than one at a time, three
/// 26 % fewer than two (the batch ~6 % faster on two threads, the same on one: the rows of
/// `B` come from L2, which two threads load harder); four would read fewer still, but
/// sorting positions into 15 lists cost more than it saved.
pub(super) const ROWS: usize = 3;

/// Number of patterns, the empty one included.
pub(super) const PATTERNS: usize = 1 << ROWS;

/// The positions of each pattern (`at[p][..len[p]]`), for one unit of rows.
#[derive(Default)]
pub(super) struct Entries {
    pub(super) at: [Vec<u32>; PATTERNS],
    pub(super) len: [usize; PATTERNS],
}

impl Entries {
    /// The positions with pattern `p`.
    pub(super) fn list(&self, p: usize) -> &[u32] {
        &self.at[p][..self.len[p]]
    }

    /// Sorts the positions of `rows` (`R ≤ ROWS` rows of the same length) by pattern.
    pub(super) fn gather<const R: usize>(&mut self, rows: [&[f32]; R]) {
        const { assert!(R >= 1 && R <= ROWS) };
        self.clear_for(rows[0].len());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the CPU has AVX-512F and POPCNT (checked just above).
            #[allow(unsafe_code)]
            return unsafe { self.gather_avx512(rows) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the CPU has AVX2 and POPCNT (checked just above).
            #[allow(unsafe_code)]
            return unsafe { self.gather_avx2(rows) };
        }
        self.gather_portable(rows);
    }

    /// Empties the lists and gives each room for `k` positions plus one 16-lane store past
    /// the end (only grown: a network's layers of different widths share these lists).
    fn clear_for(&mut self, k: usize) {
        for at in &mut self.at {
            if at.len() < k + 16 {
                at.resize(k + 16, 0);
            }
        }
        self.len = [0; PATTERNS];
    }

    /// The portable pass: each position's pattern, then the position appended to its list.
    pub(super) fn gather_portable<const R: usize>(&mut self, rows: [&[f32]; R]) {
        for j in 0..rows[0].len() {
            let p = (0..R).fold(0, |p, r| p | (usize::from(rows[r][j] != 0.0) << r));
            self.at[p][self.len[p]] = j as u32; // j < k ≤ the tensor limit, below u32::MAX
            self.len[p] += 1;
        }
    }

    /// The AVX-512 pass: 16 positions per step.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and POPCNT (the instruction behind `count_ones`: without
    /// it, counting each mask's bits took a dozen instructions).
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn gather_avx512<const R: usize>(&mut self, rows: [&[f32]; R]) {
        let k = rows[0].len();
        // the lists' ends, as local scalars: updated in `self.len` itself, the compiler packed
        // two of them into a vector register, with moves between the register files at
        // every step
        let mut ends = [std::ptr::null_mut::<u32>(); PATTERNS];
        for (end, at) in ends.iter_mut().zip(&mut self.at) {
            *end = at.as_mut_ptr();
        }
        let mut j = 0;
        while j + 16 <= k {
            // SAFETY: the CPU has AVX-512F (the caller's contract); 16 positions from j exist.
            unsafe { step::<R, false>(&rows, j, 16, &mut ends) };
            j += 16;
        }
        if j < k {
            // SAFETY: as above; the tail's loads are masked to its k − j positions.
            unsafe { step::<R, true>(&rows, j, k - j, &mut ends) };
        }
        for ((len, end), at) in self.len.iter_mut().zip(ends).zip(&self.at) {
            // SAFETY: `end` was derived from `at`'s pointer and stayed inside its allocation.
            *len = unsafe { end.offset_from(at.as_ptr()) } as usize;
        }
    }
}

impl Entries {
    /// The AVX2 pass: 8 positions per step, each pattern's positions looked up from its
    /// 8-bit mask ([`SET_BITS`]); the last `k mod 8` positions one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2 and POPCNT.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn gather_avx2<const R: usize>(&mut self, rows: [&[f32]; R]) {
        let k = rows[0].len();
        let mut ends = [std::ptr::null_mut::<u32>(); PATTERNS];
        for (end, at) in ends.iter_mut().zip(&mut self.at) {
            *end = at.as_mut_ptr();
        }
        let mut j = 0;
        while j + 8 <= k {
            // SAFETY: the CPU has AVX2 (the caller's contract); 8 positions from j exist.
            unsafe { step8::<R>(&rows, j, &mut ends) };
            j += 8;
        }
        for (len, (end, at)) in self.len.iter_mut().zip(ends.iter().zip(&self.at)) {
            // SAFETY: `end` was derived from `at`'s pointer and stayed inside its allocation.
            *len = unsafe { end.offset_from(at.as_ptr()) } as usize;
        }
        for j in j..k {
            let p = (0..R).fold(0, |p, r| p | (usize::from(rows[r][j] != 0.0) << r));
            if p != 0 {
                self.at[p][self.len[p]] = j as u32; // j < k ≤ the tensor limit
                self.len[p] += 1;
            }
        }
    }
}

/// For each 8-bit mask, the positions of its set bits, one per byte from the lowest
/// (`0b1010_0100` → bytes 2, 5, 7).
#[cfg(target_arch = "x86_64")]
static SET_BITS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut m = 0;
    while m < 256 {
        let (mut packed, mut n, mut bit) = (0u64, 0, 0);
        while bit < 8 {
            if m >> bit & 1 == 1 {
                packed |= (bit as u64) << (8 * n);
                n += 1;
            }
            bit += 1;
        }
        table[m] = packed;
        m += 1;
    }
    table
};

/// One step of the AVX2 pass: positions `j .. j + 8` sorted into the lists whose ends are
/// `ends`.
///
/// # Safety
/// The CPU must have AVX2 and POPCNT; each row has `j + 8` values; each list has room for 8
/// positions from its end.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn step8<const R: usize>(rows: &[&[f32]; R], j: usize, ends: &mut [*mut u32; PATTERNS]) {
    use std::arch::x86_64::*;
    let nonzero: [usize; R] = std::array::from_fn(|r| {
        // SAFETY: the row has the 8 positions read.
        let v = unsafe { _mm256_loadu_ps(rows[r].as_ptr().add(j)) };
        // NEQ_UQ: NaN is "not equal" to zero, so it is kept
        let ne = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps());
        _mm256_movemask_ps(ne) as usize
    });
    let at = _mm256_set1_epi32(j as i32);
    for p in 1..1usize << R {
        let mask = (0..R).fold(0xff, |m, r| {
            m & if p >> r & 1 == 1 {
                nonzero[r]
            } else {
                !nonzero[r]
            }
        });
        // SAFETY: 8 lanes fit from the list's end (the caller's contract); only the
        // selected ones count, and the end moves past them.
        unsafe {
            let bits = _mm_cvtsi64_si128(SET_BITS[mask] as i64);
            let packed = _mm256_add_epi32(_mm256_cvtepu8_epi32(bits), at); // j + bit
            _mm256_storeu_si256(ends[p].cast(), packed);
            ends[p] = ends[p].add(mask.count_ones() as usize);
        }
    }
}

/// One step of the AVX-512 pass: positions `j .. j + live` (all 16, or the tail's, whose
/// loads are masked when `TAIL`) sorted into the lists whose ends are `ends`.
///
/// # Safety
/// The CPU must have AVX-512F and POPCNT; each row has `j + live` values; each list has room
/// for 16 positions from its end.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,popcnt")]
#[inline]
unsafe fn step<const R: usize, const TAIL: bool>(
    rows: &[&[f32]; R],
    j: usize,
    live: usize,
    ends: &mut [*mut u32; PATTERNS],
) {
    use std::arch::x86_64::*;
    let live: u16 = if TAIL { (1u16 << live) - 1 } else { 0xffff };
    let nonzero: [u16; R] = std::array::from_fn(|r| {
        // SAFETY: the row has the positions read (all 16, or the lanes of `live`).
        let v = unsafe {
            if TAIL {
                _mm512_maskz_loadu_ps(live, rows[r].as_ptr().add(j))
            } else {
                _mm512_loadu_ps(rows[r].as_ptr().add(j))
            }
        };
        // NEQ_UQ: NaN is "not equal" to zero, so it is kept
        _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps())
    });
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let at = _mm512_add_epi32(iota, _mm512_set1_epi32(j as i32));
    for p in 1..1usize << R {
        let mask = (0..R).fold(live, |m, r| {
            m & if p >> r & 1 == 1 {
                nonzero[r]
            } else {
                !nonzero[r]
            }
        });
        // SAFETY: 16 lanes fit from the list's end (the caller's contract); only the
        // selected ones count, and the end moves past them.
        unsafe {
            let packed = _mm512_maskz_compress_epi32(mask, at);
            _mm512_storeu_si512(ends[p].cast(), packed);
            ends[p] = ends[p].add(mask.count_ones() as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        let a = [0.0f32, 1.0, 2.0, 0.0, f32::NAN, -0.0];
        let b = [3.0f32, 0.0, 4.0, 0.0, 0.0, 5.0];
        let mut e = Entries::default();
        e.gather([&a[..], &b[..]]);
        assert_eq!(e.list(1), [1, 4]); // a only, the NaN kept
        assert_eq!(e.list(2), [0, 5]); // b only; −0 is zero
        assert_eq!(e.list(3), [2]); // both
        assert_eq!(e.len[0], 0); // all-zero positions are not listed by the fast pass
        // three rows: pattern = a + 2·b + 4·c at each position
        let a = [0.0f32, 1.0, 2.0, 0.0, 5.0, 0.0, 7.0, 0.0];
        let b = [3.0f32, 0.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0];
        let c = [0.0f32, 0.0, 9.0, 1.0, 0.0, 2.0, 3.0, 0.0];
        e.gather([&a[..], &b[..], &c[..]]);
        let lists: Vec<&[u32]> = (1..8).map(|p| e.list(p)).collect();
        let want: [&[u32]; 7] = [&[1, 4], &[0], &[], &[3], &[], &[5], &[2, 6]];
        assert_eq!(lists, want);
    }

    /// The lists the AVX2 pass makes of `rows`, where the CPU has AVX2 and POPCNT (even
    /// when `gather` would take AVX-512).
    #[cfg(target_arch = "x86_64")]
    fn gathered_by_avx2<const R: usize>(rows: [&[f32]; R]) -> Option<Entries> {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt"))
        {
            return None;
        }
        let mut e = Entries::default();
        e.clear_for(rows[0].len());
        // SAFETY: the CPU has AVX2 and POPCNT (checked above); the lists are sized for rows.
        #[allow(unsafe_code)]
        unsafe {
            e.gather_avx2(rows)
        };
        Some(e)
    }

    #[test]
    fn the_portable_pass_agrees_with_the_one_in_use_and_the_avx2_one() {
        // lengths around the 16-lane steps; one or two rows with different zeros
        for k in [1, 15, 16, 17, 33, 784] {
            let rows: Vec<Vec<f32>> = (0..ROWS)
                .map(|r| {
                    (0..k)
                        .map(|j| {
                            if (j + r) % (r + 2) == 0 {
                                0.0
                            } else {
                                j as f32
                            }
                        })
                        .collect()
                })
                .collect();
            let (mut fast, mut slow) = (Entries::default(), Entries::default());
            macro_rules! check {
                ($r:literal) => {{
                    let rs: [&[f32]; $r] = std::array::from_fn(|r| &rows[r][..]);
                    fast.gather(rs);
                    slow.gather(rs);
                    slow.len = [0; PATTERNS];
                    slow.gather_portable(rs);
                    let mut listed = 0;
                    for p in 1..1 << $r {
                        assert_eq!(fast.list(p), slow.list(p), "k {k} rows {} pattern {p}", $r);
                        listed += fast.list(p).len() * (p as u32).count_ones() as usize;
                    }
                    let nonzero = rows[..$r].iter().flatten().filter(|v| **v != 0.0).count();
                    assert_eq!(listed, nonzero);
                    #[cfg(target_arch = "x86_64")]
                    if let Some(avx2) = gathered_by_avx2(rs) {
                        for p in 1..1 << $r {
                            assert_eq!(avx2.list(p), slow.list(p), "AVX2: k {k} pattern {p}");
                        }
                    }
                }};
            }
            check!(1);
            check!(2);
            check!(3);
        }
    }
}
