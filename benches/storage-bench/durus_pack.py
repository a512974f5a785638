"""W5P for Python Durus 4.3: the storage benchmark's pack workload.

usage: python durus_pack.py PATH RECORDS BATCH FANOUT PASSES

Writes RECORDS leaf objects of 100 random bytes under the root (root -> nodes of FANOUT
leaves, as the Rust side does), committing every BATCH leaves, overwrites every leaf
PASSES - 1 more times the same way, then times Connection.pack() on the FileStorage.
Prints "packed SECONDS SIZE_BEFORE SIZE_AFTER". With PASSES 0 it only writes the leaves
once (for the OPS workload's import) and prints "written SECONDS SIZE".
"""

import os
import sys
import time

from durus.connection import Connection
from durus.file_storage import FileStorage
from durus.persistent import Persistent
from durus.persistent_list import PersistentList


class Leaf(Persistent):
    def __init__(self, data):
        self.data = data


def main():
    path, records, batch, fanout, passes = sys.argv[1:6]
    records, batch, fanout, passes = int(records), int(batch), int(fanout), int(passes)
    begun = time.perf_counter()
    conn = Connection(FileStorage(path))
    root = conn.get_root()
    nodes = PersistentList()
    root["nodes"] = nodes
    node = None
    for k in range(records):
        if k % fanout == 0:
            node = PersistentList()
            nodes.append(node)
        node.append(Leaf(os.urandom(100)))
        if (k + 1) % batch == 0:
            conn.commit()
    conn.commit()
    if passes == 0:
        print("written %f %d" % (time.perf_counter() - begun, os.path.getsize(path)))
        sys.stdout.flush()
        conn.get_storage().close()
        return
    for _ in range(passes - 1):
        k = 0
        for node in nodes:
            for leaf in node:
                leaf.data = os.urandom(100)
                k += 1
                if k % batch == 0:
                    conn.commit()
        conn.commit()
    before = os.path.getsize(path)
    start = time.perf_counter()
    conn.pack()
    took = time.perf_counter() - start
    after = os.path.getsize(path)
    print("packed %f %d %d" % (took, before, after))
    sys.stdout.flush()
    conn.get_storage().close()


if __name__ == "__main__":
    main()
