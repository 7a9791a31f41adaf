//! Handles in a child made by `fork`.
//!
//! A forked child gets copies of its parent's handles and of their file
//! descriptors, which share the parent's open file descriptions, and so
//! the OFD locks held through them: a handle's liveness lock and its hold
//! on the segment. A child that kept them would make a dead parent look
//! alive for as long as the child lives. So, in the child, right after
//! `fork`, every handle's private lock descriptor is pointed at
//! `/dev/null` (`dup3`: the number stays valid, so the copy can still be
//! dropped, but the parent's locks are no longer shared), and the copies
//! are inert: dropping one in the child changes nothing in shared memory
//! (see `Segment::forked_copy`). The child opens its own ends with
//! `from_fd` (the segment fds are inherited) or by name.
//!
//! `std::process::Command` forks only when it must run a `pre_exec` hook
//! (as `pass_to` adds); the handler then runs between fork and exec, where
//! it makes only async-signal-safe calls.

// A process-wide list behind a plain spin lock, outside every modelled
// protocol (and not built under loom): std types, not the loom shim.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;

/// The lock descriptors of this process's live handles, behind a spin
/// lock that `fork` holds across the fork (so the child's copy of the list
/// is never half-updated).
struct Registry {
    busy: AtomicBool,
    fds: UnsafeCell<Vec<RawFd>>,
}

// SAFETY: `fds` is only touched with `busy` held (see `with_fds`), and by
// the forked child's handler, whose process has only the forking thread.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    busy: AtomicBool::new(false),
    fds: UnsafeCell::new(Vec::new()),
};
static INSTALL: Once = Once::new();

/// This process's pid, once asked (0: not yet, or a fork since): glibc no
/// longer caches it, and `getpid` is a system call the lock's fast path
/// should not make.
static PID: AtomicU32 = AtomicU32::new(0);

/// This process's pid, without a system call after the first (a forked
/// child asks again: its `child` handler clears the cache, and the handlers
/// are installed before any handle exists).
#[inline]
pub(crate) fn current_pid() -> u32 {
    // ORDERING: Relaxed — a process-local cache of a value every thread
    // computes the same.
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            // ORDERING: Relaxed — as above.
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

fn lock() {
    // ORDERING: Acquire pairs with `unlock`'s Release: the list as the
    // last holder left it is visible.
    while REGISTRY
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn unlock() {
    // ORDERING: Release publishes this holder's changes to the list.
    REGISTRY.busy.store(false, Ordering::Release);
}

fn with_fds(f: impl FnOnce(&mut Vec<RawFd>)) {
    lock();
    // SAFETY: `busy` is held, so this is the only reference to the list.
    f(unsafe { &mut *REGISTRY.fds.get() });
    unlock();
}

/// Track `fd` (a handle's private lock descriptor) until [`unregister`].
pub(crate) fn register(fd: RawFd) {
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions with the
        // signature pthread_atfork expects, and live for the whole program.
        // A failure (ENOMEM) only leaves forked children sharing locks, as
        // without this module.
        let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
    with_fds(|v| v.push(fd));
}

/// Stop tracking `fd` (before it is closed).
pub(crate) fn unregister(fd: RawFd) {
    with_fds(|v| {
        if let Some(i) = v.iter().rposition(|&f| f == fd) {
            v.swap_remove(i);
        }
    });
}

extern "C" fn prepare() {
    lock();
}

extern "C" fn parent() {
    unlock();
}

extern "C" fn child() {
    // ORDERING: Relaxed — one thread here; the next `current_pid` asks.
    PID.store(0, Ordering::Relaxed);
    // Only async-signal-safe calls here: open, dup3, close.
    // SAFETY: a NUL-terminated literal path; the flags are valid.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if null >= 0 {
        // SAFETY: the parent's `prepare` took `busy` before the fork and
        // this process has one thread: nobody else touches the list.
        let fds = unsafe { &*REGISTRY.fds.get() };
        for &fd in fds {
            // SAFETY: dup3 on descriptor numbers touches no memory; `fd` is
            // open (registered until its handle's drop closes it).
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
        // SAFETY: `null` was opened just above and is closed once.
        unsafe { libc::close(null) };
    }
    unlock();
}

/// A handle's private lock descriptor, tracked while open: in a forked
/// child it is pointed at `/dev/null` (see the module docs).
#[derive(Debug)]
pub(crate) struct LockFile(std::fs::File);

impl LockFile {
    pub(crate) fn new(f: std::fs::File) -> LockFile {
        use std::os::fd::AsRawFd;
        register(f.as_raw_fd());
        LockFile(f)
    }
}

impl std::ops::Deref for LockFile {
    type Target = std::fs::File;
    fn deref(&self) -> &std::fs::File {
        &self.0
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        unregister(self.0.as_raw_fd());
    }
}
