//! `Pipe` across real processes: duplex ping-pong, simplex streaming, end of
//! stream on close and on SIGKILL, one owner per end, and messages that do
//! not fit the caller's buffer staying in the pipe.

mod common;

use common::{child, exit_child, open_retry, readable, unique_name, Unlink};
use proptest::prelude::*;
use ringway::pipe::Pipe;
use ringway::{Error, RecvError, SendError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Request {
    id: u32,
    body: String,
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let name = common::arg("NAME");
    match role.as_str() {
        // Answer every request until the other end goes away.
        "echo_server" => {
            let mut p = open_retry(|| Pipe::open(&name));
            loop {
                match p.recv::<Request>() {
                    Ok(r) => p
                        .send(&Request {
                            id: r.id,
                            body: r.body.to_uppercase(),
                        })
                        .unwrap(),
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Send N byte messages (the tutorial's 0..9 and more), then close.
        "stream" => {
            let mut p = open_retry(|| Pipe::open(&name));
            let n = common::arg_u64("N");
            let frame = b"xxpayloadxx";
            for i in 0..n {
                // Bytes 2..9 of a larger buffer, with the index appended.
                let mut buf = frame.to_vec();
                buf.extend_from_slice(&i.to_le_bytes());
                p.send_bytes(&buf, 2, Some(buf.len() - 2)).unwrap();
            }
            p.close();
        }
        // Take end 2, say so, and hold it until killed.
        "hold" => {
            let mut p = open_retry(|| Pipe::open(&name));
            p.send_bytes(b"ready", 0, None).unwrap();
            std::thread::sleep(LONG);
        }
        "open_expect_in_use" => match Pipe::open(&name) {
            Err(Error::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        },
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

#[test]
fn duplex_request_response_across_processes() {
    let name = unique_name("pipe-rpc");
    let _u = Unlink(name.clone());
    let mut p = Pipe::create(&name, true, 4096).unwrap();
    let mut c = child("echo_server").arg("NAME", &name).spawn();
    for id in 0..2000 {
        p.send(&Request {
            id,
            body: format!("bun {id}"),
        })
        .unwrap();
        let r: Request = p.recv().unwrap();
        assert_eq!(
            r,
            Request {
                id,
                body: format!("BUN {id}")
            }
        );
    }
    drop(p); // the server's recv: Disconnected; it exits
    c.expect_success(LONG);
}

#[test]
fn simplex_stream_then_end_of_stream_on_close() {
    let name = unique_name("pipe-stream");
    let _u = Unlink(name.clone());
    let mut p = Pipe::create(&name, false, 256).unwrap();
    assert!(!p.is_duplex());
    assert!(
        p.send_bytes(b"x", 0, None).is_err(),
        "end 1 of a simplex pipe only receives"
    );
    let mut c = child("stream").arg("NAME", &name).arg("N", 10_000).spawn();
    let mut buf = [0u8; 64];
    for i in 0..10_000u64 {
        assert!(p.poll(Some(LONG)).unwrap());
        let n = p.recv_bytes_into(&mut buf, 3).unwrap();
        assert_eq!(&buf[3..10], b"payload");
        assert_eq!(
            u64::from_le_bytes(buf[3 + n - 8..3 + n].try_into().unwrap()),
            i
        );
    }
    assert!(
        matches!(p.recv_bytes(None), Err(RecvError::Disconnected)),
        "Python's EOFError"
    );
    assert!(
        p.poll(Some(Duration::ZERO)).unwrap(),
        "poll says a receive would return at once"
    );
    c.expect_success(LONG);
}

#[test]
fn end_of_stream_when_the_other_end_is_killed() {
    let name = unique_name("pipe-kill");
    let _u = Unlink(name.clone());
    let mut p = Pipe::create(&name, true, 1024).unwrap();
    let mut c = child("hold").arg("NAME", &name).spawn();
    // End 2 is attached once it has said so; then kill it.
    assert!(p.poll(Some(LONG)).unwrap());
    assert_eq!(p.recv_bytes(None).unwrap(), b"ready");
    c.kill();
    let started = Instant::now();
    assert!(matches!(p.recv_bytes(None), Err(RecvError::Disconnected)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Sending to a dead end is Disconnected too (after the check, at once).
    let mut err = None;
    for _ in 0..10_000 {
        if let Err(e) = p.send_bytes(&[0; 100], 0, None) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(SendError::Disconnected(()))), "{err:?}");
}

#[test]
fn a_second_process_cannot_take_an_end_in_use() {
    let name = unique_name("pipe-owner");
    let _u = Unlink(name.clone());
    let mut p = Pipe::create(&name, true, 1024).unwrap();
    let mut holder = child("hold").arg("NAME", &name).spawn();
    assert!(p.poll(Some(LONG)).unwrap());
    assert_eq!(p.recv_bytes(None).unwrap(), b"ready");
    child("open_expect_in_use")
        .arg("NAME", &name)
        .spawn()
        .expect_success(LONG);
    holder.kill();
}

#[test]
fn send_bytes_checks_its_range() {
    let (mut a, mut b) = Pipe::pair(true, 1024).unwrap();
    assert!(
        b.send_bytes(b"abc", 4, None).is_err(),
        "offset past the end"
    );
    assert!(
        b.send_bytes(b"abc", 1, Some(3)).is_err(),
        "size past the end"
    );
    b.send_bytes(b"abc", 1, Some(2)).unwrap();
    b.send_bytes(b"abc", 3, None).unwrap(); // empty message
    assert_eq!(a.recv_bytes(None).unwrap(), b"bc");
    assert_eq!(a.recv_bytes(None).unwrap(), b"");
    let mut buf = [0u8; 4];
    assert!(matches!(
        a.recv_bytes_into(&mut buf, 5),
        Err(RecvError::Failed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the lengths and buffers, a message that does not fit stays
    /// and comes out whole with a large enough buffer: nothing is lost.
    #[test]
    fn too_short_buffers_lose_nothing(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
        short in 0usize..64,
    ) {
        // Room for every message at once: nobody reads while they are sent.
        let (mut a, mut b) = Pipe::pair(false, 16384).unwrap();
        for m in &msgs {
            b.send_bytes(m, 0, None).unwrap();
        }
        for m in &msgs {
            if m.len() > short {
                match a.recv_bytes(Some(short)) {
                    Err(RecvError::BufferTooShort { needed }) => prop_assert_eq!(needed, m.len()),
                    other => prop_assert!(false, "{:?}", other),
                }
                let mut small = vec![0u8; short + 1];
                match a.recv_bytes_into(&mut small, 1) {
                    Err(RecvError::BufferTooShort { needed }) => prop_assert_eq!(needed, m.len()),
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            let mut big = vec![0u8; m.len() + 5];
            let n = a.recv_bytes_into(&mut big, 5).unwrap();
            prop_assert_eq!(&big[5..5 + n], &m[..]);
        }
    }
}

#[test]
fn the_doorbell_fd_wakes_poll_for_messages_and_for_the_end() {
    use std::os::fd::AsRawFd;
    let name = unique_name("pipe-bell");
    let _u = Unlink(name.clone());
    let mut a = Pipe::create(&name, false, 4096).unwrap();
    let fd = a.doorbell().unwrap().as_raw_fd();
    assert!(!readable(fd, 50), "nothing sent yet");
    // Another process streams 10 messages, then closes its end.
    let mut c = child("stream").arg("NAME", &name).arg("N", 10).spawn();
    let mut got = 0;
    let deadline = Instant::now() + LONG;
    let mut buf = [0u8; 64];
    loop {
        assert!(
            Instant::now() < deadline,
            "the doorbell never rang; got {got}"
        );
        if !readable(fd, 1000) {
            continue;
        }
        // Readable: take everything there, until Empty (which re-arms).
        loop {
            match a.receiver().unwrap().try_recv(&mut buf) {
                Ok(_) => got += 1,
                Err(RecvError::Empty) => break,
                Err(RecvError::Disconnected) => {
                    assert_eq!(got, 10);
                    c.expect_success(LONG);
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn an_armed_doorbell_stays_quiet_until_a_message_comes() {
    use std::os::fd::AsRawFd;
    let (mut a, mut b) = Pipe::pair(false, 4096).unwrap();
    let fd = a.doorbell().unwrap().as_raw_fd();
    assert!(!readable(fd, 20));
    b.send_bytes(b"one", 0, None).unwrap();
    assert!(readable(fd, 5000));
    let mut buf = [0u8; 8];
    assert_eq!(a.receiver().unwrap().try_recv(&mut buf).unwrap(), 3);
    assert!(matches!(
        a.receiver().unwrap().try_recv(&mut buf),
        Err(RecvError::Empty)
    ));
    assert!(!readable(fd, 20), "drained and re-armed: quiet again");
    // A message that arrives while the consumer is not looking is not lost
    // for the doorbell either.
    b.send_bytes(b"two", 0, None).unwrap();
    b.send_bytes(b"three", 0, None).unwrap();
    assert!(readable(fd, 5000));
}
