//! The tutorial's pipes, done safely, with separate processes:
//!
//! 1. A producer sends 0..9 to one consumer over a simplex pipe; the end of
//!    the stream is the producer closing its end (no sentinel). For several
//!    consumers, the safe pattern is an mpmc queue (`examples/buns.rs`):
//!    a second process cannot take an end of a pipe that is in use.
//! 2. A duplex request/response pair.
//!
//! `cargo run --example pipe`

use ringway::pipe::Pipe;
use ringway::RecvError;
use serde::{Deserialize, Serialize};
use std::process::Command;

#[derive(Serialize, Deserialize, Debug)]
enum Request {
    Square(i64),
    Shout(String),
}

#[derive(Serialize, Deserialize, Debug)]
enum Response {
    Squared(i64),
    Shouted(String),
}

fn child(role: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut end = Pipe::open(name)?;
    match role {
        "producer" => {
            for i in 0..10u32 {
                end.send(&i)?;
            }
            end.close(); // the consumer's next recv: Disconnected
        }
        "server" => loop {
            let req: Request = match end.recv() {
                Ok(r) => r,
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(e.into()),
            };
            let resp = match req {
                Request::Square(x) => Response::Squared(x * x),
                Request::Shout(s) => Response::Shouted(s.to_uppercase()),
            };
            end.send(&resp)?;
        },
        _ => unreachable!(),
    }
    Ok(())
}

#[allow(dead_code)] // `ringway demo pipe` includes this file and calls `run`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&[], &args)
}

/// Both demos, or (with `args`) the producer or the server; `prefix` is
/// what to pass this program to come back here.
pub(crate) fn run(prefix: &[&str], args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if let [role, name] = args {
        return child(role, name);
    }
    let exe = std::env::current_exe()?;

    // 1. Simplex: this process is the consumer (end 1), the child produces.
    let name = format!("ringway-pipe-{}", std::process::id());
    let mut rx = Pipe::create(&name, false, 4096)?;
    let mut p = Command::new(&exe)
        .args(prefix)
        .args(["producer", &name])
        .spawn()?;
    loop {
        match rx.recv::<u32>() {
            Ok(i) => println!("consumer got {i}"),
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("producer closed its end: done, no sentinel");
    p.wait()?;
    drop(rx);

    // 2. Duplex: requests and responses over one pipe.
    let name = format!("ringway-rpc-{}", std::process::id());
    let mut client = Pipe::create(&name, true, 4096)?;
    let mut s = Command::new(&exe)
        .args(prefix)
        .args(["server", &name])
        .spawn()?;
    for req in [Request::Square(12), Request::Shout("steamed buns".into())] {
        client.send(&req)?;
        let resp: Response = client.recv()?;
        println!("{req:?} -> {resp:?}");
    }
    drop(client); // the server sees Disconnected and exits
    s.wait()?;
    Ok(())
}
