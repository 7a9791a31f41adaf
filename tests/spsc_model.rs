//! The spsc ring against a `VecDeque` model, with tiny capacities so that
//! wrap-around, padding frames, zero-length and maximum-size frames all
//! happen in almost every case.

use proptest::prelude::*;
use ringway::spsc::{channel, Consumer, Producer};
use ringway::{RecvError, SendError};
use std::collections::VecDeque;

#[derive(Clone, Debug)]
enum Op {
    /// `try_send` a message of this length (taken modulo max + 1).
    Send(usize),
    /// `try_claim` this length, write, commit this many bytes of it.
    Claim(usize, usize),
    /// A batch of `try_push`es.
    Batch(Vec<usize>),
    /// `try_recv` into a buffer large enough.
    Recv,
    /// `try_recv` into a buffer one byte too short: the message must stay.
    RecvShort,
    /// `read_batch`: everything available.
    ReadAll,
    /// `try_read` (zero-copy guard).
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..200).prop_map(Op::Send),
        1 => (0usize..200, 0usize..200).prop_map(|(a, b)| Op::Claim(a, b)),
        1 => prop::collection::vec(0usize..200, 1..6).prop_map(Op::Batch),
        3 => Just(Op::Recv),
        1 => Just(Op::RecvShort),
        1 => Just(Op::ReadAll),
        1 => Just(Op::Read),
    ]
}

struct Harness {
    tx: Producer,
    rx: Consumer,
    model: VecDeque<Vec<u8>>,
    next: u8,
    max: usize,
}

impl Harness {
    fn payload(&mut self, len: usize) -> Vec<u8> {
        self.next = self.next.wrapping_add(1);
        (0..len).map(|i| self.next.wrapping_add(i as u8)).collect()
    }

    /// A `Full` on a ring the model says is empty must clear after one
    /// consumer step (which releases what the consumer read lazily): a
    /// message never needs padding skipped before it fits a drained ring.
    fn check_full(&mut self, mut retry: impl FnMut(&mut Producer) -> bool) {
        if self.model.is_empty() {
            let mut buf = [0u8; 1];
            assert!(matches!(self.rx.try_recv(&mut buf), Err(RecvError::Empty)));
            assert!(
                retry(&mut self.tx),
                "an empty ring refused a message after a consumer step"
            );
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Send(len) => {
                let len = len % (self.max + 1);
                let msg = self.payload(len);
                match self.tx.try_send(&msg) {
                    Ok(()) => self.model.push_back(msg),
                    Err(SendError::Full(())) => {
                        let m = msg.clone();
                        let mut sent = false;
                        self.check_full(|tx| {
                            sent = tx.try_send(&m).is_ok();
                            sent
                        });
                        if sent {
                            self.model.push_back(msg);
                        }
                    }
                    Err(e) => panic!("send {len}: {e}"),
                }
            }
            Op::Claim(len, commit) => {
                let len = len % (self.max + 1);
                let commit = commit % (len + 1);
                let msg = self.payload(commit);
                match self.tx.try_claim(len) {
                    Ok(mut g) => {
                        assert_eq!(g.len(), len);
                        g[..commit].copy_from_slice(&msg);
                        g.commit_len(commit).unwrap();
                        self.model.push_back(msg);
                    }
                    Err(SendError::Full(())) => {}
                    Err(e) => panic!("claim {len}: {e}"),
                }
            }
            Op::Batch(lens) => {
                let msgs: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|l| self.payload(l % (self.max + 1)))
                    .collect();
                let mut batch = self.tx.batch();
                let mut pushed = 0;
                for m in &msgs {
                    if batch.try_push(m).is_err() {
                        break;
                    }
                    pushed += 1;
                }
                assert_eq!(batch.len(), pushed);
                drop(batch);
                self.model.extend(msgs.into_iter().take(pushed));
            }
            Op::Recv => {
                let mut buf = vec![0u8; self.max];
                match self.rx.try_recv(&mut buf) {
                    Ok(n) => assert_eq!(Some(&buf[..n]), self.model.pop_front().as_deref()),
                    Err(RecvError::Empty) => assert!(self.model.is_empty()),
                    Err(e) => panic!("recv: {e}"),
                }
            }
            Op::RecvShort => {
                let Some(front) = self.model.front() else {
                    return;
                };
                if front.is_empty() {
                    return;
                }
                let mut buf = vec![0u8; front.len() - 1];
                match self.rx.try_recv(&mut buf) {
                    Err(RecvError::BufferTooShort { needed }) => assert_eq!(needed, front.len()),
                    other => panic!("short buffer: {other:?}"),
                }
            }
            Op::ReadAll => {
                let mut batch = self.rx.read_batch();
                while let Some(m) = batch.next().unwrap() {
                    assert_eq!(Some(m), self.model.pop_front().as_deref());
                }
                drop(batch);
                assert!(self.model.is_empty(), "read_batch left messages behind");
            }
            Op::Read => match self.rx.try_read() {
                Ok(g) => assert_eq!(Some(&*g), self.model.pop_front().as_deref()),
                Err(RecvError::Empty) => assert!(self.model.is_empty()),
                Err(e) => panic!("read: {e}"),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_vecdeque(cap_log in 5u32..8, ops in prop::collection::vec(op(), 1..80)) {
        let (tx, rx) = channel(1 << cap_log).unwrap();
        let max = tx.max_message_len();
        prop_assert_eq!(max, (1usize << cap_log) / 2 - 8);
        let mut h = Harness { tx, rx, model: VecDeque::new(), next: 0, max };
        for op in ops {
            h.step(op);
        }
        // Drain: everything the model holds is still there, in order.
        let mut buf = vec![0u8; max];
        while let Some(want) = h.model.pop_front() {
            let n = h.rx.try_recv(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &want[..]);
        }
        prop_assert!(matches!(h.rx.try_recv(&mut buf), Err(RecvError::Empty)));
        drop(h.tx);
        prop_assert!(matches!(h.rx.try_recv(&mut buf), Err(RecvError::Disconnected)));
    }

    #[test]
    fn too_large_is_refused_with_the_maximum(cap_log in 5u32..10, extra in 1usize..100) {
        let (mut tx, _rx) = channel(1 << cap_log).unwrap();
        let max = tx.max_message_len();
        let msg = vec![0u8; max + extra];
        match tx.try_send(&msg) {
            Err(SendError::TooLarge { max: m, .. }) => prop_assert_eq!(m, max),
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert!(tx.send(&vec![1u8; max]).is_ok());
    }
}
