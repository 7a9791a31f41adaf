//! The tutorial's counter: 100 processes each take one from `count` = 100,
//! and the result is `{"count": 0}` — once with lock-free `add(-1)`, once
//! inside the map's lock (the tutorial's `with lock:`). No server process.
//!
//! `cargo run --example counter`
//!
//! A worker as its own program (start as many as you like, in any order;
//! the first one creates the map): `cargo run --example counter -- worker
//! stats 100` takes 100 from `count`, 1 at a time, under the lock.

use ringway::counters::CounterMap;
use std::process::Command;

#[allow(dead_code)] // `ringway demo counter` includes this file and calls `run`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&[], &args)
}

/// The counting, or (with `args`) one counting process; `prefix` is what
/// to pass this program to come back here.
pub(crate) fn run(prefix: &[&str], args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if let [mode, name, times] = args {
        if mode != "worker" {
            return Err(format!("unknown mode {mode:?}").into());
        }
        let map = CounterMap::open_or_create(name, 16)?;
        for _ in 0..times.parse::<u32>()? {
            let g = map.lock()?;
            let v = g.get("count")?.unwrap_or(0);
            g.set("count", v - 1)?;
        }
        println!("count is now {}", map.get("count")?.unwrap_or(0));
        return Ok(());
    }
    if let [mode, name] = args {
        let map = CounterMap::open(name)?;
        if mode == "locked" {
            let g = map.lock()?;
            if g.owner_died() {
                eprintln!("the last holder died holding the lock; carrying on");
            }
            let v = g.get("count")?.unwrap_or(0);
            g.set("count", v - 1)?;
        } else {
            map.add("count", -1)?;
        }
        return Ok(());
    }
    for mode in ["lock-free", "locked"] {
        let name = format!("ringway-counter-{}", std::process::id());
        let map = CounterMap::create(&name, 16)?;
        map.set("count", 100)?;
        let exe = std::env::current_exe()?;
        let kids: Vec<_> = (0..100)
            .map(|_| Command::new(&exe).args(prefix).args([mode, &name]).spawn())
            .collect::<Result<_, _>>()?;
        for mut k in kids {
            k.wait()?;
        }
        let snap = map.snapshot()?;
        let body: Vec<String> = snap.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
        println!("{mode:>9}: {{{}}}", body.join(", "));
    }
    Ok(())
}
