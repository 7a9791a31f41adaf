//! `ringway bench`: ringway side by side with the peers a user would pick
//! instead, each in real processes, in one run (BENCH.md's workloads).
//!
//! For each row the parent spawns two children of this binary (see
//! `child.rs`), waits for both to be READY, sends GO, and reads their
//! result lines. Throughput is messages over the time from the producer's
//! first send to the consumer's last receive (CLOCK_MONOTONIC, comparable
//! across processes); every consumer checks every message's sequence and
//! end bytes, so a run that lost, duplicated or tore a message gives no
//! figure.

use crate::check;
use crate::cleanup;
use crate::floor;
use crate::report::{self, Cell, Sheet};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Messages the rings hold by default (BENCH.md: ~1024 wherever
/// configurable).
pub(crate) const DEFAULT_SLOTS: usize = 1024;

/// The run's capacity and wait mode, set once by [`run`]; the children
/// get them in their argv (`slots=`, `mode=`), never from here.
#[derive(Clone, Copy, Debug)]
struct Config {
    slots: usize,
    /// `--slots` was given: the kernel transports' buffers are sized to
    /// it too (by default they keep the kernel's, as BENCH.md's peers'
    /// figures were taken).
    kernel_buffers: bool,
    spin: bool,
}

static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

fn set_config(opts: &Options) {
    let _ = CONFIG.set(Config {
        slots: opts.slots.unwrap_or(DEFAULT_SLOTS).max(2),
        kernel_buffers: opts.slots.is_some(),
        spin: opts.spin,
    });
}

/// Messages the rings (and every configurable peer) hold.
fn slots() -> usize {
    CONFIG.get().map_or(DEFAULT_SLOTS, |c| c.slots)
}

/// Whether ringway's rows spin instead of sleeping (`--mode spin`).
fn spin() -> bool {
    CONFIG.get().is_some_and(|c| c.spin)
}

/// With `--slots N`, give a pipe or socket pair a kernel buffer of `N`
/// messages of `size` bytes (the kernel rounds: a pipe to whole pages,
/// at least one, at most `/proc/sys/fs/pipe-max-size` unless privileged;
/// a socket doubles it for its bookkeeping). An error says the size was
/// refused rather than silently measuring another one.
fn size_kernel_buffer(kind: &str, fds: [&OwnedFd; 2], size: usize) -> Result<(), String> {
    if !CONFIG.get().is_some_and(|c| c.kernel_buffers) {
        return Ok(());
    }
    let bytes = slots().saturating_mul(size);
    let bytes =
        libc::c_int::try_from(bytes).map_err(|_| format!("{kind} buffer of {bytes} bytes"))?;
    if kind == "pipe" {
        // SAFETY: fcntl(F_SETPIPE_SZ) on an open pipe fd touches no memory.
        if unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_SETPIPE_SZ, bytes) } < 0 {
            return Err(format!(
                "pipe buffer of {bytes} bytes (--slots): {}",
                std::io::Error::last_os_error()
            ));
        }
        return Ok(());
    }
    for fd in fds {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setsockopt reads one c_int from a live local.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(format!(
                    "socket buffer of {bytes} bytes (--slots): {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}
/// No run may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
struct Sizes {
    t_msgs: u64,
    l_warm: u64,
    l_msgs: u64,
}

/// Options of `ringway bench` (see `main.rs` for their help).
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) full: bool,
    pub(crate) pin: bool,
    pub(crate) only: Option<Vec<String>>,
    /// Keep only rows whose transport or label contains one of these.
    pub(crate) rows: Option<Vec<String>>,
    pub(crate) repeat: usize,
    pub(crate) json: bool,
    pub(crate) markdown: bool,
    pub(crate) plot: Option<std::path::PathBuf>,
    pub(crate) messages: Option<u64>,
    pub(crate) round_trips: Option<u64>,
    /// `--slots`: `None` keeps the default rings and the kernel's buffers.
    pub(crate) slots: Option<usize>,
    pub(crate) spin: bool,
    pub(crate) baseline: Option<String>,
    pub(crate) quiet: bool,
    /// Check BENCH.md's targets after the tables.
    pub(crate) check: bool,
}

fn fd_pair(kind: &str) -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    let rc = if kind == "pipe" {
        // SAFETY: `fds` is a valid out-array of two ints. No O_CLOEXEC: the
        // children inherit these fds.
        unsafe { libc::pipe(fds.as_mut_ptr()) }
    } else {
        // SAFETY: as above, for socketpair.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }
    };
    assert_eq!(rc, 0, "{kind}: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    (a, b)
}

fn memfd(len: usize) -> OwnedFd {
    let name = c"ringway-bench";
    // SAFETY: valid C string; no CLOEXEC so children inherit the fd.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is open; ftruncate touches no memory of ours.
    let rc = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) };
    assert_eq!(rc, 0, "ftruncate: {}", std::io::Error::last_os_error());
    fd
}

struct Spawned {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Its `role=` argument, to name it in errors.
    role: String,
}

fn spawn(args: &[String]) -> Spawned {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .arg("__bench-child")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bench child");
    let stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let role = args
        .iter()
        .find_map(|a| a.strip_prefix("role="))
        .unwrap_or("?")
        .to_owned();
    Spawned {
        child,
        stdin,
        lines,
        role,
    }
}

/// What a child's next line is, without waiting.
enum Next {
    Line(String),
    Nothing,
    /// Its stdout closed without a line: it died.
    Died(String),
}

impl Spawned {
    fn line(&mut self, deadline: Instant) -> Result<String, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) => self.result(l),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("{} child timed out", self.role)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.death()),
        }
    }

    fn try_line(&mut self) -> Next {
        match self.lines.try_recv() {
            Ok(l) => Next::Line(l),
            Err(mpsc::TryRecvError::Empty) => Next::Nothing,
            Err(mpsc::TryRecvError::Disconnected) => Next::Died(self.death()),
        }
    }

    /// A result line: its own error if it reported one.
    fn result(&self, l: String) -> Result<String, String> {
        match l.strip_prefix("ERR ") {
            Some(e) => Err(format!("{} child: {e}", self.role)),
            None => Ok(l),
        }
    }

    /// How a child whose stdout closed ended (its own panic message, if
    /// any, went to our stderr).
    fn death(&mut self) -> String {
        let until = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                _ => break None,
            }
        };
        let how = match status {
            Some(st) => match (
                st.code(),
                std::os::unix::process::ExitStatusExt::signal(&st),
            ) {
                (_, Some(sig)) => format!("was killed by signal {sig}"),
                (Some(101), _) => "panicked".to_owned(),
                (Some(c), _) => format!("exited with status {c}"),
                _ => st.to_string(),
            },
            None => "closed its output".to_owned(),
        };
        format!("{} child {how} before giving its result", self.role)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run children with the given argument lists; returns their result lines
/// (after READY/GO). `close` is dropped once they are spawned (the parent's
/// copies of fds whose end-of-file the children rely on); `holder` (what
/// kept an mpmc queue in existence until its ends attached) once they
/// are ready. The first child to fail (its own error line, or its death)
/// fails the run at once, naming that child: its peers' errors ("the
/// receiver is gone") follow from it, and they are stopped with the run.
fn run_group(
    args: Vec<Vec<String>>,
    close: Vec<OwnedFd>,
    holder: Option<ringway::mpmc::Receiver>,
) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + RUN_LIMIT;
    let mut kids: Vec<Spawned> = args.iter().map(|a| spawn(a)).collect();
    drop(close);
    let ready = collect(&mut kids, deadline)?;
    if let Some(l) = ready.iter().find(|l| *l != "READY") {
        return Err(format!("expected READY, got {l:?}"));
    }
    // Every child has attached: the queue's creator goes, so the stream
    // ends when the senders have all gone, and a sender whose receivers
    // all died is not kept waiting by a receiver that never reads.
    drop(holder);
    for k in &mut kids {
        writeln!(k.stdin, "GO").map_err(|e| e.to_string())?;
    }
    collect(&mut kids, deadline)
}

/// How long, after a first child failed, the others may take to say why
/// they failed too (the first to fail may be a consequence: a sender told
/// its receiver is gone before the receiver's own error arrived).
const FAILURE_GRACE: Duration = Duration::from_millis(300);

/// Which of several failures names the cause: a child that died, then one
/// that failed on its own, then one told its peer has gone.
fn cause_rank(e: &str) -> u8 {
    if e.contains("before giving its result") {
        0
    } else if e.contains("whose receiver is gone") {
        2
    } else {
        1
    }
}

/// The next line of every child, in order; if one fails, the failure that
/// names the cause ([`cause_rank`]; the earliest among equals).
fn collect(kids: &mut [Spawned], deadline: Instant) -> Result<Vec<String>, String> {
    let mut got: Vec<Option<String>> = vec![None; kids.len()];
    let mut failed: Vec<String> = Vec::new();
    let mut grace_until: Option<Instant> = None;
    while got.iter().any(Option::is_none) {
        let mut idle = true;
        for (k, slot) in kids.iter_mut().zip(got.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let e = match k.try_line() {
                Next::Line(l) => match k.result(l) {
                    Ok(l) => {
                        *slot = Some(l);
                        idle = false;
                        continue;
                    }
                    Err(e) => e,
                },
                Next::Died(e) => e,
                Next::Nothing => continue,
            };
            *slot = Some(String::new());
            failed.push(e);
            grace_until.get_or_insert_with(|| Instant::now() + FAILURE_GRACE);
            idle = false;
        }
        if grace_until.is_some_and(|g| Instant::now() >= g) {
            break;
        }
        if idle {
            if Instant::now() >= deadline {
                let slow: Vec<&str> = kids
                    .iter()
                    .zip(&got)
                    .filter(|(_, g)| g.is_none())
                    .map(|(k, _)| k.role.as_str())
                    .collect();
                return Err(format!("timed out waiting for {}", slow.join(", ")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Some(e) = failed.into_iter().min_by_key(|e| cause_rank(e)) {
        return Err(e);
    }
    Ok(got.into_iter().map(Option::unwrap).collect())
}

/// [`run_group`] for a pair.
fn run_pair(
    a: Vec<String>,
    b: Vec<String>,
    holder: Option<ringway::mpmc::Receiver>,
) -> Result<(String, String), String> {
    let mut v = run_group(vec![a, b], Vec::new(), holder)?;
    let lb = v.pop().unwrap();
    Ok((v.pop().unwrap(), lb))
}

fn value(line: &str, tag: &str) -> Result<u64, String> {
    line.strip_prefix(tag)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("unexpected result {line:?}"))
}

fn kv(k: &str, v: impl ToString) -> String {
    format!("{k}={}", v.to_string())
}

#[allow(clippy::disallowed_types)] // a process-local counter, not a protocol
fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "rw-bench-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Capacity in bytes of a ringway ring holding `slots()` messages of `size`.
fn ring_cap(size: usize) -> usize {
    slots() * (8 + size.div_ceil(8) * 8)
}

/// Throughput of `transport` for `n` messages of `size` bytes.
fn throughput(transport: &'static str, size: usize, n: u64, pin: bool) -> Result<f64, String> {
    let mut base = vec![
        kv("transport", transport),
        kv("size", size),
        kv("n", n),
        kv("slots", slots()),
    ];
    let (mut ta, mut tb) = (base.clone(), std::mem::take(&mut base));
    ta.push(kv("role", "tx"));
    tb.push(kv("role", "rx"));
    ta.push(kv("cpu", if pin { 0 } else { -1 }));
    tb.push(kv("cpu", if pin { 1 } else { -1 }));
    let mut _keep: Vec<OwnedFd> = Vec::new();
    // Keeps an mpmc queue in existence without being a sender (so the
    // consumer sees the end of the stream when the producer drops).
    let mut holder: Option<ringway::mpmc::Receiver> = None;
    if spin() {
        ta.push(kv("mode", "spin"));
        tb.push(kv("mode", "spin"));
    }
    match transport {
        "threads-chan" | "threads-aq" => return threads_rate(transport, size, n),
        "ipc-channel" | "ipmpsc" | "iceoryx2" => return peer_rate(transport, ta, tb, n),
        "ringway" | "ringway-batch" | "ringway-pipe" | "ringway-pipe-typed" => {
            let name = unique("t");
            for v in [&mut ta, &mut tb] {
                v.push(kv("name", &name));
                v.push(kv("cap", ring_cap(size)));
            }
        }
        "ringway-mpmc" => {
            let name = unique("tm");
            holder = Some(
                ringway::mpmc::Receiver::create(&name, slots(), size).map_err(|e| e.to_string())?,
            );
            for v in [&mut ta, &mut tb] {
                v.push(kv("name", &name));
            }
        }
        "pipe" | "pipe-batch" | "socket" | "socket-batch" => {
            let (r, w) = fd_pair(if transport.starts_with("pipe") {
                "pipe"
            } else {
                "socket"
            });
            let kind = if transport.starts_with("pipe") {
                "pipe"
            } else {
                "socket"
            };
            size_kernel_buffer(kind, [&r, &w], size)?;
            ta.push(kv("fd", w.as_raw_fd()));
            tb.push(kv("fd", r.as_raw_fd()));
            _keep = vec![r, w];
        }
        "floor" => {
            let m = memfd(floor::ring_bytes(slots(), size));
            for v in [&mut ta, &mut tb] {
                v.push(kv("fd", m.as_raw_fd()));
                v.push(kv("slots", slots()));
            }
            _keep = vec![m];
        }
        _ => unreachable!(),
    }
    let (la, lb) = run_pair(ta, tb, holder)?;
    let t0 = value(&la, "T0")?;
    let t1 = lb
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| lb.starts_with("T1 "))
        .ok_or_else(|| format!("unexpected result {lb:?}"))?;
    if transport == "ringway-mpmc" {
        let (count, sum) = tally(&lb)?;
        if count != n || sum != expected_sum(1, n) {
            return Err(format!("integrity: got {count} messages of {n}"));
        }
    }
    let secs = (t1.saturating_sub(t0)) as f64 / 1e9;
    Ok(n as f64 / secs)
}

/// A peer of the `peers` feature: the consumer is spawned and READY first
/// (it creates the channel and says how to reach it), then the producer.
fn peer_rate(
    transport: &str,
    mut ta: Vec<String>,
    mut tb: Vec<String>,
    n: u64,
) -> Result<f64, String> {
    let deadline = Instant::now() + RUN_LIMIT;
    let name = unique(transport);
    match transport {
        "ipmpsc" => {
            let path = format!("/dev/shm/{name}");
            ta.push(kv("path", &path));
            tb.push(kv("path", &path));
        }
        "iceoryx2" => {
            ta.push(kv("service", format!("ringway/bench/{name}")));
            tb.push(kv("service", format!("ringway/bench/{name}")));
        }
        _ => {}
    }
    let mut rx = spawn(&tb);
    let ready = rx.line(deadline)?;
    let Some(extra) = ready.strip_prefix("READY") else {
        return Err(format!("expected READY, got {ready:?}"));
    };
    if transport == "ipc-channel" {
        ta.push(kv("server", extra.trim()));
    }
    let mut tx = spawn(&ta);
    let ready = tx.line(deadline)?;
    if ready != "READY" {
        return Err(format!("expected READY, got {ready:?}"));
    }
    for k in [&mut rx, &mut tx] {
        writeln!(k.stdin, "GO").map_err(|e| e.to_string())?;
    }
    let t0 = value(&tx.line(deadline)?, "T0")?;
    let t1 = value(&rx.line(deadline)?, "T1")?;
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    Ok(n as f64 / ((t1.saturating_sub(t0)) as f64 / 1e9))
}

/// One producer thread -> one consumer thread in one process, through
/// crossbeam's channel or `ArrayQueue`: the in-process yardstick.
fn threads_rate(transport: &str, size: usize, n: u64) -> Result<f64, String> {
    let args = vec![
        kv("transport", "threads"),
        kv("role", "threads"),
        kv(
            "kind",
            if transport == "threads-chan" {
                "chan"
            } else {
                "aq"
            },
        ),
        kv("size", size),
        kv("n", n),
        kv("tx", 1),
        kv("rx", 1),
        kv("slots", slots()),
        kv("cpu", -1),
    ];
    let lines = run_group(vec![args], Vec::new(), None)?;
    let v: Vec<u64> = lines[0]
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    match v[..] {
        [t0, t1, count, sum] if count == n && sum == expected_sum(1, n) => {
            Ok(n as f64 / ((t1.saturating_sub(t0)) as f64 / 1e9))
        }
        [_, _, count, _] => Err(format!("integrity: {count} of {n} messages")),
        _ => Err(format!("unexpected result {:?}", lines[0])),
    }
}

/// `(count, checksum)` from a consumer's `T1 <ns> <count> <sum>` line.
fn tally(line: &str) -> Result<(u64, u64), String> {
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    match v[..] {
        [_, count, sum] => Ok((count, sum)),
        _ => Err(format!("unexpected result {line:?}")),
    }
}

/// The checksum of every message of `producers` producers × `n`.
fn expected_sum(producers: u64, n: u64) -> u64 {
    (0..producers)
        .flat_map(|p| (0..n).map(move |s| p << 40 | s))
        .fold(0u64, |a, v| a.wrapping_add(crate::child::mix(v)))
}

/// The M workload: 3 producer processes → 2 consumer processes (or
/// threads, for the in-process yardstick), `n` messages per producer.
fn many(transport: &'static str, n: u64) -> Result<f64, String> {
    const P: u64 = 3;
    const C: usize = 2;
    let size = 64;
    let base = |role: &str| {
        vec![
            kv("transport", transport),
            kv("size", size),
            kv("n", n),
            kv("role", role),
            kv("cpu", -1),
        ]
    };
    let mut args = Vec::new();
    let mut close = Vec::new();
    let mut holder: Option<ringway::mpmc::Receiver> = None;
    match transport {
        "ringway-mpmc" | "ringway-mpmc-batch" => {
            let name = unique("m");
            holder = Some(
                ringway::mpmc::Receiver::create(&name, slots(), size).map_err(|e| e.to_string())?,
            );
            for p in 0..P {
                let mut a = base("tx");
                a.extend([kv("name", &name), kv("p", p)]);
                args.push(a);
            }
            for _ in 0..C {
                let mut a = base("rx");
                a.push(kv("name", &name));
                args.push(a);
            }
        }
        "pipe-shared" => {
            let (r, w) = fd_pair("pipe");
            size_kernel_buffer("pipe", [&r, &w], size)?;
            for p in 0..P {
                let mut a = base("tx");
                a.extend([
                    kv("fd", w.as_raw_fd()),
                    kv("p", p),
                    kv("close", r.as_raw_fd()),
                ]);
                args.push(a);
            }
            for _ in 0..C {
                let mut a = base("rx");
                a.extend([kv("fd", r.as_raw_fd()), kv("close", w.as_raw_fd())]);
                args.push(a);
            }
            close = vec![r, w];
        }
        "threads" => {
            let mut a = base("threads");
            a.extend([kv("tx", P), kv("rx", C), kv("slots", slots())]);
            args.push(a);
        }
        _ => unreachable!(),
    }
    // Consumers that read a pipe until end-of-file must not share the
    // producers' write end: each child closes the fds it does not use.
    let lines = run_group(args, close, holder)?;
    let (t0, t1, count, sum) = if transport == "threads" {
        let v: Vec<u64> = lines[0]
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match v[..] {
            [t0, t1, count, sum] => (t0, t1, count, sum),
            _ => return Err(format!("unexpected result {:?}", lines[0])),
        }
    } else {
        let t0 = lines[..P as usize]
            .iter()
            .map(|l| value(l, "T0"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut t1 = 0;
        let (mut count, mut sum) = (0u64, 0u64);
        for l in &lines[P as usize..] {
            t1 = t1.max(
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
            let (c, s) = tally(l)?;
            count += c;
            sum = sum.wrapping_add(s);
        }
        (t0.into_iter().min().unwrap_or(0), t1, count, sum)
    };
    if count != P * n || sum != expected_sum(P, n) {
        return Err(format!(
            "integrity: {count} of {} messages, checksum {}",
            P * n,
            if sum == expected_sum(P, n) {
                "ok"
            } else {
                "wrong"
            }
        ));
    }
    Ok((P * n) as f64 / ((t1.saturating_sub(t0)) as f64 / 1e9))
}

/// Round-trip latency percentiles [p50, p99, p99.9, max] in ns.
fn latency(transport: &'static str, s: Sizes, pin: bool) -> Result<[u64; 4], String> {
    let size = 64;
    let base = vec![
        kv("transport", transport),
        kv("size", size),
        kv("n", s.l_msgs),
        kv("warm", s.l_warm),
    ];
    let (mut ta, mut tb) = (base.clone(), base);
    ta.push(kv("role", "ping"));
    tb.push(kv("role", "pong"));
    ta.push(kv("cpu", if pin { 0 } else { -1 }));
    tb.push(kv("cpu", if pin { 1 } else { -1 }));
    let mut _keep: Vec<OwnedFd> = Vec::new();
    match transport {
        "ringway" | "ringway-spin" | "ringway-pipe" => {
            let name = unique("l");
            for v in [&mut ta, &mut tb] {
                v.push(kv("name", &name));
                v.push(kv("cap", ring_cap(size)));
            }
        }
        "pipe" => {
            let (r1, w1) = fd_pair("pipe");
            let (r2, w2) = fd_pair("pipe");
            size_kernel_buffer("pipe", [&r1, &w1], size)?;
            size_kernel_buffer("pipe", [&r2, &w2], size)?;
            for v in [&mut ta, &mut tb] {
                v.push(kv("r1", r1.as_raw_fd()));
                v.push(kv("w1", w1.as_raw_fd()));
                v.push(kv("r2", r2.as_raw_fd()));
                v.push(kv("w2", w2.as_raw_fd()));
            }
            _keep = vec![r1, w1, r2, w2];
        }
        "socket" => {
            let (x, y) = fd_pair("socket");
            size_kernel_buffer("socket", [&x, &y], size)?;
            ta.push(kv("fd", x.as_raw_fd()));
            tb.push(kv("fd", y.as_raw_fd()));
            _keep = vec![x, y];
        }
        "floor" => {
            let m = memfd(2 * floor::ring_bytes(slots(), size));
            for v in [&mut ta, &mut tb] {
                v.push(kv("fd", m.as_raw_fd()));
                v.push(kv("slots", slots()));
            }
            _keep = vec![m];
        }
        "cacheline" => {
            let m = memfd(128);
            for v in [&mut ta, &mut tb] {
                v.push(kv("fd", m.as_raw_fd()));
            }
            _keep = vec![m];
        }
        _ => unreachable!(),
    }
    let (la, lb) = run_pair(ta, tb, None)?;
    if lb != "DONE" {
        return Err(format!("ponger said {lb:?}"));
    }
    let mut v: Vec<u64> = la
        .strip_prefix("LAT ")
        .ok_or_else(|| format!("unexpected {la:?}"))?
        .split(',')
        .map(|x| x.parse().map_err(|_| "bad sample".to_string()))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("no samples".into());
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    Ok([q(0.50), q(0.99), q(0.999), *v.last().unwrap()])
}

/// The Python `multiprocessing` peers (benches/peers/mp_peers.py, built in
/// so the bench runs from anywhere).
const MP_PEERS: &str = include_str!("../../benches/peers/mp_peers.py");

/// Run the Python peer script in `mode` with `args`; its one result line.
fn python(mode: &str, args: &[u64]) -> Result<String, String> {
    let path = std::env::temp_dir().join(format!("ringway-mp-peers-{}.py", std::process::id()));
    std::fs::write(&path, MP_PEERS).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("python3");
    cmd.arg(&path)
        .arg(mode)
        .args(args.iter().map(u64::to_string));
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string());
    let res = out.and_then(|mut child| {
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            if let Some(_status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut s = String::new();
                std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut s)
                    .map_err(|e| e.to_string())?;
                break Ok(s.trim().to_owned());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err("timed out".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let _ = std::fs::remove_file(&path);
    let line = res?;
    match line.strip_prefix("ERR ") {
        Some(e) => Err(e.to_owned()),
        None => Ok(line),
    }
}

fn python_rate(mode: &str, n: u64) -> Result<f64, String> {
    // mp.Queue's maxsize is the ring's slots; mp.Pipe has no capacity to set.
    let l = if mode == "queue" {
        python(mode, &[n, slots() as u64])?
    } else {
        python(mode, &[n])?
    };
    l.strip_prefix("RATE ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("unexpected {l:?}"))
}

fn python_latency(warm: u64, n: u64) -> Result<[u64; 4], String> {
    let l = python("pipe_latency", &[warm, n])?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    match (l.starts_with("LAT "), &v[..]) {
        (true, [a, b, c, d]) => Ok([*a, *b, *c, *d]),
        _ => Err(format!("unexpected {l:?}")),
    }
}

fn have_python() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The C rows: label and transport.
const C_ROWS: &[(&str, &str)] = &[
    ("ringway CounterMap add (lookup each time)", "map-add"),
    ("ringway Counter handle add (cached slot)", "map-counter"),
    ("floor: bare fetch_add on one shared line", "floor-add"),
    ("ringway CounterMap under its lock", "map-locked"),
    ("floor: bare robust pthread mutex", "floor-mutex"),
];

/// Processes in the C workload.
const C_PROCS: u64 = 4;

/// The C workload: `C_PROCS` processes each doing `k` decrements of one
/// counter; operations per second (first start to last end), checked to
/// end at exactly 0.
#[allow(clippy::disallowed_types)] // the floors' counter is a raw atomic
fn counting(transport: &'static str, k: u64) -> Result<f64, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut args = Vec::new();
    let base = || {
        vec![
            kv("role", "count"),
            kv("transport", transport),
            kv("k", k),
            kv("cpu", -1),
        ]
    };
    let total = C_PROCS * k;
    let check: Box<dyn Fn() -> Result<(), String>>;
    let mut _keep = Vec::new();
    if transport.starts_with("map") {
        let name = unique("c");
        let map = ringway::counters::CounterMap::create(&name, 16).map_err(|e| e.to_string())?;
        map.set("count", total as i64).map_err(|e| e.to_string())?;
        for _ in 0..C_PROCS {
            let mut a = base();
            a.push(kv("name", &name));
            args.push(a);
        }
        check = Box::new(move || match map.get("count") {
            Ok(Some(0)) => Ok(()),
            other => Err(format!("integrity: count ended at {other:?}, not 0")),
        });
    } else {
        let fd = memfd(256);
        let mapping = memmap2::MmapOptions::new()
            .len(256)
            .map_raw(&fd)
            .map_err(|e| e.to_string())?;
        let p = mapping.as_mut_ptr();
        // SAFETY: a fresh, zeroed, shared 256-byte mapping that lives as
        // long as `check` (which owns it); the counter is 8-aligned.
        let counter = unsafe { AtomicU64::from_ptr(p.wrapping_add(128).cast()) };
        counter.store(total, Ordering::Relaxed);
        init_robust_mutex(p.cast())?;
        for _ in 0..C_PROCS {
            let mut a = base();
            a.push(kv("fd", fd.as_raw_fd()));
            args.push(a);
        }
        _keep.push(fd);
        check = Box::new(move || {
            let _m = &mapping;
            match counter.load(Ordering::Relaxed) {
                0 => Ok(()),
                v => Err(format!("integrity: count ended at {v}, not 0")),
            }
        });
    }
    let lines = run_group(args, Vec::new(), None)?;
    let (mut t0, mut t1) = (u64::MAX, 0);
    for l in &lines {
        let v: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match v[..] {
            [a, b] => {
                t0 = t0.min(a);
                t1 = t1.max(b);
            }
            _ => return Err(format!("unexpected {l:?}")),
        }
    }
    check()?;
    Ok(total as f64 / ((t1.saturating_sub(t0)) as f64 / 1e9))
}

/// A process-shared robust mutex at `m` (zeroed shared memory).
fn init_robust_mutex(m: *mut libc::pthread_mutex_t) -> Result<(), String> {
    // SAFETY: zeroed storage for pthread_mutexattr_init.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is valid storage; each call below gets it initialised.
    let rc = unsafe { libc::pthread_mutexattr_init(&mut attr) };
    // SAFETY: as above.
    let rc =
        rc | unsafe { libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) };
    // SAFETY: as above.
    let rc =
        rc | unsafe { libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST) };
    // SAFETY: `m` points to 256 bytes of zeroed shared memory nobody uses
    // yet; `attr` is initialised.
    let rc = rc | unsafe { libc::pthread_mutex_init(m, &attr) };
    if rc == 0 {
        Ok(())
    } else {
        Err("pthread mutex init failed".into())
    }
}

/// CPU used by a receiver blocked on an empty ring, in % of one core.
fn idle_cpu() -> Result<f64, String> {
    let name = unique("idle");
    let _tx = ringway::spsc::Producer::create(&name, 4096).map_err(|e| e.to_string())?;
    let ms = 2000;
    let args = vec![
        kv("transport", "idle"),
        kv("role", "idle"),
        kv("name", &name),
        kv("ms", ms),
        kv("cpu", -1),
    ];
    let lines = run_group(vec![args], Vec::new(), None)?;
    let us = value(&lines[0], "IDLE")?;
    Ok(us as f64 / (ms as f64 * 1000.0) * 100.0)
}

/// One row of the T/L table.
struct Spec {
    label: &'static str,
    transport: &'static str,
    /// Runs T64/T8.
    t: bool,
    /// Runs L.
    l: bool,
    /// L unpinned whatever `--no-pin` says.
    unpinned: bool,
}

const fn row(label: &'static str, transport: &'static str, t: bool, l: bool) -> Spec {
    Spec {
        label,
        transport,
        t,
        l,
        unpinned: false,
    }
}

const fn unpinned(label: &'static str, transport: &'static str) -> Spec {
    Spec {
        label,
        transport,
        t: false,
        l: true,
        unpinned: true,
    }
}

/// The T/L rows, in display order.
const ROWS: &[Spec] = &[
    row("ringway spsc, per message", "ringway", true, true),
    row("ringway spsc, batched", "ringway-batch", true, false),
    row("ringway spsc, spin mode", "ringway-spin", false, true),
    unpinned("ringway spsc, per message, unpinned", "ringway"),
    row("ringway mpmc, 1 -> 1", "ringway-mpmc", true, false),
    row("ringway Pipe, send_bytes", "ringway-pipe", true, true),
    row(
        "ringway Pipe, typed send ([u64; 8])",
        "ringway-pipe-typed",
        true,
        false,
    ),
    row("crossbeam-channel [threads]", "threads-chan", true, false),
    row("crossbeam ArrayQueue [threads]", "threads-aq", true, false),
    row("pipe, per message", "pipe", true, true),
    row("pipe, 64 KiB batches", "pipe-batch", true, false),
    unpinned("pipe, per message, unpinned", "pipe"),
    row("socketpair, per message", "socket", true, true),
    row("socketpair, 64 KiB batches", "socket-batch", true, false),
    row("floor: minimal spinning shm ring", "floor", true, true),
    row("floor: one cache line ping-pong", "cacheline", false, true),
    unpinned("floor: cache line ping-pong, unpinned", "cacheline"),
];

/// The rows of the `peers` feature (heavy dependencies, off by default).
const PEER_ROWS: &[Spec] = &[
    row(
        "ipc-channel 0.23 (typed Vec<u8>)",
        "ipc-channel",
        true,
        false,
    ),
    row("ipmpsc 0.5 (shm ring, Vec<u8>)", "ipmpsc", true, false),
    row(
        "iceoryx2 0.10 (pub-sub, busy-poll)",
        "iceoryx2",
        true,
        false,
    ),
];

/// Every T/L row this build has, in display order: the peers go before the
/// kernel's transports.
fn all_rows() -> impl Iterator<Item = &'static Spec> {
    let split = ROWS
        .iter()
        .position(|r| r.transport == "pipe")
        .unwrap_or(ROWS.len());
    let peers: &'static [Spec] = if cfg!(feature = "peers") {
        PEER_ROWS
    } else {
        &[]
    };
    ROWS[..split].iter().chain(peers).chain(&ROWS[split..])
}

/// The M rows: label and transport.
const M_ROWS: &[(&str, &str)] = &[
    ("ringway mpmc [procs]", "ringway-mpmc"),
    ("ringway mpmc, batches of 32 [procs]", "ringway-mpmc-batch"),
    ("pipe shared by all [procs]", "pipe-shared"),
    ("crossbeam ArrayQueue [threads]", "threads"),
];

impl Options {
    fn wanted(&self, w: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x.eq_ignore_ascii_case(w)))
    }
    fn row_wanted(&self, transport: &str, label: &str) -> bool {
        self.rows.as_ref().is_none_or(|w| {
            w.iter().any(|x| {
                let x = x.to_ascii_lowercase();
                transport.contains(x.as_str()) || label.to_ascii_lowercase().contains(x.as_str())
            })
        })
    }
    fn sizes(&self) -> Sizes {
        let mut s = if self.full {
            Sizes {
                t_msgs: 10_000_000,
                l_warm: 20_000,
                l_msgs: 200_000,
            }
        } else {
            Sizes {
                t_msgs: 2_000_000,
                l_warm: 2_000,
                l_msgs: 20_000,
            }
        };
        if let Some(n) = self.messages {
            s.t_msgs = n.max(1);
        }
        if let Some(n) = self.round_trips {
            s.l_msgs = n.max(1);
            s.l_warm = (n / 10).max(1);
        }
        s
    }
}

/// Records one figure: table, row, column, value.
type Put<'a> = dyn FnMut(&'static str, &str, &'static str, Result<f64, String>) + 'a;

/// Where the host has put our two CPUs right now: the p50 round trip of a
/// cache line between two processes (a few thousand round trips, ~1 ms).
/// On this kind of VM it is bimodal (~120 ns, or ~3x that when the vCPUs
/// sit on distant cores), and every cross-core figure moves with it, so
/// each measurement is preceded by this probe (see `report::merge`).
fn placement(pin: bool) -> Result<f64, String> {
    let probe = Sizes {
        t_msgs: 0,
        l_warm: 200,
        l_msgs: 3000,
    };
    latency("cacheline", probe, pin).map(|v| v[0] as f64)
}

/// One pass over every chosen workload; `progress` is told each step.
fn measure_once(opts: &Options, py: bool, progress: &mut dyn FnMut(&str, &str)) -> Vec<Cell> {
    let sizes = opts.sizes();
    let pin = opts.pin;
    let mut cells = Vec::new();
    let mut put =
        |table: &'static str, label: &str, col: &'static str, val: Result<f64, String>| {
            cells.push(Cell {
                table,
                label: label.to_owned(),
                col,
                val,
            })
        };
    let lat_cells = |put: &mut Put<'_>, label: &str, r: Result<[u64; 4], String>| {
        for (i, col) in ["p50", "p99", "p99.9", "max"].into_iter().enumerate() {
            put(
                "T",
                label,
                col,
                r.as_ref().map(|v| v[i] as f64).map_err(Clone::clone),
            );
        }
    };
    for s in all_rows().filter(|s| opts.row_wanted(s.transport, s.label)) {
        let lat_pin = pin && !s.unpinned;
        for (w, size) in [("T64", 64), ("T8", 8)] {
            if s.t && opts.wanted(w) {
                progress(w, s.label);
                put("probe", s.label, w, placement(pin));
                put(
                    "T",
                    s.label,
                    w,
                    throughput(s.transport, size, sizes.t_msgs, pin),
                );
            }
        }
        if s.l && opts.wanted("L") {
            progress("L", s.label);
            put("probe", s.label, "L", placement(lat_pin));
            let r = latency(s.transport, sizes, lat_pin);
            lat_cells(&mut put, s.label, r);
        }
    }
    if py {
        // Python is ~100x slower: a tenth of the messages (full: 1M).
        let n = (sizes.t_msgs / 10).clamp(1, 1_000_000);
        if opts.wanted("T64") {
            put("probe", "Python mp.Queue", "T64", placement(false));
            put("probe", "Python Pipe.send_bytes", "T64", placement(false));
            progress("T64", "Python mp.Queue");
            put("T", "Python mp.Queue", "T64", python_rate("queue", n));
            progress("T64", "Python Pipe.send_bytes");
            put("T", "Python Pipe.send_bytes", "T64", python_rate("pipe", n));
        }
        if opts.wanted("L") {
            progress("L", "Python Pipe.send_bytes");
            put("probe", "Python Pipe.send_bytes", "L", placement(false));
            let r = python_latency(sizes.l_warm, (sizes.l_msgs / 2).max(1));
            lat_cells(&mut put, "Python Pipe.send_bytes", r);
        }
    }
    if opts.wanted("M") {
        for (label, transport) in M_ROWS {
            if opts.row_wanted(transport, label) {
                progress("M", label);
                put(
                    "M",
                    label,
                    "rate",
                    many(transport, (sizes.t_msgs / 3).max(1)),
                );
            }
        }
    }
    if opts.wanted("C") {
        let k = sizes.t_msgs * 2;
        for (label, t) in C_ROWS {
            if opts.row_wanted(t, label) {
                progress("C", label);
                // The locked rows do a tenth of the work.
                let locked = t.ends_with("locked") || t.ends_with("mutex");
                put(
                    "C",
                    label,
                    "rate",
                    counting(t, if locked { k / 10 } else { k }.max(1)),
                );
            }
        }
        if py {
            progress("C", "Python Manager().dict() + Lock");
            let r = python("counter", &[C_PROCS, 500]).and_then(|v| {
                v.strip_prefix("RATE ")
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(|| format!("unexpected {v:?}"))
            });
            put("C", "Python Manager().dict() + Lock", "rate", r);
        }
    }
    if opts.wanted("L") && opts.rows.is_none() {
        progress("idle", "receiver blocked on an empty ring");
        put("idle", "receiver blocked 2 s (adaptive)", "pct", idle_cpu());
    }
    cells
}

/// Run the benchmark `opts.repeat` times and print the merged tables.
/// With `opts.check`, the number of BENCH.md targets not met (else 0).
pub(crate) fn run(opts: &Options) -> Result<usize, String> {
    set_config(opts);
    // Whatever ends the run (a failed row, a panic, Ctrl-C), what it
    // created in /dev/shm goes.
    cleanup::on_interrupt_clean_up("bench");
    let _guard = cleanup::Guard;
    let py_wanted = opts.row_wanted("python", "python");
    let py = py_wanted && have_python();
    let steps_per_run = {
        let mut n = 0;
        measure_plan(opts, py, &mut |_, _| n += 1);
        n
    };
    let bar = indicatif::ProgressBar::new((steps_per_run * opts.repeat) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed:>4}] {bar:30} {pos:>3}/{len} {msg}")
            .map_err(|e| e.to_string())?,
    );
    if opts.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    for r in 0..opts.repeat {
        let mut progress = |what: &str, label: &str| {
            bar.inc(1);
            let run = if opts.repeat > 1 {
                format!("run {}/{} ", r + 1, opts.repeat)
            } else {
                String::new()
            };
            bar.set_message(format!("{run}{what:<4} {label}"));
        };
        runs.push(measure_once(opts, py, &mut progress));
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let sheet = report::merge(&runs);
    let meta = Meta::new(opts, secs);
    if opts.json {
        let v = report::json(&sheet, meta.json(opts));
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        print_all(
            &sheet,
            opts,
            &meta,
            py_wanted && !py,
            sheet.placement(&runs),
        );
        print_run_placements(&runs, opts.markdown);
    }
    if let Some(dir) = &opts.plot {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("ringway-bench.svg");
        let title = format!("ringway bench, {}, {}", meta.date, meta.machine);
        std::fs::write(&path, report::svg(&sheet, &title))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    // A figure that failed is a failed run (integrity or a peer's error).
    let failed: Vec<String> = sheet
        .0
        .iter()
        .filter_map(|m| {
            m.val
                .as_ref()
                .err()
                .map(|e| format!("{} / {}: {e}", m.label, m.col))
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "{} figure(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ));
    }
    if !opts.check {
        return Ok(0);
    }
    let (table, missed) = check::check(&sheet);
    if opts.markdown {
        println!("\n**Targets (BENCH.md), this run**\n");
    } else {
        println!("\nTargets (BENCH.md), this run");
    }
    print!("{table}");
    Ok(missed)
}

/// The steps [`measure_once`] will take, without running them (for the
/// progress bar's length).
fn measure_plan(opts: &Options, py: bool, step: &mut dyn FnMut(&str, &str)) {
    for s in all_rows().filter(|s| opts.row_wanted(s.transport, s.label)) {
        for w in ["T64", "T8"] {
            if s.t && opts.wanted(w) {
                step(w, s.label);
            }
        }
        if s.l && opts.wanted("L") {
            step("L", s.label);
        }
    }
    if py {
        for _ in 0..(2 * opts.wanted("T64") as usize
            + opts.wanted("L") as usize
            + opts.wanted("C") as usize)
        {
            step("py", "");
        }
    }
    if opts.wanted("M") {
        for (label, t) in M_ROWS.iter().filter(|(l, t)| opts.row_wanted(t, l)) {
            step(t, label);
        }
    }
    if opts.wanted("C") {
        for (label, t) in C_ROWS.iter().filter(|(l, t)| opts.row_wanted(t, l)) {
            step(t, label);
        }
    }
    if opts.wanted("L") && opts.rows.is_none() {
        step("idle", "");
    }
}

/// When, where and how the figures were taken.
struct Meta {
    date: String,
    machine: String,
    command: String,
    secs: f64,
    sizes: Sizes,
}

impl Meta {
    fn new(opts: &Options, secs: f64) -> Meta {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| (kb + (1 << 19)) >> 20);
        Meta {
            date: today(),
            machine: format!("{cpus} CPUs ({cpu}), {mem_gib} GiB, Linux {kernel}"),
            command: std::iter::once("ringway".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" "),
            secs,
            sizes: opts.sizes(),
        }
    }

    fn json(&self, opts: &Options) -> serde_json::Value {
        serde_json::json!({
            "date": self.date,
            "machine": self.machine,
            "command": self.command,
            "seconds": self.secs,
            "repeat": opts.repeat,
            "pinned": opts.pin,
            "mode": if opts.spin { "spin" } else { "adaptive" },
            "slots": slots(),
            "messages_per_t_row": self.sizes.t_msgs,
            "round_trips_per_l_row": self.sizes.l_msgs,
        })
    }
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

fn print_all(
    sheet: &Sheet,
    opts: &Options,
    meta: &Meta,
    python_missing: bool,
    (slow, probed, fastest): (usize, usize, f64),
) {
    let md = opts.markdown;
    let title = |t: &str| {
        if md {
            println!("\n**{t}**\n");
        } else {
            println!("\n{t}");
        }
    };
    let note = |t: &str| println!("{}{t}", if md { "\n" } else { "" });
    if md {
        println!(
            "Measured {} with `{}` on {}; {} run(s), {:.0} s.",
            meta.date, meta.command, meta.machine, opts.repeat, meta.secs
        );
    } else {
        println!(
            "ringway bench, {}: {} run(s) in {:.0} s on {}",
            meta.date, opts.repeat, meta.secs, meta.machine
        );
    }
    println!(
        "T: {} messages per row, {} slots in every ring and queue (pipes and sockets: {}; ipc-channel, mp.Pipe: no capacity to set), producer/consumer {}pinned, {} mode; L: {} round trips after {} warm-up.{}",
        meta.sizes.t_msgs,
        slots(),
        if CONFIG.get().is_some_and(|c| c.kernel_buffers) {
            "kernel buffers of as many messages"
        } else {
            "the kernel's default buffers"
        },
        if opts.pin { "" } else { "not " },
        if opts.spin { "spin" } else { "adaptive" },
        meta.sizes.l_msgs,
        meta.sizes.l_warm,
        if opts.repeat > 1 { " Figures are medians; ±: half the range over the runs." } else { "" }
    );
    if probed > 0 {
        note(&format!(
            "Placement: before each T/L figure, a cache-line round trip between the two CPUs (fastest {fastest:.0} ns). \
             {slow} of {probed} figures were taken while it was over {:.1}x that (the host had put the vCPUs far apart; \
             everything cross-core is ~3x slower then): {}",
            report::SLOW,
            if opts.repeat > 1 {
                "those runs are set aside where a figure has others; † marks figures that had none."
            } else {
                "they are marked †; compare them only with each other, or run --repeat 3."
            }
        ));
    }
    if python_missing {
        note("python3 with multiprocessing not found: the Python rows are skipped.");
    }
    let labels = sheet.labels("T");
    if !labels.is_empty() {
        let base_part = opts.baseline.as_deref().unwrap_or("floor: minimal");
        let base_label = labels.iter().find(|l| l.contains(base_part)).copied();
        let base64 = sheet.find("T", base_part, "T64");
        let base8 = sheet.find("T", base_part, "T8");
        let line_p50 = sheet.find("T", "cache line ping-pong", "p50");
        let mut rows = Vec::new();
        for l in &labels {
            let g = |c| sheet.get("T", l, c);
            let lat = match (g("p50"), g("p99"), g("p99.9"), g("max")) {
                (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), Some(Ok(d))) => {
                    format!(
                        "{:.0} / {:.0} / {:.0} / {:.0}{}",
                        a.med,
                        b.med,
                        c.med,
                        d.med,
                        report::spread(a)
                    ) + report::flag(sheet.entry("T", l, "p50"))
                }
                (Some(Err(e)), ..) => format!("FAILED ({e})"),
                _ => "-".into(),
            };
            rows.push(vec![
                l.to_string(),
                report::rate(g("T64")) + report::flag(sheet.entry("T", l, "T64")),
                report::ratio(g("T64"), base64),
                report::rate(g("T8")) + report::flag(sheet.entry("T", l, "T8")),
                report::ratio(g("T8"), base8),
                lat,
                report::inverse_ratio(g("p50"), line_p50),
            ]);
        }
        title(&format!(
            "T and L: one producer -> one consumer process; ratios against \"{}\" and the cache line",
            base_label.unwrap_or(base_part)
        ));
        print!(
            "{}",
            report::table(
                &[
                    "transport",
                    "T64",
                    "vs base",
                    "T8",
                    "vs base",
                    "L p50 / p99 / p99.9 / max ns",
                    "p50 vs line"
                ],
                &rows
            )
        );
        note("T: messages/s from the producer's first send to the consumer's last receive, every message checked. L: round trip of one 64 B message.");
    }
    if !sheet.labels("M").is_empty() {
        title("M: 3 producers -> 2 consumers, 64 B messages, unpinned, every message checked");
        let bases = [
            ("vs ArrayQueue", sheet.find("M", "ArrayQueue", "rate")),
            ("vs pipe", sheet.find("M", "pipe", "rate")),
        ];
        print!("{}", rate_table(sheet, "M", "transport", &bases));
    }
    if !sheet.labels("C").is_empty() {
        title(&format!(
            "C: {C_PROCS} processes decrement one counter, unpinned; the count is checked to end at 0"
        ));
        let bases = [
            ("vs add", sheet.find("C", "bare fetch_add", "rate")),
            ("vs mutex", sheet.find("C", "bare robust", "rate")),
            ("vs Python", sheet.find("C", "Python", "rate")),
        ];
        print!("{}", rate_table(sheet, "C", "counter", &bases));
    }
    print_vs_python(sheet, md);
    if let Some(r) = sheet.0.iter().find(|m| m.table == "idle") {
        match &r.val {
            Ok(s) => note(&format!(
                "Idle: a receiver blocked 2 s on an empty ring (adaptive mode) used {:.3} % of a core.",
                s.med
            )),
            Err(e) => note(&format!("Idle: measurement FAILED ({e})")),
        }
    }
}

/// One line labelling each run's CPU placement (fast or slow), from the
/// cache-line probes taken before its T and L figures. BENCH.md's machines
/// have a ~211 ns cache-line round trip in fast placement: when even the
/// fastest probe is far above that, every run may have been slow.
fn print_run_placements(runs: &[Vec<Cell>], md: bool) {
    const REFERENCE_NS: f64 = 211.0;
    let p = Sheet::run_placements(runs);
    let parts: Vec<String> = p
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.map(|(ns, fast)| {
                format!(
                    "run {} {} (cache line p50 {ns:.0} ns)",
                    i + 1,
                    if fast { "fast" } else { "SLOW" }
                )
            })
        })
        .collect();
    if parts.is_empty() {
        return;
    }
    let fastest = p
        .iter()
        .flatten()
        .map(|x| x.0)
        .fold(f64::INFINITY, f64::min);
    let caveat = if fastest > REFERENCE_NS * report::SLOW {
        format!(
            " Even the fastest run is over {:.1}x BENCH.md's fast-placement {REFERENCE_NS:.0} ns: all may be slow; do not quote these ratios.",
            report::SLOW
        )
    } else {
        String::new()
    };
    println!(
        "{}Placement per run: {}.{caveat}",
        if md { "\n" } else { "" },
        parts.join(", ")
    );
}

/// A table of `table`'s rates, each divided by every base.
fn rate_table(sheet: &Sheet, table: &str, first: &str, bases: &[(&str, Option<f64>)]) -> String {
    let rows: Vec<Vec<String>> = sheet
        .labels(table)
        .iter()
        .map(|l| {
            let g = sheet.get(table, l, "rate");
            let mut row = vec![l.to_string(), report::rate(g)];
            row.extend(bases.iter().map(|b| report::ratio(g, b.1)));
            row
        })
        .collect();
    let mut headers = vec![first, "rate"];
    headers.extend(bases.iter().map(|b| b.0));
    report::table(&headers, &rows)
}

/// Ratios against Python's `multiprocessing`, measured in this same run.
fn print_vs_python(sheet: &Sheet, md: bool) {
    let (Some(q), Some(p)) = (
        sheet.find("T", "Python mp.Queue", "T64"),
        sheet.find("T", "Python Pipe.send_bytes", "T64"),
    ) else {
        return;
    };
    let lines = [
        (
            "ringway spsc per message vs mp.Queue",
            sheet.find("T", "ringway spsc, per message", "T64"),
            q,
        ),
        (
            "ringway Pipe.send_bytes vs Pipe.send_bytes",
            sheet.find("T", "ringway Pipe, send_bytes", "T64"),
            p,
        ),
        (
            "ringway Pipe typed send vs Pipe.send_bytes",
            sheet.find("T", "ringway Pipe, typed", "T64"),
            p,
        ),
        (
            "ringway mpmc 3->2 per message vs mp.Queue 1->1",
            sheet.find("M", "ringway mpmc [procs]", "rate"),
            q,
        ),
        (
            "ringway mpmc 3->2 batched vs mp.Queue 1->1",
            sheet.find("M", "ringway mpmc, batches", "rate"),
            q,
        ),
    ];
    let rows: Vec<Vec<String>> = lines
        .iter()
        .filter_map(|(what, v, base)| {
            v.map(|v| vec![what.to_string(), format!("{:.1}x", v / base)])
        })
        .collect();
    if md {
        println!("\n**Against Python multiprocessing (64 B messages, same run)**\n");
    } else {
        println!("\nAgainst Python multiprocessing (64 B messages, same run)");
    }
    print!("{}", report::table(&["ringway", "ratio"], &rows));
}
