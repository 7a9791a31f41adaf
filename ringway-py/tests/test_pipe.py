import time

import pytest

import ringway
from conftest import join_all


def _squares(conn):
    # A sentinel ends the requests: under fork the child also holds (as
    # with CPython's inherited fds) the parent's end, so it would never
    # see the end of the stream it could itself still write to.
    for x in iter(conn.recv, None):
        conn.send(x * x)
    conn.close()


def test_duplex_request_response_and_eof(ctx):
    a, b = ringway.Pipe()
    p = ctx.Process(target=_squares, args=(b,))
    p.start()
    b.close()  # the parent's copy: the child holds its own
    for i in range(100):
        a.send(i)
        assert a.recv() == i * i
    a.send(None)
    assert join_all([p]) == [0]
    # Every holder of the other end has gone: the end of the stream.
    assert a.poll(10) is True
    with pytest.raises(EOFError):
        a.recv()


def _send_all(conn, n):
    for i in range(n):
        conn.send_bytes(i.to_bytes(4, "little"))
    conn.close()


def test_simplex_stream_ends_with_eoferror(ctx):
    r, w = ringway.Pipe(duplex=False)
    assert r.readable and not r.writable and w.writable and not w.readable
    p = ctx.Process(target=_send_all, args=(w, 500))
    p.start()
    w.close()  # the parent's copy; the child holds its own
    got = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            got.append(int.from_bytes(r.recv_bytes(), "little"))
        except EOFError:
            break
    assert got == list(range(500))
    assert join_all([p]) == [0]
    with pytest.raises(OSError):
        r.send_bytes(b"x")


def test_recv_bytes_into_a_short_buffer_keeps_the_message():
    a, b = ringway.Pipe()
    a.send_bytes(b"0123456789")
    with pytest.raises(ringway.BufferTooShort) as e:
        b.recv_bytes_into(bytearray(4))
    assert e.value.args[0] == b"0123456789"
    buf = bytearray(12)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf, 2) == 3 and buf[2:5] == b"abc"


def test_offsets_sizes_and_lengths_are_checked_as_cpython():
    a, b = ringway.Pipe()
    for kw in [dict(offset=-1), dict(size=-1), dict(offset=11), dict(offset=5, size=6)]:
        with pytest.raises(ValueError):
            a.send_bytes(b"0123456789", **kw)
    a.send_bytes(b"0123456789", 2, 3)
    assert b.recv_bytes() == b"234"
    a.send_bytes(b"too long")
    with pytest.raises(OSError):
        b.recv_bytes(maxlength=3)
    with pytest.raises(ValueError):
        b.recv_bytes_into(bytearray(4), -1)


def test_poll_waits_and_says_when_a_message_or_the_end_is_there():
    a, b = ringway.Pipe()
    t0 = time.monotonic()
    assert b.poll(0.1) is False
    assert time.monotonic() - t0 >= 0.1
    a.send("x")
    assert b.poll(5) is True
    assert b.recv() == "x"
    with a:
        pass
    assert a.closed
    assert b.poll(5) is True
    with pytest.raises(EOFError):
        b.recv()
