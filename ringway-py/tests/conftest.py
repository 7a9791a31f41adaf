import multiprocessing as mp

import pytest

# Every test that starts processes runs under both start methods.
METHODS = ["fork", "spawn"]


@pytest.fixture(params=METHODS)
def ctx(request):
    return mp.get_context(request.param)


def join_all(procs, timeout=60):
    """Join every process, bounded; fail (after killing them) on a hang."""
    for p in procs:
        p.join(timeout)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join(5)
    assert not hung, "processes hung: %r" % hung
    return [p.exitcode for p in procs]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the whole session, once this process has let go of its
    handles, no queue, pipe, map, lock or out-of-line blob this session
    made may be left in /dev/shm (children's exits included)."""
    import os
    import time

    import ringway

    def ours():
        pid = "-%d-" % os.getpid()
        return sorted(f for f in os.listdir("/dev/shm") if f.startswith(("rw-py-", "rw-blob-")) and pid in f)

    before = set(ours())
    yield
    ringway._close_all()
    deadline = time.monotonic() + 15  # deferred closes end within OPEN_TIMEOUT
    while set(ours()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(set(ours()) - before) == []
