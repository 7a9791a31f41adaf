//! The crash matrix: for each structure and role, a process SIGKILLed at a
//! named failpoint or at a random time, `ROUNDS` rounds each. Every round
//! asserts the documented recovery within its deadline and the exact loss:
//!
//! | structure | killed | at | survivor sees | lost |
//! |---|---|---|---|---|
//! | spsc | producer | `spsc.before_commit@K` | K-1 messages, then `Disconnected` | the frame being written (never seen) |
//! | spsc | producer | random, consumer asleep on the futex | a gap-free prefix, then `Disconnected` | nothing committed |
//! | spsc | consumer | random, producer asleep on a full ring | `SendError::Disconnected(msg)` | - |
//! | mpmc | sender | `mpmc.after_claim@K` | every other message; the other sender's all | 1, reported by `lost()` |
//! | mpmc | receiver | `mpmc.consumer_after_claim@K`, `mpmc.consumer_after_copy@K` | every message but the one it held, in order | 1, reported by `lost()` |
//! | Pipe | end 2 | `spsc.before_commit@K` | K-1 messages, then `Disconnected` both ways | the frame being written |
//! | counters | lock holder | `lock.held` | the next `lock()` gets it, told `owner_died` | nothing (values intact) |
//! | any kind | creator | `segment.before_ready` | openers: `NotReady` in ~2 s; `gc` removes it; the name is free again | - |
//!
//! Plus pid reuse: a dead peer whose recorded pid now belongs to a live
//! process is still dead (liveness is a kernel-released lock, not a pid).
//! Run with `--nocapture` to see each row's rounds and worst recovery time.

mod common;

use common::{child, exit_child, open_retry, unique_name, Unlink};
use ringway::admin;
use ringway::mpmc::{Receiver, Sender};
use ringway::spsc::{Consumer, Producer};
use ringway::{Error, RecvError, SendError};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Rounds per row (`RINGWAY_CRASH_ROUNDS` to run more).
fn rounds() -> u64 {
    std::env::var("RINGWAY_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// How long a survivor may take to see a death (the design: 20 ms peer
/// checks; the margin is for 2 loaded cores).
const RECOVERY: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(60);

/// A pseudo-random number in `0..n` (no dependency; seeded per call site).
fn rand(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let s = t ^ (std::process::id() as u64) << 32 | 1;
    eprintln!("crash matrix seed {s:#x}");
    s
}

fn msg(p: u64, seq: u64) -> [u8; 16] {
    let v = p << 32 | seq;
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&v.to_le_bytes());
    m[8..].copy_from_slice(&(!v).to_le_bytes());
    m
}

fn unmsg(m: &[u8]) -> (u64, u64) {
    assert_eq!(m.len(), 16, "torn message");
    let v = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m[8..], (!v).to_le_bytes(), "torn message");
    (v >> 32, v & 0xffff_ffff)
}

fn report(row: &str, rounds: u64, worst: Duration, lost: u64) {
    eprintln!(
        "crash matrix | {row:<52} | {rounds:>3} rounds | all recovered, worst {:>6.1} ms | lost {lost} (= in flight)",
        worst.as_secs_f64() * 1e3
    );
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let name = common::arg("NAME");
    match role.as_str() {
        // Send N messages (the failpoint may end us first), then idle.
        "spsc_send" => {
            let mut tx = open_retry(|| Producer::open(&name));
            for seq in 0..common::arg_u64("N") {
                tx.send_timeout(&msg(0, seq), LONG).expect("send");
            }
            std::thread::sleep(LONG);
        }
        // Take the consumer end and never read.
        "spsc_hold_consumer" => {
            let _rx = open_retry(|| Consumer::open(&name));
            std::thread::sleep(LONG);
        }
        "mpmc_send" => {
            let mut tx = open_retry(|| Sender::open(&name));
            let p = common::arg_u64("P");
            for seq in 0..common::arg_u64("N") {
                tx.send_timeout(&msg(p, seq), LONG).expect("send");
            }
        }
        // Receive until killed (at its failpoint), reporting nothing.
        "mpmc_recv" => {
            let mut rx = open_retry(|| Receiver::open(&name));
            let mut buf = [0u8; 16];
            while rx.recv_timeout(&mut buf, LONG).is_ok() {}
        }
        "pipe_send" => {
            let mut end = open_retry(|| ringway::pipe::Pipe::open(&name));
            for seq in 0..common::arg_u64("N") {
                end.send_bytes(&msg(2, seq), 0, None).expect("send");
            }
            std::thread::sleep(LONG);
        }
        "mpmc_create_hold" => {
            let _tx = Sender::create(&name, 8, 16).unwrap();
            std::thread::sleep(LONG);
        }
        "lock_hold" => {
            let map = open_retry(|| ringway::counters::CounterMap::open(&name));
            let _g = map.lock().expect("lock"); // killed here (lock.held)
            std::thread::sleep(LONG);
        }
        "create" => {
            // Killed at segment.before_ready.
            let r = match common::arg("KIND").as_str() {
                "spsc" => Producer::create(&name, 4096).map(drop),
                "mpmc" => Sender::create(&name, 8, 16).map(drop),
                "pipe" => ringway::pipe::Pipe::create(&name, true, 4096).map(drop),
                _ => ringway::counters::CounterMap::create(&name, 8).map(drop),
            };
            panic!("the creator should have died before READY: {r:?}");
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

#[test]
fn spsc_producer_killed_before_commit() {
    let mut s = seed();
    let mut worst = Duration::ZERO;
    for _ in 0..rounds() {
        let k = 1 + rand(&mut s, 300);
        let name = unique_name("cm-spsc-commit");
        let _u = Unlink(name.clone());
        let mut rx = Consumer::create(&name, 256).unwrap();
        let mut c = child("spsc_send")
            .arg("NAME", &name)
            .arg("N", 1000)
            .failpoint(&format!("spsc.before_commit@{k}"))
            .spawn();
        let mut buf = [0u8; 64];
        let mut got = 0;
        let died;
        loop {
            match rx.recv_timeout(&mut buf, LONG) {
                Ok(n) => {
                    assert_eq!(unmsg(&buf[..n]), (0, got));
                    got += 1;
                }
                Err(RecvError::Disconnected) => {
                    died = Instant::now();
                    break;
                }
                Err(e) => panic!("k={k}: {e:?}"),
            }
        }
        c.expect_killed(RECOVERY);
        assert_eq!(got, k - 1, "exactly the committed frames");
        worst = worst.max(died.elapsed());
    }
    report("spsc producer @ spsc.before_commit", rounds(), worst, 1);
}

#[test]
fn spsc_producer_killed_while_the_consumer_sleeps() {
    let mut s = seed();
    let mut worst = Duration::ZERO;
    for _ in 0..rounds() {
        let n = rand(&mut s, 5000);
        let name = unique_name("cm-spsc-sleep");
        let _u = Unlink(name.clone());
        let mut rx = Consumer::create(&name, 1024).unwrap();
        let c = child("spsc_send").arg("NAME", &name).arg("N", n).spawn();
        // Drain what it sends; it then idles and we fall asleep in recv.
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < n {
            let len = rx.recv_timeout(&mut buf, LONG).expect("recv");
            assert_eq!(unmsg(&buf[..len]), (0, got));
            got += 1;
        }
        let pid = c.pid();
        let killer = std::thread::spawn(move || {
            // Long enough to be asleep on the futex, not spinning.
            std::thread::sleep(Duration::from_millis(100 + pid as u64 % 100));
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Instant::now()
        });
        match rx.recv_timeout(&mut buf, LONG) {
            Err(RecvError::Disconnected) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
        worst = worst.max(killer.join().unwrap().elapsed());
        drop(c);
    }
    report(
        "spsc producer, consumer asleep on the futex",
        rounds(),
        worst,
        0,
    );
}

#[test]
fn spsc_consumer_killed_while_the_producer_sleeps_on_a_full_ring() {
    let mut worst = Duration::ZERO;
    for _ in 0..rounds() {
        let name = unique_name("cm-spsc-full");
        let _u = Unlink(name.clone());
        let mut tx = Producer::create(&name, 256).unwrap();
        let mut c = child("spsc_hold_consumer").arg("NAME", &name).spawn();
        // Wait until the consumer has attached, then fill the ring.
        let deadline = Instant::now() + LONG;
        while admin::inspect(&name).unwrap().alive() < 2 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        while tx.try_send(&msg(0, 0)).is_ok() {}
        let pid = c.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Instant::now()
        });
        match tx.send_timeout(&msg(0, 1), LONG) {
            Err(SendError::Disconnected(())) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
        worst = worst.max(killer.join().unwrap().elapsed());
        c.expect_killed(RECOVERY);
    }
    report(
        "spsc consumer, producer asleep on a full ring",
        rounds(),
        worst,
        0,
    );
}

#[test]
fn mpmc_sender_killed_after_claim() {
    let mut s = seed();
    let mut worst = Duration::ZERO;
    for _ in 0..rounds() {
        let k = 1 + rand(&mut s, 200);
        let n = 300;
        let name = unique_name("cm-mpmc-send");
        let _u = Unlink(name.clone());
        let mut rx = Receiver::create(&name, 16, 16).unwrap();
        // Keeps the senders' side open while the children come and go (the
        // last sender leaving, dead or alive, ends the queue).
        let keeper = Sender::open(&name).unwrap();
        let mut dying = child("mpmc_send")
            .arg("NAME", &name)
            .arg("P", 1)
            .arg("N", n)
            .failpoint(&format!("mpmc.after_claim@{k}"))
            .spawn();
        let mut healthy = child("mpmc_send")
            .arg("NAME", &name)
            .arg("P", 2)
            .arg("N", n)
            .spawn();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut buf = [0u8; 16];
        // Every message of the healthy sender, and the dying one's first
        // k-1, arrive exactly once, past the slot the dead one claimed.
        while seen.len() < (k - 1 + n) as usize {
            let len = rx.recv_timeout(&mut buf, RECOVERY).expect("recv");
            assert!(seen.insert(unmsg(&buf[..len])), "duplicate");
        }
        dying.expect_killed(RECOVERY);
        healthy.expect_success(RECOVERY);
        // The creator lets go; the keeper is the last sender.
        rx.close().unwrap();
        drop(keeper);
        let t = Instant::now();
        match rx.recv_timeout(&mut buf, LONG) {
            Err(RecvError::Disconnected) => {}
            other => panic!("expected the end of the queue, got {other:?}"),
        }
        let died = t;
        let want: HashSet<(u64, u64)> = (0..k - 1)
            .map(|q| (1, q))
            .chain((0..n).map(|q| (2, q)))
            .collect();
        assert_eq!(seen, want, "k={k}");
        assert_eq!(rx.lost(), 1, "the claimed slot is reported lost");
        worst = worst.max(died.elapsed());
    }
    report("mpmc sender @ mpmc.after_claim", rounds(), worst, 1);
}

#[test]
fn mpmc_receiver_killed_holding_a_slot() {
    let mut s = seed();
    let mut worst = Duration::ZERO;
    for round in 0..rounds() {
        let k = 1 + rand(&mut s, 50);
        // Before it copied the message out, or after (before freeing it).
        let point = ["mpmc.consumer_after_claim", "mpmc.consumer_after_copy"][round as usize % 2];
        let name = unique_name("cm-mpmc-recv");
        let _u = Unlink(name.clone());
        // This process holds a receiver (so the queue stays open) but does
        // not read until the dying one is dead: it gets k messages, the
        // k-th in its hands when it dies.
        let mut rx = Receiver::create(&name, 8, 16).unwrap();
        let mut tx = Sender::open(&name).unwrap();
        let mut dying = child("mpmc_recv")
            .arg("NAME", &name)
            .failpoint(&format!("{point}@{k}"))
            .spawn();
        let mut sent = 0;
        let deadline = Instant::now() + LONG;
        while dying.wait_timeout(Duration::ZERO).is_none() {
            assert!(
                Instant::now() < deadline,
                "the receiver never reached its failpoint"
            );
            match tx.send_timeout(&msg(1, sent), Duration::from_millis(20)) {
                Ok(()) => sent += 1,
                Err(SendError::Timeout(())) => {}
                Err(e) => panic!("send: {e:?}"),
            }
        }
        dying.expect_killed(RECOVERY);
        let t = Instant::now();
        // Everything it did not take is here, in order, once; the slot it
        // held is recovered (the queue keeps flowing past it) and counted.
        let mut buf = [0u8; 16];
        for seq in k..sent {
            let len = rx.recv_timeout(&mut buf, RECOVERY).expect("recv");
            assert_eq!(unmsg(&buf[..len]), (1, seq));
        }
        for extra in 0..20 {
            tx.send_timeout(&msg(2, extra), RECOVERY)
                .expect("the queue still flows");
            let len = rx.recv_timeout(&mut buf, RECOVERY).expect("recv");
            assert_eq!(unmsg(&buf[..len]), (2, extra));
        }
        assert_eq!(rx.lost(), 1, "{point}@{k} sent={sent}");
        worst = worst.max(t.elapsed());
    }
    report(
        "mpmc receiver @ consumer_after_claim / _after_copy",
        rounds(),
        worst,
        1,
    );
}

#[test]
fn pipe_end_killed_before_commit() {
    let mut s = seed();
    let mut worst = Duration::ZERO;
    for _ in 0..rounds() {
        let k = 1 + rand(&mut s, 100);
        let name = unique_name("cm-pipe");
        let _u = Unlink(name.clone());
        let mut end = ringway::pipe::Pipe::create(&name, true, 4096).unwrap();
        let mut c = child("pipe_send")
            .arg("NAME", &name)
            .arg("N", 500)
            .failpoint(&format!("spsc.before_commit@{k}"))
            .spawn();
        let mut got = 0;
        let died;
        loop {
            // Bounded: a regression in dead-peer detection fails here
            // instead of hanging CI.
            assert!(
                end.poll(Some(RECOVERY)).unwrap(),
                "no message and no disconnect within {RECOVERY:?}"
            );
            match end.recv_bytes(None) {
                Ok(m) => {
                    assert_eq!(unmsg(&m), (2, got));
                    got += 1;
                }
                Err(RecvError::Disconnected) => {
                    died = Instant::now();
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        c.expect_killed(RECOVERY);
        assert_eq!(got, k - 1);
        // The other direction is gone too.
        let t = Instant::now();
        loop {
            let tx = end.sender().unwrap();
            match tx.send_timeout(&[0; 64], RECOVERY) {
                Ok(()) => assert!(t.elapsed() < RECOVERY, "sends to a dead end never fail"),
                Err(SendError::Timeout(())) => panic!("a send to a dead end waited {RECOVERY:?}"),
                Err(SendError::Disconnected(())) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        worst = worst.max(died.elapsed());
    }
    report("Pipe end 2 @ spsc.before_commit", rounds(), worst, 1);
}

#[test]
fn lock_holder_killed_holding_the_lock() {
    let mut worst = Duration::ZERO;
    for round in 0..rounds() {
        let name = unique_name("cm-lock");
        let _u = Unlink(name.clone());
        let map = ringway::counters::CounterMap::create(&name, 8).unwrap();
        map.set("count", round as i64).unwrap();
        let mut c = child("lock_hold")
            .arg("NAME", &name)
            .failpoint("lock.held")
            .spawn();
        c.expect_killed(LONG);
        let t = Instant::now();
        let g = map.lock().unwrap();
        worst = worst.max(t.elapsed());
        assert!(g.owner_died(), "the next holder is told");
        assert_eq!(g.get("count").unwrap(), Some(round as i64));
        drop(g);
        // And the lock works normally afterwards.
        assert!(!map.lock().unwrap().owner_died());
    }
    report("counters lock holder @ lock.held", rounds(), worst, 0);
}

#[test]
fn creator_killed_before_ready_every_kind() {
    let mut worst = Duration::ZERO;
    for kind in ["spsc", "mpmc", "pipe", "counters"] {
        let name = unique_name("cm-create");
        let _u = Unlink(name.clone());
        let mut c = child("create")
            .arg("NAME", &name)
            .arg("KIND", kind)
            .failpoint("segment.before_ready")
            .spawn();
        c.expect_killed(LONG);
        // Openers wait (bounded) and are told, not hung.
        let t = Instant::now();
        let e = match kind {
            "spsc" => Consumer::open(&name).map(drop),
            "mpmc" => Receiver::open(&name).map(drop),
            "pipe" => ringway::pipe::Pipe::open(&name).map(drop),
            _ => ringway::counters::CounterMap::open(&name).map(drop),
        }
        .expect_err("an unpublished segment must not open");
        assert!(matches!(e, Error::NotReady { .. }), "{kind}: {e:?}");
        assert!(t.elapsed() < RECOVERY);
        worst = worst.max(t.elapsed());
        // gc removes it after its grace period (`create` would replace it
        // at once: tests/lifecycle.rs).
        let info = admin::inspect(&name).unwrap();
        assert_eq!(info.state, admin::State::Initializing);
        assert!(!info.locked, "the dead creator holds nothing");
        let file = std::fs::File::options()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - admin::INIT_GRACE * 2)
            .unwrap();
        let removed = admin::collect_prefixed(&name, true).unwrap();
        assert!(removed.iter().any(|g| g.name == name), "{kind}: gc kept it");
        Producer::create(&name, 64).expect("the name is free again");
    }
    report("creator of each kind @ segment.before_ready", 4, worst, 0);
}

#[test]
fn a_live_process_with_the_dead_peers_pid_is_not_taken_for_it() {
    let name = unique_name("cm-pid-reuse");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::create(&name, 1024).unwrap();
    let mut c = child("spsc_send").arg("NAME", &name).arg("N", 3).spawn();
    let mut buf = [0u8; 64];
    for seq in 0..3 {
        let n = rx.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(unmsg(&buf[..n]), (0, seq));
    }
    c.kill();
    // Its pid is reused: write a live process's pid (ours) into the dead
    // producer's peer entry (slot 0), as if the kernel had handed the pid
    // to somebody else. A pid-based check would now call it alive.
    let f = std::fs::File::options()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &std::process::id().to_ne_bytes(), 256 + 8)
        .unwrap();
    let info = admin::inspect(&name).unwrap();
    let p = info.peers.iter().find(|p| p.slot == 0).unwrap();
    assert_eq!(p.pid, std::process::id());
    assert_eq!(p.liveness, ringway::Liveness::Dead);
    let t = Instant::now();
    match rx.recv_timeout(&mut buf, LONG) {
        Err(RecvError::Disconnected) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    report(
        "pid reuse (dead producer's pid given to a live one)",
        1,
        t.elapsed(),
        0,
    );
}

#[test]
fn a_queue_left_by_its_killed_creator_is_kept_while_used_and_removed_by_its_last_holder() {
    let name = unique_name("cm-gc");
    let _u = Unlink(name.clone());
    let mut creator = child("mpmc_create_hold").arg("NAME", &name).spawn();
    let rx = open_retry(|| Receiver::open(&name));
    creator.kill();
    // The creator is dead, but this process still holds the queue.
    let info = admin::inspect(&name).unwrap();
    assert_eq!((info.alive(), info.dead()), (1, 1));
    assert!(info.garbage().is_none());
    assert!(!admin::collect_prefixed(&name, true)
        .unwrap()
        .iter()
        .any(|g| g.name == name));
    drop(rx);
    // The last holder reaped the dead creator and, the queue being empty,
    // removed the name: nothing is left for gc.
    assert!(matches!(admin::inspect(&name), Err(Error::NotFound { .. })));
    report(
        "mpmc creator killed; gc keeps it while used, the last holder removes it",
        1,
        Duration::ZERO,
        0,
    );
}
