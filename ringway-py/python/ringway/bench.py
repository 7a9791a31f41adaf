"""`python -m ringway.bench`: ringway's Queue, Pipe and SharedCounters side
by side with multiprocessing's (and faster_fifo's Queue, if it is
installed), in one run, across real processes.

Each row: one producer process -> the consumer (this process), every
message checked; the rate is messages over the time from the consumer's
first to its last receive, after the producer said it was ready. The
counter rows: PROCS processes decrement one shared counter.

    python -m ringway.bench [--quick] [--messages N]
"""

import argparse
import multiprocessing as mp
import os
import queue as _queue
import sys
import time

import ringway

SIZE = 64
PROCS = 4


def _payload(i):
    return i.to_bytes(8, "little") * (SIZE // 8)


def _check(m, i):
    if m[:8] != i.to_bytes(8, "little"):
        raise AssertionError("message %d came out wrong: %r" % (i, m[:8]))


def _queue_producer(q, n, kind, ready):
    ready.set()
    if kind == "bytes":
        for i in range(n):
            q.put(_payload(i))
    else:
        for i in range(n):
            q.put((i, "steamed bun", 1.5))


def _queue_rate(q, n, kind, ctx):
    ready = ctx.Event()
    p = ctx.Process(target=_queue_producer, args=(q, n, kind, ready))
    p.start()
    ready.wait(60)
    first = q.get(timeout=60)
    t0 = time.perf_counter()
    if kind == "bytes":
        _check(first, 0)
    for i in range(1, n):
        m = q.get(timeout=60)
        if kind == "bytes":
            _check(m, i)
        elif m[0] != i:
            raise AssertionError("tuple %d came out as %r" % (i, m))
    dt = time.perf_counter() - t0
    p.join(60)
    return (n - 1) / dt


def _pipe_producer(conn, n, ready):
    ready.set()
    for i in range(n):
        conn.send_bytes(_payload(i))
    conn.close()


def _pipe_rate(pipe, n, ctx):
    r, w = pipe(duplex=False)
    ready = ctx.Event()
    p = ctx.Process(target=_pipe_producer, args=(w, n, ready))
    p.start()
    w.close()
    ready.wait(60)
    _check(r.recv_bytes(), 0)
    t0 = time.perf_counter()
    for i in range(1, n):
        _check(r.recv_bytes(), i)
    dt = time.perf_counter() - t0
    p.join(60)
    return (n - 1) / dt


def _take_locked(d, lock, k, start):
    start.wait(60)
    for _ in range(k):
        with lock:
            d["count"] = d["count"] - 1


def _take_atomic(d, k, start):
    start.wait(60)
    for _ in range(k):
        d["count"] -= 1


def _counter_rate(d, lock, k, ctx):
    d["count"] = PROCS * k
    start = ctx.Event()
    if lock is None:
        procs = [ctx.Process(target=_take_atomic, args=(d, k, start)) for _ in range(PROCS)]
    else:
        procs = [ctx.Process(target=_take_locked, args=(d, lock, k, start)) for _ in range(PROCS)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join(300)
    dt = time.perf_counter() - t0
    if d["count"] != 0:
        raise AssertionError("the count ended at %r, not 0" % d["count"])
    return PROCS * k / dt


def _faster_fifo():
    try:
        import faster_fifo  # noqa: F401
        import faster_fifo_reduction  # noqa: F401
    except ImportError:
        return None
    return faster_fifo.Queue


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m ringway.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=None, help="messages per queue/pipe row")
    ap.add_argument("--quick", action="store_true", help="a short run (a smoke test, not figures)")
    a = ap.parse_args(argv)
    n = a.messages or (5_000 if a.quick else 200_000)
    k = 200 if a.quick else 5_000
    ctx = mp.get_context("fork")
    rows = []

    def row(name, fn, base=None):
        try:
            rate = fn()
        except Exception as e:  # a peer that fails is reported, not hidden
            rows.append((name, None, base, "failed: %s" % e))
            return None
        rows.append((name, rate, base, ""))
        return rate

    mpq = row("mp.Queue, 64 B bytes", lambda: _queue_rate(ctx.Queue(), n, "bytes", ctx))
    row("ringway.Queue, 64 B bytes", lambda: _queue_rate(ringway.Queue(), n, "bytes", ctx), mpq)
    ff = _faster_fifo()
    if ff is not None:

        class _FF:
            def __init__(self):
                self.q = ff(max_size_bytes=1 << 20)

            def put(self, x):
                self.q.put(x)

            def get(self, timeout=None):
                return self.q.get(timeout=timeout)

        row("faster_fifo.Queue, 64 B bytes", lambda: _queue_rate(_FF(), n, "bytes", ctx), mpq)
    mpt = row("mp.Queue, small tuples", lambda: _queue_rate(ctx.Queue(), n, "tuple", ctx))
    row("ringway.Queue, small tuples", lambda: _queue_rate(ringway.Queue(), n, "tuple", ctx), mpt)
    mpp = row("mp.Pipe send_bytes, 64 B", lambda: _pipe_rate(ctx.Pipe, n, ctx))
    row("ringway.Pipe send_bytes, 64 B", lambda: _pipe_rate(ringway.Pipe, n, ctx), mpp)
    with ctx.Manager() as m:
        mgr = row(
            "Manager().dict() + Lock, %d procs" % PROCS,
            lambda: _counter_rate(m.dict(), m.Lock(), k, ctx),
        )
    row("SharedCounters d[k] -= 1, %d procs" % PROCS,
        lambda: _counter_rate(ringway.SharedCounters(), None, 10 * k, ctx), mgr)
    row("SharedCounters + ringway.Lock, %d procs" % PROCS,
        lambda: _counter_rate(ringway.SharedCounters(), ringway.Lock(), k, ctx), mgr)

    print("ringway.bench: %d messages per queue/pipe row, %d decrements per counter process; "
          "Python %s, %d CPUs%s" % (n, k, sys.version.split()[0], os.cpu_count(),
                                     "" if ff is not None else "; faster_fifo not installed"))
    print("| %-40s | %14s | %9s |" % ("row", "rate", "ratio"))
    print("|%s|%s|%s|" % ("-" * 42, "-" * 16, "-" * 11))
    for name, rate, base, note in rows:
        r = "%12.0f/s" % rate if rate else note
        ratio = "%8.1fx" % (rate / base) if rate and base else ""
        print("| %-40s | %14s | %9s |" % (name, r, ratio))
    return 0 if all(r[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
