//! A training step allocates nothing once the first few have run: every tensor's
//! storage comes back from `buffers`, and every other workspace is kept by its layer
//! or by the trainer. A counting global allocator (this test binary's own) counts
//! every allocation and reallocation on every thread while the steps run, on a
//! worker of the pool as `train::run` and `infogan bench` step (`train::on_worker`).
//!
//! The claim is the fast kernels' (AVX2, AVX-512): on the portable path
//! (`INFOGAN_ISA=portable`, or a CPU without AVX2) `matrixmultiply` packs into
//! buffers of its own that it allocates on every call, and the test checks instead
//! that every step then allocates the same, that is, that nothing accumulates.
//!
//! This binary holds a single test, so that no other test allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use infogan::data::DatasetKind;
use infogan::kernels::microkernel::{Isa, isa};
use infogan::models::ModelKind;
use infogan::train::{Recipe, StepStats, TrainConfig, Trainer, on_worker};
use ndarray::Array4;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator; the counters
// are atomics, which allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, with the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes since the start.
fn counts() -> (usize, usize) {
    (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
}

/// Steps before the counted ones: the first allocates everything, the second the
/// few workspaces sized by what the first left (the pool's list, Adam's state).
const WARMUP: usize = 3;
const COUNTED: usize = 3;

/// Allocations (and bytes) of each of `WARMUP + COUNTED` steps of `config` on a
/// batch of images made before the steps.
fn step_allocations(config: TrainConfig) -> Vec<(usize, usize)> {
    let (c, h, w) = config.arch.dataset.image_shape();
    let n = config.batch_size;
    let batches: Vec<Array4<f32>> = (0..WARMUP + COUNTED)
        .map(|b| {
            Array4::from_shape_fn((n, c, h, w), |(i, j, y, x)| {
                ((i * 7 + j * 3 + y * 5 + x + b) % 17) as f32 / 8.5 - 1.0
            })
        })
        .collect();
    let mut trainer = Trainer::new(config);
    let mut stats = StepStats::default();
    on_worker(|| {
        batches
            .into_iter()
            .map(|real| {
                let before = counts();
                trainer.train_step_into(real, &mut stats);
                let after = counts();
                (after.0 - before.0, after.1 - before.1)
            })
            .collect()
    })
}

#[test]
fn a_step_allocates_nothing_after_the_first_few() {
    let small = |config: TrainConfig| TrainConfig { batch_size: 16, ..config };
    let mnist = TrainConfig::defaults(DatasetKind::Mnist);
    let cases = [
        ("MNIST, the defaults", small(mnist.clone())),
        ("MNIST, the plain GAN", TrainConfig { model: ModelKind::Gan, q_consistency: 0.0, ..small(mnist.clone()) }),
        ("MNIST, --recipe paper", small(TrainConfig::recipe(DatasetKind::Mnist, Recipe::Paper))),
        ("MNIST, a fresh latent batch for G", TrainConfig { fresh_g_latent: true, ..small(mnist) }),
        ("CIFAR-10, the defaults (DiffAugment, mode seeking)", small(TrainConfig::defaults(DatasetKind::Cifar10))),
    ];
    for (what, config) in cases {
        let steps = step_allocations(config);
        assert!(steps[0].0 > 0, "{what}: the first step allocated nothing: is the counting allocator in use?");
        let counted = &steps[WARMUP..];
        if isa() == Isa::Portable {
            assert!(
                counted.iter().all(|&c| c == counted[0]),
                "{what}: on the portable path the steps allocated differently (allocations, bytes): {steps:?}"
            );
            continue;
        }
        assert!(
            counted.iter().all(|&(allocations, _)| allocations == 0),
            "{what}: steps {}..{} allocated (allocations, bytes) {counted:?}; every step: {steps:?}",
            WARMUP + 1,
            WARMUP + COUNTED
        );
    }
}
