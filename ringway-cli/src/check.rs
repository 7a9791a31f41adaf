//! `ringway bench --check`: BENCH.md's targets, each a ratio of two figures
//! of the same run, checked against the sheet.
//!
//! A target whose figures were not measured (a `--only`/`--rows` filter, no
//! Python, no `peers` feature) is listed as such and does not count. A
//! figure taken only while the two CPUs were far apart (see
//! [`report::SLOW`]) flatters the ratio: such a target is "slow placement,
//! rerun" and counts as not met.

use crate::report::{self, Sheet};

/// Which way a target goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// The figure must be at least `k` times the base.
    AtLeast,
    /// The figure must be at most `k` times the base.
    AtMost,
}

/// A figure: (table, a part of the row's label, column).
type Fig = (&'static str, &'static str, &'static str);

/// One target of BENCH.md.
struct Target {
    what: &'static str,
    fig: Fig,
    op: Op,
    k: f64,
    base: Fig,
}

const fn at_least(what: &'static str, fig: Fig, k: f64, base: Fig) -> Target {
    Target {
        what,
        fig,
        op: Op::AtLeast,
        k,
        base,
    }
}

const fn at_most(what: &'static str, fig: Fig, k: f64, base: Fig) -> Target {
    Target {
        what,
        fig,
        op: Op::AtMost,
        k,
        base,
    }
}

const SPSC: &str = "ringway spsc, per message";
const BATCHED: &str = "ringway spsc, batched";
const SPIN: &str = "ringway spsc, spin mode";
const FLOOR: &str = "floor: minimal spinning shm ring";
const LINE: &str = "floor: one cache line ping-pong";
const SOCK: &str = "socketpair, 64 KiB batches";

/// BENCH.md's "Targets" table, as far as `ringway bench` measures it (the
/// Python package's and the bridge's targets have benches of their own).
const TARGETS: &[Target] = &[
    at_least(
        "T64 spsc per message vs floor",
        ("T", SPSC, "T64"),
        0.9,
        ("T", FLOOR, "T64"),
    ),
    at_least(
        "T64 spsc per message vs ipmpsc",
        ("T", SPSC, "T64"),
        10.0,
        ("T", "ipmpsc", "T64"),
    ),
    at_least(
        "T64 spsc per message vs mp.Queue",
        ("T", SPSC, "T64"),
        250.0,
        ("T", "Python mp.Queue", "T64"),
    ),
    at_least(
        "T64 spsc batched vs socketpair 64 KiB",
        ("T", BATCHED, "T64"),
        1.0,
        ("T", SOCK, "T64"),
    ),
    at_least(
        "T8 spsc batched vs socketpair 64 KiB",
        ("T", BATCHED, "T8"),
        1.0,
        ("T", SOCK, "T8"),
    ),
    at_most(
        "L spin p50 vs cache line p50",
        ("T", SPIN, "p50"),
        1.5,
        ("T", LINE, "p50"),
    ),
    at_most(
        "L spin p99.9 vs cache line p99.9",
        ("T", SPIN, "p99.9"),
        3.0,
        ("T", LINE, "p99.9"),
    ),
    at_most(
        "L adaptive p50 vs spin p50",
        ("T", SPSC, "p50"),
        1.2,
        ("T", SPIN, "p50"),
    ),
    at_least(
        "M mpmc 3->2 vs ArrayQueue [threads]",
        ("M", "ringway mpmc [procs]", "rate"),
        1.0,
        ("M", "crossbeam ArrayQueue", "rate"),
    ),
    at_least(
        "M mpmc 3->2 vs shared pipe",
        ("M", "ringway mpmc [procs]", "rate"),
        5.0,
        ("M", "pipe shared", "rate"),
    ),
    at_least(
        "mpmc 1->1 T64 vs floor",
        ("T", "ringway mpmc, 1 -> 1", "T64"),
        0.6,
        ("T", FLOOR, "T64"),
    ),
    at_least(
        "C counter handle add vs bare fetch_add",
        ("C", "Counter handle add", "rate"),
        0.8,
        ("C", "bare fetch_add", "rate"),
    ),
    at_least(
        "C counter handle add vs Manager().dict()",
        ("C", "Counter handle add", "rate"),
        1000.0,
        ("C", "Python Manager", "rate"),
    ),
    at_least(
        "C under the lock vs bare robust mutex",
        ("C", "under its lock", "rate"),
        0.5,
        ("C", "bare robust", "rate"),
    ),
    at_least(
        "C under the lock vs Manager().dict()",
        ("C", "under its lock", "rate"),
        100.0,
        ("C", "Python Manager", "rate"),
    ),
    at_least(
        "Pipe send_bytes vs Python Pipe.send_bytes",
        ("T", "ringway Pipe, send_bytes", "T64"),
        50.0,
        ("T", "Python Pipe.send_bytes", "T64"),
    ),
    at_most(
        "Pipe L p50 vs spsc L p50",
        ("T", "ringway Pipe, send_bytes", "p50"),
        1.2,
        ("T", SPSC, "p50"),
    ),
];

/// The idle receiver's share of a core must stay under this (percent).
const IDLE_PCT: f64 = 1.0;

/// How one target came out.
#[derive(Debug, PartialEq)]
enum Outcome {
    Met,
    Missed,
    /// Met or missed only with figures from a slow placement.
    Slow,
    NotMeasured,
}

/// A figure's median and whether it was taken only in a slow placement.
fn figure(sheet: &Sheet, (table, part, col): Fig) -> Option<(f64, bool)> {
    let m = sheet
        .0
        .iter()
        .find(|m| m.table == table && m.col == col && m.label.contains(part))?;
    m.val.as_ref().ok().map(|s| (s.med, m.slow))
}

fn judge(ratio: f64, op: Op, k: f64, slow: bool) -> Outcome {
    let met = match op {
        Op::AtLeast => ratio >= k,
        Op::AtMost => ratio <= k,
    };
    match (met, slow) {
        (_, true) => Outcome::Slow,
        (true, false) => Outcome::Met,
        (false, false) => Outcome::Missed,
    }
}

/// The check's table, and how many targets were not met (missed, or only
/// measured in a slow placement).
pub(crate) fn check(sheet: &Sheet) -> (String, usize) {
    let mut rows = Vec::new();
    let mut bad = 0;
    let mut add = |what: &str, want: String, got: String, o: Outcome| {
        let verdict = match o {
            Outcome::Met => "met",
            Outcome::Missed => "MISSED",
            Outcome::Slow => "slow placement only: rerun",
            Outcome::NotMeasured => "not measured",
        };
        if matches!(o, Outcome::Missed | Outcome::Slow) {
            bad += 1;
        }
        rows.push(vec![what.to_owned(), want, got, verdict.to_owned()]);
    };
    for t in TARGETS {
        let want = format!(
            "{} {:.1}x",
            if t.op == Op::AtLeast { ">=" } else { "<=" },
            t.k
        );
        match (figure(sheet, t.fig), figure(sheet, t.base)) {
            (Some((v, s1)), Some((b, s2))) if b > 0.0 => {
                let ratio = v / b;
                add(
                    t.what,
                    want,
                    format!("{ratio:.2}x"),
                    judge(ratio, t.op, t.k, s1 || s2),
                );
            }
            _ => add(t.what, want, "-".into(), Outcome::NotMeasured),
        }
    }
    match figure(sheet, ("idle", "", "pct")) {
        Some((pct, _)) => {
            let o = if pct < IDLE_PCT {
                Outcome::Met
            } else {
                Outcome::Missed
            };
            add(
                "idle blocked receiver, % of a core",
                format!("< {IDLE_PCT:.0} %"),
                format!("{pct:.3} %"),
                o,
            );
        }
        None => add(
            "idle blocked receiver, % of a core",
            format!("< {IDLE_PCT:.0} %"),
            "-".into(),
            Outcome::NotMeasured,
        ),
    }
    let table = report::table(
        &["target (BENCH.md)", "wanted", "measured", "verdict"],
        &rows,
    );
    (table, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{merge, Cell};

    fn cell(table: &'static str, label: &str, col: &'static str, v: f64) -> Cell {
        Cell {
            table,
            label: label.into(),
            col,
            val: Ok(v),
        }
    }

    #[test]
    fn a_missed_target_counts_and_an_unmeasured_one_does_not() {
        let run = vec![
            cell("T", SPSC, "T64", 20.0),
            cell("T", FLOOR, "T64", 80.0),
            cell("T", BATCHED, "T8", 300.0),
            cell("T", SOCK, "T8", 240.0),
        ];
        let (table, bad) = check(&merge(&[run]));
        assert_eq!(bad, 1, "{table}");
        assert!(
            table.contains("0.25x") && table.contains("MISSED"),
            "{table}"
        );
        assert!(
            table.contains("1.25x") && table.contains(" met |"),
            "{table}"
        );
        assert!(table.contains("not measured"), "{table}");
    }

    #[test]
    fn latency_targets_go_the_other_way() {
        assert_eq!(judge(1.4, Op::AtMost, 1.5, false), Outcome::Met);
        assert_eq!(judge(1.6, Op::AtMost, 1.5, false), Outcome::Missed);
        assert_eq!(judge(0.95, Op::AtLeast, 0.9, false), Outcome::Met);
        assert_eq!(judge(0.95, Op::AtLeast, 0.9, true), Outcome::Slow);
    }

    #[test]
    fn a_target_met_only_in_a_slow_placement_is_not_met() {
        // Probes: 200 ns (fast) in one run, 400 ns in the other, which has
        // the only figures of the ratio.
        let fast = vec![cell("probe", "other", "T64", 200.0)];
        let slow = vec![
            cell("probe", SPSC, "T64", 400.0),
            cell("probe", FLOOR, "T64", 400.0),
            cell("T", SPSC, "T64", 30.0),
            cell("T", FLOOR, "T64", 31.0),
        ];
        let (table, bad) = check(&merge(&[fast, slow]));
        assert_eq!(bad, 1, "{table}");
        assert!(table.contains("slow placement only"), "{table}");
    }
}
