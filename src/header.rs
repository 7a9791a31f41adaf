//! The common header every ringway segment starts with, and the INIT →
//! READY handshake over it.
//!
//! # Segment layout (all offsets in bytes, native endianness, version 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 128 | [`Header`]: immutable once `state == READY`, but for `state` |
//! | 128 | 128 | control line: `closed` u32 @128, `reaped` u32 @132, `lost` u64 @136, `poison` u32 @152 |
//! | 256 | `peer_slots × 64`, rounded up to 128 | peer table (`peer.rs`) |
//! | after | kind-specific | the ring or table |
//!
//! The creator writes the whole header, then stores `state = READY` with
//! Release ([`publish`]); an opener loads `state` with Acquire and copies the
//! header out once ([`read_if_ready`]), then validates the copy.

use crate::region::Region;
use crate::sync::Ordering;
use std::mem::{offset_of, size_of};

/// `b"RINGWAY\0"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RINGWAY\0");
/// Version of the shared layout; bumped on any change to it.
pub const VERSION: u32 = 1;
/// `state` value once the creator has finished (ASCII "REDY").
pub const READY: u32 = u32::from_le_bytes(*b"REDY");
/// One cache-line pair: what separates words written by different sides.
pub(crate) const LINE: usize = 128;
/// Offset of the control line.
pub(crate) const CONTROL_OFF: usize = 128;
/// `closed` bits (one per end), u32.
pub(crate) const CLOSED_OFF: usize = CONTROL_OFF;
/// How many dead peers were found and reaped, u32.
pub(crate) const REAPED_OFF: usize = CONTROL_OFF + 4;
/// Messages lost in flight in dead processes, u64.
pub(crate) const LOST_OFF: usize = CONTROL_OFF + 8;
/// Nonzero once a holder found the segment corrupted, u32: its last holder
/// removes it whatever its kind would keep, and nobody opens it again.
pub(crate) const POISON_OFF: usize = CONTROL_OFF + 24;

/// Offset of the peer table.
pub(crate) const PEERS_OFF: usize = 256;
/// Bytes per peer-table entry.
pub(crate) const PEER_ENTRY: usize = 64;

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum Kind {
    /// A single-producer single-consumer byte ring ([`crate::spsc`]).
    Spsc = 1,
    /// A multi-producer multi-consumer queue of fixed-size slots
    /// ([`crate::mpmc`]).
    Mpmc = 2,
    /// A pipe: one or two spsc rings between two ends ([`crate::pipe`]).
    Pipe = 3,
    /// A table of named counters and its lock ([`crate::counters`]).
    Counters = 4,
}

impl Kind {
    /// The kind stored as `code` in a header, if known.
    pub fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            3 => Some(Kind::Pipe),
            4 => Some(Kind::Counters),
            _ => None,
        }
    }
    /// Lower-case name, as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
            Kind::Pipe => "pipe",
            Kind::Counters => "counters",
        }
    }
}

/// The first 128 bytes of every segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// A [`Kind`] code.
    pub kind: u32,
    /// Size of the whole segment in bytes; equals the file's size.
    pub total_size: u64,
    /// Kind parameter A (spsc: data capacity in bytes, a power of two).
    pub param_a: u64,
    /// Kind parameter B (reserved for the kinds that need it; 0 for spsc).
    pub param_b: u64,
    /// Entries in the peer table.
    pub peer_slots: u32,
    /// Pid of the creating process (for display only: never trusted).
    pub creator_pid: u32,
    /// Creation time, nanoseconds since the Unix epoch (display only).
    pub created_unix_ns: u64,
    /// FNV-1a 64 of bytes `[0, 56)`: the fields above.
    pub checksum: u64,
    /// `0` while the creator initialises, then [`READY`]. The only mutable
    /// header field; accessed atomically.
    pub state: u32,
    /// Zero.
    pub reserved: [u32; 15],
}

const _: () = assert!(size_of::<Header>() == 128);
const _: () = assert!(offset_of!(Header, checksum) == 56);
const _: () = assert!(offset_of!(Header, state) == 64);

impl Header {
    /// The header as stored: 128 bytes, native endianness.
    pub fn to_bytes(self) -> [u8; 128] {
        let mut b = [0u8; 128];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(offset_of!(Header, magic), &self.magic.to_ne_bytes());
        put(offset_of!(Header, version), &self.version.to_ne_bytes());
        put(offset_of!(Header, kind), &self.kind.to_ne_bytes());
        put(
            offset_of!(Header, total_size),
            &self.total_size.to_ne_bytes(),
        );
        put(offset_of!(Header, param_a), &self.param_a.to_ne_bytes());
        put(offset_of!(Header, param_b), &self.param_b.to_ne_bytes());
        put(
            offset_of!(Header, peer_slots),
            &self.peer_slots.to_ne_bytes(),
        );
        put(
            offset_of!(Header, creator_pid),
            &self.creator_pid.to_ne_bytes(),
        );
        put(
            offset_of!(Header, created_unix_ns),
            &self.created_unix_ns.to_ne_bytes(),
        );
        put(offset_of!(Header, checksum), &self.checksum.to_ne_bytes());
        put(offset_of!(Header, state), &self.state.to_ne_bytes());
        b
    }

    /// Parse 128 stored bytes (no validation).
    pub fn from_bytes(b: &[u8; 128]) -> Header {
        let u64_at = |off: usize| u64::from_ne_bytes(b[off..off + 8].try_into().unwrap());
        let u32_at = |off: usize| u32::from_ne_bytes(b[off..off + 4].try_into().unwrap());
        let mut reserved = [0u32; 15];
        for (i, r) in reserved.iter_mut().enumerate() {
            *r = u32_at(offset_of!(Header, reserved) + 4 * i);
        }
        Header {
            magic: u64_at(offset_of!(Header, magic)),
            version: u32_at(offset_of!(Header, version)),
            kind: u32_at(offset_of!(Header, kind)),
            total_size: u64_at(offset_of!(Header, total_size)),
            param_a: u64_at(offset_of!(Header, param_a)),
            param_b: u64_at(offset_of!(Header, param_b)),
            peer_slots: u32_at(offset_of!(Header, peer_slots)),
            creator_pid: u32_at(offset_of!(Header, creator_pid)),
            created_unix_ns: u64_at(offset_of!(Header, created_unix_ns)),
            checksum: u64_at(offset_of!(Header, checksum)),
            state: u32_at(offset_of!(Header, state)),
            reserved,
        }
    }

    /// A header for a new segment (checksum still 0, state INIT).
    pub(crate) fn new(
        kind: Kind,
        total_size: u64,
        param_a: u64,
        param_b: u64,
        peer_slots: u32,
    ) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            kind: kind as u32,
            total_size,
            param_a,
            param_b,
            peer_slots,
            // SAFETY: getpid has no preconditions.
            creator_pid: unsafe { libc::getpid() } as u32,
            created_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            checksum: 0,
            state: 0,
            reserved: [0; 15],
        }
    }

    /// FNV-1a 64 over the immutable fields (bytes `[0, 56)`).
    pub fn compute_checksum(&self) -> u64 {
        let bytes = self.to_bytes();
        bytes[..offset_of!(Header, checksum)]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    /// Where the kind-specific area starts.
    pub(crate) fn kind_off(&self) -> usize {
        kind_off(self.peer_slots)
    }
}

/// Where the kind-specific area starts for a table of `peer_slots`.
pub(crate) fn kind_off(peer_slots: u32) -> usize {
    PEERS_OFF + (peer_slots as usize * PEER_ENTRY).div_ceil(LINE) * LINE
}

/// Write `h` (but its `state`) into `r`, then store `state = READY` with
/// Release.
pub(crate) fn publish(r: &Region, h: &Header) {
    stamp(r, h);
    let state = r.u32_at(offset_of!(Header, state)).expect("in bounds");
    // ORDERING: Release — publishes the header and the zeroed body; pairs
    // with the Acquire load in `read_if_ready`.
    state.store(READY, Ordering::Release);
}

/// Write every header field but `state` (which stays INIT): done first
/// thing after sizing, so a creator that dies before READY leaves a file
/// that `inspect` and `gc` recognise as an unpublished ringway segment.
pub(crate) fn stamp(r: &Region, h: &Header) {
    r.write(0, &h.to_bytes()[..offset_of!(Header, state)])
        .expect("a region holds its header");
}

/// A copy of the header, if `state == READY`.
pub(crate) fn read_if_ready(r: &Region) -> Option<Header> {
    let state = r.u32_at(offset_of!(Header, state))?;
    // ORDERING: Acquire — pairs with the Release store in `publish`: the
    // bytes copied below are the finished header.
    if state.load(Ordering::Acquire) != READY {
        return None;
    }
    let mut bytes = [0u8; 128];
    r.read(0, &mut bytes)?;
    Some(Header::from_bytes(&bytes))
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The opener sees either nothing or the whole header, never a torn
    /// one; loom checks the header bytes for races.
    #[test]
    fn opener_sees_whole_header_only_after_ready() {
        crate::sync::model("opener_sees_whole_header_only_after_ready", || {
            let r = Arc::new(Region::heap(160));
            let mut h = Header::new(Kind::Spsc, 160, 64, 0, 2);
            h.checksum = h.compute_checksum();
            let r2 = r.clone();
            let creator = loom::thread::spawn(move || publish(&r2, &h));
            let seen = read_if_ready(&r);
            if let Some(copy) = seen {
                assert_eq!(copy.checksum, copy.compute_checksum());
                assert_eq!(copy.param_a, 64);
            }
            creator.join().unwrap();
            assert!(read_if_ready(&r).is_some());
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_checksum_covers_fields() {
        let mut h = Header::new(Kind::Spsc, 4096, 1024, 0, 2);
        h.checksum = h.compute_checksum();
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        let mut g = h;
        g.param_a = 2048;
        assert_ne!(g.compute_checksum(), h.checksum);
    }

    #[test]
    fn opener_sees_nothing_before_ready() {
        let r = Region::heap(256);
        assert!(read_if_ready(&r).is_none());
        let mut h = Header::new(Kind::Spsc, 256, 64, 0, 2);
        h.checksum = h.compute_checksum();
        publish(&r, &h);
        let got = read_if_ready(&r).unwrap();
        assert_eq!(got.state, READY);
        assert_eq!(got.param_a, 64);
    }
}
