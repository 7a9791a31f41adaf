"""multiprocessing's Queue, Pipe, Manager().dict() and Lock on ringway's
lock-free shared-memory rings: no server process, no feeder thread, no
pipe on the hot path.

    import ringway
    q = ringway.Queue()                # like multiprocessing.Queue()
    q.put(("steamed bun", 1)); q.get()
    a, b = ringway.Pipe()              # like multiprocessing.Pipe()
    counts = ringway.SharedCounters()  # like Manager().dict(), for ints
    counts["count"] = 100
    counts["count"] -= 1               # atomic, no lock needed
    lock = ringway.Lock()              # robust: a dead holder releases it

Every object pickles to its name, so it can be handed to a
multiprocessing.Process under the fork and the spawn start methods, or
opened by unrelated programs with `Queue.open(name)` and friends.
"""

import atexit
import contextlib
import os
import pickle
import queue as _queue
import secrets
import threading
import time
import warnings
import weakref
from multiprocessing import BufferTooShort as _MpBufferTooShort
from multiprocessing import util as _mp_util

from . import _ringway

__all__ = [
    "Queue",
    "Pipe",
    "Connection",
    "SharedCounters",
    "Lock",
    "BufferTooShort",
    "OwnerDiedWarning",
]

#: Slots of a Queue created with maxsize <= 0.
DEFAULT_MAXSIZE = 1024
#: Bytes of a slot: an object that pickles to more goes out of line.
DEFAULT_SLOT_SIZE = 1024
#: How long a handle unpickled in another process waits for its segment.
OPEN_TIMEOUT = 10.0

# A message's first byte: how the rest is encoded.
_RAW = 0  # bytes as given (bytes, bytearray, memoryview)
_PICKLED = 1  # pickle protocol 5
_BLOB = 2  # or-ed in: the rest names a file in /dev/shm holding the payload


class BufferTooShort(_MpBufferTooShort):
    """The buffer given to recv_bytes_into is too short; the whole message
    is in args[0] (nothing is lost)."""


class OwnerDiedWarning(RuntimeWarning):
    """A Lock was acquired whose previous holder died holding it."""


def _new_name(kind):
    return "rw-py-%s-%d-%s" % (kind, os.getpid(), secrets.token_hex(6))


# Objects to reopen in a child made by fork: their native handles are the
# parent's (inert in the child: see ringway's fork.rs).
_live = weakref.WeakSet()

# Handing a stream-holding handle (a queue's creator, a pipe's sending end)
# to another process, by pickling or by fork, counts as holding it until
# that process has opened its own: this process's `close()` of it waits for
# that (at most OPEN_TIMEOUT), so a child that has not started yet cannot
# find the stream ended. The counts live in a map of this process's,
# `rw-py-t-<pid>`, keyed by the handle's name; the child takes one off.
_transfers_map = None
_transfers_pid = None


def _transfers():
    global _transfers_map, _transfers_pid
    if _transfers_map is None or _transfers_pid != os.getpid():
        _transfers_map = _ringway.RawCounters.create("rw-py-t-%d" % os.getpid(), 4096)
        _transfers_pid = os.getpid()
    return _transfers_map


def _pending(name):
    if _transfers_map is None or _transfers_pid != os.getpid():
        return 0
    return _transfers_map.get(name) or 0


_acks = {}


def _ack(parent, name):
    try:
        m = _acks.get(parent)
        if m is None:
            m = _acks[parent] = _ringway.RawCounters.open("rw-py-t-%d" % parent, 0.0)
        m.add(name, -1)
    except OSError:
        pass  # the parent is gone, and its count with it


def _before_fork():
    for obj in list(_live):
        if obj._holds_stream():
            obj._transfer_out()


def _after_fork_in_child():
    _acks.clear()
    parent = os.getppid()
    for obj in list(_live):
        obj._forked(parent)


def _close_all():
    """Release this process's handles as it exits. multiprocessing's
    children leave by os._exit, which runs no destructor: without this,
    their handles would look like dead peers, and the last one out would
    not remove the names."""
    global _transfers_map
    for obj in list(_live):
        raw = obj._raw_obj
        obj._raw_obj = None
        if raw is not None and obj._pid == os.getpid() and hasattr(raw, "close"):
            try:
                raw.close()
            except Exception:
                pass
    _acks.clear()
    _transfers_map = None


def _register_exit():
    # Run by multiprocessing's children before their os._exit (finalizers
    # with an exit priority), and by atexit at a normal exit.
    _mp_util.Finalize(None, _close_all, exitpriority=100)


class _AfterFork:
    """multiprocessing's after-fork hooks hold their objects weakly: this
    one lives as long as the module."""


_after_fork_anchor = _AfterFork()
_register_exit()
# A forked multiprocessing child clears the finalizers it inherited, then
# runs the after-fork hooks: register again there.
_mp_util.register_after_fork(_after_fork_anchor, lambda _: _register_exit())
atexit.register(_close_all)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _write_blob(payload):
    name = "rw-blob-%d-%s" % (os.getpid(), secrets.token_hex(8))
    fd = os.open("/dev/shm/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(payload)
    finally:
        os.close(fd)
    return name


def _read_blob(name):
    path = "/dev/shm/" + name
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def _encode(obj, slot_size, raw=False):
    """`(tag, payload)` of the message for `obj` (raw: `obj` is bytes-like
    and sent as is)."""
    if raw or type(obj) in (bytes, bytearray, memoryview):
        # The native call takes bytes (abi3 before 3.11 has no buffer API).
        tag, payload = _RAW, obj if type(obj) is bytes else bytes(obj)
    else:
        tag, payload = _PICKLED, pickle.dumps(obj, protocol=5)
    if 1 + len(payload) <= slot_size:
        return tag, payload
    return tag | _BLOB, _write_blob(payload).encode()


def _decode_payload(tag, payload):
    """`(tag, payload)` with an out-of-line payload read back."""
    if tag & _BLOB:
        payload = _read_blob(payload.decode())
    return tag & ~_BLOB, payload


def _decode(tag, payload):
    tag, payload = _decode_payload(tag, payload)
    return pickle.loads(payload) if tag == _PICKLED else payload


class _Handle:
    """A native handle that reopens by name in another process (after
    unpickling, or in a child made by fork)."""

    def __init__(self, name, raw, ack_to=None):
        self._name = name
        self._raw_obj = raw
        self._pid = os.getpid()
        # The process to tell once this one holds the stream (see
        # `_transfers`), if it was handed this handle.
        self._ack_to = ack_to
        _live.add(self)

    def _holds_stream(self):
        """Whether closing this process's handle could end its stream."""
        return self._pid == os.getpid() and self._stream_role()

    def _stream_role(self):
        """Whether the native handle (this process's or, just after a
        fork, the parent's) holds its stream: a queue's creator, a pipe's
        sending end."""
        return False

    def _transfer_out(self):
        _transfers().add(self._name, 1)

    def _adopted(self):
        if self._ack_to is not None:
            parent, self._ack_to = self._ack_to, None
            _ack(parent, self._name)

    def _forked(self, parent):
        counted = self._stream_role()  # as counted by `_before_fork`
        self._raw_obj = None
        self._pid = None
        self._ack_to = parent if counted else None

    def _close_raw(self, keep_receiving=False):
        """Close this process's native handle, once every process it was
        handed to holds its own (at most OPEN_TIMEOUT later). With
        `keep_receiving` (a queue's creator), only let go of the stream."""
        raw = self._raw_obj
        if raw is None or self._pid != os.getpid() or raw.closed:
            return

        def finish():
            if keep_receiving:
                raw.let_go()
            else:
                raw.close()

        if _pending(self._name) <= 0:
            finish()
            return
        if not keep_receiving:
            # Closed for this process's calls at once (a stand-in takes
            # them), closed for the stream once the others have opened.
            self._raw_obj = _Closed()
        deadline = time.monotonic() + OPEN_TIMEOUT

        def later():
            while _pending(self._name) > 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            finish()

        threading.Thread(target=later, name="ringway-close", daemon=True).start()

    def _raw(self):
        # No getpid() here (it is a system call on every put and get): a
        # child made by fork has had `_raw_obj` reset by `_forked`, and an
        # unpickled one starts without it.
        raw = self._raw_obj
        if raw is None:
            raw = self._raw_obj = self._reopen()
            self._pid = os.getpid()
        return raw

    @property
    def name(self):
        """The name other programs open it by."""
        return self._name


class _Closed:
    """Stands in for a native handle this process has closed."""

    closed = True

    def __getattr__(self, _):
        raise ValueError("closed in this process")

    def close(self):
        pass


class Queue(_Handle):
    """multiprocessing.Queue on an mpmc ring in shared memory.

    Any number of processes may put and get; each object is taken by one
    getter. Objects are pickled (protocol 5); bytes, bytearray and
    memoryview go as raw bytes and come out as bytes. Objects larger than
    a slot go out of line, in their own file in /dev/shm that the getter
    removes. `maxsize` is rounded up to a power of two; <= 0 means
    DEFAULT_MAXSIZE.

    End of stream without sentinels: each producer calls
    `register_producer()` (or `with q.producing():`) before the creator
    calls `close()`; `for item in q` then ends once the creator has closed,
    every producer has left (closed, exited or died), and the queue is
    empty.
    """

    def __init__(self, maxsize=0, *, name=None, slot_size=DEFAULT_SLOT_SIZE):
        name = name or _new_name("q")
        slots = maxsize if maxsize > 0 else DEFAULT_MAXSIZE
        super().__init__(name, _ringway.RawQueue.create(name, slots, slot_size))
        self._maxsize = maxsize
        self._slot_size = self._raw_obj.max_message

    @classmethod
    def open(cls, name, timeout=OPEN_TIMEOUT):
        """Open the queue another program created (waiting up to `timeout` s)."""
        q = cls.__new__(cls)
        _Handle.__init__(q, name, _ringway.RawQueue.open(name, timeout))
        q._maxsize = 0
        q._slot_size = q._raw_obj.max_message
        return q

    def _reopen(self):
        raw = _ringway.RawQueue.open(self._name, OPEN_TIMEOUT)
        self._slot_size = raw.max_message
        return raw

    def __reduce__(self):
        if self._holds_stream():
            self._transfer_out()
        return (_open_queue, (self._name, self._maxsize, os.getpid() if self._holds_stream() else None))

    def _stream_role(self):
        raw = self._raw_obj
        return raw is not None and not raw.closed and raw.is_creator and not self._put_closed

    _put_closed = False

    def put(self, obj, block=True, timeout=None):
        """Put `obj`; queue.Full if there is no room (now, or by `timeout`)."""
        if self._put_closed and self._pid == os.getpid():
            raise ValueError("Queue %s is closed" % self._name)
        raw = self._raw()
        tag, payload = _encode(obj, self._slot_size)
        if self._ack_to is not None:
            raw.register_producer()
            self._adopted()
        if not raw.put(tag, payload, block, timeout):
            if tag & _BLOB:
                _read_blob(payload.decode())  # not sent: remove its file
            raise _queue.Full
        return None

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get(self, block=True, timeout=None):
        """Take one object; queue.Empty if none (now, or by `timeout`).
        EOFError once the stream has ended (see the class docs)."""
        raw = self._raw()
        self._adopted()  # a consumer: the stream need not wait for it
        msg = raw.get(block, timeout)
        if msg is None:
            raise _queue.Empty
        return _decode(*msg)

    def get_nowait(self):
        return self.get(False)

    def put_many(self, objs, block=True, timeout=None):
        """Put every object of `objs`, in order."""
        for obj in objs:
            self.put(obj, block, timeout)

    def get_many(self, max_items, block=True, timeout=None):
        """Up to `max_items` objects: waits (as `get`) for the first only."""
        out = []
        try:
            out.append(self.get(block, timeout))
            while len(out) < max_items:
                out.append(self.get(False))
        except _queue.Empty:
            if not out:
                raise
        except EOFError:
            if not out:
                raise
        return out

    def qsize(self):
        return self._raw().qsize()

    def empty(self):
        return self.qsize() == 0

    def full(self):
        raw = self._raw()
        return raw.qsize() >= raw.capacity

    def lost(self):
        """Messages lost with processes that died holding them."""
        return self._raw().lost()

    def register_producer(self):
        """Count this process as a producer from now on (see the class docs)."""
        self._raw().register_producer()
        self._adopted()

    @contextlib.contextmanager
    def producing(self):
        """`with q.producing():` this process is a producer inside."""
        self.register_producer()
        try:
            yield self
        finally:
            self.close()

    def close(self):
        """No more puts from this process. A non-creator's handles are
        released (no more gets either). The creator's close says no more
        producers will join (once the processes it was handed to have
        opened it: see `_transfers`); it may still get, so it can drain the
        queue itself (CPython's get after close raises instead)."""
        raw = self._raw_obj
        if raw is not None and self._pid == os.getpid() and getattr(raw, "is_creator", False):
            self._put_closed = True
            self._close_raw(keep_receiving=True)
        else:
            self._close_raw()

    def join_thread(self):
        """Nothing to join: there is no feeder thread."""

    def cancel_join_thread(self):
        """Nothing to cancel: there is no feeder thread."""

    def __iter__(self):
        while True:
            try:
                yield self.get()
            except EOFError:
                return


def _open_queue(name, maxsize, parent=None):
    q = Queue.__new__(Queue)
    _Handle.__init__(q, name, None, parent)
    q._maxsize = maxsize
    q._slot_size = DEFAULT_SLOT_SIZE
    return q


class Connection:
    """One end of a Pipe: send/recv objects, send_bytes/recv_bytes raw."""

    def __init__(self, send_name, recv_name, send_raw=None, recv_raw=None):
        self._send = _Direction(send_name, send_raw, True) if send_name else None
        self._recv = _Direction(recv_name, recv_raw, False) if recv_name else None
        self._pending = None  # a message read by poll(), or EOFError
        self._closed = False

    def __reduce__(self):
        parent = None
        if self._send is not None and self._send._holds_stream():
            self._send._transfer_out()
            parent = os.getpid()
        return (
            _open_connection,
            (self._send and self._send._name, self._recv and self._recv._name, parent),
        )

    @property
    def readable(self):
        return self._recv is not None

    @property
    def writable(self):
        return self._send is not None

    @property
    def closed(self):
        return self._closed

    def _check(self, direction, what):
        if self._closed:
            raise OSError("handle is closed")
        if direction is None:
            raise OSError("connection is %s-only" % ("read" if what == "write" else "write"))
        return direction

    def send_bytes(self, buf, offset=0, size=None):
        d = self._check(self._send, "write")
        m = memoryview(buf).cast("B")
        n = len(m)
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        d.put(*_encode(m[offset : offset + size], d.slot_size, raw=True))

    def send(self, obj):
        self.send_bytes(pickle.dumps(obj, protocol=5))

    def _next(self, timeout=None):
        """The next payload (bytes), waiting; EOFError at the end."""
        if self._pending is not None:
            p, self._pending = self._pending, None
            if p is EOFError:
                raise EOFError
            return p
        d = self._check(self._recv, "read")
        msg = d.get(True, timeout)
        if msg is None:
            return None
        return _decode_payload(*msg)[1]

    def recv_bytes(self, maxlength=None):
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        payload = self._next()
        if maxlength is not None and len(payload) > maxlength:
            raise OSError("bad message length", payload)
        return payload

    def recv_bytes_into(self, buf, offset=0):
        if offset < 0:
            raise ValueError("negative offset")
        m = memoryview(buf).cast("B")
        if offset > len(m):
            raise ValueError("offset too large")
        payload = self._next()
        if len(payload) > len(m) - offset:
            raise BufferTooShort(payload)
        m[offset : offset + len(payload)] = payload
        return len(payload)

    def recv(self):
        return pickle.loads(self._next())

    def poll(self, timeout=0.0):
        """Whether a message (or the end) is ready, waiting up to `timeout`
        seconds (None: as long as it takes)."""
        if self._pending is not None:
            return True
        d = self._check(self._recv, "read")
        try:
            msg = d.get(True, timeout)
        except EOFError:
            self._pending = EOFError
            return True
        if msg is None:
            return False
        self._pending = _decode_payload(*msg)[1]
        return True

    def fileno(self):
        raise OSError("ringway connections have no file descriptor yet")

    def close(self):
        if not self._closed:
            self._closed = True
            for d in (self._send, self._recv):
                if d is not None:
                    d.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lost(self):
        """Messages to this end lost with processes that died holding them."""
        return self._check(self._recv, "read").lost()


class _Direction(_Handle):
    """One direction of a pipe, as its sender or its receiver."""

    def __init__(self, name, raw, sender, ack_to=None):
        self._sender = sender
        super().__init__(name, raw, ack_to)
        self._slot = raw.max_message if raw is not None else None
        if ack_to is not None:
            self._adopt_now()

    def _stream_role(self):
        raw = self._raw_obj
        return self._sender and raw is not None and not raw.closed

    def _adopt_now(self):
        """A sending end handed to this process: open it now (this process
        sends from now on), then tell the one that handed it over."""
        try:
            self._raw()
        finally:
            self._adopted()

    def _forked(self, parent):
        super()._forked(parent)
        if self._ack_to is not None:
            self._adopt_now()

    def _reopen(self):
        raw = _ringway.RawQueue.open(self._name, OPEN_TIMEOUT, self._sender)
        self._slot = raw.max_message
        return raw

    @property
    def slot_size(self):
        self._raw()
        return self._slot

    def put(self, tag, payload):
        self._raw().put(tag, payload)

    def get(self, block, timeout):
        return self._raw().get(block, timeout)

    def lost(self):
        return self._raw().lost()

    def close(self):
        self._close_raw()


def _open_connection(send_name, recv_name, parent=None):
    c = Connection.__new__(Connection)
    c._send = _Direction(send_name, None, True, parent) if send_name else None
    c._recv = _Direction(recv_name, None, False) if recv_name else None
    c._pending = None
    c._closed = False
    return c


def Pipe(duplex=True, *, capacity=DEFAULT_MAXSIZE, slot_size=DEFAULT_SLOT_SIZE):
    """Two Connections, as multiprocessing.Pipe: duplex, or (reader,
    writer) when duplex is False."""
    one = _new_name("p")
    one_raw = _ringway.RawQueue.create(one, capacity, slot_size, True)
    one_rx = _ringway.RawQueue.open(one, 0.0, False)
    if not duplex:
        return Connection(None, one, recv_raw=one_rx), Connection(one, None, send_raw=one_raw)
    two = _new_name("p")
    two_raw = _ringway.RawQueue.create(two, capacity, slot_size, True)
    two_rx = _ringway.RawQueue.open(two, 0.0, False)
    a = Connection(one, two, send_raw=one_raw, recv_raw=two_rx)
    b = Connection(two, one, send_raw=two_raw, recv_raw=one_rx)
    return a, b


class _Count(int):
    """A value read from SharedCounters whose `-=`/`+=` add atomically."""

    def __new__(cls, value, counters, key):
        v = super().__new__(cls, value)
        v._counters = counters
        v._key = key
        return v

    def __iadd__(self, n):
        return _Added(self._counters._raw().add(self._key, _check_int(n)))

    def __isub__(self, n):
        return _Added(self._counters._raw().add(self._key, -_check_int(n)))


class _Added(int):
    """The result of an atomic `+=`: already stored."""


_I64 = (-(1 << 63), (1 << 63) - 1)


def _check_int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("SharedCounters values are int, not %s" % type(v).__name__)
    if not _I64[0] <= v <= _I64[1]:
        raise OverflowError("SharedCounters values are 64-bit signed integers")
    return v


def _check_key(k):
    if not isinstance(k, str):
        raise TypeError("SharedCounters keys are str, not %s" % type(k).__name__)
    if len(k.encode()) > 64:
        raise ValueError("SharedCounters keys are at most 64 bytes of UTF-8")
    return k


class SharedCounters(_Handle):
    """A dict of str -> int shared by processes without a server process.

    `d[k] += n` and `d[k] -= n` are atomic (a fetch-add), so the
    tutorial's counter needs no lock; `d.add(k, n)` returns the new value.
    Room for `keys` keys (rounded up to a power of two).
    """

    def __init__(self, name=None, *, keys=1024):
        name = name or _new_name("c")
        super().__init__(name, _ringway.RawCounters.create(name, keys))

    @classmethod
    def open(cls, name, timeout=OPEN_TIMEOUT):
        c = cls.__new__(cls)
        _Handle.__init__(c, name, _ringway.RawCounters.open(name, timeout))
        return c

    def _reopen(self):
        return _ringway.RawCounters.open(self._name, OPEN_TIMEOUT)

    def __reduce__(self):
        return (_open_counters, (self._name,))

    def __getitem__(self, key):
        v = self._raw().get(_check_key(key))
        if v is None:
            raise KeyError(key)
        return _Count(v, self, key)

    def __setitem__(self, key, value):
        if isinstance(value, _Added):
            return  # `d[k] += n`: added already, atomically
        self._raw().set(_check_key(key), _check_int(value))

    def __delitem__(self, key):
        self._raw().remove(_check_key(key))

    def __contains__(self, key):
        return isinstance(key, str) and self._raw().get(_check_key(key)) is not None

    def __len__(self):
        return len(self._raw())

    def __iter__(self):
        return iter(self.keys())

    def add(self, key, delta):
        """Add `delta` to `key` (created at 0); the new value."""
        return self._raw().add(_check_key(key), _check_int(delta))

    def get(self, key, default=None):
        v = self._raw().get(_check_key(key))
        return default if v is None else v

    def keys(self):
        return [k for k, _ in self._raw().items()]

    def items(self):
        return self._raw().items()

    def values(self):
        return [v for _, v in self._raw().items()]

    def __repr__(self):
        return "SharedCounters(%r)" % dict(self.items())


def _open_counters(name):
    c = SharedCounters.__new__(SharedCounters)
    _Handle.__init__(c, name, None)
    return c


class Lock(_Handle):
    """multiprocessing.Lock, robust: if its holder dies holding it, the
    next acquire succeeds, `owner_died` is True for that acquisition, and
    an OwnerDiedWarning is issued. Released by the thread that acquired it.
    """

    def __init__(self, name=None):
        name = name or _new_name("l")
        super().__init__(name, _ringway.RawLock.create(name))
        self.owner_died = False

    @classmethod
    def open(cls, name, timeout=OPEN_TIMEOUT):
        lk = cls.__new__(cls)
        _Handle.__init__(lk, name, _ringway.RawLock.open(name, timeout))
        lk.owner_died = False
        return lk

    def _reopen(self):
        return _ringway.RawLock.open(self._name, OPEN_TIMEOUT)

    def __reduce__(self):
        return (_open_lock, (self._name,))

    def acquire(self, block=True, timeout=None):
        if timeout is not None and timeout < 0:
            timeout = None if block else 0.0
        died = self._raw().acquire(block, timeout)
        if died is None:
            return False
        self.owner_died = died
        if died:
            warnings.warn(
                "the previous holder of %s died holding it" % self._name,
                OwnerDiedWarning,
                stacklevel=2,
            )
        return True

    def release(self):
        self._raw().release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _open_lock(name):
    lk = Lock.__new__(Lock)
    _Handle.__init__(lk, name, None)
    lk.owner_died = False
    return lk
