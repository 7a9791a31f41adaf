//! `ringway._ringway`: the native half of the `ringway` Python package.
//!
//! Thin classes over the Rust library; `python/ringway/__init__.py` builds
//! the `multiprocessing`-shaped API on them (pickling, framing, `queue`
//! exceptions). Every call that may wait releases the GIL and waits in
//! slices of [`SLICE`], checking for signals between them, so Ctrl-C
//! interrupts a blocked `get` as it does in CPython.

// Outside the library's modelled protocols (the loom shim is the
// library's own): plain std atomics for process-local flags.
#![allow(clippy::disallowed_types)]

use pyo3::exceptions::{
    PyBrokenPipeError, PyEOFError, PyKeyError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringway::counters::{ArcMapGuard, CounterMap};
use ringway::mpmc::{Receiver, Sender};
use ringway::{Error, Options, RecvError, SendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a native call waits without looking at signals.
const SLICE: Duration = Duration::from_millis(50);

fn os_error(e: Error) -> PyErr {
    match e {
        Error::InvalidArgument(m) => PyValueError::new_err(m),
        Error::NotFound { .. } => {
            PyErr::new::<pyo3::exceptions::PyFileNotFoundError, _>(e.to_string())
        }
        Error::AlreadyExists { .. } => {
            PyErr::new::<pyo3::exceptions::PyFileExistsError, _>(e.to_string())
        }
        other => PyOSError::new_err(other.to_string()),
    }
}

/// `None`: wait as long as it takes; `Some(t)`: until `t`.
fn deadline(block: bool, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    if !block {
        return Ok(Some(Instant::now()));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
        Some(t) => Ok(Instant::now().checked_add(Duration::from_secs_f64(t.min(1e9)))),
    }
}

/// The next slice to wait, or `None` once the deadline has passed.
fn slice(until: Option<Instant>) -> Option<Duration> {
    match until {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SLICE))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn closed() -> PyErr {
    PyValueError::new_err("the queue is closed in this process")
}

/// One process's view of an mpmc queue. The creator's `holder` handle
/// holds the queue open until it lets go (a queue's creator: a sender
/// that never sends; a pipe direction's creator: its sending end, so its
/// reader's going away is seen). Other handles open when first needed: a
/// process becomes a producer at its first `put` (or `register_producer`),
/// so the end of the stream does not wait for processes that never put.
///
/// Every mutex here is taken with the GIL released: a thread blocked in
/// `get` holds `rx` (for a slice) without the GIL, and another thread
/// that waited for `rx` while holding the GIL would deadlock with it.
#[pyclass(module = "ringway._ringway")]
struct RawQueue {
    name: String,
    capacity: usize,
    max_message: usize,
    creator: bool,
    holder: Mutex<Option<Sender>>,
    rx: Mutex<Option<Receiver>>,
    tx: Mutex<Option<Sender>>,
    closed: AtomicBool,
}

/// What a native call found, turned into a Python result with the GIL.
enum Outcome<T> {
    Done(T),
    /// No room, or nothing, by the slice's end.
    Later,
    Err(PyErr),
}

fn send_outcome(r: std::result::Result<(), SendError<()>>, len: usize) -> Outcome<()> {
    match r {
        Ok(()) => Outcome::Done(()),
        Err(SendError::Timeout(_) | SendError::Full(_)) => Outcome::Later,
        Err(SendError::Disconnected(_)) => Outcome::Err(PyBrokenPipeError::new_err(
            "no process receives from this queue",
        )),
        Err(SendError::TooLarge { max, .. }) => Outcome::Err(PyValueError::new_err(format!(
            "message of {len} bytes: the queue's slots hold {max}"
        ))),
        Err(SendError::Failed(_, e)) => Outcome::Err(os_error(e)),
        Err(e) => Outcome::Err(PyOSError::new_err(e.to_string())),
    }
}

fn recv_outcome(r: std::result::Result<Vec<u8>, RecvError>) -> Outcome<Vec<u8>> {
    match r {
        Ok(v) => Outcome::Done(v),
        Err(RecvError::Timeout | RecvError::Empty) => Outcome::Later,
        Err(RecvError::Disconnected) => {
            Outcome::Err(PyEOFError::new_err("the queue's stream has ended"))
        }
        Err(RecvError::Failed(e)) => Outcome::Err(os_error(e)),
        Err(e) => Outcome::Err(PyOSError::new_err(e.to_string())),
    }
}

/// Send `tag` then `data` as one message, written in place: `None` does
/// not wait, `Some(t)` waits at most `t`.
fn put_tagged(
    tx: &mut Sender,
    tag: u8,
    data: &[u8],
    wait: Option<Duration>,
) -> std::result::Result<(), SendError<()>> {
    let len = 1 + data.len();
    let mut g = match wait {
        None => tx.try_claim(len)?,
        Some(t) if t.is_zero() => tx.try_claim(len)?,
        Some(t) => tx.claim_timeout(len, t)?,
    };
    g[0] = tag;
    g[1..len].copy_from_slice(data);
    g.commit_len(len).map_err(|e| SendError::Failed((), e))
}

impl RawQueue {
    /// `shape`: (slots, slot bytes); `holder`: the creator's handle, if
    /// this process created the queue.
    fn new(
        name: &str,
        shape: (usize, usize),
        holder: Option<Sender>,
        tx: Option<Sender>,
        rx: Option<Receiver>,
    ) -> RawQueue {
        RawQueue {
            name: name.to_owned(),
            capacity: shape.0,
            max_message: shape.1,
            creator: holder.is_some(),
            holder: Mutex::new(holder),
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        // ORDERING: Relaxed — a process-local flag; the handles themselves
        // are behind their mutexes.
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed());
        }
        Ok(())
    }

    /// Run `f` on this process's sender (opened if need be), GIL released.
    fn with_tx<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Sender) -> R + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            self.check_open()?;
            let mut tx = lock(&self.tx);
            if tx.is_none() {
                *tx = Some(Sender::open(&self.name).map_err(os_error)?);
            }
            Ok(f(tx.as_mut().expect("just set")))
        })
    }

    /// `(len, lost)` through whichever handle this process has, without
    /// opening one: `fs` on a sender's figures, `fr` on a receiver.
    fn with_any<R: Send>(
        &self,
        py: Python<'_>,
        fs: impl FnOnce((usize, u64)) -> R + Send,
        fr: impl FnOnce(&Receiver) -> R + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            self.check_open()?;
            if let Some(rx) = lock(&self.rx).as_ref() {
                return Ok(fr(rx));
            }
            for m in [&self.tx, &self.holder] {
                if let Some(tx) = lock(m).as_ref() {
                    return Ok(fs((tx.len(), tx.lost())));
                }
            }
            let rx = Receiver::open(&self.name).map_err(os_error)?;
            Ok(fr(&rx))
        })
    }

    /// Run `f` on this process's receiver (opened if need be), GIL released.
    fn with_rx<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Receiver) -> R + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            self.check_open()?;
            let mut rx = lock(&self.rx);
            if rx.is_none() {
                *rx = Some(Receiver::open(&self.name).map_err(os_error)?);
            }
            Ok(f(rx.as_mut().expect("just set")))
        })
    }
}

#[pymethods]
impl RawQueue {
    /// Create the named queue: `slots` messages of up to `slot_size`
    /// bytes. With `sender` (a pipe direction), the creator handle is also
    /// this process's sending end; else this process gets a receiver.
    #[staticmethod]
    #[pyo3(signature = (name, slots, slot_size, sender=false))]
    fn create(name: &str, slots: usize, slot_size: usize, sender: bool) -> PyResult<RawQueue> {
        let holder: Sender = Options::new()
            .room_for(slots, slot_size)
            .create(name)
            .map_err(os_error)?;
        let fd = holder.segment_fd();
        let shape = (holder.capacity(), holder.max_message_len());
        Ok(if sender {
            // This process's sending end is a second sender: the holder
            // only holds, so `let_go` never waits for a blocked send.
            let tx = Sender::from_fd(fd).map_err(os_error)?;
            RawQueue::new(name, shape, Some(holder), Some(tx), None)
        } else {
            let rx = Receiver::from_fd(fd).map_err(os_error)?;
            RawQueue::new(name, shape, Some(holder), None, Some(rx))
        })
    }

    /// Open the named queue (as a sender if `sender`, registering this
    /// process as a producer at once; else as a receiver), waiting at
    /// most `timeout` seconds for it to appear.
    #[staticmethod]
    #[pyo3(signature = (name, timeout=0.0, sender=false))]
    fn open(py: Python<'_>, name: &str, timeout: f64, sender: bool) -> PyResult<RawQueue> {
        let o = Options::new().open_timeout(Duration::from_secs_f64(timeout.clamp(0.0, 1e9)));
        Ok(if sender {
            let tx = py.detach(|| o.open::<Sender>(name)).map_err(os_error)?;
            let shape = (tx.capacity(), tx.max_message_len());
            RawQueue::new(name, shape, None, Some(tx), None)
        } else {
            let rx = py.detach(|| o.open::<Receiver>(name)).map_err(os_error)?;
            let shape = (rx.capacity(), rx.max_message_len());
            RawQueue::new(name, shape, None, None, Some(rx))
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }

    #[getter]
    fn is_creator(&self) -> bool {
        self.creator
    }

    /// Become a producer now (the stream's end waits for this process).
    fn register_producer(&self, py: Python<'_>) -> PyResult<()> {
        self.with_tx(py, |_| ())
    }

    /// Send one message: the byte `tag`, then `data`. `True` if sent,
    /// `False` if there was no room by the deadline.
    #[pyo3(signature = (tag, data, block=true, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        tag: u8,
        data: &[u8],
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let len = 1 + data.len();
        // The fast path, with the GIL held: no wait, so nothing to release
        // it for (a release and re-take costs more than the send).
        if let Ok(mut g) = self.tx.try_lock() {
            if let (Some(tx), Ok(())) = (g.as_mut(), self.check_open()) {
                match send_outcome(put_tagged(tx, tag, data, None), len) {
                    Outcome::Done(()) => return Ok(true),
                    Outcome::Err(e) => return Err(e),
                    Outcome::Later => {}
                }
            }
        }
        let until = deadline(block, timeout)?;
        loop {
            let s = slice(until);
            let r = self.with_tx(py, |tx| {
                send_outcome(
                    put_tagged(tx, tag, data, Some(s.unwrap_or(Duration::ZERO))),
                    len,
                )
            })?;
            match r {
                Outcome::Done(()) => return Ok(true),
                Outcome::Err(e) => return Err(e),
                Outcome::Later if slice(until).is_some() => py.check_signals()?,
                Outcome::Later => return Ok(false),
            }
        }
    }

    /// Take one message: `(tag, rest)`, or `None` if none came by the
    /// deadline. `EOFError` once the stream has ended (the creator let go,
    /// every producer left, and it is drained).
    #[pyo3(signature = (block=true, timeout=None))]
    fn get(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Option<(u8, Py<PyBytes>)>> {
        let tagged = |py: Python<'_>, v: &[u8]| match v.split_first() {
            Some((&tag, rest)) => Ok(Some((tag, PyBytes::new(py, rest).unbind()))),
            None => Err(PyOSError::new_err(
                "an empty message: not one of ringway-py's",
            )),
        };
        // The fast path, with the GIL held (see `put`), copying straight
        // from the slot into the new bytes object.
        if let Ok(mut g) = self.rx.try_lock() {
            if let (Some(rx), Ok(())) = (g.as_mut(), self.check_open()) {
                match rx.try_read() {
                    Ok(m) => return tagged(py, &m),
                    Err(RecvError::Empty) => {}
                    Err(e) => {
                        if let Outcome::Err(e) = recv_outcome(Err(e)) {
                            return Err(e);
                        }
                    }
                }
            }
        }
        let until = deadline(block, timeout)?;
        loop {
            let s = slice(until);
            let r = self.with_rx(py, |rx| match s {
                None => recv_outcome(rx.try_recv_vec()),
                Some(s) => recv_outcome(rx.recv_vec_timeout(s)),
            })?;
            match r {
                Outcome::Done(v) => return tagged(py, &v),
                Outcome::Err(e) => return Err(e),
                Outcome::Later if slice(until).is_some() => py.check_signals()?,
                Outcome::Later => return Ok(None),
            }
        }
    }

    /// Messages in the queue now (a snapshot).
    fn qsize(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_any(py, |s| s.0, |r| r.len())
    }

    /// Messages lost with processes that died holding them.
    fn lost(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_any(py, |s| s.1, |r| r.lost())
    }

    /// The creator's "no more producers will join": it lets go of the
    /// queue and puts no more (the stream ends once every other producer
    /// has left and it is drained); this process may still get.
    fn let_go(&self, py: Python<'_>) {
        py.detach(|| {
            drop(lock(&self.holder).take());
            drop(lock(&self.tx).take());
        });
    }

    /// No more puts or gets through this object; its handles are released
    /// (a creator's: no more producers will join). Idempotent.
    fn close(&self, py: Python<'_>) {
        // ORDERING: Relaxed — see `check_open`; a `get` blocked in another
        // thread sees it at its next slice and lets go of `rx`.
        self.closed.store(true, Ordering::Relaxed);
        py.detach(|| {
            drop(lock(&self.holder).take());
            drop(lock(&self.tx).take());
            drop(lock(&self.rx).take());
        });
    }

    #[getter]
    fn closed(&self) -> bool {
        // ORDERING: Relaxed — see `check_open`.
        self.closed.load(Ordering::Relaxed)
    }
}

/// Open the named map, waiting at most `timeout` seconds, GIL released.
fn open_map(py: Python<'_>, name: &str, timeout: f64) -> PyResult<Arc<CounterMap>> {
    let t = Duration::from_secs_f64(timeout.clamp(0.0, 1e9));
    let map = py
        .detach(|| CounterMap::open_timeout(name, t))
        .map_err(os_error)?;
    Ok(Arc::new(map))
}

/// A shared counter map (`SharedCounters`'s native half).
#[pyclass(module = "ringway._ringway")]
struct RawCounters {
    name: String,
    map: Arc<CounterMap>,
}

#[pymethods]
impl RawCounters {
    #[staticmethod]
    fn create(name: &str, keys: usize) -> PyResult<RawCounters> {
        let map = CounterMap::create(name, keys).map_err(os_error)?;
        Ok(RawCounters {
            name: name.to_owned(),
            map: Arc::new(map),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (name, timeout=0.0))]
    fn open(py: Python<'_>, name: &str, timeout: f64) -> PyResult<RawCounters> {
        Ok(RawCounters {
            name: name.to_owned(),
            map: open_map(py, name, timeout)?,
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn add(&self, key: &str, delta: i64) -> PyResult<i64> {
        self.map.add(key, delta).map_err(os_error)
    }

    fn get(&self, key: &str) -> PyResult<Option<i64>> {
        self.map.get(key).map_err(os_error)
    }

    fn set(&self, key: &str, value: i64) -> PyResult<()> {
        self.map.set(key, value).map_err(os_error)
    }

    fn remove(&self, key: &str) -> PyResult<i64> {
        self.map
            .remove(key)
            .map_err(os_error)?
            .ok_or_else(|| PyKeyError::new_err(key.to_owned()))
    }

    fn items(&self) -> PyResult<Vec<(String, i64)>> {
        self.map.snapshot().map_err(os_error)
    }

    fn __len__(&self) -> PyResult<usize> {
        self.map.len().map_err(os_error)
    }
}

/// A held lock and the thread that took it.
struct Held {
    guard: ArcMapGuard,
    thread: std::thread::ThreadId,
}

// SAFETY: the guard is only ever dropped (unlocked) after checking that
// the current thread is `thread`, the one that locked it (`release`); if
// the lock object itself is dropped elsewhere while held, glibc's robust
// mutex refuses an unlock by a non-owner (EPERM): an error, not undefined
// behaviour, and the lock is then released when the owner thread's
// process exits.
unsafe impl Send for Held {}

/// A robust inter-process lock (`Lock`'s native half): a holder that dies
/// releases it, and the next holder is told.
#[pyclass(module = "ringway._ringway")]
struct RawLock {
    name: String,
    map: Arc<CounterMap>,
    held: Mutex<Option<Held>>,
}

#[pymethods]
impl RawLock {
    #[staticmethod]
    fn create(name: &str) -> PyResult<RawLock> {
        let map = CounterMap::create(name, 1).map_err(os_error)?;
        Ok(RawLock {
            name: name.to_owned(),
            map: Arc::new(map),
            held: Mutex::new(None),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (name, timeout=0.0))]
    fn open(py: Python<'_>, name: &str, timeout: f64) -> PyResult<RawLock> {
        Ok(RawLock {
            name: name.to_owned(),
            map: open_map(py, name, timeout)?,
            held: Mutex::new(None),
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Take the lock: `None` if not taken by the deadline, else whether
    /// the previous holder died holding it.
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Option<bool>> {
        if lock(&self.held)
            .as_ref()
            .is_some_and(|h| h.thread == std::thread::current().id())
        {
            return Err(PyRuntimeError::new_err(
                "this thread already holds the lock (it is not reentrant)",
            ));
        }
        let until = deadline(block, timeout)?;
        loop {
            let wait = slice(until).unwrap_or(Duration::ZERO);
            // The robust mutex belongs to the thread that takes it: take it
            // here, on this thread, with the GIL released.
            // (`detach` runs the closure on this thread: the guard it
            // returns, as a `Held`, stays here.)
            let map = self.map.clone();
            let got = py.detach(move || {
                let thread = std::thread::current().id();
                map.lock_arc(Some(wait.max(Duration::from_nanos(1))))
                    .map(|g| g.map(|guard| Held { guard, thread }))
            });
            match got.map_err(os_error)? {
                Some(h) => {
                    let died = h.guard.owner_died();
                    *lock(&self.held) = Some(h);
                    return Ok(Some(died));
                }
                None if slice(until).is_some() => py.check_signals()?,
                None => return Ok(None),
            }
        }
    }

    /// Release the lock (from the thread that took it).
    fn release(&self) -> PyResult<()> {
        let mut held = lock(&self.held);
        match held.as_ref() {
            None => Err(PyValueError::new_err("release of an unlocked lock")),
            Some(h) if h.thread != std::thread::current().id() => Err(PyRuntimeError::new_err(
                "the lock is released by the thread that acquired it",
            )),
            Some(_) => {
                drop(held.take().map(|h| h.guard));
                Ok(())
            }
        }
    }

    #[getter]
    fn locked(&self) -> bool {
        lock(&self.held).is_some()
    }
}

#[pymodule]
fn _ringway(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RawQueue>()?;
    m.add_class::<RawCounters>()?;
    m.add_class::<RawLock>()?;
    Ok(())
}
