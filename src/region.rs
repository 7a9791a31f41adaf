//! A byte region — a shared mapping in production, a heap block for tests,
//! proptest and fuzzing — and all offset→pointer arithmetic over it.
//!
//! Every accessor checks `offset + size <= len` and alignment and returns
//! `None` otherwise, so a position or length read from shared memory can
//! never turn into an out-of-bounds access: callers turn `None` into
//! [`Error::Corrupted`](crate::Error::Corrupted). Most of the crate's
//! `unsafe` lives in this file.
//!
//! Under `cfg(loom)` the region is a set of loom objects instead of bytes: an
//! atomic per aligned 8-byte word, an atomic per aligned 4-byte word and an
//! `UnsafeCell` per 8-byte word for plain byte copies. The protocols never
//! use one offset at two widths, and a byte copy and an atomic at the same
//! offset are ordered by the protocol, so the model stays faithful; loom
//! checks the plain copies for data races.

#[cfg(not(loom))]
pub(crate) use std_region::Region;

/// The 8-byte atomic at `off`, or [`Error::Corrupted`](crate::Error) if a
/// position read from shared memory led outside the region.
#[inline(always)]
pub(crate) fn word(r: &Region, off: usize) -> crate::error::Result<&crate::sync::AtomicU64> {
    match r.u64_at(off) {
        Some(w) => Ok(w),
        None => Err(crate::error::corrupt(format!(
            "word at {off} outside the segment"
        ))),
    }
}

#[cfg(loom)]
pub(crate) use loom_region::Region;

/// Whether `[off, off + size)` lies inside `len` and `off` is a multiple of
/// `align`.
#[inline(always)]
fn in_bounds(len: usize, off: usize, size: usize, align: usize) -> bool {
    off % align == 0 && off.checked_add(size).is_some_and(|end| end <= len)
}

#[cfg(not(loom))]
mod std_region {
    use super::in_bounds;
    use crate::sync::{AtomicU32, AtomicU64};
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;

    /// Alignment of heap regions: one cache-line pair, like a mapping's.
    #[cfg_attr(not(test), allow(dead_code))]
    const HEAP_ALIGN: usize = 128;

    enum Backing {
        /// Kept for its Drop (munmap).
        Map(#[allow(dead_code)] memmap2::MmapRaw),
        #[cfg_attr(not(test), allow(dead_code))]
        Heap(Layout),
    }

    /// A contiguous byte region that outlives every reference handed out.
    pub(crate) struct Region {
        ptr: NonNull<u8>,
        len: usize,
        backing: Backing,
    }

    // SAFETY: the region is plain memory; all shared access goes through
    // atomics or through `unsafe` accessors whose callers uphold the
    // protocols' exclusivity. Nothing in it is tied to a thread.
    unsafe impl Send for Region {}
    // SAFETY: as above: `&Region` only hands out atomics (Sync) and copies.
    unsafe impl Sync for Region {}

    impl std::fmt::Debug for Region {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Region").field("len", &self.len).finish()
        }
    }

    impl Region {
        /// A zeroed heap region of `len` bytes (`len > 0`).
        pub(crate) fn heap(len: usize) -> Region {
            let len = len.max(8);
            let layout = Layout::from_size_align(len, HEAP_ALIGN).expect("region size overflows");
            // SAFETY: `layout` has a non-zero size (`len >= 8`).
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            let Some(ptr) = NonNull::new(raw) else {
                alloc::handle_alloc_error(layout)
            };
            Region {
                ptr,
                len,
                backing: Backing::Heap(layout),
            }
        }

        /// Wrap a shared mapping.
        pub(crate) fn from_map(map: memmap2::MmapRaw) -> Region {
            let len = map.len();
            let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap returned a null pointer");
            Region {
                ptr,
                len,
                backing: Backing::Map(map),
            }
        }

        /// Length in bytes.
        #[allow(dead_code)]
        pub(crate) fn len(&self) -> usize {
            self.len
        }

        /// The 8-byte atomic at `off`, if `off` is 8-aligned and in bounds.
        #[inline]
        pub(crate) fn u64_at(&self, off: usize) -> Option<&AtomicU64> {
            if !in_bounds(self.len, off, 8, 8) {
                return None;
            }
            // SAFETY: `off + 8 <= len` and `off` is 8-aligned (checked
            // above; the base is at least 128-aligned), so the pointer is
            // valid and aligned for an AtomicU64 for the lifetime of `self`.
            // Shared memory is only ever accessed atomically at this offset
            // while other accesses could race (the protocols' invariant).
            Some(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().wrapping_add(off).cast()) })
        }

        /// The 4-byte atomic at `off`, if `off` is 4-aligned and in bounds.
        #[inline]
        pub(crate) fn u32_at(&self, off: usize) -> Option<&AtomicU32> {
            if !in_bounds(self.len, off, 4, 4) {
                return None;
            }
            // SAFETY: `off + 4 <= len` and `off` is 4-aligned (checked
            // above), so the pointer is valid and aligned for an AtomicU32.
            Some(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().wrapping_add(off).cast()) })
        }

        /// Hint the CPU to fetch the cache line holding `off` (no effect if
        /// `off` is outside the region). A hint only: it reads nothing into
        /// the program and cannot fault.
        #[inline(always)]
        pub(crate) fn prefetch(&self, off: usize) {
            if off >= self.len {
                return;
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `_mm_prefetch` is a hint that never faults and reads
            // nothing into the program; the address is inside the region
            // (checked above) anyway.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    self.ptr.as_ptr().wrapping_add(off).cast::<i8>(),
                )
            };
        }

        /// Copy `src` into the region at `off`.
        #[inline]
        pub(crate) fn write(&self, off: usize, src: &[u8]) -> Option<()> {
            if !in_bounds(self.len, off, src.len(), 1) {
                return None;
            }
            // SAFETY: the destination `[off, off + src.len())` is inside the
            // region (checked above) and cannot overlap `src`, a Rust slice
            // the caller owns. The protocols give the caller exclusive use
            // of these bytes (only a hostile peer could race with us, which
            // changes bytes, never bounds).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.ptr.as_ptr().wrapping_add(off),
                    src.len(),
                )
            };
            Some(())
        }

        /// Copy from the region at `off` into `dst`.
        #[inline]
        pub(crate) fn read(&self, off: usize, dst: &mut [u8]) -> Option<()> {
            if !in_bounds(self.len, off, dst.len(), 1) {
                return None;
            }
            // SAFETY: the source is inside the region (checked above) and
            // cannot overlap `dst`, an exclusive Rust slice.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.ptr.as_ptr().wrapping_add(off),
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            };
            Some(())
        }

        /// Fill `[off, off + len)` with zeroes.
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) fn zero(&self, off: usize, len: usize) -> Option<()> {
            if !in_bounds(self.len, off, len, 1) {
                return None;
            }
            // SAFETY: the range is inside the region (checked above).
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().wrapping_add(off), 0, len) };
            Some(())
        }

        /// Borrow `[off, off + len)` for reading.
        ///
        /// # Safety
        ///
        /// For the lifetime of the slice, no correct peer may write these
        /// bytes: the caller holds them by the ring protocol (a committed,
        /// not yet released frame).
        #[inline]
        pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> Option<&[u8]> {
            if !in_bounds(self.len, off, len, 1) {
                return None;
            }
            // SAFETY: in bounds (checked above); exclusivity is the caller's
            // contract (see `# Safety`).
            Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().wrapping_add(off), len) })
        }

        /// Borrow `[off, off + len)` for writing.
        ///
        /// # Safety
        ///
        /// For the lifetime of the slice, nobody else may read or write these
        /// bytes: the caller holds them by the ring protocol (claimed, not
        /// yet committed space).
        #[inline]
        #[allow(clippy::mut_from_ref)]
        pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> Option<&mut [u8]> {
            if !in_bounds(self.len, off, len, 1) {
                return None;
            }
            // SAFETY: in bounds (checked above); exclusivity is the caller's
            // contract (see `# Safety`).
            Some(unsafe {
                std::slice::from_raw_parts_mut(self.ptr.as_ptr().wrapping_add(off), len)
            })
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            if let Backing::Heap(layout) = self.backing {
                // SAFETY: `ptr` came from `alloc_zeroed(layout)` in `heap`
                // and is freed once, here.
                unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
            }
            // A mapping is unmapped by MmapRaw's own Drop.
        }
    }
}

#[cfg(loom)]
mod loom_region {
    use super::in_bounds;
    use crate::sync::{AtomicU32, AtomicU64, UnsafeCell};

    /// The loom model of a region (see the module docs).
    pub(crate) struct Region {
        len: usize,
        u64s: Box<[AtomicU64]>,
        u32s: Box<[AtomicU32]>,
        cells: Box<[UnsafeCell<[u8; 8]>]>,
        /// The kernel's futex hash-bucket lock and queue, for `wait.rs`.
        pub(crate) futex: loom::sync::Mutex<()>,
        pub(crate) futex_cv: loom::sync::Condvar,
    }

    impl std::fmt::Debug for Region {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Region").field("len", &self.len).finish()
        }
    }

    impl Region {
        pub(crate) fn heap(len: usize) -> Region {
            let len = len.div_ceil(8) * 8;
            Region {
                len,
                u64s: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
                u32s: (0..len / 4).map(|_| AtomicU32::new(0)).collect(),
                cells: (0..len / 8).map(|_| UnsafeCell::new([0; 8])).collect(),
                futex: loom::sync::Mutex::new(()),
                futex_cv: loom::sync::Condvar::new(),
            }
        }
        pub(crate) fn len(&self) -> usize {
            self.len
        }
        pub(crate) fn u64_at(&self, off: usize) -> Option<&AtomicU64> {
            in_bounds(self.len, off, 8, 8).then(|| &self.u64s[off / 8])
        }
        pub(crate) fn u32_at(&self, off: usize) -> Option<&AtomicU32> {
            in_bounds(self.len, off, 4, 4).then(|| &self.u32s[off / 4])
        }
        pub(crate) fn write(&self, off: usize, src: &[u8]) -> Option<()> {
            if !in_bounds(self.len, off, src.len(), 1) {
                return None;
            }
            for (i, b) in src.iter().enumerate() {
                let at = off + i;
                // SAFETY: loom checks this access for races; the pointer is
                // to a live `[u8; 8]` and `at % 8 < 8`.
                self.cells[at / 8].with_mut(|p| unsafe { (*p)[at % 8] = *b });
            }
            Some(())
        }
        pub(crate) fn read(&self, off: usize, dst: &mut [u8]) -> Option<()> {
            if !in_bounds(self.len, off, dst.len(), 1) {
                return None;
            }
            for (i, b) in dst.iter_mut().enumerate() {
                let at = off + i;
                // SAFETY: loom checks this access for races; the pointer is
                // to a live `[u8; 8]` and `at % 8 < 8`.
                *b = self.cells[at / 8].with(|p| unsafe { (*p)[at % 8] });
            }
            Some(())
        }
        pub(crate) fn prefetch(&self, _off: usize) {}
        pub(crate) fn zero(&self, off: usize, len: usize) -> Option<()> {
            if !in_bounds(self.len, off, len, 1) {
                return None;
            }
            for at in off..off + len {
                // SAFETY: as in `write`.
                self.cells[at / 8].with_mut(|p| unsafe { (*p)[at % 8] = 0 });
            }
            Some(())
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering;

    #[test]
    fn accessors_refuse_out_of_bounds_and_misaligned() {
        let r = Region::heap(64);
        assert!(r.u64_at(56).is_some());
        assert!(r.u64_at(57).is_none(), "misaligned");
        assert!(r.u64_at(64).is_none(), "past the end");
        assert!(r.u64_at(usize::MAX - 7).is_none(), "overflowing offset");
        assert!(r.u32_at(60).is_some());
        assert!(r.u32_at(62).is_none());
        assert!(r.write(60, &[1, 2, 3, 4]).is_some());
        assert!(r.write(61, &[1, 2, 3, 4]).is_none());
        let mut buf = [0u8; 5];
        assert!(r.read(60, &mut buf).is_none());
        assert!(r.read(usize::MAX, &mut buf[..0]).is_none());
        // SAFETY: nobody else uses this heap region.
        assert!(unsafe { r.slice(0, 65) }.is_none());
    }

    #[test]
    fn atomics_and_bytes_see_the_same_memory() {
        let r = Region::heap(64);
        r.u64_at(8)
            .unwrap()
            .store(0x0102_0304_0506_0708, Ordering::Relaxed);
        let mut b = [0u8; 8];
        r.read(8, &mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 0x0102_0304_0506_0708);
        r.zero(8, 8).unwrap();
        assert_eq!(r.u64_at(8).unwrap().load(Ordering::Relaxed), 0);
    }
}
