//! CounterMap and its robust lock across real processes: the tutorial's
//! hundred processes counting down, lock holders killed, a model check
//! against `HashMap`, and hostile table bytes.

mod common;

use common::{child, exit_child, open_retry, unique_name, Unlink};
use proptest::prelude::*;
use ringway::counters::CounterMap;
use ringway::Error;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let map = open_retry(|| CounterMap::open(&common::arg("NAME")));
    match role.as_str() {
        "take_one" => {
            map.add("count", -1).unwrap();
        }
        "take_one_locked" => {
            let g = map.lock().unwrap();
            let v = g.get("count").unwrap().unwrap();
            g.set("count", v - 1).unwrap();
        }
        // Lock, then die holding it (failpoint `lock.held`).
        "die_holding" => {
            let _g = map.lock().unwrap();
            unreachable!("the failpoint kills us first");
        }
        "increment_forever" => loop {
            let g = map.lock().unwrap();
            let v = g.get("n").unwrap().unwrap_or(0);
            g.set("n", v + 1).unwrap();
        },
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

fn hundred(role: &str) {
    let name = unique_name("count");
    let _u = Unlink(name.clone());
    let map = CounterMap::create(&name, 16).unwrap();
    map.set("count", 100).unwrap();
    let mut kids: Vec<_> = (0..100)
        .map(|_| child(role).arg("NAME", &name).spawn())
        .collect();
    for k in &mut kids {
        k.expect_success(LONG);
    }
    assert_eq!(
        map.snapshot().unwrap(),
        vec![("count".to_string(), 0)],
        "the tutorial's {{\"count\": 0}}"
    );
}

#[test]
fn a_hundred_processes_count_down_to_zero_lock_free() {
    hundred("take_one");
}

#[test]
fn a_hundred_processes_count_down_to_zero_under_the_lock() {
    hundred("take_one_locked");
}

#[test]
fn a_holder_killed_holding_the_lock_is_reported_to_the_next() {
    let name = unique_name("lock-kill");
    let _u = Unlink(name.clone());
    let map = CounterMap::create(&name, 16).unwrap();
    child("die_holding")
        .arg("NAME", &name)
        .failpoint("lock.held")
        .spawn()
        .expect_killed(LONG);
    let started = Instant::now();
    let g = map
        .lock_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("the lock is not held forever");
    assert!(g.owner_died(), "the next locker is told");
    assert!(started.elapsed() < Duration::from_secs(5));
    g.set("repaired", 1).unwrap();
    drop(g);
    let g = map.lock().unwrap();
    assert!(!g.owner_died(), "consistent again");
    assert_eq!(g.get("repaired").unwrap(), Some(1));
}

#[test]
fn random_kills_of_lock_holders_never_leave_it_held() {
    let name = unique_name("lock-loop");
    let _u = Unlink(name.clone());
    let map = CounterMap::create(&name, 16).unwrap();
    let mut seed = 0x853c_49e6_748f_ea9bu64 ^ std::process::id() as u64;
    let rounds = 12;
    let mut owner_died = 0;
    for round in 0..rounds {
        let mut kids: Vec<_> = (0..3)
            .map(|_| child("increment_forever").arg("NAME", &name).spawn())
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(2_000 + seed % 20_000));
        kids[(seed % 3) as usize].kill();
        for k in &mut kids {
            k.kill();
        }
        let g = map
            .lock_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: the lock stayed held"));
        owner_died += g.owner_died() as u32;
        let n = g.get("n").unwrap().unwrap_or(0);
        assert!(n >= 0, "round {round}");
    }
    println!("robust lock kill loop: {rounds} rounds of 3 processes, {owner_died} rounds found the owner dead");
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, i64),
    Set(u8, i64),
    Get(u8),
    Remove(u8),
    Cas(u8, i64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..12;
    prop_oneof![
        (k.clone(), -5i64..5).prop_map(|(k, d)| Op::Add(k, d)),
        (k.clone(), -5i64..5).prop_map(|(k, v)| Op::Set(k, v)),
        k.clone().prop_map(Op::Get),
        k.clone().prop_map(Op::Remove),
        (k, -2i64..2, -5i64..5).prop_map(|(k, c, n)| Op::Cas(k, c, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Against a HashMap, with capacities 4 to 16 and up to 12 keys: full
    /// tables, collisions, removals.
    #[test]
    fn the_map_matches_a_hashmap(cap_log in 2u32..5, ops in prop::collection::vec(op(), 1..100)) {
        let map = CounterMap::create_anonymous(1 << cap_log).unwrap();
        let mut model: HashMap<String, i64> = HashMap::new();
        // Entries used so far (removed ones are not reused).
        let mut used = std::collections::HashSet::new();
        let cap = 1usize << cap_log;
        for op in ops {
            let key = |k: u8| format!("key-{k}");
            let fits = |k: &str, used: &std::collections::HashSet<String>, model: &HashMap<String, i64>| {
                model.contains_key(k) || used.len() < cap
            };
            match op {
                Op::Add(k, d) => {
                    let k = key(k);
                    let r = map.add(&k, d);
                    if fits(&k, &used, &model) {
                        let want = model.get(&k).copied().unwrap_or(0) + d;
                        prop_assert_eq!(r.unwrap(), want);
                        if !model.contains_key(&k) { used.insert(format!("{k}#{}", used.len())); }
                        model.insert(k, want);
                    } else {
                        prop_assert!(r.is_err(), "a full map must refuse a new key");
                    }
                }
                Op::Set(k, v) => {
                    let k = key(k);
                    let r = map.set(&k, v);
                    if fits(&k, &used, &model) {
                        r.unwrap();
                        if !model.contains_key(&k) { used.insert(format!("{k}#{}", used.len())); }
                        model.insert(k, v);
                    } else {
                        prop_assert!(r.is_err());
                    }
                }
                Op::Get(k) => {
                    let k = key(k);
                    prop_assert_eq!(map.get(&k).unwrap(), model.get(&k).copied());
                }
                Op::Remove(k) => {
                    let k = key(k);
                    prop_assert_eq!(map.remove(&k).unwrap(), model.remove(&k));
                }
                Op::Cas(k, c, n) => {
                    let k = key(k);
                    if !fits(&k, &used, &model) {
                        prop_assert!(map.compare_exchange(&k, c, n).is_err());
                        continue;
                    }
                    let cur = model.get(&k).copied().unwrap_or(0);
                    let r = map.compare_exchange(&k, c, n).unwrap();
                    if !model.contains_key(&k) { used.insert(format!("{k}#{}", used.len())); }
                    if cur == c {
                        prop_assert_eq!(r, Ok(c));
                        model.insert(k, n);
                    } else {
                        prop_assert_eq!(r, Err(cur));
                        model.insert(k, cur);
                    }
                }
            }
            prop_assert_eq!(map.len().unwrap(), model.len());
        }
        let mut snap = map.snapshot().unwrap();
        snap.sort();
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort();
        prop_assert_eq!(snap, want);
    }
}

#[test]
fn long_keys_are_refused() {
    let map = CounterMap::create_anonymous(4).unwrap();
    assert!(matches!(
        map.add(&"k".repeat(65), 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(map.add(&"k".repeat(64), 1).is_ok());
}

/// Offsets in a counters segment (1 peer slot): entries at 640, 128 each.
const ENTRIES: u64 = 256 + 128 + 128 + 128;

#[test]
fn hostile_table_bytes_are_errors_not_hangs() {
    let name = unique_name("hostile-map");
    let _u = Unlink(name.clone());
    let map = CounterMap::create(&name, 8).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    // Every entry "removed": every probe walks the whole table and stops.
    for i in 0..8 {
        f.write_all_at(&3u32.to_ne_bytes(), ENTRIES + i * 128)
            .unwrap();
    }
    assert_eq!(map.get("a").unwrap(), None);
    assert!(
        map.add("a", 1).is_err(),
        "no room left: an error, not a loop"
    );
    // An unknown state everywhere, then a key length past the limit.
    for i in 0..8 {
        f.write_all_at(&7u32.to_ne_bytes(), ENTRIES + i * 128)
            .unwrap();
    }
    assert!(matches!(map.get("a"), Err(Error::Corrupted { .. })));
    for i in 0..8 {
        f.write_all_at(&2u32.to_ne_bytes(), ENTRIES + i * 128)
            .unwrap();
        f.write_all_at(&500u32.to_ne_bytes(), ENTRIES + i * 128 + 4)
            .unwrap();
    }
    assert!(matches!(map.get("a"), Err(Error::Corrupted { .. })));
    assert!(matches!(map.snapshot(), Err(Error::Corrupted { .. })));
}

/// Offset of the map's lock (glibc's mutex; its kind word at +16).
const LOCK: u64 = 256 + 128;

/// A thread id nobody runs as: a child's, once it has been reaped.
fn dead_tid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// The lock's words written by a hostile peer (or left by a holder the
/// kernel could not see die): every lock call ends, in the lock (told the
/// owner died) or in a corruption error, never a wait for ever or an abort.
#[test]
fn hostile_lock_words_end_every_wait() {
    let name = unique_name("hostile-lock");
    let _u = Unlink(name.clone());
    let map = CounterMap::create(&name, 8).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    // Held by a thread that does not exist: taken over, as from a dead
    // holder, and said so.
    f.write_all_at(&dead_tid().to_ne_bytes(), LOCK).unwrap();
    let t = Instant::now();
    let g = map.lock().unwrap();
    assert!(g.owner_died(), "the vanished holder is reported");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(g);
    assert!(!map.lock().unwrap().owner_died(), "and the lock works on");
    // Held, says the word, by a live thread of another process (init)
    // that never recorded itself as the holder: corruption, after a
    // bounded look (about a second), with or without a deadline.
    f.write_all_at(&1u32.to_ne_bytes(), LOCK).unwrap();
    let t = Instant::now();
    assert!(matches!(map.lock(), Err(Error::Corrupted { .. })));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(matches!(
        map.lock_timeout(LONG),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(
        map.lock_timeout(Duration::from_millis(200)),
        Ok(None)
    ));
    f.write_all_at(&0u32.to_ne_bytes(), LOCK).unwrap();
    drop(map.lock().unwrap());
    // A kind word glibc did not write (it would assert on some): refused
    // before glibc reads it.
    let mut kind = [0u8; 4];
    f.read_exact_at(&mut kind, LOCK + 16).unwrap();
    f.write_all_at(&0x7fu32.to_ne_bytes(), LOCK + 16).unwrap();
    assert!(matches!(map.lock(), Err(Error::Corrupted { .. })));
    assert!(matches!(map.try_lock(), Err(Error::Corrupted { .. })));
    f.write_all_at(&kind, LOCK + 16).unwrap();
    drop(map.lock().unwrap());
}
