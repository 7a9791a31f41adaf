//! What `ringway bench`, `chaos` and `soak` create in /dev/shm is removed
//! on every exit path: a normal end, an error, a panic (the guard's drop)
//! and Ctrl-C or SIGTERM (a handler that hands over to a thread, which
//! cleans up and exits 130).
//!
//! Every segment such a command creates is named `rw-<command>-<its pid>-...`
//! (see `bench::unique`), so its own are found by prefix; their doorbell
//! FIFOs are named by the segment's device and inode.

use std::os::unix::fs::MetadataExt;

/// The command whose segments this process removes (`bench` unless set).
static COMMAND: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The prefix of this process's segment names: `rw-<command>-<pid>-`.
pub(crate) fn prefix() -> String {
    format!(
        "rw-{}-{}-",
        COMMAND.get().unwrap_or(&"bench"),
        std::process::id()
    )
}

/// Remove this process's bench segments and their doorbells; how many
/// segments were removed.
pub(crate) fn remove_own() -> usize {
    let prefix = prefix();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return 0;
    };
    let mut bells = Vec::new();
    let mut n = 0;
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        if let Ok(md) = e.metadata() {
            bells.push(format!("ringway-bell-{:x}-{}-", md.dev(), md.ino()));
        }
        n += std::fs::remove_file(e.path()).is_ok() as usize;
    }
    if !bells.is_empty() {
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if bells.iter().any(|b| name.starts_with(b.as_str())) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    n
}

/// Removes this process's bench segments when dropped.
pub(crate) struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        remove_own();
    }
}

/// The write end of the pipe the signal handler writes to.
static SIGNAL_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Set by the handler: the process is being interrupted.
#[allow(clippy::disallowed_types)] // a process-local flag, not a protocol
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A command about to exit calls this: if Ctrl-C or SIGTERM came (its
/// children died of it, which may be why it is exiting), it leaves the exit
/// to the cleaning thread (code 130, once the segments are removed).
pub(crate) fn wait_if_interrupted() {
    // ORDERING: Relaxed — a flag; the cleaning thread exits the process.
    while INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // ORDERING: Relaxed — see `wait_if_interrupted`.
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
    let fd = SIGNAL_FD.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; one byte from a static.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
}

/// On SIGINT or SIGTERM: wait a moment for the children (Ctrl-C reaches
/// the whole process group), remove the segments named by [`prefix`] for
/// `command`, exit 130 (SIGINT) as a shell expects. Call once, before the
/// first segment is created.
pub(crate) fn on_interrupt_clean_up(command: &'static str) {
    let _ = COMMAND.set(command);
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    SIGNAL_FD.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    let read = fds[0];
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a local buffer from our own pipe.
        if unsafe { libc::read(read, b.as_mut_ptr().cast(), 1) } == 1 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let n = remove_own();
            let command = COMMAND.get().unwrap_or(&"bench");
            eprintln!("ringway {command}: interrupted; removed {n} segment(s) it had created");
            std::process::exit(130);
        }
    });
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is a valid value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa.sa_mask` is a valid sigset_t to clear.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: a valid sigaction; the handler only calls the
        // async-signal-safe write(2).
        unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    }
}
