//! `Pipe`: the tutorial's `multiprocessing.Pipe`, on spsc rings in one
//! segment: two rings for a duplex pipe, one for a simplex pipe.
//!
//! ```
//! use ringway::pipe::Pipe;
//! # let name = format!("doc-pipe-{}", std::process::id());
//! let mut a = Pipe::create(&name, true, 4096)?; // process A
//! let mut b = Pipe::open(&name)?;               // process B
//! a.send(&("ping", 1u32))?;
//! let (word, n): (String, u32) = b.recv()?;
//! b.send_bytes(word.as_bytes(), 0, None)?;
//! assert_eq!(a.recv_bytes(None)?, b"ping");
//! drop(b); // A's next receive: Disconnected (Python's EOFError)
//! assert!(a.recv_bytes(None).unwrap_err().is_disconnected());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Ends
//!
//! The creator holds end 1, the opener end 2. A simplex pipe carries
//! messages from end 2 to end 1 (as Python's `Pipe(duplex=False)` returns
//! `(receiver, sender)`). Each end belongs to one handle in one process: a
//! second process opening an end in use gets [`Error::InUse`], never a
//! share of its messages (the tutorial's "two consumers on one pipe need a
//! lock" problem). For several consumers, use an [`mpmc`](crate::mpmc)
//! queue: each message then goes to exactly one of them.
//!
//! # Messages
//!
//! [`send`](Pipe::send)/[`recv`](Pipe::recv) carry serde values (postcard),
//! [`send_bytes`](Pipe::send_bytes)/[`recv_bytes`](Pipe::recv_bytes)/
//! [`recv_bytes_into`](Pipe::recv_bytes_into) raw bytes. A message that does
//! not fit the caller's limit or buffer stays in the pipe, and the error
//! says how many bytes it needs (Python loses it). Each has `try_*` and
//! `*_timeout` forms; for zero-copy access and batches, use the ring ends
//! directly ([`sender`](Pipe::sender), [`receiver`](Pipe::receiver)).

use crate::error::{Error, RecvError, Result, SendError};
use crate::header::{Header, Kind, CLOSED_OFF, CONTROL_OFF};
use crate::options::Options;
use crate::peer;
use crate::segment::{Segment, Spec};
use crate::spsc::ring::Layout;
use crate::spsc::{Consumer, Producer};
use crate::wait::Until;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

/// Peer slot of end 1 (the creator's).
const END1: u32 = 0;
/// Peer slot of end 2 (the opener's).
const END2: u32 = 1;
/// The second ring's `closed` word, in the control line.
const CLOSED2_OFF: usize = CONTROL_OFF + 16;

fn rings(duplex: bool) -> u64 {
    if duplex {
        2
    } else {
        1
    }
}

pub(crate) fn validate(h: &Header) -> std::result::Result<(), (&'static str, String)> {
    let cap = h.param_a;
    if !cap.is_power_of_two()
        || !(crate::spsc::ring::MIN_CAPACITY..=crate::spsc::ring::MAX_CAPACITY).contains(&cap)
    {
        return Err((
            "param_a",
            format!("capacity {cap} is not a power of two in 32..=2^32"),
        ));
    }
    if !(1..=2).contains(&h.param_b) {
        return Err((
            "param_b",
            format!("{} rings (a pipe has 1 or 2)", h.param_b),
        ));
    }
    if h.peer_slots != 2 {
        return Err((
            "peer_slots",
            format!("{} (a pipe has 2 ends)", h.peer_slots),
        ));
    }
    let want = h.kind_off() as u64 + h.param_b * Layout::area_size(cap) as u64;
    if h.total_size != want {
        return Err((
            "total_size",
            format!("{} bytes, but the rings need {want}", h.total_size),
        ));
    }
    Ok(())
}

/// Ring `i` of a pipe segment: ring 0 carries end 2 → end 1, ring 1
/// (duplex only) end 1 → end 2.
pub(crate) fn ring_layout(h: &Header, i: u64) -> Layout {
    let base = h.kind_off() + (i * Layout::area_size(h.param_a) as u64) as usize;
    Layout::in_segment(
        base,
        if i == 0 { CLOSED_OFF } else { CLOSED2_OFF },
        h.param_a,
    )
}

fn attach(seg: &Segment, end: u32) -> Result<()> {
    crate::wait::register_process();
    let role = if end == END1 { "first" } else { "second" };
    let segment = seg.name().to_owned();
    match peer::attach(seg, end, end)? {
        peer::Attach::Attached => Ok(()),
        peer::Attach::InUse => Err(Error::InUse { segment, role }),
        peer::Attach::UsedBefore => Err(Error::Closed { segment, role }),
    }
}

fn create_segment(name: Option<&str>, duplex: bool, capacity: usize, mode: u32) -> Result<Segment> {
    let cap = crate::spsc::handles::data_capacity(capacity)?;
    let spec = Spec {
        kind: Kind::Pipe,
        param_a: cap,
        param_b: rings(duplex),
        peer_slots: 2,
        kind_size: rings(duplex) as usize * Layout::area_size(cap),
    };
    Segment::create_with(name, spec, mode, &|seg| attach(seg, END1))
}

/// The pipe's keep rule: end 2 has never come and end 1 left messages for
/// it (duplex), so end 2 started later still gets them.
fn keep(seg: &Segment) -> bool {
    let h = seg.header();
    h.param_b == 2
        && peer::state(seg, END2).is_ok_and(|s| s == peer::FREE)
        && crate::spsc::ring::unread(seg.region(), &ring_layout(h, 1))
}

/// One end of a pipe. `Send`, not `Sync`.
#[derive(Debug)]
pub struct Pipe {
    seg: Arc<Segment>,
    end: u32,
    tx: Option<Producer>,
    rx: Option<Consumer>,
}

// The seal's hooks take crate-private types: nobody outside can
// name them (see `options::sealed`).
#[allow(private_interfaces)]
impl crate::options::Sealed for Pipe {
    const KIND: Kind = Kind::Pipe;
    const VALIDATE: crate::segment::Validator = validate;
    fn create_segment(name: Option<&str>, o: &Options) -> Result<Segment> {
        create_segment(name, o.is_duplex(), o.ring_bytes()?, o.mode_bits())
    }
    fn open_matching(name: &str, o: &Options) -> Result<Segment> {
        let cap = crate::spsc::handles::data_capacity(o.ring_bytes()?)?;
        let want = (cap, rings(o.is_duplex()));
        Segment::open_matching(name, Kind::Pipe, validate, want, |c, d| {
            let way = if d == 2 { "duplex" } else { "simplex" };
            format!("{way} with {c} bytes per direction")
        })
    }
    /// The creator takes end 1 (attached at creation), an opener end 2.
    fn from_segment(seg: Segment, created: bool, o: &Options) -> Result<Pipe> {
        let end = if created { END1 } else { END2 };
        if !created {
            attach(&seg, END2)?;
        }
        let mut p = Pipe::build(seg, end)?;
        p.set_wait_strategy(o.strategy());
        Ok(p)
    }
}

impl crate::options::Handle for Pipe {}

impl Pipe {
    /// Choose how this end waits, both ways (default: adaptive).
    pub fn set_wait_strategy(&mut self, s: crate::WaitStrategy) {
        if let Some(tx) = &mut self.tx {
            tx.set_wait_strategy(s);
        }
        if let Some(rx) = &mut self.rx {
            rx.set_wait_strategy(s);
        }
    }
}

impl Pipe {
    /// Create the named pipe (duplex: both ends send and receive; simplex:
    /// end 2 sends, end 1 receives) with `capacity` bytes per direction, and
    /// take end 1. The name goes with the last holder (see the crate
    /// docs).
    pub fn create(name: &str, duplex: bool, capacity: usize) -> Result<Pipe> {
        Options::new()
            .duplex(duplex)
            .capacity_bytes(capacity)
            .create(name)
    }

    /// Create an anonymous pipe (a memfd) and take end 1; a child process
    /// takes end 2 with [`from_fd`](Self::from_fd) on
    /// [`segment_fd`](Self::segment_fd).
    pub fn create_anonymous(duplex: bool, capacity: usize) -> Result<Pipe> {
        Options::new()
            .duplex(duplex)
            .capacity_bytes(capacity)
            .create_anonymous()
    }

    /// Open the named pipe and take end 2.
    pub fn open(name: &str) -> Result<Pipe> {
        Options::new().open(name)
    }

    /// Open the named pipe and take end 2, waiting as long as it takes for
    /// it to be created (a stale pipe of that name is waited past).
    pub fn open_wait(name: &str) -> Result<Pipe> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout` with the
    /// last reason (`NotFound`, `NotReady` or `Stale`).
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Pipe> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Take end 2 of the named pipe if it exists (it must have the same
    /// direction and capacity, or `Mismatch`), or create it and take end
    /// 1: two programs can each call this, in either order.
    ///
    /// ```
    /// use ringway::pipe::Pipe;
    /// # let name = format!("doc-pipe-ooc-{}", std::process::id());
    /// let mut server = Pipe::open_or_create(&name, true, 4096)?; // end 1
    /// let mut client = Pipe::open_or_create(&name, true, 4096)?; // end 2
    /// client.send(&2u32)?;
    /// let n: u32 = server.recv()?;
    /// server.send(&(n * n))?;
    /// assert_eq!(client.recv::<u32>()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(name: &str, duplex: bool, capacity: usize) -> Result<Pipe> {
        Options::new()
            .duplex(duplex)
            .capacity_bytes(capacity)
            .open_or_create(name)
    }

    /// Let the children `cmd` spawns take end 2 with
    /// [`from_inherited`](Self::from_inherited)`(key)`.
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Take end 2 of the pipe a parent passed with `pass_to(.., key)`.
    pub fn from_inherited(key: &str) -> Result<Pipe> {
        Pipe::from_fd(std::os::fd::AsFd::as_fd(&crate::inherit::take(key)?))
    }

    /// Take end 2 of the pipe behind `fd`.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Pipe> {
        Options::new().from_fd(fd)
    }

    /// Both ends, in this process (for threads): `(end 1, end 2)`; in a
    /// simplex pipe end 1 receives and end 2 sends, as with Python's
    /// `Pipe(duplex=False)`.
    pub fn pair(duplex: bool, capacity: usize) -> Result<(Pipe, Pipe)> {
        let one = Pipe::create_anonymous(duplex, capacity)?;
        let two = Pipe::from_fd(one.segment_fd())?;
        Ok((one, two))
    }

    fn build(mut seg: Segment, end: u32) -> Result<Pipe> {
        seg.set_keep(keep);
        let h = *seg.header();
        let seg = Arc::new(seg);
        let duplex = h.param_b == 2;
        let (tx, rx) = if end == END1 {
            let rx = Consumer::half(seg.clone(), ring_layout(&h, 0), END2);
            let tx = duplex.then(|| Producer::half(seg.clone(), ring_layout(&h, 1), END2));
            (tx, Some(rx))
        } else {
            let tx = Producer::half(seg.clone(), ring_layout(&h, 0), END1);
            let rx = duplex.then(|| Consumer::half(seg.clone(), ring_layout(&h, 1), END1));
            (Some(tx), rx)
        };
        Ok(Pipe { seg, end, tx, rx })
    }

    /// The segment's file descriptor (close-on-exec), to pass to a child.
    pub fn segment_fd(&self) -> BorrowedFd<'_> {
        self.seg.fd()
    }

    /// Whether both ends send and receive.
    pub fn is_duplex(&self) -> bool {
        self.tx.is_some() && self.rx.is_some()
    }

    /// The largest message this end can send (or, on a receive-only end,
    /// receive), in bytes.
    pub fn max_message_len(&self) -> usize {
        match (&self.tx, &self.rx) {
            (Some(tx), _) => tx.max_message_len(),
            (None, Some(rx)) => rx.max_message_len(),
            (None, None) => 0,
        }
    }

    /// Bytes of messages waiting for this end to receive (frames
    /// included; see [`Consumer::len`]); 0 on a send-only end.
    pub fn len(&self) -> usize {
        self.rx.as_ref().map_or(0, Consumer::len)
    }

    /// Whether no message waits for this end to receive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this end's sending ring has no room now (false on a
    /// receive-only end).
    pub fn is_full(&self) -> bool {
        self.tx.as_ref().is_some_and(Producer::is_full)
    }

    /// This end's sending ring, if it sends (for `try_*`, timeouts,
    /// batches and zero-copy claims).
    pub fn sender(&mut self) -> Option<&mut Producer> {
        self.tx.as_mut()
    }

    /// This end's receiving ring, if it receives.
    pub fn receiver(&mut self) -> Option<&mut Consumer> {
        self.rx.as_mut()
    }

    fn tx(&mut self) -> Result<&mut Producer, SendError<()>> {
        self.tx.as_mut().ok_or_else(|| {
            SendError::Failed(
                (),
                Error::InvalidArgument("this end of a simplex pipe only receives".into()),
            )
        })
    }

    fn rx(&mut self) -> Result<&mut Consumer, RecvError> {
        self.rx.as_mut().ok_or_else(|| {
            RecvError::Failed(Error::InvalidArgument(
                "this end of a simplex pipe only sends".into(),
            ))
        })
    }

    /// Send a serde value, waiting for room; `Disconnected` if the other
    /// end is gone.
    pub fn send<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.tx()?.send_value_until(v, Until::Forever)
    }

    /// [`send`](Self::send) without waiting (`Full` if there is no room).
    pub fn try_send<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.tx()?.send_value_until(v, Until::Now)
    }

    /// [`send`](Self::send), waiting at most `timeout` for room.
    pub fn send_timeout<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.tx()?.send_value_until(v, Until::after(timeout))
    }

    /// Receive a serde value, waiting for one; `Disconnected` once the other
    /// end is gone and everything it sent was read. A message that does not
    /// decode as `T` stays in the pipe.
    pub fn recv<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.rx()?.recv_value_until(Until::Forever)
    }

    /// [`recv`](Self::recv) without waiting (`Empty` if nothing is there).
    pub fn try_recv<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.rx()?.recv_value_until(Until::Now)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.rx()?.recv_value_until(Until::after(timeout))
    }

    /// Send `buf[offset .. offset + size]` (all of the rest when `size` is
    /// `None`) as one message, waiting for room; an out-of-range `offset`
    /// or `size` is an error, as in Python.
    pub fn send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), SendError<()>> {
        self.send_bytes_until(buf, offset, size, Until::Forever)
    }

    /// [`send_bytes`](Self::send_bytes) without waiting.
    pub fn try_send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), SendError<()>> {
        self.send_bytes_until(buf, offset, size, Until::Now)
    }

    /// [`send_bytes`](Self::send_bytes), waiting at most `timeout`.
    pub fn send_bytes_timeout(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.send_bytes_until(buf, offset, size, Until::after(timeout))
    }

    fn send_bytes_until(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        until: Until,
    ) -> Result<(), SendError<()>> {
        let bad = |what: String| SendError::Failed((), Error::InvalidArgument(what));
        if offset > buf.len() {
            return Err(bad(format!(
                "offset {offset} is past the buffer's {} bytes",
                buf.len()
            )));
        }
        let size = size.unwrap_or(buf.len() - offset);
        if size > buf.len() - offset {
            return Err(bad(format!(
                "offset {offset} + size {size} is past the buffer's {} bytes",
                buf.len()
            )));
        }
        self.tx()?.send_until(&buf[offset..offset + size], until)
    }

    /// Receive one message as bytes, waiting for one. With `max_len`, a
    /// longer message is refused with `BufferTooShort` (how long it is) and
    /// stays in the pipe.
    pub fn recv_bytes(&mut self, max_len: Option<usize>) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(max_len, Until::Forever)
    }

    /// [`recv_bytes`](Self::recv_bytes) without waiting.
    pub fn try_recv_bytes(&mut self, max_len: Option<usize>) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(max_len, Until::Now)
    }

    /// [`recv_bytes`](Self::recv_bytes), waiting at most `timeout`.
    pub fn recv_bytes_timeout(
        &mut self,
        max_len: Option<usize>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(max_len, Until::after(timeout))
    }

    fn recv_bytes_until(
        &mut self,
        max_len: Option<usize>,
        until: Until,
    ) -> Result<Vec<u8>, RecvError> {
        let rx = self.rx()?;
        let len = rx.next_len_until(until)?;
        if max_len.is_some_and(|m| len > m) {
            return Err(RecvError::BufferTooShort { needed: len });
        }
        // It is there (this end is its only reader): take it now.
        rx.try_recv_vec()
    }

    /// Receive one message into `buf[offset..]`, waiting for one; its
    /// length. If it does not fit, `BufferTooShort` says how many bytes it
    /// needs and it stays in the pipe, to be read again with a larger
    /// buffer.
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize, RecvError> {
        self.recv_bytes_into_until(buf, offset, Until::Forever)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) without waiting.
    pub fn try_recv_bytes_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
    ) -> Result<usize, RecvError> {
        self.recv_bytes_into_until(buf, offset, Until::Now)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting at most
    /// `timeout`.
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        self.recv_bytes_into_until(buf, offset, Until::after(timeout))
    }

    fn recv_bytes_into_until(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        until: Until,
    ) -> Result<usize, RecvError> {
        if offset > buf.len() {
            return Err(RecvError::Failed(Error::InvalidArgument(format!(
                "offset {offset} is past the buffer's {} bytes",
                buf.len()
            ))));
        }
        self.rx()?.recv_until(&mut buf[offset..], until)
    }

    /// Whether a message is ready (or the other end is gone, so a receive
    /// returns at once): `None` waits as long as it takes, `Some(0)` checks
    /// now.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        match self.rx.as_mut() {
            Some(rx) => rx.poll(timeout),
            None => Err(Error::InvalidArgument(
                "this end of a simplex pipe only sends".into(),
            )),
        }
    }

    /// A file descriptor for `poll`/`epoll` that becomes readable when a
    /// message may be ready (see [`Consumer::doorbell`]); then use
    /// `receiver().try_*` until `Empty`.
    pub fn doorbell(&mut self) -> Result<BorrowedFd<'_>> {
        match self.rx.as_mut() {
            Some(rx) => rx.doorbell(),
            None => Err(Error::InvalidArgument(
                "this end of a simplex pipe only sends".into(),
            )),
        }
    }

    /// Close this end (the same as dropping it).
    pub fn close(self) {}
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.seg.forked_copy() {
            return; // a forked child's copy (its halves check for themselves)
        }
        // The halves publish what is pending and set their closed bits,
        // then the end leaves its peer slot.
        drop(self.tx.take());
        drop(self.rx.take());
        peer::detach(&self.seg, self.end);
    }
}
