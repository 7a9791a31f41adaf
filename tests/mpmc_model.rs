//! The mpmc queue against a `VecDeque` model, with several sender and
//! receiver handles interleaved in one process (single-threaded schedules
//! chosen by proptest), capacities 2 to 8.

use proptest::prelude::*;
use ringway::mpmc::{Receiver, Sender};
use ringway::{RecvError, SendError};
use std::collections::VecDeque;

#[derive(Clone, Debug)]
enum Op {
    /// Sender `i % senders` tries to send a message of this length.
    Send(usize, usize),
    /// Receiver `i % receivers` tries to receive into a large buffer.
    Recv(usize),
    /// ... into a buffer one byte short of the next message.
    RecvShort(usize),
    /// ... zero-copy.
    Read(usize),
    /// Sender `i` sends a batch of messages of these lengths.
    SendBatch(usize, Vec<usize>),
    /// Receiver `j` receives a batch of up to `max`.
    RecvBatch(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 0usize..40).prop_map(|(i, l)| Op::Send(i, l)),
        3 => (0usize..4).prop_map(Op::Recv),
        1 => (0usize..4).prop_map(Op::RecvShort),
        1 => (0usize..4).prop_map(Op::Read),
        1 => (0usize..4, prop::collection::vec(0usize..40, 1..6)).prop_map(|(i, l)| Op::SendBatch(i, l)),
        1 => (0usize..4, 1usize..6).prop_map(|(j, m)| Op::RecvBatch(j, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_vecdeque(
        cap_log in 1u32..4,
        senders in 1usize..4,
        receivers in 1usize..4,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let slot = 32;
        let cap = 1usize << cap_log;
        let first = Sender::create_anonymous(cap, slot).unwrap();
        let mut tx: Vec<Sender> = (1..senders).map(|_| first.try_clone().unwrap()).collect();
        let mut rx: Vec<Receiver> = (0..receivers).map(|_| Receiver::from_fd(first.segment_fd()).unwrap()).collect();
        tx.push(first);
        // Messages in the queue, and one held per receiver after a short
        // buffer (it is delivered by that receiver's next call).
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut held: Vec<Option<Vec<u8>>> = vec![None; receivers];
        let mut next = 0u8;
        for op in ops {
            match op {
                Op::Send(i, len) => {
                    let len = len.min(slot);
                    next = next.wrapping_add(1);
                    let m: Vec<u8> = (0..len).map(|k| next.wrapping_add(k as u8)).collect();
                    let in_hand = held.iter().filter(|h| h.is_some()).count();
                    match tx[i % senders].try_send(&m) {
                        Ok(()) => {
                            model.push_back(m);
                            prop_assert!(model.len() + in_hand <= cap, "more messages than slots");
                        }
                        Err(SendError::Full(())) => {
                            // Slots are used in position order, so a slot
                            // held by a receiver can make the queue full
                            // early; but never with nothing in it.
                            prop_assert!(model.len() + in_hand > 0, "full while empty");
                            if in_hand == 0 {
                                prop_assert_eq!(model.len(), cap);
                            }
                        }
                        Err(e) => prop_assert!(false, "send: {}", e),
                    }
                }
                Op::Recv(j) => {
                    let j = j % receivers;
                    let mut buf = vec![0u8; slot];
                    let want = held[j].take().or_else(|| model.pop_front());
                    match rx[j].try_recv(&mut buf) {
                        Ok(n) => prop_assert_eq!(Some(&buf[..n]), want.as_deref()),
                        Err(RecvError::Empty) => prop_assert!(want.is_none()),
                        Err(e) => prop_assert!(false, "recv: {}", e),
                    }
                }
                Op::RecvShort(j) => {
                    let j = j % receivers;
                    let front = held[j].clone().or_else(|| model.front().cloned());
                    let Some(front) = front else { continue };
                    if front.is_empty() {
                        continue;
                    }
                    let mut buf = vec![0u8; front.len() - 1];
                    match rx[j].try_recv(&mut buf) {
                        Err(RecvError::BufferTooShort { needed }) => prop_assert_eq!(needed, front.len()),
                        other => prop_assert!(false, "short buffer: {:?}", other),
                    }
                    if held[j].is_none() {
                        held[j] = model.pop_front();
                    }
                }
                Op::SendBatch(i, lens) => {
                    let msgs: Vec<Vec<u8>> = lens
                        .iter()
                        .map(|&l| {
                            next = next.wrapping_add(1);
                            (0..l.min(slot)).map(|k| next.wrapping_add(k as u8)).collect()
                        })
                        .collect();
                    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                    let in_hand = held.iter().filter(|h| h.is_some()).count();
                    match tx[i % senders].try_send_batch(&refs) {
                        Ok(k) => {
                            prop_assert!(k >= 1 && k <= msgs.len());
                            model.extend(msgs.into_iter().take(k));
                            prop_assert!(model.len() + in_hand <= cap);
                        }
                        Err(SendError::Full(())) => prop_assert!(model.len() + in_hand > 0),
                        Err(e) => prop_assert!(false, "send_batch: {}", e),
                    }
                }
                Op::RecvBatch(j, max) => {
                    let j = j % receivers;
                    let mut got: Vec<Vec<u8>> = Vec::new();
                    match rx[j].try_recv_batch(max, |m| got.push(m.to_vec())) {
                        Ok(k) => {
                            prop_assert_eq!(k, got.len());
                            prop_assert!(k >= 1 && k <= max);
                            if let Some(h) = held[j].take() {
                                prop_assert_eq!(k, 1, "a held message comes alone");
                                prop_assert_eq!(&got[0], &h);
                            } else {
                                for g in got {
                                    prop_assert_eq!(Some(g), model.pop_front());
                                }
                            }
                        }
                        Err(RecvError::Empty) => prop_assert!(held[j].is_none() && model.is_empty()),
                        Err(e) => prop_assert!(false, "recv_batch: {}", e),
                    }
                }
                Op::Read(j) => {
                    let j = j % receivers;
                    let want = held[j].take().or_else(|| model.pop_front());
                    match rx[j].try_read() {
                        Ok(g) => prop_assert_eq!(Some(&*g), want.as_deref()),
                        Err(RecvError::Empty) => prop_assert!(want.is_none()),
                        Err(e) => prop_assert!(false, "read: {}", e),
                    }
                }
            }
        }
        // Drop the senders: every receiver drains what it holds, the queue
        // drains, then everyone sees Disconnected.
        drop(tx);
        let mut buf = vec![0u8; slot];
        for j in 0..receivers {
            if let Some(h) = held[j].take() {
                let n = rx[j].try_recv(&mut buf).unwrap();
                prop_assert_eq!(&buf[..n], &h[..]);
            }
        }
        while let Some(m) = model.pop_front() {
            let n = rx[0].try_recv(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &m[..]);
        }
        for r in &mut rx {
            prop_assert!(matches!(r.try_recv(&mut buf), Err(RecvError::Disconnected)));
        }
    }
}

#[test]
fn claimed_slots_commit_in_place_and_abandoned_ones_are_skipped() {
    let mut tx = Sender::create_anonymous(4, 16).unwrap();
    let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
    let mut g = tx.try_claim(16).unwrap();
    g[..5].copy_from_slice(b"hello");
    g.commit_len(5).unwrap();
    drop(tx.try_claim(8).unwrap()); // abandoned
    let mut g = tx.claim(3).unwrap();
    g.copy_from_slice(b"bye");
    g.commit().unwrap();
    assert!(tx
        .try_claim(17)
        .unwrap_err()
        .to_string()
        .contains("maximum of 16"));
    let mut buf = [0u8; 16];
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"bye", "the abandoned slot is skipped");
    assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)));
    assert_eq!(rx.lost(), 0, "an abandoned claim is not a loss");
}
