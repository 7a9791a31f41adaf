//! Shared-memory segments: named (`/dev/shm`, `shm_open`) or anonymous
//! (memfd), created, mapped and validated.
//!
//! The layout and the INIT → READY handshake are in `header.rs`. Opening
//! waits (bounded) for `READY`, copies the header out once and validates the
//! copy: magic, version, checksum, kind, `total_size` against the file's
//! size (so nothing past the file is ever touched), and the kind's own
//! parameters.

use crate::error::{Error, Result};
use crate::header::{self, kind_off, Header, Kind, MAGIC, VERSION};
use crate::region::Region;
use crate::sync::Ordering;
use std::ffi::CString;
use std::fs::File;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How long an opener waits for the creator to reach `READY`.
const READY_WAIT: Duration = Duration::from_secs(2);
/// Longest accepted segment name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// The byte of the file every handle holds a shared OFD lock on for its
/// whole life, through its private open file description: one past the
/// peer slots' bytes `[0, 4096)`. `ringway rm` and `gc` unlink a name only
/// while they hold this byte exclusively, and a handle checks, once it
/// holds it, that the name was not removed: so a segment is never removed
/// under a process that is opening it.
pub(crate) const HOLD_BYTE: u64 = 4096;
/// The byte a holder locks exclusively while it decides whether it is the
/// last one (see [`Segment`]'s `Drop`): closers go one at a time, so two
/// last holders leaving together cannot both see the other and leave the
/// name behind.
pub(crate) const GATE_BYTE: u64 = 4097;
/// How long a file with no header (or not READY) and no holder may be a
/// creator's before it counts as abandoned: by `create` (a creator between
/// its `shm_open` and its hold) and by `gc`.
pub(crate) const INIT_GRACE: Duration = Duration::from_secs(5);
/// How long a last closer waits for a holder that is not an attached peer
/// (an opener between its hold and its attach) to attach or let go.
const TRANSIENT_WAIT: Duration = Duration::from_millis(200);

/// A kind's answer, asked of the last holder as it leaves: whether the
/// segment must outlive its holders (it holds messages for a reader that
/// has not come yet), so its name stays.
pub(crate) type Keep = fn(&Segment) -> bool;

/// What a creator asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) param_a: u64,
    pub(crate) param_b: u64,
    pub(crate) peer_slots: u32,
    /// Bytes of the kind-specific area.
    pub(crate) kind_size: usize,
}

/// A kind's check of the parameters of a header that passed the generic
/// checks: `Err((field, detail))` when they are inconsistent.
pub(crate) type Validator = fn(&Header) -> std::result::Result<(), (&'static str, String)>;

/// A mapped segment and the file behind it.
#[derive(Debug)]
pub(crate) struct Segment {
    region: Region,
    /// The file behind the mapping; its fd may be handed to other processes.
    file: File,
    /// A private open file description of the same file, never handed out:
    /// the peer locks are taken through it, so a child that inherits
    /// `file` cannot keep this handle's lock alive after it dies (nor a
    /// forked child: see `fork.rs`).
    lock: crate::fork::LockFile,
    name: Option<String>,
    header: Header,
    /// Whether this handle holds [`HOLD_BYTE`] (all but `inspect`'s look).
    held: bool,
    /// The kind's keep rule, once this handle takes part in the segment's
    /// life (it created it, or attached). `None`: a look or a failed open,
    /// which never removes the name.
    keep: Option<Keep>,
    /// The process that made this handle: in a child made by `fork`, the
    /// copy is inert (see [`forked_copy`](Self::forked_copy)).
    pid: u32,
}

/// Check a segment name: 1..=200 bytes, no `/`, no NUL, not `.` or `..`.
pub(crate) fn validate_name(name: &str) -> Result<CString> {
    let bad = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 200 bytes"));
    }
    if name.contains('/') {
        return Err(bad("contains '/'"));
    }
    if name == "." || name == ".." {
        return Err(bad("'.' and '..' are not names"));
    }
    CString::new(format!("/{name}")).map_err(|_| bad("contains a NUL byte"))
}

fn io_err(op: &'static str, segment: &str) -> Error {
    Error::Io {
        op,
        segment: segment.to_owned(),
        source: std::io::Error::last_os_error(),
    }
}

fn display_name(name: Option<&str>) -> &str {
    name.unwrap_or("<anonymous>")
}

/// Remove the name of a named segment. Processes that have it open keep
/// their mapping.
pub fn unlink(name: &str) -> Result<()> {
    let c = validate_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(shm_error("shm_unlink", name));
    }
    Ok(())
}

/// The error of a failed `shm_*` call on `name`: `NotFound` for ENOENT.
fn shm_error(op: &'static str, name: &str) -> Error {
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        return Error::NotFound {
            segment: name.to_owned(),
        };
    }
    Error::Io {
        op,
        segment: name.to_owned(),
        source: e,
    }
}

impl Segment {
    /// Create a named segment (`O_CREAT | O_EXCL`, `mode`), or an anonymous
    /// one when `name` is `None`, and initialise it to `READY`.
    #[allow(dead_code)]
    pub(crate) fn create(name: Option<&str>, spec: Spec, mode: u32) -> Result<Segment> {
        Self::create_with(name, spec, mode, &|_| Ok(()))
    }

    /// [`create`](Self::create), running `init` on the segment (zeroed, its
    /// header written but not yet READY) before it is published: the
    /// kind's initial state, and the creator's own peer slot, so no opener
    /// can take that slot first.
    pub(crate) fn create_with(
        name: Option<&str>,
        spec: Spec,
        mode: u32,
        init: &dyn Fn(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let total = kind_off(spec.peer_slots)
            .checked_add(spec.kind_size)
            .ok_or_else(|| Error::InvalidArgument("segment size overflows".into()))?;
        let dname = display_name(name).to_owned();
        let file = match name {
            Some(n) => create_exclusive(n, mode)?,
            None => {
                let label = CString::new("ringway").expect("no NUL");
                let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
                // SAFETY: `label` is a valid NUL-terminated string.
                let fd = unsafe { libc::memfd_create(label.as_ptr(), flags) };
                if fd < 0 {
                    return Err(io_err("memfd_create", &dname));
                }
                // SAFETY: `fd` was just returned by memfd_create.
                File::from(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        };
        // From here on a failure must not leave the name behind.
        let cleanup = |e: Error| {
            if let Some(n) = name.filter(|n| names_file(n, &file)) {
                let _ = unlink(n);
            }
            e
        };
        let fd = file.as_raw_fd();
        if name.is_some() {
            // shm_open applied the umask; set exactly what was asked (before
            // the file is opened again below, which needs read and write).
            // SAFETY: `fd` is open.
            if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
                return Err(cleanup(io_err("fchmod", &dname)));
            }
        }
        // Hold the file before it has a size: until then `inspect` sees no
        // magic and leaves it alone; from then on `gc` sees it held.
        let lock = private_ofd(&file, &dname).map_err(cleanup)?;
        take_hold(&lock, &dname).map_err(cleanup)?;
        if let Some(n) = name.filter(|n| !names_file(n, &file)) {
            // Stalled past the grace before our hold, we were taken for an
            // abandoned file and replaced: the name is somebody else's.
            return Err(Error::Busy {
                segment: n.to_owned(),
                by: "another creator, which replaced this one's file",
            });
        }
        // SAFETY: `fd` is open.
        if unsafe { libc::ftruncate(fd, total as libc::off_t) } != 0 {
            return Err(cleanup(io_err("ftruncate", &dname)));
        }
        // Reserve the pages now, so a full /dev/shm is an error here rather
        // than a SIGBUS on first touch.
        // SAFETY: `fd` is open.
        let rc = unsafe { libc::posix_fallocate(fd, 0, total as libc::off_t) };
        if rc != 0 {
            let e = if rc == libc::ENOSPC {
                Error::NoSpace {
                    segment: dname.clone(),
                    bytes: total as u64,
                }
            } else {
                Error::Io {
                    op: "posix_fallocate",
                    segment: dname.clone(),
                    source: std::io::Error::from_raw_os_error(rc),
                }
            };
            return Err(cleanup(e));
        }
        if name.is_none() {
            // A memfd can be sealed: no peer can shrink it under our
            // mapping (which would be a SIGBUS here).
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            // SAFETY: `fd` is an open memfd created with ALLOW_SEALING.
            if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
                return Err(io_err("fcntl(F_ADD_SEALS)", &dname));
            }
        }
        let map = memmap2::MmapOptions::new()
            .len(total)
            .map_raw(&file)
            .map_err(|source| {
                cleanup(Error::Io {
                    op: "mmap",
                    segment: dname.clone(),
                    source,
                })
            })?;
        let region = Region::from_map(map);
        let mut header = Header::new(
            spec.kind,
            total as u64,
            spec.param_a,
            spec.param_b,
            spec.peer_slots,
        );
        header.checksum = header.compute_checksum();
        header::stamp(&region, &header);
        let mut seg = Segment {
            region,
            file,
            lock,
            name: name.map(str::to_owned),
            header,
            // From here on, dropping `seg` on an error removes the name
            // (its creator is its only holder).
            held: true,
            keep: Some(keep_nothing),
            pid: std::process::id(),
        };
        init(&seg)?;
        crate::failpoint::failpoint!("segment.before_ready");
        header::publish(&seg.region, &seg.header);
        seg.header.state = header::READY;
        Ok(seg)
    }

    /// Open a named segment and validate it as `kind`. A segment whose
    /// every holder is gone and one of which died attached is
    /// [`Error::Stale`].
    pub(crate) fn open(name: &str, kind: Kind, validate: Validator) -> Result<Segment> {
        Self::open_named(name, kind, validate, true, Instant::now() + READY_WAIT)
    }

    /// [`open`](Self::open) for `open_or_create`: `Mismatch` unless the
    /// header's `(param_a, param_b)` are `want`; `describe` words a pair
    /// for the error. Checked before any attach.
    pub(crate) fn open_matching(
        name: &str,
        kind: Kind,
        validate: Validator,
        want: (u64, u64),
        describe: impl Fn(u64, u64) -> String,
    ) -> Result<Segment> {
        let seg = Self::open(name, kind, validate)?;
        let found = (seg.header.param_a, seg.header.param_b);
        if found != want {
            return Err(Error::Mismatch {
                segment: name.to_owned(),
                detail: format!(
                    "{}, {} asked for",
                    describe(found.0, found.1),
                    describe(want.0, want.1)
                ),
            });
        }
        Ok(seg)
    }

    /// [`open`](Self::open), waiting until `deadline` (`None`: forever) for
    /// the name to appear and be READY, and for a stale segment of that
    /// name to be replaced by its next creator.
    pub(crate) fn open_wait(
        name: &str,
        kind: Kind,
        validate: Validator,
        deadline: Option<Instant>,
    ) -> Result<Segment> {
        let mut pause = Duration::from_millis(1);
        loop {
            let ready_by = match deadline {
                Some(d) => d.min(Instant::now() + READY_WAIT),
                None => Instant::now() + READY_WAIT,
            };
            match Self::open_named(name, kind, validate, true, ready_by) {
                Err(Error::NotFound { .. } | Error::NotReady { .. } | Error::Stale { .. })
                    if deadline.is_none_or(|d| Instant::now() < d) => {}
                other => return other,
            }
            let left = deadline.map_or(pause, |d| d.saturating_duration_since(Instant::now()));
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// [`open`](Self::open) without taking the hold byte: for a look that
    /// must not keep `rm`/`gc` from removing the segment (`inspect`; a
    /// mapping outlives the name, so the look needs no protection).
    pub(crate) fn open_unheld(name: &str, kind: Kind, validate: Validator) -> Result<Segment> {
        Self::open_named(name, kind, validate, false, Instant::now() + READY_WAIT)
    }

    fn open_named(
        name: &str,
        kind: Kind,
        validate: Validator,
        hold: bool,
        ready_by: Instant,
    ) -> Result<Segment> {
        let file = open_existing(name)?;
        let seg = Self::from_file(file, Some(name), Some(kind), validate, hold, ready_by)?;
        if hold && seg.is_stale()? {
            return Err(Error::Stale {
                segment: name.to_owned(),
            });
        }
        Ok(seg)
    }

    /// Open the segment behind `fd` (a memfd inherited from a parent, or a
    /// named segment's fd). The fd is re-opened through `/proc/self/fd`, so
    /// this handle gets its own open file description (its own peer lock).
    pub(crate) fn open_fd(fd: BorrowedFd<'_>, kind: Kind, validate: Validator) -> Result<Segment> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Io {
                op: "open /proc/self/fd",
                segment: "<anonymous>".into(),
                source,
            })?;
        check_seals(&file, fd)?;
        let mut seg = Self::from_file(
            file,
            None,
            Some(kind),
            validate,
            true,
            Instant::now() + READY_WAIT,
        )?;
        // A named segment passed by fd keeps its name: its handles take
        // part in removing it when the last one goes. Read once we hold
        // it (nobody removes a held name), and only if it names this file.
        seg.name = shm_name_of(fd).filter(|n| names_file(n, &seg.file));
        Ok(seg)
    }

    fn from_file(
        file: File,
        name: Option<&str>,
        kind: Option<Kind>,
        validate: Validator,
        hold: bool,
        ready_by: Instant,
    ) -> Result<Segment> {
        let dname = display_name(name).to_owned();
        let invalid = |field: &'static str, detail: String| Error::Invalid {
            segment: dname.clone(),
            field,
            detail,
        };
        let lock = private_ofd(&file, &dname)?;
        if hold {
            take_hold(&lock, &dname)?;
        }
        if hold && name.is_some() && file.metadata().is_ok_and(|m| m.nlink() == 0) {
            // `rm`/`gc` removed the name between our shm_open and our hold.
            return Err(Error::NotFound { segment: dname });
        }
        let header = wait_ready(&file, &dname, ready_by)?;
        // Read once (above), validate the copy, then use only the copy.
        if header.magic != MAGIC {
            return Err(invalid(
                "magic",
                format!(
                    "found {:#018x}, expected {MAGIC:#018x}: not a ringway segment",
                    header.magic
                ),
            ));
        }
        if header.version != VERSION {
            return Err(invalid(
                "version",
                format!(
                    "found {}, this build reads version {VERSION}",
                    header.version
                ),
            ));
        }
        if header.checksum != header.compute_checksum() {
            return Err(invalid(
                "checksum",
                format!(
                    "found {:#018x}, the fields give {:#018x}",
                    header.checksum,
                    header.compute_checksum()
                ),
            ));
        }
        if let Some(kind) = kind.filter(|k| header.kind != *k as u32) {
            let found = Kind::from_code(header.kind).map_or("unknown", Kind::name);
            return Err(invalid(
                "kind",
                format!(
                    "found {} ({found}), expected {} ({})",
                    header.kind,
                    kind as u32,
                    kind.name()
                ),
            ));
        }
        let size = file_size(&file, &dname)?;
        if header.total_size != size {
            return Err(invalid(
                "total_size",
                format!(
                    "header says {} bytes, the file has {size}",
                    header.total_size
                ),
            ));
        }
        if header.peer_slots == 0 || header.peer_slots > 4096 {
            return Err(invalid(
                "peer_slots",
                format!("{} is not in 1..=4096", header.peer_slots),
            ));
        }
        if (header.total_size as usize) < header.kind_off() {
            return Err(invalid(
                "total_size",
                format!("{} leaves no room for the peer table", size),
            ));
        }
        validate(&header).map_err(|(field, detail)| invalid(field, detail))?;
        let map = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|source| Error::Io {
                op: "mmap",
                segment: dname.clone(),
                source,
            })?;
        let seg = Segment {
            region: Region::from_map(map),
            file,
            lock,
            name: name.map(str::to_owned),
            header,
            held: hold,
            keep: None,
            pid: std::process::id(),
        };
        if seg.poisoned() {
            return Err(Error::Corrupted {
                segment: dname,
                detail: "a process using it found it corrupted".into(),
            });
        }
        Ok(seg)
    }

    /// Whether this is a copy of a handle in a child made by `fork`: the
    /// parent's handle, whose drop here must change nothing the parent
    /// shares (see `fork.rs`).
    pub(crate) fn forked_copy(&self) -> bool {
        std::process::id() != self.pid
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }
    /// The name, or `<anonymous>`.
    pub(crate) fn name(&self) -> &str {
        display_name(self.name.as_deref())
    }
    /// The file's (device, inode): names things that belong to this
    /// segment, like a doorbell FIFO.
    pub(crate) fn identity(&self) -> (u64, u64) {
        self.file.metadata().map_or((0, 0), |m| (m.dev(), m.ino()))
    }

    /// The open file description the peer locks go through (private).
    pub(crate) fn lock_file(&self) -> &File {
        &self.lock
    }
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
    /// Set the kind's keep rule, asked by the last holder as it leaves;
    /// from now on this handle, if it is the last holder, removes the name
    /// (or keeps it, as the rule says).
    pub(crate) fn set_keep(&mut self, keep: Keep) {
        self.keep = Some(keep);
    }

    /// Whether the segment is stale: a peer died attached and none is
    /// alive. Its session is over; `create` replaces it.
    fn is_stale(&self) -> Result<bool> {
        let mut died = false;
        for slot in 0..self.header.peer_slots {
            match crate::peer::liveness(self, slot)? {
                crate::peer::Liveness::Alive => return Ok(false),
                crate::peer::Liveness::Dead => {
                    died |= crate::peer::state(self, slot)? == crate::peer::ACTIVE
                }
                _ => {}
            }
        }
        Ok(died)
    }

    fn alive(&self, slot: u32) -> bool {
        crate::peer::liveness(self, slot).is_ok_and(|l| l == crate::peer::Liveness::Alive)
    }

    fn any_alive(&self) -> bool {
        (0..self.header.peer_slots).any(|s| self.alive(s))
    }

    /// The pids recorded by the live peers (display only).
    fn live_pids(&self) -> Vec<u32> {
        (0..self.header.peer_slots)
            .filter(|&s| self.alive(s))
            .map(|s| crate::peer::display_fields(self, s).0)
            .collect()
    }

    /// As the handle goes: if it is the last holder, remove the name,
    /// unless the kind keeps the segment for a reader yet to come.
    fn release_name(&self, name: &str) {
        // Closers one at a time (the kernel drops the gate of a closer that
        // dies); a gate held past the deadline leaves the name to `gc`.
        let deadline = Instant::now() + READY_WAIT;
        if !lock_polling(&self.lock, libc::F_WRLCK, GATE_BYTE, deadline).unwrap_or(false) {
            return;
        }
        // Upgrading our shared hold is granted only when nobody else holds
        // the segment; refused, we keep the shared lock until below. A
        // holder that is no attached peer is opening (or failing to open)
        // it: we wait a little for it to attach or let go, so a failed
        // opener cannot leave the name behind.
        let transient_until = Instant::now() + TRANSIENT_WAIT;
        let last = loop {
            if ofd_lock(&self.lock, libc::F_OFD_SETLK, libc::F_WRLCK, HOLD_BYTE, 1).is_ok() {
                break true;
            }
            // (A counter map's handles take no peer slot: every other
            // holder of one may be a user; no wait.)
            if Instant::now() >= transient_until
                || self.header.kind == Kind::Counters as u32
                || self.any_alive()
            {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // A poisoned segment holds nothing a later reader could trust.
        if last
            && self.keep.is_some_and(|k| self.poisoned() || !k(self))
            && names_file(name, &self.file)
        {
            let _ = unlink(name);
        }
        // The hold goes before the gate: the next closer must see us gone.
        let _ = ofd_lock(&self.lock, libc::F_OFD_SETLK, libc::F_UNLCK, HOLD_BYTE, 1);
        let _ = ofd_lock(&self.lock, libc::F_OFD_SETLK, libc::F_UNLCK, GATE_BYTE, 1);
    }
    /// Whether some holder found the segment corrupted.
    fn poisoned(&self) -> bool {
        self.region
            .u32_at(crate::header::POISON_OFF)
            // ORDERING: Relaxed — see `corrupted`.
            .is_some_and(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// Give an error from a ring core (which does not know the name) the
    /// segment's name.
    pub(crate) fn named(&self, e: Error) -> Error {
        match e {
            Error::Corrupted { detail, .. } => self.corrupted(detail),
            other => other,
        }
    }

    /// A corruption this holder found: the segment is poisoned (see
    /// [`POISON_OFF`](crate::header::POISON_OFF)), so it outlives nobody.
    pub(crate) fn corrupted(&self, detail: impl Into<String>) -> Error {
        if let Some(w) = self.region.u32_at(crate::header::POISON_OFF) {
            // ORDERING: Relaxed — a flag read by the last holder and by
            // openers, who act on nothing else it would order.
            w.fetch_or(1, Ordering::Relaxed);
        }
        Error::Corrupted {
            segment: self.name().to_owned(),
            detail: detail.into(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.forked_copy() {
            return; // the parent's handle, not ours to release
        }
        if let (true, Some(_), Some(n)) = (self.held, self.keep, &self.name) {
            self.release_name(n);
        }
    }
}

/// The keep rule of a kind that keeps nothing (and of a creator before
/// its kind has set one): the last holder removes the name.
pub(crate) fn keep_nothing(_: &Segment) -> bool {
    false
}

/// When a wait of `timeout` from now ends; `None` (forever) when that is
/// past what an `Instant` can hold (`Duration::MAX`).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Open the segment if it exists (or is kept), else create it; a stale one
/// is replaced. `open` checks the parameters before it attaches. Races
/// with other openers and creators settle within a few rounds.
pub(crate) fn open_or_create<H>(
    name: &str,
    open: impl Fn() -> Result<H>,
    create: impl Fn() -> Result<H>,
) -> Result<H> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        match open() {
            Err(Error::NotFound { .. } | Error::Stale { .. }) => match create() {
                Err(Error::AlreadyExists { .. }) if Instant::now() < deadline => {}
                other => return other,
            },
            other => return other,
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy {
                segment: name.to_owned(),
                by: "processes creating and removing it in turn",
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Open an existing named segment's file.
fn open_existing(name: &str) -> Result<File> {
    let c = validate_name(name)?;
    let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `c` is a valid NUL-terminated string.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0) };
    if fd < 0 {
        return Err(shm_error("shm_open", name));
    }
    // SAFETY: `fd` was just returned by shm_open.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `shm_open(O_CREAT | O_EXCL)` the name; if it exists and is stale (no
/// process holds it), replace it. `AlreadyExists` names the live holders.
fn create_exclusive(name: &str, mode: u32) -> Result<File> {
    let c = validate_name(name)?;
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let flags =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::mode_t) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by shm_open and is owned by
            // nobody else.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::Io {
                op: "shm_open",
                segment: name.to_owned(),
                source: e,
            });
        }
        match remove_if_stale(name)? {
            Existing::Removed => continue,
            Existing::Held(pids) if !pids.is_empty() || Instant::now() >= deadline => {
                return Err(Error::AlreadyExists {
                    segment: name.to_owned(),
                    pids,
                })
            }
            // Held only by someone opening or creating it: look again.
            Existing::Held(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// What [`remove_if_stale`] found.
enum Existing {
    /// It was stale (or vanished): the name is free now.
    Removed,
    /// Held: by these live peers (none recorded: a process opening it, or
    /// a creator that has not attached yet).
    Held(Vec<u32>),
}

/// Remove the existing segment `name` if no process holds it: every
/// handle holds [`HOLD_BYTE`] from the moment it opens or creates the
/// file, so an unheld file's holders are all gone (exited or died). A file
/// that is not a ringway segment is never touched.
fn remove_if_stale(name: &str) -> Result<Existing> {
    let file = match open_existing(name) {
        Err(Error::NotFound { .. }) => return Ok(Existing::Removed),
        other => other?,
    };
    let lock = private_ofd(&file, name)?;
    match ofd_lock(&lock, libc::F_OFD_SETLK, libc::F_WRLCK, HOLD_BYTE, 1) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
            let pids =
                Segment::from_file(file, Some(name), None, |_| Ok(()), false, Instant::now())
                    .map(|s| s.live_pids())
                    .unwrap_or_default();
            return Ok(Existing::Held(pids));
        }
        Err(source) => {
            return Err(Error::Io {
                op: "fcntl(F_OFD_SETLK)",
                segment: name.to_owned(),
                source,
            })
        }
    }
    let meta = file.metadata().map_err(|source| Error::Io {
        op: "fstat",
        segment: name.to_owned(),
        source,
    })?;
    if meta.len() < size_of::<Header>() as u64 {
        // No header yet: a creator between its shm_open and its hold, or
        // one that died there.
        let age = std::time::SystemTime::now()
            .duration_since(meta.modified().unwrap_or(std::time::UNIX_EPOCH))
            .unwrap_or_default();
        if age < INIT_GRACE {
            return Ok(Existing::Held(Vec::new()));
        }
    } else {
        let mut magic = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut magic, 0).map_err(|source| {
            Error::Io {
                op: "pread",
                segment: name.to_owned(),
                source,
            }
        })?;
        if u64::from_ne_bytes(magic) != MAGIC {
            return Err(Error::Invalid {
                segment: name.to_owned(),
                field: "magic",
                detail: "the name is taken by a file that is not a ringway segment; not replaced"
                    .into(),
            });
        }
    }
    if names_file(name, &file) {
        match unlink(name) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Existing::Removed)
}

/// Whether `/dev/shm/<name>` is still `file` (not removed, not replaced).
fn names_file(name: &str, file: &File) -> bool {
    let (Ok(ours), Ok(there)) = (
        file.metadata(),
        std::fs::symlink_metadata(format!("/dev/shm/{name}")),
    ) else {
        return false;
    };
    (ours.dev(), ours.ino()) == (there.dev(), there.ino())
}

/// The name of the named segment behind `fd`, if it is one (and still
/// named): `/proc/self/fd` shows `/dev/shm/<name>`.
fn shm_name_of(fd: BorrowedFd<'_>) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let name = link.to_str()?.strip_prefix("/dev/shm/")?;
    if name.ends_with(" (deleted)") || validate_name(name).is_err() {
        return None;
    }
    Some(name.to_owned())
}

/// A memfd handed to us must be sealed against shrinking (ours are, at
/// creation): otherwise whoever else holds it could truncate it under our
/// mapping, a SIGBUS here. (A named segment cannot be sealed; its file is
/// protected by its permissions, see the crate's safety model.)
fn check_seals(file: &File, fd: BorrowedFd<'_>) -> Result<()> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    if !link.to_string_lossy().starts_with("/memfd:") {
        return Ok(());
    }
    // SAFETY: F_GET_SEALS on an open fd touches no memory of ours.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(Error::Invalid {
            segment: "<anonymous>".into(),
            field: "seals",
            detail:
                "the memfd is not sealed against shrinking; it could be truncated under the mapping"
                    .into(),
        });
    }
    Ok(())
}

/// A new open file description of `file` (through `/proc/self/fd`),
/// close-on-exec.
fn private_ofd(file: &File, dname: &str) -> Result<crate::fork::LockFile> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map(crate::fork::LockFile::new)
        .map_err(|source| Error::Io {
            op: "open /proc/self/fd",
            segment: dname.to_owned(),
            source,
        })
}

/// `fcntl(cmd)` with an OFD lock of type `l_type` on `len` bytes of `file`
/// from `start`: the filled-in `flock` (the conflicting lock, for
/// `F_OFD_GETLK`).
pub(crate) fn ofd_lock(
    file: &File,
    cmd: libc::c_int,
    l_type: libc::c_int,
    start: u64,
    len: u64,
) -> std::io::Result<libc::flock> {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: `file`'s fd is open for the duration of the call; `fl` is a
    // valid flock that outlives it.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if rc == 0 {
        Ok(fl)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Lock `byte` of `file` (`l_type`: shared or exclusive) through its OFD,
/// retrying every millisecond while another OFD holds it, until
/// `deadline`: `Ok(false)` if it was still held then.
fn lock_polling(
    file: &File,
    l_type: libc::c_int,
    byte: u64,
    deadline: Instant,
) -> std::io::Result<bool> {
    loop {
        match ofd_lock(file, libc::F_OFD_SETLK, l_type, byte, 1) {
            Ok(_) => return Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Take the shared lock on [`HOLD_BYTE`] through `lock`, waiting (bounded)
/// while a remover holds it exclusively.
fn take_hold(lock: &File, dname: &str) -> Result<()> {
    match lock_polling(lock, libc::F_RDLCK, HOLD_BYTE, Instant::now() + READY_WAIT) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Busy {
            segment: dname.to_owned(),
            by: "a process removing it (`ringway rm` or `gc`)",
        }),
        Err(source) => Err(Error::Io {
            op: "fcntl(F_OFD_SETLK)",
            segment: dname.to_owned(),
            source,
        }),
    }
}

fn file_size(file: &File, dname: &str) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|source| Error::Io {
            op: "fstat",
            segment: dname.to_owned(),
            source,
        })
}

/// Wait (bounded) until the file holds a header whose `state` is `READY`,
/// and return a copy of it.
fn wait_ready(file: &File, dname: &str, deadline: Instant) -> Result<Header> {
    loop {
        let size = file_size(file, dname)?;
        if size >= size_of::<Header>() as u64 {
            let map = memmap2::MmapOptions::new()
                .len(size_of::<Header>())
                .map_raw_read_only(file)
                .map_err(|source| Error::Io {
                    op: "mmap",
                    segment: dname.to_owned(),
                    source,
                })?;
            if let Some(h) = header::read_if_ready(&Region::from_map(map)) {
                return Ok(h);
            }
        } else if size > 0 {
            // A creator sizes the file in one ftruncate: 0 or everything.
            return Err(Error::Invalid {
                segment: dname.to_owned(),
                field: "total_size",
                detail: format!("the file has {size} bytes, less than a header"),
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                segment: dname.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("ok-name_1").is_ok());
        for bad in ["", "a/b", ".", "..", "nul\0x"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_name(&"x".repeat(201)).is_err());
    }
}
