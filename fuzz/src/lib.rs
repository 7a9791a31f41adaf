//! Helpers shared by the fuzz targets: segments made from fuzz bytes, handed
//! to ringway the way a peer would hand them (a sealed memfd).

use ringway::{Header, MAGIC, READY, VERSION};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

/// A sealed memfd holding exactly `bytes`.
pub fn sealed_memfd(bytes: &[u8]) -> OwnedFd {
    // SAFETY: a valid C string; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"fuzz".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0);
    // SAFETY: just created, owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    f.write_all(bytes).unwrap();
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    // SAFETY: fcntl on an open memfd.
    assert_eq!(unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_ADD_SEALS, seals) }, 0);
    OwnedFd::from(f)
}

/// Where a segment's kind-specific area starts for `peer_slots`.
pub fn kind_off(peer_slots: u32) -> usize {
    256 + (peer_slots as usize * 64).div_ceil(128) * 128
}

/// A valid, READY header for `kind` with the given parameters and size.
pub fn header(kind: u32, total: u64, param_a: u64, param_b: u64, peer_slots: u32) -> [u8; 128] {
    let mut h = Header {
        magic: MAGIC,
        version: VERSION,
        kind,
        total_size: total,
        param_a,
        param_b,
        peer_slots,
        creator_pid: 1,
        created_unix_ns: 0,
        checksum: 0,
        state: READY,
        reserved: [0; 15],
    };
    h.checksum = h.compute_checksum();
    h.to_bytes()
}

/// A segment of `total` bytes: a valid header, then `body` repeated over
/// everything after it (the peer table and the kind's area: all hostile).
pub fn segment(header: [u8; 128], total: usize, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; total];
    v[..128].copy_from_slice(&header);
    if !body.is_empty() {
        for (i, b) in v[128..].iter_mut().enumerate() {
            *b = body[i % body.len()];
        }
    }
    v
}
