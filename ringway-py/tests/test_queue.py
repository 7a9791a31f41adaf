import os
import pickle
import queue
import signal
import subprocess
import sys
import time

import pytest

import ringway
from conftest import join_all


def test_objects_and_bytes_go_through():
    q = ringway.Queue()
    for obj in [b"abc", bytearray(b"xy"), memoryview(b"mv")]:
        q.put(obj)
        got = q.get(timeout=5)
        assert type(got) is bytes and got == bytes(obj)
    for obj in [None, 1, ("steamed bun", 2.5), {"k": [1, 2]}, "é" * 10]:
        q.put(obj)
        assert q.get(timeout=5) == obj


def test_a_32_mib_object_goes_out_of_line_and_its_file_is_removed():
    q = ringway.Queue()
    big = os.urandom(32 << 20)
    q.put(big)
    assert q.get(timeout=30) == big
    q.put({"big": big})
    assert q.get(timeout=30)["big"] == big
    mine = [f for f in os.listdir("/dev/shm") if f.startswith("rw-blob-%d-" % os.getpid())]
    assert mine == []


def test_empty_and_full_are_the_queue_module_s():
    q = ringway.Queue(maxsize=4)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert 0.1 <= time.monotonic() - t0 < 5
    assert q.empty() and not q.full()
    for i in range(4):
        q.put_nowait(i)
    assert q.full() and q.qsize() == 4
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.1)
    assert q.get_many(10) == [0, 1, 2, 3]


def test_an_unpicklable_object_raises_from_put_and_nothing_is_queued():
    q = ringway.Queue()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: 1)
    assert q.qsize() == 0


def test_bad_arguments_are_python_exceptions():
    q = ringway.Queue()
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(TypeError):
        q.get(timeout="soon")
    q.close()
    with pytest.raises(ValueError):
        q.put(1)


def _producer(q, base, n):
    with q.producing():
        for i in range(n):
            q.put(base + i)


def _consumer(q, counts):
    for item in q:
        counts.add("items", 1)
        counts.add("sum", item)


def test_three_producers_two_consumers_end_without_sentinels(ctx):
    q = ringway.Queue()
    counts = ringway.SharedCounters()
    n = 2000
    producers = [ctx.Process(target=_producer, args=(q, k * n, n)) for k in range(3)]
    consumers = [ctx.Process(target=_consumer, args=(q, counts)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    # The producers register before they put; wait until all three have,
    # then say no more will come (the creator's close).
    assert join_all(producers) == [0, 0, 0]
    q.close()
    assert join_all(consumers) == [0, 0]
    assert counts["items"] == 3 * n
    assert counts["sum"] == sum(range(3 * n))


def _put_one(q):
    q.put(("from", os.getpid()))


def test_an_unrelated_program_opens_the_queue_by_name():
    q = ringway.Queue()
    code = "import ringway; ringway.Queue.open(%r).put(b'hi from another program')" % q.name
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert q.get(timeout=10) == b"hi from another program"


def _block_in_get(q):
    q.get()


def test_a_killed_getter_does_not_hang_the_others(ctx):
    q = ringway.Queue()
    p = ctx.Process(target=_block_in_get, args=(q,))
    p.start()
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    join_all([p])
    q.put("still works")
    assert q.get(timeout=10) == "still works"
    assert q.lost() == 0


def test_ctrl_c_interrupts_a_blocked_get():
    code = (
        "import ringway, signal, os, threading\n"
        # A shell's background job starts with SIGINT ignored, and Python
        # then keeps it so: put Python's own handler in place, as in a
        # terminal.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "q = ringway.Queue()\n"
        "threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    q.get()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "interrupted", out.stderr


def _chef(q, dish):
    with q.producing():
        for i in range(50):
            q.put("%s #%d" % (dish, i))


def test_the_creator_closes_at_once_and_drains_the_stream_itself(ctx):
    # The README's example: close() right after start(), before the chefs
    # have even opened the queue (under spawn they take a while), then the
    # creator iterates: it ends when the chefs are done and it is drained.
    q = ringway.Queue()
    chefs = [ctx.Process(target=_chef, args=(q, d)) for d in ("bun", "bones", "swill")]
    for c in chefs:
        c.start()
    q.close()
    got = sorted(q)
    assert join_all(chefs) == [0, 0, 0]
    assert got == sorted("%s #%d" % (d, i) for d in ("bun", "bones", "swill") for i in range(50))
    with pytest.raises(ValueError):
        q.put("too late")


def test_other_threads_calls_do_not_wait_for_a_blocked_get():
    import threading

    q = ringway.Queue()
    errors = []

    def blocked():
        try:
            q.get(timeout=20)
        except Exception as e:  # the close below ends it
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert q.qsize() == 0
    q.put("x")
    t.join(10)
    assert not t.is_alive() and errors == []
    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.2)
    q.close()  # the creator lets go: no producer left, so the get ends
    t.join(10)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 10
    assert len(errors) == 1 and isinstance(errors[0], EOFError)
