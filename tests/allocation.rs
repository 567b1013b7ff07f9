//! The per-row ops allocate nothing: inference engines call LayerNorm / RMSNorm per token per
//! layer, so `forward*` (and GroupNorm's forward, the moment functions, and the backward
//! passes without parameter gradients) must not touch the heap. Counted with a global
//! allocator that tallies the calling thread's allocations, inside a one-thread pool (the
//! calls then run on that thread) and from outside any pool on inputs small enough to stay
//! serial.
//!
//! BatchNorm eval allocates nothing either on inputs small enough to stay on the caller's
//! thread that have fewer than 64 rows (`tuning::EVAL_BLOCK_ROWS`: `N` for `Nc` and for
//! `Nchw` with segments shorter than `tuning::SEGMENT_MIN_HW`, `N·HW` for `Nhwc`) or
//! `Nchw` segments of at least that many values: its plans are then computed a block of
//! channels at a time on the stack.
//!
//! The calls that do allocate, once per call or per block of input (never per row):
//! BatchNorm training (its per-channel statistics and plans, O(C)) and eval on more rows or
//! in parallel, `col_moments` (per-column states per leaf of rows), and the backward passes'
//! dweight / dbias partials (fixed row blocks, merged in a fixed order for thread-count
//! independence).

use half::bf16;
use simdnorm::{BatchNorm, Element, Float, GroupNorm, LayerNorm, Moments, RmsNorm};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the counter is a const-initialized
// thread-local `Cell` (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed on to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(p, l, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocs(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

/// Every non-allocating call on `rows × n` data of type `T`, each asserted to allocate 0 times.
fn check<T: Element>(rows: usize, n: usize) {
    let v = |k: usize| T::from_acc(T::Acc::from_f64((k % 97) as f64 * 0.1 - 4.0));
    let x: Vec<T> = (0..rows * n).map(v).collect();
    let w: Vec<T> = (0..n).map(|k| v(k + 5)).collect();
    let (mut y, mut r, mut dx) = (x.clone(), x.clone(), x.clone());
    let (mut mean, mut rstd) = (vec![T::Acc::ZERO; rows], vec![T::Acc::ZERO; rows]);
    let zero = Moments {
        count: 0,
        mean: T::Acc::ZERO,
        m2: T::Acc::ZERO,
    };
    let mut ms = vec![zero; rows];
    let none = |what: &str, a: usize| assert_eq!(a, 0, "{what} on {rows}x{n} allocated {a} times");
    for (name, ln) in [
        ("LayerNorm", LayerNorm::new(n)),
        ("LayerNorm w, b", LayerNorm::new(n).weight(&w).bias(&w)),
    ] {
        none(name, allocs(|| ln.forward(&x, &mut y).unwrap()));
        none(name, allocs(|| ln.forward_in_place(&mut r).unwrap()));
        none(name, allocs(|| ln.forward_add(&x, &mut r, &mut y).unwrap()));
        let stats = || {
            ln.forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
                .unwrap()
        };
        none(name, allocs(stats));
        let back = || {
            ln.backward(&x, &x, &mean, &rstd, &mut dx, None, None)
                .unwrap()
        };
        none(name, allocs(back));
    }
    for (name, rms) in [
        ("RmsNorm", RmsNorm::new(n)),
        ("RmsNorm w", RmsNorm::new(n).weight(&w)),
    ] {
        none(name, allocs(|| rms.forward(&x, &mut y).unwrap()));
        none(name, allocs(|| rms.forward_in_place(&mut r).unwrap()));
        none(
            name,
            allocs(|| rms.forward_add(&x, &mut r, &mut y).unwrap()),
        );
        let stats = || rms.forward_with_stats(&x, &mut y, &mut rstd).unwrap();
        none(name, allocs(stats));
        let back = || rms.backward(&x, &x, &rstd, &mut dx, None).unwrap();
        none(name, allocs(back));
    }
    let (rm, rv) = (
        vec![T::Acc::from_f64(0.5); n],
        vec![T::Acc::from_f64(2.0); n],
    );
    let bn = BatchNorm::new(n).weight(&w).bias(&w);
    if rows < 64 {
        let eval = || {
            bn.forward_eval(&x, simdnorm::Layout::Nc { n: rows }, &rm, &rv, &mut y)
                .unwrap()
        };
        none("BatchNorm eval (N, C)", allocs(eval));
    }
    let bn = BatchNorm::new(4).weight(&w[..4]).bias(&w[..4]);
    let nchw = simdnorm::Layout::Nchw { n: rows, hw: n / 4 };
    let eval = || {
        bn.forward_eval(&x, nchw, &rm[..4], &rv[..4], &mut y)
            .unwrap()
    };
    none("BatchNorm eval (N, C, HW)", allocs(eval));
    let gn = GroupNorm::new(2, 4).weight(&w[..4]).bias(&w[..4]);
    none(
        "GroupNorm",
        allocs(|| gn.forward(&x, rows, n / 4, &mut y).unwrap()),
    );
    let (mut gm, mut gr) = (vec![T::Acc::ZERO; 2 * rows], vec![T::Acc::ZERO; 2 * rows]);
    let gstats = || {
        gn.forward_with_stats(&x, rows, n / 4, &mut y, &mut gm, &mut gr)
            .unwrap()
    };
    none("GroupNorm", allocs(gstats));
    none(
        "moments",
        allocs(|| {
            std::hint::black_box(simdnorm::moments(&x));
        }),
    );
    none(
        "welford",
        allocs(|| {
            std::hint::black_box(simdnorm::welford(&x));
        }),
    );
    none(
        "two_pass",
        allocs(|| {
            std::hint::black_box(simdnorm::two_pass(&x));
        }),
    );
    none(
        "row_moments",
        allocs(|| simdnorm::row_moments(&x, n, &mut ms).unwrap()),
    );
}

/// Shapes: a decode step (1 and 8 rows of 4096), rows that pair (wide rows, whole vectors),
/// odd lengths (every tail path), narrow rows. Every row length is a multiple of 4 (the
/// channels of the `Nchw` BatchNorm call).
const SHAPES: [(usize, usize); 6] = [
    (1, 4096),
    (8, 4096),
    (4, 2048),
    (3, 1000),
    (64, 256),
    (5, 20),
];

#[test]
fn row_ops_allocate_nothing_in_a_one_thread_pool() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        for (rows, n) in SHAPES {
            check::<f32>(rows, n);
            check::<f64>(rows, n);
            check::<bf16>(rows, n);
            check::<half::f16>(rows, n);
        }
    });
}

#[test]
fn small_row_ops_allocate_nothing_outside_a_pool() {
    for (rows, n) in SHAPES {
        check::<f32>(rows, n);
        check::<bf16>(rows, n);
    }
}

/// The counter counts: a call that allocates is seen (else the tests above prove nothing).
#[test]
fn the_counter_sees_an_allocation() {
    let x = vec![1.0f32; 64];
    let w = vec![1.0f32; 8];
    let bn = BatchNorm::new(8).weight(&w).bias(&w);
    let (mut y, mut mean, mut invstd) = (vec![0.0f32; 64], [0.0f32; 8], [0.0f32; 8]);
    let a = allocs(|| {
        bn.forward_train(
            &x,
            simdnorm::Layout::Nc { n: 8 },
            &mut y,
            None,
            &mut mean,
            &mut invstd,
        )
        .unwrap()
    });
    assert!(a > 0, "BatchNorm training's statistics were not counted");
    assert!(allocs(|| drop(std::hint::black_box(vec![0u8; 16]))) == 1);
}
