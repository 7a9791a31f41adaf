//! A producer process and a consumer process joined by a named spsc ring.
//!
//! `cargo run --example spsc_pipeline` runs the consumer here and spawns
//! itself as the producer; the stream ends when the producer drops its end
//! (no sentinel), and the consumer's loop simply finishes.

use ringway::spsc::{Consumer, Producer};
use std::process::Command;
use std::time::Duration;

fn producer(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Producer::open(name)?;
    for dish in ["steamed bun", "bones", "swill"] {
        for i in 0..3 {
            let msg = format!("{dish} #{i} from pid {}", std::process::id());
            tx.send_timeout(msg.as_bytes(), Duration::from_secs(10))?;
        }
    }
    Ok(()) // dropping `tx` ends the stream
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(name) = std::env::args().nth(1) {
        return producer(&name);
    }
    let name = format!("ringway-example-{}", std::process::id());
    // The consumer creates the ring (and removes its name when dropped).
    let mut rx = Consumer::create(&name, 4096)?;
    let mut child = Command::new(std::env::current_exe()?).arg(&name).spawn()?;
    for msg in rx.iter() {
        println!("ate {}", String::from_utf8_lossy(&msg?));
    }
    println!("producer gone, stream ended");
    child.wait()?;
    Ok(())
}
