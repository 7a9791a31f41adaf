//! Operations decoded from bytes, applied to a counter map and to a
//! `HashMap`, checked step by step (insert, add, set, compare-exchange,
//! remove, lookups, and "full" exactly when every slot has been used:
//! removed keys leave tombstones that are never reused).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::counters::CounterMap;
use std::collections::HashMap;

const KEYS: [&str; 6] = ["a", "bb", "count", "key-3", "", "a-much-longer-key-name-for-probing"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, ops)) = data.split_first() else { return };
    let cap = 1usize << (sel % 4);
    let map = CounterMap::create_anonymous(cap).unwrap();
    let cap = map.capacity();
    let mut model: HashMap<&str, i64> = HashMap::new();
    let mut used = 0usize;
    for w in ops.chunks(2) {
        let op = w[0];
        let arg = *w.get(1).unwrap_or(&0) as i8 as i64;
        let key = KEYS[(op >> 3) as usize % KEYS.len()];
        let present = model.contains_key(key);
        let full = !present && used == cap;
        match op & 7 {
            0 | 1 => match map.add(key, arg) {
                Ok(v) => {
                    used += !present as usize;
                    let m = model.entry(key).or_insert(0);
                    *m = m.wrapping_add(arg);
                    assert_eq!(v, *m);
                }
                Err(e) => assert!(full, "add {key:?}: {e}"),
            },
            2 => match map.set(key, arg) {
                Ok(()) => {
                    used += !present as usize;
                    model.insert(key, arg);
                }
                Err(e) => assert!(full, "set {key:?}: {e}"),
            },
            3 => {
                let current = if arg & 1 == 0 { model.get(key).copied().unwrap_or(0) } else { arg };
                match map.compare_exchange(key, current, arg * 3) {
                    Ok(r) => {
                        used += !present as usize;
                        let m = model.entry(key).or_insert(0);
                        if *m == current {
                            assert_eq!(r, Ok(current));
                            *m = arg * 3;
                        } else {
                            assert_eq!(r, Err(*m));
                        }
                    }
                    Err(e) => assert!(full, "compare_exchange {key:?}: {e}"),
                }
            }
            4 => assert_eq!(map.remove(key).unwrap(), model.remove(key)),
            5 => assert_eq!(map.get(key).unwrap(), model.get(key).copied()),
            6 => {
                let mut snap = map.snapshot().unwrap();
                snap.sort();
                let mut want: Vec<(String, i64)> =
                    model.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                want.sort();
                assert_eq!(snap, want);
                assert_eq!(map.len().unwrap(), model.len());
            }
            _ => match map.counter(key) {
                Ok(c) => {
                    used += !present as usize;
                    let m = model.entry(key).or_insert(0);
                    *m = m.wrapping_add(arg);
                    assert_eq!(c.add(arg), *m);
                }
                Err(e) => assert!(full, "counter {key:?}: {e}"),
            },
        }
    }
});
