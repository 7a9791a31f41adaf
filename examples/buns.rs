//! The tutorial's steamed-bun shop, as separate processes: three chefs
//! (steamed bun, bones, swill) put dishes on one mpmc queue, two foodies
//! take them off. No `None` sentinels: when the chefs are done, the main
//! process drops its own sender, and each foodie's loop simply ends once
//! the queue is drained.
//!
//! `cargo run --example buns`

use ringway::mpmc::{Receiver, Sender};
use std::process::{Child, Command};
use std::time::Duration;

const DISHES: [&str; 3] = ["steamed bun", "bones", "swill"];
const PER_CHEF: u32 = 4;

fn chef(name: &str, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Sender::open(name)?;
    for i in 0..PER_CHEF {
        std::thread::sleep(Duration::from_millis(5 * (id as u64 + 1)));
        let dish = format!("{} #{i} by chef {id}", DISHES[id]);
        println!("chef {id} made {}", dish);
        tx.send_timeout(dish.as_bytes(), Duration::from_secs(10))?;
    }
    Ok(()) // dropping `tx` is this chef's "done"
}

fn foodie(name: &str, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Receiver::open(name)?;
    let mut eaten = 0;
    for dish in rx.iter() {
        println!("    foodie {id} ate {}", String::from_utf8_lossy(&dish?));
        eaten += 1;
    }
    println!("    foodie {id} is full after {eaten} dishes (the shop closed)");
    Ok(())
}

fn spawn(prefix: &[&str], role: &str, name: &str, id: usize) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(prefix)
        .args([role, name, &id.to_string()])
        .spawn()
}

#[allow(dead_code)] // `ringway demo buns` includes this file and calls `run`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&[], &args)
}

/// The shop, or (with `args`) one of its chefs or foodies; `prefix` is
/// what to pass this program to come back here.
pub(crate) fn run(prefix: &[&str], args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if let [role, name, id] = args {
        let id: usize = id.parse()?;
        return if role == "chef" {
            chef(name, id)
        } else {
            foodie(name, id)
        };
    }
    let name = format!("ringway-buns-{}", std::process::id());
    // The shop: 8 slots of 64 bytes. Holding a sender here keeps the shop
    // open until every chef is done, however the processes are scheduled.
    let shop = Sender::create(&name, 8, 64)?;
    let foodies: Vec<Child> = (0..2)
        .map(|i| spawn(prefix, "foodie", &name, i))
        .collect::<Result<_, _>>()?;
    let chefs: Vec<Child> = (0..3)
        .map(|i| spawn(prefix, "chef", &name, i))
        .collect::<Result<_, _>>()?;
    for mut c in chefs {
        c.wait()?;
    }
    println!("all chefs are done; closing the shop (no sentinels)");
    drop(shop);
    for mut f in foodies {
        f.wait()?;
    }
    Ok(())
}
