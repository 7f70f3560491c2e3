//! Where a training step's time goes, by phase, for `infogan bench --profile`.
//!
//! The compute entry points (the GEMM, im2col / col2im, the layout moves, batch
//! norm, the activations, the losses and Adam) open a `scope` for their phase. When
//! profiling is on, the outermost scope on a thread adds its wall time to its phase;
//! scopes inside it (col2im inside a layer's backward pass, say) count nothing of
//! their own, so no time is counted twice. Every entry point is called from the
//! training loop's thread, and parallel work happens inside them, so the phases'
//! sum is at most the step's wall time; the rest is the glue between them (copies,
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
                NANOS[i].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nested scopes count once, for the outermost phase.
    #[test]
    fn nested_scopes_count_once() {
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
}
