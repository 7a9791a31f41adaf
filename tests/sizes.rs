//! Every size argument of every constructor, over the whole `usize` range:
//! each value either gives a working segment (a message goes through, the
//! capacity it reports is usable) or `Error::InvalidArgument`. Never a
//! panic, a wrapped size, a capacity of 0, or another error.

use proptest::prelude::*;
use ringway::counters::CounterMap;
use ringway::mpmc::{Receiver, Sender};
use ringway::pipe::Pipe;
use ringway::{spsc, Error};

/// Sizes from the whole range, weighted towards the edges where
/// arithmetic goes wrong: powers of two and their neighbours, small values,
/// and the top of the range.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        any::<usize>(),
        0usize..=5000,
        (0u32..64).prop_map(|k| 1usize << k),
        (1u32..64).prop_map(|k| (1usize << k) + 1),
        (1u32..64).prop_map(|k| (1usize << k) - 1),
        (0usize..64).prop_map(|d| usize::MAX - d),
    ]
}

fn invalid<T: std::fmt::Debug>(what: &str, r: ringway::Result<T>) -> Result<(), TestCaseError> {
    match r {
        Err(Error::InvalidArgument(_)) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "{what}: expected a working segment or InvalidArgument, got {other:?}"
        ))),
    }
}

/// A message of `n` distinct bytes.
fn msg(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 1) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn spsc_capacity(cap in size()) {
        match spsc::channel(cap) {
            Ok((mut tx, mut rx)) => {
                prop_assert!(tx.capacity() >= cap && tx.capacity().is_power_of_two());
                let max = tx.max_message_len();
                prop_assert!(max > 0);
                for n in [0, 1, max.min(4096), max] {
                    let m = msg(n);
                    tx.try_send(&m).unwrap();
                    let mut buf = vec![0u8; n];
                    prop_assert_eq!(rx.try_recv(&mut buf).unwrap(), n);
                    prop_assert_eq!(&buf, &m);
                }
            }
            Err(e) => invalid(&format!("spsc::channel({cap})"), Err::<(), _>(e))?,
        }
    }

    #[test]
    fn mpmc_capacity_and_slot_size(cap in size(), max_message in size()) {
        match Sender::create_anonymous(cap, max_message) {
            Ok(mut tx) => {
                let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
                prop_assert!(tx.capacity() >= cap.max(1) && tx.capacity().is_power_of_two());
                prop_assert_eq!(tx.max_message_len(), max_message);
                let n = max_message.min(4096);
                let m = msg(n);
                tx.try_send(&m).unwrap();
                let mut buf = vec![0u8; n];
                prop_assert_eq!(rx.try_recv(&mut buf).unwrap(), n);
                prop_assert_eq!(&buf, &m);
            }
            Err(e) => invalid(&format!("mpmc({cap}, {max_message})"), Err::<(), _>(e))?,
        }
    }

    #[test]
    fn pipe_capacity(cap in size(), duplex in any::<bool>()) {
        match Pipe::pair(duplex, cap) {
            Ok((mut one, mut two)) => {
                let max = two.sender().unwrap().max_message_len();
                prop_assert!(max > 0);
                let m = msg(max.min(4096));
                two.send_bytes(&m, 0, None).unwrap();
                let mut buf = vec![0u8; m.len()];
                prop_assert_eq!(one.receiver().unwrap().try_recv(&mut buf).unwrap(), m.len());
                prop_assert_eq!(&buf, &m);
            }
            Err(e) => invalid(&format!("Pipe::pair({duplex}, {cap})"), Err::<(), _>(e))?,
        }
    }

    #[test]
    fn counter_map_capacity(cap in size()) {
        match CounterMap::create_anonymous(cap) {
            Ok(map) => {
                prop_assert!(map.capacity() >= cap.max(1));
                prop_assert_eq!(map.add("k", 3).unwrap(), 3);
                prop_assert_eq!(map.get("k").unwrap(), Some(3));
            }
            Err(e) => invalid(&format!("CounterMap({cap})"), Err::<(), _>(e))?,
        }
    }
}

/// The named constructors share the anonymous ones' checks; one edge each.
#[test]
fn named_constructors_refuse_what_does_not_fit() {
    let name = format!("rw-sizes-{}", std::process::id());
    for cap in [usize::MAX, usize::MAX / 2 + 2, (1 << 32) + 1] {
        assert!(matches!(
            spsc::Producer::create(&name, cap),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            spsc::Consumer::create(&name, cap),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Sender::create(&name, cap, 64),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Receiver::create(&name, 64, cap),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Pipe::create(&name, true, cap),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            CounterMap::create(&name, cap),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

/// Durations from the whole range, weighted towards zero and the top
/// (where `Instant + Duration` overflows).
fn duration() -> impl Strategy<Value = std::time::Duration> {
    use std::time::Duration;
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::MAX),
        Just(Duration::ZERO),
        (0u64..2_000_000).prop_map(Duration::from_nanos),
        (0u64..64).prop_map(|d| Duration::from_secs(u64::MAX - d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// `Options::room_for(count, size)` for every kind it sizes, and
    /// `spsc::ring_bytes_for`: a ring that holds `count` messages of
    /// `size` bytes (all of them, when that is few enough to try), or
    /// `InvalidArgument`.
    #[test]
    fn room_for_every_kind(count in size(), len in size()) {
        use ringway::Options;
        match spsc::ring_bytes_for(count, len) {
            Ok(bytes) => {
                let mut tx: spsc::Producer =
                    Options::new().room_for(count, len).create_anonymous().unwrap();
                prop_assert!(tx.capacity() >= bytes);
                let mut rx = spsc::Consumer::from_fd(tx.segment_fd()).unwrap();
                if count <= 64 && len <= 1 << 16 {
                    let m = msg(len);
                    for _ in 0..count {
                        tx.try_send(&m).unwrap();
                    }
                    let mut buf = vec![0u8; len];
                    for _ in 0..count {
                        prop_assert_eq!(rx.try_recv(&mut buf).unwrap(), len);
                    }
                }
            }
            Err(e) => {
                invalid("ring_bytes_for", Err::<(), _>(e))?;
                invalid(
                    "room_for (spsc)",
                    Options::new().room_for(count, len).create_anonymous::<spsc::Producer>(),
                )?;
            }
        }
        match Options::new().room_for(count, len).create_anonymous::<Sender>() {
            Ok(mut tx) => {
                prop_assert!(tx.capacity() >= count.max(1));
                prop_assert!(tx.max_message_len() >= len);
                let m = msg(len.min(1 << 16));
                tx.try_send(&m).unwrap();
                let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
                prop_assert_eq!(rx.recv_vec().unwrap(), m);
            }
            r => invalid("room_for (mpmc)", r)?,
        }
        match Options::new().room_for(count, len).create_anonymous::<Pipe>() {
            Ok(_) => prop_assert!(spsc::ring_bytes_for(count, len).is_ok()),
            r => invalid("room_for (pipe)", r)?,
        }
        match Options::new().keys(count).create_anonymous::<CounterMap>() {
            Ok(map) => prop_assert_eq!(map.add("k", 1).unwrap(), 1),
            r => invalid("keys", r)?,
        }
    }

    /// Every timeout argument over the whole `Duration` range: a bounded
    /// call never panics on the deadline's arithmetic, whatever it is
    /// (calls that return at once: data there, room there, the peer gone,
    /// the lock free).
    #[test]
    fn timeouts_of_any_length(d in duration()) {
        let (mut tx, mut rx) = spsc::channel(256).unwrap();
        tx.send_timeout(&[1; 8], d).unwrap();
        let mut buf = [0u8; 8];
        prop_assert_eq!(rx.recv_timeout(&mut buf, d).unwrap(), 8);
        drop(tx);
        prop_assert!(matches!(rx.recv_timeout(&mut buf, d), Err(ringway::RecvError::Disconnected)));
        let mut tx = Sender::create_anonymous(4, 8).unwrap();
        let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
        tx.send_timeout(&[1; 8], d).unwrap();
        prop_assert_eq!(rx.recv_timeout(&mut buf, d).unwrap(), 8);
        drop(rx);
        for _ in 0..4 {
            let _ = tx.try_send(&[2; 8]);
        }
        prop_assert!(tx.send_timeout(&[3; 8], d).is_err());
        let (mut a, mut b) = Pipe::pair(true, 256).unwrap();
        a.send_bytes_timeout(&[4; 8], 0, None, d).unwrap();
        prop_assert_eq!(b.recv_bytes_timeout(None, d).unwrap(), vec![4; 8]);
        let map = CounterMap::create_anonymous(4).unwrap();
        prop_assert!(map.lock_timeout(d).unwrap().is_some());
        let name = format!("rw-sizes-missing-{}", std::process::id());
        if d < std::time::Duration::from_millis(2) {
            prop_assert!(ringway::Options::new().open_timeout(d).open::<Receiver>(&name).is_err());
        }
    }
}
