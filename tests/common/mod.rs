//! Spawn-self harness for cross-process tests.
//!
//! A test spawns its own test binary with `--exact child_entry` and the
//! environment variable `RINGWAY_TEST_ROLE`; that binary's `child_entry`
//! test dispatches on the role and exits. [`Child`] kills and reaps on drop,
//! [`Unlink`] removes a segment name on drop, and every wait is bounded.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::disallowed_types)]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The role this process was spawned for, if it is a child.
pub fn role() -> Option<String> {
    std::env::var("RINGWAY_TEST_ROLE").ok()
}

/// An argument given to the child.
pub fn arg(key: &str) -> String {
    std::env::var(format!("RINGWAY_TEST_{key}"))
        .unwrap_or_else(|_| panic!("child arg {key} missing"))
}

/// An integer argument given to the child.
pub fn arg_u64(key: &str) -> u64 {
    arg(key).parse().expect("integer arg")
}

/// A segment name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "rw-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a segment name on drop (ignores "not found").
pub struct Unlink(pub String);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = ringway::unlink(&self.0);
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Child {
    inner: std::process::Child,
    reaped: Option<ExitStatus>,
}

/// Builder for a child of role `role`.
pub fn child(role: &str) -> ChildBuilder {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("RINGWAY_TEST_ROLE", role)
        .env_remove("RINGWAY_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    ChildBuilder { cmd }
}

/// Arguments and environment for a child.
pub struct ChildBuilder {
    pub cmd: Command,
}

impl ChildBuilder {
    /// Pass `key=value` (read with [`arg`]).
    pub fn arg(mut self, key: &str, value: impl ToString) -> Self {
        self.cmd
            .env(format!("RINGWAY_TEST_{key}"), value.to_string());
        self
    }
    /// Make the child SIGKILL itself at a failpoint (`name` or `name@N`).
    pub fn failpoint(mut self, spec: &str) -> Self {
        self.cmd.env("RINGWAY_FAILPOINT", spec);
        self
    }
    /// Start it.
    pub fn spawn(mut self) -> Child {
        Child {
            inner: self.cmd.spawn().expect("spawn child"),
            reaped: None,
        }
    }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Wait at most `t` for the child to exit.
    pub fn wait_timeout(&mut self, t: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.reaped {
            return Some(s);
        }
        let deadline = Instant::now() + t;
        loop {
            if let Some(s) = self.inner.try_wait().expect("try_wait") {
                self.reaped = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Wait at most `t`; panic unless the child exited with status 0.
    pub fn expect_success(&mut self, t: Duration) {
        match self.wait_timeout(t) {
            Some(s) if s.success() => {}
            Some(s) => panic!("child {} failed: {s:?}", self.pid()),
            None => panic!("child {} did not finish within {t:?}", self.pid()),
        }
    }

    /// Wait at most `t`; panic unless the child died of SIGKILL.
    pub fn expect_killed(&mut self, t: Duration) {
        match self.wait_timeout(t) {
            Some(s) if s.signal() == Some(libc::SIGKILL) => {}
            other => panic!("child {} should have been SIGKILLed: {other:?}", self.pid()),
        }
    }

    /// SIGKILL it now and reap it.
    pub fn kill(&mut self) {
        let _ = self.inner.kill();
        let _ = self.wait_timeout(Duration::from_secs(10));
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill();
        }
    }
}

/// End a child role: flush and exit without returning to the harness.
pub fn exit_child(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Message `seq` of the stress protocol: 8 bytes of seq, then `seq % 41`
/// bytes of `seq as u8` (so lengths vary and wrap the ring unevenly).
pub fn message(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend(std::iter::repeat_n(seq as u8, (seq % 41) as usize));
}

/// Check that `msg` is message `seq`.
pub fn check_message(seq: u64, msg: &[u8]) {
    assert!(msg.len() >= 8, "message {seq} too short: {}", msg.len());
    let got = u64::from_le_bytes(msg[..8].try_into().unwrap());
    assert_eq!(got, seq, "out of order or lost");
    assert_eq!(msg.len(), 8 + (seq % 41) as usize, "length of {seq}");
    assert!(msg[8..].iter().all(|&b| b == seq as u8), "body of {seq}");
}

/// Stress size: `RINGWAY_STRESS_N`, or `default`.
pub fn stress_n(default: u64) -> u64 {
    std::env::var("RINGWAY_STRESS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Open something that another process is about to create: retry on
/// `NotFound` for up to 30 s.
pub fn open_retry<T>(mut f: impl FnMut() -> ringway::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(v) => return v,
            Err(ringway::Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

/// Whether `fd` becomes readable within `ms` milliseconds (poll).
pub fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}
