"""The tutorial's Manager().dict() counter under a Lock: 10 processes each
take 10 from count = 100, holding the lock for each.

Only the imports and the dict's constructor differ from the multiprocessing
version (which is `with Manager() as m: d = m.dict(); lock = m.Lock()`).
"""
from multiprocessing import Process

from ringway import Lock, SharedCounters


def take(d, lock, n):
    for _ in range(n):
        with lock:
            d["count"] = d["count"] - 1


if __name__ == "__main__":
    d, lock = SharedCounters(), Lock()
    d["count"] = 100
    procs = [Process(target=take, args=(d, lock, 10)) for _ in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(dict(d.items()))
    assert d["count"] == 0
    # Without the lock: `d["count"] -= 1` is atomic on SharedCounters.
