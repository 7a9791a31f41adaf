//! Multi-producer multi-consumer queue between processes: the tutorial's
//! `multiprocessing.Queue`, without sentinels, surviving crashes.
//!
//! Any number of [`Sender`]s and [`Receiver`]s, in any processes that can
//! open the segment, share one bounded queue of fixed-size slots. Each
//! message goes to exactly one receiver. Sending and receiving are
//! lock-free (a CAS on a shared position) and make no system call unless
//! someone sleeps.
//!
//! ```
//! use ringway::mpmc::{Receiver, Sender};
//! # let name = format!("doc-mpmc-{}", std::process::id());
//! // Three chefs and two foodies would each open their end by name, at
//! // any time while the creator's handle (here the receiver) holds the
//! // queue open.
//! let mut rx = Receiver::create(&name, 64, 32)?; // 64 slots of 32 bytes
//! let mut chef = Sender::open(&name)?;
//! chef.send(b"steamed bun")?;
//! rx.close()?; // the creator lets go: the stream ends when the chefs have
//! drop(chef); // the last sender gone: no `None` sentinel needed
//! let mut buf = [0u8; 32];
//! let n = rx.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"steamed bun");
//! assert!(rx.recv(&mut buf).unwrap_err().is_disconnected());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - Every message sent is received by exactly one receiver; messages from
//!   one sender reach any one receiver in the order they were sent.
//! - Joining: senders and receivers may open the queue at any time while
//!   it is open: the creator's handle holds it open until it calls
//!   `close()`, drops or dies.
//! - End of stream: once the creator has let go and the last sender is
//!   dropped (or dies), receivers drain the queue and then get
//!   [`RecvError::Disconnected`](crate::RecvError::Disconnected); iterators
//!   end; a sender opening it later gets `Error::Closed`. A sender waiting
//!   for room gets [`SendError::Disconnected`](crate::SendError::Disconnected)
//!   when the creator has let go and no receiver is attached.
//! - Lifecycle: the name goes with the last holder, unless the queue still
//!   holds messages (a receiver may come for them later).
//! - Crashes: a sender killed between claiming a slot and publishing it
//!   does not stall the queue: after the liveness check (every 20 ms of
//!   waiting) the slot is skipped and counted in [`Receiver::lost`]. A
//!   receiver killed while holding a slot does not block senders: the slot
//!   is freed and its message counted as lost. Nothing else is lost.

#[cfg(not(loom))]
pub(crate) mod handles;
pub(crate) mod ring;
#[cfg(not(loom))]
pub use handles::*;
