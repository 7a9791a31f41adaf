//! A valid mpmc header over hostile slots (sequence words, lengths, claims):
//! Errors, never a panic, an out-of-bounds access or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::{header, kind_off, sealed_memfd, segment};
use std::os::fd::AsFd;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let cap = 2u64 << (sel % 4);
    let slot = 8u64 << (sel / 4 % 3);
    let stride = (16 + slot).div_ceil(64) * 64;
    let total = kind_off(64) as u64 + 4 * 128 + cap * stride;
    let fd = sealed_memfd(&segment(header(2, total, cap, slot, 64), total as usize, body));
    if let Ok(mut rx) = ringway::mpmc::Receiver::from_fd(fd.as_fd()) {
        let mut buf = [0u8; 256];
        for _ in 0..16 {
            let _ = rx.try_recv(&mut buf);
            let _ = rx.try_recv_batch(4, |m| assert!(m.len() <= slot as usize));
        }
    }
    if let Ok(mut tx) = ringway::mpmc::Sender::from_fd(fd.as_fd()) {
        for i in 0..16u8 {
            let _ = tx.try_send(&[i; 8]);
        }
    }
});
