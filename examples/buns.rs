//! The tutorial's steamed-bun shop: three chefs (steamed bun, bones,
//! swill) put dishes on one mpmc queue, two foodies take them off. No
//! `None` sentinels: the shop (the queue's creator) holds the queue open
//! until the chefs are done, then drops its handle; each foodie's loop
//! ends once the queue is drained.
//!
//! `cargo run --example buns` is the tutorial: this process is the shop,
//! the chefs and foodies are child processes that inherit the queue
//! (`pass_to` / `from_inherited`). The same shop as two programs, started
//! in either order:
//!
//! ```sh
//! cargo run --example buns -- eat       # a foodie: waits for the shop
//! cargo run --example buns -- kitchen   # the shop and three chef threads
//! ```

use ringway::mpmc::{Receiver, Sender};
use std::process::{Child, Command};
use std::time::Duration;

const DISHES: [&str; 3] = ["steamed bun", "bones", "swill"];
const PER_CHEF: u32 = 4;

fn chef(mut tx: Sender, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    for i in 0..PER_CHEF {
        std::thread::sleep(Duration::from_millis(5 * (id as u64 + 1)));
        let dish = format!("{} #{i} by chef {id}", DISHES[id]);
        println!("chef {id} made {}", dish);
        tx.send_timeout(dish.as_bytes(), Duration::from_secs(10))?;
    }
    Ok(()) // dropping `tx` is this chef's "done"
}

fn foodie(mut rx: Receiver, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut eaten = 0;
    for dish in rx.iter() {
        println!("    foodie {id} ate {}", String::from_utf8_lossy(&dish?));
        eaten += 1;
    }
    println!("    foodie {id} is full after {eaten} dishes (the shop closed)");
    Ok(())
}

/// The shop as one program: it creates the queue, runs three chefs as
/// threads (each its own sender), and closes when they are done.
fn kitchen(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let shop = Sender::create(name, 8, 64)?;
    let chefs: Vec<_> = (0..3)
        .map(|id| {
            let tx = shop.try_clone()?;
            Ok(std::thread::spawn(move || {
                chef(tx, id).map_err(|e| e.to_string())
            }))
        })
        .collect::<ringway::Result<_>>()?;
    for c in chefs {
        c.join().map_err(|_| "a chef panicked")??;
    }
    println!("all chefs are done; closing the shop (no sentinels)");
    Ok(()) // dropping `shop`: once the chefs are gone too, the stream ends
}

fn spawn(
    prefix: &[&str],
    shop: &Sender,
    role: &str,
    id: usize,
) -> Result<Child, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(prefix).args([role, &id.to_string()]);
    shop.pass_to(&mut cmd, "BUNS")?; // the child inherits the queue
    Ok(cmd.spawn()?)
}

#[allow(dead_code)] // `ringway demo buns` includes this file and calls `run`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&[], &args)
}

/// The shop, or (with `args`) one of its chefs or foodies, or one of the
/// two programs; `prefix` is what to pass this program to come back here.
pub(crate) fn run(prefix: &[&str], args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["chef", id] => return chef(Sender::from_inherited("BUNS")?, id.parse()?),
        ["foodie", id] => return foodie(Receiver::from_inherited("BUNS")?, id.parse()?),
        ["kitchen"] => return kitchen("buns"),
        ["kitchen", name] => return kitchen(name),
        ["eat"] => return foodie(Receiver::open_wait("buns")?, 0),
        ["eat", name] => return foodie(Receiver::open_wait(name)?, 0),
        [] => {}
        _ => return Err(format!("unknown arguments {args:?}").into()),
    }
    // The shop: an anonymous queue of 8 slots of 64 bytes, handed to the
    // children. Its handle holds the queue open until every chef is done,
    // however the processes are scheduled.
    let shop = Sender::create_anonymous(8, 64)?;
    let foodies: Vec<Child> = (0..2)
        .map(|i| spawn(prefix, &shop, "foodie", i))
        .collect::<Result<_, _>>()?;
    let chefs: Vec<Child> = (0..3)
        .map(|i| spawn(prefix, &shop, "chef", i))
        .collect::<Result<_, _>>()?;
    let mut ok = true;
    for mut c in chefs {
        ok &= c.wait()?.success();
    }
    println!("all chefs are done; closing the shop (no sentinels)");
    drop(shop);
    for mut f in foodies {
        ok &= f.wait()?.success();
    }
    if !ok {
        return Err("a chef or a foodie failed".into());
    }
    Ok(())
}
