"""The tutorial's first Pipe: a producer sends bytes down a one-way pipe,
the consumer polls and reads them; the end is the producer closing its end.

Only the import differs from the multiprocessing version.
"""
from multiprocessing import Process

from ringway import Pipe  # was: from multiprocessing import Pipe


def producer(conn):
    for i in range(10):
        conn.send_bytes(b"steamed bun #%d" % i)
    conn.close()


if __name__ == "__main__":
    reader, writer = Pipe(duplex=False)
    p = Process(target=producer, args=(writer,))
    p.start()
    writer.close()  # this process's copy: the producer holds its own
    got = 0
    while True:
        if not reader.poll(10):
            raise SystemExit("nothing for 10 s")
        try:
            msg = reader.recv_bytes()
        except EOFError:
            break
        got += 1
    p.join()
    print("received", got, "messages")
