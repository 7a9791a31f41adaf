//! The spsc ring across real processes: exact counts and order, more
//! processes than cores, batched and zero-copy paths, fd passing, and one
//! owner per end.

mod common;

use common::{
    check_message, child, exit_child, message, open_retry, stress_n, unique_name, Unlink,
};
use ringway::spsc::{Consumer, Producer};
use ringway::{Error, RecvError};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// Child roles (this binary re-run with `RINGWAY_TEST_ROLE`).
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "produce" => {
            let mut tx = open_producer(&common::arg("NAME"));
            let n = common::arg_u64("N");
            let mut buf = Vec::new();
            for seq in 0..n {
                message(seq, &mut buf);
                tx.send_timeout(&buf, LONG).expect("send");
            }
        }
        "produce_batched" => {
            let mut tx = open_producer(&common::arg("NAME"));
            let n = common::arg_u64("N");
            let mut buf = Vec::new();
            let mut seq = 0;
            while seq < n {
                let mut batch = tx.batch();
                // A claimed frame, then pushed ones, up to 16 a batch.
                message(seq, &mut buf);
                match batch.try_claim(buf.len()) {
                    Ok(slot) => {
                        slot.copy_from_slice(&buf);
                        seq += 1;
                    }
                    Err(e) if e.is_full() => {}
                    Err(e) => panic!("claim: {e}"),
                }
                while seq < n && batch.len() < 16 {
                    message(seq, &mut buf);
                    batch.push(&buf).expect("push");
                    seq += 1;
                }
            }
        }
        "produce_create" => {
            let mut tx = Producer::create(&common::arg("NAME"), 512).expect("create");
            let n = common::arg_u64("N");
            let mut buf = Vec::new();
            for seq in 0..n {
                message(seq, &mut buf);
                tx.send_timeout(&buf, LONG).expect("send");
            }
        }
        "consume" => {
            let mut rx = open_retry(|| Consumer::open(&common::arg("NAME")));
            let n = common::arg_u64("N");
            let mut buf = vec![0u8; 256];
            for seq in 0..n {
                let len = rx.recv_timeout(&mut buf, LONG).expect("recv");
                check_message(seq, &buf[..len]);
            }
            let end = rx.recv_timeout(&mut buf, LONG);
            assert!(matches!(end, Err(RecvError::Disconnected)), "{end:?}");
        }
        "consume_fd" => {
            let fd: i32 = common::arg("FD").parse().unwrap();
            // SAFETY: the parent cleared close-on-exec on this fd, so it is
            // open in this process for its whole life.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut rx = Consumer::from_fd(fd).expect("consumer from fd");
            let n = common::arg_u64("N");
            for seq in 0..n {
                let msg = rx.read_timeout(LONG).expect("read");
                check_message(seq, &msg);
            }
        }
        "open_consumer_expect_in_use" => match Consumer::open(&common::arg("NAME")) {
            Err(Error::InUse {
                role: "consumer", ..
            }) => {}
            other => panic!("expected InUse, got {other:?}"),
        },
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

fn open_producer(name: &str) -> Producer {
    // The parent creates the ring before spawning us.
    Producer::open(name).expect("open producer")
}

/// Receive `n` stress messages, then expect the end of the stream.
fn drain_and_check(rx: &mut Consumer, n: u64) {
    let mut buf = vec![0u8; 256];
    for seq in 0..n {
        let len = rx.recv_timeout(&mut buf, LONG).expect("recv");
        check_message(seq, &buf[..len]);
    }
    assert!(matches!(
        rx.recv_timeout(&mut buf, LONG),
        Err(RecvError::Disconnected)
    ));
}

#[test]
fn million_messages_arrive_once_in_order_through_a_small_ring() {
    let name = unique_name("million");
    let _u = Unlink(name.clone());
    let n = stress_n(1_000_000);
    // 256 bytes: a handful of frames, so the ring wraps constantly.
    let mut rx = Consumer::create(&name, 256).unwrap();
    let mut p = child("produce").arg("NAME", &name).arg("N", n).spawn();
    drain_and_check(&mut rx, n);
    p.expect_success(LONG);
}

#[test]
fn batched_and_claimed_frames_arrive_once_in_order() {
    let name = unique_name("batched");
    let _u = Unlink(name.clone());
    let n = stress_n(1_000_000) / 4;
    let mut rx = Consumer::create(&name, 1024).unwrap();
    let mut p = child("produce_batched")
        .arg("NAME", &name)
        .arg("N", n)
        .spawn();
    // Read in batches, releasing once per batch.
    let mut seq = 0;
    let deadline = Instant::now() + LONG;
    while seq < n {
        assert!(Instant::now() < deadline, "stuck at {seq}");
        let mut got = 0;
        {
            let mut batch = rx.read_batch();
            while let Some(msg) = batch.next().unwrap() {
                check_message(seq, msg);
                seq += 1;
                got += 1;
            }
        }
        if got == 0 {
            // Wait for more (bounded), without consuming it.
            let msg = rx.read_timeout(LONG).expect("read");
            check_message(seq, &msg);
            seq += 1;
        }
    }
    let mut buf = [0u8; 64];
    assert!(matches!(
        rx.recv_timeout(&mut buf, LONG),
        Err(RecvError::Disconnected)
    ));
    p.expect_success(LONG);
}

#[test]
fn more_processes_than_cores_all_complete() {
    // 4 rings, 8 processes (plus this one) on a 2-core machine: waiting must
    // yield and sleep, never spin a core away. Each producer child creates
    // its ring; each consumer child opens it once it exists.
    let n = stress_n(1_000_000) / 10;
    let mut names = Vec::new();
    let mut children = Vec::new();
    for i in 0..4 {
        let name = unique_name(&format!("crowd{i}"));
        names.push(Unlink(name.clone()));
        children.push(
            child("produce_create")
                .arg("NAME", &name)
                .arg("N", n)
                .spawn(),
        );
        children.push(child("consume").arg("NAME", &name).arg("N", n).spawn());
    }
    for c in &mut children {
        c.expect_success(LONG);
    }
}

#[test]
fn anonymous_ring_reaches_a_child_through_an_inherited_fd() {
    let mut tx = Producer::create_anonymous(4096).unwrap();
    let fd = tx.segment_fd().as_raw_fd();
    let n = 10_000u64;
    let mut b = child("consume_fd").arg("FD", fd).arg("N", n);
    let clear_cloexec = move || {
        // SAFETY: fcntl on an fd number is async-signal-safe and has no
        // memory preconditions.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure only calls fcntl, which is async-signal-safe.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut b.cmd, clear_cloexec) };
    let mut c = b.spawn();
    let mut buf = Vec::new();
    for seq in 0..n {
        message(seq, &mut buf);
        tx.send_timeout(&buf, LONG).expect("send");
    }
    c.expect_success(LONG);
}

#[test]
fn a_second_consumer_process_is_refused_not_interleaved() {
    let name = unique_name("owner");
    let _u = Unlink(name.clone());
    let _rx = Consumer::create(&name, 1024).unwrap();
    child("open_consumer_expect_in_use")
        .arg("NAME", &name)
        .spawn()
        .expect_success(LONG);
}
