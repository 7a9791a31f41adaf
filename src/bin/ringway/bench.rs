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

use crate::child::STREAM_BATCH;
use crate::floor;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Messages the rings hold (BENCH.md: ~1024 wherever configurable).
const SLOTS: usize = 1024;
/// No run may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
struct Sizes {
    t_msgs: u64,
    l_warm: u64,
    l_msgs: u64,
}

/// What one row measured.
#[derive(Clone, Debug, Default)]
struct Row {
    label: &'static str,
    t64: Option<Result<f64, String>>,
    t8: Option<Result<f64, String>>,
    lat: Option<Result<[u64; 4], String>>,
}

/// Options of `ringway bench`.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub(crate) full: bool,
    pub(crate) pin: bool,
    pub(crate) only: Option<Vec<String>>,
    /// Keep only rows whose transport name contains one of these.
    pub(crate) rows: Option<Vec<String>>,
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
    Spawned {
        child,
        stdin,
        lines,
    }
}

impl Spawned {
    fn line(&self, deadline: Instant) -> Result<String, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) if l.starts_with("ERR ") => Err(l[4..].to_owned()),
            Ok(l) => Ok(l),
            Err(mpsc::RecvTimeoutError::Timeout) => Err("timed out".into()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("child died".into()),
        }
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
/// copies of fds whose end-of-file the children rely on).
fn run_group(args: Vec<Vec<String>>, close: Vec<OwnedFd>) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + RUN_LIMIT;
    let mut kids: Vec<Spawned> = args.iter().map(|a| spawn(a)).collect();
    drop(close);
    for k in &kids {
        let l = k.line(deadline)?;
        if l != "READY" {
            return Err(format!("expected READY, got {l:?}"));
        }
    }
    for k in &mut kids {
        writeln!(k.stdin, "GO").map_err(|e| e.to_string())?;
    }
    kids.iter().map(|k| k.line(deadline)).collect()
}

/// [`run_group`] for a pair.
fn run_pair(a: Vec<String>, b: Vec<String>) -> Result<(String, String), String> {
    let mut v = run_group(vec![a, b], Vec::new())?;
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

/// Capacity in bytes of a ringway ring holding `SLOTS` messages of `size`.
fn ring_cap(size: usize) -> usize {
    SLOTS * (8 + size.div_ceil(8) * 8)
}

/// Throughput of `transport` for `n` messages of `size` bytes.
fn throughput(transport: &'static str, size: usize, n: u64, pin: bool) -> Result<f64, String> {
    let mut base = vec![kv("transport", transport), kv("size", size), kv("n", n)];
    let (mut ta, mut tb) = (base.clone(), std::mem::take(&mut base));
    ta.push(kv("role", "tx"));
    tb.push(kv("role", "rx"));
    ta.push(kv("cpu", if pin { 0 } else { -1 }));
    tb.push(kv("cpu", if pin { 1 } else { -1 }));
    let mut _keep: Vec<OwnedFd> = Vec::new();
    // Keeps an mpmc queue in existence without being a sender (so the
    // consumer sees the end of the stream when the producer drops).
    let mut holder: Option<ringway::mpmc::Receiver> = None;
    match transport {
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
                ringway::mpmc::Receiver::create(&name, SLOTS, size).map_err(|e| e.to_string())?,
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
            ta.push(kv("fd", w.as_raw_fd()));
            tb.push(kv("fd", r.as_raw_fd()));
            _keep = vec![r, w];
        }
        "floor" => {
            let m = memfd(floor::ring_bytes(SLOTS, size));
            for v in [&mut ta, &mut tb] {
                v.push(kv("fd", m.as_raw_fd()));
                v.push(kv("slots", SLOTS));
            }
            _keep = vec![m];
        }
        _ => unreachable!(),
    }
    let (la, lb) = run_pair(ta, tb)?;
    drop(holder);
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
                ringway::mpmc::Receiver::create(&name, SLOTS, size).map_err(|e| e.to_string())?,
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
            a.extend([kv("tx", P), kv("rx", C), kv("slots", SLOTS)]);
            args.push(a);
        }
        _ => unreachable!(),
    }
    // Consumers that read a pipe until end-of-file must not share the
    // producers' write end: each child closes the fds it does not use.
    let lines = run_group(args, close)?;
    drop(holder);
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
            ta.push(kv("fd", x.as_raw_fd()));
            tb.push(kv("fd", y.as_raw_fd()));
            _keep = vec![x, y];
        }
        "floor" => {
            let m = memfd(2 * floor::ring_bytes(SLOTS, size));
            for v in [&mut ta, &mut tb] {
                v.push(kv("fd", m.as_raw_fd()));
                v.push(kv("slots", SLOTS));
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
    let (la, lb) = run_pair(ta, tb)?;
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
const MP_PEERS: &str = include_str!("../../../benches/peers/mp_peers.py");

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
    let l = python(mode, &[n])?;
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

/// The rows, in display order, and which workloads each runs.
const ROWS: &[(&str, &str, bool, bool)] = &[
    // (label, transport for T, runs T, runs L)
    ("ringway spsc, per message", "ringway", true, true),
    ("ringway spsc, batched", "ringway-batch", true, false),
    ("ringway spsc, spin mode", "ringway-spin", false, true),
    ("ringway mpmc, 1 -> 1", "ringway-mpmc", true, false),
    ("ringway Pipe, send_bytes", "ringway-pipe", true, true),
    (
        "ringway Pipe, typed send ([u64; 8])",
        "ringway-pipe-typed",
        true,
        false,
    ),
    ("pipe, per message", "pipe", true, true),
    ("pipe, 64 KiB batches", "pipe-batch", true, false),
    ("socketpair, per message", "socket", true, true),
    ("socketpair, 64 KiB batches", "socket-batch", true, false),
    ("floor: minimal spinning shm ring", "floor", true, true),
    ("floor: one cache line ping-pong", "cacheline", false, true),
];

fn fmt_rate(r: Option<&Result<f64, String>>) -> String {
    match r {
        None => "-".into(),
        Some(Ok(v)) if *v < 100_000.0 => format!("{:.2} k/s", v / 1e3),
        Some(Ok(v)) => format!("{:.2} M/s", v / 1e6),
        Some(Err(e)) => format!("FAILED ({e})"),
    }
}

fn fmt_ratio(r: Option<&Result<f64, String>>, base: Option<f64>) -> String {
    match (r, base) {
        (Some(Ok(v)), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "-".into(),
    }
}

/// Run the benchmark and print the table.
pub(crate) fn run(opts: &Options) {
    let sizes = if opts.full {
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
    let wanted = |w: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x.eq_ignore_ascii_case(w)))
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = opts.pin && cpus >= 2;
    eprintln!(
        "ringway bench: T64/T8 {} messages, L {}+{} round trips of 64 B, {} cpus, {}pinned; {} B user-space batches for streams",
        sizes.t_msgs,
        sizes.l_warm,
        sizes.l_msgs,
        cpus,
        if pin { "" } else { "not " },
        STREAM_BATCH
    );
    let rows_wanted: Vec<_> = ROWS
        .iter()
        .filter(|r| {
            opts.rows
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| r.1.contains(x.as_str())))
        })
        .copied()
        .collect();
    let steps: usize = rows_wanted
        .iter()
        .map(|r| {
            (r.2 as usize) * (wanted("T64") as usize + wanted("T8") as usize)
                + (r.3 && wanted("L")) as usize
        })
        .sum();
    let mut step = 0;
    let started = Instant::now();
    let mut progress = |what: &str, label: &str| {
        step += 1;
        eprint!(
            "\r\x1b[2K[{step:>2}/{steps}] {:>5.1}s  {what:<4} {label}",
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    };
    let mut rows = Vec::new();
    for &(label, transport, t, l) in &rows_wanted {
        let mut row = Row {
            label,
            ..Row::default()
        };
        if t && wanted("T64") {
            progress("T64", label);
            row.t64 = Some(throughput(transport, 64, sizes.t_msgs, pin));
        }
        if t && wanted("T8") {
            progress("T8", label);
            row.t8 = Some(throughput(transport, 8, sizes.t_msgs, pin));
        }
        if l && wanted("L") {
            progress("L", label);
            row.lat = Some(latency(transport, sizes, pin));
        }
        rows.push(row);
    }
    let py = opts
        .rows
        .as_ref()
        .is_none_or(|w| w.iter().any(|x| "python".contains(x.as_str())));
    if py && have_python() {
        // Python is ~100x slower: a tenth of the messages (full: 1M).
        let n = (sizes.t_msgs / 10).min(1_000_000);
        let mut q = Row {
            label: "Python mp.Queue",
            ..Row::default()
        };
        let mut pp = Row {
            label: "Python Pipe.send_bytes",
            ..Row::default()
        };
        if wanted("T64") {
            progress("T64", q.label);
            q.t64 = Some(python_rate("queue", n));
            progress("T64", pp.label);
            pp.t64 = Some(python_rate("pipe", n));
        }
        if wanted("L") {
            progress("L", pp.label);
            pp.lat = Some(python_latency(sizes.l_warm, sizes.l_msgs / 2));
        }
        rows.push(q);
        rows.push(pp);
    } else if py {
        eprintln!("\rpython3 with multiprocessing not found: the Python rows are skipped");
    }
    let mut m_rows = Vec::new();
    if wanted("M") {
        for (label, transport) in M_ROWS {
            if opts
                .rows
                .as_ref()
                .is_some_and(|w| !w.iter().any(|x| transport.contains(x.as_str())))
            {
                continue;
            }
            progress("M", label);
            m_rows.push((*label, many(transport, sizes.t_msgs / 3)));
        }
    }
    let c_results = if wanted("C") {
        let k = sizes.t_msgs * 2;
        let c_rows: Vec<(&str, Result<f64, String>)> = C_ROWS
            .iter()
            .map(|(label, t)| {
                progress("C", label);
                // The locked rows do a tenth of the work.
                let k = if t.ends_with("locked") || t.ends_with("mutex") {
                    k / 10
                } else {
                    k
                };
                (*label, counting(t, k))
            })
            .collect();
        let python = (py && have_python()).then(|| {
            progress("C", "Python Manager().dict() + Lock");
            let v = python("counter", &[C_PROCS, 500])?;
            v.strip_prefix("RATE ")
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| format!("unexpected {v:?}"))
        });
        Some((c_rows, python))
    } else {
        None
    };
    eprintln!("\r\x1b[2Kdone in {:.1}s", started.elapsed().as_secs_f64());
    print_table(&rows);
    if !m_rows.is_empty() {
        print_many(&m_rows);
    }
    print_vs_python(&rows, &m_rows);
    if let Some((c_rows, python)) = c_results {
        print_counting(&c_rows, python);
    }
    if wanted("L") {
        match idle_cpu() {
            Ok(pct) => println!("\nIdle: a receiver blocked 2 s on an empty ring (adaptive mode) used {pct:.3} % of a core."),
            Err(e) => println!("\nIdle: measurement FAILED ({e})"),
        }
    }
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
    let lines = run_group(args, Vec::new())?;
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

fn print_counting(rows: &[(&str, Result<f64, String>)], python: Option<Result<f64, String>>) {
    let of = |t: &str| {
        rows.iter()
            .find(|r| r.0.starts_with(t))
            .and_then(|r| r.1.as_ref().ok().copied())
    };
    let (fadd, fmutex) = (of("floor: bare fetch_add"), of("floor: bare robust"));
    let py = python.as_ref().and_then(|r| r.as_ref().ok().copied());
    println!();
    println!(
        "C: {C_PROCS} processes decrement one counter, unpinned; the count is checked to end at 0"
    );
    println!(
        "| {:<42} | {:>13} | {:>9} | {:>11} | {:>9} |",
        "counter", "rate", "vs add", "vs mutex", "vs Python"
    );
    println!(
        "|{:-<44}|{:->15}|{:->11}|{:->13}|{:->11}|",
        "", "", "", "", ""
    );
    let show = |label: &str, r: &Result<f64, String>| {
        let ratio = |b: Option<f64>| fmt_ratio(Some(r), b);
        let rate = fmt_rate(Some(r));
        println!(
            "| {:<42} | {:>13} | {:>9} | {:>11} | {:>9} |",
            label,
            rate,
            ratio(fadd),
            ratio(fmutex),
            ratio(py)
        );
    };
    for (label, r) in rows {
        show(label, r);
    }
    if let Some(p) = &python {
        show("Python Manager().dict() + Lock", p);
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
    let lines = run_group(vec![args], Vec::new())?;
    let us = value(&lines[0], "IDLE")?;
    Ok(us as f64 / (ms as f64 * 1000.0) * 100.0)
}

/// Ratios against Python's `multiprocessing`, measured in this same run.
fn print_vs_python(rows: &[Row], m_rows: &[(&str, Result<f64, String>)]) {
    let t64 = |label: &str| {
        rows.iter()
            .find(|r| r.label == label)
            .and_then(|r| r.t64.as_ref())
            .and_then(|r| r.as_ref().ok().copied())
    };
    let m = |label: &str| {
        m_rows
            .iter()
            .find(|r| r.0 == label)
            .and_then(|r| r.1.as_ref().ok().copied())
    };
    let (Some(q), Some(p)) = (t64("Python mp.Queue"), t64("Python Pipe.send_bytes")) else {
        return;
    };
    println!();
    println!("Against Python multiprocessing (64 B messages, same run):");
    let line = |what: &str, v: Option<f64>, base: f64| {
        if let Some(v) = v {
            println!("  {what:<48} {:>8.1}x", v / base);
        }
    };
    line(
        "ringway spsc per message vs mp.Queue",
        t64("ringway spsc, per message"),
        q,
    );
    line(
        "ringway Pipe.send_bytes vs Pipe.send_bytes",
        t64("ringway Pipe, send_bytes"),
        p,
    );
    line(
        "ringway Pipe typed send vs Pipe.send_bytes",
        t64("ringway Pipe, typed send ([u64; 8])"),
        p,
    );
    line(
        "ringway mpmc 3->2 per message vs mp.Queue 1->1",
        m("ringway mpmc [procs]"),
        q,
    );
    line(
        "ringway mpmc 3->2 batched vs mp.Queue 1->1",
        m("ringway mpmc, batches of 32 [procs]"),
        q,
    );
}

/// The M rows: label and transport.
const M_ROWS: &[(&str, &str)] = &[
    ("ringway mpmc [procs]", "ringway-mpmc"),
    ("ringway mpmc, batches of 32 [procs]", "ringway-mpmc-batch"),
    ("pipe shared by all [procs]", "pipe-shared"),
    ("crossbeam ArrayQueue [threads]", "threads"),
];

fn print_many(rows: &[(&str, Result<f64, String>)]) {
    let of = |t: &str| {
        rows.iter()
            .find(|r| r.0.starts_with(t))
            .and_then(|r| r.1.as_ref().ok().copied())
    };
    let (aq, pipe) = (of("crossbeam"), of("pipe"));
    println!();
    println!("M: 3 producers -> 2 consumers, 64 B messages, unpinned, every message checked");
    println!(
        "| {:<34} | {:>11} | {:>13} | {:>8} |",
        "transport", "rate", "vs ArrayQueue", "vs pipe"
    );
    println!("|{:-<36}|{:->13}|{:->15}|{:->10}|", "", "", "", "");
    for (label, r) in rows {
        let ratio = |b: Option<f64>| fmt_ratio(Some(r), b);
        let rate = fmt_rate(Some(r));
        println!(
            "| {:<34} | {:>11} | {:>13} | {:>8} |",
            label,
            rate,
            ratio(aq),
            ratio(pipe)
        );
    }
}

fn print_table(rows: &[Row]) {
    let floor_row = rows.iter().find(|r| r.label.starts_with("floor: minimal"));
    let f64_of = |r: Option<&Option<Result<f64, String>>>| match r {
        Some(Some(Ok(v))) => Some(*v),
        _ => None,
    };
    let floor64 = f64_of(floor_row.map(|r| &r.t64));
    let floor8 = f64_of(floor_row.map(|r| &r.t8));
    let line_p50 = rows
        .iter()
        .find(|r| r.label.contains("cache line"))
        .and_then(|r| match &r.lat {
            Some(Ok(l)) => Some(l[0]),
            _ => None,
        });
    println!(
        "| {:<34} | {:>11} | {:>8} | {:>11} | {:>8} | {:>26} | {:>9} |",
        "transport",
        "T64",
        "vs floor",
        "T8",
        "vs floor",
        "L p50 / p99 / p99.9 / max ns",
        "p50 vs line"
    );
    println!(
        "|{:-<36}|{:->13}|{:->10}|{:->13}|{:->10}|{:->28}|{:->11}|",
        "", "", "", "", "", "", ""
    );
    for r in rows {
        let lat = match &r.lat {
            None => "-".to_string(),
            Some(Ok(l)) => format!("{} / {} / {} / {}", l[0], l[1], l[2], l[3]),
            Some(Err(e)) => format!("FAILED ({e})"),
        };
        let lr = match (&r.lat, line_p50) {
            (Some(Ok(l)), Some(b)) if b > 0 => format!("{:.2}x", l[0] as f64 / b as f64),
            _ => "-".into(),
        };
        println!(
            "| {:<34} | {:>11} | {:>8} | {:>11} | {:>8} | {:>26} | {:>9} |",
            r.label,
            fmt_rate(r.t64.as_ref()),
            fmt_ratio(r.t64.as_ref(), floor64),
            fmt_rate(r.t8.as_ref()),
            fmt_ratio(r.t8.as_ref(), floor8),
            lat,
            lr
        );
    }
    println!();
    println!("T: messages/s from the producer's first send to the consumer's last receive, every message checked.");
    println!("L: round trip of one 64 B message between two processes. Ratios are against rows of this same run.");
}
