"""Python multiprocessing peers for `ringway bench`.

Usage: python3 mp_peers.py queue N | pipe N | pipe_latency WARM N

Each mode runs a producer process and a consumer process (the consumer is
this process), checks every message (sequence number and end bytes), and
prints one line: `RATE <messages per second>` or `LAT <p50> <p99> <p99.9>
<max>` (nanoseconds), or `ERR <reason>`.
"""
import multiprocessing as mp
import struct
import sys
import time

MSG = struct.Struct("<Q48xQ")  # 64 bytes: seq, padding, ~seq


def msg(seq):
    return MSG.pack(seq, ~seq & 0xFFFFFFFFFFFFFFFF)


def check(m, seq):
    a, b = MSG.unpack(m)
    if a != seq or b != (~seq & 0xFFFFFFFFFFFFFFFF):
        raise SystemExit(f"ERR message {seq} is wrong")


def queue_producer(q, n):
    for i in range(n):
        q.put(msg(i))


def pipe_producer(conn, n):
    for i in range(n):
        conn.send_bytes(msg(i))
    conn.close()


def pong(conn, total):
    for _ in range(total):
        conn.send_bytes(conn.recv_bytes())


def take(d, lock, k):
    for _ in range(k):
        with lock:
            d["count"] -= 1


def main():
    mode = sys.argv[1]
    if mode == "counter":
        n, k = int(sys.argv[2]), int(sys.argv[3])
        with mp.Manager() as m:
            d, lock = m.dict(), m.Lock()
            d["count"] = n * k
            ps = [mp.Process(target=take, args=(d, lock, k)) for _ in range(n)]
            t0 = time.monotonic()
            for p in ps:
                p.start()
            for p in ps:
                p.join()
            dt = time.monotonic() - t0
            if d["count"] != 0:
                print(f"ERR count is {d['count']}, not 0")
                return
        print(f"RATE {n * k / dt:.0f}")
        return
    if mode == "queue":
        n, slots = int(sys.argv[2]), int(sys.argv[3])
        q = mp.Queue(maxsize=slots)
        p = mp.Process(target=queue_producer, args=(q, n))
        t0 = time.monotonic()
        p.start()
        for i in range(n):
            check(q.get(), i)
        dt = time.monotonic() - t0
        p.join()
        print(f"RATE {n / dt:.0f}")
    elif mode == "pipe":
        n = int(sys.argv[2])
        r, w = mp.Pipe(duplex=False)
        p = mp.Process(target=pipe_producer, args=(w, n))
        t0 = time.monotonic()
        p.start()
        w.close()
        for i in range(n):
            check(r.recv_bytes(), i)
        dt = time.monotonic() - t0
        p.join()
        print(f"RATE {n / dt:.0f}")
    elif mode == "pipe_latency":
        warm, n = int(sys.argv[2]), int(sys.argv[3])
        a, b = mp.Pipe()
        p = mp.Process(target=pong, args=(b, warm + n))
        p.start()
        samples = []
        for i in range(warm + n):
            m = msg(i)
            t = time.perf_counter_ns()
            a.send_bytes(m)
            back = a.recv_bytes()
            dt = time.perf_counter_ns() - t
            check(back, i)
            if i >= warm:
                samples.append(dt)
        p.join()
        samples.sort()
        q = lambda f: samples[min(int(len(samples) * f), len(samples) - 1)]
        print(f"LAT {q(0.5)} {q(0.99)} {q(0.999)} {samples[-1]}")
    else:
        print(f"ERR unknown mode {mode}")


if __name__ == "__main__":
    main()
