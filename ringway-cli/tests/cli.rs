//! The `ringway` command on real segments: ls, inspect, rm and gc over a
//! live segment, one left behind by a SIGKILLed process, one whose creator
//! died before publishing it, and a file that is not ringway's; exit codes;
//! `--json` that parses; the demos; a tiny bench run.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{child, exit_child, unique_name, Unlink};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LONG: Duration = Duration::from_secs(60);

/// Run `ringway args`, killing it (and failing) if it takes over two
/// minutes: a hang fails the test instead of stalling CI.
fn ringway(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringway");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("wait for ringway"),
        Err(_) => {
            // SAFETY: kill(2) touches no memory; the child is not reaped
            // yet (its waiter is blocked), so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("ringway {args:?} did not finish within 120 s");
        }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn json(o: &Output) -> Value {
    assert_eq!(code(o), 0, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn listed<'a>(ls: &'a Value, name: &str) -> Option<&'a Value> {
    ls.as_array().unwrap().iter().find(|s| s["name"] == name)
}

fn gc_names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Wait (bounded) until segment `name` exists and is READY.
fn wait_listed(name: &str) {
    let deadline = Instant::now() + LONG;
    while ringway::admin::inspect(name).map_or(true, |i| i.state != ringway::admin::State::Ready) {
        assert!(Instant::now() < deadline, "{name} never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        // Create a named queue and hold it until killed.
        "hold_mpmc" => {
            let _rx = ringway::mpmc::Receiver::create(&common::arg("NAME"), 8, 16).unwrap();
            std::thread::sleep(LONG);
        }
        "hold_counters" => {
            let m = ringway::counters::CounterMap::create(&common::arg("NAME"), 8).unwrap();
            m.set("count", 7).unwrap();
            std::thread::sleep(LONG);
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

#[test]
fn a_live_segment_is_listed_inspected_and_kept() {
    let name = unique_name("cli-live");
    let _u = Unlink(name.clone());
    let mut tx = ringway::spsc::Producer::create(&name, 4096).unwrap();
    tx.send(&[1; 100]).unwrap();

    let ls = json(&ringway(&["ls", "--json"]));
    let s = listed(&ls, &name).expect("listed");
    assert_eq!(s["kind"], "spsc");
    assert_eq!(s["state"], "ready");
    assert_eq!(s["peers_alive"], 1);
    assert_eq!(s["mode"], "600");
    assert_eq!(s["garbage"], Value::Null);

    let i = json(&ringway(&["inspect", &name, "--json"]));
    assert_eq!(i["fields"]["capacity_bytes"], 4096);
    // One 100-byte message is a 104-byte frame, plus the 8-byte header.
    assert_eq!(i["fields"]["tail"], 112);
    assert_eq!(i["fields"]["fill_bytes"], 112);
    assert_eq!(i["peers"][0]["liveness"], "alive");
    assert_eq!(i["peers"][0]["pid"], std::process::id());
    let text = ringway(&["inspect", &name]);
    assert_eq!(code(&text), 0);
    assert!(String::from_utf8_lossy(&text.stdout).contains("fill_bytes"));

    // gc keeps it, even with --yes; rm refuses it (exit 4) without --force.
    // (Each test collects only its own names: tests run in parallel.)
    let gc = json(&ringway(&["gc", "--yes", "--json", "--prefix", &name]));
    assert!(!gc_names(&gc).contains(&name));
    let rm = ringway(&["rm", &name]);
    assert_eq!(code(&rm), 4, "{}", String::from_utf8_lossy(&rm.stderr));
    assert!(String::from_utf8_lossy(&rm.stderr).contains("--force"));
    assert!(
        ringway::admin::inspect(&name).is_ok(),
        "rm without --force removed it"
    );
    // With --force it goes; this process keeps its mapping.
    assert_eq!(code(&ringway(&["rm", "--force", &name])), 0);
    assert_eq!(code(&ringway(&["inspect", &name])), 3);
    tx.send(&[2; 10]).unwrap();
}

#[test]
fn gc_removes_a_segment_left_by_a_killed_process_and_keeps_a_live_one() {
    let dead = unique_name("cli-dead");
    let dead_map = unique_name("cli-dead-map");
    let live = unique_name("cli-alive");
    let _u = (
        Unlink(dead.clone()),
        Unlink(dead_map.clone()),
        Unlink(live.clone()),
    );
    let mut a = child("hold_mpmc").arg("NAME", &dead).spawn();
    let mut b = child("hold_counters").arg("NAME", &dead_map).spawn();
    let _keep = child("hold_mpmc").arg("NAME", &live).spawn();
    for n in [&dead, &dead_map, &live] {
        wait_listed(n);
    }
    a.kill();
    b.kill();

    let ls = json(&ringway(&["ls", "--json"]));
    let d = listed(&ls, &dead).expect("the dead one is listed");
    assert_eq!(d["peers_alive"], 0);
    assert_eq!(d["peers_dead"], 1);
    assert!(d["garbage"].is_string());
    assert_eq!(listed(&ls, &live).unwrap()["peers_alive"], 1);
    let m = json(&ringway(&["inspect", &dead_map, "--json"]));
    assert_eq!(m["fields"]["keys"], 1);
    assert_eq!(m["held_by_live_process"], false);

    // A dry run lists both dead ones and removes nothing.
    let dry = gc_names(&json(&ringway(&["gc", "--json"])));
    assert!(dry.contains(&dead) && dry.contains(&dead_map), "{dry:?}");
    assert!(!dry.contains(&live));
    assert!(ringway::admin::inspect(&dead).is_ok());
    // --yes removes them, and only them.
    let done = gc_names(&json(&ringway(&[
        "gc",
        "--yes",
        "--json",
        "--prefix",
        "rw-test-cli-dead-",
    ])));
    assert!(done.contains(&dead) && done.contains(&dead_map), "{done:?}");
    for n in [&dead, &dead_map] {
        assert!(matches!(
            ringway::admin::inspect(n),
            Err(ringway::Error::NotFound { .. })
        ));
    }
    assert!(ringway::admin::inspect(&live).is_ok());
    let text = ringway(&["gc", "--prefix", "rw-test-cli-"]);
    assert!(!String::from_utf8_lossy(&text.stdout).contains(&live));
}

/// A header as a creator writes it, before READY.
fn unpublished_header() -> [u8; 128] {
    let mut h = ringway::Header {
        magic: ringway::MAGIC,
        version: ringway::VERSION,
        kind: 1,
        total_size: 4096,
        param_a: 64,
        param_b: 0,
        peer_slots: 2,
        creator_pid: 1,
        created_unix_ns: 0,
        checksum: 0,
        state: 0,
        reserved: [0; 15],
    };
    h.checksum = h.compute_checksum();
    h.to_bytes()
}

fn forge(name: &str, bytes: &[u8], age: Duration) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.set_len(4096).unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn a_creator_that_died_before_ready_is_collected_after_the_grace() {
    let old = unique_name("cli-init-old");
    let fresh = unique_name("cli-init-fresh");
    let _u = (Unlink(old.clone()), Unlink(fresh.clone()));
    forge(&old, &unpublished_header(), Duration::from_secs(60));
    forge(&fresh, &unpublished_header(), Duration::ZERO);
    let i = json(&ringway(&["inspect", &old, "--json"]));
    assert_eq!(i["state"], "initializing");
    let done = gc_names(&json(&ringway(&[
        "gc",
        "--yes",
        "--json",
        "--prefix",
        "rw-test-cli-init-",
    ])));
    assert!(done.contains(&old), "{done:?}");
    // Its creator may still be at work: within the grace period, kept.
    assert!(!done.contains(&fresh));
    assert!(ringway::admin::inspect(&fresh).is_ok());
}

#[test]
fn files_that_are_not_ringway_are_never_touched() {
    let name = unique_name("cli-foreign");
    let _u = Unlink(name.clone());
    forge(
        &name,
        b"not a ringway segment at all",
        Duration::from_secs(3600),
    );
    let i = ringway(&["inspect", &name]);
    assert_eq!(code(&i), 5, "{}", String::from_utf8_lossy(&i.stderr));
    assert!(listed(&json(&ringway(&["ls", "--json"])), &name).is_none());
    assert!(!gc_names(&json(&ringway(&[
        "gc", "--yes", "--json", "--prefix", &name
    ])))
    .contains(&name));
    assert_eq!(code(&ringway(&["rm", "--force", &name])), 5);
    assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

#[test]
fn bad_names_and_arguments_have_their_exit_codes() {
    assert_eq!(code(&ringway(&["inspect", "no-such-segment-here"])), 3);
    assert_eq!(code(&ringway(&["rm", "no-such-segment-here"])), 3);
    // A path is not a name: refused before anything is opened.
    let o = ringway(&["inspect", "../etc/passwd"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("'/'"));
    assert_eq!(code(&ringway(&["bench", "--only", "X9"])), 2);
    assert_eq!(code(&ringway(&["frobnicate"])), 2);
    let help = ringway(&["--help"]);
    assert_eq!(code(&help), 0);
    for cmd in ["bench", "demo", "ls", "inspect", "rm", "gc"] {
        assert!(String::from_utf8_lossy(&help.stdout).contains(cmd));
    }
}

#[test]
fn the_demos_run() {
    let o = ringway(&["demo", "counter"]);
    assert_eq!(code(&o), 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("{\"count\": 0}").count(), 2, "{out}");
    let o = ringway(&["demo", "buns"]);
    assert_eq!(code(&o), 0);
    let out = String::from_utf8_lossy(&o.stdout);
    // 3 chefs x 4 dishes, each eaten exactly once.
    assert_eq!(out.matches(" ate ").count(), 12, "{out}");
    let o = ringway(&["demo", "pipe"]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Squared(144)"));
}

#[test]
fn a_small_bench_gives_json_with_checked_figures() {
    let o = ringway(&[
        "bench",
        "--quiet",
        "--json",
        "--only",
        "T64,L",
        "--rows",
        "ringway spsc, per,floor",
        "--messages",
        "20000",
        "--round-trips",
        "200",
        "--repeat",
        "2",
        "--no-pin",
    ]);
    let v = json(&o);
    assert_eq!(v["meta"]["repeat"], 2);
    let figs = v["figures"].as_array().unwrap();
    let t64 = figs
        .iter()
        .find(|f| f["row"] == "ringway spsc, per message" && f["column"] == "T64")
        .expect("the spsc T64 figure");
    assert_eq!(t64["runs"], 2);
    assert!(t64["median"].as_f64().unwrap() > 0.0);
    assert!(t64["min"].as_f64() <= t64["median"].as_f64());
    assert!(figs
        .iter()
        .any(|f| f["row"] == "floor: one cache line ping-pong" && f["column"] == "p50"));
    assert!(figs.iter().all(|f| f.get("error").is_none()), "{figs:?}");
}

#[test]
fn a_short_soak_balances_its_books() {
    let o = ringway(&["soak", "--secs", "3", "--kill-every-ms", "100", "--json"]);
    let v = json(&o);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["failed_children"], serde_json::json!([]), "{v}");
    let kills =
        v["kills"]["producers"].as_u64().unwrap() + v["kills"]["consumers"].as_u64().unwrap();
    assert!(kills >= 5, "{v}");
    let lost = v["lost_reported"].as_u64().unwrap();
    assert!(
        v["missing"].as_u64().unwrap() <= lost && lost <= kills,
        "{v}"
    );
    assert!(v["received"].as_u64().unwrap() > 0);
}

/// `ringway chaos`, short: every kind, corrupt and kill. Each round must
/// end without a hang, a panic or a stray signal and leave nothing gc
/// cannot account for. `RINGWAY_CHAOS_ROUNDS=N` runs more.
#[test]
fn chaos_rounds_end_without_hangs_signals_or_leaks() {
    let rounds = std::env::var("RINGWAY_CHAOS_ROUNDS").unwrap_or_else(|_| "4".into());
    let o = ringway(&["chaos", "--rounds", &rounds, "--json"]);
    let v = json(&o);
    assert_eq!(v["defects"], 0, "{v}");
    assert_eq!(code(&o), 0, "{v}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "4 kinds x 2 actions: {v}");
    let n: u64 = rounds.parse().unwrap();
    for r in rows {
        assert_eq!(r["rounds"], n, "{r}");
        for bad in ["hang", "panic", "signal", "leaked"] {
            assert_eq!(r[bad], 0, "{bad}: {r}");
        }
        let ended: u64 = ["ok", "peer-gone", "error", "bad-data"]
            .iter()
            .map(|k| r[*k].as_u64().unwrap())
            .sum();
        assert_eq!(ended, n, "every round classified: {r}");
    }
}

/// Set a file's times `age` in the past (without opening it: a FIFO).
fn age_path(path: &str, age: Duration) {
    let t = SystemTime::now() - age;
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: `c` is a valid path and `ts` two valid timespecs for the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [ts, ts].as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat {path}");
}

fn mkfifo(path: &str) {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {path}");
}

#[test]
fn gc_keeps_the_doorbell_of_a_live_anonymous_ring_and_removes_unheard_ones() {
    // An anonymous ring's file is not in /dev/shm, but its consumer's
    // doorbell is: gc must tell it from an orphan by whether anybody
    // listens, not by whether the segment has a name.
    let (mut tx, mut rx) = ringway::spsc::channel(4096).unwrap();
    rx.doorbell().unwrap();
    // Its bell is named after the memfd's (device, inode).
    let ino = {
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::File::from(tx.segment_fd().try_clone_to_owned().unwrap());
        f.metadata().unwrap().ino()
    };
    let bells: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.contains("ringway-bell-") && p.contains(&format!("-{ino}-")))
        .collect();
    assert!(!bells.is_empty(), "the consumer made no doorbell");
    for b in &bells {
        age_path(b, Duration::from_secs(3600));
    }
    // A FIFO nobody reads, old enough to be judged.
    let orphan = format!("/dev/shm/ringway-bell-ffff-{}-0", std::process::id());
    let _ = std::fs::remove_file(&orphan);
    mkfifo(&orphan);
    age_path(&orphan, Duration::from_secs(3600));

    let g = json(&ringway(&[
        "gc",
        "--yes",
        "--json",
        "--prefix",
        "rw-test-none-",
    ]));
    assert!(!gc_names(&g)
        .iter()
        .any(|n| bells.iter().any(|b| b.ends_with(n))));
    for b in &bells {
        assert!(
            std::path::Path::new(b).exists(),
            "gc removed the live bell {b}"
        );
    }
    // (Another test's gc may have removed it first: either way, gone.)
    assert!(
        !std::path::Path::new(&orphan).exists(),
        "the orphan was kept"
    );
    // The live bell still rings.
    tx.send(&[9; 8]).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(rx.recv_timeout(&mut buf, LONG).unwrap(), 8);
}

/// Take (or test for) an exclusive OFD lock on the hold byte (4096), as
/// `ringway rm`/`gc` do before unlinking: 0 on success.
fn lock_hold_byte(f: &std::fs::File) -> i32 {
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 4096;
    fl.l_len = 1;
    let fd = std::os::fd::AsRawFd::as_raw_fd(f);
    // SAFETY: `fd` is open for the call; `fl` outlives it.
    unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl as *mut libc::flock) }
}

fn open_rw(name: &str) -> std::fs::File {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap()
}

/// How many of this process's descriptors are open on segment `name`.
fn fds_on(name: &str) -> usize {
    let target = std::path::PathBuf::from(format!("/dev/shm/{name}"));
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == target))
        .count()
}

#[test]
fn a_segment_removed_while_it_is_being_opened_is_not_opened() {
    // A live handle keeps the hold byte shared: no remover can take it.
    let live = unique_name("cli-race-live");
    let _u = Unlink(live.clone());
    let rx = ringway::mpmc::Receiver::create(&live, 8, 16).unwrap();
    assert_ne!(
        lock_hold_byte(&open_rw(&live)),
        0,
        "a live handle must hold"
    );
    assert!(matches!(
        ringway::admin::remove(&live, false),
        Err(ringway::Error::Busy { .. })
    ));
    drop(rx);

    // A queue whose creator was killed: READY, held by nobody.
    let name = unique_name("cli-race");
    let _u2 = Unlink(name.clone());
    let mut c = child("hold_mpmc").arg("NAME", &name).spawn();
    wait_listed(&name);
    c.kill();
    // Act as a remover: hold the byte exclusively...
    let file = open_rw(&name);
    assert_eq!(lock_hold_byte(&file), 0, "nobody holds it");
    // ...while a process opens it: it waits for the hold...
    let n = name.clone();
    let opener = std::thread::spawn(move || ringway::mpmc::Sender::open(&n).map(drop));
    // (Wait until it has the file open: this test's descriptor and the
    // opener's, at least.)
    let deadline = Instant::now() + LONG;
    while fds_on(&name) < 2 {
        assert!(Instant::now() < deadline, "the opener never opened it");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    // ...and the name goes before the remover lets go.
    ringway::unlink(&name).unwrap();
    drop(file);
    match opener.join().unwrap() {
        Err(ringway::Error::NotFound { .. }) => {}
        other => panic!("opened a segment removed under it: {other:?}"),
    }
}

/// Ctrl-C in the middle of a bench row (SIGINT to the whole process group,
/// as a terminal sends it): the bench exits 130 and leaves nothing of its
/// own in /dev/shm.
#[test]
fn interrupted_bench_removes_its_segments() {
    interrupted_command_removes_its_segments(
        "bench",
        &[
            "bench",
            "-q",
            "--only",
            "T64",
            "--rows",
            "ringway spsc, per message",
            "--messages",
            "2000000000",
            "--no-pin",
        ],
    );
}

#[test]
fn interrupted_chaos_and_soak_remove_their_segments() {
    interrupted_command_removes_its_segments("chaos", &["chaos", "--rounds", "100000"]);
    interrupted_command_removes_its_segments("soak", &["soak", "--secs", "600"]);
}

/// Ctrl-C (SIGINT to the process group) while `args` runs: it exits 130
/// and leaves none of its `rw-<command>-<pid>-` segments behind.
fn interrupted_command_removes_its_segments(command: &str, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let mut bench = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("rw-{command}-{}-", bench.id());
    let own = || -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while own().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{command} never created a segment"
        );
        assert!(bench.try_wait().unwrap().is_none(), "{command} ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: SIGINT to the bench's own process group (its children too).
    unsafe { libc::kill(-(bench.id() as i32), libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = bench.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("{command} did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(own().is_empty(), "left behind: {:?}", own());
}
