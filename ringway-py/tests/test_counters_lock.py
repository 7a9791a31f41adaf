import os
import signal
import time

import pytest

import ringway
from conftest import join_all


def _take(counts, n):
    for _ in range(n):
        counts["count"] -= 1


def test_decrements_from_four_processes_are_atomic_without_a_lock(ctx):
    counts = ringway.SharedCounters()
    counts["count"] = 4000
    procs = [ctx.Process(target=_take, args=(counts, 1000)) for _ in range(4)]
    for p in procs:
        p.start()
    assert join_all(procs) == [0] * 4
    assert counts["count"] == 0
    assert dict(counts.items()) == {"count": 0}


def test_bad_keys_and_values():
    c = ringway.SharedCounters()
    with pytest.raises(KeyError):
        c["missing"]
    with pytest.raises(TypeError):
        c["k"] = "1"
    with pytest.raises(TypeError):
        c[1] = 1
    with pytest.raises(OverflowError):
        c["k"] = 1 << 63
    with pytest.raises(ValueError):
        c["x" * 65] = 1
    c["k"] = 5
    assert c.add("k", 2) == 7 and c.get("k") == 7 and "k" in c and len(c) == 1
    del c["k"]
    assert "k" not in c


def _locked_add(lock, counts, n):
    for _ in range(n):
        with lock:
            v = counts["v"]
            counts["v"] = int(v) + 1


def test_the_lock_excludes_across_processes(ctx):
    lock = ringway.Lock()
    counts = ringway.SharedCounters()
    counts["v"] = 0
    procs = [ctx.Process(target=_locked_add, args=(lock, counts, 300)) for _ in range(3)]
    for p in procs:
        p.start()
    assert join_all(procs) == [0] * 3
    assert counts["v"] == 900


def _hold_and_wait(lock, ready):
    lock.acquire()
    ready["held"] = 1
    time.sleep(60)


def test_a_dead_holder_releases_the_lock_and_the_next_is_told(ctx):
    lock = ringway.Lock()
    ready = ringway.SharedCounters()
    p = ctx.Process(target=_hold_and_wait, args=(lock, ready))
    p.start()
    deadline = time.monotonic() + 30
    while "held" not in ready:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lock.acquire(timeout=0.1) is False
    os.kill(p.pid, signal.SIGKILL)
    join_all([p])
    with pytest.warns(ringway.OwnerDiedWarning):
        assert lock.acquire(timeout=10) is True
    assert lock.owner_died is True
    lock.release()
    assert lock.acquire(timeout=1) is True and lock.owner_died is False
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
