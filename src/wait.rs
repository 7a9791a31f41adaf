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
//! Waker: `W1` publish (the caller's store), `B_w` = light barrier, `W2`
//! load `waiters`; if non-zero, `W3` `seq.fetch_add(1, Release)`, `W4`
//! `futex_wake(seq)`.
//!
//! Sleeper: `A1` `waiters += 1`, `B_a` = heavy barrier, `A2` `s =
//! seq.load(Acquire)`, `A3` re-check the condition, `A4` `futex_wait(seq,
//! s)`, which the kernel enters only if `seq == s` still, atomically with
//! queueing us.
//!
//! This is Dekker's store→load handshake, so each side needs a full barrier
//! between its store and its load. If `B_a` comes first, `W2` sees `A1`, so
//! the waker bumps `seq` and wakes: either `A2` read the bumped value — then
//! `W3` (Release) → `A2` (Acquire) makes `W1` visible to `A3` and we do not
//! sleep — or it read the old value, and `A4` either finds `seq != s`
//! (returns at once) or is queued before `W4` and is woken. If `B_w` comes
//! first, `A3` sees `W1` and we do not sleep.
//!
//! # Asymmetric barriers
//!
//! A full fence on the waker's side costs a store-buffer drain on *every*
//! publish, which, with the consumer polling the same lines, is a
//! cross-core round trip: it cut throughput four-fold in `ringway bench`.
//! So the barrier is asymmetric, as in folly's `asymmetricHeavyBarrier`: the
//! waker's `B_w` is only a compiler fence, and the sleeper's `B_a` is
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every running
//! thread of every registered process execute a full barrier before it
//! returns. Whatever point of the waker's program that barrier lands on, it
//! orders `A1` before `W2` or `W1` before `A2`, which is what the argument
//! above needs. Every process registers ([`register_process`]) when it
//! attaches its first handle; a process whose registration fails (an old
//! kernel, a seccomp filter) uses a full fence in its wakes instead, so it
//! never relies on a barrier it cannot receive. If a sleeper's membarrier
//! call fails, the worst case is a wake-up missed until the sleep slice
//! ends: late, never lost for good.
//!
//! Under loom both barriers are `fence(SeqCst)`, which is what the
//! membarrier stands for; the loom model
//! `no_lost_wakeup_when_waiter_registers_late` checks the protocol with the
//! futex modelled as a mutex and condition variable (a lost wake-up shows
//! as a loom deadlock).
//!
//! Sleeps are sliced ([`SLICE`]) so a waiter notices a peer that died
//! without waking it (the caller checks liveness between slices).

use crate::region::Region;
use crate::sync::{compiler_fence, fence, Ordering};
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

/// Offsets of a wait cell's words in a region: `waiters` u32 at `off`,
/// `seq` u32 at `off + 4`, `bell` u32 at `off + 8` (1 while a doorbell is
/// armed, see [`arm_bell`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitCell {
    /// Offset of `waiters`.
    pub(crate) off: usize,
}

impl WaitCell {
    fn seq_off(self) -> usize {
        self.off + 4
    }
    fn bell_off(self) -> usize {
        self.off + 8
    }
}

#[cfg(not(loom))]
mod membarrier {
    use std::sync::OnceLock;

    // linux/membarrier.h. (1 << 3 and 1 << 4 are the PRIVATE_EXPEDITED
    // pair, which reaches only this process's threads: used here once by
    // mistake, a waker in another process got no barrier.)
    const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
    const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

    fn call(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes two integers and touches no memory of
        // ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) == 0 }
    }

    static REGISTERED: OnceLock<bool> = OnceLock::new();

    /// Register this process as a target of global expedited barriers.
    pub(super) fn register() -> bool {
        *REGISTERED.get_or_init(|| call(CMD_REGISTER_GLOBAL_EXPEDITED))
    }

    /// Whether this process's wakers may use the light barrier.
    #[inline(always)]
    pub(super) fn registered() -> bool {
        REGISTERED.get().copied().unwrap_or(false)
    }

    /// A full barrier on every running thread of every registered process.
    pub(super) fn global() -> bool {
        call(CMD_GLOBAL_EXPEDITED)
    }
}

/// Register this process for the asymmetric barrier (once; cheap after).
/// Every handle calls it when it attaches.
pub(crate) fn register_process() {
    #[cfg(not(loom))]
    membarrier::register();
}

/// The waker's side of the handshake: a compiler fence if this process is
/// registered for membarrier, a full fence otherwise.
#[inline(always)]
fn light_barrier() {
    #[cfg(not(loom))]
    if !membarrier::registered() {
        // ORDERING: SeqCst fence — the symmetric fallback; pairs with the
        // fence in `heavy_barrier`.
        fence(Ordering::SeqCst);
        return;
    }
    // ORDERING: compiler fence — the heavy barrier in a sleeper supplies
    // the hardware ordering (module docs); loom models it as a fence.
    compiler_fence(Ordering::SeqCst);
}

/// The sleeper's side: a full fence here, and one on every registered
/// process's running threads. `false` if the membarrier failed: a waker
/// that relies on it may then be missed, so the caller sleeps in short
/// slices.
fn heavy_barrier() -> bool {
    // ORDERING: SeqCst fence — pairs with `light_barrier` (or the fallback
    // fence there).
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    return membarrier::global();
    #[cfg(loom)]
    true
}

/// The longest sleep when the heavy barrier failed (see `heavy_barrier`).
const DEGRADED_SLICE: Duration = Duration::from_millis(1);

/// Wake every sleeper of `cell`, if any. Call after publishing progress.
/// Returns `true` if it also took an armed doorbell: the caller must then
/// ring it (write to its FIFO).
#[inline(always)]
#[must_use = "a taken doorbell must be rung"]
pub(crate) fn wake(r: &Region, cell: WaitCell) -> bool {
    // Orders the caller's publishing store before the load of `waiters`
    // (module docs).
    light_barrier();
    let (Some(waiters), Some(seq)) = (r.u32_at(cell.off), r.u32_at(cell.seq_off())) else {
        return false;
    };
    // ORDERING: Acquire — the barrier above orders it after the publish;
    // Acquire pairs with the Release increment in `arm_bell`, so an armed
    // bell is seen with its count.
    if waiters.load(Ordering::Acquire) != 0 {
        // ORDERING: Release — a sleeper that reads the new `seq` (Acquire,
        // in `sleep`) also sees the caller's publish.
        seq.fetch_add(1, Ordering::Release);
        futex_wake(r, cell.seq_off());
        return take_bell(r, cell);
    }
    false
}

#[cold]
fn take_bell(r: &Region, cell: WaitCell) -> bool {
    let (Some(waiters), Some(bell)) = (r.u32_at(cell.off), r.u32_at(cell.bell_off())) else {
        return false;
    };
    // ORDERING: Relaxed — a cheap look first; the swap decides.
    // ORDERING: AcqRel on the swap — exactly one waker takes an armed bell.
    if bell.load(Ordering::Relaxed) == 1 && bell.swap(0, Ordering::AcqRel) == 1 {
        // ORDERING: Relaxed — the armer's count, given back.
        waiters.fetch_sub(1, Ordering::Relaxed);
        return true;
    }
    false
}

/// Arm the doorbell of `cell`: the next publish (or close) takes it and
/// rings it. Counts as a waiter, so wakers take their slow path; the same
/// store→load handshake as sleeping (module docs) makes the caller's
/// re-check after this see anything published before a waker missed the
/// bell. Returns `false` if it was armed already.
pub(crate) fn arm_bell(r: &Region, cell: WaitCell) -> bool {
    let (Some(waiters), Some(bell)) = (r.u32_at(cell.off), r.u32_at(cell.bell_off())) else {
        return false;
    };
    // ORDERING: AcqRel — only one arming counts itself in `waiters`.
    if bell.swap(1, Ordering::AcqRel) == 1 {
        return false;
    }
    // ORDERING: Release — pairs with the Acquire load in `wake`: a waker
    // that sees this count sees the bell armed.
    waiters.fetch_add(1, Ordering::Release);
    let _ = heavy_barrier();
    true
}

/// Disarm the doorbell of `cell` if it is armed (its owner goes away).
pub(crate) fn disarm_bell(r: &Region, cell: WaitCell) {
    if take_bell(r, cell) {
        // Nothing to ring: the owner is leaving.
    }
}

/// For calls that do not wait: whether it is time to check the peers again
/// (at most once per [`SLICE`]), so that polling with `try_*` notices a
/// dead peer too.
pub(crate) fn peer_check_due(next: &std::cell::Cell<Option<Instant>>) -> bool {
    let now = Instant::now();
    if next.get().is_none_or(|t| now >= t) {
        next.set(Some(now + SLICE));
        true
    } else {
        false
    }
}

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Until {
    /// Do not wait.
    Now,
    /// Wait until then.
    Deadline(Instant),
    /// Wait as long as it takes.
    Forever,
}

impl Until {
    pub(crate) fn after(t: Duration) -> Until {
        Instant::now()
            .checked_add(t)
            .map_or(Until::Forever, Until::Deadline)
    }
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Until::Deadline(d) => Some(d),
            _ => None,
        }
    }
}

/// Back-off state for one blocking call.
///
/// Once it first sleeps, it stays registered in the cell's `waiters` until
/// it is dropped (the end of the blocking call): the store→load handshake
/// of the module docs is needed once per registration, so the heavy
/// barrier (IPIs to every core running a registered process) is paid once
/// per blocking call, not once per sleep slice.
#[derive(Debug)]
pub(crate) struct Backoff<'r> {
    strategy: WaitStrategy,
    began: Option<Instant>,
    next_check: Option<Instant>,
    rounds: u32,
    /// The `waiters` word we are counted in, if registered.
    registered: Option<&'r crate::sync::AtomicU32>,
    /// Whether the heavy barrier at registration worked.
    barrier_ok: bool,
}

impl Drop for Backoff<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.registered {
            // ORDERING: Relaxed — only a hint for wakers; a stale non-zero
            // costs them one needless wake call.
            w.fetch_sub(1, Ordering::Relaxed);
        }
    }
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

impl<'r> Backoff<'r> {
    /// A back-off that has not waited yet. It reads the clock only from
    /// its 32nd round on, so a wait that ends within a few pauses (the
    /// common case under load) costs no clock read.
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        Backoff {
            strategy,
            began: None,
            next_check: None,
            rounds: 0,
            registered: None,
            barrier_ok: true,
        }
    }

    /// Wait a little for `ready()`: a pause, a yield or a futex sleep,
    /// depending on how long we have waited.
    pub(crate) fn snooze(
        &mut self,
        r: &'r Region,
        cell: WaitCell,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> bool,
    ) -> Next {
        self.rounds = self.rounds.wrapping_add(1);
        if cfg!(loom) {
            // Under loom time does not pass: spin once, then sleep, so the
            // models reach the futex path.
            if self.rounds > 1 {
                self.sleep(r, cell, SLICE, ready);
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
        let began = *self.began.get_or_insert(now);
        let next_check = *self.next_check.get_or_insert(now + SLICE);
        if now >= next_check {
            self.next_check = Some(now + SLICE);
            return Next::CheckPeers;
        }
        let waited = now - began;
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
                let mut t = next_check - now;
                if let Some(d) = deadline {
                    t = t.min(d - now);
                }
                self.sleep(r, cell, t, ready);
                // Check the clock (deadline, slice) on the next round.
                self.rounds = 31;
            }
        }
        Next::Retry
    }
}

impl<'r> Backoff<'r> {
    /// Sleep on `cell` for at most `timeout` unless `ready()` holds once we
    /// are registered. Spurious returns are allowed; callers loop.
    fn sleep(
        &mut self,
        r: &'r Region,
        cell: WaitCell,
        timeout: Duration,
        ready: &mut dyn FnMut() -> bool,
    ) {
        let (Some(waiters), Some(seq)) = (r.u32_at(cell.off), r.u32_at(cell.seq_off())) else {
            return;
        };
        if self.registered.is_none() {
            // ORDERING: Relaxed — the barrier below orders it before the
            // re-check.
            waiters.fetch_add(1, Ordering::Relaxed);
            self.registered = Some(waiters);
            self.barrier_ok = heavy_barrier();
        }
        // ORDERING: Acquire — pairs with the Release bump in `wake`.
        let s = seq.load(Ordering::Acquire);
        if !ready() {
            let t = if self.barrier_ok {
                timeout
            } else {
                timeout.min(DEGRADED_SLICE)
            };
            futex_wait(r, cell.seq_off(), s, t);
        }
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
#[cold]
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
                let _ = wake(&r2, cell);
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

    /// A consumer arms its doorbell while a producer publishes: either the
    /// consumer's look after arming sees the message, or the producer takes
    /// the bell (and rings it). Never neither.
    #[test]
    fn armed_doorbell_or_recheck_sees_every_publish() {
        crate::sync::model("armed_doorbell_or_recheck_sees_every_publish", || {
            let r = Arc::new(Region::heap(32));
            let cell = WaitCell { off: 8 };
            let r2 = r.clone();
            let t = loom::thread::spawn(move || {
                r2.u64_at(0).unwrap().store(1, Ordering::Release);
                wake(&r2, cell)
            });
            arm_bell(&r, cell);
            let seen = r.u64_at(0).unwrap().load(Ordering::Acquire) != 0;
            let rang = t.join().unwrap();
            assert!(seen || rang, "a publish nobody heard of");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::process::Command;

    /// Set in the child of `membarrier_reaches_other_processes`.
    const CHILD: &str = "RINGWAY_MEMBARRIER_CHILD";

    /// The barrier a sleeper sends must be the global one: it needs no
    /// registration of the caller (the private one fails with EPERM in an
    /// unregistered process), so a fresh process can send it. Runs in a
    /// child, because this test process may have registered already.
    #[test]
    fn membarrier_reaches_other_processes() {
        if std::env::var_os(CHILD).is_some() {
            assert!(super::membarrier::global(), "global barrier refused");
            assert!(super::membarrier::register(), "registration refused");
            assert!(super::membarrier::global());
            return;
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "wait::tests::membarrier_reaches_other_processes"])
            .args(["--test-threads", "1", "--nocapture"])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child did not finish within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(status.success(), "child: {status:?}\n{out}");
        assert!(out.contains("1 passed"), "{out}");
    }
}
