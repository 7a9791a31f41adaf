//! An inter-process lock in shared memory that survives its holder's death:
//! glibc's process-shared robust `pthread_mutex_t`, wrapped (not invented).
//!
//! If the holder dies, the kernel marks the mutex and the next locker gets
//! `EOWNERDEAD`: we make it consistent and hand out a guard whose
//! [`owner_died`](LockGuard::owner_died) says so, so the caller can repair
//! what the dead holder left half-done. The lock is never held forever.
//!
//! # Trust
//!
//! The mutex's bytes are glibc's own state (including the robust-list links
//! the kernel walks when a holder dies). A peer with write access to the
//! segment can corrupt them like any other byte; unlike the rings' words,
//! glibc cannot validate them. What we can check we do: the kind word
//! before every call into glibc (it asserts on kinds it did not make), and
//! during a wait, slice by slice, the owner the word names (a thread that
//! does not exist is a dead holder; a thread of a process other than the
//! recorded holder, for [`STRAY_SLICES`] slices, is corruption), so no wait
//! lasts for ever. What we cannot: the robust-list links, which glibc's
//! unlock writes through. This is the one place where a hostile peer's
//! bytes are interpreted by code that is not ours: see the crate's safety
//! model. The segment header records the lock's ABI ([`LOCK_ABI`]) so a
//! process built against another C library refuses the segment instead of
//! misreading the mutex.

use crate::error::{Error, Result};
use crate::region::Region;
use crate::sync::{AtomicU32, Ordering};
use std::marker::PhantomData;
use std::time::Duration;

/// Identifies the mutex layout: C library (1 = glibc) and the size of
/// `pthread_mutex_t`. Stored in the header; a mismatch is refused.
pub(crate) const LOCK_ABI: u64 = {
    let libc_id: u64 = if cfg!(target_env = "gnu") { 1 } else { 2 };
    libc_id << 32 | std::mem::size_of::<libc::pthread_mutex_t>() as u64
};

/// Bytes reserved for the mutex (one 128-byte line).
pub(crate) const LOCK_BYTES: usize = 128;
/// Where in the line the holder's pid is recorded (u32, 0 when free): ours,
/// not glibc's, so a waiter can tell a live holder from a word that names
/// some other thread.
const HOLDER_OFF: usize = 64;
const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= HOLDER_OFF);
/// How long one wait on the mutex lasts before the waiter looks at who
/// holds it.
const SLICE: Duration = Duration::from_millis(100);
/// Slices in a row the mutex may name a holder that is not its recorded
/// one (a thread of another process, or no holder recorded) before the
/// waiter calls it corrupted: a true holder records itself right after it
/// acquires and clears the record right before it releases.
const STRAY_SLICES: u32 = 10;
/// glibc's mutex word: the owner's thread id in the low 30 bits.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// Offset of glibc's `__kind` in a 64-bit `pthread_mutex_t` (after
/// `__lock`, `__count`, `__owner` and `__nusers`).
const KIND_OFF: usize = 16;

/// A robust mutex at offset `off` of a region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLock {
    off: usize,
}

fn mutex_ptr(r: &Region, off: usize) -> Result<*mut libc::pthread_mutex_t> {
    // The region hands out atomics, not raw pointers: take the address of
    // the first word and check the whole mutex is in bounds.
    let first = r
        .u64_at(off)
        .filter(|_| r.u64_at(off + LOCK_BYTES - 8).is_some())
        .ok_or_else(|| crate::error::corrupt(format!("lock at {off} outside the segment")))?;
    Ok(first.as_ptr().cast())
}

fn check(op: &'static str, rc: libc::c_int) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Io {
            op,
            segment: String::new(),
            source: std::io::Error::from_raw_os_error(rc),
        })
    }
}

impl RawLock {
    pub(crate) fn at(off: usize) -> RawLock {
        RawLock { off }
    }

    /// Initialise the mutex (the creator, before the segment is READY).
    pub(crate) fn init(&self, r: &Region) -> Result<()> {
        let m = mutex_ptr(r, self.off)?;
        // SAFETY: an all-zero pthread_mutexattr_t is storage for `init`.
        let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
        // SAFETY: `attr` is valid storage.
        check("pthread_mutexattr_init", unsafe {
            libc::pthread_mutexattr_init(&mut attr)
        })?;
        // SAFETY: `attr` was initialised above.
        let rc =
            unsafe { libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) };
        check("pthread_mutexattr_setpshared", rc)?;
        // SAFETY: as above.
        let rc =
            unsafe { libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST) };
        check("pthread_mutexattr_setrobust", rc)?;
        // Relocking by the holder is an error (EDEADLK), not a hang.
        // SAFETY: as above.
        let rc =
            unsafe { libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_ERRORCHECK) };
        check("pthread_mutexattr_settype", rc)?;
        // SAFETY: `m` points to LOCK_BYTES of this segment, which nobody
        // else uses before READY; `attr` is initialised.
        let rc = unsafe { libc::pthread_mutex_init(m, &attr) };
        // SAFETY: `attr` is initialised and no longer needed.
        unsafe { libc::pthread_mutexattr_destroy(&mut attr) };
        check("pthread_mutex_init", rc)
    }

    /// Lock, waiting as long as `timeout` allows (`None`: forever,
    /// `Some(0)`: not at all). `Ok(None)` when it timed out.
    ///
    /// A long wait is cut into slices; after each, the waiter looks at the
    /// mutex's owner ([`check_owner`](Self::check_owner)): a wait on a
    /// holder that does not exist, or on a word that is not what a holder
    /// leaves, ends instead of lasting forever.
    pub(crate) fn lock<'a>(
        &self,
        r: &'a Region,
        timeout: Option<Duration>,
    ) -> Result<Option<LockGuard<'a>>> {
        let m = mutex_ptr(r, self.off)?;
        self.check_kind(r)?;
        // SAFETY: `m` points to an initialised process-shared mutex in a
        // mapping that outlives `'a`, of the kind glibc made (checked).
        let mut rc = unsafe { libc::pthread_mutex_trylock(m) };
        if rc == libc::EBUSY && !timeout.is_some_and(|t| t.is_zero()) {
            // `None` (or a deadline past the clock's range): for ever.
            let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
            let mut stray = (0u32, 0u64);
            rc = loop {
                let slice = match deadline {
                    Some(d) => d
                        .saturating_duration_since(std::time::Instant::now())
                        .min(SLICE),
                    None => SLICE,
                };
                if slice.is_zero() {
                    return Ok(None);
                }
                self.check_kind(r)?;
                // SAFETY: as above; the timespec is valid.
                match unsafe { libc::pthread_mutex_timedlock(m, &abs_time(slice)) } {
                    libc::ETIMEDOUT => self.check_owner(r, &mut stray)?,
                    rc => break rc,
                }
            };
        }
        let owner_died = match rc {
            0 => false,
            libc::EOWNERDEAD => {
                // We hold it now; its last holder died holding it.
                // SAFETY: we hold the mutex (EOWNERDEAD means acquired).
                check("pthread_mutex_consistent", unsafe { libc::pthread_mutex_consistent(m) })?;
                true
            }
            libc::EBUSY | libc::ETIMEDOUT => return Ok(None),
            libc::ENOTRECOVERABLE => {
                return Err(crate::error::corrupt(
                    "the lock is not recoverable: a holder died and the next one did not make it consistent".into(),
                ))
            }
            rc => return check("pthread_mutex_lock", rc).map(|()| None),
        };
        let holder = r.u32_at(self.off + HOLDER_OFF);
        if let Some(h) = holder {
            // ORDERING: Relaxed — the mutex orders it for the next holder;
            // waiters only compare it across slices.
            h.store(crate::fork::current_pid(), Ordering::Relaxed);
        }
        Ok(Some(LockGuard {
            m,
            holder,
            kind: (self.off, r),
            owner_died,
            _not_send: PhantomData,
        }))
    }

    /// The mutex's kind word must be the one glibc wrote at `init`: glibc
    /// asserts (aborts the process) or misbehaves on a kind it did not
    /// make, so a changed one is refused before glibc sees it.
    fn check_kind(&self, r: &Region) -> Result<()> {
        let Some(want) = expected_kind() else {
            return Ok(());
        };
        let w = r
            .u32_at(self.off + KIND_OFF)
            .ok_or_else(|| crate::error::corrupt("lock outside the segment".into()))?;
        // ORDERING: Relaxed — written once, before READY.
        match w.load(Ordering::Relaxed) {
            k if k == want => Ok(()),
            k => Err(crate::error::corrupt(format!(
                "the lock's kind word is {k:#x}, not the {want:#x} it was made with"
            ))),
        }
    }

    /// After a slice of waiting: whom the mutex names as its owner. A
    /// thread that does not exist is a holder that died where the kernel's
    /// robust list could not see it (or a corrupted word): the waiter does
    /// what the kernel does for a dead holder (marks the word owner-died,
    /// so the next lock gets `EOWNERDEAD` and says so). A live thread of a
    /// process other than the recorded holder, or no recorded holder, for
    /// [`STRAY_SLICES`] slices in a row, is corruption: an error, not a
    /// wait for ever. `stray` counts those slices and remembers what was
    /// seen.
    fn check_owner(&self, r: &Region, stray: &mut (u32, u64)) -> Result<()> {
        let bad = || crate::error::corrupt("lock outside the segment".into());
        let word = r.u32_at(self.off).ok_or_else(bad)?;
        let holder = r.u32_at(self.off + HOLDER_OFF).ok_or_else(bad)?;
        // ORDERING: Relaxed — a look; the mutex's own operations order
        // everything that matters.
        let w = word.load(Ordering::Relaxed);
        let tid = w & FUTEX_TID_MASK;
        // ORDERING: Relaxed — as above.
        let h = holder.load(Ordering::Relaxed);
        if tid == 0 {
            *stray = (0, 0);
            return Ok(());
        }
        match thread_group(tid) {
            None => {
                // Nobody runs as `tid`: as the kernel does for a dead
                // robust holder (keep the waiters bit, set owner-died). A
                // failed exchange means the word moved: look again later.
                // ORDERING: Relaxed — glibc's next lock reads the word
                // with its own atomics; nothing else is published here.
                let _ = word.compare_exchange(
                    w,
                    (w & FUTEX_WAITERS) | FUTEX_OWNER_DIED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                *stray = (0, 0);
                Ok(())
            }
            Some(tgid) if tgid == h => {
                *stray = (0, 0);
                Ok(())
            }
            Some(tgid) => {
                let seen = u64::from(w) << 32 | u64::from(h);
                *stray = if stray.1 == seen {
                    (stray.0 + 1, seen)
                } else {
                    (1, seen)
                };
                if stray.0 < STRAY_SLICES {
                    return Ok(());
                }
                Err(crate::error::corrupt(format!(
                    "the lock names thread {tid} (process {tgid}) as its owner, but {}",
                    if h == 0 {
                        "no holder is recorded".to_owned()
                    } else {
                        format!("process {h} is recorded as its holder")
                    }
                )))
            }
        }
    }
}

/// An absolute CLOCK_REALTIME time `d` from now (what timedlock takes).
fn abs_time(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let total = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec
            + d.as_secs().min(i64::MAX as u64 / 4) as libc::time_t
            + (total / 1_000_000_000) as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    }
}

/// The process (thread group) thread `tid` belongs to, or `None` if no
/// thread has that id.
fn thread_group(tid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The kind word glibc writes for our attributes (read from a private
/// mutex made the same way), where the layout is known (64-bit glibc).
fn expected_kind() -> Option<u32> {
    static KIND: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| {
        if !(cfg!(target_env = "gnu") && cfg!(target_pointer_width = "64")) {
            return None;
        }
        let r = Region::heap(LOCK_BYTES);
        RawLock::at(0).init(&r).ok()?;
        // ORDERING: Relaxed — our own private memory.
        r.u32_at(KIND_OFF).map(|w| w.load(Ordering::Relaxed))
    })
}

/// A held inter-process lock; unlocked on drop. It borrows the mapping, so
/// the segment cannot be unmapped while locked. `!Send`: a mutex is
/// unlocked by the thread that locked it.
#[derive(Debug)]
pub(crate) struct LockGuard<'a> {
    m: *mut libc::pthread_mutex_t,
    /// The holder record, cleared before the unlock.
    holder: Option<&'a AtomicU32>,
    /// Where the mutex is, to check its kind before unlocking.
    kind: (usize, &'a Region),
    owner_died: bool,
    _not_send: PhantomData<*mut ()>,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock. Whatever it was
    /// doing under the lock may be half done: check and repair it.
    pub(crate) fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.holder {
            // ORDERING: Relaxed — see `lock`.
            h.store(0, Ordering::Relaxed);
        }
        // A kind word changed under us: glibc would misread it; the mutex
        // stays held by this live thread (every other locker refuses it by
        // the same check).
        if RawLock::at(self.kind.0).check_kind(self.kind.1).is_err() {
            return;
        }
        // SAFETY: this thread holds the mutex (the guard exists only after
        // a successful lock), and the mapping outlives the guard.
        unsafe { libc::pthread_mutex_unlock(self.m) };
    }
}
