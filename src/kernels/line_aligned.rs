//! The program's global allocator: the system's, with every block of 64 KiB or more
//! starting on a cache line.
//!
//! glibc's malloc aligns to 16 bytes, so every row of a large matrix whose rows are a
//! whole number of lines long (a weight gradient, an im2col matrix) would start 16
//! bytes into a line, and each 64-byte vector that the kernels load or store would
//! straddle two lines. Line-aligned, those vectors cover whole lines, and C's lines
//! can be written with non-temporal stores (`MicroKernel::tile`'s `stream`), which need
//! whole aligned lines. Measured with `infogan bench --dataset cifar10 --profile`, 2
//! threads, AVX-512, three alternated runs: the im2col/col2im phase took 26.5-27.0 ms
//! a step against 29.7-30.6 with the system's alignment. Small blocks keep the
//! system's alignment: the padding would cost more than it gives.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks from this size on are aligned to a cache line.
const LARGE: usize = 64 << 10;

/// A cache line.
const LINE: usize = 64;

/// `System`, with large blocks aligned to a cache line (`#[global_allocator]` in the
/// binary and the GEMM bench).
pub struct LineAligned;

/// The layout a block is allocated with: the one asked for, or, for a large block, the
/// same size aligned to at least a line. A function of the asked layout alone, so that
/// `dealloc` frees a block with the layout it was allocated with.
fn widened(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < LINE {
        // A power of two no larger than a size that already fits: always valid.
        Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method forwards to `System` with `widened(layout)`, which has the
// size asked for and at least the alignment asked for, so the blocks meet the
// callers' layouts; a block is always freed or resized with the widened layout it
// was allocated with, since `widened` depends only on the layout the caller passes,
// which GlobalAlloc's contract makes the same for a block's allocation and its
// deallocation.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout has a non-zero size, and so has the widened one.
        unsafe { System.alloc(widened(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(widened(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`, so by System
        // with `widened(layout)`.
        unsafe { System.dealloc(ptr, widened(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc::realloc's contract makes `new_size`, rounded up to the
        // alignment, a valid layout size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old, new) = (widened(layout), widened(new_layout));
        if old.align() == new.align() {
            // SAFETY: `ptr` is System's block of layout `old`; the size is valid.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Crossing LARGE changes the alignment, which realloc keeps: move the block.
        // SAFETY: `new` has a non-zero size.
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size and are distinct;
            // `ptr` is then freed with the layout it was allocated with.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_line_aligned_and_small_ones_keep_their_layout() {
        let large = Layout::from_size_align(LARGE, 4).unwrap();
        assert_eq!(widened(large).align(), LINE);
        assert_eq!(widened(large).size(), LARGE);
        let small = Layout::from_size_align(LARGE - 1, 4).unwrap();
        assert_eq!(widened(small), small);
        let page = Layout::from_size_align(LARGE, 4096).unwrap();
        assert_eq!(widened(page), page, "a stricter alignment is kept");
    }

    #[test]
    fn blocks_keep_their_contents_across_resizes_that_cross_the_threshold() {
        let alloc = LineAligned;
        let layout = Layout::from_size_align(1000, 4).unwrap();
        // SAFETY: each block is used within the size it was last given and freed
        // once, with the layout of its last size.
        unsafe {
            let p = alloc.alloc(layout);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            let grown = alloc.realloc(p, layout, 3 * LARGE);
            assert!(!grown.is_null());
            assert_eq!(grown.addr() % LINE, 0, "grown past LARGE, the block is line-aligned");
            assert!((0..1000).all(|i| *grown.add(i) == (i % 251) as u8), "contents kept when growing");
            let large = Layout::from_size_align(3 * LARGE, 4).unwrap();
            let shrunk = alloc.realloc(grown, large, 500);
            assert!(!shrunk.is_null());
            assert!((0..500).all(|i| *shrunk.add(i) == (i % 251) as u8), "contents kept when shrinking");
            alloc.dealloc(shrunk, Layout::from_size_align(500, 4).unwrap());
            let zeroed = alloc.alloc_zeroed(large);
            assert_eq!(zeroed.addr() % LINE, 0);
            assert!((0..3 * LARGE).all(|i| *zeroed.add(i) == 0));
            alloc.dealloc(zeroed, large);
        }
    }
}
