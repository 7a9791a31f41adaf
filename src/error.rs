//! Errors: one `#[non_exhaustive]` [`Error`] for everything that is not a
//! plain "try again" outcome, plus [`SendError`] (which gives the message
//! back) and [`RecvError`].

use std::fmt;
use std::io;

/// What went wrong, naming the segment and, for a validation failure, the
/// field that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    Io {
        /// What we were doing (`"shm_open"`, `"mmap"`, ...).
        op: &'static str,
        /// The segment's name (`<anonymous>` for a memfd).
        segment: String,
        /// The OS error.
        source: io::Error,
    },
    /// `/dev/shm` (or the memfd's tmpfs) has no room for the segment.
    NoSpace {
        /// The segment's name.
        segment: String,
        /// Bytes that could not be reserved.
        bytes: u64,
    },
    /// A segment of that name exists and is in use. (One that no process
    /// holds any more is replaced by `create`, not reported.)
    AlreadyExists {
        /// The segment's name.
        segment: String,
        /// The pids its live peers recorded (display only; empty when the
        /// holder has not attached yet, e.g. it is being opened).
        pids: Vec<u32>,
    },
    /// Every process that held the segment is gone and one of them died
    /// while attached: its session is over. The next `create` of the name
    /// replaces it; a waiting `open` waits for that.
    Stale {
        /// The segment's name.
        segment: String,
    },
    /// `open_or_create` found the segment with other parameters than
    /// those asked for.
    Mismatch {
        /// The segment's name.
        segment: String,
        /// What differs.
        detail: String,
    },
    /// No segment of that name exists.
    NotFound {
        /// The segment's name.
        segment: String,
    },
    /// The name is not usable as a segment name.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An argument is out of range (capacity, length, offset, ...).
    InvalidArgument(String),
    /// The segment is not a valid ringway segment of the expected shape: a
    /// header field failed validation when it was opened.
    Invalid {
        /// The segment's name.
        segment: String,
        /// The header field that failed.
        field: &'static str,
        /// What was found, and what was expected.
        detail: String,
    },
    /// The shared state of an open segment is inconsistent: a peer wrote
    /// something no correct peer writes. Nothing out of bounds was touched.
    Corrupted {
        /// The segment's name.
        segment: String,
        /// What was inconsistent.
        detail: String,
    },
    /// The end asked for is attached in another handle (maybe another
    /// process): an end has one owner at a time.
    InUse {
        /// The segment's name.
        segment: String,
        /// Which end (`"producer"`, `"consumer"`).
        role: &'static str,
    },
    /// That end of the segment was closed (or its owner died); it cannot be
    /// opened again.
    Closed {
        /// The segment's name.
        segment: String,
        /// Which end.
        role: &'static str,
    },
    /// A value could not be encoded.
    Encode {
        /// The value's type.
        type_name: &'static str,
        /// What the encoder said.
        detail: String,
    },
    /// A message does not decode as the type asked for. It was not
    /// consumed: read it as bytes, or with the right type.
    Decode {
        /// The type asked for.
        type_name: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// Every peer slot of the segment is taken.
    TooManyPeers {
        /// The segment's name.
        segment: String,
        /// How many handles it takes at once.
        slots: u32,
    },
    /// The segment's creator did not finish initialising it in time.
    NotReady {
        /// The segment's name.
        segment: String,
    },
    /// The segment is held by someone else for now: removing it while a
    /// process uses it, or opening it while `ringway rm`/`gc` removes it.
    Busy {
        /// The segment's name.
        segment: String,
        /// Who holds it.
        by: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                op,
                segment,
                source,
            } => {
                write!(f, "segment {segment:?}: {op} failed: {source}")
            }
            Error::NoSpace { segment, bytes } => write!(
                f,
                "segment {segment:?}: no space to reserve {bytes} bytes of shared memory \
                 (is /dev/shm full or too small?)"
            ),
            Error::AlreadyExists { segment, pids } if pids.is_empty() => write!(
                f,
                "segment {segment:?} already exists and a process is opening it"
            ),
            Error::AlreadyExists { segment, pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "segment {segment:?} already exists, in use by pid {}: open it instead, \
                     or stop those processes (it is replaced once nobody holds it)",
                    pids.join(", ")
                )
            }
            Error::Stale { segment } => write!(
                f,
                "segment {segment:?} is stale: every process that held it is gone and one died \
                 attached; creating it again replaces it (`ringway gc` removes it)"
            ),
            Error::Mismatch { segment, detail } => {
                write!(
                    f,
                    "segment {segment:?} exists with other parameters: {detail}"
                )
            }
            Error::NotFound { segment } => write!(f, "segment {segment:?} does not exist"),
            Error::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Invalid {
                segment,
                field,
                detail,
            } => write!(
                f,
                "segment {segment:?}: invalid header field `{field}`: {detail}"
            ),
            Error::Corrupted { segment, detail } => {
                write!(f, "segment {segment:?} is corrupted: {detail}")
            }
            Error::InUse { segment, role } => {
                write!(f, "segment {segment:?}: the {role} end is already in use")
            }
            Error::Closed { segment, role } => {
                write!(f, "segment {segment:?}: the {role} end was closed")
            }
            Error::Encode { type_name, detail } => {
                write!(f, "cannot encode a value of type {type_name}: {detail}")
            }
            Error::Decode { type_name, detail } => write!(
                f,
                "message does not decode as {type_name}: {detail} (it stays in the ring)"
            ),
            Error::TooManyPeers { segment, slots } => write!(
                f,
                "segment {segment:?}: all {slots} peer slots are taken; drop a handle first"
            ),
            Error::NotReady { segment } => write!(
                f,
                "segment {segment:?}: its creator did not finish initialising it in time"
            ),
            Error::Busy { segment, by } => write!(f, "segment {segment:?} is held by {by}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A send that did not happen; the message comes back in every variant.
///
/// Which variants a method can return is said on the method: `try_*` gives
/// `Full`, `*_timeout` gives `Timeout`, all give `Disconnected`, `TooLarge`
/// and `Failed`.
#[non_exhaustive]
pub enum SendError<T> {
    /// No room now (`try_*` only).
    Full(T),
    /// No room before the deadline.
    Timeout(T),
    /// The receiving end is closed or its process died: nobody will read.
    Disconnected(T),
    /// The message is larger than the ring can ever hold.
    TooLarge {
        /// The message.
        msg: T,
        /// The largest message this ring takes, in bytes.
        max: usize,
    },
    /// The shared state is corrupt; see the [`Error`].
    Failed(T, Error),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(m)
            | SendError::Timeout(m)
            | SendError::Disconnected(m)
            | SendError::TooLarge { msg: m, .. }
            | SendError::Failed(m, _) => m,
        }
    }
    /// Whether this is `Full`.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
    /// Whether this is `Disconnected`.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }
    /// Whether this is `Timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Timeout(_))
    }
    /// Replace the message, keeping the reason.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendError<U> {
        match self {
            SendError::Full(m) => SendError::Full(f(m)),
            SendError::Timeout(m) => SendError::Timeout(f(m)),
            SendError::Disconnected(m) => SendError::Disconnected(f(m)),
            SendError::TooLarge { msg, max } => SendError::TooLarge { msg: f(msg), max },
            SendError::Failed(m, e) => SendError::Failed(f(m), e),
        }
    }
}

// Debug without `T: Debug`, as crossbeam does: the payload is not shown.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Timeout(_) => f.write_str("Timeout(..)"),
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::TooLarge { max, .. } => write!(f, "TooLarge {{ max: {max}, .. }}"),
            SendError::Failed(_, e) => write!(f, "Failed(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("sending on a full ring"),
            SendError::Timeout(_) => f.write_str("timed out waiting for room in the ring"),
            SendError::Disconnected(_) => f.write_str("sending on a ring whose receiver is gone"),
            SendError::TooLarge { max, .. } => {
                write!(f, "message larger than the ring's maximum of {max} bytes")
            }
            SendError::Failed(_, e) => write!(f, "send failed: {e}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Failed(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A receive that returned no message. The message, if there was one,
/// stays in the ring.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing to read now (`try_*` only).
    Empty,
    /// Nothing arrived before the deadline.
    Timeout,
    /// The ring is drained and the sending end is closed or its process
    /// died: nothing more will come.
    Disconnected,
    /// The caller's buffer is too short; the message stays in the ring.
    BufferTooShort {
        /// The message's length: a buffer this long will take it.
        needed: usize,
    },
    /// The shared state is corrupt; see the [`Error`].
    Failed(Error),
}

impl RecvError {
    /// Whether this is `Disconnected`.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvError::Disconnected)
    }
    /// Whether this is `Empty` (`try_*` only).
    pub fn is_empty(&self) -> bool {
        matches!(self, RecvError::Empty)
    }
    /// Whether this is `Timeout` (`*_timeout` only).
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvError::Timeout)
    }
    /// Whether this is `BufferTooShort` (the message stays).
    pub fn is_buffer_too_short(&self) -> bool {
        matches!(self, RecvError::BufferTooShort { .. })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("receiving on an empty ring"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::Disconnected => {
                f.write_str("receiving on a drained ring whose sender is gone")
            }
            RecvError::BufferTooShort { needed } => write!(
                f,
                "buffer too short: the message needs {needed} bytes (it stays in the ring)"
            ),
            RecvError::Failed(e) => write!(f, "receive failed: {e}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> Self {
        RecvError::Failed(e)
    }
}

/// A corruption found by a ring core, which does not know the segment's
/// name (the handle layer puts it in, `Segment::named`).
#[cold]
#[inline(never)]
pub(crate) fn corrupt(detail: String) -> Error {
    Error::Corrupted {
        segment: String::new(),
        detail,
    }
}

/// One step of a blocking message iterator: a message, the end of the
/// stream (`None`, and `done`), or a failure (reported once, then `done`).
pub(crate) fn iter_step(
    res: Result<Vec<u8>, RecvError>,
    done: &mut bool,
) -> Option<Result<Vec<u8>, Error>> {
    match res {
        Ok(v) => Some(Ok(v)),
        Err(RecvError::Failed(e)) => {
            *done = true;
            Some(Err(e))
        }
        Err(_) => {
            *done = true;
            None
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_segment_and_field() {
        let e = Error::Invalid {
            segment: "jobs".into(),
            field: "magic",
            detail: "found 0x0, expected 0x1".into(),
        };
        assert_eq!(
            e.to_string(),
            "segment \"jobs\": invalid header field `magic`: found 0x0, expected 0x1"
        );
        let e: SendError<Vec<u8>> = SendError::TooLarge {
            msg: vec![1, 2],
            max: 8,
        };
        assert_eq!(
            e.to_string(),
            "message larger than the ring's maximum of 8 bytes"
        );
        assert_eq!(format!("{e:?}"), "TooLarge { max: 8, .. }");
        assert_eq!(e.into_inner(), vec![1, 2]);
        assert_eq!(
            RecvError::BufferTooShort { needed: 9 }.to_string(),
            "buffer too short: the message needs 9 bytes (it stays in the ring)"
        );
    }
}
