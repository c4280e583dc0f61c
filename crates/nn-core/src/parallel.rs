//! A small pool of spinning helper threads for splitting the work of a training step
//! (matrix products, convolutions over a batch, element-wise passes, the optimizer step)
//! across cores.
//!
//! The products of a small network take tens of microseconds. A general-purpose pool that
//! puts its workers to sleep between tasks spends about as long waking them as the work
//! itself takes (measured: rayon-threaded GEMM made the W1 workload 35 % *slower* than one
//! thread). Here each helper spins for a while (1 ms) after finishing a part, so the next
//! product of the same training step reaches it within a microsecond or two, and parks
//! only when no work arrived for [`SPIN`].
//!
//! The thread count is `NN_NUM_THREADS`, else `RAYON_NUM_THREADS`, else all cores.
//! Parts are claimed one at a time from a shared counter: a thread that is late (not
//! scheduled on a loaded machine) simply takes fewer, so an oversubscribed machine degrades
//! to about one thread's speed instead of stalling. If another thread is already using the
//! pool, the caller runs all parts alone.
//!
//! - [`run_parts`]: `f(0)`, …, `f(parts − 1)` across the threads;
//! - [`for_each_mut`]: one call per item of a slice, each with exclusive access to its item;
//! - [`split_runs`] (one output), [`split_runs2`] (two): an element-wise pass cut into one
//!   contiguous run per thread. Run `i` is always the same flat range, and the caller takes
//!   part 0 first, so a thread keeps working on the same half of a parameter from one step
//!   to the next;
//! - [`split_runs_with`]: the same with working memory per run (scratch, partial sums);
//! - [`split_each`]: one pass over a slice and `K` more of the same length (a parameter
//!   and an optimizer's state), cut at the same places.

// `run_parts` hands a borrowed closure to the helper threads: the one use of `unsafe` in
// the toolkit's own code (see the SAFETY comment). It is sound for the same reason scoped
// threads are: the caller does not return — not even by unwinding — before every helper
// has finished with the closure.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks. Measured on W1: 0.2 ms made the helper
/// park between training steps (twice as slow as one thread); 0.5–5 ms all give the full
/// two-thread speed.
pub const SPIN: Duration = Duration::from_micros(1000);

const IDLE: u32 = 0;
const READY: u32 = 1;
const DONE: u32 = 2;
const PANICKED: u32 = 3;
const RUNNING: u32 = 4;

/// A split job: the closure and the counter its parts are claimed from (lifetimes erased).
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    next: *const AtomicUsize,
    parts: usize,
}

// SAFETY: the closure behind `f` is `Sync` and the counter is atomic, so using them from
// another thread is allowed; both pointers are only dereferenced while the submitting thread
// waits in `run_parts`.
unsafe impl Send for Job {}

impl Job {
    /// Claims parts one at a time and runs them until none is left.
    ///
    /// # Safety
    /// `f` and `next` must be alive (guaranteed while the submitter waits in `run_parts`).
    unsafe fn run(&self) {
        // SAFETY: see above.
        let (f, next) = unsafe { (&*self.f, &*self.next) };
        claim_and_run(f, next, self.parts);
    }
}

/// Runs `f(i)` for each part `i` claimed from `next`, until every part is claimed.
fn claim_and_run(f: &(dyn Fn(usize) + Sync), next: &AtomicUsize, parts: usize) {
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= parts {
            return;
        }
        f(i);
    }
}

struct Helper {
    state: AtomicU32,
    job: Mutex<Option<Job>>,
    thread: Thread,
}

struct Pool {
    helpers: Vec<&'static Helper>,
    busy: Mutex<()>,
}

/// Threads the toolkit uses for one product: `NN_NUM_THREADS`, else `RAYON_NUM_THREADS`,
/// else the number of cores.
pub fn num_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        ["NN_NUM_THREADS", "RAYON_NUM_THREADS"]
            .iter()
            .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

fn helper_loop(me: &'static Helper) {
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        while me.state.load(Ordering::Acquire) != READY {
            spins = spins.wrapping_add(1);
            // look at the clock only every 64 rounds: it costs more than a round
            if spins.is_multiple_of(64) && started.elapsed() > SPIN {
                std::thread::park_timeout(Duration::from_millis(50));
            } else {
                std::hint::spin_loop();
            }
        }
        // Claim the part; the submitter may have taken it back meanwhile.
        if me
            .state
            .compare_exchange(READY, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let job = me.job.lock().unwrap_or_else(|e| e.into_inner()).take();
        let outcome = match job {
            Some(job) => {
                // SAFETY: `run_parts` stored these pointers and waits, without returning or
                // unwinding, until this helper sets DONE or PANICKED; they are alive.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    job.run()
                })) {
                    Ok(()) => DONE,
                    Err(_) => PANICKED,
                }
            }
            None => DONE,
        };
        me.state.store(outcome, Ordering::Release);
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = (1..num_threads())
            .filter_map(|i| {
                let (tx, rx) = std::sync::mpsc::channel::<&'static Helper>();
                let handle = std::thread::Builder::new()
                    .name(format!("nn-helper-{i}"))
                    .spawn(move || {
                        if let Ok(me) = rx.recv() {
                            helper_loop(me);
                        }
                    })
                    .ok()?;
                let helper: &'static Helper = Box::leak(Box::new(Helper {
                    state: AtomicU32::new(IDLE),
                    job: Mutex::new(None),
                    thread: handle.thread().clone(),
                }));
                tx.send(helper).ok()?;
                Some(helper)
            })
            .collect();
        Pool {
            helpers,
            busy: Mutex::new(()),
        }
    })
}

/// Number of parts [`run_parts`] can run at once (1 + helpers).
pub fn parallelism() -> usize {
    1 + pool().helpers.len()
}

/// Calls `f(0)`, …, `f(parts − 1)` once each, on the calling thread and the helpers, and
/// returns when all have finished. The parts are claimed one at a time from a shared
/// counter, so a thread that runs slower (a helper the machine did not schedule, a core
/// shared with another program) simply takes fewer of them; cutting a job into a few parts
/// per thread lets the others make up for it. With the pool in use by another thread, all
/// parts run on the calling thread.
///
/// # Panics
/// If any part panics (after all running parts have finished).
pub fn run_parts(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    let guard = if parts > 1 {
        pool.busy.try_lock().ok()
    } else {
        None
    };
    let Some(_guard) = guard else {
        (0..parts).for_each(f);
        return;
    };
    let next = AtomicUsize::new(0);
    let used = (parts - 1).min(pool.helpers.len());
    // SAFETY: the lifetimes of `f` and `next` are erased so that helpers can hold them;
    // `Wait` below does not let this function return or unwind until every helper that
    // received the pointers has stored DONE or PANICKED (or was taken back before starting),
    // after which no helper touches them again.
    let job = Job {
        f: unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), _>(f) },
        next: &next,
        parts,
    };
    for h in &pool.helpers[..used] {
        *h.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        h.state.store(READY, Ordering::Release);
        h.thread.unpark();
    }
    /// Waits for every helper that started; one that has not (its thread was not scheduled)
    /// is taken back: by then the caller has claimed every part it would have run.
    struct Wait<'a> {
        helpers: &'a [&'static Helper],
        next: &'a AtomicUsize,
    }
    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.next.store(usize::MAX / 2, Ordering::Relaxed); // stop handing out parts
            }
            let mut panicked = false;
            for h in self.helpers {
                if h.state
                    .compare_exchange(READY, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    h.job.lock().unwrap_or_else(|e| e.into_inner()).take();
                    continue;
                }
                let mut spins = 0u32;
                loop {
                    match h.state.load(Ordering::Acquire) {
                        DONE => break,
                        PANICKED => {
                            panicked = true;
                            break;
                        }
                        _ if spins > 2048 => std::thread::yield_now(),
                        _ => std::hint::spin_loop(),
                    }
                    spins += 1;
                }
                h.state.store(IDLE, Ordering::Release);
            }
            if panicked && !std::thread::panicking() {
                panic!("a parallel part panicked");
            }
        }
    }
    let wait = Wait {
        helpers: &pool.helpers[..used],
        next: &next,
    };
    claim_and_run(f, &next, parts);
    drop(wait);
}

/// The most items [`for_each_mut`] hands out in one round, and the most runs
/// [`split_runs`] and [`split_runs_with`] cut a pass into.
pub const MAX_RUNS: usize = 16;

/// Calls `f(i, &mut items[i])` for every item, the items spread over the pool's threads
/// (item 0 on the calling thread). Each call gets exclusive access to its item, so the
/// items can hold disjoint `&mut` slices of one output. Allocates nothing.
///
/// # Panics
/// If any call panics (after all calls have finished).
pub fn for_each_mut<T: Send>(items: &mut [T], f: &(dyn Fn(usize, &mut T) + Sync)) {
    for (round, chunk) in items.chunks_mut(MAX_RUNS).enumerate() {
        let slots: [Mutex<Option<&mut T>>; MAX_RUNS] = std::array::from_fn(|_| Mutex::new(None));
        let len = chunk.len();
        for (slot, item) in slots.iter().zip(chunk) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(item);
        }
        run_parts(len, &|i| {
            let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(item) = item {
                f(round * MAX_RUNS + i, item);
            }
        });
    }
}

/// Below this many values touched, an element-wise pass stays on one thread: handing half
/// of it to a helper costs about as much as the pass itself.
pub const SPLIT_MIN: usize = 1 << 15;

/// One thread's share: its units, its slices of both outputs and its working memory.
type Run<'a, A, B, S> = (std::ops::Range<usize>, &'a mut [A], &'a mut [B], &'a mut S);

/// The pass [`split_runs`] applies to each run.
pub type RunFn<'f, A> = dyn Fn(std::ops::Range<usize>, &mut [A]) + Sync + 'f;

/// The pass [`split_runs2`] applies to each run.
pub type RunFn2<'f, A, B> = dyn Fn(std::ops::Range<usize>, &mut [A], &mut [B]) + Sync + 'f;

/// The pass [`split_runs_with`] applies to each run.
pub type StateRunFn<'f, A, S> = dyn Fn(std::ops::Range<usize>, &mut [A], &mut S) + Sync + 'f;

/// Cuts `units` units of work into one run per thread and calls `f(run, a_run)` for each,
/// where `a_run` is the run's slice of `a` (`per_a` values per unit; an empty output stays
/// empty). Runs on the calling thread alone when `work` (the values the pass touches) is
/// under [`SPLIT_MIN`]. Allocates nothing.
///
/// # Panics
/// If `a` is neither empty nor `units × per_a`, or if `f` panics.
pub fn split_runs<A: Send>(units: usize, a: (&mut [A], usize), work: usize, f: &RunFn<'_, A>) {
    let mut none = [(); MAX_RUNS];
    let b = (&mut [] as &mut [u8], 0);
    split(units, a, b, &mut none, work, &|r, a, _, _| f(r, a));
}

/// As [`split_runs`] with two outputs: `f(run, a_run, b_run)`.
///
/// # Panics
/// If `a` or `b` is neither empty nor `units` × its per-unit size, or if `f` panics.
pub fn split_runs2<A: Send, B: Send>(
    units: usize,
    a: (&mut [A], usize),
    b: (&mut [B], usize),
    work: usize,
    f: &RunFn2<'_, A, B>,
) {
    let mut none = [(); MAX_RUNS];
    split(units, a, b, &mut none, work, &|r, a, b, _| f(r, a, b));
}

/// As [`split_runs`] with one output, and with working memory for each run: run `i` gets
/// `&mut states[i]` (a thread's scratch buffers, its partial sums). There are at most
/// `states.len()` runs, and always the same number for the same `units`, `work` and thread
/// count, so partial sums added in state order do not depend on timing.
///
/// # Panics
/// If `states` is empty, `a` is neither empty nor `units × per_a`, or if `f` panics.
pub fn split_runs_with<A: Send, S: Send>(
    units: usize,
    a: (&mut [A], usize),
    states: &mut [S],
    work: usize,
    f: &StateRunFn<'_, A, S>,
) {
    split(
        units,
        a,
        (&mut [] as &mut [u8], 0),
        states,
        work,
        &|r, a, _, s| f(r, a, s),
    );
}

/// The number of runs a pass of `units` units touching `work` values is cut into: one per
/// thread, at most `most` and [`MAX_RUNS`], and one alone under [`SPLIT_MIN`] values.
fn run_count(units: usize, work: usize, most: usize) -> usize {
    if work < SPLIT_MIN {
        1
    } else {
        parallelism().min(units).min(most).clamp(1, MAX_RUNS)
    }
}

/// The pass [`split_each`] applies to each run.
pub type EachFn<'f, A, const K: usize> =
    dyn Fn(std::ops::Range<usize>, &mut [A], [&mut [A]; K]) + Sync + 'f;

/// An element-wise pass over `a` and `K` more slices of the same length (a parameter and
/// an optimizer's state tensors), cut into one run per thread as [`split_runs`] cuts it:
/// `f(run, a_run, [b_run; K])`. Allocates nothing.
///
/// # Panics
/// If a slice of `bs` is not as long as `a`, or if `f` panics.
pub fn split_each<A: Send, const K: usize>(
    a: &mut [A],
    bs: [&mut [A]; K],
    work: usize,
    f: &EachFn<'_, A, K>,
) {
    let units = a.len();
    assert!(
        bs.iter().all(|b| b.len() == units),
        "split_each: slices of different lengths"
    );
    let parts = run_count(units, work, MAX_RUNS);
    if parts == 1 {
        return f(0..units, a, bs);
    }
    type EachRun<'a, A, const K: usize> = (std::ops::Range<usize>, &'a mut [A], [&'a mut [A]; K]);
    let mut runs: [Option<EachRun<'_, A, K>>; MAX_RUNS] = std::array::from_fn(|_| None);
    let (mut a, mut bs) = (a, bs);
    let mut start = 0;
    for (p, run) in runs.iter_mut().take(parts).enumerate() {
        let len = (p + 1) * units / parts - start;
        let (head, tail) = std::mem::take(&mut a).split_at_mut(len);
        a = tail;
        let heads = bs.each_mut().map(|b| {
            let (head, tail) = std::mem::take(b).split_at_mut(len);
            *b = tail;
            head
        });
        *run = Some((start..start + len, head, heads));
        start += len;
    }
    for_each_mut(&mut runs[..parts], &|_, run| {
        if let Some((range, a, bs)) = run.take() {
            f(range, a, bs);
        }
    });
}

/// A run's pass with both outputs and its working memory.
pub type SplitFn<'f, A, B, S> =
    dyn Fn(std::ops::Range<usize>, &mut [A], &mut [B], &mut S) + Sync + 'f;

/// As [`split_runs_with`] with two outputs (either may be empty): run `i` gets its slices
/// of `a` and `b` and `&mut states[i]`.
///
/// # Panics
/// As [`split_runs_with`], and if `b` is neither empty nor `units × per_b`.
pub fn split_runs2_with<A: Send, B: Send, S: Send>(
    units: usize,
    a: (&mut [A], usize),
    b: (&mut [B], usize),
    states: &mut [S],
    work: usize,
    f: &SplitFn<'_, A, B, S>,
) {
    split(units, a, b, states, work, f);
}

/// The one implementation behind [`split_runs`], [`split_runs2`], [`split_runs_with`] and
/// [`split_runs2_with`].
fn split<A: Send, B: Send, S: Send>(
    units: usize,
    (a, per_a): (&mut [A], usize),
    (b, per_b): (&mut [B], usize),
    states: &mut [S],
    work: usize,
    f: &SplitFn<'_, A, B, S>,
) {
    assert!(
        a.is_empty() || a.len() == units * per_a,
        "split_runs: a does not fit the units"
    );
    assert!(
        b.is_empty() || b.len() == units * per_b,
        "split_runs: b does not fit the units"
    );
    assert!(!states.is_empty(), "split_runs: no working memory");
    let parts = run_count(units, work, states.len());
    if parts == 1 {
        return f(0..units, a, b, &mut states[0]);
    }
    let mut runs: [Option<Run<'_, A, B, S>>; MAX_RUNS] = std::array::from_fn(|_| None);
    let (mut a, mut b) = (a, b);
    let mut start = 0;
    for ((p, run), state) in runs.iter_mut().take(parts).enumerate().zip(states) {
        let end = (p + 1) * units / parts;
        let take_a = if a.is_empty() {
            0
        } else {
            (end - start) * per_a
        };
        let take_b = if b.is_empty() {
            0
        } else {
            (end - start) * per_b
        };
        let (ha, ta) = std::mem::take(&mut a).split_at_mut(take_a);
        let (hb, tb) = std::mem::take(&mut b).split_at_mut(take_b);
        (a, b) = (ta, tb);
        *run = Some((start..end, ha, hb, state));
        start = end;
    }
    for_each_mut(&mut runs[..parts], &|_, run| {
        if let Some((range, a, b, state)) = run.take() {
            f(range, a, b, state);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once() {
        for parts in 1..6 {
            let hits: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
            for _ in 0..100 {
                run_parts(parts, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 100));
        }
    }

    #[test]
    fn concurrent_callers_fall_back_to_serial() {
        let total = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        run_parts(2, &|i| {
                            total.fetch_add(i as u64 + 1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 200 * 3);
    }

    #[test]
    fn for_each_mut_gives_each_item_to_one_call() {
        for len in [0usize, 1, 2, 3, 17, 40] {
            let mut items: Vec<u64> = vec![0; len];
            for _ in 0..20 {
                for_each_mut(&mut items, &|i, x| *x += i as u64 + 1);
            }
            let want: Vec<u64> = (0..len as u64).map(|i| 20 * (i + 1)).collect();
            assert_eq!(items, want);
        }
    }

    #[test]
    fn split_runs_covers_every_unit_once() {
        for (units, work) in [
            (0usize, SPLIT_MIN),
            (1, SPLIT_MIN),
            (7, SPLIT_MIN),
            (100, SPLIT_MIN),
            (100, 10),
        ] {
            let mut a = vec![0u32; units * 3];
            let mut b = vec![0u32; units];
            split_runs2(units, (&mut a, 3), (&mut b, 1), work, &|r, a, b| {
                assert_eq!((a.len(), b.len()), (r.len() * 3, r.len()));
                for (j, u) in r.enumerate() {
                    a[3 * j..3 * j + 3].fill(u as u32);
                    b[j] += 1;
                }
            });
            let want: Vec<u32> = (0..units as u32).flat_map(|u| [u, u, u]).collect();
            assert_eq!(a, want);
            assert!(b.iter().all(|&c| c == 1));
            // an empty second output stays empty
            split_runs2(
                units,
                (&mut a, 3),
                (&mut [] as &mut [u8], 5),
                work,
                &|r, a, b| {
                    assert_eq!((a.len(), b.len()), (r.len() * 3, 0));
                },
            );
            // one output
            split_runs(units, (&mut b, 1), work, &|r, b| {
                assert_eq!(b.len(), r.len());
                b.iter_mut().for_each(|c| *c += 1);
            });
            assert!(b.iter().all(|&c| c == 2));
        }
    }

    #[test]
    fn split_each_cuts_every_slice_at_the_same_places() {
        for (units, work) in [
            (0usize, SPLIT_MIN),
            (1, SPLIT_MIN),
            (101, SPLIT_MIN),
            (101, 5),
        ] {
            let mut a: Vec<u32> = (0..units as u32).collect();
            let (mut b, mut c) = (vec![0u32; units], vec![0u32; units]);
            split_each(&mut a, [&mut b, &mut c], work, &|r, a, [b, c]| {
                assert_eq!((a.len(), b.len(), c.len()), (r.len(), r.len(), r.len()));
                for ((a, b), (c, u)) in a.iter_mut().zip(b).zip(c.iter_mut().zip(r)) {
                    assert_eq!(*a, u as u32);
                    (*a, *b, *c) = (*a * 2, *a + 1, u as u32);
                }
            });
            let want: Vec<u32> = (0..units as u32).collect();
            assert_eq!(c, want);
            assert_eq!(b, want.iter().map(|u| u + 1).collect::<Vec<_>>());
            assert_eq!(a, want.iter().map(|u| u * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn split_runs_with_gives_each_run_its_own_state() {
        // 100 units summed by runs into per-run partial sums: the sums add up whatever the
        // number of runs, and no more runs than states
        for states_len in [1usize, 2, 3] {
            let mut out = vec![0u32; 100];
            let mut partial = vec![0u64; states_len];
            split_runs_with(100, (&mut out, 1), &mut partial, SPLIT_MIN, &|r, o, sum| {
                for (x, u) in o.iter_mut().zip(r) {
                    *x = u as u32;
                    *sum += u as u64;
                }
            });
            assert_eq!(partial.iter().sum::<u64>(), 4950); // 0 + 1 + … + 99
            assert_eq!(out, (0..100).collect::<Vec<u32>>());
        }
    }
}
