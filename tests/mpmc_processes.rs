//! The mpmc queue across real processes: conservation with several
//! producers and consumers through a tiny queue, end of stream without
//! sentinels, and recovery from killed senders and receivers.

mod common;

use common::{child, exit_child, open_retry, stress_n, unique_name, Unlink};
use ringway::mpmc::{Receiver, Sender};
use ringway::RecvError;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// Message `seq` of producer `p`: `(p << 32 | seq)` then filler.
fn msg(p: u64, seq: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&(p << 32 | seq).to_le_bytes());
    m[8..].copy_from_slice(&(!(p << 32 | seq)).to_le_bytes());
    m
}

/// The `(producer, seq)` of a message, checking its filler.
fn parse(m: &[u8]) -> (u64, u64) {
    assert_eq!(m.len(), 16, "length");
    let v = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(m[8..].try_into().unwrap()),
        !v,
        "torn message"
    );
    (v >> 32, v & 0xffff_ffff)
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
        "recv" => {
            // Receive until the end of the stream; check per-producer order;
            // write every (producer, seq) received to OUT.
            let mut rx = open_retry(|| Receiver::open(&common::arg("NAME")));
            let mut last: Vec<Option<u64>> = vec![None; 64];
            let mut out = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                match rx.recv_timeout(&mut buf, LONG) {
                    Ok(n) => {
                        let (p, seq) = parse(&buf[..n]);
                        let l = &mut last[p as usize];
                        assert!(l.is_none_or(|l| seq > l), "producer {p}: {seq} after {l:?}");
                        *l = Some(seq);
                        out.extend_from_slice(&(p << 32 | seq).to_le_bytes());
                        // Flush as we go, so a killed receiver leaves a record.
                        if out.len() >= 8 * 1024 {
                            append(&common::arg("OUT"), &out);
                            out.clear();
                        }
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            append(&common::arg("OUT"), &out);
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

fn append(path: &str, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn read_pairs(path: &str) -> Vec<(u64, u64)> {
    let b = std::fs::read(path).unwrap_or_default();
    b.chunks_exact(8)
        .map(|c| {
            let v = u64::from_le_bytes(c.try_into().unwrap());
            (v >> 32, v & 0xffff_ffff)
        })
        .collect()
}

fn temp_path(tag: &str) -> String {
    let p = std::env::temp_dir().join(unique_name(tag));
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

/// Run `senders` producer processes (n messages each) and `receivers`
/// consumer processes through a queue of `cap` slots; the parent holds a
/// sender until every producer is done, then drops it (the end of the
/// stream). Returns every pair received, and the queue's loss count.
fn run(senders: u64, receivers: usize, cap: usize, n: u64) -> (Vec<(u64, u64)>, u64) {
    let name = unique_name("mpmc");
    let _u = Unlink(name.clone());
    let keeper = Sender::create(&name, cap, 16).unwrap();
    let outs: Vec<String> = (0..receivers)
        .map(|i| temp_path(&format!("out{i}")))
        .collect();
    let mut rx_children: Vec<_> = outs
        .iter()
        .map(|o| child("recv").arg("NAME", &name).arg("OUT", o).spawn())
        .collect();
    let mut tx_children: Vec<_> = (0..senders)
        .map(|p| {
            child("send")
                .arg("NAME", &name)
                .arg("P", p)
                .arg("N", n)
                .spawn()
        })
        .collect();
    for c in &mut tx_children {
        c.expect_success(LONG);
    }
    let lost = keeper.lost();
    drop(keeper);
    for c in &mut rx_children {
        c.expect_success(LONG);
    }
    let mut all = Vec::new();
    for o in &outs {
        all.extend(read_pairs(o));
        let _ = std::fs::remove_file(o);
    }
    (all, lost)
}

#[test]
fn every_message_once_with_four_producers_and_four_consumers_through_four_slots() {
    let n = stress_n(1_000_000) / 4;
    let (all, lost) = run(4, 4, 4, n);
    assert_eq!(lost, 0);
    assert_eq!(all.len() as u64, 4 * n, "received count");
    let set: HashSet<_> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "duplicates");
    for p in 0..4 {
        for seq in 0..n {
            assert!(set.contains(&(p, seq)), "({p}, {seq}) missing");
        }
    }
}

#[test]
#[ignore = "soak: RINGWAY_STRESS_N=10000000 cargo test --release -- --ignored"]
fn soak_every_message_once() {
    let n = stress_n(4_000_000) / 4;
    let (all, _) = run(4, 4, 4, n);
    assert_eq!(all.len() as u64, 4 * n);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
}

#[test]
fn receivers_end_without_sentinels_when_the_last_sender_drops() {
    // The tutorial's ending: no None per consumer; dropping the senders is
    // the signal, and every receiver's iterator simply ends.
    let (all, lost) = run(3, 2, 8, 1000);
    assert_eq!((all.len(), lost), (3000, 0));
}
