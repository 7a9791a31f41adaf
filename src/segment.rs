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
    /// `file` cannot keep this handle's lock alive after it dies.
    lock: File,
    name: Option<String>,
    header: Header,
    unlink_on_drop: bool,
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
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Err(Error::NotFound {
                segment: name.to_owned(),
            });
        }
        return Err(Error::Io {
            op: "shm_unlink",
            segment: name.to_owned(),
            source: e,
        });
    }
    Ok(())
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
            Some(n) => {
                let c = validate_name(n)?;
                let flags = libc::O_RDWR
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC;
                // SAFETY: `c` is a valid NUL-terminated string.
                let fd = unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::mode_t) };
                if fd < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        return Err(Error::AlreadyExists { segment: dname });
                    }
                    return Err(Error::Io {
                        op: "shm_open",
                        segment: dname,
                        source: e,
                    });
                }
                // SAFETY: `fd` was just returned by shm_open and is owned
                // by nobody else.
                File::from(unsafe { OwnedFd::from_raw_fd(fd) })
            }
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
            if let Some(n) = name {
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
            // From here on, dropping `seg` on an error removes the name.
            unlink_on_drop: name.is_some(),
        };
        init(&seg)?;
        crate::failpoint::failpoint!("segment.before_ready");
        header::publish(&seg.region, &seg.header);
        seg.header.state = header::READY;
        Ok(seg)
    }

    /// Open a named segment and validate it as `kind`.
    pub(crate) fn open(name: &str, kind: Kind, validate: Validator) -> Result<Segment> {
        Self::open_named(name, kind, validate, true)
    }

    /// [`open`](Self::open) without taking the hold byte: for a look that
    /// must not keep `rm`/`gc` from removing the segment (`inspect`; a
    /// mapping outlives the name, so the look needs no protection).
    pub(crate) fn open_unheld(name: &str, kind: Kind, validate: Validator) -> Result<Segment> {
        Self::open_named(name, kind, validate, false)
    }

    fn open_named(name: &str, kind: Kind, validate: Validator, hold: bool) -> Result<Segment> {
        let c = validate_name(name)?;
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Err(Error::NotFound {
                    segment: name.to_owned(),
                });
            }
            return Err(Error::Io {
                op: "shm_open",
                segment: name.to_owned(),
                source: e,
            });
        }
        // SAFETY: `fd` was just returned by shm_open.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Self::from_file(file, Some(name), kind, validate, hold)
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
        Self::from_file(file, None, kind, validate, true)
    }

    fn from_file(
        file: File,
        name: Option<&str>,
        kind: Kind,
        validate: Validator,
        hold: bool,
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
        let header = wait_ready(&file, &dname)?;
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
        if header.kind != kind as u32 {
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
        Ok(Segment {
            region: Region::from_map(map),
            file,
            lock,
            name: name.map(str::to_owned),
            header,
            unlink_on_drop: false,
        })
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
    /// Whether dropping this handle removes the name (the creator's does).
    pub(crate) fn set_unlink_on_drop(&mut self, yes: bool) {
        self.unlink_on_drop = yes && self.name.is_some();
    }
    /// Give an error from a ring core (which does not know the name) the
    /// segment's name.
    pub(crate) fn named(&self, e: Error) -> Error {
        match e {
            Error::Corrupted { detail, .. } => self.corrupted(detail),
            other => other,
        }
    }

    pub(crate) fn corrupted(&self, detail: impl Into<String>) -> Error {
        Error::Corrupted {
            segment: self.name().to_owned(),
            detail: detail.into(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            if let Some(n) = &self.name {
                let _ = unlink(n);
            }
        }
    }
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
fn private_ofd(file: &File, dname: &str) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
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

/// Take the shared lock on [`HOLD_BYTE`] through `lock`, waiting (bounded)
/// while a remover holds it exclusively.
fn take_hold(lock: &File, dname: &str) -> Result<()> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        match ofd_lock(lock, libc::F_OFD_SETLK, libc::F_RDLCK, HOLD_BYTE, 1) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
            Err(source) => {
                return Err(Error::Io {
                    op: "fcntl(F_OFD_SETLK)",
                    segment: dname.to_owned(),
                    source,
                })
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy {
                segment: dname.to_owned(),
                by: "a process removing it (`ringway rm` or `gc`)",
            });
        }
        std::thread::sleep(Duration::from_millis(1));
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
fn wait_ready(file: &File, dname: &str) -> Result<Header> {
    let deadline = Instant::now() + READY_WAIT;
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
