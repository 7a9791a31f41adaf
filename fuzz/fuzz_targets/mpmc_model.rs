//! Operations decoded from bytes, applied to an mpmc ring (two senders, two
//! receivers, one process) and to a `VecDeque`, checked step by step:
//! single sends and receives, batches, and claims committed short.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::mpmc::{Receiver, Sender};
use ringway::{RecvError, SendError};
use std::collections::VecDeque;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, ops)) = data.split_first() else { return };
    let cap = 2usize << (sel % 4);
    let slot = 8usize << (sel / 4 % 3);
    let a = Sender::create_anonymous(cap, slot).unwrap();
    let b = a.try_clone().unwrap();
    let mut tx = [a, b];
    let r = Receiver::from_fd(tx[0].segment_fd()).unwrap();
    let r2 = r.try_clone().unwrap();
    let mut rx = [r, r2];
    let max = tx[0].max_message_len();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut buf = vec![0u8; max];
    for (i, &op) in ops.iter().enumerate() {
        let who = (op >> 3 & 1) as usize;
        let len = (op >> 4) as usize % (max + 1);
        let msg = vec![i as u8; len];
        match op & 7 {
            0 | 1 => match tx[who].try_send(&msg) {
                Ok(()) => model.push_back(msg),
                Err(SendError::Full(())) => assert_eq!(model.len(), cap),
                Err(e) => panic!("send: {e}"),
            },
            2 => {
                let batch: Vec<&[u8]> = (0..=len % 5).map(|_| &msg[..]).collect();
                match tx[who].try_send_batch(&batch) {
                    Ok(n) => {
                        assert_eq!(n, batch.len().min(cap - model.len()));
                        model.extend(batch[..n].iter().map(|m| m.to_vec()));
                    }
                    Err(SendError::Full(())) => assert_eq!(model.len(), cap),
                    Err(e) => panic!("send_batch: {e}"),
                }
            }
            3 => match tx[who].try_claim(max) {
                Ok(mut g) => {
                    g[..len].copy_from_slice(&msg);
                    g.commit_len(len).unwrap();
                    model.push_back(msg);
                }
                Err(SendError::Full(())) => assert_eq!(model.len(), cap),
                Err(e) => panic!("claim: {e}"),
            },
            4 | 5 => match rx[who].try_recv(&mut buf) {
                Ok(n) => assert_eq!(Some(&buf[..n]), model.pop_front().as_deref()),
                Err(RecvError::Empty) => assert!(model.is_empty()),
                Err(e) => panic!("recv: {e}"),
            },
            6 => {
                let want = 1 + len % 4;
                let mut got = Vec::new();
                match rx[who].try_recv_batch(want, |m| got.push(m.to_vec())) {
                    Ok(n) => {
                        assert_eq!(n, got.len());
                        assert_eq!(n, want.min(model.len()));
                        for m in got {
                            assert_eq!(Some(m), model.pop_front());
                        }
                    }
                    Err(RecvError::Empty) => assert!(model.is_empty()),
                    Err(e) => panic!("recv_batch: {e}"),
                }
            }
            _ => match rx[who].try_read() {
                Ok(m) => assert_eq!(Some(&m[..]), model.pop_front().as_deref()),
                Err(RecvError::Empty) => assert!(model.is_empty()),
                Err(e) => panic!("read: {e}"),
            },
        }
    }
    for r in &rx {
        assert_eq!(r.lost(), 0);
    }
});
