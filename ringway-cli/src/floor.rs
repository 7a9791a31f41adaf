//! The yardsticks ringway is measured against, hand-written here so that
//! every bench run measures them on the same machine:
//!
//! - a minimal spinning SPSC ring of fixed-size slots in shared memory (the
//!   throughput and latency floor of any shared-memory ring), with indices on
//!   separate 128-byte lines and cached opposite indices, as rtrb does;
//! - one cache line bounced between two processes (the latency floor).
//!
//! They use raw atomics over an mmap on purpose (they are not ringway).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the floor ring's control block: tail line, head line.
const CTRL: usize = 256;

/// Shared-memory size for a floor ring of `slots` slots of `slot` bytes.
pub(crate) fn ring_bytes(slots: usize, slot: usize) -> usize {
    CTRL + slots * slot
}

/// One end of the floor ring over a mapping at `base`.
pub(crate) struct FloorRing {
    base: *mut u8,
    slots: u64,
    slot: usize,
    /// Our own position (tail for the producer, head for the consumer).
    pos: u64,
    /// The other side's position, as last read.
    other: u64,
}

impl FloorRing {
    /// # Safety
    ///
    /// `base` points to `ring_bytes(slots, slot)` bytes of zero-initialised
    /// shared memory, 128-aligned, mapped for the life of the value;
    /// `slots` is a power of two.
    pub(crate) unsafe fn new(base: *mut u8, slots: usize, slot: usize) -> FloorRing {
        FloorRing {
            base,
            slots: slots as u64,
            slot,
            pos: 0,
            other: 0,
        }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of the control block, 8-aligned, in the mapping.
        unsafe { AtomicU64::from_ptr(self.base.cast()) }
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: offset 128 of the control block, 8-aligned, in the mapping.
        unsafe { AtomicU64::from_ptr(self.base.wrapping_add(128).cast()) }
    }

    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        self.base
            .wrapping_add(CTRL + ((pos & (self.slots - 1)) as usize) * self.slot)
    }

    /// Spin until there is room, then copy `msg` (`<= slot` bytes) in.
    pub(crate) fn push(&mut self, msg: &[u8]) {
        while self.pos - self.other == self.slots {
            self.other = self.head().load(Ordering::Acquire);
            spin_loop();
        }
        // SAFETY: the slot is free (the consumer's head is past it) and in
        // the mapping; `msg.len() <= slot`.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.slot_ptr(self.pos), msg.len()) };
        self.pos += 1;
        self.tail().store(self.pos, Ordering::Release);
    }

    /// Spin until a message is there, then copy it out into `out`.
    pub(crate) fn pop(&mut self, out: &mut [u8]) {
        while self.pos == self.other {
            self.other = self.tail().load(Ordering::Acquire);
            spin_loop();
        }
        // SAFETY: the slot is published (tail is past it) and in the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot_ptr(self.pos), out.as_mut_ptr(), out.len())
        };
        self.pos += 1;
        self.head().store(self.pos, Ordering::Release);
    }
}

/// One cache line bounced between two processes: the pinger stores odd
/// values and waits for the next even one; the ponger answers.
pub(crate) struct Line(*mut u8);

impl Line {
    /// # Safety
    ///
    /// `base` points to at least 8 bytes of zeroed shared memory, 8-aligned,
    /// mapped for the life of the value.
    pub(crate) unsafe fn new(base: *mut u8) -> Line {
        Line(base)
    }
    fn word(&self) -> &AtomicU64 {
        // SAFETY: the constructor's contract.
        unsafe { AtomicU64::from_ptr(self.0.cast()) }
    }
    /// Round trip `i` (from 0), seen from the pinger.
    pub(crate) fn ping(&self, i: u64) {
        self.word().store(2 * i + 1, Ordering::Release);
        while self.word().load(Ordering::Acquire) != 2 * i + 2 {
            spin_loop();
        }
    }
    /// Round trip `i`, seen from the ponger.
    pub(crate) fn pong(&self, i: u64) {
        while self.word().load(Ordering::Acquire) != 2 * i + 1 {
            spin_loop();
        }
        self.word().store(2 * i + 2, Ordering::Release);
    }
}
