"""W6 on Python Durus 4.3: the same tree the Rust benchmark builds, in Durus's own
FileStorage, timed the same way. Prints one `key value` line per figure.

usage: python3 durus_w6.py PATH OBJECTS FANOUT
"""
import sys
import time

from durus.connection import Connection
from durus.file_storage import FileStorage
from durus.persistent import Persistent


class Node(Persistent):
    def __init__(self, n, payload):
        self.n = n
        self.payload = payload
        self.children = []


def build(path, objects, fanout):
    conn = Connection(FileStorage(path), cache_size=objects * 2)
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


def traverse(conn):
    count = 0
    stack = [conn.get_root()["tree"]]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node.children)
    return count


def main():
    path, objects, fanout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    build_s, made = build(path, objects, fanout)
    print("build_commit_s", build_s)
    t0 = time.perf_counter()
    conn = Connection(FileStorage(path), cache_size=objects * 2)
    reopen_s = time.perf_counter() - t0
    print("reopen_s", reopen_s)
    t0 = time.perf_counter()
    n = traverse(conn)
    cold_s = time.perf_counter() - t0
    assert n == made, (n, made)
    print("cold_traverse_s", cold_s)
    t0 = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        traverse(conn)
    print("cached_reads_per_s", rounds * n / (time.perf_counter() - t0))
    print("objects", n)


if __name__ == "__main__":
    main()
