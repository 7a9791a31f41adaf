//! The tutorial's third Queue: a boss puts tasks on one queue, a pool of
//! workers takes them, and each answer comes back on a second queue. Both
//! queues are mpmc, so any number of workers can join, at any time while
//! the boss's task queue is open. No `None` per worker: the task stream
//! ends when the boss (its creator) has dropped its handle and the queue is
//! drained, and the boss stops after the one answer per task it expects.
//!
//! As two programs, started in either order (start as many workers as you
//! like):
//!
//! ```sh
//! cargo run --example tasks -- worker   # waits for the boss's queues
//! cargo run --example tasks -- boss     # 20 tasks, prints the 20 answers
//! ```
//!
//! With no argument, the boss runs here and three workers run as child
//! processes that inherit both queues (`pass_to` / `from_inherited`).

use ringway::mpmc::{Receiver, Sender};
use std::process::{Child, Command};
use std::time::Duration;

const TASKS: u64 = 20;

/// One task: a number to square. One answer: (task, square, worker pid).
type Answer = (u64, u64, u32);

fn worker(mut tasks: Receiver, mut answers: Sender) -> Result<(), Box<dyn std::error::Error>> {
    let mut done = 0;
    loop {
        let n: u64 = match tasks.recv_value() {
            Ok(n) => n,
            Err(e) if e.is_disconnected() => break, // the boss is done and the queue drained
            Err(e) => return Err(e.into()),
        };
        std::thread::sleep(Duration::from_millis(1)); // the "work"
        let answer: Answer = (n, n * n, std::process::id());
        answers.send_value(&answer)?;
        done += 1;
    }
    println!("worker {} did {done} tasks", std::process::id());
    Ok(())
}

/// The boss with its two queues: sends every task, lets go of the task
/// queue (the workers' loops end once it is drained) and collects one
/// answer per task.
fn boss(mut tasks: Sender, mut answers: Receiver) -> Result<(), Box<dyn std::error::Error>> {
    for n in 0..TASKS {
        tasks.send_value(&n)?;
    }
    drop(tasks); // no more tasks: no sentinel per worker
    let mut sum = 0;
    for _ in 0..TASKS {
        let (n, square, pid): Answer = answers.recv_value_timeout(Duration::from_secs(30))?;
        println!("{n}^2 = {square} (worker {pid})");
        sum += square;
    }
    let want: u64 = (0..TASKS).map(|n| n * n).sum();
    if sum != want {
        return Err(format!("the answers add up to {sum}, not {want}").into());
    }
    println!("all {TASKS} answers are in");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (role, name) = match args[..] {
        [] => (None, "tasks"),
        [role] => (Some(role), "tasks"),
        [role, name] => (Some(role), name),
        _ => return Err(format!("unknown arguments {args:?}").into()),
    };
    let answers_name = format!("{name}-answers");
    match role {
        // The answer queue first, on both sides: a worker holds it before
        // it can take a task, so the boss never misses a worker's answer.
        Some("boss") => {
            let answers = Receiver::create(&answers_name, 16, 64)?;
            let tasks = Sender::create(name, 16, 64)?;
            boss(tasks, answers)
        }
        Some("worker") => {
            let answers = Sender::open_wait(&answers_name)?;
            let tasks = Receiver::open_wait(name)?;
            worker(tasks, answers)
        }
        Some("child") => worker(
            Receiver::from_inherited("TASKS")?,
            Sender::from_inherited("ANSWERS")?,
        ),
        Some(other) => Err(format!("unknown role {other:?}: boss or worker").into()),
        None => {
            // Anonymous queues, handed to three child processes.
            let answers = Receiver::create_anonymous(16, 64)?;
            let tasks = Sender::create_anonymous(16, 64)?;
            let workers: Vec<Child> = (0..3)
                .map(|_| {
                    let mut cmd = Command::new(std::env::current_exe()?);
                    cmd.arg("child");
                    tasks.pass_to(&mut cmd, "TASKS")?;
                    answers.pass_to(&mut cmd, "ANSWERS")?;
                    Ok(cmd.spawn()?)
                })
                .collect::<Result<_, Box<dyn std::error::Error>>>()?;
            boss(tasks, answers)?;
            for mut w in workers {
                if !w.wait()?.success() {
                    return Err("a worker failed".into());
                }
            }
            Ok(())
        }
    }
}
