"""The tutorial's second Pipe: requests and answers both ways over one
duplex pipe, answers read into a preallocated buffer.

Only the import differs from the multiprocessing version.
"""
from multiprocessing import Process

from ringway import Pipe  # was: from multiprocessing import Pipe


def server(conn):
    while True:
        req = conn.recv()
        if req is None:
            break
        conn.send_bytes(str(req * req).encode())
    conn.close()


if __name__ == "__main__":
    here, there = Pipe()
    p = Process(target=server, args=(there,))
    p.start()
    buf = bytearray(32)
    total = 0
    for n in range(10):
        here.send(n)
        k = here.recv_bytes_into(buf)
        total += int(buf[:k])
    here.send(None)
    p.join()
    print("sum of squares:", total)
