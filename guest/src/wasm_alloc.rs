//! The component's allocator: size classes with free lists, on top of the
//! system allocator (wasi-libc's dlmalloc).
//!
//! The policy makes many small, short-lived allocations (strings, map
//! nodes). Under wasmtime, dlmalloc's bookkeeping was about 29 % of a run.
//! Here a small block costs a free-list pop or a bump, and a free a push.
//! Every `generate` runs in a fresh instance, so memory is never handed
//! back: a freed block is reused only by its own size class. That bounds
//! the waste at the rounding to a power of two plus one partly used chunk
//! per class, unlike a pure bump allocator, which would grow with every
//! temporary string and outrun the host's memory cap on large clouds.
//!
//! Compiled for wasm32 only: natively the library leaves the choice of
//! allocator to the program that links it.
//!
//! The `wasi:cli/run` entry (`command`) turns it off with [`system_only`]:
//! the canonical ABI hands wasi-libc the buffers of `read` through
//! `cabi_realloc`, which Rust serves from this allocator, and wasi-libc gives
//! them back with its own `free`. A size-class block there corrupts
//! dlmalloc, so that path must use dlmalloc throughout.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`system_only`]; every allocation then goes to `System`.
static SYSTEM_ONLY: AtomicBool = AtomicBool::new(false);

/// Sends every allocation from now on to the system allocator. Must run
/// before this allocator hands out its first block: a block allocated here
/// and freed by `System` (or the other way round) corrupts both.
pub fn system_only() {
    SYSTEM_ONLY.store(true, Ordering::Relaxed);
}

/// Block sizes: powers of two and the halfway points between them (8, 16,
/// 24, 32, 48, 64, 96, ... 4096), so rounding up wastes at most a third of
/// a block; powers of two alone would add about half again to the live
/// data of a large run. Larger blocks, or more aligned than `ALIGN`, go to
/// the system allocator.
const MAX_SMALL: usize = 4096;
const CLASSES: usize = 18;
/// Every class size from 16 up that is a multiple of 16 gives 16-aligned
/// blocks; see `class_align`.
const ALIGN: usize = 16;
/// Small blocks are carved out of chunks of this size: large enough that
/// growing the linear memory is rare, small enough that a tiny run stays
/// tiny.
const CHUNK: usize = 256 * 1024;

struct State {
    /// Head of each class's free list; a free block holds the next pointer.
    free: [*mut u8; CLASSES],
    /// The part of the current chunk not handed out yet.
    bump: *mut u8,
    end: *mut u8,
}

pub struct SizeClasses(UnsafeCell<State>);

// SAFETY: wasm32-wasip2 components have a single thread (no `atomics`
// target feature, no thread spawning), so the state is never shared.
#[cfg(not(target_feature = "atomics"))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses(UnsafeCell::new(State {
            free: [ptr::null_mut(); CLASSES],
            bump: ptr::null_mut(),
            end: ptr::null_mut(),
        }))
    }
}

/// The class of a layout, or `None` for the system allocator.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > ALIGN || SYSTEM_ONLY.load(Ordering::Relaxed) {
        return None;
    }
    // A multiple of the alignment, so the class's blocks are aligned enough
    // (see `class_align`).
    let a = layout.align();
    let size = (layout.size().max(8) + a - 1) & !(a - 1);
    if size <= 16 {
        return Some(usize::from(size > 8));
    }
    // 2^p < size <= 2^(p+1), p >= 4: classes 1.5 * 2^p and 2^(p+1).
    let p = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let over_half = size > (3 << (p - 1));
    Some(2 * (p - 4) + 2 + usize::from(over_half))
}

fn class_size(c: usize) -> usize {
    match c {
        0 => 8,
        1 => 16,
        _ => {
            let p = (c - 2) / 2 + 4;
            if c.is_multiple_of(2) {
                3 << (p - 1)
            } else {
                1 << (p + 1)
            }
        }
    }
}

/// Blocks are aligned to the largest power of two dividing their size, up
/// to `ALIGN`: 8 for 8 and 24, 16 for the rest.
fn class_align(c: usize) -> usize {
    1 << class_size(c).trailing_zeros().min(ALIGN.trailing_zeros())
}

impl State {
    /// # Safety
    /// Single-threaded use only (see `Sync` above).
    unsafe fn alloc(&mut self, c: usize) -> *mut u8 {
        let head = self.free[c];
        if !head.is_null() {
            // SAFETY: a free block starts with the next free block's address,
            // written by `dealloc`; blocks are at least 8-aligned.
            self.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(c);
        let align = class_align(c);
        let mut start = self.bump.wrapping_add(self.bump.align_offset(align));
        if self.bump.is_null() || (self.end as usize).saturating_sub(start as usize) < size {
            // The rest of the old chunk is abandoned (at most one block's worth
            // of the largest class).
            // SAFETY: CHUNK and ALIGN make a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            start = chunk;
            self.end = chunk.wrapping_add(CHUNK);
        }
        self.bump = start.wrapping_add(size);
        start
    }

    /// # Safety
    /// `p` was returned by `alloc(c)` and is not used afterwards.
    unsafe fn dealloc(&mut self, p: *mut u8, c: usize) {
        // SAFETY: the block is at least 8 bytes and 8-aligned, and now unused.
        unsafe { p.cast::<*mut u8>().write(self.free[c]) };
        self.free[c] = p;
    }
}

// SAFETY: blocks of class `c` are `class_size(c)` bytes, at least as large
// as and aligned like the layouts mapped to `c`; a block is on a free list
// only between `dealloc` and the next `alloc`; everything else is System's.
unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            // SAFETY: single-threaded (see `Sync`).
            Some(c) => unsafe { (*self.0.get()).alloc(c) },
            // SAFETY: forwarded as is.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: `p` came from `alloc` with the same layout, so class `c`.
            Some(c) => unsafe { (*self.0.get()).dealloc(p, c) },
            // SAFETY: forwarded as is.
            None => unsafe { System.dealloc(p, layout) },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc` guarantees a valid new layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            // Still fits its block: strings and vectors growing by a little.
            (Some(a), Some(b)) if a == b => p,
            // SAFETY: both are System's; forwarded as is.
            (None, None) => unsafe { System.realloc(p, layout, new_size) },
            _ => {
                // SAFETY: `new` is valid; `p` holds `layout.size()` bytes, the
                // new block at least `new_size`; they do not overlap.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                    q
                }
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: SizeClasses = SizeClasses::new();
