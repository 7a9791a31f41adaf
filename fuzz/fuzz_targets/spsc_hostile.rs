//! A valid spsc header over hostile ring bytes (peer table, positions,
//! frames): the consumer and the producer get messages or Errors, never a
//! panic, an out-of-bounds access or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::{header, kind_off, sealed_memfd, segment};
use std::os::fd::AsFd;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let cap = 64u64 << (sel % 4);
    let total = kind_off(2) as u64 + 4 * 128 + cap;
    let fd = sealed_memfd(&segment(header(1, total, cap, 0, 2), total as usize, body));
    if let Ok(mut rx) = ringway::spsc::Consumer::from_fd(fd.as_fd()) {
        let mut buf = [0u8; 512];
        for _ in 0..32 {
            match rx.try_recv(&mut buf) {
                Ok(n) => assert!(n <= buf.len()),
                Err(_) => {}
            }
            let _ = rx.try_read().map(|m| m.len());
        }
    }
    if let Ok(mut tx) = ringway::spsc::Producer::from_fd(fd.as_fd()) {
        for i in 0..32u8 {
            let _ = tx.try_send(&[i; 13]);
        }
    }
});
