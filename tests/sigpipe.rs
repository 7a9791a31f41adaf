//! A producer in a host program that keeps SIGPIPE at its default action
//! (C, Python) must not be killed when it rings the doorbell of a consumer
//! that armed it and then died: the FIFO has no reader left, and a plain
//! write-only FIFO end would raise SIGPIPE there.

mod common;

use common::{child, readable, unique_name, Unlink};
use ringway::pipe::Pipe;
use ringway::spsc::{Consumer, Producer};
use ringway::{RecvError, SendError};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn marker(name: &str, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.{what}"))
}

/// Wait (bounded) for a marker file another process creates.
fn wait_for(p: &Path) {
    let deadline = Instant::now() + LONG;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn touch(p: &Path) {
    std::fs::write(p, b"").unwrap();
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let name = common::arg("NAME");
    match role.as_str() {
        // Create the ring, arm the doorbell, take what the bell announces
        // until Empty (which re-arms it), say so, and wait to be killed.
        "armed_consumer" => {
            let pipe = common::arg("KIND") == "pipe";
            let mut p = pipe.then(|| Pipe::create(&name, false, 4096).expect("create pipe"));
            let mut c = (!pipe).then(|| Consumer::create(&name, 4096).expect("create"));
            let fd = match (&mut p, &mut c) {
                (Some(p), _) => p.doorbell().expect("doorbell").as_raw_fd(),
                (_, Some(c)) => c.doorbell().expect("doorbell").as_raw_fd(),
                _ => unreachable!(),
            };
            let rx: &mut Consumer = match (&mut p, &mut c) {
                (Some(p), _) => p.receiver().expect("simplex end 1 receives"),
                (_, Some(c)) => c,
                _ => unreachable!(),
            };
            touch(&marker(&name, "armed"));
            let deadline = Instant::now() + LONG;
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got == 0 {
                assert!(Instant::now() < deadline, "the bell never rang");
                if !readable(fd, 100) {
                    continue;
                }
                loop {
                    match rx.try_recv(&mut buf) {
                        Ok(_) => got += 1,
                        Err(RecvError::Empty) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            touch(&marker(&name, "rearmed"));
            std::thread::sleep(LONG);
            common::exit_child(1)
        }
        // As a C or Python host would: SIGPIPE at SIG_DFL. Send once (the
        // bell rings and the FIFO is opened), wait until the consumer has
        // re-armed and been killed, then send again (the bell rings into a
        // FIFO with no reader).
        "default_sigpipe_producer" => {
            // SAFETY: restoring a signal's default action has no
            // preconditions; this process is single-threaded here but for
            // the test harness, which does not use SIGPIPE.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let pipe = common::arg("KIND") == "pipe";
            let mut p = pipe.then(|| common::open_retry(|| Pipe::open(&name)));
            let mut own = (!pipe).then(|| common::open_retry(|| Producer::open(&name)));
            let tx: &mut Producer = match (&mut p, &mut own) {
                (Some(p), _) => p.sender().expect("simplex end 2 sends"),
                (_, Some(o)) => o,
                _ => unreachable!(),
            };
            tx.send_timeout(b"first", LONG).expect("first send");
            wait_for(&marker(&name, "killed"));
            for _ in 0..10 {
                match tx.try_send(b"into the void") {
                    Ok(()) | Err(SendError::Full(_)) | Err(SendError::Disconnected(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            common::exit_child(0)
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn ringing_a_dead_consumers_bell_does_not_raise_sigpipe() {
    dead_bell("spsc");
}

#[test]
fn ringing_a_dead_pipe_ends_bell_does_not_raise_sigpipe() {
    dead_bell("pipe");
}

fn dead_bell(kind: &str) {
    let name = unique_name(&format!("sigpipe-{kind}"));
    let _u = Unlink(name.clone());
    let markers = ["armed", "rearmed", "killed"].map(|w| marker(&name, w));
    let mut c = child("armed_consumer")
        .arg("NAME", &name)
        .arg("KIND", kind)
        .spawn();
    wait_for(&markers[0]);
    // The killed consumer cannot remove its doorbell FIFO; we do, by the
    // segment's identity (as `ringway gc` would).
    let bell_prefix = {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        format!("ringway-bell-{:x}-{}-", md.dev(), md.ino())
    };
    let mut p = child("default_sigpipe_producer")
        .arg("NAME", &name)
        .arg("KIND", kind)
        .spawn();
    wait_for(&markers[1]);
    c.kill();
    touch(&markers[2]);
    p.expect_success(LONG);
    for m in &markers {
        let _ = std::fs::remove_file(m);
    }
    for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(&bell_prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
