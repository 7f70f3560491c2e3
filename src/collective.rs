//! Sums over a batch split into shards, on one process or across the ranks of an MPI
//! job, in an order that does not depend on how the shards are spread over ranks.
//!
//! A global batch of `N` is `S` equal shards (`TrainConfig::shards`, 1 unless asked).
//! Every sum over the batch that a training step makes (a layer's weight and bias
//! gradients, batch norm's statistics and its backward sums, a loss) is computed as
//! one partial per shard, and the `S` partials are added in one fixed pairwise tree
//! (`tree_sum`). With `R` ranks each holding `S / R` consecutive shards (a power of
//! two), a rank's shards are a whole subtree of that tree: it adds them itself, and
//! the ranks' `R` subtotals are then added by the tree's upper levels, on every rank
//! alike (`Comm`). The result has the same bits for every `R` that divides `S` this
//! way, and with `S = 1` every sum is the one a plain single-process step makes.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "mpi")]
pub mod mpi;

/// How long the ranks wait for rank 0's own work (loading, the scorer, evaluation and
/// the checkpoint at an epoch end) before taking it for dead.
pub const RANK_ZERO_PATIENCE: Duration = Duration::from_secs(3600);

/// Environment variables that an MPI launcher sets in every process it starts: Open
/// MPI's, MPICH's (Hydra, PMI) and PMIx's (Slurm's `srun --mpi=pmix`).
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// Whether this process was started by an MPI launcher.
pub fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// The number of processes the launcher started, where its variables say.
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The job's ranks: MPI's world when a launcher started this process (and the binary
/// was built with the feature `mpi`), `None` on a process of its own. `patience`
/// bounds every wait of a step for another rank.
pub fn connect(patience: Duration) -> crate::error::Result<Option<Arc<dyn Comm>>> {
    #[cfg(feature = "mpi")]
    {
        mpi::set_step_patience(patience);
        Ok(mpi::MpiComm::from_launcher()?.map(|c| Arc::new(c) as Arc<dyn Comm>))
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = patience;
        match launched_ranks() {
            Some(r) if r > 1 && launched() => Err(crate::error::Error::Invalid(format!(
                "started by an MPI launcher with {r} processes, but this infogan was built without MPI: each process \
                 would train on its own. Build it with `cargo build --release --features mpi` (README, \"Training on \
                 several processes\")"
            ))),
            _ => Ok(None),
        }
    }
}

/// The ranks of a job, as the reductions of a training step see them. Every method is
/// a collective: every rank calls it, in the same order, with the same lengths.
pub trait Comm: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Replaces `node` on every rank by the ranks' nodes added element by element in
    /// the order of `tree_sum` over the ranks: the same bits on every rank.
    fn sum_f32(&self, node: &mut [f32]);

    /// `sum_f32` for f64 values.
    fn sum_f64(&self, node: &mut [f64]);

    /// Whether `flag` is true on any rank.
    fn any(&self, flag: bool) -> bool;

    /// Waits for every rank, after work that rank 0 does alone (`what`, named in the
    /// report of a rank that waits too long): the other ranks wait up to
    /// `RANK_ZERO_PATIENCE` for it, rank 0 as long as in a step for them.
    fn wait_for_rank_zero(&self, what: &str);

    /// Time spent in the collectives so far, and how many there were.
    fn time_spent(&self) -> (Duration, u64);
}

/// How the batch of a step is split: `local` consecutive shards on this process, and
/// the ranks of the job, if there is one.
#[derive(Clone, Default)]
pub struct Shards {
    local: usize,
    comm: Option<Arc<dyn Comm>>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shards {{ local: {}, ranks: {} }}", self.local(), self.ranks())
    }
}

impl Shards {
    /// The whole batch as one shard on one process: every sum as a plain step makes it.
    pub fn single() -> Self {
        Shards { local: 1, comm: None }
    }

    /// `total` shards spread over the ranks of `comm` (or kept on this process). Panics
    /// unless each rank gets a power of two of them; `TrainConfig::check_shards` makes
    /// that a user error first.
    pub fn new(total: usize, comm: Option<Arc<dyn Comm>>) -> Self {
        let ranks = comm.as_ref().map_or(1, |c| c.size());
        assert!(
            total > 0 && total.is_multiple_of(ranks) && (total / ranks).is_power_of_two(),
            "Shards::new: {total} shards cannot be spread over {ranks} ranks as a power of two each"
        );
        Shards { local: total / ranks, comm }
    }

    /// Shards on this process.
    pub fn local(&self) -> usize {
        self.local.max(1)
    }

    /// Ranks of the job (1 without one).
    pub fn ranks(&self) -> usize {
        self.comm.as_ref().map_or(1, |c| c.size())
    }

    /// This process's rank (0 without a job).
    pub fn rank(&self) -> usize {
        self.comm.as_ref().map_or(0, |c| c.rank())
    }

    /// Shards of the whole batch.
    pub fn total(&self) -> usize {
        self.local() * self.ranks()
    }

    /// Whether every sum is the plain one: a single shard on a single process.
    pub fn is_single(&self) -> bool {
        self.total() == 1
    }

    /// The job's ranks, if there is a job.
    pub fn comm(&self) -> Option<&Arc<dyn Comm>> {
        self.comm.as_ref()
    }

    /// The rows of local shard `s` among `n` local rows.
    pub fn rows(&self, s: usize, n: usize) -> std::ops::Range<usize> {
        let b = self.local();
        assert!(n.is_multiple_of(b), "Shards::rows: {n} rows do not split into {b} equal shards");
        s * n / b..(s + 1) * n / b
    }

    /// Images (rows) per shard of a local batch of `n`.
    pub fn shard_images(&self, n: usize) -> usize {
        n / self.local()
    }

    /// Adds the local shards' partials (`leaves[s]` of shard `s`, all of one length)
    /// and then those of every rank.
    pub fn sum_f32(&self, leaves: Vec<Vec<f32>>) -> Vec<f32> {
        self.sum(leaves, |c, total| c.sum_f32(total))
    }

    /// `sum_f32` for f64 partials.
    pub fn sum_f64(&self, leaves: Vec<Vec<f64>>) -> Vec<f64> {
        self.sum(leaves, |c, total| c.sum_f64(total))
    }

    fn sum<T: Copy + std::ops::AddAssign>(
        &self,
        mut leaves: Vec<Vec<T>>,
        across: impl Fn(&dyn Comm, &mut [T]),
    ) -> Vec<T> {
        assert_eq!(
            leaves.len(),
            self.local(),
            "Shards::sum: {} partials for {} local shards",
            leaves.len(),
            self.local()
        );
        tree_sum(&mut leaves);
        let mut total = leaves.swap_remove(0);
        if let Some(c) = &self.comm {
            across(c.as_ref(), &mut total);
        }
        total
    }

    /// `sum_f64` without allocating: `leaves` holds the local shards' partials one
    /// after another, `len` each; their sum over every shard of the job replaces the
    /// first, which is returned.
    pub fn sum_f64_in_place<'a>(&self, leaves: &'a mut [f64], len: usize) -> &'a mut [f64] {
        assert_eq!(
            leaves.len(),
            self.local() * len,
            "Shards::sum_f64_in_place: {} values for {} local shards of {len}",
            leaves.len(),
            self.local()
        );
        tree_sum_in_place(leaves, len);
        let total = &mut leaves[..len];
        if let Some(c) = &self.comm {
            c.sum_f64(total);
        }
        total
    }

    /// Whether `flag` is true on any rank (`flag` itself without a job).
    pub fn any(&self, flag: bool) -> bool {
        self.comm.as_ref().map_or(flag, |c| c.any(flag))
    }

    /// Accumulates parameter gradients over the local shards: `f(s, grads)` adds shard
    /// `s`'s part into `grads` (flat tensors). On a single shard `f` adds straight into
    /// `grads`, as a plain step does; otherwise each shard adds into zeroed tensors of
    /// its own, and their sum over every shard of the job is added into `grads`.
    pub fn accumulate(&self, grads: &mut [&mut [f32]], mut f: impl FnMut(usize, &mut [&mut [f32]])) {
        if self.is_single() {
            f(0, grads);
            return;
        }
        let lens: Vec<usize> = grads.iter().map(|g| g.len()).collect();
        let len: usize = lens.iter().sum();
        let leaves = (0..self.local())
            .map(|s| {
                let mut leaf = vec![0f32; len];
                let mut parts = split_lens(&mut leaf, &lens);
                f(s, &mut parts);
                leaf
            })
            .collect();
        let total = self.sum_f32(leaves);
        let mut at = 0;
        for g in grads.iter_mut() {
            let len = g.len();
            g.iter_mut().zip(&total[at..at + len]).for_each(|(a, &t)| *a += t);
            at += len;
        }
    }
}

/// `buf` cut into consecutive pieces of the lengths `lens`.
fn split_lens<'a>(mut buf: &'a mut [f32], lens: &[usize]) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(lens.len());
    for &l in lens {
        let (head, rest) = buf.split_at_mut(l);
        parts.push(head);
        buf = rest;
    }
    parts
}

/// Adds `parts` (all of one length) element by element into `parts[0]` in a fixed
/// pairwise tree: each level adds neighbours `2i` and `2i + 1` and carries an odd last
/// one up unchanged. Any `2^k` consecutive parts starting at a multiple of `2^k` form
/// a subtree, which is what lets a rank add its own shards before the others'.
pub fn tree_sum<T: Copy + std::ops::AddAssign>(parts: &mut Vec<Vec<T>>) {
    assert!(!parts.is_empty(), "tree_sum: nothing to add");
    while parts.len() > 1 {
        let mut level = Vec::with_capacity(parts.len().div_ceil(2));
        let mut it = std::mem::take(parts).into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                assert_eq!(a.len(), b.len(), "tree_sum: parts of different lengths");
                a.iter_mut().zip(&b).for_each(|(x, &y)| *x += y);
            }
            level.push(a);
        }
        *parts = level;
    }
}

/// `tree_sum` of the parts of length `len` that `buf` holds one after another, into
/// the first: the same pairs in the same order, without moving the parts.
pub fn tree_sum_in_place<T: Copy + std::ops::AddAssign>(buf: &mut [T], len: usize) {
    let parts = buf.len() / len.max(1);
    // At the level where the surviving parts are `stride` apart, part `i` (a multiple
    // of `2 stride`) takes its right neighbour `i + stride`, if there is one.
    let mut stride = 1;
    while stride < parts {
        for i in (0..parts).step_by(2 * stride).filter(|i| i + stride < parts) {
            let (left, right) = buf.split_at_mut((i + stride) * len);
            left[i * len..][..len].iter_mut().zip(&right[..len]).for_each(|(x, &y)| *x += y);
        }
        stride *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The property the reductions rest on: for `S` shards over `R` ranks with a power
    /// of two on each, adding each rank's subtree first and then the ranks' subtotals
    /// gives the bits of the tree over all `S`.
    #[test]
    fn a_ranks_shards_are_a_subtree() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for (total, ranks) in [(8, 1), (8, 2), (8, 4), (8, 8), (12, 3), (12, 6), (12, 12), (6, 3), (5, 5)] {
            let leaves: Vec<Vec<f32>> = (0..total)
                .map(|_| {
                    (0..50).map(|_| rng.random_range(-1e3f32..1e3) * 1.1f32.powi(rng.random_range(-40..40))).collect()
                })
                .collect();
            let mut whole = leaves.clone();
            tree_sum(&mut whole);
            let per = total / ranks;
            let mut nodes: Vec<Vec<f32>> = leaves
                .chunks(per)
                .map(|c| {
                    let mut c = c.to_vec();
                    tree_sum(&mut c);
                    c.swap_remove(0)
                })
                .collect();
            tree_sum(&mut nodes);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&nodes[0]), bits(&whole[0]), "{total} shards over {ranks} ranks");
        }
    }

    /// The order matters, so the test above is not vacuous: a left-to-right sum of
    /// the same values differs from the tree in some element.
    #[test]
    fn the_tree_is_not_a_left_to_right_sum() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let leaves: Vec<Vec<f32>> = (0..8).map(|_| (0..200).map(|_| rng.random_range(-1f32..1.0)).collect()).collect();
        let mut tree = leaves.clone();
        tree_sum(&mut tree);
        let mut serial = vec![0f32; 200];
        for l in &leaves {
            serial.iter_mut().zip(l).for_each(|(a, &b)| *a += b);
        }
        assert!(tree[0].iter().zip(&serial).any(|(a, b)| a != b));
    }

    /// The in-place tree adds the same pairs as `tree_sum`, for every number of parts.
    #[test]
    fn the_in_place_tree_is_the_tree() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for parts in 1..=13 {
            let leaves: Vec<Vec<f32>> = (0..parts)
                .map(|_| (0..7).map(|_| rng.random_range(-1f32..1.0) * 1e3f32.powi(rng.random_range(-2..3))).collect())
                .collect();
            let mut tree = leaves.clone();
            tree_sum(&mut tree);
            let mut flat: Vec<f32> = leaves.concat();
            tree_sum_in_place(&mut flat, 7);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&flat[..7]), bits(&tree[0]), "{parts} parts");
        }
    }

    #[test]
    fn single_shard_accumulates_in_place() {
        let shards = Shards::single();
        let mut g = vec![1f32, 2.0];
        shards.accumulate(&mut [&mut g], |s, grads| {
            assert_eq!(s, 0);
            grads[0][0] += 0.5;
        });
        assert_eq!(g, [1.5, 2.0]);
        let four = Shards::new(4, None);
        let mut g = vec![1f32, 0.0, 0.0];
        let (mut a, mut b) = g.split_at_mut(1);
        four.accumulate(&mut [&mut a, &mut b], |s, grads| {
            grads[0][0] += s as f32;
            grads[1][1] += 1.0;
        });
        assert_eq!(g, [7.0, 0.0, 4.0]);
    }
}
