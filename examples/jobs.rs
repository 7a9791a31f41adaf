//! The tutorial's first Queue (one producer, one consumer, a `None` at
//! the end) as two programs you start in either order, in two terminals:
//!
//! ```sh
//! cargo run --example jobs -- consume   # waits for the ring to appear
//! cargo run --example jobs -- produce   # creates it, sends, exits
//! ```
//!
//! No sentinel: the consumer's loop ends when the producer is gone and the
//! ring is drained. If the producer finishes before any consumer comes,
//! the ring (and its messages) stays until one does. Ctrl-C either one and
//! run them again: the producer's `create` replaces a ring that nobody
//! holds any more. With no argument, both run here as two processes.

use ringway::spsc::{Consumer, Producer};
use std::process::Command;

fn produce(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Producer::create(name, 1 << 16)?; // /dev/shm/<name>, mode 0600
    for i in 0..10 {
        tx.send(format!("steamed bun #{i}").as_bytes())?;
    }
    Ok(()) // dropping `tx` ends the stream
}

fn consume(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Consumer::open_wait(name)?;
    let mut n = 0;
    for msg in rx.iter() {
        println!("ate {}", String::from_utf8_lossy(&msg?));
        n += 1;
    }
    println!("done: {n} buns");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.get(1).map_or("jobs", String::as_str);
    match args.first().map(String::as_str) {
        Some("produce") => produce(name),
        Some("consume") => consume(name),
        Some(other) => Err(format!("unknown role {other:?}: produce or consume").into()),
        None => {
            let name = format!("ringway-jobs-{}", std::process::id());
            let exe = std::env::current_exe()?;
            let mut consumer = Command::new(&exe).args(["consume", &name]).spawn()?;
            let producer = Command::new(&exe).args(["produce", &name]).status()?;
            let consumer = consumer.wait()?;
            if !(producer.success() && consumer.success()) {
                return Err(format!("producer {producer}, consumer {consumer}").into());
            }
            Ok(())
        }
    }
}
