//! One builder for every kind: capacity, permissions, wait strategy, and
//! how long an open may wait.
//!
//! ```
//! use ringway::spsc::{Consumer, Producer};
//! use ringway::{Options, WaitStrategy};
//! use std::time::Duration;
//! # let name = format!("doc-options-{}", std::process::id());
//! let mut tx: Producer = Options::new()
//!     .room_for(1000, 64)          // 1000 messages of up to 64 bytes
//!     .mode(0o640)                 // the group may open it too
//!     .create(&name)?;
//! let mut rx: Consumer = Options::new()
//!     .wait_strategy(WaitStrategy::Spin)
//!     .open_timeout(Duration::from_secs(5)) // wait for a creator up to 5 s
//!     .open(&name)?;
//! tx.send(b"hi")?;
//! assert_eq!(rx.recv_vec()?, b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The kinds' own constructors (`Producer::create(name, bytes)`,
//! `Sender::open_wait(name)`, ...) are shorthands for these.

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::wait::WaitStrategy;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// How large a new ring, queue, pipe or map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capacity {
    /// Data bytes of each ring (spsc, pipe).
    Bytes(usize),
    /// Room for this many messages of up to this many bytes (all but maps).
    RoomFor(usize, usize),
    /// Keys (counter maps).
    Keys(usize),
}

/// How long an open waits for the name to appear and be READY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenWait {
    /// `NotFound` (or `NotReady`, `Stale`) at once.
    Now,
    /// As long as it takes.
    Forever,
    /// At most this long.
    For(Duration),
}

/// How to create or open a handle of any kind; see the [module](self).
///
/// Defaults: no capacity (creating needs one), mode `0o600`, the adaptive
/// wait strategy, opens that do not wait, duplex pipes.
#[derive(Clone, Debug)]
pub struct Options {
    capacity: Option<Capacity>,
    mode: u32,
    strategy: WaitStrategy,
    wait: OpenWait,
    duplex: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Options {
        Options {
            capacity: None,
            mode: 0o600,
            strategy: WaitStrategy::default(),
            wait: OpenWait::Now,
            duplex: true,
        }
    }

    /// Each ring's data bytes (spsc rings and pipes; rounded up to a power
    /// of two). Not for mpmc queues (see [`room_for`](Self::room_for)) or
    /// maps (see [`keys`](Self::keys)).
    pub fn capacity_bytes(mut self, bytes: usize) -> Options {
        self.capacity = Some(Capacity::Bytes(bytes));
        self
    }

    /// Room for `count` messages of up to `size` bytes each, all waiting at
    /// once: an mpmc queue of `count` slots of `size` bytes, or an spsc
    /// ring (each pipe direction) of
    /// [`spsc::ring_bytes_for`](crate::spsc::ring_bytes_for)`(count, size)`
    /// bytes. Rounded up as the kinds round (powers of two).
    pub fn room_for(mut self, count: usize, size: usize) -> Options {
        self.capacity = Some(Capacity::RoomFor(count, size));
        self
    }

    /// Room for `keys` keys (counter maps; rounded up to a power of two).
    pub fn keys(mut self, keys: usize) -> Options {
        self.capacity = Some(Capacity::Keys(keys));
        self
    }

    /// The permissions a named segment is created with (`0o600` by
    /// default, then masked by the umask): at most `0o777`.
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode;
        self
    }

    /// How the handle waits (spsc, mpmc and pipe ends).
    pub fn wait_strategy(mut self, s: WaitStrategy) -> Options {
        self.strategy = s;
        self
    }

    /// Let [`open`](Self::open) wait as long as it takes for the name to
    /// be created (and past a stale segment, until it is replaced).
    pub fn open_wait(mut self) -> Options {
        self.wait = OpenWait::Forever;
        self
    }

    /// Let [`open`](Self::open) wait at most `timeout` for the name, then
    /// give the last reason (`NotFound`, `NotReady` or `Stale`).
    pub fn open_timeout(mut self, timeout: Duration) -> Options {
        self.wait = OpenWait::For(timeout);
        self
    }

    /// Whether a new pipe carries messages both ways (the default) or from
    /// end 2 to end 1 only.
    pub fn duplex(mut self, duplex: bool) -> Options {
        self.duplex = duplex;
        self
    }

    /// Create the named segment and attach `H` (a segment of that name
    /// that nobody holds any more is replaced).
    pub fn create<H: Handle>(&self, name: &str) -> Result<H> {
        self.check_mode()?;
        H::make(Some(name), self)
    }

    /// Create an anonymous segment (a memfd) and attach `H`; share it by
    /// fd or with `pass_to`.
    pub fn create_anonymous<H: Handle>(&self) -> Result<H> {
        H::make(None, self)
    }

    /// Open the named segment as `H`, waiting as set by
    /// [`open_wait`](Self::open_wait) / [`open_timeout`](Self::open_timeout)
    /// (not at all by default).
    pub fn open<H: Handle>(&self, name: &str) -> Result<H> {
        H::attach_named(name, self)
    }

    /// Open the named segment as `H` if it exists with these parameters
    /// (`Mismatch` if it has others), or create it: either side may come
    /// first.
    pub fn open_or_create<H: Handle>(&self, name: &str) -> Result<H> {
        self.check_mode()?;
        H::open_or_make(name, self)
    }

    /// Open the segment behind `fd` (inherited or passed) as `H`.
    pub fn from_fd<H: Handle>(&self, fd: BorrowedFd<'_>) -> Result<H> {
        H::attach_fd(fd, self)
    }

    fn check_mode(&self) -> Result<()> {
        if self.mode > 0o777 {
            return Err(Error::InvalidArgument(format!(
                "mode {:#o}: only permission bits (at most 0o777)",
                self.mode
            )));
        }
        Ok(())
    }

    pub(crate) fn mode_bits(&self) -> u32 {
        self.mode
    }

    pub(crate) fn strategy(&self) -> WaitStrategy {
        self.strategy
    }

    pub(crate) fn is_duplex(&self) -> bool {
        self.duplex
    }

    /// An spsc ring's (or a pipe direction's) data bytes, as asked.
    pub(crate) fn ring_bytes(&self) -> Result<usize> {
        match self.capacity {
            Some(Capacity::Bytes(b)) => Ok(b),
            Some(Capacity::RoomFor(n, s)) => crate::spsc::ring_bytes_for(n, s),
            Some(Capacity::Keys(_)) => Err(Error::InvalidArgument(
                "a ring is sized by capacity_bytes or room_for, not keys".into(),
            )),
            None => Err(no_capacity("capacity_bytes or room_for")),
        }
    }

    /// An mpmc queue's `(slots, slot bytes)`, as asked.
    pub(crate) fn queue_slots(&self) -> Result<(usize, usize)> {
        match self.capacity {
            Some(Capacity::RoomFor(n, s)) => Ok((n, s)),
            Some(_) => Err(Error::InvalidArgument(
                "an mpmc queue is sized by room_for(slots, max_message)".into(),
            )),
            None => Err(no_capacity("room_for(slots, max_message)")),
        }
    }

    /// A counter map's keys, as asked.
    pub(crate) fn map_keys(&self) -> Result<usize> {
        match self.capacity {
            Some(Capacity::Keys(k)) => Ok(k),
            Some(_) => Err(Error::InvalidArgument(
                "a counter map is sized by keys(n)".into(),
            )),
            None => Err(no_capacity("keys(n)")),
        }
    }

    /// Open the named segment of `kind`, waiting as asked.
    pub(crate) fn open_segment(
        &self,
        name: &str,
        kind: crate::header::Kind,
        validate: crate::segment::Validator,
    ) -> Result<Segment> {
        let deadline: Option<Instant> = match self.wait {
            OpenWait::Now => return Segment::open(name, kind, validate),
            OpenWait::Forever => None,
            OpenWait::For(t) => crate::segment::deadline_after(t),
        };
        Segment::open_wait(name, kind, validate, deadline)
    }
}

fn no_capacity(how: &str) -> Error {
    Error::InvalidArgument(format!("creating needs a capacity: Options::{how}"))
}

mod sealed {
    use super::Options;
    use crate::error::Result;
    use crate::header::Kind;
    use crate::segment::{Segment, Validator};

    /// What a kind supplies so that [`Handle`](super::Handle)'s methods,
    /// written once, can make its handles. Public but unnameable: the
    /// seal.
    #[allow(unreachable_pub, private_interfaces)]
    pub trait Sealed: Sized {
        /// The kind and its header check.
        const KIND: Kind;
        const VALIDATE: Validator;
        /// Create the kind's segment as `o` asks (named or anonymous),
        /// this handle's end attached before it is READY.
        fn create_segment(name: Option<&str>, o: &Options) -> Result<Segment>;
        /// Open the named segment, not attached, if it has the parameters
        /// `o` asks for (else `Mismatch`).
        fn open_matching(name: &str, o: &Options) -> Result<Segment>;
        /// The handle on `seg` (attaching it unless `created`), set up as
        /// `o` asks.
        fn from_segment(seg: Segment, created: bool, o: &Options) -> Result<Self>;
    }
}

/// A handle [`Options`] can create or open: [`spsc::Producer`],
/// [`spsc::Consumer`], [`mpmc::Sender`], [`mpmc::Receiver`], [`pipe::Pipe`]
/// (the creator takes end 1, an opener end 2) and
/// [`counters::CounterMap`]. Sealed: implemented here only.
///
/// [`spsc::Producer`]: crate::spsc::Producer
/// [`spsc::Consumer`]: crate::spsc::Consumer
/// [`mpmc::Sender`]: crate::mpmc::Sender
/// [`mpmc::Receiver`]: crate::mpmc::Receiver
/// [`pipe::Pipe`]: crate::pipe::Pipe
/// [`counters::CounterMap`]: crate::counters::CounterMap
pub trait Handle: sealed::Sealed {
    /// Create a segment (named or anonymous) and attach.
    #[doc(hidden)]
    fn make(name: Option<&str>, o: &Options) -> Result<Self> {
        Self::from_segment(Self::create_segment(name, o)?, true, o)
    }
    /// Open the named segment and attach.
    #[doc(hidden)]
    fn attach_named(name: &str, o: &Options) -> Result<Self> {
        Self::from_segment(o.open_segment(name, Self::KIND, Self::VALIDATE)?, false, o)
    }
    /// Open the named segment if its parameters match, or create it.
    #[doc(hidden)]
    fn open_or_make(name: &str, o: &Options) -> Result<Self> {
        crate::segment::open_or_create(
            name,
            || Self::from_segment(Self::open_matching(name, o)?, false, o),
            || Self::make(Some(name), o),
        )
    }
    /// Open the segment behind `fd` and attach.
    #[doc(hidden)]
    fn attach_fd(fd: BorrowedFd<'_>, o: &Options) -> Result<Self> {
        Self::from_segment(Segment::open_fd(fd, Self::KIND, Self::VALIDATE)?, false, o)
    }
}

/// For the kinds' modules: `impl Sealed for TheirHandle { .. }`, then
/// `impl Handle for TheirHandle {}`.
pub(crate) use sealed::Sealed;
