//! Hostile bytes written into a *live* segment, at a random moment of a
//! stream: every blocking call must end, in data, a clear error or the
//! end of the stream, never a hang, a panic or a signal.
//!
//! Short here (`cargo test`); `RINGWAY_HOSTILE_ROUNDS=N` runs more.

mod common;

use common::{unique_name, Unlink};
use ringway::mpmc::{Receiver, Sender};
use ringway::spsc::{Consumer, Producer};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a round may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(20);
/// Messages per round (the corruption lands somewhere in the stream).
const N: u64 = 200_000;

fn rounds() -> u64 {
    std::env::var("RINGWAY_HOSTILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A hostile word: garbage of several shapes.
fn hostile(rng: &mut Rng) -> u64 {
    match rng.next() % 5 {
        0 => rng.next(),
        1 => 0,
        2 => u64::MAX,
        3 => rng.next() % 4096,
        _ => 1 << (rng.next() % 64),
    }
}

/// Run `round` (which starts its own threads) while corrupting `words`
/// random 8-byte words of the segment file after a random delay; the
/// round reports its outcome on the channel. Returns the outcome, or
/// panics on a hang.
fn corrupt_during(name: &str, rng: &mut Rng, outcome: &mpsc::Receiver<String>) -> Vec<String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let len = f.metadata().unwrap().len();
    std::thread::sleep(Duration::from_micros(rng.next() % 5_000));
    // One hostile word every ~0.5 ms while the stream runs (at most 8),
    // half of them in the control area (positions, waiters, peer table).
    let mut what = Vec::new();
    let mut got = Vec::new();
    while what.len() < 8 && got.len() < 2 {
        let span = if rng.next() % 2 == 0 {
            len.min(8192)
        } else {
            len
        };
        let off = (rng.next() % span) & !7;
        let v = hostile(rng);
        f.write_all_at(&v.to_ne_bytes(), off).unwrap();
        what.push(format!("{off}={v:#x}"));
        if let Ok(o) = outcome.recv_timeout(Duration::from_micros(500)) {
            got.push(o);
        }
    }
    while got.len() < 2 {
        match outcome.recv_timeout(DEADLINE) {
            Ok(o) => got.push(o),
            Err(_) => panic!(
                "{name}: hung after corrupting {} (ended: {got:?})",
                what.join(", ")
            ),
        }
    }
    got
}

fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// Send `n` messages with `send`; the first error ends it.
fn send_all(n: u64, mut send: impl FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
    (0..n).try_for_each(|i| send(&i.to_le_bytes()))
}

/// Receive with `recv` until the end of the stream (`Ok`) or an error.
fn recv_all(
    mut recv: impl FnMut(&mut [u8]) -> Result<usize, ringway::RecvError>,
) -> Result<(), String> {
    let mut buf = [0u8; 64];
    loop {
        match recv(&mut buf) {
            Ok(_) => {}
            Err(ringway::RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// One round between threads: `sender` and `receiver` run the two ends
/// while the segment `name` is corrupted; both must end.
fn thread_round(
    name: &str,
    rng: &mut Rng,
    sender: impl FnOnce() -> Result<(), String> + Send + 'static,
    receiver: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Vec<String> {
    let (done, results) = mpsc::channel();
    let d2 = done.clone();
    std::thread::spawn(move || {
        let _ = d2.send(format!("send {}", outcome(&sender())));
    });
    std::thread::spawn(move || {
        let _ = done.send(format!("recv {}", outcome(&receiver())));
    });
    corrupt_during(name, rng, &results)
}

#[test]
fn corrupting_a_live_spsc_ring_never_hangs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    for round in 0..rounds() {
        let name = unique_name("hostile-live-spsc");
        let _u = Unlink(name.clone());
        let mut tx = Producer::create(&name, 1 << 16).unwrap();
        let mut rx = Consumer::open(&name).unwrap();
        let ends = thread_round(
            &name,
            &mut rng,
            move || send_all(N, |m| tx.send(m).map_err(|e| e.to_string())),
            move || recv_all(|b| rx.recv(b)),
        );
        println!("spsc round {round}: {ends:?}");
    }
}

#[test]
fn corrupting_a_live_mpmc_queue_never_hangs() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ std::process::id() as u64);
    let started = Instant::now();
    for round in 0..rounds() {
        let name = unique_name("hostile-live-mpmc");
        let _u = Unlink(name.clone());
        let mut tx = Sender::create(&name, 1024, 64).unwrap();
        let mut rx = Receiver::open(&name).unwrap();
        let ends = thread_round(
            &name,
            &mut rng,
            // The closure owns the creator's handle: its drop ends the stream.
            move || send_all(N, |m| tx.send(m).map_err(|e| e.to_string())),
            move || recv_all(|b| rx.recv(b)),
        );
        println!("mpmc round {round}: {ends:?}");
    }
    println!("mpmc: {} rounds in {:?}", rounds(), started.elapsed());
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let name = common::arg("NAME");
    let r: Result<(), String> = match role.as_str() {
        "mpmc_send" => {
            let mut tx = common::open_retry(|| Sender::open(&name));
            send_all(5 * N, |m| tx.send(m).map_err(|e| e.to_string()))
        }
        "mpmc_recv" => {
            let mut rx = common::open_retry(|| Receiver::open(&name));
            recv_all(|b| rx.recv(b))
        }
        other => panic!("unknown role {other}"),
    };
    match r {
        Ok(()) => common::exit_child(0),
        Err(e) => {
            eprintln!("{role}: {e}");
            common::exit_child(2)
        }
    }
}

/// As the mpmc test above, with each end in a process of its own (so the
/// peer table and the liveness checks are in play, as in `ringway bench`).
#[test]
fn corrupting_a_live_mpmc_queue_between_processes_never_hangs() {
    let mut rng = Rng(0x5851_f42d_4c95_7f2d ^ std::process::id() as u64);
    let rounds = rounds().div_ceil(2);
    let mut errors = 0;
    for round in 0..rounds {
        let name = unique_name("hostile-live-mpmc-procs");
        let _u = Unlink(name.clone());
        let keeper = Sender::create(&name, 1024, 64).unwrap();
        let mut rx = common::child("mpmc_recv").arg("NAME", &name).spawn();
        let mut tx = common::child("mpmc_send").arg("NAME", &name).spawn();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        let len = f.metadata().unwrap().len();
        std::thread::sleep(Duration::from_micros(2_000 + rng.next() % 100_000));
        let mut what = Vec::new();
        for _ in 0..1 + rng.next() % 4 {
            let span = if rng.next() % 2 == 0 {
                len.min(8192)
            } else {
                len
            };
            let off = (rng.next() % span) & !7;
            let v = hostile(&mut rng);
            f.write_all_at(&v.to_ne_bytes(), off).unwrap();
            what.push(format!("{off}={v:#x}"));
            std::thread::sleep(Duration::from_micros(rng.next() % 2_000));
        }
        let s = tx.wait_timeout(DEADLINE);
        drop(keeper);
        let r = rx.wait_timeout(DEADLINE);
        assert!(
            s.is_some() && r.is_some(),
            "round {round}: hung after corrupting {} (sender {s:?}, receiver {r:?})",
            what.join(", ")
        );
        use std::os::unix::process::ExitStatusExt;
        for st in [s.unwrap(), r.unwrap()] {
            assert!(
                st.signal().is_none(),
                "round {round}: killed by a signal: {st:?}"
            );
            errors += (st.code() != Some(0)) as u32;
        }
    }
    println!("mpmc between processes: {rounds} rounds, {errors} ends with an error");
}
