//! `Options`, the one builder for every kind: "room for N messages of S
//! bytes" really holds them, the mode reaches the file, bad options are
//! `InvalidArgument`, and opens wait as asked.

mod common;

use common::{unique_name, Unlink};
use ringway::counters::CounterMap;
use ringway::mpmc::{Receiver, Sender};
use ringway::pipe::Pipe;
use ringway::spsc::{self, Consumer, Producer};
use ringway::{Error, Options};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const ROOMS: [(usize, usize); 7] = [
    (1, 0),
    (1, 1),
    (3, 5000),
    (10, 64),
    (100, 8),
    (1000, 64),
    (4096, 1),
];

#[test]
fn room_for_holds_that_many_messages_at_once() {
    for (count, size) in ROOMS {
        let mut tx: Producer = Options::new()
            .room_for(count, size)
            .create_anonymous()
            .unwrap();
        let _rx: Consumer = Options::new().from_fd(tx.segment_fd()).unwrap();
        assert!(tx.max_message_len() >= size, "spsc ({count}, {size})");
        let msg = vec![7u8; size];
        for i in 0..count {
            tx.try_send(&msg)
                .unwrap_or_else(|e| panic!("spsc room for ({count}, {size}): message {i}: {e}"));
        }

        let mut tx: Sender = Options::new()
            .room_for(count.max(2), size.max(1))
            .create_anonymous()
            .unwrap();
        let _rx: Receiver = Options::new().from_fd(tx.segment_fd()).unwrap();
        for i in 0..count {
            tx.try_send(&msg)
                .unwrap_or_else(|e| panic!("mpmc room for ({count}, {size}): message {i}: {e}"));
        }
    }
}

#[test]
fn ring_bytes_for_refuses_what_overflows() {
    for (count, size) in [
        (usize::MAX, 1),
        (1, usize::MAX),
        (usize::MAX, usize::MAX),
        (1 << 40, 64),
        (1, 1 << 40),
    ] {
        assert!(
            matches!(
                spsc::ring_bytes_for(count, size),
                Err(Error::InvalidArgument(_))
            ),
            "({count}, {size})"
        );
    }
    assert!(spsc::ring_bytes_for(0, 0).is_ok());
}

#[test]
fn the_mode_reaches_the_file() {
    let name = unique_name("opt-mode");
    let _u = Unlink(name.clone());
    let _tx: Producer = Options::new()
        .capacity_bytes(4096)
        .mode(0o640)
        .create(&name)
        .unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "mode {mode:o}");
}

#[test]
fn bad_options_are_invalid_arguments() {
    let name = unique_name("opt-bad");
    let _u = Unlink(name.clone());
    let bad = |r: ringway::Result<()>, what: &str| {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
    };
    bad(
        Options::new()
            .capacity_bytes(4096)
            .mode(0o1777)
            .create::<Producer>(&name)
            .map(drop),
        "sticky mode",
    );
    bad(
        Options::new().create::<Producer>(&name).map(drop),
        "no capacity",
    );
    bad(
        Options::new().keys(8).create::<Producer>(&name).map(drop),
        "keys for a ring",
    );
    bad(
        Options::new()
            .capacity_bytes(4096)
            .create::<Sender>(&name)
            .map(drop),
        "bytes for a queue",
    );
    bad(
        Options::new()
            .room_for(8, 8)
            .create::<CounterMap>(&name)
            .map(drop),
        "room for messages in a map",
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

#[test]
fn opens_wait_as_asked() {
    let name = unique_name("opt-wait");
    let _u = Unlink(name.clone());
    let t0 = Instant::now();
    let r = Options::new().open::<Receiver>(&name);
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "open without waiting waited"
    );
    let t0 = Instant::now();
    let r = Options::new()
        .open_timeout(Duration::from_millis(60))
        .open::<CounterMap>(&name);
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(60));
    // A creator a little later: a waiting open gets it.
    let n = name.clone();
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let mut p: Pipe = Options::new()
            .duplex(false)
            .capacity_bytes(4096)
            .create(&n)
            .unwrap();
        // Simplex: end 1 only receives.
        assert!(p.try_send_bytes(b"x", 0, None).is_err());
        p.recv_bytes_timeout(None, Duration::from_secs(10)).unwrap()
    });
    let mut end2: Pipe = Options::new().open_wait().open(&name).unwrap();
    assert!(!end2.is_duplex());
    end2.send_bytes(b"hello", 0, None).unwrap();
    assert_eq!(creator.join().unwrap(), b"hello");
}

#[test]
fn open_or_create_through_options_checks_the_parameters() {
    let name = unique_name("opt-ooc");
    let _u = Unlink(name.clone());
    let o = Options::new().room_for(16, 32);
    let mut a: Sender = o.open_or_create(&name).unwrap();
    let mut b: Receiver = o.open_or_create(&name).unwrap();
    a.send(b"bun").unwrap();
    assert_eq!(b.recv_vec().unwrap(), b"bun");
    let r = Options::new()
        .room_for(16, 64)
        .open_or_create::<Receiver>(&name);
    assert!(matches!(r, Err(Error::Mismatch { .. })), "{r:?}");
}
