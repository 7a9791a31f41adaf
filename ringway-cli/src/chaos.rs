//! `ringway chaos`: round after round, a fresh segment of each kind with
//! real processes streaming through it, and at a random moment of the
//! stream either hostile words written into the live segment (`corrupt`)
//! or one of the processes SIGKILLed (`kill`). Each round is classified by
//! how its processes ended and by what it left in /dev/shm:
//!
//! - `ok`: every process finished its work (exit 0);
//! - `peer-gone`: a process stopped because the library told it its peer
//!   had gone (a disconnection, exit [`PEER_GONE`]);
//! - `error`: a process stopped on another clear library error (exit 1,
//!   the error on stderr);
//! - `bad-data`: a process received a message that fails its check:
//!   corruption of a payload, which no ring can see (corrupt rounds only);
//! - `panic`, `signal`: a process panicked or died of a signal nobody sent
//!   it: defects;
//! - `hang`: a process still running at the round's deadline: a defect;
//! - `leaked`: a segment or doorbell left in /dev/shm that its last holder
//!   should have removed: a defect. A segment whose last holder was the
//!   killed process cannot be removed by anyone (`killed-last`), and one
//!   whose readers went (killed, or gone on bad data) keeps its unread
//!   messages for the next reader (`kept`, the lifecycle's rule, unless a
//!   holder found it corrupted): `gc` must find both, and the round removes
//!   them with it.
//!
//! The children are `ringway __chaos-child KIND ROLE NAME N`.

use crate::exit;
use ringway::counters::CounterMap;
use ringway::mpmc::{Receiver, Sender};
use ringway::pipe::Pipe;
use ringway::spsc::{Consumer, Producer};
use ringway::{Options as Open, RecvError, SendError};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child's exit code when the library said its peer is gone.
const PEER_GONE: u8 = 3;
/// A child's exit code when a received message failed its check.
const BAD_DATA: u8 = 4;
/// How long a child waits for the segment to be created.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do to a live segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    Corrupt,
    Kill,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Corrupt => "corrupt",
            Action::Kill => "kill",
        }
    }
}

/// The segment kinds a round can stream through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Spsc,
    Mpmc,
    Pipe,
    Counters,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "spsc" => Some(Kind::Spsc),
            "mpmc" => Some(Kind::Mpmc),
            "pipe" => Some(Kind::Pipe),
            "counters" => Some(Kind::Counters),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
            Kind::Pipe => "pipe",
            Kind::Counters => "counters",
        }
    }

    /// The processes of one round; the first creates the segment.
    fn roles(self) -> &'static [&'static str] {
        match self {
            Kind::Spsc => &["tx", "rx"],
            Kind::Mpmc => &["tx0", "tx1", "rx0", "rx1"],
            Kind::Pipe => &["a", "b"],
            Kind::Counters => &["c0", "c1", "c2"],
        }
    }

    /// How many peer slots the round's processes attach (a counter map's
    /// handles take none).
    fn attached(self) -> usize {
        match self {
            Kind::Counters => 0,
            k => k.roles().len(),
        }
    }

    /// Messages (operations) per process in a round of a few hundred ms.
    fn work(self) -> u64 {
        // (A debug build, as `cargo test` runs it, is several times slower.)
        let scale = if cfg!(debug_assertions) { 8 } else { 1 };
        (match self {
            Kind::Spsc => 300_000,
            Kind::Mpmc => 100_000,
            Kind::Pipe => 200_000,
            Kind::Counters => 200_000,
        }) / scale
    }
}

/// What `ringway chaos` was asked for.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) actions: Vec<Action>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) rounds: u64,
    pub(crate) deadline: Duration,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
}

// ---------------------------------------------------------------- children

/// Entry of `ringway __chaos-child KIND ROLE NAME N`.
pub(crate) fn child(argv: &[String]) -> ExitCode {
    crate::child::die_with_the_parent();
    let [kind, role, name, n] = argv else {
        eprintln!("usage: __chaos-child KIND ROLE NAME N");
        return ExitCode::from(exit::FAILED);
    };
    let n: u64 = n.parse().unwrap_or(0);
    let res = match Kind::parse(kind) {
        Some(Kind::Spsc) if role == "tx" => spsc_tx(name, n),
        Some(Kind::Spsc) => spsc_rx(name, n),
        Some(Kind::Mpmc) => mpmc_child(name, role, n),
        Some(Kind::Pipe) if role == "a" => pipe_a(name, n),
        Some(Kind::Pipe) => pipe_b(name),
        Some(Kind::Counters) => counters_child(name, role, n),
        None => Err(End::Error(format!("no kind {kind}"))),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(End::PeerGone(why)) => {
            eprintln!("{role}: peer gone: {why}");
            ExitCode::from(PEER_GONE)
        }
        Err(End::BadData(why)) => {
            eprintln!("{role}: bad data: {why}");
            ExitCode::from(BAD_DATA)
        }
        Err(End::Error(e)) => {
            eprintln!("{role}: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Declared right after a child's handle, so it drops first: tells the
/// parent (a `closing` line) that the handle is about to go. A process
/// killed after every other one said so was the segment's last holder.
struct Closing;

impl Drop for Closing {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "closing");
        let _ = out.flush();
    }
}

/// How a child's work ended early.
enum End {
    PeerGone(String),
    BadData(String),
    Error(String),
}

impl From<ringway::Error> for End {
    fn from(e: ringway::Error) -> End {
        match e {
            ringway::Error::Closed { .. } => End::PeerGone(e.to_string()),
            e => End::Error(e.to_string()),
        }
    }
}

impl<T> From<SendError<T>> for End {
    fn from(e: SendError<T>) -> End {
        match e {
            SendError::Disconnected(_) => End::PeerGone("receiver gone".into()),
            SendError::Failed(_, e) => e.into(),
            e => End::Error(e.to_string()),
        }
    }
}

impl From<RecvError> for End {
    fn from(e: RecvError) -> End {
        match e {
            RecvError::Disconnected => End::PeerGone("sender gone".into()),
            RecvError::Failed(e) => e.into(),
            e => End::Error(e.to_string()),
        }
    }
}

/// Message `seq` of the spsc and pipe streams: its length varies with
/// `seq` (8 to 64 bytes), every byte derived from `seq`.
fn message(seq: u64, buf: &mut [u8; 64]) -> &[u8] {
    let len = 8 + (seq.wrapping_mul(7) % 57) as usize;
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    &buf[..len]
}

fn check(got: &[u8], seq: u64) -> Result<(), End> {
    let mut want = [0u8; 64];
    if got == message(seq, &mut want) {
        Ok(())
    } else {
        Err(End::BadData(format!(
            "message {seq} has {} bytes starting {:02x?}",
            got.len(),
            &got[..got.len().min(8)]
        )))
    }
}

fn spsc_tx(name: &str, n: u64) -> Result<(), End> {
    let mut tx: Producer = Open::new().capacity_bytes(4096).create(name)?;
    let _closing = Closing;
    let mut buf = [0u8; 64];
    let mut seq = 0;
    while seq < n {
        match seq % 4 {
            0 => tx.send(message(seq, &mut buf))?,
            1 => {
                let m = message(seq, &mut buf);
                let mut g = tx.claim(m.len())?;
                g.copy_from_slice(m);
                g.commit()?;
            }
            2 => {
                let mut b = tx.batch();
                let mut k = 0;
                while k < 8 && seq + k < n {
                    match b.try_push(message(seq + k, &mut buf)) {
                        Ok(()) => k += 1,
                        Err(SendError::Full(())) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                b.publish()?;
                if k == 0 {
                    tx.send(message(seq, &mut buf))?;
                    k = 1;
                }
                seq += k;
                continue;
            }
            _ => loop {
                match tx.send_timeout(message(seq, &mut buf), Duration::from_millis(50)) {
                    Err(SendError::Timeout(())) => continue,
                    r => break r?,
                }
            },
        }
        seq += 1;
    }
    Ok(())
}

fn spsc_rx(name: &str, n: u64) -> Result<(), End> {
    let mut rx: Consumer = Open::new().open_timeout(OPEN_TIMEOUT).open(name)?;
    let _closing = Closing;
    let mut buf = [0u8; 64];
    let mut seq = 0;
    let ended = |seq: u64, e: RecvError| match e {
        RecvError::Disconnected if seq == n => Ok(()),
        RecvError::Disconnected => Err(End::PeerGone(format!("sender gone after {seq} of {n}"))),
        e => Err(End::from(e)),
    };
    while seq < n || n == 0 {
        let r = match seq % 4 {
            0 => rx.recv(&mut buf).map(|len| check(&buf[..len], seq)),
            1 => rx.read().map(|m| check(&m, seq)),
            2 => {
                let mut batch = rx.read_batch();
                let mut k = 0;
                loop {
                    match batch.next() {
                        Ok(Some(m)) => {
                            check(m, seq + k)?;
                            k += 1;
                        }
                        Ok(None) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                drop(batch);
                if k > 0 {
                    seq += k;
                    continue;
                }
                rx.recv(&mut buf).map(|len| check(&buf[..len], seq))
            }
            // Sleep on the doorbell (the fd a select loop would watch).
            _ => match rx.try_recv(&mut buf) {
                Err(RecvError::Empty) => {
                    rx.poll(None)?;
                    continue;
                }
                r => r.map(|len| check(&buf[..len], seq)),
            },
        };
        match r {
            Ok(c) => c?,
            Err(e) => return ended(seq, e),
        }
        seq += 1;
    }
    // Every message came: the end of the stream must follow.
    match rx.recv(&mut buf) {
        Err(e) => ended(seq, e),
        Ok(len) => Err(End::BadData(format!("{len} bytes past the last message"))),
    }
}

/// An mpmc message: the sender's id and its sequence number.
fn mpmc_message(id: u64, seq: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&(id << 48 | seq).to_le_bytes());
    m[8..].copy_from_slice(&(!(id << 48 | seq)).to_le_bytes());
    m
}

fn mpmc_child(name: &str, role: &str, n: u64) -> Result<(), End> {
    let id = u64::from(role.as_bytes()[2] - b'0');
    let open = Open::new().open_timeout(OPEN_TIMEOUT);
    if role.starts_with("tx") {
        let mut tx: Sender = if id == 0 {
            Open::new().room_for(16, 16).create(name)?
        } else {
            open.open(name)?
        };
        let _closing = Closing;
        let mut seq = 0;
        while seq < n {
            match seq % 3 {
                0 => tx.send(&mpmc_message(id, seq))?,
                1 => {
                    let mut g = tx.claim(16)?;
                    g.copy_from_slice(&mpmc_message(id, seq));
                    g.commit()?;
                }
                _ => {
                    let ms: Vec<[u8; 16]> =
                        (seq..n.min(seq + 4)).map(|s| mpmc_message(id, s)).collect();
                    let refs: Vec<&[u8]> = ms.iter().map(|m| &m[..]).collect();
                    seq += tx.send_batch(&refs)? as u64;
                    continue;
                }
            }
            seq += 1;
        }
        return Ok(());
    }
    let mut rx: Receiver = open.open(name)?;
    let _closing = Closing;
    // The last sequence number seen from each sender: they only grow.
    let mut last = [None::<u64>; 2];
    let mut take = |m: &[u8]| -> Result<(), End> {
        let w = m
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        let (Some(w), 16) = (w, m.len()) else {
            return Err(End::BadData(format!("a message of {} bytes", m.len())));
        };
        let (from, seq) = ((w >> 48) as usize, w & ((1 << 48) - 1));
        if m != mpmc_message(from as u64, seq) || from > 1 || last[from].is_some_and(|l| l >= seq) {
            return Err(End::BadData(format!("{m:02x?} after {last:?}")));
        }
        last[from] = Some(seq);
        Ok(())
    };
    let mut buf = [0u8; 16];
    for i in 0u64.. {
        let r = match i % 3 {
            0 => rx.recv(&mut buf).map(|len| take(&buf[..len])),
            1 => rx.read().map(|m| take(&m)),
            _ => {
                let mut res = Ok(());
                rx.recv_batch(4, |m| {
                    if res.is_ok() {
                        res = take(m);
                    }
                })
                .map(|_| res)
            }
        };
        match r {
            Ok(c) => c?,
            // The stream ended: every sender left.
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn pipe_a(name: &str, n: u64) -> Result<(), End> {
    let mut p: Pipe = Open::new().capacity_bytes(4096).create(name)?;
    let _closing = Closing;
    let mut buf = [0u8; 64];
    let mut seq = 0;
    while seq < n {
        // A window of requests, then their echoes.
        let w = 8.min(n - seq);
        for k in 0..w {
            if (seq + k) % 2 == 0 {
                p.send_bytes(message(seq + k, &mut buf), 0, None)?;
            } else {
                p.send(&(seq + k))?;
            }
        }
        for k in 0..w {
            if (seq + k) % 2 == 0 {
                let got = p.recv_bytes(None)?;
                check(&got, seq + k)?;
            } else {
                let got: u64 = p.recv()?;
                if got != seq + k {
                    return Err(End::BadData(format!("echo {got}, not {}", seq + k)));
                }
            }
        }
        seq += w;
    }
    Ok(())
}

fn pipe_b(name: &str) -> Result<(), End> {
    let mut p: Pipe = Open::new().open_timeout(OPEN_TIMEOUT).open(name)?;
    let _closing = Closing;
    let mut buf = [0u8; 64];
    loop {
        match p.recv_bytes_into(&mut buf, 0) {
            Ok(len) => p.send_bytes(&buf[..len], 0, None)?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn counters_child(name: &str, role: &str, n: u64) -> Result<(), End> {
    let map: CounterMap = if role == "c0" {
        let m: CounterMap = Open::new().keys(256).create(name)?;
        m.set("count", 0)?;
        m.set("locked", 0)?;
        m
    } else {
        Open::new().open_timeout(OPEN_TIMEOUT).open(name)?
    };
    let _closing = Closing;
    for i in 0..n {
        if map.add("count", 1).is_err() {
            // c0 has not inserted it yet.
            map.set("count", 0)?;
        }
        if i % 16 == 0 {
            let g = map.lock()?;
            let v = g.get("locked")?.unwrap_or(0);
            g.set("locked", v + 1)?;
        }
        // Inserts (a removed key's slot is not reused: a few keys, set
        // again and again, then removed at the end).
        if i % 256 == 0 {
            map.set(&format!("{role}-{}", i / 256 % 4), i as i64)?;
        }
    }
    for k in 0..4 {
        map.remove(&format!("{role}-{k}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ parent

/// How a round went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    PeerGone,
    Error,
    BadData,
    Panic,
    Signal,
    Hang,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::PeerGone,
        Outcome::Error,
        Outcome::BadData,
        Outcome::Panic,
        Outcome::Signal,
        Outcome::Hang,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PeerGone => "peer-gone",
            Outcome::Error => "error",
            Outcome::BadData => "bad-data",
            Outcome::Panic => "panic",
            Outcome::Signal => "signal",
            Outcome::Hang => "hang",
        }
    }

    fn is_defect(self) -> bool {
        matches!(self, Outcome::Panic | Outcome::Signal | Outcome::Hang)
    }
}

/// What a round left in /dev/shm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Left {
    Nothing,
    KilledLast,
    Kept,
    /// Its header's state word no longer reads READY, and nobody holds it:
    /// `gc` takes it once it is older than the grace for unpublished
    /// segments (the round waits for that and checks).
    Unpublished,
    Leaked,
}

impl Left {
    const ALL: [Left; 5] = [
        Left::Nothing,
        Left::KilledLast,
        Left::Kept,
        Left::Unpublished,
        Left::Leaked,
    ];
    fn label(self) -> &'static str {
        match self {
            Left::Nothing => "clean",
            Left::KilledLast => "killed-last",
            Left::Kept => "kept",
            Left::Unpublished => "unpublished",
            Left::Leaked => "leaked",
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[allow(clippy::disallowed_types)] // a process-local flag, not a protocol
struct Kid {
    role: &'static str,
    child: Child,
    status: Option<ExitStatus>,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Set once it said it is closing its handle.
    closing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[allow(clippy::disallowed_types)] // a process-local flag, not a protocol
fn spawn(kind: Kind, role: &'static str, name: &str, n: u64) -> Result<Kid, String> {
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["__chaos-child", kind.label(), role, name, &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let out = child.stdout.take().unwrap();
    let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closing.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if l == "closing" {
                // ORDERING: Relaxed — read after a sleep that lets this
                // thread catch up; a flag, not a protocol.
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let (tx, stderr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    Ok(Kid {
        role,
        child,
        status: None,
        stderr,
        closing,
    })
}

/// One round's record.
struct Round {
    outcome: Outcome,
    left: Left,
    acted: bool,
    /// The first line of a failed process's stderr, or why it is a defect.
    detail: Option<String>,
    secs: f64,
}

/// A hostile 64-bit word, shaped like the corruption that hurts: garbage,
/// the extremes, and near misses of the word that was there.
fn hostile(rng: &mut Rng, was: u64) -> u64 {
    match rng.below(6) {
        0 => rng.next(),
        1 => 0,
        2 => u64::MAX,
        3 => was.wrapping_add(1 + rng.below(4)),
        4 => was.wrapping_sub(1 + rng.below(4)),
        _ => was ^ 1 << rng.below(64),
    }
}

/// Write 1 to 4 hostile words into the live segment: half of them in the
/// first 8 KiB (header, peer table, positions), half anywhere.
fn corrupt(path: &std::path::Path, rng: &mut Rng) -> Result<String, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if size < 8 {
        return Err("empty".into());
    }
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let span = if rng.below(2) == 0 {
            size.min(8192)
        } else {
            size
        };
        let off = rng.below(span / 8) * 8;
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, off).map_err(|e| e.to_string())?;
        let was = u64::from_le_bytes(b);
        let now = hostile(rng, was);
        f.write_all_at(&now.to_le_bytes(), off)
            .map_err(|e| e.to_string())?;
        done.push(format!("@{off}: {was:#x} -> {now:#x}"));
    }
    Ok(done.join(", "))
}

/// The doorbell FIFOs of the segment with this device and inode.
fn bells(dev: u64, ino: u64) -> Vec<std::path::PathBuf> {
    let prefix = format!("ringway-bell-{dev:x}-{ino}-");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn round(
    o: &Options,
    kind: Kind,
    action: Option<Action>,
    at: Duration,
    rng: &mut Rng,
    name: &str,
) -> Result<Round, String> {
    let path = std::path::Path::new("/dev/shm").join(name);
    let start = Instant::now();
    let mut kids = Vec::new();
    for &role in kind.roles() {
        kids.push(spawn(kind, role, name, kind.work())?);
    }
    let mut id: Option<(u64, u64)> = None;
    let mut pending = action;
    let mut acted = false;
    let mut victim: Option<(usize, bool)> = None;
    let mut what = String::new();
    let mut hung = false;
    // Actions land once every process has attached: a process killed
    // before it came is one the others may rightly wait for (a sender
    // waits for its first receiver, as a multiprocessing one does).
    let mut all_in = false;
    loop {
        if id.is_none() {
            id = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        }
        if !all_in && id.is_some() {
            // (Every one attached at some point: under load a fast one may
            // finish and leave before the last one comes.)
            all_in = ringway::admin::inspect(name).is_ok_and(|i| i.peers.len() >= kind.attached());
        }
        let mut running = 0;
        for k in &mut kids {
            if k.status.is_none() {
                k.status = k.child.try_wait().map_err(|e| e.to_string())?;
                running += k.status.is_none() as usize;
            }
        }
        if running == 0 {
            break;
        }
        if let Some(a) = pending.filter(|_| all_in && start.elapsed() >= at) {
            pending = None;
            match a {
                Action::Corrupt => {
                    if let Ok(w) = corrupt(&path, rng) {
                        what = w;
                        acted = true;
                    }
                }
                Action::Kill => {
                    let live: Vec<usize> = (0..kids.len())
                        .filter(|&i| kids[i].status.is_none())
                        .collect();
                    let i = live[rng.below(live.len() as u64) as usize];
                    // The others are stopped while it dies: a crash is
                    // instantaneous next to a close, but a SIGKILLed
                    // process on a busy machine may wait milliseconds for
                    // a CPU to die on, still holding the segment while
                    // the last of the others leaves it (which then leaves
                    // the name to `gc`).
                    let others: Vec<i32> = live
                        .iter()
                        .filter(|&&j| j != i)
                        .map(|&j| kids[j].child.id() as i32)
                        .collect();
                    for &pid in &others {
                        // SAFETY: kill(2) on our own unreaped child.
                        unsafe { libc::kill(pid, libc::SIGSTOP) };
                    }
                    if kids[i].child.kill().is_ok() {
                        kids[i].status = kids[i].child.wait().ok();
                        // The victim was the last holder if every other
                        // one had already begun to close (its lines
                        // written before it was stopped are read by now).
                        std::thread::sleep(Duration::from_millis(20));
                        let last = live.iter().filter(|&&j| j != i).all(|&j| {
                            // ORDERING: Relaxed — see `spawn`.
                            kids[j].closing.load(std::sync::atomic::Ordering::Relaxed)
                        });
                        what = format!(
                            "killed {}{}",
                            kids[i].role,
                            if last { " (the last holder)" } else { "" }
                        );
                        victim = Some((i, last));
                        acted = true;
                    }
                    for &pid in &others {
                        // SAFETY: as above.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    }
                }
            }
        }
        if start.elapsed() >= o.deadline {
            hung = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    // A hang: say who was still running and what the segment looked like,
    // then end it.
    let mut detail = None;
    if hung {
        let stuck: Vec<String> = kids
            .iter()
            .filter(|k| k.status.is_none())
            .map(|k| {
                let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", k.child.id()))
                    .unwrap_or_default();
                format!("{} (pid {}, in {wchan})", k.role, k.child.id())
            })
            .collect();
        let fields = ringway::admin::inspect(name)
            .map(|i| format!("{:?}", i.fields))
            .unwrap_or_else(|e| e.to_string());
        detail = Some(format!(
            "still running: {}; {what}; segment {fields}",
            stuck.join(", ")
        ));
        for k in &mut kids {
            if k.status.is_none() {
                let _ = k.child.kill();
                k.status = k.child.wait().ok();
            }
        }
    }
    let mut outcome = if hung { Outcome::Hang } else { Outcome::Ok };
    for (i, k) in kids.iter().enumerate() {
        let st = k.status.expect("every child was reaped");
        let err = k
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        let first = err.lines().next().unwrap_or("").to_owned();
        let killed = victim.is_some_and(|(v, _)| v == i);
        let this = match (st.code(), st.signal()) {
            (Some(0), _) => Outcome::Ok,
            (Some(c), _) if c == i32::from(PEER_GONE) => Outcome::PeerGone,
            (Some(c), _) if c == i32::from(BAD_DATA) => Outcome::BadData,
            (Some(c), _) if c == i32::from(exit::FAILED) => Outcome::Error,
            (Some(101), _) => Outcome::Panic,
            (_, Some(libc::SIGKILL)) if killed || hung => Outcome::Ok,
            _ => Outcome::Signal,
        };
        // The worst outcome names the round, and its first process says why.
        if this > outcome || (this == outcome && detail.is_none() && this != Outcome::Ok) {
            detail = Some(if first.is_empty() {
                format!("{}: {st}; {what}", k.role)
            } else if this.is_defect() {
                format!("{first} ({st}); {what}")
            } else {
                first
            });
            outcome = this;
        }
    }
    // What is left in /dev/shm.
    let mut left = Left::Nothing;
    if path.exists() {
        let info = ringway::admin::inspect(name).ok();
        let collectable = info.as_ref().is_some_and(|i| i.garbage().is_some());
        // The kinds' keep rule: unread messages, in a segment nobody found
        // corrupted, outlive their last holder for a reader yet to come
        // (whichever way the readers went: killed, or gone on bad data).
        let unread = info.as_ref().is_some_and(|i| {
            i.field("poisoned") == Some(0)
                && i.fields.iter().any(|(k, v)| {
                    (k.ends_with("fill_slots") || k.ends_with("fill_bytes")) && *v > 0
                })
        });
        let unpublished = info.as_ref().is_some_and(|i| {
            i.state == ringway::admin::State::Initializing && !i.locked && i.alive() == 0
        });
        left = match victim {
            Some((_, true)) if collectable => Left::KilledLast,
            _ if unread && collectable => Left::Kept,
            _ if unpublished => {
                // gc must take it once the grace has passed.
                // (From now: the hostile write itself made the file newer.)
                std::thread::sleep(ringway::admin::INIT_GRACE + Duration::from_millis(500));
                Left::Unpublished
            }
            _ => Left::Leaked,
        };
        let gc = ringway::admin::collect_prefixed(name, true).unwrap_or_default();
        if left != Left::Leaked && !gc.iter().any(|g| g.name == name) {
            left = Left::Leaked; // gc did not find it
        }
        if left == Left::Leaked {
            let seen = info.map(|i| {
                let peers: Vec<String> = i
                    .peers
                    .iter()
                    .map(|p| format!("{}:{}:{:?}", p.slot, p.role, p.liveness))
                    .collect();
                format!(
                    "{:?}, locked {}, peers [{}], {:?}",
                    i.state,
                    i.locked,
                    peers.join(" "),
                    i.fields
                )
            });
            let d = detail.take().unwrap_or_default();
            detail = Some(format!(
                "{name} left ({}); {d}; {what}",
                seen.unwrap_or_default()
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    if let Some((dev, ino)) = id {
        let b = bells(dev, ino);
        if !b.is_empty() {
            if left == Left::Nothing {
                left = Left::Leaked;
                detail.get_or_insert_with(|| format!("doorbell left: {b:?}; {what}"));
            }
            for p in b {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    if o.verbose {
        eprintln!(
            "{} {:?} {:.2}s {} {} {}",
            kind.label(),
            action.map(Action::label),
            secs,
            outcome.label(),
            left.label(),
            detail.as_deref().unwrap_or(&what)
        );
    }
    Ok(Round {
        outcome,
        left,
        acted,
        detail,
        secs,
    })
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    missed: u64,
    outcomes: BTreeMap<Outcome, u64>,
    left: BTreeMap<Left, u64>,
    samples: Vec<String>,
    defects: Vec<String>,
    secs: f64,
}

/// Run the rounds; exit 1 if any round hung, panicked, took a signal or
/// leaked.
pub(crate) fn run(o: &Options) -> ExitCode {
    let res = run_inner(o);
    crate::cleanup::wait_if_interrupted();
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(exit::FAILED),
        Err(e) => {
            eprintln!("ringway chaos: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn run_inner(o: &Options) -> Result<bool, String> {
    crate::cleanup::on_interrupt_clean_up("chaos");
    let _guard = crate::cleanup::Guard;
    let mut rng = Rng(o.seed | 1);
    let mut tallies: BTreeMap<(Kind, Action), Tally> = BTreeMap::new();
    let mut n = 0u64;
    let mut name = || {
        n += 1;
        format!("{}{n}", crate::cleanup::prefix())
    };
    for &kind in &o.kinds {
        // An undisturbed round first: it must be ok, and it says how long
        // a stream lasts (the window the actions land in).
        // (The shortest of three: a round is often much faster than its
        // first.)
        let mut window = Duration::MAX;
        for _ in 0..3 {
            let calib = round(o, kind, None, Duration::ZERO, &mut rng, &name())?;
            if calib.outcome != Outcome::Ok || calib.left != Left::Nothing {
                return Err(format!(
                    "{}: an undisturbed round ended {} / {}: {}",
                    kind.label(),
                    calib.outcome.label(),
                    calib.left.label(),
                    calib.detail.unwrap_or_default()
                ));
            }
            window = window.min(Duration::from_secs_f64(calib.secs));
        }
        for &action in &o.actions {
            let t = tallies.entry((kind, action)).or_default();
            let mut tries = 0;
            while t.rounds < o.rounds && tries < 3 * o.rounds {
                tries += 1;
                let at = window.mul_f64(rng.below(1000) as f64 / 1000.0);
                let r = round(o, kind, Some(action), at, &mut rng, &name())?;
                t.secs += r.secs;
                if !r.acted {
                    t.missed += 1;
                    continue;
                }
                t.rounds += 1;
                *t.outcomes.entry(r.outcome).or_default() += 1;
                *t.left.entry(r.left).or_default() += 1;
                if let Some(d) = r.detail {
                    if r.outcome.is_defect() || r.left == Left::Leaked {
                        t.defects
                            .push(format!("{} / {}: {d}", r.outcome.label(), r.left.label()));
                    } else if t.samples.len() < 4 && !t.samples.contains(&d) {
                        t.samples.push(d);
                    }
                }
            }
        }
    }
    let defects: usize = tallies.values().map(|t| t.defects.len()).sum();
    if o.json {
        let rows: Vec<serde_json::Value> = tallies
            .iter()
            .map(|((k, a), t)| {
                let mut m = serde_json::Map::new();
                m.insert("kind".into(), k.label().into());
                m.insert("action".into(), a.label().into());
                m.insert("rounds".into(), t.rounds.into());
                m.insert("missed".into(), t.missed.into());
                for oc in Outcome::ALL {
                    m.insert(
                        oc.label().into(),
                        t.outcomes.get(&oc).copied().unwrap_or(0).into(),
                    );
                }
                for l in Left::ALL {
                    m.insert(
                        l.label().into(),
                        t.left.get(&l).copied().unwrap_or(0).into(),
                    );
                }
                m.insert("defects".into(), t.defects.clone().into());
                m.insert("errors".into(), t.samples.clone().into());
                serde_json::Value::Object(m)
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "seed": o.seed, "defects": defects, "rows": rows })
        );
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ringway chaos: seed {}, deadline {} s per round",
            o.seed,
            o.deadline.as_secs()
        );
        let _ = write!(out, "{:<9} {:<8} {:>6}", "kind", "action", "rounds");
        for oc in Outcome::ALL {
            let _ = write!(out, " {:>9}", oc.label());
        }
        for l in Left::ALL {
            let _ = write!(out, " {:>11}", l.label());
        }
        let _ = writeln!(out, " {:>6}", "secs");
        for ((k, a), t) in &tallies {
            let _ = write!(out, "{:<9} {:<8} {:>6}", k.label(), a.label(), t.rounds);
            for oc in Outcome::ALL {
                let _ = write!(out, " {:>9}", t.outcomes.get(&oc).copied().unwrap_or(0));
            }
            for l in Left::ALL {
                let _ = write!(out, " {:>11}", t.left.get(&l).copied().unwrap_or(0));
            }
            let _ = writeln!(out, " {:>6.0}", t.secs);
        }
        for ((k, a), t) in &tallies {
            for s in &t.samples {
                let _ = writeln!(out, "  {} {} e.g.: {s}", k.label(), a.label());
            }
        }
        for ((k, a), t) in &tallies {
            for d in &t.defects {
                let _ = writeln!(out, "DEFECT {} {}: {d}", k.label(), a.label());
            }
        }
        let _ = writeln!(
            out,
            "{}",
            if defects == 0 {
                "no hang, panic, stray signal or leaked segment".to_owned()
            } else {
                format!("{defects} round(s) with a defect")
            }
        );
    }
    Ok(defects == 0)
}
