//! Crash tests for the spsc ring: processes SIGKILLed at named failpoints
//! and at random times. Every wait is bounded; the assertions are the exact
//! recovery and the exact loss.

mod common;

use common::{check_message, child, exit_child, message, unique_name, Unlink};
use ringway::spsc::{Consumer, Producer};
use ringway::{Liveness, RecvError, SendError};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        // Send 0, 1, 2, ... until killed (by a failpoint or the parent).
        "produce_forever" => {
            let mut tx = Producer::open(&common::arg("NAME")).expect("open producer");
            let mut buf = Vec::new();
            for seq in 0.. {
                message(seq, &mut buf);
                tx.send_timeout(&buf, LONG).expect("send");
            }
        }
        // Receive one message, then die without dropping anything.
        "consume_one_then_die" => {
            let mut rx = Consumer::open(&common::arg("NAME")).expect("open consumer");
            let mut buf = [0u8; 256];
            rx.recv_timeout(&mut buf, LONG).expect("recv");
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() };
            // SAFETY: SIGKILL to ourselves: the crash under test.
            unsafe { libc::kill(me, libc::SIGKILL) };
        }
        // Create an anonymous ring, hand its fd to a grandchild consumer,
        // then send until killed.
        "produce_anon_with_grandchild" => {
            let mut tx = Producer::create_anonymous(1024).expect("create");
            let fd = tx.segment_fd().as_raw_fd();
            let mut b = child("consume_inherited")
                .arg("FD", fd)
                .arg("OUT", common::arg("OUT"));
            let clear_cloexec = move || {
                // SAFETY: fcntl on an fd number is async-signal-safe.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            // SAFETY: the closure only calls fcntl.
            unsafe { std::os::unix::process::CommandExt::pre_exec(&mut b.cmd, clear_cloexec) };
            let g = b.spawn();
            std::mem::forget(g); // outlives us: it must notice our death
            let mut buf = Vec::new();
            for seq in 0.. {
                message(seq, &mut buf);
                tx.send_timeout(&buf, LONG).expect("send");
            }
        }
        // Drain the inherited ring until Disconnected; record the outcome.
        "consume_inherited" => {
            let fd: i32 = common::arg("FD").parse().unwrap();
            // SAFETY: inherited without close-on-exec, open for our life.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let mut rx = Consumer::from_fd(fd).expect("from_fd");
            let got = drain_until_disconnected(&mut rx);
            std::fs::write(common::arg("OUT"), format!("disconnected after {got}")).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

/// Receive the contiguous stream 0..k until `Disconnected`; return k.
fn drain_until_disconnected(rx: &mut Consumer) -> u64 {
    let mut buf = vec![0u8; 256];
    let deadline = Instant::now() + LONG;
    let mut seq = 0;
    loop {
        assert!(Instant::now() < deadline, "no Disconnected within {LONG:?}");
        match rx.recv_timeout(&mut buf, LONG) {
            Ok(len) => {
                check_message(seq, &buf[..len]);
                seq += 1;
            }
            Err(RecvError::Disconnected) => return seq,
            Err(e) => panic!("after {seq} messages: {e}"),
        }
    }
}

#[test]
fn producer_killed_between_write_and_commit_loses_only_that_frame() {
    for nth in [1u64, 2, 101, 1000] {
        let name = unique_name("kill-commit");
        let _u = Unlink(name.clone());
        let mut rx = Consumer::create(&name, 512).unwrap();
        // The nth send writes its payload, then dies before committing it.
        let mut p = child("produce_forever")
            .arg("NAME", &name)
            .failpoint(&format!("spsc.before_commit@{nth}"))
            .spawn();
        let started = Instant::now();
        let got = drain_until_disconnected(&mut rx);
        assert_eq!(
            got,
            nth - 1,
            "exactly the committed messages, never the partial one"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "recovery took {:?}",
            started.elapsed()
        );
        p.expect_killed(LONG);
        assert_eq!(rx.producer_liveness().unwrap(), Liveness::Dead);
        // The end stays disconnected: nothing more arrives.
        let mut buf = [0u8; 64];
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(RecvError::Disconnected)
        ));
    }
}

#[test]
fn a_child_holding_the_segment_fd_does_not_keep_a_dead_producer_alive() {
    // The producer hands its segment's fd to a consumer it spawns; when the
    // producer is killed, the consumer must see Disconnected although it
    // still holds that fd (the peer lock lives on a private descriptor).
    let out = std::env::temp_dir()
        .join(unique_name("inherit"))
        .to_string_lossy()
        .into_owned();
    let _ = std::fs::remove_file(&out);
    let mut p = child("produce_anon_with_grandchild")
        .arg("OUT", &out)
        .spawn();
    std::thread::sleep(Duration::from_millis(200));
    p.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        if let Ok(s) = std::fs::read_to_string(&out) {
            if !s.is_empty() {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never saw the producer's death"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&out);
    assert!(result.starts_with("disconnected after "), "{result}");
}

#[test]
fn pollers_that_never_block_still_notice_a_dead_peer() {
    // try_recv only: the producer dies at its 11th send.
    let name = unique_name("poll-dead-producer");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::create(&name, 512).unwrap();
    let mut p = child("produce_forever")
        .arg("NAME", &name)
        .failpoint("spsc.before_commit@11")
        .spawn();
    let mut buf = [0u8; 256];
    let (mut seq, deadline) = (0, Instant::now() + LONG);
    loop {
        assert!(
            Instant::now() < deadline,
            "try_recv never reported the death"
        );
        match rx.try_recv(&mut buf) {
            Ok(n) => {
                check_message(seq, &buf[..n]);
                seq += 1;
            }
            Err(RecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seq, 10);
    p.expect_killed(LONG);

    // try_send only: the consumer dies after one message.
    let name = unique_name("poll-dead-consumer");
    let _u = Unlink(name.clone());
    let mut tx = Producer::create(&name, 256).unwrap();
    let mut c = child("consume_one_then_die").arg("NAME", &name).spawn();
    let mut msg = Vec::new();
    let deadline = Instant::now() + LONG;
    let mut sent = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "try_send never reported the death"
        );
        message(sent, &mut msg);
        match tx.try_send(&msg) {
            Ok(()) => sent += 1,
            Err(SendError::Full(())) => std::thread::sleep(Duration::from_millis(1)),
            Err(SendError::Disconnected(())) => break,
            Err(e) => panic!("{e}"),
        }
    }
    c.expect_killed(LONG);
}

#[test]
fn consumer_killed_unblocks_a_waiting_producer_with_its_message() {
    let name = unique_name("kill-consumer");
    let _u = Unlink(name.clone());
    let mut tx = Producer::create(&name, 256).unwrap();
    let mut c = child("consume_one_then_die").arg("NAME", &name).spawn();
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut seq = 0;
    // Fill the ring and keep sending: once the consumer is dead, the blocked
    // send must come back Disconnected, not hang.
    let err = loop {
        message(seq, &mut buf);
        match tx.send_timeout(&buf, LONG) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
        assert!(started.elapsed() < LONG, "no Disconnected");
    };
    assert!(matches!(err, SendError::Disconnected(())), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    c.expect_killed(LONG);
    assert_eq!(tx.consumer_liveness().unwrap(), Liveness::Dead);
    // The blocking form also returns at once now.
    assert!(tx.send(b"more").unwrap_err().is_disconnected());
}

#[test]
fn random_time_kill_loop_loses_nothing_committed() {
    // Kill the producer at a pseudo-random moment, 20 rounds: the consumer
    // always sees a gap-free prefix 0..k and then Disconnected.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut total = 0;
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 30_000);
        let name = unique_name("kill-random");
        let _u = Unlink(name.clone());
        let mut rx = Consumer::create(&name, 1024).unwrap();
        let mut p = child("produce_forever").arg("NAME", &name).spawn();
        // A producer killed before it attached never existed for the ring
        // (the consumer keeps waiting for one): start the clock once it has.
        let attach_deadline = Instant::now() + LONG;
        while rx.producer_liveness().unwrap() != Liveness::Alive {
            assert!(Instant::now() < attach_deadline, "producer never attached");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Read for `delay`, then kill, then drain.
        let mut buf = vec![0u8; 256];
        let mut seq = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < delay {
            if let Ok(len) = rx.recv_timeout(&mut buf, Duration::from_millis(1)) {
                check_message(seq, &buf[..len]);
                seq += 1;
            }
        }
        p.kill();
        let started = Instant::now();
        loop {
            match rx.recv_timeout(&mut buf, LONG) {
                Ok(len) => {
                    check_message(seq, &buf[..len]);
                    seq += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "round {round} hung"
        );
        total += seq;
    }
    println!("random kill loop: 20 rounds, {total} messages received in order");
}
