//! Single-producer single-consumer byte ring between processes.
//!
//! One [`Producer`] and one [`Consumer`], each in any process that can open
//! the segment, exchange variable-size byte messages through a ring in
//! shared memory. Sending and receiving make no system call unless the other
//! side sleeps; a side with nothing to do spins briefly, yields, then sleeps
//! on a futex ([`WaitStrategy`](crate::WaitStrategy)).
//!
//! ```
//! use ringway::spsc::{Consumer, Producer};
//! # let name = format!("doc-spsc-{}", std::process::id());
//! let mut tx = Producer::create(&name, 4096)?; // usually in one process
//! let mut rx = Consumer::open(&name)?;         // ... and this in another
//! tx.send(b"hello")?;
//! let mut buf = [0u8; 64];
//! let n = rx.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! drop(tx); // the end of the stream
//! assert!(rx.recv(&mut buf).unwrap_err().is_disconnected());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - Every message sent is received exactly once, in order, intact, unless
//!   the consumer goes away first.
//! - When the producer is dropped, or its process dies, the consumer
//!   receives everything that was published and then
//!   [`RecvError::Disconnected`](crate::RecvError::Disconnected). A message the dead producer had claimed
//!   but not committed is never seen.
//! - When the consumer is dropped or dies, a producer that waits for room
//!   gets [`SendError::Disconnected`](crate::SendError::Disconnected) (with its message) instead of hanging;
//!   a dropped consumer is noticed at the next send.
//! - An end is attached once: opening an end that is in use gives
//!   [`Error::InUse`](crate::Error::InUse); opening one that was closed gives [`Error::Closed`](crate::Error::Closed).

#[cfg(not(loom))]
pub(crate) mod handles;
pub(crate) mod ring;
#[cfg(not(loom))]
pub use handles::*;
