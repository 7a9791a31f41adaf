//! The `ringway` command on real segments: ls, inspect, rm and gc over a
//! live segment, one left behind by a SIGKILLed process, one whose creator
//! died before publishing it, and a file that is not ringway's; exit codes;
//! `--json` that parses; the demos; a tiny bench run.

mod common;

use common::{child, exit_child, unique_name, Unlink};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

const LONG: Duration = Duration::from_secs(60);

fn ringway(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .output()
        .expect("run ringway");
    out
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
    let gc = json(&ringway(&["gc", "--yes", "--json", "--prefix", "rw-test-"]));
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
        "gc", "--yes", "--json", "--prefix", "rw-test-",
    ])));
    assert!(done.contains(&dead) && done.contains(&dead_map), "{done:?}");
    for n in [&dead, &dead_map] {
        assert!(matches!(
            ringway::admin::inspect(n),
            Err(ringway::Error::NotFound { .. })
        ));
    }
    assert!(ringway::admin::inspect(&live).is_ok());
    let text = ringway(&["gc", "--prefix", "rw-test-"]);
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
    let old = unique_name("cli-never-ready");
    let fresh = unique_name("cli-initializing");
    let _u = (Unlink(old.clone()), Unlink(fresh.clone()));
    forge(&old, &unpublished_header(), Duration::from_secs(60));
    forge(&fresh, &unpublished_header(), Duration::ZERO);
    let i = json(&ringway(&["inspect", &old, "--json"]));
    assert_eq!(i["state"], "initializing");
    let done = gc_names(&json(&ringway(&[
        "gc", "--yes", "--json", "--prefix", "rw-test-",
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
        "gc", "--yes", "--json", "--prefix", "rw-test-"
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
