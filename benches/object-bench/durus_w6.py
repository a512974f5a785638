"""W6 on Python Durus 4.3: the same tree the Rust benchmark builds, in Durus's own
FileStorage with its default options (Connection cache_size 100,000), timed the same
way. Prints one line per figure: `key objects_per_s p50_ns p99_ns` (p50/p99 of the
sampled per-object times; 0 where not measured), and `build_commit_s S`, `reopen_s S`.

usage: python3 durus_w6.py PATH OBJECTS FANOUT
"""
import os
import random
import sys
import time

from durus.connection import Connection
from durus.file_storage import FileStorage
from durus.persistent import Persistent

# Every STRIDE-th object's load is timed, as on the Rust side, so that timing does not
# slow the cached walks down much.
STRIDE = 8


class Node(Persistent):
    def __init__(self, n, payload):
        self.n = n
        self.payload = payload
        self.children = []


def build(path, objects, fanout):
    conn = Connection(FileStorage(path))
    root = conn.get_root()
    t0 = time.perf_counter()
    top = Node(0, b"x" * 64)
    made = 1
    level = [top]
    while made < objects:
        nxt = []
        for parent in level:
            for _ in range(fanout):
                if made >= objects:
                    break
                child = Node(made, b"x" * 64)
                parent.children.append(child)
                nxt.append(child)
                made += 1
        level = nxt
    root["tree"] = top
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.get_storage().close()
    return elapsed, made


class Times:
    def __init__(self):
        self.samples = []
        self.count = 0

    def percentile(self, q):
        if not self.samples:
            return 0
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))]


def walk(conn, times):
    """Depth-first, one object at a time; reading `children` loads a ghost."""
    count = 0
    stack = [conn.get_root()["tree"]]
    while stack:
        node = stack.pop()
        if count % STRIDE == 0:
            t0 = time.perf_counter_ns()
            kids = node.children
            times.samples.append(time.perf_counter_ns() - t0)
        else:
            kids = node.children
        count += 1
        stack.extend(reversed(kids))
    return count


def rate_line(key, n, seconds, times):
    print(key, n / seconds, times.percentile(0.5), times.percentile(0.99))


def timed_walk(key, conn, made):
    times = Times()
    t0 = time.perf_counter()
    n = walk(conn, times)
    elapsed = time.perf_counter() - t0
    assert n == made, (n, made)
    rate_line(key, n, elapsed, times)


def drop_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main():
    path, objects, fanout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    build_s, made = build(path, objects, fanout)
    print("build_commit_s", build_s)

    t0 = time.perf_counter()
    conn = Connection(FileStorage(path))
    print("reopen_s", time.perf_counter() - t0)
    timed_walk("cold_walk_1", conn, made)
    timed_walk("second_walk", conn, made)
    oids = []
    stack = [conn.get_root()["tree"]]
    while stack:
        node = stack.pop()
        oids.append(node._p_oid)
        stack.extend(node.children)
    conn.get_storage().close()

    conn = Connection(FileStorage(path))
    t0 = time.perf_counter()
    crawled = sum(1 for _ in conn.get_crawler(batch_size=100))
    times = Times()
    n = walk(conn, times)
    assert n == made and crawled >= made, (n, crawled, made)
    rate_line("crawl_walk", n, time.perf_counter() - t0, times)
    conn.get_storage().close()

    random.Random(6).shuffle(oids)
    conn = Connection(FileStorage(path))
    times = Times()
    t0 = time.perf_counter()
    for i, oid in enumerate(oids):
        if i % STRIDE == 0:
            t1 = time.perf_counter_ns()
            conn.get(oid).n
            times.samples.append(time.perf_counter_ns() - t1)
        else:
            conn.get(oid).n
    rate_line("random_reads", len(oids), time.perf_counter() - t0, times)
    conn.get_storage().close()

    # Dropped after opening, which may read the file (to build Durus's index).
    conn = Connection(FileStorage(path))
    drop_page_cache(path)
    timed_walk("dropped_walk_1", conn, made)
    conn.get_storage().close()
    print("objects", made)


if __name__ == "__main__":
    main()
