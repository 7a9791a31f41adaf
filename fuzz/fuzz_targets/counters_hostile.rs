//! A valid counters header over a hostile table (states, key lengths, keys,
//! probe chains): lock-free lookups give values or Errors, never a panic or
//! a hang. (The lock's own bytes are glibc's and are kept valid here: see
//! the crate's trust model.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::{header, kind_off, sealed_memfd, segment};
use std::os::fd::AsFd;

/// The lock ABI a glibc build records (C library 1, sizeof the mutex).
const LOCK_ABI: u64 = 1 << 32 | std::mem::size_of::<libc::pthread_mutex_t>() as u64;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let cap = 1u64 << (sel % 5);
    let base = kind_off(1);
    let total = base as u64 + 128 + 128 + cap * 128;
    let mut bytes = segment(header(4, total, cap, LOCK_ABI, 1), total as usize, body);
    // A zeroed glibc mutex is a valid unlocked default mutex.
    bytes[base..base + 128].fill(0);
    let fd = sealed_memfd(&bytes);
    if let Ok(map) = ringway::counters::CounterMap::from_fd(fd.as_fd()) {
        for k in ["count", "a", "", "key-3"] {
            let _ = map.get(k);
        }
        let _ = map.len();
        let _ = map.snapshot();
    }
});
