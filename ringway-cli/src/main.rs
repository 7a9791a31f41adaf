//! The ringway command-line tool: the side-by-side benchmark, the tutorial
//! demos, and the operator's commands over `/dev/shm` (ls, inspect, rm,
//! gc). The hidden `__bench-child` role is what `bench` spawns.

mod admin;
mod bench;
mod chaos;
mod check;
mod child;
mod cleanup;
mod floor;
#[cfg(feature = "peers")]
mod peers;
mod report;
mod soak;

#[path = "../../examples/buns.rs"]
mod buns;
#[path = "../../examples/counter.rs"]
mod counter;
#[path = "../../examples/pipe.rs"]
mod pipe_demo;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// Exit codes scripts can rely on.
pub(crate) mod exit {
    /// Something failed (an I/O error, a failed benchmark figure).
    pub(crate) const FAILED: u8 = 1;
    // 2: bad arguments (clap's own code).
    /// The named segment does not exist.
    pub(crate) const NOT_FOUND: u8 = 3;
    /// Refused: a live process holds the segment (`rm` without `--force`).
    pub(crate) const IN_USE: u8 = 4;
    /// The file is not a ringway segment.
    pub(crate) const NOT_RINGWAY: u8 = 5;
    /// `bench --check`: a BENCH.md target was missed (or measured only in
    /// a slow CPU placement).
    pub(crate) const TARGET_MISSED: u8 = 6;
}

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failure, 2 bad arguments, 3 no such segment,
4 segment in use by a live process, 5 not a ringway segment,
6 a BENCH.md target missed (bench --check).";

/// Lock-free shared-memory rings between processes: benchmark, demos, and
/// the segments in /dev/shm.
#[derive(Parser, Debug)]
#[command(name = "ringway", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// ringway side by side with the transports users would pick instead
    /// (pipes, socketpairs, crossbeam in threads, Python multiprocessing, a
    /// bare spinning ring), in real processes, every message checked.
    ///
    /// Quick by default (about 30 s on 2 cores); --full runs BENCH.md's
    /// sizes (10M messages, 200k round trips).
    Bench(BenchArgs),
    /// Run one of the tutorial's programs: buns (3 chefs, 2 foodies, one
    /// mpmc queue), pipe (simplex and duplex Pipe), counter (100 processes
    /// decrement a shared counter).
    Demo {
        /// Which program.
        which: Demo,
        /// (internal: the demo's own worker processes)
        #[arg(hide = true, trailing_var_arg = true)]
        rest: Vec<String>,
    },
    /// Producers and consumers on one mpmc queue, SIGKILLed at random and
    /// replaced, for a given time; then every message is accounted for:
    /// duplicates must be 0, and the lost ones at most one per kill (the
    /// one in flight). Exit 1 if the books do not balance.
    Soak {
        /// How long to run.
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// Producer processes.
        #[arg(long, default_value_t = 3)]
        producers: usize,
        /// Consumer processes.
        #[arg(long, default_value_t = 2)]
        consumers: usize,
        /// Mean time between kills, in milliseconds.
        #[arg(long, default_value_t = 200)]
        kill_every_ms: u64,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Round after round, a fresh segment of each kind with real processes
    /// streaming through it; at a random moment hostile words are written
    /// into the live segment (corrupt) or one process is SIGKILLed (kill).
    /// Every round must end within its deadline, without a panic or a
    /// stray signal, and leave nothing in /dev/shm that gc cannot account
    /// for. Exit 1 if one does not.
    Chaos {
        /// Rounds per kind and action (in which the action landed).
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// What to do to a live segment (comma-separated): corrupt, kill.
        #[arg(long, value_delimiter = ',', default_value = "corrupt,kill", value_parser = ["corrupt", "kill"])]
        actions: Vec<String>,
        /// Which kinds (comma-separated): spsc, mpmc, pipe, counters.
        #[arg(long, value_delimiter = ',', default_value = "spsc,mpmc,pipe,counters", value_parser = ["spsc", "mpmc", "pipe", "counters"])]
        kinds: Vec<String>,
        /// A round still running after this many seconds is a hang.
        #[arg(long, default_value_t = 20)]
        deadline_secs: u64,
        /// Seed of the random choices (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// One line per round on stderr.
        #[arg(long, short)]
        verbose: bool,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the ringway segments in /dev/shm: kind, size, fill, peers.
    Ls {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one segment: header, positions, waiters, peers,
    /// recovery counters, footprint.
    Inspect {
        /// The segment's name (as given to `create`, without `/`).
        name: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove segments by name. Refused while a live process holds one
    /// (exit 4) unless --force; processes that have it mapped keep it.
    Rm {
        /// The segments' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even if a live process holds it.
        #[arg(long)]
        force: bool,
    },
    /// Find the segments no live process holds (their processes died) and
    /// doorbells whose segment is gone. Lists them; --yes removes them.
    Gc {
        /// Remove what was found (default: only list it).
        #[arg(long, short)]
        yes: bool,
        /// Only segments whose names start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// BENCH.md's sizes: 10M messages per T row, 200k round trips per L row.
    #[arg(long)]
    full: bool,
    /// Run everything N times; report medians and spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Only these workloads (comma-separated): T64, T8, L, M, C.
    #[arg(long, value_delimiter = ',', value_parser = ["T64", "T8", "L", "M", "C"], ignore_case = true)]
    only: Option<Vec<String>>,
    /// Only rows whose transport or label contains one of these
    /// (comma-separated), e.g. ringway,pipe,python.
    #[arg(long, value_delimiter = ',')]
    rows: Option<Vec<String>>,
    /// Messages per T row (overrides --full's and the quick default).
    #[arg(long, value_name = "N")]
    messages: Option<u64>,
    /// Round trips per L row.
    #[arg(long, value_name = "N")]
    round_trips: Option<u64>,
    /// Messages each ring and channel holds (default 1024). Given, it
    /// also sizes the pipes' and sockets' kernel buffers to N messages
    /// (by default they keep the kernel's); ipc-channel has no capacity
    /// to set.
    #[arg(long, value_name = "N")]
    slots: Option<usize>,
    /// Do not pin producer/consumer to CPUs 0 and 1.
    #[arg(long)]
    no_pin: bool,
    /// How ringway's T rows wait: adaptive (spin, yield, then sleep on a
    /// futex) or spin (never sleep).
    #[arg(long, value_enum, default_value_t = Mode::Adaptive)]
    mode: Mode,
    /// The T row the "vs base" columns divide by (a substring of its label).
    #[arg(long, value_name = "ROW")]
    baseline: Option<String>,
    /// Print JSON (every figure with median, min, max) instead of tables.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown (tables and a line saying when, how and where).
    #[arg(long)]
    markdown: bool,
    /// Also write an SVG chart (throughput bars, latency percentiles) to DIR.
    #[arg(long, value_name = "DIR")]
    plot: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// After the tables, check BENCH.md's targets (ratios of this run's
    /// figures) and exit 6 if any is missed or was measured only while the
    /// CPUs were placed far apart. The gate for hot-path changes; run it by
    /// hand (these machines are too noisy for a CI timing gate).
    #[arg(long, conflicts_with = "json")]
    check: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Adaptive,
    Spin,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Demo {
    Buns,
    Pipe,
    Counter,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("__bench-child") => {
            child::main(&argv[2..]);
            return ExitCode::SUCCESS;
        }
        Some("__soak-child") => return soak::child(&argv[2..]),
        Some("__chaos-child") => return chaos::child(&argv[2..]),
        _ => {}
    }
    let cli = Cli::parse();
    match cli.command {
        Cmd::Bench(b) => {
            let opts = bench::Options {
                full: b.full,
                pin: !b.no_pin,
                only: b.only,
                rows: b.rows,
                repeat: b.repeat as usize,
                json: b.json,
                markdown: b.markdown,
                plot: b.plot,
                messages: b.messages,
                round_trips: b.round_trips,
                slots: b.slots,
                spin: b.mode == Mode::Spin,
                baseline: b.baseline,
                quiet: b.quiet,
                check: b.check,
            };
            let res = bench::run(&opts);
            cleanup::wait_if_interrupted();
            match res {
                Ok(0) => ExitCode::SUCCESS,
                Ok(missed) => {
                    eprintln!("ringway bench --check: {missed} target(s) not met");
                    ExitCode::from(exit::TARGET_MISSED)
                }
                Err(e) => {
                    eprintln!("ringway bench: {e}");
                    ExitCode::from(exit::FAILED)
                }
            }
        }
        Cmd::Demo { which, rest } => {
            let res = match which {
                Demo::Buns => buns::run(&["demo", "buns"], &rest),
                Demo::Pipe => pipe_demo::run(&["demo", "pipe"], &rest),
                Demo::Counter => counter::run(&["demo", "counter"], &rest),
            };
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ringway demo: {e}");
                    ExitCode::from(exit::FAILED)
                }
            }
        }
        Cmd::Soak {
            secs,
            producers,
            consumers,
            kill_every_ms,
            json,
        } => soak::run(&soak::Options {
            secs,
            producers: producers.max(1),
            consumers: consumers.max(1),
            kill_every_ms,
            json,
        }),
        Cmd::Chaos {
            rounds,
            actions,
            kinds,
            deadline_secs,
            seed,
            verbose,
            json,
        } => {
            let mut actions: Vec<chaos::Action> = actions
                .iter()
                .map(|a| match a.as_str() {
                    "corrupt" => chaos::Action::Corrupt,
                    _ => chaos::Action::Kill,
                })
                .collect();
            actions.sort();
            actions.dedup();
            let mut kinds: Vec<chaos::Kind> =
                kinds.iter().filter_map(|k| chaos::Kind::parse(k)).collect();
            kinds.sort();
            kinds.dedup();
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
            chaos::run(&chaos::Options {
                actions,
                kinds,
                rounds,
                deadline: std::time::Duration::from_secs(deadline_secs.max(1)),
                seed,
                json,
                verbose,
            })
        }
        Cmd::Ls { json } => admin::ls(json),
        Cmd::Inspect { name, json } => admin::inspect(&name, json),
        Cmd::Rm { names, force } => admin::rm(&names, force),
        Cmd::Gc { yes, prefix, json } => admin::gc(yes, &prefix, json),
    }
}
