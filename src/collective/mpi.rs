//! The ranks of an MPI job (`mpirun -np R infogan train ...`, or Slurm's `srun`),
//! through rsmpi, behind the cargo feature `mpi`.
//!
//! Every sum is deterministic and the same on every rank: the ranks' vectors are
//! exchanged whole and each rank adds them itself in `tree_sum`'s order, never by
//! MPI's own reduction, whose order the library chooses. A long vector is added in
//! pieces: rank `j` receives every rank's piece `j` (all-to-all), adds them, and the
//! sums are gathered back (all-gather): `2 (R - 1) / R` of its bytes in and out per
//! rank, as a ring all-reduce moves. A short one is gathered whole (one round).
//!
//! A watchdog bounds every wait: a collective that does not complete within its
//! patience means a rank has died or hangs, and this process says so and exits,
//! which makes the launcher stop the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence};

use super::{Comm, tree_sum};
use crate::error::{Error, Result};

/// Vectors up to this many elements in all ranks together are gathered whole.
const GATHER_WHOLE: usize = 1 << 14;

/// The exit status of a rank that gave up waiting for the others.
pub const EXIT_LOST_RANK: i32 = 3;

pub struct MpiComm {
    /// Dropping it finalises MPI.
    _universe: mpi::environment::Universe,
    world: mpi::topology::SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Held for every MPI call, so that calls never overlap (MPI was initialised for
    /// serialised calls); with the time spent in them and their count.
    calls: Mutex<(Duration, u64)>,
    watch: Arc<Watch>,
}

// SAFETY: the communicator is a handle that MPI lets any thread use as long as calls
// do not overlap (`Threading::Serialized`, checked at initialisation); every call
// goes through `collective`, which holds the `calls` mutex for its whole length. The
// watchdog thread never calls MPI.
unsafe impl Send for MpiComm {}
// SAFETY: as for Send: shared references only reach MPI through `collective`.
unsafe impl Sync for MpiComm {}

/// What the watchdog watches: the collective in progress, since when, and for how long
/// it may wait.
struct Watch {
    current: Mutex<Option<(Instant, Duration, String)>>,
    rank: usize,
    stop: AtomicBool,
}

impl MpiComm {
    /// MPI's world, when this process was started by a launcher
    /// (`super::launched`); `None` otherwise.
    pub fn from_launcher() -> Result<Option<MpiComm>> {
        if !super::launched() {
            return Ok(None);
        }
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Invalid("MPI could not be initialised (was it initialised twice?)".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(Error::Invalid(format!(
                "the MPI library offers only {threading:?} threading; infogan needs Serialized (a library built with \
                 thread support, as Debian's Open MPI and MPICH are)"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let watch = Arc::new(Watch { current: Mutex::new(None), rank, stop: AtomicBool::new(false) });
        let watched = watch.clone();
        std::thread::Builder::new()
            .name("mpi-watchdog".into())
            .spawn(move || watchdog(&watched))
            .map_err(|e| Error::Invalid(format!("cannot start the MPI watchdog thread: {e}")))?;
        Ok(Some(MpiComm { _universe: universe, world, rank, size, calls: Mutex::new((Duration::ZERO, 0)), watch }))
    }

    /// Runs the MPI call `f` as collective `what`, watched for `patience`.
    fn collective<T>(
        &self,
        what: &str,
        patience: Duration,
        f: impl FnOnce(&mpi::topology::SimpleCommunicator) -> T,
    ) -> T {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        *self.watch.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((started, patience, what.to_string()));
        let out = f(&self.world);
        *self.watch.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        calls.0 += started.elapsed();
        calls.1 += 1;
        out
    }

    /// `node` replaced by the ranks' nodes added in `tree_sum`'s order (module doc).
    fn sum<T: Equivalence + Copy + Default + std::ops::AddAssign>(&self, node: &mut [T], patience: Duration) {
        let (r, len) = (self.size, node.len());
        if r == 1 || len == 0 {
            return;
        }
        if len * r <= GATHER_WHOLE {
            let mut all = vec![T::default(); len * r];
            self.collective("a sum over the ranks", patience, |w| w.all_gather_into(&node[..], &mut all[..]));
            let mut parts: Vec<Vec<T>> = all.chunks_exact(len).map(<[T]>::to_vec).collect();
            tree_sum(&mut parts);
            node.copy_from_slice(&parts[0]);
            return;
        }
        let piece = |j: usize| j * len / r..(j + 1) * len / r;
        let counts: Vec<mpi::Count> = (0..r).map(|j| piece(j).len() as mpi::Count).collect();
        let displs: Vec<mpi::Count> = (0..r).map(|j| piece(j).start as mpi::Count).collect();
        let mine = piece(self.rank).len();
        let mut received = vec![T::default(); mine * r];
        let received_counts = vec![mine as mpi::Count; r];
        let received_displs: Vec<mpi::Count> = (0..r).map(|j| (j * mine) as mpi::Count).collect();
        self.collective("a gradient sum over the ranks (all-to-all)", patience, |w| {
            let send = Partition::new(&node[..], &counts[..], &displs[..]);
            let mut recv = PartitionMut::new(&mut received[..], &received_counts[..], &received_displs[..]);
            w.all_to_all_varcount_into(&send, &mut recv);
        });
        let mut parts: Vec<Vec<T>> = received.chunks_exact(mine.max(1)).map(<[T]>::to_vec).collect();
        parts.resize(r, Vec::new());
        tree_sum(&mut parts);
        let sum = std::mem::take(&mut parts[0]);
        self.collective("a gradient sum over the ranks (all-gather)", patience, |w| {
            let mut all = PartitionMut::new(node, &counts[..], &displs[..]);
            w.all_gather_varcount_into(&sum[..], &mut all);
        });
    }
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        self.watch.stop.store(true, Ordering::SeqCst);
    }
}

/// Checks once a second whether a collective has waited past its patience; if so,
/// reports it and ends the process (the launcher then stops the other ranks).
fn watchdog(watch: &Watch) {
    while !watch.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        let current = watch.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((since, patience, what)) = current
            && since.elapsed() > patience
        {
            eprintln!(
                "infogan: rank {}: waited {} s for the other ranks in {what} without an answer: a rank has died or \
                 hangs. This rank stops (exit status {EXIT_LOST_RANK}), and the launcher stops the job; continue with \
                 --resume from the last checkpoint. (--rank-timeout sets how long a step may wait.)",
                watch.rank,
                since.elapsed().as_secs()
            );
            // SAFETY: _exit ends the process at once, without running destructors or
            // atexit handlers that could wait on the MPI call in progress.
            unsafe { libc::_exit(EXIT_LOST_RANK) };
        }
    }
}

/// A step's collectives wait at most this long unless set (`--rank-timeout`).
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(120);

/// The patience of `Comm::sum_*` and `any`, the collectives of a step: set once at
/// start (`set_step_patience`).
static STEP_PATIENCE: Mutex<Duration> = Mutex::new(DEFAULT_PATIENCE);

/// Sets how long a step's collectives may wait for the other ranks.
pub fn set_step_patience(patience: Duration) {
    *STEP_PATIENCE.lock().unwrap_or_else(|e| e.into_inner()) = patience;
}

fn step_patience() -> Duration {
    *STEP_PATIENCE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, node: &mut [f32]) {
        self.sum(node, step_patience());
    }

    fn sum_f64(&self, node: &mut [f64]) {
        self.sum(node, step_patience());
    }

    fn any(&self, flag: bool) -> bool {
        let mut all = vec![0i32; self.size];
        self.collective("the stop check", step_patience(), |w| w.all_gather_into(&(flag as i32), &mut all[..]));
        all.iter().any(|&f| f != 0)
    }

    fn wait_for_rank_zero(&self, what: &str) {
        let patience = if self.rank == 0 { step_patience() } else { super::RANK_ZERO_PATIENCE };
        self.collective(what, patience, |w| w.barrier());
    }

    fn time_spent(&self) -> (Duration, u64) {
        *self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}
