"""The tutorial's first Queue: one producer, one consumer, a None at the end.

Only the import differs from the multiprocessing version.
"""
from multiprocessing import Process

from ringway import Queue  # was: from multiprocessing import Queue


def producer(q):
    for i in range(10):
        q.put(("steamed bun", i))
    q.put(None)  # the end


def consumer(q):
    eaten = 0
    while True:
        item = q.get()
        if item is None:
            break
        eaten += 1
    print("consumer ate", eaten)


if __name__ == "__main__":
    q = Queue()
    procs = [Process(target=producer, args=(q,)), Process(target=consumer, args=(q,))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("done")
