//! What `ringway bench` measured, merged over `--repeat` runs, and its
//! renderings: pipe tables (text and Markdown alike), JSON, and an SVG
//! chart.

use std::fmt::Write as _;

/// One figure of one run: a table's row and column.
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    pub(crate) table: &'static str,
    pub(crate) label: String,
    pub(crate) col: &'static str,
    pub(crate) val: Result<f64, String>,
}

/// A figure over the runs: median and range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stat {
    pub(crate) med: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) n: usize,
}

/// A merged figure.
#[derive(Clone, Debug)]
pub(crate) struct Merged {
    pub(crate) table: &'static str,
    pub(crate) label: String,
    pub(crate) col: &'static str,
    pub(crate) val: Result<Stat, String>,
    /// Every run of it was taken in a slow placement (see [`SLOW`]).
    pub(crate) slow: bool,
}

/// A T-table figure whose placement probe (the cache-line round trip just
/// before it) was this many times the fastest probe of the whole sheet was
/// taken with the two CPUs far apart; such runs are set aside when a
/// figure has runs in the usual placement, and flagged when it has none.
pub(crate) const SLOW: f64 = 1.6;

/// The placement probe that goes with a T-table column.
fn probe_col(col: &str) -> &'static str {
    match col {
        "T64" => "T64",
        "T8" => "T8",
        _ => "L",
    }
}

/// The placement probes (ns) among `cells`.
fn probes<'a, I>(cells: I) -> impl Iterator<Item = f64> + 'a
where
    I: IntoIterator<Item = &'a Cell>,
    I::IntoIter: 'a,
{
    cells
        .into_iter()
        .filter(|c| c.table == "probe")
        .filter_map(|c| c.val.as_ref().ok().copied())
}

/// The fastest probe of all runs (infinite if there is none).
fn fastest_probe(runs: &[Vec<Cell>]) -> f64 {
    probes(runs.iter().flatten()).fold(f64::INFINITY, f64::min)
}

/// Every figure of every run, merged by (table, row, column) in first-seen
/// order. A figure that failed in any run is reported as failed.
#[derive(Debug, Default)]
pub(crate) struct Sheet(pub(crate) Vec<Merged>);

pub(crate) fn merge(runs: &[Vec<Cell>]) -> Sheet {
    let mut keys: Vec<(&'static str, String, &'static str)> = Vec::new();
    for c in runs.iter().flatten() {
        if !keys
            .iter()
            .any(|k| k.0 == c.table && k.1 == c.label && k.2 == c.col)
        {
            keys.push((c.table, c.label.clone(), c.col));
        }
    }
    let probe = |run: &[Cell], label: &str, col: &str| {
        run.iter()
            .find(|c| c.table == "probe" && c.label == label && c.col == probe_col(col))
            .and_then(|c| c.val.as_ref().ok().copied())
    };
    let fastest = fastest_probe(runs);
    let merged = keys
        .into_iter()
        .map(|(table, label, col)| {
            // (value, in the usual placement?) per run that has the figure.
            let vals: Vec<(&Result<f64, String>, bool)> = runs
                .iter()
                .flat_map(|run| {
                    let fast =
                        table != "T" || probe(run, &label, col).is_none_or(|p| p <= fastest * SLOW);
                    run.iter()
                        .filter(|c| c.table == table && c.label == label && c.col == col)
                        .map(move |c| (&c.val, fast))
                })
                .collect();
            let slow = !vals.iter().any(|v| v.1);
            let vals: Vec<&Result<f64, String>> =
                vals.iter().filter(|v| slow || v.1).map(|v| v.0).collect();
            let val = match vals.iter().find_map(|v| v.as_ref().err()) {
                Some(e) => Err(e.clone()),
                None => {
                    let mut v: Vec<f64> = vals
                        .iter()
                        .filter_map(|v| v.as_ref().ok().copied())
                        .collect();
                    v.sort_by(f64::total_cmp);
                    let med = if v.len() % 2 == 1 {
                        v[v.len() / 2]
                    } else {
                        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
                    };
                    Ok(Stat {
                        med,
                        lo: v[0],
                        hi: v[v.len() - 1],
                        n: v.len(),
                    })
                }
            };
            Merged {
                table,
                label,
                col,
                val,
                slow,
            }
        })
        .collect();
    Sheet(merged)
}

impl Sheet {
    pub(crate) fn get(&self, table: &str, label: &str, col: &str) -> Option<&Result<Stat, String>> {
        self.entry(table, label, col).map(|m| &m.val)
    }

    pub(crate) fn entry(&self, table: &str, label: &str, col: &str) -> Option<&Merged> {
        self.0
            .iter()
            .find(|m| m.table == table && m.label == label && m.col == col)
    }

    /// (measurements set aside or flagged for a slow placement, all
    /// placement-probed measurements), and the fastest probe.
    pub(crate) fn placement(&self, runs: &[Vec<Cell>]) -> (usize, usize, f64) {
        let fastest = fastest_probe(runs);
        let all: Vec<f64> = probes(runs.iter().flatten()).collect();
        let slow = all.iter().filter(|p| **p > fastest * SLOW).count();
        (slow, all.len(), fastest)
    }

    /// Each run's placement: the median of its cache-line probes (ns), and
    /// whether that is within [`SLOW`] of the sheet's fastest probe.
    pub(crate) fn run_placements(runs: &[Vec<Cell>]) -> Vec<Option<(f64, bool)>> {
        let fastest = fastest_probe(runs);
        runs.iter()
            .map(|run| {
                let mut p: Vec<f64> = probes(run).collect();
                if p.is_empty() {
                    return None;
                }
                p.sort_by(f64::total_cmp);
                let med = p[p.len() / 2];
                Some((med, med <= fastest * SLOW))
            })
            .collect()
    }

    /// The median of the first row of `table` whose label contains `part`.
    pub(crate) fn find(&self, table: &str, part: &str, col: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|m| m.table == table && m.col == col && m.label.contains(part))
            .and_then(|m| m.val.as_ref().ok().map(|s| s.med))
    }

    /// The rows of `table`, in order.
    pub(crate) fn labels(&self, table: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in self.0.iter().filter(|m| m.table == table) {
            if !out.contains(&m.label.as_str()) {
                out.push(&m.label);
            }
        }
        out
    }
}

/// `12.34 M/s` (or `k/s`), with the spread over runs when there were
/// several: `± half the range, in % of the median`.
pub(crate) fn rate(r: Option<&Result<Stat, String>>) -> String {
    match r {
        None => "-".into(),
        Some(Ok(s)) => {
            let v = if s.med < 100_000.0 {
                format!("{:.2} k/s", s.med / 1e3)
            } else {
                format!("{:.2} M/s", s.med / 1e6)
            };
            v + &spread(s)
        }
        Some(Err(e)) => format!("FAILED ({e})"),
    }
}

pub(crate) fn spread(s: &Stat) -> String {
    if s.n > 1 && s.med > 0.0 {
        format!(" ±{:.0}%", (s.hi - s.lo) / 2.0 / s.med * 100.0)
    } else {
        String::new()
    }
}

/// ` †` for a figure taken only in a slow placement.
pub(crate) fn flag(m: Option<&Merged>) -> &'static str {
    if m.is_some_and(|m| m.slow) {
        " †"
    } else {
        ""
    }
}

/// `value / base` as `1.23x`, or `-`.
pub(crate) fn ratio(r: Option<&Result<Stat, String>>, base: Option<f64>) -> String {
    match (r, base) {
        (Some(Ok(v)), Some(b)) if b > 0.0 => format!("{:.2}x", v.med / b),
        _ => "-".into(),
    }
}

/// `base / value` (for times, where smaller is better), or `-`.
pub(crate) fn inverse_ratio(r: Option<&Result<Stat, String>>, base: Option<f64>) -> String {
    match (r, base) {
        (Some(Ok(v)), Some(b)) if v.med > 0.0 => format!("{:.2}x", v.med / b.max(1.0)),
        _ => "-".into(),
    }
}

/// A pipe table (GitHub Markdown, and readable as text): first column
/// left-aligned, the others right-aligned.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        out.push('|');
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                let _ = write!(out, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{c} |", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut out, headers.to_vec());
    out.push('|');
    for (i, wi) in w.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, "{}|", "-".repeat(wi + 2));
        } else {
            let _ = write!(out, "{}:|", "-".repeat(wi + 1));
        }
    }
    out.push('\n');
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

/// The whole sheet as JSON.
pub(crate) fn json(sheet: &Sheet, meta: serde_json::Value) -> serde_json::Value {
    let figures: Vec<serde_json::Value> = sheet
        .0
        .iter()
        .map(|m| {
            let mut v = serde_json::json!({
                "table": m.table,
                "row": m.label,
                "column": m.col,
                "unit": unit(m.table, m.col),
            });
            match &m.val {
                Ok(s) => {
                    v["median"] = s.med.into();
                    v["min"] = s.lo.into();
                    v["max"] = s.hi.into();
                    v["runs"] = s.n.into();
                }
                Err(e) => v["error"] = e.as_str().into(),
            }
            if m.table == "T" {
                v["slow_placement_only"] = m.slow.into();
            }
            v
        })
        .collect();
    serde_json::json!({ "meta": meta, "figures": figures })
}

fn unit(table: &str, col: &str) -> &'static str {
    match (table, col) {
        ("T", "T64" | "T8") | ("M", _) => "messages/s",
        ("C", _) => "operations/s",
        ("T", _) => "ns",
        ("idle", _) => "% of a core",
        ("probe", _) => "ns (cache-line round trip before the figure)",
        _ => "",
    }
}

/// An SVG chart: throughput bars (T64, log scale) and latency percentiles
/// (p50, p99, p99.9, log scale), one row per transport.
pub(crate) fn svg(sheet: &Sheet, title: &str) -> String {
    let rows = sheet.labels("T");
    let t64: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|l| sheet.get("T", l, "T64")?.as_ref().ok().map(|s| (*l, s.med)))
        .collect();
    let lat: Vec<(&str, [f64; 3])> = rows
        .iter()
        .filter_map(|l| {
            let g = |c| sheet.get("T", l, c)?.as_ref().ok().map(|s| s.med);
            Some((*l, [g("p50")?, g("p99")?, g("p99.9")?]))
        })
        .collect();
    let (lw, bw, rh) = (300.0, 420.0, 22.0);
    let h1 = 40.0 + rh * t64.len() as f64;
    let h2 = 40.0 + rh * lat.len() as f64;
    let height = 50.0 + h1 + 30.0 + h2 + 40.0;
    let width = lw + bw + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // A log axis from the smallest to the largest value, by decades.
    let axis = |vals: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = vals.filter(|x| *x > 0.0).collect();
        let lo = v.iter().copied().fold(f64::MAX, f64::min).log10().floor();
        let hi = v.iter().copied().fold(0.0, f64::max).log10().ceil();
        (lo, hi.max(lo + 1.0))
    };
    let x_of = |v: f64, (lo, hi): (f64, f64)| lw + (v.max(1e-9).log10() - lo) / (hi - lo) * bw;
    // Panel 1: throughput.
    let y0 = 50.0;
    let _ = writeln!(
        s,
        r#"<text x="10" y="{}" font-weight="bold">T64: messages/s, 64 B, log scale (longer is better)</text>"#,
        y0 + 10.0
    );
    if !t64.is_empty() {
        let ax = axis(&mut t64.iter().map(|r| r.1));
        decades(&mut s, ax, y0 + 20.0, rh * t64.len() as f64, lw, bw, |d| {
            human(10f64.powf(d), "/s")
        });
        for (i, (l, v)) in t64.iter().enumerate() {
            let y = y0 + 24.0 + rh * i as f64;
            let color = if l.starts_with("ringway") {
                "#2a7ab9"
            } else if l.starts_with("floor") {
                "#999999"
            } else {
                "#e08a2c"
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                lw - 6.0,
                y + 12.0,
                esc(l)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{lw}" y="{y}" width="{:.1}" height="{}" fill="{color}"/>"#,
                (x_of(*v, ax) - lw).max(1.0),
                rh - 6.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                x_of(*v, ax) + 4.0,
                y + 12.0,
                human(*v, "/s")
            );
        }
    }
    // Panel 2: latency percentiles.
    let y0 = 50.0 + h1 + 30.0;
    let _ = writeln!(
        s,
        r#"<text x="10" y="{}" font-weight="bold">L: round trip, ns, log scale: p50 ● p99 ◆ p99.9 ▲ (left is better)</text>"#,
        y0 + 10.0
    );
    if !lat.is_empty() {
        let ax = axis(&mut lat.iter().flat_map(|r| r.1));
        decades(&mut s, ax, y0 + 20.0, rh * lat.len() as f64, lw, bw, |d| {
            human(10f64.powf(d), " ns")
        });
        for (i, (l, v)) in lat.iter().enumerate() {
            let y = y0 + 24.0 + rh * i as f64 + 8.0;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                lw - 6.0,
                y + 4.0,
                esc(l)
            );
            let (a, b, c) = (x_of(v[0], ax), x_of(v[1], ax), x_of(v[2], ax));
            let _ = writeln!(
                s,
                r##"<line x1="{a:.1}" y1="{y}" x2="{c:.1}" y2="{y}" stroke="#888"/>"##
            );
            let _ = writeln!(
                s,
                r##"<circle cx="{a:.1}" cy="{y}" r="4" fill="#2a7ab9"/>"##
            );
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{}" width="7" height="7" fill="#e08a2c" transform="rotate(45 {b:.1} {y})"/>"##,
                b - 3.5,
                y - 3.5
            );
            let _ = writeln!(
                s,
                r##"<path d="M{c:.1} {} l4 7 h-8 z" fill="#c0392b"/>"##,
                y - 4.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                c + 8.0,
                y + 4.0,
                human(v[0], " ns")
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn decades(
    s: &mut String,
    (lo, hi): (f64, f64),
    y: f64,
    h: f64,
    lw: f64,
    bw: f64,
    label: impl Fn(f64) -> String,
) {
    let mut d = lo;
    while d <= hi {
        let x = lw + (d - lo) / (hi - lo) * bw;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="#ddd"/>"##,
            y + h + 4.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#666" font-size="10">{}</text>"##,
            y + h + 16.0,
            label(d)
        );
        d += 1.0;
    }
}

fn human(v: f64, unit: &str) -> String {
    let (x, p) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}{p}{unit}")
    } else {
        format!("{x:.1}{p}{unit}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: Result<f64, String>) -> Cell {
        Cell {
            table: "T",
            label: "x".into(),
            col: "T64",
            val: v,
        }
    }

    #[test]
    fn merge_takes_the_median_and_range_and_keeps_failures() {
        let s = merge(&[
            vec![cell(Ok(3.0))],
            vec![cell(Ok(1.0))],
            vec![cell(Ok(2.0))],
        ]);
        let st = s.get("T", "x", "T64").unwrap().as_ref().unwrap();
        assert_eq!((st.med, st.lo, st.hi, st.n), (2.0, 1.0, 3.0, 3));
        let s = merge(&[vec![cell(Ok(3.0))], vec![cell(Err("lost".into()))]]);
        assert_eq!(
            s.get("T", "x", "T64").unwrap().as_ref().unwrap_err(),
            "lost"
        );
    }

    #[test]
    fn figures_from_a_slow_placement_are_set_aside_or_flagged() {
        let run = |v: f64, probe: f64| {
            vec![
                Cell {
                    table: "probe",
                    label: "x".into(),
                    col: "T64",
                    val: Ok(probe),
                },
                cell(Ok(v)),
            ]
        };
        // Two runs in the usual placement (120 ns), one far apart (380 ns).
        let s = merge(&[run(16.0, 120.0), run(4.0, 380.0), run(17.0, 125.0)]);
        let m = s.entry("T", "x", "T64").unwrap();
        let st = m.val.as_ref().unwrap();
        assert_eq!((st.med, st.n, m.slow), (16.5, 2, false));
        // Only slow runs: kept, and flagged.
        let s = merge(&[
            run(4.0, 380.0),
            run(5.0, 390.0),
            vec![Cell {
                table: "probe",
                label: "y".into(),
                col: "T64",
                val: Ok(120.0),
            }],
        ]);
        let m = s.entry("T", "x", "T64").unwrap();
        assert!(m.slow);
        assert_eq!(m.val.as_ref().unwrap().n, 2);
    }

    #[test]
    fn each_run_is_labelled_by_its_median_probe() {
        let probe = |v: f64| Cell {
            table: "probe",
            label: "x".into(),
            col: "T64",
            val: Ok(v),
        };
        let runs = vec![
            vec![probe(200.0), probe(210.0), probe(900.0)],
            vec![probe(390.0), probe(400.0)],
            vec![],
        ];
        let p = Sheet::run_placements(&runs);
        assert_eq!(p, vec![Some((210.0, true)), Some((400.0, false)), None]);
    }

    #[test]
    fn tables_align_and_are_markdown() {
        let t = table(&["a", "bb"], &[vec!["long".into(), "1".into()]]);
        assert_eq!(t, "| a    | bb |\n|------|---:|\n| long |  1 |\n");
    }
}
