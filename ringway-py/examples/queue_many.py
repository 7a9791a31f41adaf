"""The tutorial's second Queue: three chefs, two foodies, one None per foodie.

Only the import differs from the multiprocessing version.
"""
from multiprocessing import Process

from ringway import Queue  # was: from multiprocessing import Queue

DISHES = ["steamed bun", "bones", "swill"]


def chef(q, dish):
    for i in range(5):
        q.put("%s #%d" % (dish, i))


def foodie(q, name, results):
    eaten = 0
    while True:
        item = q.get()
        if item is None:
            break
        eaten += 1
    results.put((name, eaten))


if __name__ == "__main__":
    q, results = Queue(), Queue()
    chefs = [Process(target=chef, args=(q, d)) for d in DISHES]
    foodies = [Process(target=foodie, args=(q, n, results)) for n in ("foodie 0", "foodie 1")]
    for p in chefs + foodies:
        p.start()
    for p in chefs:
        p.join()
    for _ in foodies:
        q.put(None)  # one end signal per foodie
    for p in foodies:
        p.join()
    counts = dict(results.get() for _ in foodies)
    print("eaten:", sum(counts.values()), "of", 5 * len(DISHES))
