//! Operations decoded from bytes, applied to an spsc ring and to a
//! `VecDeque`, checked step by step.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::{RecvError, SendError};
use std::collections::VecDeque;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, ops)) = data.split_first() else { return };
    let (mut tx, mut rx) = ringway::spsc::channel(32 << (sel % 3)).unwrap();
    let max = tx.max_message_len();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut buf = vec![0u8; max];
    for (i, &op) in ops.iter().enumerate() {
        if op & 1 == 0 {
            let len = (op >> 1) as usize % (max + 1);
            let msg = vec![i as u8; len];
            match tx.try_send(&msg) {
                Ok(()) => model.push_back(msg),
                Err(SendError::Full(())) => {}
                Err(e) => panic!("send: {e}"),
            }
        } else {
            match rx.try_recv(&mut buf) {
                Ok(n) => assert_eq!(Some(&buf[..n]), model.pop_front().as_deref()),
                Err(RecvError::Empty) => assert!(model.is_empty()),
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
});
