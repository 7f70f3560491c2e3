//! Where a training step's time goes, by phase, for `infogan bench --profile`.
//!
//! The compute entry points (the GEMM, im2col / col2im, the layout moves, batch
//! norm, the activations, the losses and Adam) open a `scope` for their phase. When
//! profiling is on, the outermost scope on a thread adds its wall time to its phase;
//! scopes inside it (col2im inside a layer's backward pass, say) count nothing of
//! their own, so no time is counted twice. Entry points are called from the
//! training loop's thread, and parallel work happens inside them, except in a
//! `parallel_section` (a convolution's chunks, each on a thread of its own), where
//! each thread's time counts divided by the number of threads; so the phases' sum
//! is at most the step's wall time; the rest is the glue between them (copies,
//! concatenations, slicing, latent sampling).
//!
//! When profiling is off (always, outside the bench), a scope is one relaxed atomic
//! load.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The phases a step is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Matrix products (`kernels::gemm`), packing included.
    Gemm,
    /// im2col and col2im, the unfolding of convolutions into GEMMs and back.
    Im2col,
    /// Moves between `[N, C, P]` and channel-major `[C, N*P]`, and bias sums.
    Layout,
    /// Batch norm forward and backward.
    BatchNorm,
    /// ReLU, LeakyReLU, Tanh, Sigmoid forward and backward.
    Activation,
    /// BCE, cross-entropy and Gaussian NLL with their gradients.
    Loss,
    /// Adam updates.
    Adam,
}

impl Phase {
    pub const ALL: [Phase; 7] =
        [Phase::Gemm, Phase::Im2col, Phase::Layout, Phase::BatchNorm, Phase::Activation, Phase::Loss, Phase::Adam];

    /// The phase's name in `infogan bench --profile`'s JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Gemm => "gemm",
            Phase::Im2col => "im2col_col2im",
            Phase::Layout => "layout",
            Phase::BatchNorm => "batchnorm",
            Phase::Activation => "activation",
            Phase::Loss => "loss",
            Phase::Adam => "adam",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Open `parallel_section`s: while one is, every thread may run entry points at once
/// (chunks of a convolution, each on a thread of its own), and each outermost scope
/// counts its time divided by the number of threads, so that the phases still add up
/// to at most the wall time.
static PARALLEL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Open scopes on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Turns the timing of scopes on or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Nanoseconds counted so far for each phase, in `Phase::ALL` order.
pub fn totals() -> [u64; 7] {
    std::array::from_fn(|i| NANOS[i].load(Ordering::Relaxed))
}

/// Runs `f`, in which entry points may run on every thread at once (see `PARALLEL`).
pub fn parallel_section<R>(f: impl FnOnce() -> R) -> R {
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            PARALLEL.fetch_sub(1, Ordering::Relaxed);
        }
    }
    PARALLEL.fetch_add(1, Ordering::Relaxed);
    let _close = Close;
    f()
}

/// The time since `start` as a phase or a product counts it: divided by the number
/// of threads inside a `parallel_section`, where every thread counts at once.
fn counted(start: Instant) -> u64 {
    let nanos = start.elapsed().as_nanos() as u64;
    if PARALLEL.load(Ordering::Relaxed) > 0 { nanos / rayon::current_num_threads().max(1) as u64 } else { nanos }
}

/// Times the rest of the enclosing block as `phase` (see the module comment).
#[must_use = "the scope ends when the guard is dropped"]
pub fn scope(phase: Phase) -> Scope {
    if !ENABLED.load(Ordering::Relaxed) {
        return Scope { phase, start: None };
    }
    let outermost = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get() == 1
    });
    Scope { phase, start: Some((Instant::now(), outermost)) }
}

/// An open scope; it counts its time when dropped.
pub struct Scope {
    phase: Phase,
    /// When it opened, and whether it is the outermost scope on its thread. `None`
    /// when profiling was off at the time.
    start: Option<(Instant, bool)>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((start, outermost)) = self.start {
            DEPTH.with(|d| d.set(d.get() - 1));
            if outermost {
                let i = Phase::ALL.iter().position(|&p| p == self.phase).expect("every phase is in ALL");
                NANOS[i].fetch_add(counted(start), Ordering::Relaxed);
            }
        }
    }
}

/// One matrix product's shape and operand layouts, as `infogan bench --profile`
/// lists them: `C[M, N] = A[M, K] B[K, N]`, with each operand marked transposed (`ta`,
/// `tb`, `tc`) when its rows are not contiguous, as in `cargo bench --bench gemm`;
/// `packed` marks the products of one A packed once for several (`with_packed_lhs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Product {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: bool,
    pub tb: bool,
    pub tc: bool,
    pub packed: bool,
}

impl Product {
    /// `MxKxN` and its layout flags, e.g. `1024x128x512 ta packed`.
    pub fn label(&self) -> String {
        let flags = [(self.ta, " ta"), (self.tb, " tb"), (self.tc, " tc"), (self.packed, " packed")];
        let flags: String = flags.iter().filter(|(on, _)| *on).map(|(_, f)| *f).collect();
        format!("{}x{}x{}{flags}", self.m, self.k, self.n)
    }
}

/// Calls and nanoseconds per product shape, while profiling is on.
static PRODUCTS: std::sync::Mutex<std::collections::BTreeMap<Product, (u64, u64)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Times the rest of the enclosing block as one call of product `p` (on top of its
/// phase's `scope`), counted as its phase is, so that a product's GFLOP/s inside a
/// `parallel_section` is that of all the threads, as outside one. Off, it costs one
/// relaxed atomic load.
#[must_use = "the timing ends when the guard is dropped"]
pub fn product(p: impl FnOnce() -> Product) -> ProductScope {
    ProductScope(ENABLED.load(Ordering::Relaxed).then(|| (p(), Instant::now())))
}

/// An open product timing; it counts when dropped.
pub struct ProductScope(Option<(Product, Instant)>);

impl Drop for ProductScope {
    fn drop(&mut self) {
        if let Some((p, start)) = self.0 {
            let nanos = counted(start);
            let mut table = PRODUCTS.lock().unwrap_or_else(|e| e.into_inner());
            let entry = table.entry(p).or_default();
            *entry = (entry.0 + 1, entry.1 + nanos);
        }
    }
}

/// Every product timed so far: its shape, calls and nanoseconds.
pub fn products() -> Vec<(Product, u64, u64)> {
    let table = PRODUCTS.lock().unwrap_or_else(|e| e.into_inner());
    table.iter().map(|(&p, &(calls, nanos))| (p, calls, nanos)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Profiling is one switch for the process: the tests that flip it take turns.
    static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Nested scopes count once, for the outermost phase.
    #[test]
    fn nested_scopes_count_once() {
        let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        enable(true);
        let before = totals();
        {
            let _outer = scope(Phase::Loss);
            let _inner = scope(Phase::Adam);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let after = totals();
        enable(false);
        let loss = after[5] - before[5];
        assert!(loss >= 2_000_000, "the outer scope counted {loss} ns");
        assert_eq!(DEPTH.with(|d| d.get()), 0, "every scope closed");
    }

    /// A product's calls and time are counted under its shape while profiling is on.
    #[test]
    fn products_count_by_shape() {
        let p = Product { m: 3, k: 5, n: 7, ta: true, tb: false, tc: false, packed: true };
        assert_eq!(p.label(), "3x5x7 ta packed");
        let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        enable(true);
        for _ in 0..2 {
            let _t = product(|| p);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        enable(false);
        drop(product(|| p));
        let (_, calls, nanos) = products().into_iter().find(|(q, _, _)| *q == p).expect("the product was timed");
        assert_eq!(calls, 2, "only the calls made while profiling count");
        assert!(nanos >= 2_000_000, "{nanos} ns for two calls of at least 1 ms");
    }

    /// Inside a `parallel_section`, where every thread may time a product at once, a
    /// product's time counts divided by the number of threads, as its phase's does.
    #[test]
    fn products_in_a_parallel_section_count_a_share_of_their_time() {
        let p = Product { m: 11, k: 13, n: 17, ta: false, tb: true, tc: false, packed: false };
        let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        let threads = rayon::current_num_threads() as u64;
        enable(true);
        let start = Instant::now();
        parallel_section(|| {
            let _t = product(|| p);
            std::thread::sleep(std::time::Duration::from_millis(4));
        });
        let wall = start.elapsed().as_nanos() as u64;
        enable(false);
        let (_, calls, nanos) = products().into_iter().find(|(q, _, _)| *q == p).expect("the product was timed");
        assert_eq!(calls, 1);
        assert!(
            nanos >= 4_000_000 / threads && nanos <= wall / threads,
            "{nanos} ns counted for 4 ms of {wall} ns on {threads} threads"
        );
    }
}
