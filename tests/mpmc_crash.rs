//! Crash tests for the mpmc queue: senders and receivers SIGKILLed at named
//! failpoints and at random times. The others keep flowing, the dead
//! process's slot is recovered, and the loss is exactly its in-flight
//! message, reported by `lost()`.

mod common;

use common::{child, exit_child, open_retry, unique_name, Unlink};
use ringway::mpmc::{Receiver, Sender};
use ringway::RecvError;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

fn msg(p: u64, seq: u64) -> [u8; 16] {
    let v = p << 32 | seq;
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&v.to_le_bytes());
    m[8..].copy_from_slice(&(!v).to_le_bytes());
    m
}

fn append(path: &str, v: u64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(&v.to_le_bytes()).unwrap();
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "send" => {
            let mut tx = open_retry(|| Sender::open(&common::arg("NAME")));
            let (p, n) = (common::arg_u64("P"), common::arg_u64("N"));
            for seq in 0..n {
                tx.send_timeout(&msg(p, seq), LONG).expect("send");
            }
        }
        "send_batches" => {
            // Batches of 4.
            let mut tx = open_retry(|| Sender::open(&common::arg("NAME")));
            let (p, n) = (common::arg_u64("P"), common::arg_u64("N"));
            let mut seq = 0;
            while seq < n {
                let batch: Vec<[u8; 16]> = (seq..(seq + 4).min(n)).map(|s| msg(p, s)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(|m| &m[..]).collect();
                seq += tx.send_batch(&refs).expect("send_batch") as u64;
            }
        }
        "recv" => {
            // Record each message (to OUT) before it is released.
            let out = common::arg("OUT");
            let mut rx = open_retry(|| Receiver::open(&common::arg("NAME")));
            loop {
                match rx.read_timeout(LONG) {
                    Ok(m) => {
                        let v = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(u64::from_le_bytes(m[8..16].try_into().unwrap()), !v, "torn");
                        append(&out, v);
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

/// Receivers attached and alive on queue `name` (role 2 in mpmc's table).
fn receivers_alive(name: &str) -> usize {
    ringway::admin::inspect(name).map_or(0, |i| {
        i.peers
            .iter()
            .filter(|p| p.role == 2 && p.liveness == ringway::Liveness::Alive)
            .count()
    })
}

struct Run {
    name: String,
    _u: Unlink,
    keeper: Option<Sender>,
    outs: Vec<String>,
    receivers: Vec<common::Child>,
    senders: Vec<common::Child>,
    /// A receiver handle of the parent's that never receives: it keeps the
    /// receiving side open while the only child receiver is dead (else the
    /// senders would see every receiver gone and end).
    holder: Option<Receiver>,
}

impl Run {
    /// A queue of `cap` slots held open by a parent sender (`keeper`), so
    /// the stream ends only when the parent says so.
    fn new(cap: usize) -> Run {
        let name = unique_name("mpmc-crash");
        let keeper = Sender::create(&name, cap, 16).unwrap();
        Run {
            _u: Unlink(name.clone()),
            name,
            keeper: Some(keeper),
            outs: Vec::new(),
            receivers: Vec::new(),
            senders: Vec::new(),
            holder: None,
        }
    }
    /// Attach [`Run::holder`].
    fn hold_receivers_open(&mut self) {
        self.holder = Some(Receiver::open(&self.name).unwrap());
    }
    fn receiver(&mut self, failpoint: Option<&str>) -> usize {
        let out = std::env::temp_dir()
            .join(unique_name("mpmc-out"))
            .to_string_lossy()
            .into_owned();
        let _ = std::fs::remove_file(&out);
        let mut b = child("recv").arg("NAME", &self.name).arg("OUT", &out);
        if let Some(f) = failpoint {
            b = b.failpoint(f);
        }
        self.receivers.push(b.spawn());
        self.outs.push(out);
        // Wait until it is attached: a receiver still starting when the
        // senders finish would get nothing (and never reach its failpoint).
        let mut want = self.holder.is_some() as usize;
        for c in self.receivers.iter_mut() {
            want += c.wait_timeout(Duration::ZERO).is_none() as usize;
        }
        let deadline = Instant::now() + LONG;
        while receivers_alive(&self.name) < want {
            assert!(Instant::now() < deadline, "receiver never attached");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.receivers.len() - 1
    }
    fn sender(&mut self, p: u64, n: u64, failpoint: Option<&str>) -> usize {
        let mut b = child("send")
            .arg("NAME", &self.name)
            .arg("P", p)
            .arg("N", n);
        if let Some(f) = failpoint {
            b = b.failpoint(f);
        }
        self.senders.push(b.spawn());
        self.senders.len() - 1
    }
    /// Wait for the senders (`killed` ones must have died of SIGKILL), end
    /// the stream, wait for the receivers; returns what was recorded per
    /// producer, and `lost()`.
    fn finish(
        mut self,
        killed_senders: &[usize],
        killed_receivers: &[usize],
    ) -> (HashMap<u64, Vec<u64>>, u64) {
        for (i, c) in self.senders.iter_mut().enumerate() {
            if killed_senders.contains(&i) {
                c.expect_killed(LONG);
            } else {
                c.expect_success(LONG);
            }
        }
        let keeper = self.keeper.take().unwrap();
        // `lost()` is read once the receivers are done: a receiver may still
        // be waiting out the peer-check slice at a dead sender's slot when
        // the senders have all exited (read before, it was 0 now and then).
        // This receiver never receives; it only keeps the counter readable.
        let spy = Receiver::from_fd(keeper.segment_fd()).unwrap();
        drop(keeper);
        for (i, c) in self.receivers.iter_mut().enumerate() {
            if killed_receivers.contains(&i) {
                c.expect_killed(LONG);
            } else {
                c.expect_success(LONG);
            }
        }
        let mut per: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut seen = HashSet::new();
        for o in &self.outs {
            for c in std::fs::read(o).unwrap_or_default().chunks_exact(8) {
                let v = u64::from_le_bytes(c.try_into().unwrap());
                assert!(seen.insert(v), "duplicate delivery of {v:#x}");
                per.entry(v >> 32).or_default().push(v & 0xffff_ffff);
            }
            let _ = std::fs::remove_file(o);
        }
        for v in per.values_mut() {
            v.sort_unstable();
        }
        (per, spy.lost())
    }
}

fn is_prefix(v: &[u64], n: u64) -> bool {
    v.len() as u64 == n && v.iter().enumerate().all(|(i, &s)| s == i as u64)
}

#[test]
fn sender_killed_between_claim_and_publish_loses_exactly_that_message() {
    for k in [1u64, 50] {
        let mut run = Run::new(4);
        run.receiver(None);
        run.receiver(None);
        run.sender(0, 5000, None);
        let killed = run.sender(1, 5000, Some(&format!("mpmc.after_claim@{k}")));
        let started = Instant::now();
        let (per, lost) = run.finish(&[killed], &[]);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        assert!(
            is_prefix(&per[&0], 5000),
            "the survivor's messages all arrive"
        );
        let dead = per.get(&1).cloned().unwrap_or_default();
        assert!(
            is_prefix(&dead, k - 1),
            "the dead sender's first {} arrive, got {}",
            k - 1,
            dead.len()
        );
        assert_eq!(lost, 1, "its claimed slot was skipped and counted");
    }
}

#[test]
fn sender_killed_inside_a_batch_loses_only_its_unpublished_slots() {
    let name = unique_name("mpmc-batch-kill");
    let _u = Unlink(name.clone());
    // 64 slots: every batch gets its whole range of 4, whatever the pace of
    // the receiver, so the loss is exact.
    let keeper = Sender::create(&name, 64, 16).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    // Killed while writing the 10th message: in the third batch (messages
    // 8..12), after publishing 8, before publishing 9. Slots 9, 10 and 11
    // were claimed and never published.
    let mut p = child("send_batches")
        .arg("NAME", &name)
        .arg("P", 1)
        .arg("N", 1000)
        .failpoint("mpmc.batch_after_claim@10")
        .spawn();
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + LONG;
    // Receive until the three stuck slots have been skipped (the receiver
    // itself reaps the dead sender while it waits).
    while rx.lost() < 3 || got.len() < 9 {
        assert!(
            Instant::now() < deadline,
            "no recovery: got {got:?}, lost {}",
            rx.lost()
        );
        if let Ok(n) = rx.recv_timeout(&mut buf, Duration::from_millis(50)) {
            got.push(u64::from_le_bytes(buf[..8].try_into().unwrap()) & 0xffff_ffff);
            assert_eq!(n, 16);
        }
    }
    p.expect_killed(LONG);
    assert_eq!(got, (0..9).collect::<Vec<_>>());
    assert_eq!(rx.lost(), 3, "the batch's three unpublished slots");
    // The queue still works.
    let mut tx = keeper.try_clone().unwrap();
    tx.send(&msg(2, 0)).unwrap();
    assert_eq!(rx.recv_timeout(&mut buf, LONG).unwrap(), 16);
}

#[test]
fn receiver_killed_holding_a_slot_loses_exactly_that_message() {
    let mut run = Run::new(4);
    // The doomed receiver is the only one receiving until it dies, so it
    // surely reaches its 20th claim (with a second receiver from the start,
    // that one sometimes took nearly everything and the first exited
    // normally). The parent's holder keeps the receiving side open
    // meanwhile: with no receiver attached the senders would end.
    run.hold_receivers_open();
    let killed = run.receiver(Some("mpmc.consumer_after_claim@20"));
    run.sender(0, 3000, None);
    run.sender(1, 3000, None);
    run.receivers[killed].expect_killed(LONG);
    run.receiver(None);
    let (per, lost) = run.finish(&[], &[killed]);
    let got: usize = per.values().map(Vec::len).sum();
    // The killed receiver claimed its 20th message but neither recorded
    // nor freed it: that one is lost, and counted.
    assert_eq!(lost, 1);
    assert_eq!(got, 6000 - 1, "everything else arrives exactly once");
}

#[test]
fn random_time_kill_loop_keeps_the_others_flowing() {
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds = 8;
    let mut total_lost = 0;
    let mut real_kills = 0;
    for round in 0..rounds {
        let n = 20_000;
        let mut run = Run::new(4);
        run.receiver(None);
        run.receiver(None);
        run.sender(0, n, None);
        run.sender(1, n, None);
        let kill_sender = round % 2 == 0;
        std::thread::sleep(Duration::from_micros(rand() % 20_000));
        let victim = if kill_sender {
            &mut run.senders[1]
        } else {
            &mut run.receivers[0]
        };
        let was_running = victim.wait_timeout(Duration::ZERO).is_none();
        victim.kill();
        real_kills += was_running as u32;
        let started = Instant::now();
        let ks: Vec<usize> = if kill_sender && was_running {
            vec![1]
        } else {
            vec![]
        };
        let kr: Vec<usize> = if !kill_sender && was_running {
            vec![0]
        } else {
            vec![]
        };
        let (per, lost) = run.finish(&ks, &kr);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "round {round} hung"
        );
        assert!(lost <= 1, "round {round}: lost {lost}");
        total_lost += lost;
        let got1 = per.get(&1).cloned().unwrap_or_default();
        if kill_sender {
            assert!(
                is_prefix(&per[&0], n),
                "round {round}: the survivor's messages"
            );
            // A gap-free prefix: nothing after the dead sender's last claim.
            assert!(
                is_prefix(&got1, got1.len() as u64),
                "round {round}: gap in the dead sender's stream"
            );
        } else {
            // The dead receiver may have had one message in its hands
            // (recorded and lost-counted, or neither).
            let accounted = per.values().map(Vec::len).sum::<usize>() as i64 + lost as i64;
            assert!(
                (accounted - 2 * n as i64).abs() <= 1,
                "round {round}: {accounted} of {}",
                2 * n
            );
        }
    }
    println!("mpmc random kill loop: {rounds} rounds, {real_kills} kills mid-stream, {total_lost} messages lost in flight");
    assert!(
        real_kills >= rounds / 2,
        "only {real_kills} of {rounds} kills landed mid-stream"
    );
}
