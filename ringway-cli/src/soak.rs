//! `ringway soak`: producers and consumers on one mpmc queue, processes
//! SIGKILLed at random and replaced, for a given time; then the books are
//! balanced. A message is `(producer id, seq)`; each consumer appends what
//! it takes to its own file with one `write(2)` before it frees the slot,
//! and each producer counts its completed sends in a shared counter map.
//!
//! What must hold at the end:
//! - duplicates = 0: no message received twice;
//! - missing <= lost <= kills: a message sent but never recorded was in a
//!   killed consumer's hands (so the queue counted it lost), and each kill
//!   loses at most the one message in flight in that process;
//! - no child failed: each one the soak did not kill exits 0, and each one
//!   it meant to kill was still running (died of the SIGKILL).

use crate::exit;
use ringway::counters::CounterMap;
use ringway::mpmc::{Receiver, Sender};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// What `ringway soak` was asked for.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) secs: u64,
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) kill_every_ms: u64,
    pub(crate) json: bool,
}

const SLOTS: usize = 64;
const MSG: usize = 16;
/// The queue's peer slots: every child and the soak's own two handles.
const PEER_SLOTS: usize = 64;
/// The most keys the books may have (128 bytes each).
const MAX_BOOK_KEYS: u64 = 1 << 20;

fn msg(id: u64, seq: u64) -> [u8; MSG] {
    let v = id << 32 | seq;
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&v.to_le_bytes());
    m[8..].copy_from_slice(&(!v).to_le_bytes());
    m
}

/// Entry of `ringway __soak-child ROLE NAME ARG`.
pub(crate) fn child(argv: &[String]) -> ExitCode {
    crate::child::die_with_the_parent();
    let res = match argv {
        [role, name, arg] if role == "producer" => producer(name, arg),
        [role, name, arg] if role == "consumer" => consumer(name, arg),
        _ => Err("usage: __soak-child producer|consumer NAME ARG".into()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak child: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn producer(name: &str, id: &str) -> Result<(), String> {
    let id: u64 = id.parse().map_err(|_| "bad id")?;
    let map = CounterMap::open(&format!("{name}-books")).map_err(|e| e.to_string())?;
    let sent = map
        .counter(&format!("sent-{id}"))
        .map_err(|e| e.to_string())?;
    let stop = map.counter("stop").map_err(|e| e.to_string())?;
    let mut tx = open_retry(|| Sender::open(name))?;
    let mut seq = 0;
    while stop.get() == 0 {
        match tx.send_timeout(&msg(id, seq), Duration::from_millis(100)) {
            Ok(()) => {
                sent.add(1);
                seq += 1;
            }
            Err(ringway::SendError::Timeout(())) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn consumer(name: &str, out: &str) -> Result<(), String> {
    let mut rx = open_retry(|| Receiver::open(name))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| e.to_string())?;
    loop {
        match rx.read() {
            Ok(m) => {
                // Recorded (one write) before the slot is freed.
                f.write_all(&m).map_err(|e| e.to_string())?;
            }
            Err(ringway::RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Open an end, waiting (up to 10 s) while the peer slots are full: the
/// slot of the process this one replaces is free once its death is reaped.
fn open_retry<T>(open: impl Fn() -> ringway::Result<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Err(ringway::Error::TooManyPeers { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

struct Kid {
    child: Child,
    producer: bool,
}

impl Kid {
    fn role(&self) -> &'static str {
        if self.producer {
            "producer"
        } else {
            "consumer"
        }
    }
}

impl Drop for Kid {
    /// A soak that ends early (an error) leaves no process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(role: &str, name: &str, arg: &str) -> Result<Child, String> {
    Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["__soak-child", role, name, arg])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {role}: {e}"))
}

/// A small xorshift, seeded from the clock.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

pub(crate) fn run(o: &Options) -> ExitCode {
    let res = soak(o);
    crate::cleanup::wait_if_interrupted();
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(exit::FAILED),
        Err(e) => {
            eprintln!("ringway soak: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn soak(o: &Options) -> Result<bool, String> {
    if o.producers == 0 || o.consumers == 0 || o.producers + o.consumers + 2 > PEER_SLOTS {
        return Err(format!(
            "--producers and --consumers: at least 1 each, at most {} together \
             (the queue has {PEER_SLOTS} peer slots, two of them the soak's own)",
            PEER_SLOTS - 2
        ));
    }
    // One key per producer ever started: at most one kill per half period.
    let book_keys = o.producers as u64 + o.secs * 1000 / (o.kill_every_ms / 2).max(1) + 64;
    if book_keys > MAX_BOOK_KEYS {
        return Err(format!(
            "{} s with a kill every ~{} ms may start {book_keys} producers, more than \
             the books hold ({MAX_BOOK_KEYS}): raise --kill-every-ms or lower --secs",
            o.secs, o.kill_every_ms
        ));
    }
    crate::cleanup::on_interrupt_clean_up("soak");
    let _guard = crate::cleanup::Guard;
    let name = format!("{}queue", crate::cleanup::prefix());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let books = CounterMap::create(&format!("{name}-books"), book_keys as usize)
        .map_err(|e| e.to_string())?;
    // The parent holds one end of each side, so neither closes while the
    // last of its processes is being replaced; it never sends or takes.
    // The watcher creates it (and removes the name when it drops, last).
    let watcher = Receiver::create(&name, SLOTS, MSG).map_err(|e| e.to_string())?;
    let keeper = Sender::open(&name).map_err(|e| e.to_string())?;
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1);
    let mut next_id = 0u64;
    let mut next_out = 0u64;
    let mut new_kid = |producer: bool| -> Result<Kid, String> {
        let child = if producer {
            next_id += 1;
            spawn("producer", &name, &next_id.to_string())?
        } else {
            next_out += 1;
            let out = dir.join(format!("consumer-{next_out}"));
            spawn("consumer", &name, &out.to_string_lossy())?
        };
        Ok(Kid { child, producer })
    };
    let mut kids = Vec::new();
    for _ in 0..o.producers {
        kids.push(new_kid(true)?);
    }
    for _ in 0..o.consumers {
        kids.push(new_kid(false)?);
    }
    let started = Instant::now();
    let end = started + Duration::from_secs(o.secs);
    let (mut killed_p, mut killed_c) = (0u64, 0u64);
    // Children that failed (exited on their own, or not of our SIGKILL).
    let mut failures: Vec<String> = Vec::new();
    let mut last_print = Instant::now();
    while Instant::now() < end {
        let pause = o.kill_every_ms / 2 + rng.below(o.kill_every_ms.max(1));
        std::thread::sleep(Duration::from_millis(pause));
        let i = rng.below(kids.len() as u64) as usize;
        let k = &mut kids[i];
        // Only a child that is still running counts as killed.
        let status = match k.child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => status,
            None => {
                let _ = k.child.kill();
                k.child.wait().map_err(|e| e.to_string())?
            }
        };
        match (status.signal(), k.producer) {
            (Some(libc::SIGKILL), true) => killed_p += 1,
            (Some(libc::SIGKILL), false) => killed_c += 1,
            _ => failures.push(format!("a {} ended on its own: {status}", k.role())),
        }
        let producer = k.producer;
        kids[i] = new_kid(producer)?;
        if !o.json && last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            eprintln!(
                "[{:>5.0}s] kills: {killed_p} producers, {killed_c} consumers; lost so far {}",
                started.elapsed().as_secs_f64(),
                watcher.lost()
            );
        }
    }
    // Stop the producers, then close the senders' side: the consumers
    // drain the queue and end.
    books.set("stop", 1).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for k in kids.iter_mut().filter(|k| k.producer) {
        wait_or_kill(k, deadline, &mut failures)?;
    }
    // A consumer killed holding a slot is reaped (and its message counted
    // lost) when somebody checks the peers: producers lapping the ring do,
    // but the last kills may not have been lapped. The watcher looks for
    // a while on the still-open queue, so every dead consumer is reaped
    // before the books are read. Whatever it takes is recorded too.
    let mut mine = std::fs::File::create(dir.join("watcher")).map_err(|e| e.to_string())?;
    let mut watcher = watcher;
    let look_until = Instant::now() + Duration::from_millis(200);
    let mut buf = [0u8; MSG];
    while Instant::now() < look_until {
        match watcher.try_recv(&mut buf) {
            Ok(n) => mine.write_all(&buf[..n]).map_err(|e| e.to_string())?,
            Err(ringway::RecvError::Empty) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("the watcher: {e}")),
        }
    }
    drop(mine);
    // The watcher created the queue and holds it open: it lets go, and the
    // stream ends once the keeper (the last sender) goes.
    watcher.close().map_err(|e| e.to_string())?;
    drop(keeper);
    for k in kids.iter_mut().filter(|k| !k.producer) {
        wait_or_kill(k, deadline, &mut failures)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let lost = watcher.lost();
    let reaped = ringway::admin::inspect(&name)
        .ok()
        .and_then(|i| i.field("peers_reaped"))
        .unwrap_or(0);
    drop(watcher);

    // The books: every record file, streamed (a 10-minute soak writes
    // gigabytes), into one bitset of sequence numbers per producer.
    let mut seen = Seen::default();
    let mut dups = 0u64;
    let mut torn = 0u64;
    for e in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let f = std::fs::File::open(e.path()).map_err(|e| e.to_string())?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let mut m = [0u8; MSG];
        loop {
            match r.read_exact(&mut m) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.to_string()),
            }
            let v = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
            if m[8..] != (!v).to_le_bytes() {
                torn += 1;
                continue;
            }
            if !seen.insert(v >> 32, v & 0xffff_ffff) {
                dups += 1;
            }
        }
        // A record cut short at the end of a file.
        if !r.fill_buf().map_err(|e| e.to_string())?.is_empty() {
            torn += 1;
        }
    }
    let mut sent_total = 0u64;
    let mut missing = 0u64;
    for id in 1..=next_id {
        let counted = books.get(&format!("sent-{id}")).ok().flatten().unwrap_or(0) as u64;
        // A producer killed between a send and its count sent one more.
        let sent = counted.max(seen.top(id));
        sent_total += sent;
        missing += seen.missing_below(id, sent);
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(books);
    let kills = killed_p + killed_c;
    let ok = dups == 0 && torn == 0 && missing <= lost && lost <= kills && failures.is_empty();
    let received = seen.count;
    if o.json {
        println!(
            "{}",
            serde_json::json!({
                "seconds": secs,
                "producers": o.producers,
                "consumers": o.consumers,
                "sent": sent_total,
                "received": received,
                "rate_per_s": received as f64 / secs,
                "kills": { "producers": killed_p, "consumers": killed_c },
                "peers_reaped": reaped,
                "lost_reported": lost,
                "missing": missing,
                "duplicates": dups,
                "torn": torn,
                "failed_children": failures,
                "ok": ok,
            })
        );
    } else {
        println!(
            "soak: {secs:.0} s, {} producers + {} consumers on one mpmc queue ({SLOTS} slots)",
            o.producers, o.consumers
        );
        println!("  messages sent      {sent_total}");
        println!(
            "  messages received  {received} ({:.0}/s)",
            received as f64 / secs
        );
        println!("  kills              {kills} ({killed_p} producers, {killed_c} consumers)");
        println!("  peers reaped       {reaped}");
        println!(
            "  lost (reported)    {lost}   (must be <= kills: one in flight per killed process)"
        );
        println!("  missing            {missing}   (sent, never received: must be <= lost)");
        println!("  duplicates         {dups}   (must be 0)");
        println!("  torn               {torn}   (must be 0)");
        println!("  failed children    {}   (must be 0)", failures.len());
        for f in failures.iter().take(5) {
            println!("    {f}");
        }
        println!("  {}", if ok { "OK" } else { "FAILED" });
    }
    Ok(ok)
}

/// Which `(producer, seq)` were received: a bitset per producer.
#[derive(Default)]
struct Seen {
    bits: HashMap<u64, Vec<u64>>,
    count: u64,
}

impl Seen {
    /// Mark one; `false` if it was marked already (a duplicate).
    fn insert(&mut self, id: u64, seq: u64) -> bool {
        let v = self.bits.entry(id).or_default();
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if v.len() <= w {
            v.resize(w + 1, 0);
        }
        let fresh = v[w] & (1 << b) == 0;
        v[w] |= 1 << b;
        self.count += u64::from(fresh);
        fresh
    }

    /// One past the highest seq received from `id`.
    fn top(&self, id: u64) -> u64 {
        let Some(v) = self.bits.get(&id) else {
            return 0;
        };
        v.iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i as u64 * 64 + 64 - u64::from(v[i].leading_zeros()))
    }

    /// How many of `id`'s seqs below `sent` were never received.
    fn missing_below(&self, id: u64, sent: u64) -> u64 {
        let v = self.bits.get(&id).map_or(&[][..], |v| &v[..]);
        let got: u64 = (0..sent.div_ceil(64))
            .map(|w| {
                let word = v.get(w as usize).copied().unwrap_or(0);
                let keep = if (w + 1) * 64 <= sent {
                    u64::MAX
                } else {
                    (1u64 << (sent % 64)) - 1
                };
                u64::from((word & keep).count_ones())
            })
            .sum();
        sent - got
    }
}

/// Wait for a child told to stop; one that fails, or does not finish
/// within the deadline (then killed), is a failure.
fn wait_or_kill(k: &mut Kid, deadline: Instant, failures: &mut Vec<String>) -> Result<(), String> {
    loop {
        if let Some(status) = k.child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                failures.push(format!("a {} ended badly: {status}", k.role()));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = k.child.kill();
            let _ = k.child.wait();
            failures.push(format!(
                "a {} did not finish within 60 s of the end",
                k.role()
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn the_books_count_duplicates_tops_and_gaps() {
        let mut s = Seen::default();
        for seq in (0..200).filter(|q| q % 7 != 3) {
            assert!(s.insert(5, seq));
        }
        assert!(!s.insert(5, 11), "a second receipt is a duplicate");
        assert_eq!(s.count, 200 - 29);
        assert_eq!(s.top(5), 199, "199 is a gap");
        assert_eq!(s.top(6), 0);
        // Gaps at 3, 10, 17, ...: 9 below 64, 29 below 200; none below 3.
        assert_eq!(s.missing_below(5, 3), 0);
        assert_eq!(s.missing_below(5, 64), 9);
        assert_eq!(s.missing_below(5, 200), 29);
        // Sent but never seen at all; sent beyond what was seen.
        assert_eq!(s.missing_below(6, 130), 130);
        assert_eq!(s.missing_below(5, 256), 29 + 56);
        assert_eq!(s.missing_below(5, 0), 0);
    }
}
