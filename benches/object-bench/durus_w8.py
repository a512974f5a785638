"""W8 on Python Durus 4.3: the workload of the Rust `w8` benchmark on Durus's own
`durus.btree.BTree` (default node class, BNode16) in its FileStorage with default
options. Keys are the Rust side's: key i is i * STRIDE for i in 0..ENTRIES, inserted in
an order shuffled by SEED; values are 100 bytes that do not compress. Prints one
`key value` line per figure.

usage: python3 durus_w8.py PATH ENTRIES BATCH GETS SCANS SCAN_LEN SEED
"""
import os
from hashlib import blake2b
import random
import sys
import time

from durus.btree import BTree
from durus.connection import Connection
from durus.file_storage import FileStorage

STRIDE = 4_294_967_311


def value(i):
    """100 bytes that do not compress (Durus compresses every record's state)."""
    seed = i.to_bytes(8, "little")
    return (blake2b(seed, digest_size=64).digest() + blake2b(seed, digest_size=36, person=b"w8").digest())


def load(path, order, batch):
    conn = Connection(FileStorage(path))
    root = conn.get_root()
    root["tree"] = BTree()
    conn.commit()
    before = os.path.getsize(path)
    tree = root["tree"]
    t0 = time.perf_counter()
    for start in range(0, len(order), batch):
        for i in order[start:start + batch]:
            tree[i * STRIDE] = value(i)
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.get_storage().close()
    return elapsed, os.path.getsize(path) - before


def gets(path, keys):
    conn = Connection(FileStorage(path, readonly=True))
    tree = conn.get_root()["tree"]
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        for i in keys:
            if tree.get(i * STRIDE) != value(i):
                raise SystemExit("wrong value for key %d" % i)
        rates.append(len(keys) / (time.perf_counter() - t0))
    conn.get_storage().close()
    return rates


def scans(path, starts, scan_len):
    conn = Connection(FileStorage(path, readonly=True))
    tree = conn.get_root()["tree"]
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        seen = 0
        for s in starts:
            n = 0
            for k, v in tree.items_range(s * STRIDE, (s + scan_len) * STRIDE):
                n += 1
            if n != scan_len:
                raise SystemExit("scan from %d saw %d entries" % (s, n))
            seen += n
        rates.append(seen / (time.perf_counter() - t0))
    conn.get_storage().close()
    return rates


def main():
    path = sys.argv[1]
    entries, batch, n_gets, n_scans, scan_len, seed = map(int, sys.argv[2:8])
    rng = random.Random(seed)
    order = list(range(entries))
    rng.shuffle(order)
    elapsed, written = load(path, order, batch)
    print("inserts_per_s", entries / elapsed)
    print("bytes_written", written)
    print("file_after_load", os.path.getsize(path))
    keys = [rng.randrange(entries) for _ in range(n_gets)]
    cold, cached = gets(path, keys)
    print("gets_cold", cold)
    print("gets_cached", cached)
    starts = [rng.randrange(entries - scan_len + 1) for _ in range(n_scans)]
    cold, cached = scans(path, starts, scan_len)
    print("scan_cold", cold)
    print("scan_cached", cached)
    conn = Connection(FileStorage(path))
    t0 = time.perf_counter()
    conn.pack()
    print("pack_s", time.perf_counter() - t0)
    conn.get_storage().close()
    print("file_after_pack", os.path.getsize(path))


if __name__ == "__main__":
    main()
