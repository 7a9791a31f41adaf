"""The same shop without sentinels: each chef counts as a producer while
it cooks (`with q.producing()`), the shop closes the queue when no more
chefs will come, and each foodie's `for` loop ends once the chefs are done
and the queue is drained. (multiprocessing has no such thing: this one is
ringway's.)
"""
from multiprocessing import Process

from ringway import Queue

DISHES = ["steamed bun", "bones", "swill"]


def chef(q, dish):
    with q.producing():
        for i in range(5):
            q.put("%s #%d" % (dish, i))


def foodie(q, name, results):
    results.put((name, sum(1 for _ in q)))


if __name__ == "__main__":
    q, results = Queue(), Queue()
    chefs = [Process(target=chef, args=(q, d)) for d in DISHES]
    foodies = [Process(target=foodie, args=(q, n, results)) for n in ("foodie 0", "foodie 1")]
    for p in chefs + foodies:
        p.start()
    q.close()  # no more chefs will come; the foodies stop when these are done
    for p in chefs + foodies:
        p.join()
    counts = dict(results.get() for _ in foodies)
    print("eaten:", sum(counts.values()), "of", 5 * len(DISHES))
