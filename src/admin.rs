//! The operator's view of the named segments in `/dev/shm`: list them,
//! inspect one, remove one, and collect the ones whose processes died
//! (`ringway ls`, `inspect`, `rm`, `gc`).
//!
//! Everything here reads; only [`remove`] and [`collect`] unlink names. A
//! file is taken for a ringway segment only if it is a regular file that
//! starts with ringway's magic; other files in `/dev/shm` are never touched.
//! Files are opened with `O_NOFOLLOW`, so a symlink planted in `/dev/shm`
//! leads nowhere.
//!
//! ```no_run
//! for s in ringway::admin::list()? {
//!     println!("{} {:?} alive={} dead={}", s.name, s.kind, s.alive(), s.dead());
//! }
//! # Ok::<(), ringway::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::header::{Header, Kind, CLOSED_OFF, LINE, LOST_OFF, MAGIC, READY, REAPED_OFF};
use crate::peer::{self, Liveness};
use crate::segment::{self, Segment, Validator};
use crate::sync::Ordering;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::{Duration, SystemTime};

/// Where named segments live (`shm_open`'s directory on Linux).
pub const SHM_DIR: &str = "/dev/shm";

/// A segment that never became READY is collected only once it is this old
/// (its creator may still be initialising it).
pub const INIT_GRACE: Duration = segment::INIT_GRACE;

/// Where a segment is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Published and valid.
    Ready,
    /// Its creator has not published it (yet, or ever: see
    /// [`SegmentInfo::garbage`]).
    Initializing,
    /// READY, but it fails validation: the error says which field.
    Invalid(String),
}

/// One entry of a segment's peer table.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Slot index (the byte its owner locks).
    pub slot: u32,
    /// The kind's role code (spsc: 0 producer, 1 consumer; mpmc: 1
    /// sender, 2 receiver; pipe: 0 for end 1, 1 for end 2).
    pub role: u32,
    /// The pid recorded at attach (display only: pids are reused).
    pub pid: u32,
    /// When it attached, nanoseconds since the Unix epoch.
    pub attached_unix_ns: u64,
    /// What the table and the kernel's locks say.
    pub liveness: Liveness,
}

/// What `ringway ls` and `inspect` show of one segment.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The name (without the leading `/`).
    pub name: String,
    /// The file's size in bytes (its footprint in shared memory).
    pub file_size: u64,
    /// The file's inode (names its doorbells).
    pub inode: u64,
    /// Permission bits of the file.
    pub mode: u32,
    /// Owner of the file.
    pub uid: u32,
    /// The file's last modification, nanoseconds since the Unix epoch.
    pub modified_unix_ns: u64,
    /// The header as stored (unvalidated when `state` is not `Ready`).
    pub header: Header,
    /// The kind the header names, if it names one.
    pub kind: Option<Kind>,
    /// Whether it is published and valid.
    pub state: State,
    /// Whether some process holds a lock on the file: every handle holds
    /// one for its whole life, a creator from before it sizes the file.
    pub locked: bool,
    /// The peer table's used entries (empty unless `state` is `Ready`).
    pub peers: Vec<PeerInfo>,
    /// Kind-specific words: capacity, positions, fill, waiters, closed
    /// bits, recovery counters.
    pub fields: Vec<(&'static str, u64)>,
}

impl SegmentInfo {
    /// Peers attached and alive.
    pub fn alive(&self) -> usize {
        self.count(Liveness::Alive)
    }

    /// Peers that died attached (reaped or not).
    pub fn dead(&self) -> usize {
        self.count(Liveness::Dead)
    }

    fn count(&self, l: Liveness) -> usize {
        self.peers.iter().filter(|p| p.liveness == l).count()
    }

    /// A kind-specific field by name.
    pub fn field(&self, name: &str) -> Option<u64> {
        self.fields.iter().find(|f| f.0 == name).map(|f| f.1)
    }

    /// Why `gc` would remove this segment, or `None` to keep it: no
    /// process holds it (every handle holds a lock on the file, dropped by
    /// the kernel when its process dies, and the last holder to exit
    /// cleanly removes the name itself, unless it left messages for a
    /// reader yet to come: `gc` collects those too), or its creator died
    /// before publishing it.
    /// An invalid segment is never collected: `rm` it by hand.
    pub fn garbage(&self) -> Option<&'static str> {
        if self.locked || self.alive() > 0 {
            return None;
        }
        match self.state {
            State::Ready if self.dead() > 0 => Some("no process holds it; a peer died in it"),
            State::Ready => Some("no process holds it"),
            State::Initializing => {
                let age = now_ns().saturating_sub(self.modified_unix_ns);
                (age > INIT_GRACE.as_nanos() as u64)
                    .then_some("its creator died before publishing it")
            }
            _ => None,
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn path_of(name: &str) -> Result<std::path::PathBuf> {
    segment::validate_name(name)?;
    Ok(std::path::Path::new(SHM_DIR).join(name))
}

/// Open a file of `/dev/shm` to look at it: read-only, no symlinks, no
/// blocking on a FIFO.
fn open_file(name: &str) -> Result<File> {
    let path = path_of(name)?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound {
                segment: name.to_owned(),
            },
            _ => Error::Io {
                op: "open",
                segment: name.to_owned(),
                source,
            },
        })
}

fn not_ringway(name: &str, detail: &str) -> Error {
    Error::Invalid {
        segment: name.to_owned(),
        field: "magic",
        detail: format!("{detail}: not a ringway segment"),
    }
}

/// Whether any process holds a lock on the file's lock bytes: the peer
/// slots' `[0, 4096)` and the hold byte every handle keeps shared.
fn any_lock(file: &File, name: &str) -> Result<bool> {
    let fl = segment::ofd_lock(
        file,
        libc::F_OFD_GETLK,
        libc::F_WRLCK,
        0,
        segment::HOLD_BYTE + 1,
    )
    .map_err(|source| Error::Io {
        op: "fcntl(F_OFD_GETLK)",
        segment: name.to_owned(),
        source,
    })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

fn validator(kind: Kind) -> Validator {
    match kind {
        Kind::Spsc => crate::spsc::handles::validate,
        Kind::Mpmc => crate::mpmc::handles::validate,
        Kind::Pipe => crate::pipe::validate,
        Kind::Counters => crate::counters::validate,
    }
}

/// Everything `inspect` shows of segment `name`. `Error::NotFound` if
/// there is no such file, `Error::Invalid { field: "magic" }` if it is not
/// a ringway segment.
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    let file = open_file(name)?;
    let meta = file.metadata().map_err(|source| Error::Io {
        op: "fstat",
        segment: name.to_owned(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(not_ringway(name, "not a regular file"));
    }
    let mut b = [0u8; 128];
    let n = file.read_at(&mut b, 0).map_err(|source| Error::Io {
        op: "read",
        segment: name.to_owned(),
        source,
    })?;
    let header = Header::from_bytes(&b);
    if n < 8 || header.magic != MAGIC {
        return Err(not_ringway(name, "no ringway magic"));
    }
    let kind = Kind::from_code(header.kind);
    let mut info = SegmentInfo {
        name: name.to_owned(),
        file_size: meta.len(),
        inode: meta.ino(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        modified_unix_ns: (meta.mtime() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec() as u64),
        header,
        kind,
        state: State::Initializing,
        locked: any_lock(&file, name)?,
        peers: Vec::new(),
        fields: Vec::new(),
    };
    if n < 128 || header.state != READY {
        return Ok(info);
    }
    let Some(kind) = kind else {
        info.state = State::Invalid(format!("unknown kind {}", header.kind));
        return Ok(info);
    };
    let seg = match Segment::open_unheld(name, kind, validator(kind)) {
        Ok(s) => s,
        Err(e) => {
            info.state = State::Invalid(e.to_string());
            return Ok(info);
        }
    };
    info.state = State::Ready;
    for slot in 0..seg.header().peer_slots {
        let liveness = match peer::liveness(&seg, slot) {
            Ok(Liveness::Vacant) => continue,
            Ok(l) => l,
            Err(e) => {
                info.state = State::Invalid(e.to_string());
                break;
            }
        };
        let (pid, attached) = peer::display_fields(&seg, slot);
        info.peers.push(PeerInfo {
            slot,
            role: peer::role(&seg, slot),
            pid,
            attached_unix_ns: attached,
            liveness,
        });
    }
    info.fields = fields(&seg, kind);
    Ok(info)
}

fn u64_at(seg: &Segment, off: usize) -> u64 {
    // ORDERING: Relaxed — a display snapshot; nothing is read through it.
    seg.region()
        .u64_at(off)
        .map_or(0, |w| w.load(Ordering::Relaxed))
}

fn u32_at(seg: &Segment, off: usize) -> u64 {
    // ORDERING: Relaxed — as above.
    seg.region()
        .u32_at(off)
        .map_or(0, |w| w.load(Ordering::Relaxed) as u64)
}

/// The kind's words, by name. Positions are read one at a time, so a busy
/// segment shows a blend of instants.
fn fields(seg: &Segment, kind: Kind) -> Vec<(&'static str, u64)> {
    let h = *seg.header();
    let mut f = vec![
        ("closed_bits", u32_at(seg, CLOSED_OFF)),
        ("peers_reaped", u32_at(seg, REAPED_OFF)),
        ("poisoned", u32_at(seg, crate::header::POISON_OFF)),
    ];
    let spsc = |f: &mut Vec<(&'static str, u64)>,
                lay: crate::spsc::ring::Layout,
                pre: [&'static str; 5]| {
        let (tail, head) = (u64_at(seg, lay.tail), u64_at(seg, lay.head));
        f.push((pre[0], tail));
        f.push((pre[1], head));
        f.push((pre[2], tail.wrapping_sub(head).min(lay.cap)));
        f.push((pre[3], u32_at(seg, lay.data_wait.off)));
        f.push((pre[4], u32_at(seg, lay.space_wait.off)));
    };
    match kind {
        Kind::Spsc => {
            f.push(("capacity_bytes", h.param_a));
            f.push(("max_message", crate::spsc::ring::max_message(h.param_a)));
            let lay = crate::spsc::handles::layout(seg);
            spsc(
                &mut f,
                lay,
                [
                    "tail",
                    "head",
                    "fill_bytes",
                    "consumers_waiting",
                    "producers_waiting",
                ],
            );
        }
        Kind::Pipe => {
            f.push(("capacity_bytes", h.param_a));
            f.push(("rings", h.param_b));
            f.push((
                "closed_bits_2",
                u32_at(seg, crate::header::CONTROL_OFF + 16),
            ));
            spsc(
                &mut f,
                crate::pipe::ring_layout(&h, 0),
                [
                    "r0_tail",
                    "r0_head",
                    "r0_fill_bytes",
                    "r0_readers_waiting",
                    "r0_writers_waiting",
                ],
            );
            if h.param_b == 2 {
                spsc(
                    &mut f,
                    crate::pipe::ring_layout(&h, 1),
                    [
                        "r1_tail",
                        "r1_head",
                        "r1_fill_bytes",
                        "r1_readers_waiting",
                        "r1_writers_waiting",
                    ],
                );
            }
        }
        Kind::Mpmc => {
            let lay = crate::mpmc::handles::layout(seg);
            let (enq, deq) = (u64_at(seg, lay.enq), u64_at(seg, lay.deq));
            f.push(("capacity_slots", lay.cap));
            f.push(("slot_bytes", lay.slot_size));
            f.push(("enq", enq));
            f.push(("deq", deq));
            f.push(("fill_slots", enq.wrapping_sub(deq).min(lay.cap)));
            f.push(("receivers_waiting", u32_at(seg, lay.data_wait.off)));
            f.push(("senders_waiting", u32_at(seg, lay.space_wait.off)));
            f.push(("lost", u64_at(seg, LOST_OFF)));
        }
        Kind::Counters => {
            let base = h.kind_off();
            f.push(("capacity_keys", h.param_a));
            // glibc's mutex: the owner's tid is the int at offset 8.
            f.push(("lock_owner_tid", u32_at(seg, base + 8)));
            let entries = base + crate::lock::LOCK_BYTES + LINE;
            let mut live = 0;
            let mut removed = 0;
            for i in 0..h.param_a as usize {
                match u32_at(seg, entries + i * crate::counters::ENTRY) {
                    2 => live += 1,
                    3 => removed += 1,
                    _ => {}
                }
            }
            f.push(("keys", live));
            f.push(("removed_keys", removed));
        }
    }
    f
}

/// Every ringway segment in `/dev/shm` this user can read, by name. Files
/// that are not ringway's (or that vanish while listed) are skipped.
pub fn list() -> Result<Vec<SegmentInfo>> {
    list_prefixed("")
}

/// [`list`], for the names that start with `prefix` only (the others are
/// not even opened).
fn list_prefixed(prefix: &str) -> Result<Vec<SegmentInfo>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|source| Error::Io {
        op: "read_dir",
        segment: SHM_DIR.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with(prefix) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match inspect(&name) {
            Ok(info) => out.push(info),
            Err(Error::NotFound { .. } | Error::Invalid { .. } | Error::InvalidName { .. }) => {}
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove segment `name` (and its doorbells nobody listens on). Refused
/// with `Error::Busy` while a process holds it, unless `force`; processes
/// that have it mapped keep their mapping either way.
///
/// Without `force`, the name goes while this call holds the segment's hold
/// byte exclusively: a process opening it at that moment either got its
/// shared hold first (and the removal is refused) or finds, once it holds
/// it, that the name is gone (`Error::NotFound`). Nobody is left working on
/// a segment that can no longer be opened.
pub fn remove(name: &str, force: bool) -> Result<()> {
    let busy = || Error::Busy {
        segment: name.to_owned(),
        by: "a live process",
    };
    let info = inspect(name)?;
    if !force && (info.locked || info.alive() > 0) {
        return Err(busy());
    }
    let path = path_of(name)?;
    let io = |op, source| Error::Io {
        op,
        segment: name.to_owned(),
        source,
    };
    // A write lock needs a descriptor open for writing; `--force` takes
    // none, so it needs no write permission.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(!force)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound {
                segment: name.to_owned(),
            },
            _ => io("open", e),
        })?;
    let ino = file.metadata().map_err(|e| io("fstat", e))?.ino();
    if ino != info.inode {
        // Replaced since it was inspected: that file is not the one judged.
        return Err(busy());
    }
    if !force {
        match segment::ofd_lock(
            &file,
            libc::F_OFD_SETLK,
            libc::F_WRLCK,
            segment::HOLD_BYTE,
            1,
        ) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                return Err(busy())
            }
            Err(e) => return Err(io("fcntl(F_OFD_SETLK)", e)),
        }
        // Our own lock does not conflict with a probe through `file`.
        if any_lock(&file, name)? {
            return Err(busy());
        }
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.ino() == ino => {}
        Ok(_) => return Err(busy()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Error::NotFound {
                segment: name.to_owned(),
            })
        }
        Err(e) => return Err(io("lstat", e)),
    }
    segment::unlink(name)?;
    for bell in bells()? {
        if bell.ino == ino && !bell_heard(&bell.name) {
            let _ = std::fs::remove_file(std::path::Path::new(SHM_DIR).join(&bell.name));
        }
    }
    // Dropping `file` releases the hold byte: a late opener now finds the
    // name gone.
    Ok(())
}

/// A doorbell FIFO in `/dev/shm`, named after its segment file's identity.
struct BellFile {
    name: String,
    ino: u64,
}

/// The doorbell FIFOs in `/dev/shm`.
fn bells() -> Result<Vec<BellFile>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|source| Error::Io {
        op: "read_dir",
        segment: SHM_DIR.to_owned(),
        source,
    })?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix("ringway-bell-")?;
            let ino = rest.split('-').nth(1)?.parse().ok()?;
            Some(BellFile { name, ino })
        })
        .collect())
}

/// Whether a doorbell may still be needed: its consumer holds the FIFO's
/// read end for as long as it lives, so a FIFO with no reader (`ENXIO` on
/// a non-blocking open for writing) is heard by nobody. A fresh FIFO
/// counts as heard (its consumer may be between `mkfifo` and `open`), and
/// anything that is not a FIFO is not ours to judge.
fn bell_heard(name: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let path = std::path::Path::new(SHM_DIR).join(name);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return true;
    };
    if !meta.file_type().is_fifo() {
        return true;
    }
    let mtime = (meta.mtime() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec() as u64);
    if now_ns().saturating_sub(mtime) < INIT_GRACE.as_nanos() as u64 {
        return true;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::ENXIO),
    }
}

/// What [`collect`] found: a name and why it is garbage.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Garbage {
    /// The file's name in `/dev/shm`.
    pub name: String,
    /// Why it can go.
    pub reason: &'static str,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The segments [`SegmentInfo::garbage`] condemns, and doorbell FIFOs
/// nobody listens on. With `act`, each is removed (a segment that
/// came back to life in between is left alone).
pub fn collect(act: bool) -> Result<Vec<Garbage>> {
    collect_prefixed("", act)
}

/// [`collect`], for the segments whose names start with `prefix` only
/// (doorbells: every one nobody listens on, whatever its segment was
/// called).
pub fn collect_prefixed(prefix: &str, act: bool) -> Result<Vec<Garbage>> {
    let segs = list_prefixed(prefix)?;
    let mut out = Vec::new();
    for s in &segs {
        if let Some(reason) = s.garbage() {
            out.push(Garbage {
                name: s.name.clone(),
                reason,
                bytes: s.file_size,
            });
        }
    }
    for bell in bells()? {
        if !bell_heard(&bell.name) {
            out.push(Garbage {
                name: bell.name,
                reason: "a doorbell nobody listens on",
                bytes: 0,
            });
        }
    }
    if act {
        out.retain(|g| {
            if g.name.starts_with("ringway-bell-") {
                return !bell_heard(&g.name)
                    && std::fs::remove_file(std::path::Path::new(SHM_DIR).join(&g.name)).is_ok();
            }
            // Look again just before removing: it may have a live peer now.
            inspect(&g.name).is_ok_and(|i| i.garbage().is_some()) && remove(&g.name, false).is_ok()
        });
    }
    Ok(out)
}
