//! The spsc handles: [`Producer`], [`Consumer`] and their guards.

use super::ring;
use crate::error::{Error, RecvError, Result, SendError};
use crate::failpoint::failpoint;
use crate::header::{Header, Kind, CLOSED_OFF, REAPED_OFF};
use crate::options::Options;
use crate::peer::{self, Liveness};
use crate::segment::{self, Segment, Spec};
use crate::sync::Ordering;
use crate::wait::{Backoff, Next, Until, WaitStrategy};
use ring::{ConsumerCore, Layout, ProducerCore, CONSUMER_CLOSED, PRODUCER_CLOSED};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

/// Peer slot (and role code) of the producer.
const PRODUCER_SLOT: u32 = 0;
/// Peer slot (and role code) of the consumer.
const CONSUMER_SLOT: u32 = 1;
/// Round a requested capacity up to a power of two in range.
pub(crate) fn data_capacity(capacity: usize) -> Result<u64> {
    crate::size::pow2_in(
        "capacity (bytes)",
        capacity,
        ring::MIN_CAPACITY,
        ring::MAX_CAPACITY,
    )
}

fn spec(cap: u64) -> Spec {
    Spec {
        kind: Kind::Spsc,
        param_a: cap,
        param_b: 0,
        peer_slots: 2,
        kind_size: Layout::area_size(cap),
    }
}

/// The spsc parameters check of `segment::open`.
pub(crate) fn validate(h: &Header) -> std::result::Result<(), (&'static str, String)> {
    let cap = h.param_a;
    if !cap.is_power_of_two() || !(ring::MIN_CAPACITY..=ring::MAX_CAPACITY).contains(&cap) {
        return Err((
            "param_a",
            format!("capacity {cap} is not a power of two in 32..=2^32"),
        ));
    }
    if h.peer_slots != 2 {
        return Err((
            "peer_slots",
            format!("{} (an spsc ring has 2)", h.peer_slots),
        ));
    }
    if h.param_b != 0 {
        return Err((
            "param_b",
            format!("{} (unused by spsc, must be 0)", h.param_b),
        ));
    }
    let want = h.kind_off() as u64 + Layout::area_size(cap) as u64;
    if h.total_size != want {
        return Err((
            "total_size",
            format!("{} bytes, but capacity {cap} needs {want}", h.total_size),
        ));
    }
    Ok(())
}

pub(crate) fn layout(seg: &Segment) -> Layout {
    Layout::in_segment(seg.header().kind_off(), CLOSED_OFF, seg.header().param_a)
}

/// Where the doorbell FIFO of the ring at `lay` in `seg` lives: derived
/// from the segment file's identity (device, inode) and the ring's offset,
/// never from anything in shared memory.
fn bell_path(seg: &Segment, lay: &Layout) -> std::path::PathBuf {
    let (dev, ino) = seg.identity();
    format!("/dev/shm/ringway-bell-{dev:x}-{ino}-{}", lay.data).into()
}

/// A consumer's doorbell: a FIFO it reads (and can ring itself).
#[derive(Debug)]
struct Bell {
    read: std::fs::File,
    write: std::fs::File,
    path: std::path::PathBuf,
}

impl Bell {
    fn open(path: std::path::PathBuf) -> Result<Bell> {
        use std::os::unix::ffi::OsStrExt;
        let io = |op, source| Error::Io {
            op,
            segment: path.display().to_string(),
            source,
        };
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io("mkfifo", e));
            }
        }
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
        };
        let read = open(false).map_err(|e| io("open doorbell", e))?;
        let write = open(true).map_err(|e| io("open doorbell", e))?;
        Ok(Bell { read, write, path })
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut self.read, &mut buf), Ok(n) if n > 0) {}
    }

    fn ring(&mut self) {
        let _ = std::io::Write::write(&mut self.write, &[1]);
    }
}

/// Attach `slot` of `seg` for this handle, refusing an end in use or used
/// before.
pub(crate) fn attach(seg: &Segment, slot: u32) -> Result<()> {
    let role = if slot == PRODUCER_SLOT {
        "producer"
    } else {
        "consumer"
    };
    crate::wait::register_process();
    let segment = seg.name().to_owned();
    match peer::attach(seg, slot, slot)? {
        peer::Attach::Attached => Ok(()),
        peer::Attach::InUse => Err(Error::InUse { segment, role }),
        peer::Attach::UsedBefore => Err(Error::Closed { segment, role }),
    }
}

/// If the peer in `slot` died, reap it: set `bit` in the ring's `closed`
/// word, count it. Returns whether it is gone (closed or dead).
fn check_peer(seg: &Segment, slot: u32, lay: &Layout, bit: u32) -> Result<bool> {
    match peer::liveness(seg, slot)? {
        Liveness::Vacant | Liveness::Alive => Ok(false),
        Liveness::Closed => Ok(true),
        Liveness::Dead => {
            if peer::mark_dead(seg, slot)? {
                if let Some(w) = seg.region().u32_at(REAPED_OFF) {
                    // ORDERING: Relaxed — a statistic.
                    w.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Called by the waiting side itself: no doorbell to ring.
            let _ = ring::close(seg.region(), lay, bit);
            Ok(true)
        }
    }
}

/// The spsc keep rule: a ring whose consumer has never come and that
/// holds unread messages outlives its last holder, so a consumer started
/// after the producer finished still gets them.
fn keep(seg: &Segment) -> bool {
    peer::state(seg, CONSUMER_SLOT).is_ok_and(|s| s == peer::FREE)
        && ring::unread(seg.region(), &layout(seg))
}

/// Open the named ring (not attached yet) if its capacity is `cap`.
fn open_matching(name: &str, cap: u64) -> Result<Segment> {
    Segment::open_matching(name, Kind::Spsc, validate, (cap, 0), |c, _| {
        format!("capacity {c} bytes")
    })
}

/// Create a ring, attached as `slot` before it is READY (no opener can
/// take the creator's end first).
fn create_segment(name: Option<&str>, capacity: usize, slot: u32, mode: u32) -> Result<Segment> {
    Segment::create_with(name, spec(data_capacity(capacity)?), mode, &|seg| {
        attach(seg, slot)
    })
}

/// The data bytes an spsc ring (or each direction of a pipe) needs to hold
/// `count` messages of up to `size` bytes all at once: their frames, plus
/// one frame of slack for the padding where the ring wraps, and at least
/// twice the largest message (a message may be half the ring, less 8).
/// `create` rounds it up to a power of two. `InvalidArgument` if it
/// overflows or exceeds the largest ring.
pub fn ring_bytes_for(count: usize, size: usize) -> Result<usize> {
    let too_big = || {
        Error::InvalidArgument(format!(
            "room for {count} messages of {size} bytes: more than a ring's {} bytes",
            ring::MAX_CAPACITY
        ))
    };
    let size = u64::try_from(size).map_err(|_| too_big())?;
    if size > ring::MAX_CAPACITY {
        return Err(too_big());
    }
    let frame = ring::frame_len(size);
    let frames = u64::try_from(count)
        .ok()
        .and_then(|n| n.checked_add(1))
        .and_then(|n| n.checked_mul(frame))
        .ok_or_else(too_big)?;
    let bytes = frames.max(2 * (size + ring::FRAME_HEADER));
    if bytes > ring::MAX_CAPACITY {
        return Err(too_big());
    }
    Ok(bytes as usize)
}

/// An spsc end for [`Options`]: the kind's hooks (see `options.rs`).
macro_rules! spsc_handle {
    ($t:ident, $slot:expr) => {
        // The seal's hooks take crate-private types: nobody outside can
        // name them (see `options::sealed`).
        #[allow(private_interfaces)]
        impl crate::options::Sealed for $t {
            const KIND: Kind = Kind::Spsc;
            const VALIDATE: segment::Validator = validate;
            fn create_segment(name: Option<&str>, o: &Options) -> Result<Segment> {
                create_segment(name, o.ring_bytes()?, $slot, o.mode_bits())
            }
            fn open_matching(name: &str, o: &Options) -> Result<Segment> {
                open_matching(name, data_capacity(o.ring_bytes()?)?)
            }
            fn from_segment(seg: Segment, created: bool, o: &Options) -> Result<$t> {
                let mut h = $t::from_segment(seg, created)?;
                h.strategy = o.strategy();
                Ok(h)
            }
        }
        impl crate::options::Handle for $t {}
    };
}
spsc_handle!(Producer, PRODUCER_SLOT);
spsc_handle!(Consumer, CONSUMER_SLOT);

/// The sending end of an spsc ring. `Send`, not `Sync`, not `Clone`.
///
/// ```compile_fail
/// fn is_clone<T: Clone>() {}
/// is_clone::<ringway::spsc::Producer>();
/// ```
#[derive(Debug)]
pub struct Producer {
    seg: Arc<Segment>,
    /// The peer slot this handle owns (and detaches on drop), if any: a
    /// pipe's halves share their end's slot.
    own_slot: Option<u32>,
    /// The consumer's peer slot.
    peer_slot: u32,
    core: ProducerCore,
    strategy: WaitStrategy,
    /// When a non-blocking call may check the consumer's liveness again.
    peer_check_at: std::cell::Cell<Option<std::time::Instant>>,
    /// The write end of the consumer's doorbell FIFO, once needed.
    bell: Option<std::fs::File>,
    _not_sync: NotSync,
}

/// The receiving end of an spsc ring. `Send`, not `Sync`, not `Clone`.
///
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<ringway::spsc::Consumer>();
/// ```
#[derive(Debug)]
pub struct Consumer {
    seg: Arc<Segment>,
    /// The peer slot this handle owns (and detaches on drop), if any.
    own_slot: Option<u32>,
    /// The producer's peer slot.
    peer_slot: u32,
    core: ConsumerCore,
    strategy: WaitStrategy,
    /// When a non-blocking call may check the producer's liveness again.
    peer_check_at: std::cell::Cell<Option<std::time::Instant>>,
    /// The doorbell, once asked for.
    bell: Option<Bell>,
    _not_sync: NotSync,
}

/// A `!Sync` marker: a handle's process-local positions must not be shared.
type NotSync = std::marker::PhantomData<std::cell::Cell<()>>;

/// A ring with both ends in this process (an anonymous memfd segment), for
/// threads. For a child process, do not fork or pass these handles: create
/// one end with [`Producer::create_anonymous`] (or a named ring), hand the
/// child [`Producer::segment_fd`], and let it attach the other end with
/// [`Consumer::from_fd`]. An end is attached once, so a handle copied by
/// `fork` and dropped in the child would close the parent's end.
pub fn channel(capacity: usize) -> Result<(Producer, Consumer)> {
    let tx = Options::new()
        .capacity_bytes(capacity)
        .create_anonymous::<Producer>()?;
    let rx = Consumer::from_fd(tx.segment_fd())?;
    Ok((tx, rx))
}

impl Producer {
    /// Create the named ring with `capacity` data bytes (rounded up to a
    /// power of two, at least 32) and attach as its producer. A segment
    /// of that name that nobody holds any more is replaced. The name goes
    /// with the last holder (kept while unread messages wait for a
    /// consumer that has not come yet); the ring lives on for processes
    /// that have it open.
    pub fn create(name: &str, capacity: usize) -> Result<Producer> {
        Options::new().capacity_bytes(capacity).create(name)
    }

    /// Create an anonymous ring (a memfd): share it through
    /// [`segment_fd`](Self::segment_fd).
    pub fn create_anonymous(capacity: usize) -> Result<Producer> {
        Options::new().capacity_bytes(capacity).create_anonymous()
    }

    /// Open the named ring as its producer, now: `NotFound` if there is no
    /// such ring yet (see [`open_wait`](Self::open_wait)).
    pub fn open(name: &str) -> Result<Producer> {
        Options::new().open(name)
    }

    /// Open the named ring as its producer, waiting as long as it takes
    /// for it to be created (a stale ring of that name is waited past:
    /// its next creator replaces it).
    pub fn open_wait(name: &str) -> Result<Producer> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout` with the
    /// last reason (`NotFound`, `NotReady` or `Stale`).
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Producer> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Open the named ring as its producer if it exists, or create it with
    /// `capacity` (which an existing ring must match, rounded as `create`
    /// rounds it, or `Mismatch`). Either side may call this first.
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Producer> {
        Options::new().capacity_bytes(capacity).open_or_create(name)
    }

    /// Open the ring behind `fd` (inherited or passed) as its producer.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Producer> {
        Options::new().from_fd(fd)
    }

    /// Let the children `cmd` spawns open this ring with
    /// [`Consumer::from_inherited`]`(key)` (or `Producer::from_inherited`
    /// once this handle is gone): its fd is inherited and named in their
    /// environment. Works for named and anonymous rings.
    ///
    /// ```no_run
    /// use ringway::spsc::{Consumer, Producer};
    /// use std::process::Command;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// if std::env::args().nth(1).as_deref() == Some("child") {
    ///     // The child: no name needed, the ring came with the process.
    ///     let mut rx = Consumer::from_inherited("JOBS")?;
    ///     for msg in rx.iter() {
    ///         println!("{}", String::from_utf8_lossy(&msg?));
    ///     }
    ///     return Ok(());
    /// }
    /// let mut tx = Producer::create_anonymous(1 << 16)?;
    /// let mut cmd = Command::new(std::env::current_exe()?);
    /// cmd.arg("child");
    /// tx.pass_to(&mut cmd, "JOBS")?;
    /// let mut child = cmd.spawn()?;
    /// tx.send(b"one job")?;
    /// drop(tx); // the child's loop ends once it has read the job
    /// child.wait()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Open the ring a parent passed with `pass_to(.., key)` as its
    /// producer.
    pub fn from_inherited(key: &str) -> Result<Producer> {
        Producer::from_fd(crate::inherit::take(key)?.as_fd())
    }

    /// A handle on `seg`; a creator's segment is attached already.
    fn from_segment(mut seg: Segment, creator: bool) -> Result<Producer> {
        if !creator {
            attach(&seg, PRODUCER_SLOT)?;
        }
        seg.set_keep(keep);
        let lay = layout(&seg);
        let mut p = Producer::half(Arc::new(seg), lay, CONSUMER_SLOT);
        p.own_slot = Some(PRODUCER_SLOT);
        Ok(p)
    }

    /// The producer half of a ring at `lay` in `seg`, whose consumer owns
    /// `peer_slot`; attaching is the caller's business.
    pub(crate) fn half(seg: Arc<Segment>, lay: Layout, peer_slot: u32) -> Producer {
        Producer {
            seg,
            own_slot: None,
            peer_slot,
            core: ProducerCore::new(lay),
            strategy: WaitStrategy::default(),
            peer_check_at: std::cell::Cell::new(None),
            bell: None,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// The segment's file descriptor (close-on-exec), to pass to a child.
    pub fn segment_fd(&self) -> BorrowedFd<'_> {
        self.seg.fd()
    }

    /// The segment's name (`<anonymous>` for a memfd).
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.core.layout().cap as usize
    }

    /// The largest message this ring takes: `capacity / 2 - 8` (so a
    /// message always fits a drained ring in one step).
    pub fn max_message_len(&self) -> usize {
        ring::max_message(self.core.layout().cap) as usize
    }

    /// Bytes of the ring in use by published messages whose space the
    /// consumer has not released yet (their frames included: messages vary
    /// in size, so the ring counts bytes, not messages). A snapshot: the
    /// consumer may be reading, and releases space in steps.
    pub fn len(&self) -> usize {
        ring::used(self.seg.region(), self.core.layout()) as usize
    }

    /// Whether no published message waits unread.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether not even an empty message fits now.
    pub fn is_full(&self) -> bool {
        ring::full(self.core.layout().cap, self.len() as u64)
    }

    /// Choose how this end waits for room (default: adaptive).
    pub fn set_wait_strategy(&mut self, s: WaitStrategy) {
        self.strategy = s;
    }

    /// What the kernel and the peer table say about the consumer.
    pub fn consumer_liveness(&self) -> Result<Liveness> {
        peer::liveness(&self.seg, self.peer_slot)
    }

    /// Send without waiting: `Full` when there is no room now.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::Now)
    }

    /// Send, waiting as long as it takes for room. Returns
    /// `Disconnected` if the consumer goes away.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::Forever)
    }

    /// Send, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::after(timeout))
    }

    #[inline]
    pub(crate) fn send_until(&mut self, msg: &[u8], until: Until) -> Result<(), SendError<()>> {
        let off = self.reserve_until(msg.len(), until)?;
        self.seg
            .region()
            .write(off, msg)
            .expect("reserve checked the bounds");
        failpoint!("spsc.before_commit");
        self.commit_publish(msg.len())
            .map_err(|e| SendError::Failed((), e))
    }

    /// Publish what is committed, ringing the consumer's doorbell if that
    /// took it.
    #[inline]
    fn publish_now(&mut self) -> Result<()> {
        let rang = self
            .core
            .publish(self.seg.region())
            .map_err(|e| self.seg.named(e))?;
        if rang {
            self.ring_bell();
        }
        Ok(())
    }

    /// Write one byte to the consumer's doorbell FIFO. Failures are
    /// ignored: a full FIFO is readable already.
    ///
    /// The FIFO is opened read-write, not write-only: then there is always
    /// a reader (this end), so a write after the consumer died can neither
    /// fail with EPIPE nor raise SIGPIPE, which kills a host program that
    /// keeps SIGPIPE at its default action (C, Python; `tests/sigpipe.rs`).
    /// Linux allows O_RDWR on a FIFO, in non-blocking mode too (fifo(7)).
    /// This end never reads; a dead consumer's bell just fills (64 KiB)
    /// and then refuses with EAGAIN, which is ignored.
    #[cold]
    fn ring_bell(&mut self) {
        if self.bell.is_none() {
            let path = bell_path(&self.seg, self.core.layout());
            self.bell = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .ok();
        }
        if let Some(f) = &mut self.bell {
            let _ = std::io::Write::write(f, &[1]);
        }
    }

    #[inline]
    fn commit_publish(&mut self, len: usize) -> Result<()> {
        let r = self.seg.region();
        self.core
            .commit(r, len as u64)
            .map_err(|e| self.seg.named(e))?;
        self.publish_now()
    }

    /// Find room for `len` bytes, waiting per `until`; the payload offset.
    #[inline(always)]
    fn reserve_until(&mut self, len: usize, until: Until) -> Result<usize, SendError<()>> {
        // Fast path: room now, consumer there. Anything else goes the slow
        // way, which re-checks all of it.
        let r = self.seg.region();
        let lay = self.core.layout();
        if len as u64 <= ring::max_message(lay.cap)
            && ring::closed_bits(r, lay) & CONSUMER_CLOSED == 0
        {
            if let Ok(Some(off)) = self.core.reserve(r, len as u64) {
                return Ok(off);
            }
        }
        self.reserve_slow(len, until)
    }

    #[inline(never)]
    fn reserve_slow(&mut self, len: usize, until: Until) -> Result<usize, SendError<()>> {
        let max = self.max_message_len();
        if len > max {
            return Err(SendError::TooLarge { msg: (), max });
        }
        let lay = *self.core.layout();
        // A handle of our own on the segment, so the loop can borrow the
        // region while it calls `&mut self` methods.
        let seg = self.seg.clone();
        let mut backoff: Option<Backoff> = None;
        loop {
            let r = seg.region();
            if ring::closed_bits(r, &lay) & CONSUMER_CLOSED != 0 {
                return Err(SendError::Disconnected(()));
            }
            match self.core.reserve(r, len as u64) {
                Ok(Some(off)) => return Ok(off),
                Ok(None) => {}
                Err(e) => return Err(SendError::Failed((), self.seg.named(e))),
            }
            // Whatever a batch has committed must be visible before we wait,
            // or the consumer could be waiting for it while we wait for it.
            if let Err(e) = self.publish_now() {
                return Err(SendError::Failed((), e));
            }
            if matches!(until, Until::Now) {
                // A poller must notice a dead consumer too.
                if crate::wait::peer_check_due(&self.peer_check_at)
                    && check_peer(&self.seg, self.peer_slot, &lay, CONSUMER_CLOSED)
                        .map_err(|e| SendError::Failed((), e))?
                {
                    return Err(SendError::Disconnected(()));
                }
                return Err(SendError::Full(()));
            }
            let b = backoff.get_or_insert_with(|| Backoff::new(self.strategy));
            let seen = self.core.head_cache();
            let head = r.u64_at(lay.head).expect("layout validated at open");
            let mut ready = || {
                // ORDERING: Acquire — as in ProducerCore::room.
                head.load(Ordering::Acquire) != seen
                    || ring::closed_bits(r, &lay) & CONSUMER_CLOSED != 0
            };
            match b.snooze(r, lay.space_wait, until.deadline(), &mut ready) {
                Next::Retry => {}
                Next::TimedOut => return Err(SendError::Timeout(())),
                Next::CheckPeers => {
                    if check_peer(&self.seg, self.peer_slot, &lay, CONSUMER_CLOSED)
                        .map_err(|e| SendError::Failed((), e))?
                    {
                        return Err(SendError::Disconnected(()));
                    }
                }
            }
        }
    }

    /// Send a serde value (encoded with postcard straight into the ring),
    /// waiting for room.
    pub fn send_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::Forever)
    }

    /// [`send_value`](Self::send_value) without waiting.
    pub fn try_send_value<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::Now)
    }

    /// [`send_value`](Self::send_value), waiting at most `timeout`.
    pub fn send_value_timeout<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::after(timeout))
    }

    pub(crate) fn send_value_until<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
        until: Until,
    ) -> Result<(), SendError<()>> {
        let len = crate::codec::encoded_len(v).map_err(|e| SendError::Failed((), e))?;
        let off = self.reserve_until(len, until)?;
        // SAFETY: `[off, off + len)` was just reserved for this producer;
        // nobody reads it before we publish.
        let buf =
            unsafe { self.seg.region().slice_mut(off, len) }.expect("reserve checked the bounds");
        crate::codec::encode_into(v, buf).map_err(|e| SendError::Failed((), e))?;
        self.commit_publish(len)
            .map_err(|e| SendError::Failed((), e))
    }

    /// Send a plain-old-data value as its bytes, waiting for room.
    pub fn send_pod<T: bytemuck::Pod>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.send(bytemuck::bytes_of(v))
    }

    /// [`send_pod`](Self::send_pod) without waiting.
    pub fn try_send_pod<T: bytemuck::Pod>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.try_send(bytemuck::bytes_of(v))
    }

    /// [`send_pod`](Self::send_pod), waiting at most `timeout`.
    pub fn send_pod_timeout<T: bytemuck::Pod>(
        &mut self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.send_timeout(bytemuck::bytes_of(v), timeout)
    }

    /// Claim `len` bytes of the ring to write in place (zero-copy), waiting
    /// as long as it takes. Nothing is visible until
    /// [`Grant::commit`]; dropping the grant abandons it.
    pub fn claim(&mut self, len: usize) -> Result<Grant<'_>, SendError<()>> {
        self.claim_until(len, Until::Forever)
    }

    /// [`claim`](Self::claim) without waiting (`Full` if no room now).
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<Grant<'_>, SendError<()>> {
        self.claim_until(len, Until::Now)
    }

    /// [`claim`](Self::claim), waiting at most `timeout`.
    pub fn claim_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Grant<'_>, SendError<()>> {
        self.claim_until(len, Until::after(timeout))
    }

    #[inline]
    fn claim_until(&mut self, len: usize, until: Until) -> Result<Grant<'_>, SendError<()>> {
        let off = self.reserve_until(len, until)?;
        Ok(Grant {
            producer: self,
            off,
            len,
        })
    }

    /// Start a batch: frames pushed into it become visible together, with
    /// one publication, when it is dropped or [published](WriteBatch::publish).
    pub fn batch(&mut self) -> WriteBatch<'_> {
        WriteBatch {
            producer: self,
            frames: 0,
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.seg.forked_copy() {
            return; // a forked child's copy of the parent's handle
        }
        let _ = self.publish_now();
        if ring::close(self.seg.region(), self.core.layout(), PRODUCER_CLOSED) {
            self.ring_bell();
        }
        if let Some(slot) = self.own_slot {
            peer::detach(&self.seg, slot);
        }
    }
}

/// Claimed room in the ring, written in place. Derefs to `&mut [u8]` of the
/// claimed length.
#[derive(Debug)]
pub struct Grant<'a> {
    producer: &'a mut Producer,
    off: usize,
    len: usize,
}

impl Grant<'_> {
    /// Publish all claimed bytes as one message.
    pub fn commit(self) -> Result<()> {
        let len = self.len;
        self.commit_len(len)
    }

    /// Publish the first `len` bytes (`len <= claimed`) as one message.
    pub fn commit_len(self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes, but {} were claimed",
                self.len
            )));
        }
        failpoint!("spsc.before_commit");
        self.producer.commit_publish(len)
    }
}

impl Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `[off, off + len)` is reserved for this producer by the
        // ring protocol (beyond the published tail, before head + cap); no
        // correct peer touches it until we publish.
        unsafe { self.producer.seg.region().slice(self.off, self.len) }
            .expect("reserve checked the bounds")
    }
}

impl DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { self.producer.seg.region().slice_mut(self.off, self.len) }
            .expect("reserve checked the bounds")
    }
}

/// Frames written now, published together (one Release store, one wake
/// check) when the batch is dropped or [`publish`](Self::publish)ed.
#[derive(Debug)]
pub struct WriteBatch<'a> {
    producer: &'a mut Producer,
    frames: usize,
}

impl WriteBatch<'_> {
    /// Add a message if there is room now; `Full` otherwise (publish, and
    /// try again, or use [`push`](Self::push)).
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.push_until(msg, Until::Now)
    }

    /// Add a message, waiting for room (what is in the batch so far is
    /// published first, so the consumer can make room).
    pub fn push(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.push_until(msg, Until::Forever)
    }

    /// [`push`](Self::push), waiting at most `timeout`.
    pub fn push_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError<()>> {
        self.push_until(msg, Until::after(timeout))
    }

    #[inline]
    fn push_until(&mut self, msg: &[u8], until: Until) -> Result<(), SendError<()>> {
        let p = &mut *self.producer;
        let off = p.reserve_until(msg.len(), until)?;
        let r = p.seg.region();
        r.write(off, msg).expect("reserve checked the bounds");
        p.core
            .commit(r, msg.len() as u64)
            .map_err(|e| SendError::Failed((), p.seg.named(e)))?;
        self.frames += 1;
        Ok(())
    }

    /// Add a message of `len` bytes written in place through the returned
    /// slice, if there is room now.
    pub fn try_claim(&mut self, len: usize) -> Result<&mut [u8], SendError<()>> {
        let p = &mut *self.producer;
        let off = p.reserve_until(len, Until::Now)?;
        let r = p.seg.region();
        p.core
            .commit(r, len as u64)
            .map_err(|e| SendError::Failed((), p.seg.named(e)))?;
        self.frames += 1;
        // SAFETY: `[off, off + len)` was reserved above and its frame is not
        // published before this batch is, which needs `&mut self` again, so
        // the slice is the only access until then.
        Ok(unsafe { p.seg.region().slice_mut(off, len) }.expect("reserve checked the bounds"))
    }

    /// Messages in the batch (not counting any published while waiting).
    pub fn len(&self) -> usize {
        self.frames
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Publish the batch now.
    pub fn publish(self) -> Result<()> {
        let res = self.producer.publish_now();
        std::mem::forget(self);
        res
    }
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        let _ = self.producer.publish_now();
    }
}

impl Consumer {
    /// Create the named ring with `capacity` data bytes (rounded up to a
    /// power of two, at least 32) and attach as its consumer. A segment
    /// of that name that nobody holds any more is replaced; the name goes
    /// with the last holder.
    pub fn create(name: &str, capacity: usize) -> Result<Consumer> {
        Options::new().capacity_bytes(capacity).create(name)
    }

    /// Create an anonymous ring (a memfd) and attach as its consumer: share
    /// it through [`segment_fd`](Self::segment_fd).
    pub fn create_anonymous(capacity: usize) -> Result<Consumer> {
        Options::new().capacity_bytes(capacity).create_anonymous()
    }

    /// Open the named ring as its consumer, now: `NotFound` if there is no
    /// such ring yet (see [`open_wait`](Self::open_wait)).
    pub fn open(name: &str) -> Result<Consumer> {
        Options::new().open(name)
    }

    /// Open the named ring as its consumer, waiting as long as it takes
    /// for it to be created (a stale ring of that name is waited past:
    /// its next creator replaces it). A ring whose producer finished
    /// before any consumer came is still there, with its messages.
    pub fn open_wait(name: &str) -> Result<Consumer> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout` with the
    /// last reason (`NotFound`, `NotReady` or `Stale`).
    ///
    /// ```
    /// use ringway::spsc::{Consumer, Producer};
    /// use std::time::Duration;
    /// # let name = format!("doc-open-timeout-{}", std::process::id());
    /// // Nobody has created it: the wait ends at the deadline, NotFound.
    /// let e = Consumer::open_timeout(&name, Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(e, ringway::Error::NotFound { .. }));
    /// // A producer in another thread (or process) creates it a bit later.
    /// let n = name.clone();
    /// let t = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     let mut tx = Producer::create(&n, 4096).unwrap();
    ///     tx.send(b"hi").unwrap();
    /// });
    /// let mut rx = Consumer::open_timeout(&name, Duration::from_secs(10))?;
    /// t.join().unwrap();
    /// assert_eq!(rx.recv_vec()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Consumer> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Open the named ring as its consumer if it exists, or create it with
    /// `capacity` (which an existing ring must match, or `Mismatch`).
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Consumer> {
        Options::new().capacity_bytes(capacity).open_or_create(name)
    }

    /// Open the ring behind `fd` (inherited or passed) as its consumer.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Consumer> {
        Options::new().from_fd(fd)
    }

    /// Let the children `cmd` spawns open this ring with
    /// [`Producer::from_inherited`]`(key)`; see [`Producer::pass_to`].
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Open the ring a parent passed with `pass_to(.., key)` as its
    /// consumer.
    pub fn from_inherited(key: &str) -> Result<Consumer> {
        Consumer::from_fd(crate::inherit::take(key)?.as_fd())
    }

    /// A handle on `seg`; a creator's segment is attached already.
    fn from_segment(mut seg: Segment, creator: bool) -> Result<Consumer> {
        if !creator {
            attach(&seg, CONSUMER_SLOT)?;
        }
        seg.set_keep(keep);
        let lay = layout(&seg);
        let mut c = Consumer::half(Arc::new(seg), lay, PRODUCER_SLOT);
        c.own_slot = Some(CONSUMER_SLOT);
        Ok(c)
    }

    /// The consumer half of a ring at `lay` in `seg`, whose producer owns
    /// `peer_slot`; attaching is the caller's business.
    pub(crate) fn half(seg: Arc<Segment>, lay: Layout, peer_slot: u32) -> Consumer {
        Consumer {
            seg,
            own_slot: None,
            peer_slot,
            core: ConsumerCore::new(lay),
            strategy: WaitStrategy::default(),
            peer_check_at: std::cell::Cell::new(None),
            bell: None,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// The segment's file descriptor (close-on-exec), to pass to a child.
    pub fn segment_fd(&self) -> BorrowedFd<'_> {
        self.seg.fd()
    }

    /// The segment's name (`<anonymous>` for a memfd).
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.core.layout().cap as usize
    }

    /// The largest message the ring takes (see
    /// [`Producer::max_message_len`]).
    pub fn max_message_len(&self) -> usize {
        ring::max_message(self.core.layout().cap) as usize
    }

    /// Bytes of published messages this consumer has not read yet
    /// (frames included; see [`Producer::len`]). A snapshot.
    pub fn len(&self) -> usize {
        self.core.unread_bytes(self.seg.region()) as usize
    }

    /// Whether no published message waits for this consumer (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer has no room for even an empty message now
    /// (space this consumer has read but not yet released counts as used).
    pub fn is_full(&self) -> bool {
        let lay = self.core.layout();
        ring::full(lay.cap, ring::used(self.seg.region(), lay))
    }

    /// Choose how this end waits for messages (default: adaptive).
    pub fn set_wait_strategy(&mut self, s: WaitStrategy) {
        self.strategy = s;
    }

    /// What the kernel and the peer table say about the producer.
    pub fn producer_liveness(&self) -> Result<Liveness> {
        peer::liveness(&self.seg, self.peer_slot)
    }

    /// The next message's `(offset, len)`, waiting per `until`.
    #[inline(always)]
    fn peek_until(&mut self, until: Until) -> Result<(usize, usize), RecvError> {
        if let Some(m) = self.core.peek_fast(self.seg.region()) {
            return Ok(m);
        }
        self.peek_slow(until)
    }

    #[inline(never)]
    fn peek_slow(&mut self, until: Until) -> Result<(usize, usize), RecvError> {
        let lay = *self.core.layout();
        // A handle of our own on the segment, so the loop can borrow the
        // region while it calls `&mut self` methods.
        let seg = self.seg.clone();
        let mut backoff: Option<Backoff> = None;
        loop {
            let r = seg.region();
            if let Some(m) = self.core.peek_waiting(r).map_err(|e| self.seg.named(e))? {
                return Ok(m);
            }
            // Empty: give the consumed space back before waiting, so a
            // producer waiting for room can go on.
            self.core.release(r).map_err(|e| self.seg.named(e))?;
            if ring::closed_bits(r, &lay) & PRODUCER_CLOSED != 0 {
                // Frames published before the close are visible now.
                match self.core.peek_waiting(r).map_err(|e| self.seg.named(e))? {
                    Some(m) => return Ok(m),
                    None => return Err(RecvError::Disconnected),
                }
            }
            if matches!(until, Until::Now) {
                // A poller must notice a dead producer too: its closed bit
                // is set then, and the next look drains and ends.
                if crate::wait::peer_check_due(&self.peer_check_at)
                    && check_peer(&self.seg, self.peer_slot, &lay, PRODUCER_CLOSED)?
                {
                    continue;
                }
                if self.bell.is_some() {
                    self.rearm_bell()?;
                }
                return Err(RecvError::Empty);
            }
            let b = backoff.get_or_insert_with(|| Backoff::new(self.strategy));
            let h = r
                .u64_at(self.core.head_header_off())
                .expect("layout validated at open");
            let mut ready = || {
                // ORDERING: Acquire — as in ConsumerCore::peek.
                h.load(Ordering::Acquire) != 0 || ring::closed_bits(r, &lay) & PRODUCER_CLOSED != 0
            };
            match b.snooze(r, lay.data_wait, until.deadline(), &mut ready) {
                Next::Retry => {}
                Next::TimedOut => return Err(RecvError::Timeout),
                Next::CheckPeers => {
                    // A dead producer gets its closed bit set; the loop then
                    // drains and reports Disconnected.
                    check_peer(&self.seg, self.peer_slot, &lay, PRODUCER_CLOSED)?;
                    // A live producer that published past a header still
                    // reading "not yet" (a hostile writer zeroed it) would
                    // leave us waiting forever: learn `tail`, and the next
                    // look reports that as corruption.
                    self.core
                        .refresh_tail(seg.region())
                        .map_err(|e| self.seg.named(e))?;
                    // And a producer waiting for room we gave back (our
                    // `head` moved back by a hostile writer) would wait
                    // for ever too.
                    self.core
                        .check_released(seg.region())
                        .map_err(|e| self.seg.named(e))?;
                }
            }
        }
    }

    #[inline]
    pub(crate) fn recv_until(&mut self, buf: &mut [u8], until: Until) -> Result<usize, RecvError> {
        let (off, len) = self.peek_until(until)?;
        if len > buf.len() {
            return Err(RecvError::BufferTooShort { needed: len });
        }
        self.seg
            .region()
            .read(off, &mut buf[..len])
            .expect("peek checked the bounds");
        self.consume(len)?;
        Ok(len)
    }

    #[inline]
    fn consume(&mut self, len: usize) -> Result<(), RecvError> {
        self.core.advance(len);
        self.core
            .release_lazily(self.seg.region())
            .map_err(|e| RecvError::Failed(self.seg.named(e)))
    }

    /// Copy the next message into `buf` without waiting; its length.
    /// `BufferTooShort` leaves the message in the ring.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::Now)
    }

    /// Copy the next message into `buf`, waiting for one; its length.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::Forever)
    }

    /// Copy the next message into `buf`, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::after(timeout))
    }

    /// The next message as a new `Vec`, waiting for one.
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.read()?.to_vec())
    }

    /// The next message as a new `Vec`, without waiting.
    pub fn try_recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.try_read()?.to_vec())
    }

    /// The next message as a new `Vec`, waiting at most `timeout`.
    pub fn recv_vec_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        Ok(self.read_timeout(timeout)?.to_vec())
    }

    #[inline]
    fn read_until(&mut self, until: Until) -> Result<ReadGuard<'_>, RecvError> {
        let (off, len) = self.peek_until(until)?;
        Ok(ReadGuard {
            consumer: self,
            off,
            len,
        })
    }

    /// A file descriptor that becomes readable (for `poll`, `epoll`, an
    /// async runtime) when a message may be ready or the producer is gone.
    /// It is a FIFO in `/dev/shm`, private to this user; the producer
    /// writes to it only when this consumer armed it, which every `try_*`
    /// call that finds the ring empty does. So: wait for the fd, then call
    /// `try_recv` (or another `try_*`) until it says `Empty`, then wait
    /// again. With no doorbell asked for, nothing of this costs anything.
    pub fn doorbell(&mut self) -> Result<BorrowedFd<'_>> {
        if self.bell.is_none() {
            self.bell = Some(Bell::open(bell_path(&self.seg, self.core.layout()))?);
            self.rearm_bell()?;
        }
        use std::os::fd::AsFd;
        Ok(self.bell.as_ref().expect("set above").read.as_fd())
    }

    /// Empty the FIFO, arm the bell, and look again: anything published
    /// before the producer could see the bell armed makes the FIFO readable
    /// at once (we ring it ourselves).
    fn rearm_bell(&mut self) -> Result<()> {
        let Some(bell) = &mut self.bell else {
            return Ok(());
        };
        bell.drain();
        let r = self.seg.region();
        let lay = *self.core.layout();
        crate::wait::arm_bell(r, lay.data_wait);
        let ready = self.core.peek(r).map_err(|e| self.seg.named(e))?.is_some()
            || ring::closed_bits(r, &lay) & PRODUCER_CLOSED != 0;
        if ready {
            if let Some(bell) = &mut self.bell {
                bell.ring();
            }
        }
        Ok(())
    }

    /// The length of the next message, waiting for one `until` (it stays).
    pub(crate) fn next_len_until(&mut self, until: Until) -> Result<usize, RecvError> {
        self.peek_until(until).map(|(_, len)| len)
    }

    /// Whether a message is ready (or the stream has ended, so a receive
    /// would return at once): `None` waits as long as it takes, `Some(0)`
    /// checks now, `Some(t)` waits at most `t`. Consumes nothing.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let until = match timeout {
            None => Until::Forever,
            Some(t) if t.is_zero() => Until::Now,
            Some(t) => Until::after(t),
        };
        match self.peek_until(until) {
            Ok(_) | Err(RecvError::Disconnected) => Ok(true),
            Err(RecvError::Empty | RecvError::Timeout) => Ok(false),
            Err(RecvError::Failed(e)) => Err(e),
            Err(RecvError::BufferTooShort { .. }) => Ok(true),
        }
    }

    /// The next message decoded as a serde value, waiting for one. A
    /// message that does not decode as `T` stays in the ring
    /// ([`Error::Decode`] inside [`RecvError::Failed`]).
    pub fn recv_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.recv_value_until(Until::Forever)
    }

    /// [`recv_value`](Self::recv_value) without waiting.
    pub fn try_recv_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.recv_value_until(Until::Now)
    }

    /// [`recv_value`](Self::recv_value), waiting at most `timeout`.
    pub fn recv_value_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.recv_value_until(Until::after(timeout))
    }

    pub(crate) fn recv_value_until<T: serde::de::DeserializeOwned>(
        &mut self,
        until: Until,
    ) -> Result<T, RecvError> {
        self.decode_next(until, crate::codec::decode::<T>)
    }

    /// The next message as a plain-old-data value (it must be exactly
    /// `size_of::<T>()` bytes, or it stays in the ring), waiting for one.
    pub fn recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Forever, crate::codec::decode_pod::<T>)
    }

    /// [`recv_pod`](Self::recv_pod) without waiting.
    pub fn try_recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Now, crate::codec::decode_pod::<T>)
    }

    /// [`recv_pod`](Self::recv_pod), waiting at most `timeout`.
    pub fn recv_pod_timeout<T: bytemuck::Pod>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.decode_next(Until::after(timeout), crate::codec::decode_pod::<T>)
    }

    /// Decode the next message with `f`; consume it only if that worked.
    fn decode_next<T>(
        &mut self,
        until: Until,
        f: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T, RecvError> {
        let (off, len) = self.peek_until(until)?;
        // SAFETY: a committed frame not yet released, as in ReadGuard.
        let bytes = unsafe { self.seg.region().slice(off, len) }.expect("peek checked the bounds");
        let v = f(bytes)?;
        self.consume(len)?;
        Ok(v)
    }

    /// Borrow the next message in place (zero-copy), waiting for one. The
    /// space is released when the guard drops.
    pub fn read(&mut self) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::Forever)
    }

    /// [`read`](Self::read) without waiting.
    pub fn try_read(&mut self) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::Now)
    }

    /// [`read`](Self::read), waiting at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::after(timeout))
    }

    /// Read every message available now, releasing their space once, when
    /// the batch drops.
    pub fn read_batch(&mut self) -> ReadBatch<'_> {
        ReadBatch {
            consumer: self,
            last: None,
        }
    }

    /// A blocking iterator over messages, as `Vec`s; it ends when the
    /// producer is gone and the ring drained. A corrupt ring yields one
    /// `Err` and ends.
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            done: false,
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.seg.forked_copy() {
            return; // a forked child's copy of the parent's handle
        }
        if let Some(bell) = self.bell.take() {
            crate::wait::disarm_bell(self.seg.region(), self.core.layout().data_wait);
            let _ = std::fs::remove_file(&bell.path);
        }
        let r = self.seg.region();
        let _ = self.core.release(r);
        ring::close(r, self.core.layout(), CONSUMER_CLOSED);
        if let Some(slot) = self.own_slot {
            peer::detach(&self.seg, slot);
        }
    }
}

/// A message borrowed in place; its space is released on drop.
#[derive(Debug)]
pub struct ReadGuard<'a> {
    consumer: &'a mut Consumer,
    off: usize,
    len: usize,
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the frame at `[off, off + len)` is committed and not yet
        // released: a correct producer does not write it until `head`
        // passes it, which needs this guard's drop.
        unsafe { self.consumer.seg.region().slice(self.off, self.len) }
            .expect("peek checked the bounds")
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let _ = self.consumer.consume(self.len);
    }
}

/// Every message available when it was read, released together on drop.
#[derive(Debug)]
pub struct ReadBatch<'a> {
    consumer: &'a mut Consumer,
    /// Length of the message last returned (still borrowed).
    last: Option<usize>,
}

impl ReadBatch<'_> {
    /// The next available message, or `None` when none is available now.
    /// The previous one's space is given up (but released only at drop).
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Result<Option<&[u8]>> {
        let c = &mut *self.consumer;
        if let Some(len) = self.last.take() {
            c.core.advance(len);
        }
        let r = c.seg.region();
        match c.core.peek(r).map_err(|e| c.seg.named(e))? {
            None => Ok(None),
            Some((off, len)) => {
                self.last = Some(len);
                // SAFETY: committed, unreleased frame, as in ReadGuard.
                Ok(Some(
                    unsafe { r.slice(off, len) }.expect("peek checked the bounds"),
                ))
            }
        }
    }
}

impl Drop for ReadBatch<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        if let Some(len) = self.last.take() {
            c.core.advance(len);
        }
        let _ = c.core.release(c.seg.region());
    }
}

/// Blocking iterator from [`Consumer::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    consumer: &'a mut Consumer,
    done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Vec<u8>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        crate::error::iter_step(self.consumer.recv_vec(), &mut self.done)
    }
}

/// Remove a named ring's name (see [`segment::unlink`]).
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(name)
}
