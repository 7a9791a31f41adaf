"""The tutorial's third Queue: a pool of workers takes tasks from one
queue and puts answers on another; one None per worker ends them.

Only the import differs from the multiprocessing version.
"""
from multiprocessing import Process

from ringway import Queue  # was: from multiprocessing import Queue


def worker(tasks, answers):
    while True:
        n = tasks.get()
        if n is None:
            break
        answers.put((n, n * n))


if __name__ == "__main__":
    tasks, answers = Queue(), Queue()
    workers = [Process(target=worker, args=(tasks, answers)) for _ in range(3)]
    for w in workers:
        w.start()
    for n in range(20):
        tasks.put(n)
    for _ in workers:
        tasks.put(None)
    squares = dict(answers.get() for _ in range(20))
    for w in workers:
        w.join()
    assert squares == {n: n * n for n in range(20)}
    print("sum of squares:", sum(squares.values()))
