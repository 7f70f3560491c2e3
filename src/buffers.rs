//! Recycled storage for the tensors of a training step, so that a step allocates
//! nothing once the first few have run.
//!
//! A step makes the same tensors every time (the same shapes in the same order), and
//! each lives for part of the step: a layer's output until the next layer caches it,
//! a gradient until the layer below has used it. `take` gives a tensor the storage of
//! one given back with `give` whose length is exactly the one asked for, and only
//! allocates when there is none; after a step or two every length a step needs is on
//! hand. A tensor that is dropped instead of given back is simply freed: the pool is
//! an economy, never a requirement, and the counting-allocator test
//! (`tests/allocations.rs`) is what shows that a step gives back all it takes.
//!
//! The pool keeps at most `MAX_BUFFERS` buffers and `MAX_BYTES` bytes, dropping the
//! oldest first, so that the tensors of a large evaluation batch do not stay
//! allocated for the rest of a run.

use std::sync::Mutex;

use ndarray::{Array, ArrayBase, Data, Dimension, ShapeBuilder};

/// The buffers the pool keeps at most (a CIFAR-10 step gives back about a hundred).
const MAX_BUFFERS: usize = 512;

/// The bytes the pool keeps at most.
const MAX_BYTES: usize = 1 << 30;

struct Pool {
    /// Free buffers, oldest first.
    free: Vec<Vec<f32>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { free: Vec::new(), bytes: 0 });

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // A panic elsewhere while the lock was held cannot leave the list inconsistent
    // (every change is a single push or remove), so a poisoned lock is still usable.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A buffer of exactly `len` floats: the newest given back of that length, or a new
/// one (zeros) if there is none. Its contents are whatever it last held.
fn take_vec(len: usize) -> Vec<f32> {
    let mut p = pool();
    match p.free.iter().rposition(|b| b.len() == len) {
        Some(i) => {
            let buf = p.free.remove(i);
            p.bytes -= buf.len() * 4;
            buf
        }
        None => {
            drop(p);
            vec![0.0; len]
        }
    }
}

/// A tensor of `shape` whose contents are unspecified (the caller overwrites every
/// element).
pub fn take<Sh: ShapeBuilder>(shape: Sh) -> Array<f32, Sh::Dim> {
    let shape = shape.into_shape_with_order();
    let len = shape.raw_dim().size();
    Array::from_shape_vec(shape, take_vec(len)).expect("a buffer of the shape's length")
}

/// A tensor of `shape` filled with zeros.
pub fn zeros<Sh: ShapeBuilder>(shape: Sh) -> Array<f32, Sh::Dim> {
    let mut a = take(shape);
    a.fill(0.0);
    a
}

/// A copy of `a` in standard layout.
pub fn copy<S: Data<Elem = f32>, D: Dimension>(a: &ArrayBase<S, D>) -> Array<f32, D> {
    let mut out = take(a.raw_dim());
    out.assign(a);
    out
}

/// Gives `a`'s storage back for a later `take` of its length.
pub fn give<D: Dimension>(a: Array<f32, D>) {
    // An array that views part of its storage (a slice made owned) gives back the
    // whole vector: its length is what a later `take` matches.
    let (buf, _) = a.into_raw_vec_and_offset();
    if buf.is_empty() {
        return;
    }
    let mut p = pool();
    if p.free.capacity() == 0 {
        p.free.reserve_exact(MAX_BUFFERS);
    }
    p.bytes += buf.len() * 4;
    p.free.push(buf);
    while p.free.len() > MAX_BUFFERS || p.bytes > MAX_BYTES {
        let old = p.free.remove(0);
        p.bytes -= old.len() * 4;
    }
}

/// Frees every buffer the pool keeps.
pub fn clear() {
    let mut p = pool();
    p.free.clear();
    p.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer given back is the one a `take` of its length gets, and another length
    /// gets a new one. (The pool is shared by every test of the process, so this test
    /// only looks at lengths no other test uses.)
    #[test]
    fn take_reuses_what_give_returned() {
        let a = zeros((3, 7919));
        let ptr = a.as_ptr();
        give(a);
        let b: Array<f32, _> = take((7919, 3));
        assert_eq!(b.as_ptr(), ptr, "the same storage");
        let c: Array<f32, _> = take((1, 7919));
        assert_ne!(c.as_ptr(), ptr, "another length, other storage");
        let mut z = zeros(ndarray::IxDyn(&[7919, 3]));
        assert!(z.iter().all(|&v| v == 0.0));
        z.fill(5.0);
        give(z);
        assert!(zeros((3, 7919)).iter().all(|&v| v == 0.0), "zeros clears a recycled buffer");
    }
}
