//! `ringway ls`, `inspect`, `rm`, `gc`: the library's `admin` module,
//! printed for people (tables) or scripts (`--json`, exit codes).

use crate::exit;
use ringway::admin::{self, PeerInfo, SegmentInfo, State};
use ringway::{Error, Liveness};
use std::process::ExitCode;

fn fail(cmd: &str, e: &Error) -> ExitCode {
    eprintln!("ringway {cmd}: {e}");
    let hint = match e {
        Error::NotFound { .. } => Some("`ringway ls` lists the segments there are"),
        Error::InUse { .. } | Error::Busy { .. } => {
            Some("stop the processes that use it, or pass --force")
        }
        Error::Invalid { field: "magic", .. } => {
            Some("ringway only touches files that start with its magic")
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Some("the segment belongs to another user (segments are created 0600)")
        }
        _ => None,
    };
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
    ExitCode::from(match e {
        Error::NotFound { .. } => exit::NOT_FOUND,
        Error::InUse { .. } | Error::Busy { .. } => exit::IN_USE,
        Error::Invalid { field: "magic", .. } => exit::NOT_RINGWAY,
        _ => exit::FAILED,
    })
}

fn kind_name(s: &SegmentInfo) -> String {
    s.kind.map_or_else(
        || format!("kind {}", s.header.kind),
        |k| k.name().to_owned(),
    )
}

fn state_name(s: &SegmentInfo) -> &str {
    match &s.state {
        State::Ready => "ready",
        State::Initializing => "initializing",
        State::Invalid(_) => "INVALID",
        _ => "unknown",
    }
}

/// Capacity and fill, in the kind's units.
fn capacity_fill(s: &SegmentInfo) -> (String, String) {
    let f = |n| s.field(n);
    match (f("capacity_bytes"), f("capacity_slots"), f("capacity_keys")) {
        (Some(c), ..) => (
            bytes(c),
            f("fill_bytes")
                .or(f("r0_fill_bytes"))
                .map_or("-".into(), |x| {
                    format!("{:.0}%", x as f64 * 100.0 / c.max(1) as f64)
                }),
        ),
        (_, Some(c), _) => (
            format!("{c} slots"),
            f("fill_slots").map_or("-".into(), |x| format!("{x}/{c}")),
        ),
        (.., Some(c)) => (
            format!("{c} keys"),
            f("keys").map_or("-".into(), |x| format!("{x}/{c}")),
        ),
        _ => ("-".into(), "-".into()),
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn age(unix_ns: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let s = now.saturating_sub(unix_ns) / 1_000_000_000;
    match s {
        0..120 => format!("{s}s ago"),
        120..7200 => format!("{}m ago", s / 60),
        7200..172_800 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn liveness(l: Liveness) -> &'static str {
    match l {
        Liveness::Vacant => "vacant",
        Liveness::Alive => "alive",
        Liveness::Closed => "closed",
        Liveness::Dead => "dead",
        _ => "unknown",
    }
}

fn peer_json(p: &PeerInfo) -> serde_json::Value {
    serde_json::json!({
        "slot": p.slot,
        "role": p.role,
        "pid": p.pid,
        "attached_unix_ns": p.attached_unix_ns,
        "liveness": liveness(p.liveness),
    })
}

fn info_json(s: &SegmentInfo) -> serde_json::Value {
    let h = &s.header;
    let fields: serde_json::Map<String, serde_json::Value> = s
        .fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    serde_json::json!({
        "name": s.name,
        "kind": kind_name(s),
        "state": state_name(s),
        "invalid": match &s.state { State::Invalid(e) => Some(e.as_str()), _ => None },
        "file_size": s.file_size,
        "mode": format!("{:o}", s.mode),
        "uid": s.uid,
        "created_unix_ns": h.created_unix_ns,
        "creator_pid": h.creator_pid,
        "version": h.version,
        "param_a": h.param_a,
        "param_b": h.param_b,
        "peer_slots": h.peer_slots,
        "held_by_live_process": s.locked,
        "peers_alive": s.alive(),
        "peers_dead": s.dead(),
        "peers": s.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "fields": fields,
        "garbage": s.garbage(),
    })
}

pub(crate) fn ls(json: bool) -> ExitCode {
    let list = match admin::list() {
        Ok(l) => l,
        Err(e) => return fail("ls", &e),
    };
    if json {
        let v: Vec<_> = list.iter().map(info_json).collect();
        println!("{}", serde_json::Value::from(v));
        return ExitCode::SUCCESS;
    }
    if list.is_empty() {
        println!("no ringway segments in {}", admin::SHM_DIR);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let (cap, fill) = capacity_fill(s);
            vec![
                s.name.clone(),
                kind_name(s),
                state_name(s).to_owned(),
                bytes(s.file_size),
                cap,
                fill,
                format!("{}/{}", s.alive(), s.dead()),
                age(s.header.created_unix_ns),
                s.garbage().map_or("", |_| "gc").to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::report::table(
            &[
                "name",
                "kind",
                "state",
                "size",
                "capacity",
                "fill",
                "alive/dead",
                "created",
                ""
            ],
            &rows
        )
    );
    ExitCode::SUCCESS
}

pub(crate) fn inspect(name: &str, json: bool) -> ExitCode {
    let s = match admin::inspect(name) {
        Ok(s) => s,
        Err(e) => return fail("inspect", &e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info_json(&s)).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let h = &s.header;
    println!("segment   {} ({}/{})", s.name, admin::SHM_DIR, s.name);
    println!(
        "kind      {} (code {}), layout version {}",
        kind_name(&s),
        h.kind,
        h.version
    );
    match &s.state {
        State::Invalid(e) => println!("state     INVALID: {e}"),
        _ => println!("state     {}", state_name(&s)),
    }
    println!(
        "file      {} ({} bytes), mode {:o}, uid {}",
        bytes(s.file_size),
        s.file_size,
        s.mode,
        s.uid
    );
    println!(
        "created   {} by pid {}",
        age(h.created_unix_ns),
        h.creator_pid
    );
    println!(
        "params    a={} b={} peer_slots={}",
        h.param_a, h.param_b, h.peer_slots
    );
    println!(
        "held      {}",
        if s.locked {
            "yes, by a live process"
        } else {
            "by no process"
        }
    );
    if let Some(why) = s.garbage() {
        println!("gc        would remove it: {why}");
    }
    if !s.fields.is_empty() {
        println!("\nwords (read one at a time: a busy segment shows a blend of instants)");
        for (k, v) in &s.fields {
            println!("  {k:<22} {v}");
        }
    }
    if !s.peers.is_empty() {
        println!("\npeers");
        let rows: Vec<Vec<String>> = s
            .peers
            .iter()
            .map(|p| {
                vec![
                    p.slot.to_string(),
                    p.role.to_string(),
                    p.pid.to_string(),
                    age(p.attached_unix_ns),
                    liveness(p.liveness).to_owned(),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::report::table(&["slot", "role", "pid", "attached", "state"], &rows)
        );
    }
    ExitCode::SUCCESS
}

pub(crate) fn rm(names: &[String], force: bool) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for n in names {
        match admin::remove(n, force) {
            Ok(()) => println!("removed {n}"),
            Err(e) => code = fail("rm", &e),
        }
    }
    code
}

pub(crate) fn gc(yes: bool, prefix: &str, json: bool) -> ExitCode {
    let found = match admin::collect_prefixed(prefix, yes) {
        Ok(f) => f,
        Err(e) => return fail("gc", &e),
    };
    if json {
        let v: Vec<_> = found
            .iter()
            .map(|g| serde_json::json!({ "name": g.name, "reason": g.reason, "bytes": g.bytes, "removed": yes }))
            .collect();
        println!("{}", serde_json::Value::from(v));
        return ExitCode::SUCCESS;
    }
    if found.is_empty() {
        println!("nothing to collect");
        return ExitCode::SUCCESS;
    }
    for g in &found {
        println!(
            "{} {} ({}): {}",
            if yes { "removed" } else { "would remove" },
            g.name,
            bytes(g.bytes),
            g.reason
        );
    }
    if !yes {
        println!("(dry run: pass --yes to remove them)");
    }
    ExitCode::SUCCESS
}
