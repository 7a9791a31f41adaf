//! Passing an end to a child process started with `std::process::Command`.
//!
//! The parent duplicates the segment's fd and lets the child inherit the
//! copy (everything ringway opens is close-on-exec otherwise); the child's
//! environment names it: `RINGWAY_FD_<KEY>=<fd>`. The child attaches its
//! own end with `from_inherited(KEY)`, through its own open file
//! description, so its liveness lock is its own.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The environment variable's prefix.
pub const ENV_PREFIX: &str = "RINGWAY_FD_";

fn check_key(key: &str) -> Result<String> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "inheritance key {key:?}: 1..=64 of A-Z, a-z, 0-9 and _"
        )));
    }
    Ok(format!("{ENV_PREFIX}{key}"))
}

/// Make `fd` inheritable by the children `cmd` spawns, named by `key`.
pub(crate) fn pass(fd: BorrowedFd<'_>, cmd: &mut Command, key: &str) -> Result<()> {
    let var = check_key(key)?;
    let dup: OwnedFd = fd.try_clone_to_owned().map_err(|source| Error::Io {
        op: "fcntl(F_DUPFD_CLOEXEC)",
        segment: "<passed>".into(),
        source,
    })?;
    let raw = dup.as_raw_fd();
    cmd.env(var, raw.to_string());
    let hook = move || {
        // SAFETY: fcntl(F_SETFD) on an fd number touches no memory.
        let rc = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_SETFD, 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes one `fcntl` call on an
    // fd the child inherited from the fork. The duplicate stays open in
    // the parent as long as the closure (owned by `cmd`) lives, so the
    // number names our file at every spawn.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(())
}

/// The fd a parent passed under `key`, duplicated (close-on-exec). The
/// inherited number is made close-on-exec again, so grandchildren do not
/// get it unless passed on.
pub(crate) fn take(key: &str) -> Result<OwnedFd> {
    let var = check_key(key)?;
    let value = std::env::var(&var).map_err(|_| {
        Error::InvalidArgument(format!(
            "{var} is not set: the parent passes an end with `pass_to(&mut command, {key:?})`"
        ))
    })?;
    let raw: i32 =
        value.parse().ok().filter(|&n| n >= 0).ok_or_else(|| {
            Error::InvalidArgument(format!("{var}={value:?} is not an fd number"))
        })?;
    // SAFETY: F_GETFD/F_SETFD on any number touch no memory; a closed
    // number gives EBADF.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(Error::InvalidArgument(format!(
            "{var}={raw}: that fd is not open in this process ({})",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is open (checked just above) and stays open for the
    // borrow, which ends before this function returns.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    fd.try_clone_to_owned().map_err(|source| Error::Io {
        op: "fcntl(F_DUPFD_CLOEXEC)",
        segment: "<inherited>".into(),
        source,
    })
}
