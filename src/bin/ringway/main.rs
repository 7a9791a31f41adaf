//! The ringway command-line tool: `ringway bench` (the side-by-side
//! benchmark), and the hidden `__bench-child` role it spawns.

mod bench;
mod child;
mod floor;

const USAGE: &str = "\
usage: ringway bench [--full] [--no-pin] [--only T64,T8,L] [--rows ringway,pipe,...]

  bench   ringway side by side with pipes, socketpairs and a bare spinning
          shared-memory ring, in real processes, with every message checked.
          Quick by default (well under two minutes); --full runs BENCH.md's
          sizes (10M messages, 200k round trips).
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__bench-child") => child::main(&args[1..]),
        Some("bench") => {
            let mut opts = bench::Options {
                pin: true,
                ..Default::default()
            };
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--full" => opts.full = true,
                    "--no-pin" => opts.pin = false,
                    "--only" => {
                        let Some(v) = it.next() else { usage_exit() };
                        opts.only = Some(v.split(',').map(str::to_owned).collect());
                    }
                    "--rows" => {
                        let Some(v) = it.next() else { usage_exit() };
                        opts.rows = Some(v.split(',').map(str::to_owned).collect());
                    }
                    "-h" | "--help" => {
                        print!("{USAGE}");
                        return;
                    }
                    _ => usage_exit(),
                }
            }
            bench::run(&opts);
        }
        Some("-h" | "--help") | None => print!("{USAGE}"),
        Some(_) => usage_exit(),
    }
}

fn usage_exit() -> ! {
    eprint!("{USAGE}");
    std::process::exit(2)
}
