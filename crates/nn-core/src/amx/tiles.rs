//! The AMX instructions: asking Linux for the tile registers, configuring them, and one
//! block of 32 rows × 32 columns of `C += A·B` over all depths.
//!
//! ```text
//! TDPBF16PS C, A, B:   C[i][j] += Σ_p A[i][2p]·B[p][2j] + A[i][2p+1]·B[p][2j+1]
//!                      A: 16 rows × 32 bf16   B: 16 rows (pairs of depths) × 16 columns × 2
//!                      C: 16 × 16 f32
//! ```
//!
//! Eight tile registers: four hold the 2 × 2 output tiles of a block, two hold the block's
//! rows of `A` (one part of the split), two its columns of `B`. Each block of 32 depths
//! needs the six part products `h·h, h·m, h·l, m·h, m·m, l·h`; they are taken in an order
//! where each step reloads only the `A` tiles or only the `B` tiles (14 tile loads for 24
//! products).

// Inline assembly: the tile instructions have no stable intrinsics. Each block states why
// its addresses stay inside the slices it was given.
#![allow(unsafe_code)]

use std::arch::asm;
use std::sync::OnceLock;

use super::split::Line;

/// Whether this CPU has AMX tiles with bf16 products (and the AVX-512 instructions of the
/// `simd` module) and the operating system lets the process use them (Linux grants the tile registers on request, once per process).
pub fn available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| cpu_has_amx_bf16() && super::simd::available() && os_grants_tiles())
}

fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    #[allow(unused_unsafe)] // `__cpuid_count` is safe on newer compilers
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is read only when leaf 0 lists it.
    let (max, leaf7) = unsafe { (__cpuid_count(0, 0).eax, __cpuid_count(7, 0)) };
    amx_bf16_listed(max, leaf7.edx)
}

/// Whether CPUID lists AMX-BF16 (bit 22 of leaf 7's EDX) and AMX-TILE (bit 24), given the
/// highest leaf it has (`max_leaf`) and leaf 7's EDX.
fn amx_bf16_listed(max_leaf: u32, edx: u32) -> bool {
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    max_leaf >= 7 && edx & (AMX_BF16 | AMX_TILE) == AMX_BF16 | AMX_TILE
}

#[cfg(target_os = "linux")]
fn os_grants_tiles() -> bool {
    const ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) only asks for a permission; it
    // reads and writes no memory of ours. A kernel that does not know the request returns
    // an error. `syscall` overwrites rcx and r11, declared here.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn os_grants_tiles() -> bool {
    false
}

/// The tile configuration: palette 1, all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// The tile registers, configured on this thread for as long as it lives; released (their
/// state dropped) when it is dropped. Neither `Send` nor `Sync`: the configuration belongs
/// to the thread that made it.
pub struct Tiles(std::marker::PhantomData<*const ()>);

impl Tiles {
    /// Configures this thread's tiles. `None` when [`available`] is false.
    pub fn configure() -> Option<Tiles> {
        if !available() {
            return None;
        }
        let mut cfg = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        cfg.bytes_per_row[..8].fill(64);
        cfg.rows[..8].fill(16);
        // SAFETY: `available` checked the CPU and the permission; `cfg` is a valid palette-1
        // configuration of 64 bytes, read and not kept.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly)) };
        Some(Tiles(std::marker::PhantomData))
    }

    /// `out ← A·B` for one block of 32 rows and 32 columns (see the module docs).
    ///
    /// - `a`: 32 rows of `3·blocks` lines each, a row's lines holding its split values block
    ///   by block (`[block][h, m, l]`), as [`super::split::split_row`] writes them;
    /// - `b`: `blocks × 96` lines, block by block: column tile 0's `h, m, l` tiles, then
    ///   column tile 1's, 16 lines each (pairs of depths, interleaved by column);
    /// - `out`: 32 rows × 32 f32.
    pub fn block(&mut self, a: &[Line], b: &[Line], blocks: usize, out: &mut [f32; 1024]) {
        assert_eq!(a.len(), 32 * 3 * blocks, "a: 32 rows of 3 lines per block");
        assert_eq!(b.len(), 96 * blocks, "b: 96 lines per block");
        let row = 3 * blocks * size_of::<Line>(); // bytes from one row of `a` to the next
        let (a0, a1) = (a.as_ptr(), a[16 * 3 * blocks..].as_ptr());
        // SAFETY: the tiles are configured (`self` exists only then); zeroing reads no memory.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        for blk in 0..blocks {
            // SAFETY: each A tile reads 16 rows `row` bytes apart from `a0` or `a1` plus
            // `blk·192 + {0, 64, 128}` and 64 bytes on: rows 0–15 and 16–31 of `a`, whose
            // rows are `row` bytes long, `blk < blocks`, so every byte read lies in `a`
            // (asserted above). Each B tile reads 16 lines of 64 bytes from block `blk`'s 96
            // lines, at most 5·1024 + 1024 bytes past its start: inside `b`.
            unsafe {
                six_products(
                    a0.add(3 * blk),
                    a1.add(3 * blk),
                    row,
                    b[96 * blk..].as_ptr(),
                )
            };
        }
        let o = out.as_mut_ptr();
        // SAFETY: each store writes 16 rows of 64 bytes, 128 bytes apart, at offsets 0, 64,
        // 2048 and 2112 bytes: the four 16 × 16 quarters of `out`'s 32 × 32 values.
        unsafe {
            asm!(
                "tilestored [{o} + {s}*1], tmm0",
                "tilestored [{o} + {s}*1 + 64], tmm1",
                "tilestored [{o} + {s}*1 + 2048], tmm2",
                "tilestored [{o} + {s}*1 + 2112], tmm3",
                o = in(reg) o,
                s = in(reg) 128usize,
                options(nostack)
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `configure`; releasing them only resets state.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// One block of 32 depths: `C += A_h·B_l, A_h·B_m, A_m·B_m, A_m·B_h, A_l·B_h, A_h·B_h`.
///
/// # Safety
/// Tiles configured as [`Tiles::configure`] does; `a0` and `a1` point at the first line of
/// the block in rows 0 and 16, rows `row` bytes apart, 15 more rows readable; `b` points at
/// the block's 96 readable lines.
#[inline(always)]
unsafe fn six_products(a0: *const Line, a1: *const Line, row: usize, b: *const Line) {
    // SAFETY: as the caller promised.
    unsafe {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",          // A_h, rows 0–15
            "tileloadd tmm5, [{a1} + {sa}*1]",          // A_h, rows 16–31
            "tileloadd tmm6, [{b} + {sb}*1 + 2048]",    // B_l, columns 0–15
            "tileloadd tmm7, [{b} + {sb}*1 + 5120]",    // B_l, columns 16–31
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm6, [{b} + {sb}*1 + 1024]",    // B_m
            "tileloadd tmm7, [{b} + {sb}*1 + 4096]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm4, [{a0} + {sa}*1 + 64]",     // A_m
            "tileloadd tmm5, [{a1} + {sa}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm6, [{b} + {sb}*1]",           // B_h
            "tileloadd tmm7, [{b} + {sb}*1 + 3072]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm4, [{a0} + {sa}*1 + 128]",    // A_l
            "tileloadd tmm5, [{a1} + {sa}*1 + 128]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm4, [{a0} + {sa}*1]",          // A_h
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            sa = in(reg) row,
            b = in(reg) b,
            sb = in(reg) size_of::<Line>(),
            options(nostack, readonly)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_bf16_is_read_from_bits_22_and_24_of_leaf_7() {
        let both = (1 << 22) | (1 << 24);
        assert!(amx_bf16_listed(7, both));
        assert!(amx_bf16_listed(0x20, u32::MAX));
        assert!(!amx_bf16_listed(7, 1 << 22)); // bf16 products without tiles
        assert!(!amx_bf16_listed(7, 1 << 24)); // tiles without bf16 products
        assert!(!amx_bf16_listed(7, !both)); // every other feature
        assert!(!amx_bf16_listed(6, both)); // leaf 7 not there: its EDX means nothing
    }
}
