//! The bench's child processes: one producer or consumer (T workloads), or
//! one pinger or ponger (L workload), over one transport. Spawned by
//! `bench.rs` as `ringway __bench-child key=value...`; they talk to the
//! parent through stdin/stdout: `READY`, then `GO`, then a result line.

use crate::floor::{self, FloorRing, Line};
use ringway::mpmc;
use ringway::pipe::Pipe;
use ringway::spsc::{Consumer, Producer};
use ringway::{Error, WaitStrategy};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// Bytes of a user-space batch for the stream peers.
pub(crate) const STREAM_BATCH: usize = 64 * 1024;
/// Messages per ringway write batch.
const RING_BATCH: usize = 256;
/// Messages per mpmc batch (claimed with one CAS).
const MPMC_BATCH: usize = 32;

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Message `seq`: its first 8 bytes are `seq`, its last 8 (if 16+ bytes)
/// are `!seq`, so loss, duplication, reordering and torn copies show.
pub(crate) fn fill(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let n = buf.len();
    if n >= 16 {
        buf[n - 8..].copy_from_slice(&(!seq).to_le_bytes());
    }
}

/// Check message `seq` of `size` bytes (see [`fill`]).
#[cfg_attr(not(feature = "peers"), allow(dead_code))]
pub(crate) fn check_msg(buf: &[u8], seq: u64, size: usize) -> Result<(), String> {
    check(buf, seq, size)
}

fn check(buf: &[u8], seq: u64, size: usize) -> Result<(), String> {
    let ok = buf.len() == size
        && buf[..8] == seq.to_le_bytes()
        && (size < 16 || buf[size - 8..] == (!seq).to_le_bytes());
    if ok {
        Ok(())
    } else {
        Err(format!("message {seq} is wrong (len {})", buf.len()))
    }
}

pub(crate) struct Args(HashMap<String, String>);

impl Args {
    pub(crate) fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("bench child: missing {k}="))
    }
    pub(crate) fn num(&self, k: &str) -> u64 {
        self.get(k).parse().expect("number")
    }
    /// The wait strategy the parent chose (`mode=spin`), adaptive if none.
    fn strategy(&self) -> WaitStrategy {
        match self.0.get("mode").map(String::as_str) {
            Some("spin") => WaitStrategy::Spin,
            _ => WaitStrategy::default(),
        }
    }
    fn num_or(&self, k: &str, default: u64) -> u64 {
        self.0
            .get(k)
            .map_or(default, |v| v.parse().expect("number"))
    }
    fn fd(&self, k: &str) -> File {
        let fd: i32 = self.get(k).parse().expect("fd");
        // SAFETY: the parent passed this fd open and without close-on-exec;
        // this child owns it from here on.
        unsafe { File::from_raw_fd(fd) }
    }
}

fn pin(cpu: i64) {
    if cpu < 0 {
        return;
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (the machine's cpu count).
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 = us.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

fn wait_go() {
    wait_go_with("");
}

/// Say READY (followed by `extra`, what the parent passes on to the next
/// child), then wait for GO.
pub(crate) fn wait_go_with(extra: &str) {
    if extra.is_empty() {
        println!("READY");
    } else {
        println!("READY {extra}");
    }
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "GO", "bench child: expected GO");
}

fn retry_open<T>(mut f: impl FnMut() -> ringway::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(Error::NotFound { .. } | Error::NotReady { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("bench child: open: {e}"),
        }
    }
}

fn map_fd(fd: &File, len: usize) -> memmap2::MmapRaw {
    memmap2::MmapOptions::new()
        .len(len)
        .map_raw(fd)
        .expect("mmap")
}

/// The transports of the `peers` feature (see `peers.rs`).
pub(crate) const PEERS: &[&str] = &["ipc-channel", "ipmpsc", "iceoryx2"];

/// A bench child never outlives its bench: SIGKILL when the parent dies
/// (however it dies), and Ctrl-C's SIGINT to the process group ends it
/// even where the shell started the whole tree with SIGINT ignored (a
/// background job): left alone, a child of a `--messages 2000000000` run
/// spins on for hours.
pub(crate) fn die_with_the_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number, touches no
    // memory of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: restoring SIGINT's default disposition installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        // The parent died before the prctl took effect.
        std::process::exit(1);
    }
}

/// Entry point of `ringway __bench-child`.
pub(crate) fn main(argv: &[String]) {
    die_with_the_parent();
    let args = Args(
        argv.iter()
            .filter_map(|a| a.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    pin(args.get("cpu").parse().unwrap_or(-1));
    if let Some(fd) = args.0.get("close").and_then(|v| v.parse::<i32>().ok()) {
        // An inherited fd this child must not hold (a pipe's other end,
        // whose end-of-file the readers wait for).
        // SAFETY: closing an fd number this process inherited and does not
        // otherwise use.
        unsafe { libc::close(fd) };
    }
    let peer = PEERS.contains(&args.get("transport"));
    let result = match args.get("role") {
        #[cfg(feature = "peers")]
        "tx" if peer => crate::peers::produce(&args).map(|t0| format!("T0 {t0}")),
        #[cfg(feature = "peers")]
        "rx" if peer => crate::peers::consume(&args).map(|t1| format!("T1 {t1}")),
        "tx" | "rx" if peer => Err("built without the `peers` feature".into()),
        "tx" => produce(&args).map(|t0| format!("T0 {t0}")),
        "rx" => consume(&args),
        "threads" => threads(&args),
        "idle" => idle(&args),
        "count" => count(&args),
        "ping" => ping(&args).map(|s| {
            let v: Vec<String> = s.iter().map(u64::to_string).collect();
            format!("LAT {}", v.join(","))
        }),
        "pong" => pong(&args).map(|()| "DONE".to_owned()),
        other => Err(format!("unknown role {other}")),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => println!("ERR {e}"),
    }
    if peer {
        // A peer's producer may own memory its consumer still reads
        // (iceoryx2's samples live in the publisher's segment): stay
        // until the parent, which has both results, closes stdin.
        let _ = std::io::stdout().flush();
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
}

/// Send `n` messages of `size` bytes; returns the start time.
fn produce(a: &Args) -> Result<u64, String> {
    let (n, size) = (a.num("n"), a.num("size") as usize);
    let mut msg = vec![0u8; size];
    match a.get("transport") {
        "ringway" | "ringway-batch" => {
            let mut tx = retry_open(|| Producer::open(a.get("name")));
            tx.set_wait_strategy(a.strategy());
            wait_go();
            let t0 = now_ns();
            if a.get("transport") == "ringway" {
                for seq in 0..n {
                    fill(&mut msg, seq);
                    tx.send(&msg).map_err(|e| e.to_string())?;
                }
            } else {
                let mut seq = 0;
                while seq < n {
                    let mut b = tx.batch();
                    while seq < n && b.len() < RING_BATCH {
                        match b.try_claim(size) {
                            Ok(slot) => fill(slot, seq),
                            Err(e) if e.is_full() => break,
                            Err(e) => return Err(e.to_string()),
                        }
                        seq += 1;
                    }
                    if b.is_empty() {
                        drop(b);
                        let mut g = tx.claim(size).map_err(|e| e.to_string())?;
                        fill(&mut g, seq);
                        g.commit().map_err(|e| e.to_string())?;
                        seq += 1;
                    }
                }
            }
            // Dropping tx ends the stream; the consumer counts anyway.
            Ok(t0)
        }
        "ringway-mpmc" => {
            let mut tx = retry_open(|| mpmc::Sender::open(a.get("name")));
            let p = a.num_or("p", 0);
            wait_go();
            let t0 = now_ns();
            for seq in 0..n {
                fill(&mut msg, p << 40 | seq);
                tx.send(&msg).map_err(|e| e.to_string())?;
            }
            Ok(t0)
        }
        "ringway-pipe" | "ringway-pipe-typed" => {
            let mut tx = retry_open(|| Pipe::open(a.get("name")));
            let typed = a.get("transport") == "ringway-pipe-typed";
            wait_go();
            let t0 = now_ns();
            for seq in 0..n {
                if typed {
                    let v: [u64; 8] = [seq, 1, 2, 3, 4, 5, 6, !seq];
                    tx.send(&v).map_err(|e| e.to_string())?;
                } else {
                    fill(&mut msg, seq);
                    tx.send_bytes(&msg, 0, None).map_err(|e| e.to_string())?;
                }
            }
            Ok(t0)
        }
        "ringway-mpmc-batch" => {
            let mut tx = retry_open(|| mpmc::Sender::open(a.get("name")));
            let p = a.num_or("p", 0);
            let mut msgs = vec![vec![0u8; size]; MPMC_BATCH];
            wait_go();
            let t0 = now_ns();
            let mut seq = 0;
            while seq < n {
                let k = (n - seq).min(MPMC_BATCH as u64) as usize;
                for (i, m) in msgs[..k].iter_mut().enumerate() {
                    fill(m, p << 40 | (seq + i as u64));
                }
                let refs: Vec<&[u8]> = msgs[..k].iter().map(Vec::as_slice).collect();
                seq += tx.send_batch(&refs).map_err(|e| e.to_string())? as u64;
            }
            Ok(t0)
        }
        "pipe" | "socket" | "pipe-shared" => {
            let mut w = a.fd("fd");
            let p = a.num_or("p", 0);
            wait_go();
            let t0 = now_ns();
            for seq in 0..n {
                fill(&mut msg, p << 40 | seq);
                w.write_all(&msg).map_err(|e| e.to_string())?;
            }
            Ok(t0)
        }
        "pipe-batch" | "socket-batch" => {
            let mut w = a.fd("fd");
            wait_go();
            let t0 = now_ns();
            let mut buf = Vec::with_capacity(STREAM_BATCH);
            for seq in 0..n {
                fill(&mut msg, seq);
                buf.extend_from_slice(&msg);
                if buf.len() + size > STREAM_BATCH {
                    w.write_all(&buf).map_err(|e| e.to_string())?;
                    buf.clear();
                }
            }
            w.write_all(&buf).map_err(|e| e.to_string())?;
            Ok(t0)
        }
        "floor" => {
            let f = a.fd("fd");
            let slots = a.num("slots") as usize;
            let map = map_fd(&f, floor::ring_bytes(slots, size));
            // SAFETY: the parent sized the memfd for this ring; it is zeroed
            // and mapped for the life of `map`.
            let mut ring = unsafe { FloorRing::new(map.as_mut_ptr(), slots, size) };
            wait_go();
            let t0 = now_ns();
            for seq in 0..n {
                fill(&mut msg, seq);
                ring.push(&msg);
            }
            Ok(t0)
        }
        other => Err(format!("unknown transport {other}")),
    }
}

/// Receive and check `n` messages; the result line (`T1 <ns>`, or for the
/// many-producer queues `T1 <ns> <count> <checksum>`).
fn consume(a: &Args) -> Result<String, String> {
    consume_inner(a).map(|t| match t {
        Done::At(t1) => format!("T1 {t1}"),
        Done::Tally(t1, count, sum) => format!("T1 {t1} {count} {sum}"),
    })
}

/// How a consumer finished.
enum Done {
    At(u64),
    Tally(u64, u64, u64),
}

/// What a consumer of a many-producer queue saw: per-producer order is
/// checked as messages come; the count and a checksum of every `(producer,
/// seq)` let the parent check the whole.
#[derive(Default)]
struct Tally {
    last: HashMap<u64, u64>,
    count: u64,
    sum: u64,
}

impl Tally {
    fn add(&mut self, m: &[u8], size: usize) -> Result<(), String> {
        let v = u64::from_le_bytes(m[..8].try_into().unwrap());
        check(m, v, size)?;
        let (p, seq) = (v >> 40, v & ((1 << 40) - 1));
        if let Some(&l) = self.last.get(&p) {
            if seq <= l {
                return Err(format!("producer {p}: {seq} after {l}"));
            }
        }
        self.last.insert(p, seq);
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(v));
        Ok(())
    }
    fn report(self, _n: u64) -> Result<Done, String> {
        Ok(Done::Tally(now_ns(), self.count, self.sum))
    }
}

/// A hash of one `(producer, seq)` word, summed by consumers and compared
/// with the parent's sum over everything sent.
pub(crate) fn mix(v: u64) -> u64 {
    let mut x = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn consume_inner(a: &Args) -> Result<Done, String> {
    let (n, size) = (a.num("n"), a.num("size") as usize);
    let mut buf = vec![0u8; size.max(STREAM_BATCH)];
    match a.get("transport") {
        "ringway" | "ringway-batch" => {
            let mut rx = Consumer::create(a.get("name"), a.num("cap") as usize)
                .map_err(|e| e.to_string())?;
            rx.set_wait_strategy(a.strategy());
            wait_go();
            let mut seq = 0;
            if a.get("transport") == "ringway" {
                while seq < n {
                    let len = rx.recv(&mut buf).map_err(|e| e.to_string())?;
                    check(&buf[..len], seq, size)?;
                    seq += 1;
                }
            } else {
                while seq < n {
                    let before = seq;
                    {
                        let mut b = rx.read_batch();
                        while let Some(m) = b.next().map_err(|e| e.to_string())? {
                            check(m, seq, size)?;
                            seq += 1;
                        }
                    }
                    if seq == before {
                        let m = rx.read().map_err(|e| e.to_string())?;
                        check(&m, seq, size)?;
                        seq += 1;
                    }
                }
            }
            Ok(Done::At(now_ns()))
        }
        "ringway-mpmc" => {
            let mut rx = retry_open(|| mpmc::Receiver::open(a.get("name")));
            wait_go();
            let mut tally = Tally::default();
            loop {
                match rx.recv(&mut buf) {
                    Ok(len) => tally.add(&buf[..len], size)?,
                    Err(ringway::RecvError::Disconnected) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            tally.report(n)
        }
        "ringway-pipe" | "ringway-pipe-typed" => {
            let mut rx = Pipe::create(a.get("name"), false, a.num("cap") as usize)
                .map_err(|e| e.to_string())?;
            wait_go();
            for seq in 0..n {
                if a.get("transport") == "ringway-pipe-typed" {
                    let v: [u64; 8] = rx.recv().map_err(|e| e.to_string())?;
                    if v[0] != seq || v[7] != !seq {
                        return Err(format!("value {seq} is wrong"));
                    }
                } else {
                    let len = rx.recv_bytes_into(&mut buf, 0).map_err(|e| e.to_string())?;
                    check(&buf[..len], seq, size)?;
                }
            }
            Ok(Done::At(now_ns()))
        }
        "ringway-mpmc-batch" => {
            let mut rx = retry_open(|| mpmc::Receiver::open(a.get("name")));
            wait_go();
            let mut tally = Tally::default();
            let mut bad = None;
            loop {
                match rx.recv_batch(MPMC_BATCH, |m| {
                    if let Err(e) = tally.add(m, size) {
                        bad.get_or_insert(e);
                    }
                }) {
                    Ok(_) => {}
                    Err(ringway::RecvError::Disconnected) => break,
                    Err(e) => return Err(e.to_string()),
                }
                if let Some(e) = bad.take() {
                    return Err(e);
                }
            }
            tally.report(n)
        }
        "pipe-shared" => {
            let mut r = a.fd("fd");
            wait_go();
            let mut tally = Tally::default();
            loop {
                match r.read_exact(&mut buf[..size]) {
                    Ok(()) => tally.add(&buf[..size], size)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            tally.report(n)
        }
        "pipe" | "socket" => {
            let mut r = a.fd("fd");
            wait_go();
            for seq in 0..n {
                r.read_exact(&mut buf[..size]).map_err(|e| e.to_string())?;
                check(&buf[..size], seq, size)?;
            }
            Ok(Done::At(now_ns()))
        }
        "pipe-batch" | "socket-batch" => {
            let mut r = a.fd("fd");
            wait_go();
            let (mut have, mut seq) = (0usize, 0u64);
            while seq < n {
                let got = r.read(&mut buf[have..]).map_err(|e| e.to_string())?;
                if got == 0 {
                    return Err(format!("stream ended after {seq} messages"));
                }
                have += got;
                let whole = have / size * size;
                for m in buf[..whole].chunks_exact(size) {
                    check(m, seq, size)?;
                    seq += 1;
                }
                buf.copy_within(whole..have, 0);
                have -= whole;
            }
            Ok(Done::At(now_ns()))
        }
        "floor" => {
            let f = a.fd("fd");
            let slots = a.num("slots") as usize;
            let map = map_fd(&f, floor::ring_bytes(slots, size));
            // SAFETY: as in `produce`.
            let mut ring = unsafe { FloorRing::new(map.as_mut_ptr(), slots, size) };
            wait_go();
            for seq in 0..n {
                ring.pop(&mut buf[..size]);
                check(&buf[..size], seq, size)?;
            }
            Ok(Done::At(now_ns()))
        }
        other => Err(format!("unknown transport {other}")),
    }
}

#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // a yardstick, not ringway
/// crossbeam's `ArrayQueue` between threads of this one process: the
/// in-process yardstick for the many-producer workloads. `tx` producer
/// threads send `n` messages each, `rx` consumer threads share them.
fn threads(a: &Args) -> Result<String, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    type Counter = AtomicU64;
    type Msg = [u8; 64];
    let (n, size) = (a.num("n"), a.num("size") as usize);
    let (txs, rxs) = (a.num("tx"), a.num("rx"));
    let slots = a.num("slots") as usize;
    // The queue under test: crossbeam's ArrayQueue (non-blocking, the
    // threads yield when it is full or empty) or a bounded crossbeam
    // channel (blocking, the threads sleep).
    let chan = a.0.get("kind").is_some_and(|k| k == "chan");
    let q = Arc::new(crossbeam_queue::ArrayQueue::<Msg>::new(slots));
    let (ctx, crx) = crossbeam_channel::bounded::<Msg>(slots);
    let left = Arc::new(Counter::new(txs * n));
    wait_go();
    let t0 = now_ns();
    let producers: Vec<_> = (0..txs)
        .map(|p| {
            let (q, ctx) = (q.clone(), ctx.clone());
            std::thread::spawn(move || {
                let mut m = [0u8; 64];
                for seq in 0..n {
                    fill(&mut m[..size], p << 40 | seq);
                    if chan {
                        if ctx.send(m).is_err() {
                            return;
                        }
                        continue;
                    }
                    let mut item = m;
                    while let Err(back) = q.push(item) {
                        item = back;
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    drop(ctx);
    let consumers: Vec<_> = (0..rxs)
        .map(|_| {
            let (q, crx, left) = (q.clone(), crx.clone(), left.clone());
            std::thread::spawn(move || -> Result<Tally, String> {
                let mut t = Tally::default();
                if chan {
                    // Ends when every producer has dropped its sender.
                    for m in crx.iter() {
                        t.add(&m[..size], size)?;
                    }
                    return Ok(t);
                }
                while left.load(Ordering::Relaxed) > 0 {
                    match q.pop() {
                        Some(m) => {
                            left.fetch_sub(1, Ordering::Relaxed);
                            t.add(&m[..size], size)?;
                        }
                        None => std::thread::yield_now(),
                    }
                }
                Ok(t)
            })
        })
        .collect();
    for p in producers {
        p.join().map_err(|_| "producer thread panicked")?;
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for c in consumers {
        let t = c.join().map_err(|_| "consumer thread panicked")??;
        count += t.count;
        sum = sum.wrapping_add(t.sum);
    }
    Ok(format!("TT {t0} {} {count} {sum}", now_ns()))
}

/// The C workload: `k` decrements of one shared counter, several ways.
#[allow(clippy::disallowed_types)] // the floors use raw atomics on purpose
fn count(a: &Args) -> Result<String, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let k = a.num("k");
    let e = |e: ringway::Error| e.to_string();
    let (t0, t1) = match a.get("transport") {
        "map-add" | "map-counter" | "map-locked" => {
            let map = retry_open(|| ringway::counters::CounterMap::open(a.get("name")));
            let handle = map.counter("count").map_err(e)?;
            wait_go();
            let t0 = now_ns();
            match a.get("transport") {
                "map-add" => {
                    for _ in 0..k {
                        map.add("count", -1).map_err(e)?;
                    }
                }
                "map-counter" => {
                    for _ in 0..k {
                        handle.add(-1);
                    }
                }
                _ => {
                    for _ in 0..k {
                        let g = map.lock().map_err(e)?;
                        let v = g.get("count").map_err(e)?.unwrap_or(0);
                        g.set("count", v - 1).map_err(e)?;
                    }
                }
            }
            (t0, now_ns())
        }
        "floor-add" | "floor-mutex" => {
            let f = a.fd("fd");
            let map = map_fd(&f, 256);
            let base = map.as_mut_ptr();
            // SAFETY: the memfd holds 256 zeroed bytes (a mutex the parent
            // initialised at 0, the counter at 128), mapped for this scope.
            let counter = unsafe { AtomicU64::from_ptr(base.wrapping_add(128).cast()) };
            let m: *mut libc::pthread_mutex_t = base.cast();
            wait_go();
            let t0 = now_ns();
            if a.get("transport") == "floor-add" {
                for _ in 0..k {
                    counter.fetch_sub(1, Ordering::Relaxed);
                }
            } else {
                for _ in 0..k {
                    // SAFETY: `m` is the parent's initialised process-shared
                    // robust mutex; nobody dies holding it in this bench.
                    unsafe { libc::pthread_mutex_lock(m) };
                    let v = counter.load(Ordering::Relaxed);
                    counter.store(v.wrapping_sub(1), Ordering::Relaxed);
                    // SAFETY: locked just above by this thread.
                    unsafe { libc::pthread_mutex_unlock(m) };
                }
            }
            (t0, now_ns())
        }
        other => return Err(format!("unknown transport {other}")),
    };
    Ok(format!("C {t0} {t1}"))
}

/// Block in `recv_timeout` for `ms` milliseconds on a ring nobody writes
/// to; report the CPU time this process used meanwhile.
fn idle(a: &Args) -> Result<String, String> {
    let mut rx = retry_open(|| Consumer::open(a.get("name")));
    let ms = a.num("ms");
    wait_go();
    let cpu = |who| {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid out-pointer.
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
        t(u.ru_utime) + t(u.ru_stime)
    };
    let before = cpu(libc::RUSAGE_SELF);
    let mut buf = [0u8; 64];
    match rx.recv_timeout(&mut buf, Duration::from_millis(ms)) {
        Err(ringway::RecvError::Timeout) => {}
        other => return Err(format!("expected a timeout, got {other:?}")),
    }
    Ok(format!("IDLE {}", cpu(libc::RUSAGE_SELF) - before))
}

/// A duplex message transport for ping-pong.
trait Duplex {
    fn send(&mut self, m: &[u8]) -> Result<(), String>;
    fn recv(&mut self, m: &mut [u8]) -> Result<(), String>;
}

struct RingDuplex(Producer, Consumer);
impl Duplex for RingDuplex {
    fn send(&mut self, m: &[u8]) -> Result<(), String> {
        self.0.send(m).map_err(|e| e.to_string())
    }
    fn recv(&mut self, m: &mut [u8]) -> Result<(), String> {
        self.1.recv(m).map(drop).map_err(|e| e.to_string())
    }
}

struct PipeDuplex(Pipe);
impl Duplex for PipeDuplex {
    fn send(&mut self, m: &[u8]) -> Result<(), String> {
        self.0.send_bytes(m, 0, None).map_err(|e| e.to_string())
    }
    fn recv(&mut self, m: &mut [u8]) -> Result<(), String> {
        self.0
            .recv_bytes_into(m, 0)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

struct StreamDuplex(File, File);
impl Duplex for StreamDuplex {
    fn send(&mut self, m: &[u8]) -> Result<(), String> {
        self.0.write_all(m).map_err(|e| e.to_string())
    }
    fn recv(&mut self, m: &mut [u8]) -> Result<(), String> {
        self.1.read_exact(m).map_err(|e| e.to_string())
    }
}

struct FloorDuplex {
    out: FloorRing,
    inp: FloorRing,
    _map: memmap2::MmapRaw,
}
impl Duplex for FloorDuplex {
    fn send(&mut self, m: &[u8]) -> Result<(), String> {
        self.out.push(m);
        Ok(())
    }
    fn recv(&mut self, m: &mut [u8]) -> Result<(), String> {
        self.inp.pop(m);
        Ok(())
    }
}

/// Open this side of the L transport. `first` is the pinger.
fn duplex(a: &Args, first: bool) -> Result<Box<dyn Duplex>, String> {
    let size = a.num("size") as usize;
    Ok(match a.get("transport") {
        "ringway" | "ringway-spin" => {
            let (mine, theirs) = if first { ("a", "b") } else { ("b", "a") };
            let name = a.get("name");
            let mut tx = Producer::create(&format!("{name}-{mine}"), a.num("cap") as usize)
                .map_err(|e| e.to_string())?;
            let mut rx = retry_open(|| Consumer::open(&format!("{name}-{theirs}")));
            if a.get("transport") == "ringway-spin" {
                tx.set_wait_strategy(WaitStrategy::Spin);
                rx.set_wait_strategy(WaitStrategy::Spin);
            }
            Box::new(RingDuplex(tx, rx))
        }
        "ringway-pipe" => {
            let name = a.get("name");
            let end = if first {
                Pipe::create(name, true, a.num("cap") as usize).map_err(|e| e.to_string())?
            } else {
                retry_open(|| Pipe::open(name))
            };
            Box::new(PipeDuplex(end))
        }
        "pipe" => {
            let (w, r) = if first { ("w1", "r2") } else { ("w2", "r1") };
            Box::new(StreamDuplex(a.fd(w), a.fd(r)))
        }
        "socket" => {
            let f = a.fd("fd");
            let g = f.try_clone().map_err(|e| e.to_string())?;
            Box::new(StreamDuplex(f, g))
        }
        "floor" => {
            let f = a.fd("fd");
            let slots = a.num("slots") as usize;
            let one = floor::ring_bytes(slots, size);
            let map = map_fd(&f, 2 * one);
            let base = map.as_mut_ptr();
            // SAFETY: the memfd holds two zeroed rings of `one` bytes each
            // (128-aligned: `one` is a multiple of 128), mapped for the life
            // of `map`, which the duplex keeps.
            let ra = unsafe { FloorRing::new(base, slots, size) };
            // SAFETY: as above, the second ring.
            let rb = unsafe { FloorRing::new(base.wrapping_add(one), slots, size) };
            let (out, inp) = if first { (ra, rb) } else { (rb, ra) };
            Box::new(FloorDuplex {
                out,
                inp,
                _map: map,
            })
        }
        other => return Err(format!("unknown transport {other}")),
    })
}

/// `warm + n` round trips; returns the last `n`, in nanoseconds.
fn ping(a: &Args) -> Result<Vec<u64>, String> {
    let (warm, n, size) = (a.num("warm"), a.num("n"), a.num("size") as usize);
    let mut samples = Vec::with_capacity(n as usize);
    if a.get("transport") == "cacheline" {
        let f = a.fd("fd");
        let map = map_fd(&f, 128);
        // SAFETY: a zeroed 128-byte memfd, mapped for the life of `map`.
        let line = unsafe { Line::new(map.as_mut_ptr()) };
        wait_go();
        for i in 0..warm + n {
            let t = Instant::now();
            line.ping(i);
            if i >= warm {
                samples.push(t.elapsed().as_nanos() as u64);
            }
        }
        return Ok(samples);
    }
    let mut d = duplex(a, true)?;
    let mut msg = vec![0u8; size];
    let mut back = vec![0u8; size];
    wait_go();
    for i in 0..warm + n {
        fill(&mut msg, i);
        let t = Instant::now();
        d.send(&msg)?;
        d.recv(&mut back)?;
        let dt = t.elapsed().as_nanos() as u64;
        check(&back, i, size)?;
        if i >= warm {
            samples.push(dt);
        }
    }
    Ok(samples)
}

fn pong(a: &Args) -> Result<(), String> {
    let (total, size) = (a.num("warm") + a.num("n"), a.num("size") as usize);
    if a.get("transport") == "cacheline" {
        let f = a.fd("fd");
        let map = map_fd(&f, 128);
        // SAFETY: as in `ping`.
        let line = unsafe { Line::new(map.as_mut_ptr()) };
        wait_go();
        for i in 0..total {
            line.pong(i);
        }
        return Ok(());
    }
    let mut d = duplex(a, false)?;
    let mut buf = vec![0u8; size];
    wait_go();
    for _ in 0..total {
        d.recv(&mut buf)?;
        d.send(&buf)?;
    }
    Ok(())
}
