//! Waiting without burning a core and without a system call on the hot path:
//! spin → yield → futex, with deadlines.
//!
//! A [`WaitCell`] is two 32-bit words in shared memory: `waiters` (how many
//! sleep, or are about to) and `seq` (the futex word, bumped by each wake
//! that finds a waiter). The side that makes progress (publishes a frame,
//! frees room, closes) calls [`wake`]; it costs one fence and one load
//! unless somebody sleeps.
//!
//! # Why no wake-up is lost
//!
//! Waker: `W1` publish (the caller's store), `F_w` = `fence(SeqCst)`, `W2`
//! load `waiters`; if non-zero, `W3` `seq.fetch_add(1, Release)`, `W4`
//! `futex_wake(seq)`.
//!
//! Sleeper: `A1` `waiters += 1`, `F_a` = `fence(SeqCst)`, `A2` `s =
//! seq.load(Acquire)`, `A3` re-check the condition, `A4` `futex_wait(seq,
//! s)`, which the kernel enters only if `seq == s` still, atomically with
//! queueing us.
//!
//! The two fences are totally ordered. If `F_a` comes first, `W2` sees `A1`,
//! so the waker bumps `seq` and wakes: either `A2` read the bumped value —
//! then `W3` (Release) → `A2` (Acquire) makes `W1` visible to `A3` and we do
//! not sleep — or it read the old value, and `A4` either finds `seq != s`
//! (returns at once) or is queued before `W4` and is woken. If `F_w` comes
//! first, `A3` sees `W1` and we do not sleep. The loom model
//! `no_lost_wakeup_when_waiter_registers_late` checks this with the futex
//! modelled as a mutex and condition variable (a lost wake-up shows as a
//! loom deadlock).
//!
//! Sleeps are sliced ([`SLICE`]) so a waiter notices a peer that died
//! without waking it (the caller checks liveness between slices).

use crate::region::Region;
use crate::sync::{fence, Ordering};
use std::time::{Duration, Instant};

/// The longest one futex sleep lasts before the caller re-checks its peers.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// How a blocked side waits for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Spin for a short window (tens of microseconds), then yield, then
    /// sleep on a futex. An idle receiver costs nothing; a busy one answers
    /// in well under a microsecond.
    #[default]
    Adaptive,
    /// Never sleep: spin (yielding now and then). Lowest latency, costs a
    /// whole core while waiting. Deadlines and peer checks still apply.
    Spin,
}

/// How long the adaptive strategy spins before it yields.
const SPIN_WINDOW: Duration = Duration::from_micros(50);
/// How long it yields before it sleeps.
const YIELD_WINDOW: Duration = Duration::from_micros(200);

/// Offsets of a wait cell's two words in a region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitCell {
    /// Offset of `waiters` (u32); `seq` is at `+4`.
    pub(crate) off: usize,
}

impl WaitCell {
    fn seq_off(self) -> usize {
        self.off + 4
    }
}

/// Wake every sleeper of `cell`, if any. Call after publishing progress.
#[inline]
pub(crate) fn wake(r: &Region, cell: WaitCell) {
    // ORDERING: SeqCst fence — orders the caller's publishing store before
    // the load of `waiters`; pairs with the fence in `sleep` (see the
    // module docs).
    fence(Ordering::SeqCst);
    let (Some(waiters), Some(seq)) = (r.u32_at(cell.off), r.u32_at(cell.seq_off())) else {
        return;
    };
    // ORDERING: Relaxed — the fence above does the ordering.
    if waiters.load(Ordering::Relaxed) != 0 {
        // ORDERING: Release — a sleeper that reads the new `seq` (Acquire,
        // in `sleep`) also sees the caller's publish.
        seq.fetch_add(1, Ordering::Release);
        futex_wake(r, cell.seq_off());
    }
}

/// Sleep on `cell` for at most `timeout` unless `ready()` already holds
/// after registering. Spurious returns are allowed; callers loop.
pub(crate) fn sleep(
    r: &Region,
    cell: WaitCell,
    timeout: Duration,
    ready: &mut dyn FnMut() -> bool,
) {
    let (Some(waiters), Some(seq)) = (r.u32_at(cell.off), r.u32_at(cell.seq_off())) else {
        return;
    };
    // ORDERING: Relaxed — the fence below orders it before the re-check.
    waiters.fetch_add(1, Ordering::Relaxed);
    // ORDERING: SeqCst fence — pairs with the fence in `wake`.
    fence(Ordering::SeqCst);
    // ORDERING: Acquire — pairs with the Release bump in `wake`.
    let s = seq.load(Ordering::Acquire);
    if !ready() {
        futex_wait(r, cell.seq_off(), s, timeout);
    }
    // ORDERING: Relaxed — only a hint for wakers; a stale non-zero costs
    // them one needless wake call.
    waiters.fetch_sub(1, Ordering::Relaxed);
}

/// Back-off state for one blocking call.
#[derive(Debug)]
pub(crate) struct Backoff {
    strategy: WaitStrategy,
    began: Instant,
    next_check: Instant,
    rounds: u32,
}

/// What a blocking loop should do after a [`Backoff::snooze`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Look again.
    Retry,
    /// Look again, and check the peers' liveness first: a slice passed.
    CheckPeers,
    /// The deadline passed.
    TimedOut,
}

impl Backoff {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        let now = Instant::now();
        Backoff {
            strategy,
            began: now,
            next_check: now + SLICE,
            rounds: 0,
        }
    }

    /// Wait a little for `ready()`: a pause, a yield or a futex sleep,
    /// depending on how long we have waited.
    pub(crate) fn snooze(
        &mut self,
        r: &Region,
        cell: WaitCell,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> bool,
    ) -> Next {
        self.rounds = self.rounds.wrapping_add(1);
        if cfg!(loom) {
            // Under loom time does not pass: spin once, then sleep, so the
            // models reach the futex path.
            if self.rounds > 1 {
                sleep(r, cell, SLICE, ready);
            } else {
                crate::sync::spin_loop();
            }
            return Next::Retry;
        }
        // Reading the clock costs ~20 ns: do it every 32 pauses.
        if self.rounds % 32 != 0 {
            crate::sync::spin_loop();
            return Next::Retry;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Next::TimedOut;
        }
        if now >= self.next_check {
            self.next_check = now + SLICE;
            return Next::CheckPeers;
        }
        let waited = now - self.began;
        match self.strategy {
            WaitStrategy::Spin => {
                if self.rounds % 1024 == 0 {
                    crate::sync::yield_now();
                } else {
                    crate::sync::spin_loop();
                }
            }
            WaitStrategy::Adaptive if waited < SPIN_WINDOW => crate::sync::spin_loop(),
            WaitStrategy::Adaptive if waited < SPIN_WINDOW + YIELD_WINDOW => {
                crate::sync::yield_now()
            }
            WaitStrategy::Adaptive => {
                let mut t = self.next_check - now;
                if let Some(d) = deadline {
                    t = t.min(d - now);
                }
                sleep(r, cell, t, ready);
                // Check the clock (deadline, slice) on the next round.
                self.rounds = 31;
            }
        }
        Next::Retry
    }
}

#[cfg(not(loom))]
fn futex_wait(r: &Region, off: usize, expected: u32, timeout: Duration) {
    let Some(word) = r.u32_at(off) else { return };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` points to a live, aligned u32 in a mapping that
    // outlives the call; `ts` is a valid timespec. FUTEX_WAIT (not
    // private) because the word is shared between processes. EINTR,
    // EAGAIN and ETIMEDOUT all just return: every caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

#[cfg(not(loom))]
fn futex_wake(r: &Region, off: usize) {
    let Some(word) = r.u32_at(off) else { return };
    // SAFETY: `word` points to a live, aligned u32; FUTEX_WAKE only reads
    // the address to find the queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        )
    };
}

#[cfg(loom)]
fn futex_wait(r: &Region, off: usize, expected: u32, _timeout: Duration) {
    let Some(word) = r.u32_at(off) else { return };
    // The kernel checks the word under its hash-bucket lock, then queues.
    let guard = r.futex.lock().unwrap();
    // ORDERING: Relaxed — the mutex orders this against `futex_wake`.
    if word.load(Ordering::Relaxed) == expected {
        // No timeout under loom: a lost wake-up must show as a deadlock.
        drop(r.futex_cv.wait(guard).unwrap());
    }
}

#[cfg(loom)]
fn futex_wake(r: &Region, _off: usize) {
    let _guard = r.futex.lock().unwrap();
    r.futex_cv.notify_all();
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::AtomicU64;
    use loom::sync::Arc;

    /// A flag published by one thread, waited for by another through the
    /// full back-off (spin, then futex). A lost wake-up is a deadlock.
    #[test]
    fn no_lost_wakeup_when_waiter_registers_late() {
        crate::sync::model("no_lost_wakeup_when_waiter_registers_late", || {
            let r = Arc::new(Region::heap(16));
            let cell = WaitCell { off: 8 };
            let r2 = r.clone();
            let t = loom::thread::spawn(move || {
                let flag: &AtomicU64 = r2.u64_at(0).unwrap();
                flag.store(1, Ordering::Release);
                wake(&r2, cell);
            });
            let flag = r.u64_at(0).unwrap();
            let mut b = Backoff::new(WaitStrategy::Adaptive);
            while flag.load(Ordering::Acquire) == 0 {
                let mut ready = || flag.load(Ordering::Acquire) != 0;
                b.snooze(&r, cell, None, &mut ready);
            }
            t.join().unwrap();
        });
    }
}
