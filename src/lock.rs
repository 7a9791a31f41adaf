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
//! glibc cannot validate them. This is the one place where a hostile peer's
//! bytes are interpreted by code that is not ours: see the crate's safety
//! model. The segment header records the lock's ABI ([`LOCK_ABI`]) so a
//! process built against another C library refuses the segment instead of
//! misreading the mutex.

use crate::error::{Error, Result};
use crate::region::Region;
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
const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= LOCK_BYTES);

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
    pub(crate) fn lock<'a>(
        &self,
        r: &'a Region,
        timeout: Option<Duration>,
    ) -> Result<Option<LockGuard<'a>>> {
        let m = mutex_ptr(r, self.off)?;
        let rc = match timeout {
            // SAFETY: `m` points to an initialised process-shared mutex in
            // a mapping that outlives `'a`.
            None => unsafe { libc::pthread_mutex_lock(m) },
            // SAFETY: as above.
            Some(t) if t.is_zero() => unsafe { libc::pthread_mutex_trylock(m) },
            Some(t) => {
                let mut now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `now` is a valid out-pointer.
                unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
                let total = now.tv_nsec as u64 + t.subsec_nanos() as u64;
                let abs = libc::timespec {
                    tv_sec: now.tv_sec
                        + t.as_secs().min(i64::MAX as u64 / 2) as libc::time_t
                        + (total / 1_000_000_000) as libc::time_t,
                    tv_nsec: (total % 1_000_000_000) as libc::c_long,
                };
                // SAFETY: as above; `abs` is a valid timespec.
                unsafe { libc::pthread_mutex_timedlock(m, &abs) }
            }
        };
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
        Ok(Some(LockGuard {
            m,
            owner_died,
            _region: PhantomData,
            _not_send: PhantomData,
        }))
    }
}

/// A held inter-process lock; unlocked on drop. It borrows the mapping, so
/// the segment cannot be unmapped while locked. `!Send`: a mutex is
/// unlocked by the thread that locked it.
#[derive(Debug)]
pub(crate) struct LockGuard<'a> {
    m: *mut libc::pthread_mutex_t,
    owner_died: bool,
    _region: PhantomData<&'a Region>,
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
        // SAFETY: this thread holds the mutex (the guard exists only after
        // a successful lock), and the mapping outlives the guard.
        unsafe { libc::pthread_mutex_unlock(self.m) };
    }
}
