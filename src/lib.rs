//! # ringway
//!
//! Producer/consumer pipelines between separate processes on one host,
//! through lock-free rings in shared memory. A message moves with no system
//! call and no copy through the kernel; a side with nothing to do spins
//! briefly, then sleeps on a futex. A crashed peer is detected through a
//! kernel-released lock and treated as a disconnect; bytes a hostile peer
//! writes into the segment give an [`Error`], never undefined behaviour.
//!
//! ## Hello, world
//!
//! ```
//! use ringway::spsc::{Consumer, Producer};
//! # let name = format!("doc-hello-{}", std::process::id());
//! // Process A creates the ring (the name lives in /dev/shm, mode 0600)...
//! let mut tx = Producer::create(&name, 1 << 16)?;
//! // ...process B opens it by name.
//! let mut rx = Consumer::open(&name)?;
//! for i in 0..3u32 {
//!     tx.send(&i.to_le_bytes())?;
//! }
//! drop(tx); // no sentinel needed: the consumer drains, then the stream ends
//! let got: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>()?;
//! assert_eq!(got.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What is here
//!
//! - [`spsc`]: one producer, one consumer, variable-size byte messages;
//!   zero-copy claims, batches, typed values.
//! - [`mpmc`]: many producers and consumers in any processes sharing one
//!   queue of fixed-size slots; each message goes to exactly one receiver;
//!   a dead sender's or receiver's in-flight message is recovered and
//!   counted.
//! - [`pipe`]: `multiprocessing.Pipe`, duplex or simplex, serde values and
//!   raw bytes; a message that does not fit the caller's buffer stays.
//! - [`counters`]: `Manager().dict()` + `Lock`: named counters with
//!   lock-free `add`, and a robust inter-process lock whose dead holder is
//!   reported, never a lock held forever.
//! - [`Options`]: one builder for all four kinds (capacity in bytes or
//!   room for N messages of S bytes, mode, wait strategy, open timeout).
//! - [`codec`]: the serde (postcard) and plain-old-data encodings.
//!
//! ## Segments
//!
//! A ring lives in a segment: a named file in `/dev/shm` (created with
//! `O_CREAT | O_EXCL`, mode `0600`, its pages reserved at creation so a full
//! `/dev/shm` is an error then rather than a `SIGBUS` later), or an anonymous
//! memfd handed to a child ([`spsc::channel`], [`spsc::Producer::segment_fd`],
//! [`spsc::Consumer::from_fd`], or [`spsc::Producer::pass_to`] and
//! `from_inherited` for a `Command` child). A segment lives while any
//! process holds it: the last holder removes the name (a ring still holding
//! messages for a reader that has not come yet is kept for it); `open_wait`
//! and `open_timeout` wait for a name to appear, `open_or_create` lets
//! either side come first, and `create` replaces a segment nobody holds any
//! more (left by killed processes). Every segment starts with a versioned header; opening checks
//! magic, version, kind, checksum, parameters and the file's size before it
//! touches anything past the header.
//!
//! ## Disconnection
//!
//! Dropping a handle closes its end. A receiver whose sender is gone drains
//! what was published, then gets [`RecvError::Disconnected`] (an iterator
//! ends). A sender whose receiver is gone gets [`SendError::Disconnected`]
//! with its message back. This replaces `multiprocessing`'s `None`
//! sentinels.
//!
//! ## Blocking and timeouts
//!
//! Every operation that can wait comes as `try_*` (never waits: `Empty` or
//! `Full`), plain (waits as long as it takes, but still notices a dead
//! peer) and `*_timeout` (`Timeout` at the deadline). Waiting follows a
//! [`WaitStrategy`]: adaptive (spin ~50 µs, yield, then futex) by default,
//! or spin-only for the lowest latency.
//!
//! | kind | operation | blocking | without waiting | with a deadline |
//! |---|---|---|---|---|
//! | all four | open by name | `open_wait` | `open` | `open_timeout` |
//! | [`spsc::Producer`] | bytes | `send` | `try_send` | `send_timeout` |
//! | | serde value | `send_value` | `try_send_value` | `send_value_timeout` |
//! | | plain old data | `send_pod` | `try_send_pod` | `send_pod_timeout` |
//! | | in place (zero-copy) | `claim` | `try_claim` | `claim_timeout` |
//! | | batch (one publication) | `batch().push` | `batch().try_push` | `batch().push_timeout` |
//! | [`spsc::Consumer`] | into a buffer | `recv` | `try_recv` | `recv_timeout` |
//! | | as a `Vec` | `recv_vec` | `try_recv_vec` | `recv_vec_timeout` |
//! | | serde value | `recv_value` | `try_recv_value` | `recv_value_timeout` |
//! | | plain old data | `recv_pod` | `try_recv_pod` | `recv_pod_timeout` |
//! | | in place (zero-copy) | `read` | `try_read` | `read_timeout` |
//! | | everything there (one release) | — | `read_batch` | — |
//! | | readiness | `poll(None)` | `poll(Some(ZERO))` | `poll(Some(t))` |
//! | [`mpmc::Sender`] | bytes | `send` | `try_send` | `send_timeout` |
//! | | serde value | `send_value` | `try_send_value` | `send_value_timeout` |
//! | | plain old data | `send_pod` | `try_send_pod` | `send_pod_timeout` |
//! | | in place (zero-copy) | `claim` | `try_claim` | `claim_timeout` |
//! | | batch (one CAS) | `send_batch` | `try_send_batch` | `send_batch_timeout` |
//! | [`mpmc::Receiver`] | into a buffer | `recv` | `try_recv` | `recv_timeout` |
//! | | as a `Vec` | `recv_vec` | `try_recv_vec` | `recv_vec_timeout` |
//! | | serde value | `recv_value` | `try_recv_value` | `recv_value_timeout` |
//! | | plain old data | `recv_pod` | `try_recv_pod` | `recv_pod_timeout` |
//! | | in place (zero-copy) | `read` | `try_read` | `read_timeout` |
//! | | batch (one CAS) | `recv_batch` | `try_recv_batch` | `recv_batch_timeout` |
//! | [`pipe::Pipe`] | serde value | `send` / `recv` | `try_send` / `try_recv` | `send_timeout` / `recv_timeout` |
//! | | bytes | `send_bytes` / `recv_bytes` | `try_send_bytes` / `try_recv_bytes` | `send_bytes_timeout` / `recv_bytes_timeout` |
//! | | into a buffer | `recv_bytes_into` | `try_recv_bytes_into` | `recv_bytes_into_timeout` |
//! | | readiness | `poll(None)` | `poll(Some(ZERO))` | `poll(Some(t))` |
//! | [`counters::CounterMap`] | the map's lock | `lock` | `try_lock` | `lock_timeout` |
//! | | `get` / `add` / `set` / `compare_exchange` | never wait (lock-free) | | |
//!
//! Every end also has `capacity`, `max_message_len`, `len`, `is_empty` and
//! `is_full` (an spsc ring counts bytes, its messages varying in size; an
//! mpmc queue counts messages), and the receiving ends have `iter()`.
//!
//! ## Crashes
//!
//! Each handle holds an OFD lock on its own byte of the segment's file; the
//! kernel drops it when the process dies, however it dies. A waiting side
//! checks its peer every 20 ms and treats a dead one as disconnected. A
//! producer that dies between claiming room and committing loses that one
//! message; the consumer never sees a partial frame.
//!
//! ## Safety model
//!
//! Everything in shared memory is untrusted: positions and frame headers are
//! loaded once, checked against the capacity, and only then used, so a peer
//! writing garbage makes the ring report [`Error::Corrupted`]; it cannot make
//! this process read or write outside the segment. What a peer *can* do is
//! change message bytes (it has write access to them) or truncate a named
//! segment's file (which would raise `SIGBUS`; anonymous segments are sealed
//! against that). A counter map's lock is glibc's robust mutex, whose bytes
//! glibc itself interprets: a peer that corrupts them can break the lock.
//! Give segments to processes you trust with your data.

#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
compile_error!(
    "ringway supports Linux with glibc only: it needs /dev/shm, memfd_create, OFD locks, \
     futex and glibc's robust process-shared mutex"
);

#[cfg(not(loom))]
pub mod admin;
pub mod codec;
#[cfg(not(loom))]
pub mod counters;
pub mod error;
mod failpoint;
#[cfg(not(loom))]
mod fork;
mod header;
#[cfg(not(loom))]
pub mod inherit;
#[cfg(not(loom))]
mod lock;
pub mod mpmc;
#[cfg(not(loom))]
pub mod options;
#[cfg(not(loom))]
mod peer;
#[cfg(not(loom))]
pub mod pipe;
mod region;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod size;
pub mod spsc;
mod sync;
mod wait;

pub use error::{Error, RecvError, Result, SendError};
pub use header::Kind;
// The segment layout, for the crate's own tests and tools (the hostile
// segment tests write headers): not part of the API.
#[doc(hidden)]
pub use header::{Header, MAGIC, READY, VERSION};
#[cfg(not(loom))]
pub use options::{Handle, Options};
#[cfg(not(loom))]
pub use peer::Liveness;
#[cfg(not(loom))]
pub use segment::unlink;
pub use wait::WaitStrategy;
