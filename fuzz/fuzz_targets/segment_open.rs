//! Arbitrary bytes as a segment handed over by fd: opening it as any kind
//! must give a handle or an Error, never a panic, a crash or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway_fuzz::sealed_memfd;
use std::os::fd::AsFd;

fuzz_target!(|data: &[u8]| {
    // Empty is a file its creator has not sized yet: a legitimate 2 s wait
    // for READY (tested in tests/hostile_segments.rs), too slow to fuzz.
    if data.is_empty() || data.len() > 1 << 16 {
        return;
    }
    let mut bytes = data.to_vec();
    // Always READY: a segment that never is would only make us wait 2 s.
    if bytes.len() >= 68 {
        bytes[64..68].copy_from_slice(&ringway::READY.to_ne_bytes());
    }
    // Half the inputs get a correct magic, version and checksum, so the
    // fuzzer reaches the kinds' parameter checks and the rings behind them.
    if bytes.len() >= 128 && data[data.len() - 1] & 1 == 1 {
        let mut h = ringway::Header::from_bytes(bytes[..128].try_into().unwrap());
        h.magic = ringway::MAGIC;
        h.version = ringway::VERSION;
        h.checksum = h.compute_checksum();
        bytes[..128].copy_from_slice(&h.to_bytes());
    }
    let fd = sealed_memfd(&bytes);
    if let Ok(mut rx) = ringway::spsc::Consumer::from_fd(fd.as_fd()) {
        let mut buf = [0u8; 256];
        for _ in 0..8 {
            let _ = rx.try_recv(&mut buf);
        }
    }
    if let Ok(mut rx) = ringway::mpmc::Receiver::from_fd(fd.as_fd()) {
        let mut buf = [0u8; 256];
        for _ in 0..8 {
            let _ = rx.try_recv(&mut buf);
        }
    }
    let _ = ringway::pipe::Pipe::from_fd(fd.as_fd());
    if let Ok(map) = ringway::counters::CounterMap::from_fd(fd.as_fd()) {
        let _ = map.get("count");
        let _ = map.snapshot();
    }
});
