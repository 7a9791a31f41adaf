//! Foreign, corrupt and hostile segments: every one is a clear `Error`,
//! never a panic, a hang or an access outside the segment.

mod common;

use common::{unique_name, Unlink};
use ringway::spsc::{Consumer, Producer};
use ringway::{Error, Header, RecvError, SendError, MAGIC, READY, VERSION};
use std::os::unix::fs::FileExt;

/// Offsets of an spsc segment (2 peer slots): the ring area at 384.
const TAIL: u64 = 384;
const HEAD: u64 = 384 + 128;
const DATA: u64 = 384 + 4 * 128;

fn good_header(cap: u64) -> Header {
    let mut h = Header {
        magic: MAGIC,
        version: VERSION,
        kind: 1,
        total_size: DATA + cap,
        param_a: cap,
        param_b: 0,
        peer_slots: 2,
        creator_pid: 1,
        created_unix_ns: 0,
        checksum: 0,
        state: READY,
        reserved: [0; 15],
    };
    h.checksum = h.compute_checksum();
    h
}

/// Write a segment file by hand: `header`, then zeroes up to `size`.
fn forge(name: &str, header: &Header, size: u64) {
    let path = format!("/dev/shm/{name}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.set_len(size).unwrap();
    let bytes = header.to_bytes();
    let n = (size as usize).min(bytes.len());
    f.write_all_at(&bytes[..n], 0).unwrap();
}

fn open_err(h: &Header, size: u64) -> Error {
    let name = unique_name("forged");
    let _u = Unlink(name.clone());
    forge(&name, h, size);
    Consumer::open(&name).expect_err("a forged segment must not open")
}

fn field_of(e: &Error) -> &'static str {
    match e {
        Error::Invalid { field, .. } => field,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn wrong_magic_version_kind_checksum_are_refused_by_field() {
    let good = good_header(64);
    let size = good.total_size;

    let mut h = good;
    h.magic = 0x1234;
    h.checksum = h.compute_checksum();
    let e = open_err(&h, size);
    assert_eq!(field_of(&e), "magic");
    assert!(e.to_string().contains("not a ringway segment"), "{e}");

    let mut h = good;
    h.version = 99;
    h.checksum = h.compute_checksum();
    assert_eq!(field_of(&open_err(&h, size)), "version");

    let mut h = good;
    h.kind = 7;
    h.checksum = h.compute_checksum();
    let e = open_err(&h, size);
    assert_eq!(field_of(&e), "kind");
    assert!(
        e.to_string()
            .contains("found 7 (unknown), expected 1 (spsc)"),
        "{e}"
    );

    let mut h = good;
    h.param_a = 128; // checksum not updated
    assert_eq!(field_of(&open_err(&h, size)), "checksum");
}

#[test]
fn sizes_and_parameters_that_disagree_are_refused() {
    let good = good_header(64);
    // The file is shorter than the header says: never touch past its end.
    assert_eq!(
        field_of(&open_err(&good, good.total_size - 8)),
        "total_size"
    );
    // Shorter than a header.
    assert_eq!(field_of(&open_err(&good, 100)), "total_size");

    let mut h = good;
    h.param_a = 96; // not a power of two
    h.checksum = h.compute_checksum();
    assert_eq!(field_of(&open_err(&h, h.total_size)), "param_a");

    let mut h = good;
    h.param_a = 128; // consistent checksum, but the size says 64
    h.checksum = h.compute_checksum();
    assert_eq!(field_of(&open_err(&h, h.total_size)), "total_size");

    let mut h = good;
    h.peer_slots = 0;
    h.checksum = h.compute_checksum();
    assert_eq!(field_of(&open_err(&h, h.total_size)), "peer_slots");
}

#[test]
fn a_segment_never_made_ready_is_a_timeout_not_a_hang() {
    let mut h = good_header(64);
    h.state = 0;
    let e = open_err(&h, h.total_size);
    assert!(matches!(e, Error::NotReady { .. }), "{e:?}");
}

#[test]
fn missing_and_malformed_names_are_errors() {
    assert!(matches!(
        Consumer::open("rw-test-does-not-exist"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Consumer::open("a/b"),
        Err(Error::InvalidName { .. })
    ));
    let name = unique_name("dup");
    let _u = Unlink(name.clone());
    let _tx = Producer::create(&name, 64).unwrap();
    assert!(matches!(
        Producer::create(&name, 64),
        Err(Error::AlreadyExists { .. })
    ));
}

/// Write `v` at `off` of a live segment, as a hostile peer would.
fn poke(name: &str, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&v.to_ne_bytes(), off).unwrap();
}

#[test]
fn hostile_frame_headers_are_corruption_errors() {
    for bad in [
        u64::MAX,            // huge length, unknown kind
        1 << 32 | 1_000_000, // data frame far longer than the ring
        1 << 32 | 33,        // data frame longer than the largest message (24)
        2 << 32 | 56,        // padding at index 0
        9 << 32,             // unknown kind
    ] {
        let name = unique_name("hostile-frame");
        let _u = Unlink(name.clone());
        let mut rx = Consumer::create(&name, 64).unwrap();
        poke(&name, DATA, bad);
        let mut buf = [0u8; 64];
        match rx.try_recv(&mut buf) {
            Err(RecvError::Failed(Error::Corrupted { segment, .. })) => assert_eq!(segment, name),
            other => panic!("{bad:#x}: expected Corrupted, got {other:?}"),
        }
        assert!(matches!(rx.try_read(), Err(RecvError::Failed(_))));
    }
}

#[test]
fn hostile_consumer_position_is_a_corruption_error() {
    let name = unique_name("hostile-head");
    let _u = Unlink(name.clone());
    let mut tx = Producer::create(&name, 64).unwrap();
    // Fill the ring so the producer has to look at the consumer's position.
    while tx.try_send(&[1; 8]).is_ok() {}
    for bad in [u64::MAX, 1 << 40, 3] {
        poke(&name, HEAD, bad);
        match tx.try_send(&[2; 8]) {
            Err(SendError::Failed((), Error::Corrupted { .. })) => {}
            other => panic!("head {bad:#x}: expected Corrupted, got {other:?}"),
        }
    }
    // The informational tail is never trusted: garbage there changes nothing.
    poke(&name, TAIL, u64::MAX);
}

#[test]
fn mpmc_parameters_and_kind_are_checked() {
    // An spsc segment opened as an mpmc queue: the kind is refused.
    let name = unique_name("kind");
    let _u = Unlink(name.clone());
    let _tx = Producer::create(&name, 64).unwrap();
    match ringway::mpmc::Receiver::open(&name) {
        Err(Error::Invalid {
            field: "kind",
            detail,
            ..
        }) => {
            assert!(
                detail.contains("found 1 (spsc), expected 2 (mpmc)"),
                "{detail}"
            )
        }
        other => panic!("expected a kind error, got {other:?}"),
    }
    // Forged mpmc headers with inconsistent parameters.
    let base = |cap: u64, slot: u64| {
        let mut h = good_header(64);
        h.kind = 2;
        h.param_a = cap;
        h.param_b = slot;
        h.peer_slots = 64;
        h.total_size = 256 + 64 * 64 + 4 * 128 + cap * (16 + slot).div_ceil(64) * 64;
        h.checksum = h.compute_checksum();
        h
    };
    for (h, field) in [
        (base(3, 16), "param_a"),
        (base(4, 0), "param_b"),
        (base(1 << 30, 16), "param_a"),
    ] {
        let name = unique_name("forged-mpmc");
        let _u = Unlink(name.clone());
        forge(&name, &h, h.total_size.min(1 << 20));
        match ringway::mpmc::Receiver::open(&name) {
            Err(Error::Invalid { field: f, .. }) => {
                assert!(f == field || f == "total_size", "{f} for {field}")
            }
            other => panic!("expected Invalid {field}, got {other:?}"),
        }
    }
    // A consistent header opens.
    let name = unique_name("forged-mpmc-ok");
    let _u = Unlink(name.clone());
    let h = base(4, 16);
    forge(&name, &h, h.total_size);
    assert!(ringway::mpmc::Receiver::open(&name).is_ok());
}

#[test]
fn an_unsealed_memfd_is_refused_before_it_is_mapped() {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    // SAFETY: a valid C string; the new fd is owned below.
    let fd = unsafe { libc::memfd_create(c"not-ringway".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let f = std::fs::File::from(fd);
    f.set_len(4096).unwrap();
    match Consumer::from_fd(f.as_fd()) {
        Err(Error::Invalid { field: "seals", .. }) => {}
        other => panic!("expected a seals error, got {other:?}"),
    }
}

/// Offsets of an mpmc segment (64 peer slots): the queue area at 4352.
const ENQ: u64 = 4352;
const DEQ: u64 = 4352 + 128;
const SLOTS: u64 = 4352 + 4 * 128;

/// Found by the `mpmc_hostile` fuzz target: positions at the end of the
/// u64 range made `pos + 1` overflow (a panic in debug builds). Positions
/// read from the segment now wrap; every call gives a value or an Error.
#[test]
fn mpmc_positions_at_the_end_of_the_range_do_not_overflow() {
    for (enq, deq, seq) in [
        (u64::MAX, u64::MAX, u64::MAX),
        (u64::MAX, u64::MAX, 0),
        (0, u64::MAX, u64::MAX - 3),
        (u64::MAX - 1, u64::MAX - 1, u64::MAX),
        // A skipped slot at the very end: stepped over, then a wait.
        (u64::MAX, u64::MAX, 1 << 63),
    ] {
        let name = unique_name("hostile-mpmc-pos");
        let _u = Unlink(name.clone());
        let mut rx = ringway::mpmc::Receiver::create(&name, 4, 8).unwrap();
        let mut tx = ringway::mpmc::Sender::open(&name).unwrap();
        poke(&name, ENQ, enq);
        poke(&name, DEQ, deq);
        for i in 0..4 {
            // 64-byte slots: [seq][len][payload].
            poke(&name, SLOTS + 64 * i, seq);
            poke(&name, SLOTS + 64 * i + 8, 4);
        }
        let mut buf = [0u8; 8];
        // The blocking paths re-read the positions while they wait (first,
        // before a call moves them off the end of the range).
        let _ = rx.recv_timeout(&mut buf, std::time::Duration::from_millis(30));
        let _ = tx.send_timeout(&[7; 8], std::time::Duration::from_millis(30));
        for _ in 0..6 {
            let _ = rx.try_recv(&mut buf);
            let _ = rx.try_recv_batch(4, |m| assert!(m.len() <= 8));
            let _ = tx.try_send(&[7; 8]);
            let _ = tx.try_send_batch(&[&[1; 8], &[2; 8], &[3; 8]]);
        }
    }
}

/// Positions moved by a hostile writer so that, with every peer alive,
/// the waited-on slot is one nobody holds: the blocking calls end with
/// `Corrupted` (after a peer-check slice), not with their deadline; before,
/// they waited until it (forever without one: the hang in issue 16).
#[test]
fn mpmc_waits_that_no_live_peer_explains_are_corruption_errors() {
    use ringway::mpmc::{Receiver, Sender};
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_secs(10);
    // A dequeue position ahead of the enqueue position: the receiver
    // would wait for a slot no sender will ever fill.
    let name = unique_name("hostile-mpmc-stuck-rx");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    tx.send(&[1; 8]).unwrap();
    tx.send(&[2; 8]).unwrap();
    poke(&name, DEQ, 6);
    let mut buf = [0u8; 8];
    let t = Instant::now();
    match rx.recv_timeout(&mut buf, WAIT) {
        Err(RecvError::Failed(Error::Corrupted { .. })) => {}
        other => panic!("receiver: expected Corrupted, got {other:?}"),
    }
    assert!(t.elapsed() < WAIT / 2, "took {:?}", t.elapsed());
    // Slots claimed by no receiver, never freed: the sender would wait for
    // receivers that hold nothing.
    let name = unique_name("hostile-mpmc-stuck-tx");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    let _rx = Receiver::open(&name).unwrap();
    for i in 0..4 {
        tx.send(&[i; 8]).unwrap();
    }
    poke(&name, DEQ, 2);
    let t = Instant::now();
    match tx.send_timeout(&[9; 8], WAIT) {
        Err(SendError::Failed((), Error::Corrupted { .. })) => {}
        other => panic!("sender: expected Corrupted, got {other:?}"),
    }
    assert!(t.elapsed() < WAIT / 2, "took {:?}", t.elapsed());
    // A full queue and an empty one are waits that need no explanation:
    // they end at the deadline, as before.
    let name = unique_name("hostile-mpmc-honest");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    assert!(matches!(
        rx.recv_timeout(&mut buf, Duration::from_millis(300)),
        Err(RecvError::Timeout)
    ));
    for i in 0..4 {
        tx.send(&[i; 8]).unwrap();
    }
    assert!(matches!(
        tx.send_timeout(&[9; 8], Duration::from_millis(300)),
        Err(SendError::Timeout(()))
    ));
}

/// A published slot whose sequence word a hostile writer moved back to
/// "claimed, not yet published", in a full queue: the receivers wait for
/// it, the senders for room. The sender that claimed it still records that
/// claim, but it has finished with it: parked (waiting for room, or back
/// from a poll with `Full`), its record explains nothing, and the receiver
/// reports the corruption instead of waiting for ever (as `ringway chaos`
/// found: two senders and two receivers, all asleep).
#[test]
fn mpmc_a_finished_claim_explains_no_wait() {
    use ringway::mpmc::{Receiver, Sender};
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_secs(10);
    let name = unique_name("hostile-mpmc-stale-claim");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    // One claim of all four slots, published; the queue is full.
    assert_eq!(
        tx.send_batch(&[&[1; 8], &[2; 8], &[3; 8], &[4; 8]])
            .unwrap(),
        4
    );
    assert!(matches!(tx.try_send(&[5; 8]), Err(SendError::Full(()))));
    // Slot 0 (position 0) published (`seq` 1): moved back to 0.
    poke(&name, SLOTS, 0);
    let mut buf = [0u8; 8];
    let t = Instant::now();
    match rx.recv_timeout(&mut buf, WAIT) {
        Err(RecvError::Failed(Error::Corrupted { detail, .. })) => {
            assert!(detail.contains("no live peer holds it"), "{detail}")
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert!(t.elapsed() < WAIT / 2, "took {:?}", t.elapsed());
}

/// A published frame whose header a hostile writer zeroed: with the
/// producer alive and idle, the consumer would wait for it forever. After a
/// peer-check slice it learns `tail` and reports the contradiction.
#[test]
fn spsc_zeroed_header_of_a_published_frame_is_a_corruption_error() {
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_secs(10);
    let name = unique_name("hostile-spsc-zeroed");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::create(&name, 4096).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    tx.send(&[1; 8]).unwrap();
    tx.send(&[2; 8]).unwrap();
    poke(&name, DATA, 0);
    let mut buf = [0u8; 8];
    let t = Instant::now();
    match rx.recv_timeout(&mut buf, WAIT) {
        Err(RecvError::Failed(Error::Corrupted { .. })) => {}
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert!(t.elapsed() < WAIT / 2, "took {:?}", t.elapsed());
}

/// The consumer's released position moved back by a hostile writer: the
/// ring looks full to the producer, which waits for room, while the
/// consumer (which read everything) waits for data. Both alive, both would
/// wait for ever: the consumer finds its own word changed and says so, and
/// its leaving lets the producer go.
#[test]
fn spsc_consumer_position_moved_back_is_an_error_for_both_waiters() {
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_secs(10);
    let name = unique_name("hostile-spsc-head-back");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::create(&name, 256).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    let mut buf = [0u8; 8];
    // Fill the ring (the producer last read `head` = 0), drain it (the
    // consumer releases it all), then put `head` back where the producer
    // last saw it: a ring full to the producer, empty to the consumer.
    let mut k = 0;
    while tx.try_send(&[1; 8]).is_ok() {
        k += 1;
    }
    for _ in 0..k {
        rx.recv(&mut buf).unwrap();
    }
    assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)));
    poke(&name, HEAD, 0);
    let t = Instant::now();
    let sender = std::thread::spawn(move || {
        let r = (0..64).try_for_each(|_| tx.send_timeout(&[7; 8], WAIT));
        (r, Instant::now())
    });
    let mut got = 0;
    loop {
        match rx.recv_timeout(&mut buf, WAIT) {
            Ok(_) => got += 1,
            Err(RecvError::Failed(Error::Corrupted { detail, .. })) => {
                assert!(detail.contains("consumer position"), "{detail}");
                break;
            }
            other => panic!("consumer: expected Corrupted, got {other:?}"),
        }
    }
    assert_eq!(got, 0, "the ring looked full to the producer");
    assert!(t.elapsed() < WAIT / 2, "took {:?}", t.elapsed());
    drop(rx);
    let (r, at) = sender.join().unwrap();
    assert!(
        matches!(
            r,
            Err(SendError::Disconnected(())) | Err(SendError::Failed(..))
        ),
        "producer: {r:?}"
    );
    assert!(
        at.duration_since(t) < WAIT / 2,
        "producer took {:?}",
        at.duration_since(t)
    );
}

/// A queue a holder found corrupted holds nothing a later reader could
/// trust: its last holder removes it even with messages in it (an intact
/// one would be kept for a later receiver), and nobody can open it again.
#[test]
fn a_segment_found_corrupted_is_not_kept_nor_reopened() {
    use ringway::mpmc::{Receiver, Sender};
    let path = |n: &str| std::path::Path::new("/dev/shm").join(n);
    // Intact: kept for a receiver yet to come.
    let name = unique_name("poison-intact");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    tx.send(&[1; 8]).unwrap();
    tx.send(&[2; 8]).unwrap();
    drop(tx);
    assert!(
        path(&name).exists(),
        "an intact queue with messages is kept"
    );
    // Corrupted (seen by a receiver): removed by its last holder.
    let name = unique_name("poison-corrupt");
    let _u2 = Unlink(name.clone());
    let mut tx = Sender::create(&name, 4, 8).unwrap();
    tx.send(&[1; 8]).unwrap();
    tx.send(&[2; 8]).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    poke(&name, DEQ, 6);
    let mut buf = [0u8; 8];
    assert!(matches!(
        rx.recv_timeout(&mut buf, std::time::Duration::from_secs(10)),
        Err(RecvError::Failed(Error::Corrupted { .. }))
    ));
    match Receiver::open(&name) {
        Err(Error::Corrupted { detail, .. }) => assert!(detail.contains("found it corrupted")),
        other => panic!("reopening a poisoned queue: {other:?}"),
    }
    drop(rx);
    drop(tx);
    assert!(
        !path(&name).exists(),
        "a poisoned queue is removed by its last holder"
    );
}

/// Old frames of the last lap stay in the ring; a hostile header where the
/// producer left "not yet" makes them look new. A batch (which releases
/// only at its end) read them lap after lap for ever (found by the
/// `live_hostile` fuzz target); now nothing is read a capacity or more past
/// the last release: an error within one lap.
#[test]
fn spsc_batch_over_a_hostile_header_ends_within_a_lap() {
    let name = unique_name("hostile-spsc-laps");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::create(&name, 64).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    let mut buf = [0u8; 8];
    // One lap of 16-byte frames through the ring, all read and released.
    for i in 0..4u8 {
        tx.send(&[i; 8]).unwrap();
        rx.recv(&mut buf).unwrap();
    }
    assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)));
    // Position 64 (index 0) reads "not yet": make it a data frame.
    poke(&name, DATA, 1 << 32 | 8);
    let mut batch = rx.read_batch();
    let mut n = 0;
    let end = loop {
        match batch.next() {
            Ok(Some(_)) => n += 1,
            other => break other.map(|m| m.map(<[u8]>::len)),
        }
        assert!(n < 1000, "a batch read {n} frames of a 64-byte ring");
    };
    assert!(
        matches!(end, Err(Error::Corrupted { .. })),
        "{end:?} after {n}"
    );
    assert!(n <= 4, "{n} frames read before the error");
}

/// A peer entry reused by a new handle starts unparked: a sender that
/// parked (a poll came back Full) and left, then a new sender in its entry
/// holding a claim it is writing. The receiver's wait is explained by that
/// claim (it times out); read as the old owner's "parked", it was called
/// corruption.
#[test]
fn mpmc_a_reused_peer_entry_is_not_parked() {
    use ringway::mpmc::{Receiver, Sender};
    use std::time::Duration;
    let name = unique_name("mpmc-reused-entry");
    let _u = Unlink(name.clone());
    let _creator = Sender::create(&name, 4, 8).unwrap();
    let mut rx = Receiver::open(&name).unwrap();
    let mut buf = [0u8; 8];
    for round in 0..3 {
        let mut s = Sender::open(&name).unwrap();
        while s.try_send(&[round; 8]).is_ok() {}
        for _ in 0..4 {
            rx.recv(&mut buf).unwrap();
        }
        drop(s); // its entry is CLOSED, its `parked` word set
    }
    let mut s = Sender::open(&name).unwrap();
    let mut g = s.claim(8).unwrap();
    match rx.recv_timeout(&mut buf, Duration::from_millis(500)) {
        Err(RecvError::Timeout) => {}
        other => panic!("a claim being written: expected Timeout, got {other:?}"),
    }
    g.copy_from_slice(&[9; 8]);
    g.commit().unwrap();
    assert_eq!(rx.recv(&mut buf).unwrap(), 8);
    assert_eq!(buf, [9; 8]);
}
