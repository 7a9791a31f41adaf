//! The tutorial's duplex Pipe as two programs, started in either order:
//!
//! ```sh
//! cargo run --example rpc -- server     # answers until the client goes
//! cargo run --example rpc -- client     # asks, prints the answers
//! ```
//!
//! Both call `Pipe::open_or_create`: the first creates the pipe (end 1),
//! the second takes end 2. With no argument, both run here as two
//! processes.

use ringway::pipe::Pipe;
use ringway::RecvError;
use std::process::Command;

fn server(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Pipe::open_or_create(name, true, 1 << 16)?;
    loop {
        let (op, x): (String, i64) = match p.recv() {
            Ok(req) => req,
            Err(RecvError::Disconnected) => return Ok(()), // the client is gone
            Err(e) => return Err(e.into()),
        };
        let answer = if op == "square" { x * x } else { x };
        p.send_bytes(&answer.to_le_bytes(), 0, None)?; // raw bytes back
    }
}

fn client(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Pipe::open_or_create(name, true, 1 << 16)?;
    for x in [3i64, 12, 100] {
        p.send(&("square", x))?; // a serde value (postcard)
        let mut buf = [0u8; 4]; // too short: the answer stays in the pipe
        let needed = match p.recv_bytes_into(&mut buf, 0) {
            Err(RecvError::BufferTooShort { needed }) => needed,
            other => return Err(format!("expected BufferTooShort, got {other:?}").into()),
        };
        let mut buf = vec![0u8; needed];
        p.recv_bytes_into(&mut buf, 0)?;
        let y = i64::from_le_bytes(buf.try_into().map_err(|_| "an 8-byte answer")?);
        println!("{x} squared is {y}");
        if y != x * x {
            return Err(format!("wrong answer {y} for {x}").into());
        }
    }
    Ok(()) // dropping the pipe: the server's recv gives Disconnected
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.get(1).map_or("rpc", String::as_str);
    match args.first().map(String::as_str) {
        Some("server") => server(name),
        Some("client") => client(name),
        Some(other) => Err(format!("unknown role {other:?}: server or client").into()),
        None => {
            let name = format!("ringway-rpc-{}", std::process::id());
            let exe = std::env::current_exe()?;
            let mut s = Command::new(&exe).args(["server", &name]).spawn()?;
            let c = Command::new(&exe).args(["client", &name]).status()?;
            let s = s.wait()?;
            if !(c.success() && s.success()) {
                return Err(format!("client {c}, server {s}").into());
            }
            Ok(())
        }
    }
}
