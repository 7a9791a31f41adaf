//! The lifecycle across independently started processes: the README's
//! examples as two programs in either order, Ctrl-C then rerun, the last
//! holder removing the name, a ring kept for a consumer that comes later,
//! stale segments replaced, waiting opens and blocked calls ending at
//! their deadlines, handles passed to a `Command` child.

mod common;

use common::{child, unique_name, Unlink};
use ringway::mpmc::{Receiver, Sender};
use ringway::pipe::Pipe;
use ringway::spsc::{Consumer, Producer};
use ringway::{Error, RecvError, SendError};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let name = common::arg("NAME");
    match role.as_str() {
        // Create, send a message, then wait to be killed.
        "spsc_create_hold" => {
            let mut tx = Producer::create(&name, 4096).unwrap();
            tx.send(b"from a process about to be killed").unwrap();
            std::thread::sleep(LONG);
        }
        "mpmc_create_hold" => {
            let _tx = Sender::create(&name, 8, 16).unwrap();
            std::thread::sleep(LONG);
        }
        // A child given a ring by `pass_to`: echo N messages back as one
        // count, through its own end.
        "inherited_consumer" => {
            let mut rx = Consumer::from_inherited("JOBS").unwrap();
            let mut n = 0;
            for m in rx.iter() {
                m.unwrap();
                n += 1;
            }
            // `exit` runs no destructors: drop the end first (else it is
            // left as if this process had died attached).
            drop(rx);
            std::process::exit(if n == common::arg_u64("N") as usize {
                0
            } else {
                3
            });
        }
        // Fork: the child opens its own consumer through the inherited
        // fd and drops its copy of the parent's producer, which must not
        // close the parent's end (the parent sends the rest later).
        "fork_pair" => {
            let mut tx = Producer::create_anonymous(4096).unwrap();
            tx.send(&[0]).unwrap();
            // SAFETY: this process runs one test thread (`--test-threads=1`)
            // and the child only uses ringway and `_exit`.
            match unsafe { libc::fork() } {
                0 => {
                    let ok = std::panic::catch_unwind(move || {
                        let mut rx = Consumer::from_fd(tx.segment_fd()).unwrap();
                        drop(tx); // the parent's handle: inert here
                        let mut buf = [0u8; 8];
                        (0..5u8).all(|i| {
                            rx.recv_timeout(&mut buf, LONG)
                                .is_ok_and(|n| buf[..n] == [i])
                        })
                    });
                    // SAFETY: `_exit` ends the forked child without running
                    // the parent's atexit handlers or destructors.
                    unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 3 }) };
                }
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                pid => {
                    std::thread::sleep(Duration::from_millis(100));
                    for i in 1..5u8 {
                        tx.send(&[i]).unwrap();
                    }
                    let mut status = 0;
                    let deadline = Instant::now() + LONG;
                    // SAFETY: waitpid on our own child, into a local.
                    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
                        assert!(Instant::now() < deadline, "forked child hung");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    assert!(
                        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                        "forked child failed: status {status:#x}"
                    );
                }
            }
        }
        // Fork a child that just lives on with copies of this process's
        // handles, write its pid to PIDFILE, and wait to be killed.
        "fork_hold" => {
            let mut tx = Producer::create(&name, 4096).unwrap();
            tx.send(b"left behind").unwrap();
            // SAFETY: as in "fork_pair"; the child only sleeps and exits.
            match unsafe { libc::fork() } {
                0 => {
                    std::thread::sleep(LONG);
                    // SAFETY: as in "fork_pair".
                    unsafe { libc::_exit(0) };
                }
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                pid => {
                    std::fs::write(common::arg("PIDFILE"), pid.to_string()).unwrap();
                    std::thread::sleep(LONG);
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Wait (bounded) until another process has made `name` READY.
fn wait_until_ready(name: &str) {
    let deadline = Instant::now() + LONG;
    while !ringway::admin::inspect(name).is_ok_and(|i| i.state == ringway::admin::State::Ready) {
        assert!(Instant::now() < deadline, "{name} never became READY");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An example's binary (cargo builds examples for `cargo test`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test` (which builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

fn start(ex: &str, role: &str, name: &str) -> std::process::Child {
    Command::new(example(ex))
        .args([role, name])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait for `c`, at most `t`; kill it and fail if it takes longer.
fn finish(mut c: std::process::Child, what: &str, t: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what} hung past {t:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Run an example's two programs `(a, b)` 20 times with `a` first and 20
/// with `b` first (the second started 0–20 ms later, so it may find the
/// first anywhere in its life), each run on a fresh name.
fn either_order(ex: &str, a: &str, b: &str) {
    either_order_with(ex, a, b, &[]);
}

/// [`either_order`] for an example whose programs also use the names
/// `<name><suffix>` for each of `suffixes`.
fn either_order_with(ex: &str, a: &str, b: &str, suffixes: &[&str]) {
    for round in 0..40u64 {
        let name = unique_name(&format!("lc-{ex}"));
        let _u = Unlink(name.clone());
        let _more: Vec<Unlink> = suffixes
            .iter()
            .map(|s| Unlink(format!("{name}{s}")))
            .collect();
        let (first, second) = if round % 2 == 0 { (a, b) } else { (b, a) };
        let p1 = start(ex, first, &name);
        std::thread::sleep(Duration::from_millis(round % 21));
        let p2 = start(ex, second, &name);
        let s1 = finish(p1, first, LONG);
        let s2 = finish(p2, second, LONG);
        assert!(
            s1.success() && s2.success(),
            "{ex} round {round}: {first} {s1}, {second} {s2}"
        );
        for n in std::iter::once(name.clone()).chain(suffixes.iter().map(|s| format!("{name}{s}")))
        {
            assert!(!exists(&n), "{ex} round {round}: {n} was left behind");
        }
    }
}

#[test]
fn jobs_example_works_in_either_order() {
    either_order("jobs", "produce", "consume");
}

#[test]
fn jobs_example_consumer_started_after_the_producer_finished() {
    for round in 0..5 {
        let name = unique_name("lc-jobs-late");
        let _u = Unlink(name.clone());
        let p = finish(start("jobs", "produce", &name), "produce", LONG);
        assert!(p.success());
        // Its 10 messages wait for the consumer that has not come yet.
        assert!(exists(&name), "round {round}: the unread ring was removed");
        let out = Command::new(example("jobs"))
            .args(["consume", &name])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("done: 10 buns"));
        assert!(!exists(&name));
    }
}

#[test]
fn buns_example_works_in_either_order() {
    either_order("buns", "kitchen", "eat");
}

#[test]
fn tasks_example_works_in_either_order() {
    either_order_with("tasks", "boss", "worker", &["-answers"]);
}

#[test]
fn rpc_example_works_in_either_order() {
    either_order("rpc", "server", "client");
}

#[test]
fn counter_workers_in_either_order() {
    for round in 0..20u64 {
        let name = unique_name("lc-count");
        let _u = Unlink(name.clone());
        // The tutorial's main holds the dict; two workers come in any order.
        let map = ringway::counters::CounterMap::open_or_create(&name, 16).unwrap();
        map.set("count", 200).unwrap();
        let w = |_| {
            Command::new(example("counter"))
                .args(["worker", &name, "100"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let (a, b) = (w(0), w(1));
        std::thread::sleep(Duration::from_millis(round % 7));
        assert!(finish(a, "worker", LONG).success());
        assert!(finish(b, "worker", LONG).success());
        assert_eq!(map.get("count").unwrap(), Some(0), "round {round}");
    }
}

#[test]
fn ctrl_c_then_rerun_works() {
    for round in 0..5u64 {
        let name = unique_name("lc-ctrlc");
        let _u = Unlink(name.clone());
        // Interrupt the kitchen mid-run (or both programs): what is left
        // must not stop the next run.
        let eat = start("buns", "eat", &name);
        let kitchen = start("buns", "kitchen", &name);
        // Interrupted before its queue is READY, the kitchen would leave the
        // foodie waiting (rightly) for the shop's next run to replace it.
        wait_until_ready(&name);
        std::thread::sleep(Duration::from_millis(5 * round));
        // SAFETY: kill() with a pid we spawned and have not reaped.
        unsafe { libc::kill(kitchen.id() as i32, libc::SIGINT) };
        if round % 2 == 1 {
            // SAFETY: as above.
            unsafe { libc::kill(eat.id() as i32, libc::SIGINT) };
        }
        finish(kitchen, "interrupted kitchen", LONG);
        // A foodie that had joined drains what was made and ends; one still
        // waiting to open when the kitchen died waits past the stale queue
        // for the next kitchen, and is the rerun's foodie.
        let mut eat = eat;
        let until = Instant::now() + Duration::from_secs(3);
        let mut old = None;
        while old.is_none() && Instant::now() < until {
            old = eat.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let eat = match old {
            Some(status) => {
                assert!(
                    round % 2 == 1 || status.success(),
                    "round {round}: {status}"
                );
                start("buns", "eat", &name)
            }
            None => eat,
        };
        let kitchen = start("buns", "kitchen", &name);
        let k = finish(kitchen, "kitchen rerun", LONG);
        let e = finish(eat, "foodie rerun", LONG);
        assert!(k.success() && e.success(), "round {round}: rerun {k}, {e}");
    }
}

#[test]
fn tutorial_examples_run() {
    for ex in [
        "jobs",
        "buns",
        "tasks",
        "rpc",
        "pipe",
        "counter",
        "spsc_pipeline",
    ] {
        let c = Command::new(example(ex))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(finish(c, ex, Duration::from_secs(60)).success(), "{ex}");
    }
}

#[test]
fn the_last_holder_removes_the_name_not_the_creator() {
    let name = unique_name("lc-last");
    let _u = Unlink(name.clone());
    let tx = Producer::create(&name, 4096).unwrap();
    let rx = Consumer::open(&name).unwrap();
    drop(tx);
    assert!(
        exists(&name),
        "the creator's drop removed a ring still held"
    );
    drop(rx);
    assert!(!exists(&name), "the last holder left the name behind");

    // mpmc: a sender that is not the creator is the last to go.
    let q = Sender::create(&name, 8, 16).unwrap();
    let other = Sender::open(&name).unwrap();
    drop(q);
    assert!(exists(&name));
    drop(other);
    assert!(!exists(&name));
}

#[test]
fn a_ring_with_unread_messages_waits_for_its_first_consumer() {
    let name = unique_name("lc-kept");
    let _u = Unlink(name.clone());
    let mut tx = Producer::create(&name, 4096).unwrap();
    tx.send(b"bun").unwrap();
    drop(tx);
    assert!(exists(&name));
    let mut rx = Consumer::open(&name).unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"bun");
    assert!(matches!(rx.recv_vec(), Err(RecvError::Disconnected)));
    drop(rx);
    assert!(!exists(&name));
    // A drained ring is not kept.
    let tx = Producer::create(&name, 4096).unwrap();
    drop(tx);
    assert!(!exists(&name), "an empty ring nobody holds was kept");
}

#[test]
fn a_stale_segment_is_replaced_by_create_and_waited_past_by_open() {
    for role in ["spsc_create_hold", "mpmc_create_hold"] {
        let name = unique_name("lc-stale");
        let _u = Unlink(name.clone());
        let mut c = child(role).arg("NAME", &name).spawn();
        wait_until_ready(&name);
        std::thread::sleep(Duration::from_millis(50));
        c.kill();
        c.wait_timeout(LONG).expect("the child is dead");
        assert!(exists(&name));
        if role.starts_with("spsc") {
            assert!(matches!(Consumer::open(&name), Err(Error::Stale { .. })));
            // A waiting open waits past the stale ring for the next one.
            let n2 = name.clone();
            let waiter = std::thread::spawn(move || {
                let mut rx = Consumer::open_timeout(&n2, LONG)?;
                rx.recv_timeout(&mut [0u8; 16], LONG)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))
            });
            std::thread::sleep(Duration::from_millis(100));
            let mut tx = Producer::create(&name, 4096).expect("create replaces a stale ring");
            tx.send(b"fresh").unwrap();
            assert_eq!(waiter.join().unwrap().unwrap(), 5);
        } else {
            assert!(matches!(Receiver::open(&name), Err(Error::Stale { .. })));
            let _q = Sender::create(&name, 8, 16).expect("create replaces a stale queue");
            Receiver::open(&name).expect("the new queue opens");
        }
    }
}

#[test]
fn create_on_a_live_segment_names_its_holders() {
    let name = unique_name("lc-live");
    let _u = Unlink(name.clone());
    let _tx = Producer::create(&name, 4096).unwrap();
    match Producer::create(&name, 4096) {
        Err(Error::AlreadyExists { pids, .. }) => assert!(pids.contains(&std::process::id())),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[test]
fn open_or_create_from_both_sides_and_mismatches() {
    let name = unique_name("lc-ooc");
    let _u = Unlink(name.clone());
    let mut rx = Consumer::open_or_create(&name, 4096).unwrap();
    let mut tx = Producer::open_or_create(&name, 4000).unwrap(); // rounds to 4096
    tx.send(b"x").unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"x");
    assert!(matches!(
        Producer::open_or_create(&name, 1 << 20),
        Err(Error::Mismatch { .. }) | Err(Error::InUse { .. })
    ));
    let q = unique_name("lc-ooc-q");
    let _uq = Unlink(q.clone());
    let _a = Receiver::open_or_create(&q, 8, 16).unwrap();
    let _b = Sender::open_or_create(&q, 8, 16).unwrap();
    assert!(matches!(
        Sender::open_or_create(&q, 8, 32),
        Err(Error::Mismatch { .. })
    ));
    let p = unique_name("lc-ooc-p");
    let _up = Unlink(p.clone());
    let mut one = Pipe::open_or_create(&p, true, 4096).unwrap();
    let mut two = Pipe::open_or_create(&p, true, 4096).unwrap();
    one.send(&7u32).unwrap();
    assert_eq!(two.recv::<u32>().unwrap(), 7);
}

#[test]
fn waiting_opens_and_calls_on_a_never_arriving_peer_end_at_their_deadline() {
    let name = unique_name("lc-never");
    let _u = Unlink(name.clone());
    let t = Instant::now();
    assert!(matches!(
        Consumer::open_timeout(&name, Duration::from_millis(200)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Receiver::open_timeout(&name, Duration::from_millis(200)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Pipe::open_timeout(&name, Duration::from_millis(200)),
        Err(Error::NotFound { .. })
    ));
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(600) && e < Duration::from_secs(5),
        "{e:?}"
    );

    // A consumer whose producer never comes; a producer on a full ring
    // that no consumer ever opened; an mpmc sender on a full queue.
    let mut rx = Consumer::create(&name, 64).unwrap();
    assert!(matches!(
        rx.recv_timeout(&mut [0u8; 8], Duration::from_millis(100)),
        Err(RecvError::Timeout)
    ));
    drop(rx);
    let mut tx = Producer::create(&name, 64).unwrap();
    let mut full = false;
    for _ in 0..64 {
        match tx.send_timeout(&[0u8; 8], Duration::from_millis(100)) {
            Ok(()) => {}
            Err(SendError::Timeout(())) => {
                full = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(full, "a 64-byte ring never filled");
    drop(tx);
    let mut q = Sender::create(&name, 2, 8).unwrap();
    q.send(b"a").unwrap();
    q.send(b"b").unwrap();
    assert!(matches!(
        q.send_timeout(b"c", Duration::from_millis(100)),
        Err(SendError::Timeout(()))
    ));
}

#[test]
fn mpmc_senders_join_at_any_time_until_the_creator_lets_go() {
    let name = unique_name("lc-join");
    let _u = Unlink(name.clone());
    let mut rx = Receiver::create(&name, 8, 16).unwrap();
    {
        let mut a = Sender::open(&name).unwrap();
        a.send(b"one").unwrap();
    }
    // The first chef is gone; the queue is still open for the next.
    let mut b = Sender::open(&name).expect("a later chef may join");
    b.send(b"two").unwrap();
    rx.close().unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"one");
    assert_eq!(rx.recv_vec().unwrap(), b"two");
    drop(b);
    assert!(matches!(
        rx.recv_timeout(&mut [0u8; 16], LONG),
        Err(RecvError::Disconnected)
    ));
    assert!(matches!(Sender::open(&name), Err(Error::Closed { .. })));
    // Receivers may still join an ended queue (and are told at once).
    let mut late = Receiver::open(&name).unwrap();
    assert!(matches!(late.recv_vec(), Err(RecvError::Disconnected)));
}

#[test]
fn an_end_passed_to_a_command_child() {
    for anonymous in [false, true] {
        let name = unique_name("lc-pass");
        let _u = Unlink(name.clone());
        let mut tx = if anonymous {
            Producer::create_anonymous(4096).unwrap()
        } else {
            Producer::create(&name, 4096).unwrap()
        };
        let mut c = child("inherited_consumer").arg("NAME", &name).arg("N", 5);
        tx.pass_to(&mut c.cmd, "JOBS").unwrap();
        let mut c = c.spawn();
        for i in 0..5u8 {
            tx.send(&[i]).unwrap();
        }
        drop(tx);
        c.expect_success(LONG);
        assert!(!exists(&name));
    }
    assert!(matches!(
        Consumer::from_inherited("NOT_PASSED"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_sender_waiting_for_room_gives_up_when_the_receivers_came_and_went() {
    let name = unique_name("lc-rx-gone");
    let _u = Unlink(name.clone());
    let mut tx = Sender::create(&name, 2, 8).unwrap();
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    // No receiver has come yet: the creator's sender waits (to its deadline).
    assert!(matches!(
        tx.send_timeout(b"c", Duration::from_millis(100)),
        Err(SendError::Timeout(()))
    ));
    let mut rx = Receiver::open(&name).unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"a");
    drop(rx);
    tx.send(b"c").unwrap();
    // Full again, and the only receiver has gone: told, not left waiting.
    let t = Instant::now();
    assert!(matches!(tx.send(b"d"), Err(SendError::Disconnected(()))));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_failed_opener_does_not_leave_the_name_behind() {
    let name = unique_name("lc-failed-open");
    let _u = Unlink(name.clone());
    let tx = Producer::create(&name, 4096).unwrap();
    let rx = Consumer::open(&name).unwrap();
    // An opener that will fail (the consumer end is in use), racing the
    // last two holders' drops.
    let n2 = name.clone();
    let opener = std::thread::spawn(move || {
        for _ in 0..200 {
            let _ = Consumer::open(&n2);
        }
    });
    std::thread::sleep(Duration::from_millis(2));
    drop(tx);
    drop(rx);
    opener.join().unwrap();
    assert!(!exists(&name), "a failed opener's hold kept the name");
}

#[test]
fn a_sole_sender_that_reaps_a_dead_creator_keeps_the_stream() {
    let name = unique_name("lc-sole");
    let _u = Unlink(name.clone());
    let mut c = child("mpmc_create_hold").arg("NAME", &name).spawn();
    let mut tx = common::open_retry(|| Sender::open(&name));
    let mut rx = Receiver::open(&name).unwrap();
    let mut tx2 = Sender::open(&name).unwrap();
    c.kill();
    c.wait_timeout(LONG).expect("the creator is dead");
    // Fill the queue so the sender waits and reaps the dead creator.
    for i in 0..8u8 {
        tx.send(&[i]).unwrap();
    }
    let t = std::thread::spawn(move || {
        tx.send_timeout(&[8], Duration::from_millis(300))
            .map_err(|e| format!("{e:?}"))
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.recv_vec().unwrap(), [0]);
    t.join().unwrap().expect("the live sender keeps the stream");
    for i in 1..9u8 {
        assert_eq!(rx.recv_vec().unwrap(), [i]);
    }
    // `close()` on a sender that is not the creator does not end it
    // either, though it is now the only sender.
    tx2.close().unwrap();
    tx2.send(b"x")
        .expect("close() lets go; this sender may still send");
}

#[test]
fn a_forked_child_opens_its_own_end_and_its_copies_are_inert() {
    child("fork_pair")
        .arg("NAME", "unused")
        .spawn()
        .expect_success(LONG);
}

#[test]
fn a_forked_child_does_not_keep_its_dead_parent_alive() {
    let name = unique_name("lc-fork");
    let _u = Unlink(name.clone());
    let pidfile = std::env::temp_dir().join(format!("{name}.pid"));
    let mut parent = child("fork_hold")
        .arg("NAME", &name)
        .arg("PIDFILE", pidfile.display())
        .spawn();
    let deadline = Instant::now() + LONG;
    let forked: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the forked child never started");
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = std::fs::remove_file(&pidfile);
    parent.kill();
    // The forked child still runs, with copies of the producer's handle
    // and its fds; the producer is dead all the same: nobody alive holds
    // the ring, so it is stale (not a live ring with a silent producer).
    let opened = Consumer::open(&name);
    // SAFETY: kill(2) on the pid we were told; it is our grandchild,
    // reparented to init, and not reaped before this.
    unsafe { libc::kill(forked, libc::SIGKILL) };
    assert!(
        matches!(opened, Err(Error::Stale { .. })),
        "expected Stale, got {opened:?}"
    );
}
