"""W7's Python Durus client: `python w7_client.py HOST PORT MODE ARG...`.

setup N FILE   make N small records (Items under 100 PersistentDicts), write their oids to FILE
commit N ID    after a line on stdin: N one-record commits (the client's own Item)
load N FILE ID after a line on stdin: N loads of random oids from FILE (raw ClientStorage.load)

commit and load print `ready` once connected, then `done OPS SECONDS CPU_SECONDS` at
the end (CPU_SECONDS: the client's own processor time, which bounds what any server
can give one client).
"""
import random
import sys
import time

from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.error import ConflictError
from durus.persistent import Persistent
from durus.persistent_dict import PersistentDict
from durus.utils import int8_to_str, str_to_int8


class Item(Persistent):
    def __init__(self, value):
        self.value = value


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    storage = ClientStorage(host=host, port=port)
    c = Connection(storage)
    if mode == 'setup':
        n, path = int(sys.argv[4]), sys.argv[5]
        root = c.get_root()
        groups = [PersistentDict() for _ in range(100)]
        root['groups'] = groups
        oids = []
        for i in range(n):
            groups[i % 100][i] = Item(b'x' * 100)
        c.commit()
        for g in groups:
            for item in g.values():
                oids.append(str_to_int8(item._p_oid))
        with open(path, 'w') as f:
            f.write('\n'.join(map(str, oids)))
        print('setup %d' % len(oids))
        return
    if mode == 'commit':
        n, me = int(sys.argv[4]), sys.argv[5]
        while True:
            try:
                c.get_root()['client%s' % me] = Item(0)
                c.commit()
                break
            except ConflictError:
                c.abort()
        item = c.get_root()['client%s' % me]
        print('ready')
        sys.stdout.flush()
        sys.stdin.readline()
        # Learn of the others' root commits first: the root was read in this
        # transaction, so Durus's client would count their change as a conflict.
        c.abort()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            while True:
                item.value = i
                try:
                    c.commit()
                    break
                except ConflictError:
                    c.abort()
        print('done %d %f %f' % (n, time.perf_counter() - start, time.process_time() - cpu))
        return
    if mode == 'load':
        n, path, me = int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
        oids = [int8_to_str(int(x)) for x in open(path).read().split()]
        rng = random.Random(me)
        picks = [rng.choice(oids) for _ in range(n)]
        print('ready')
        sys.stdout.flush()
        sys.stdin.readline()
        start, cpu = time.perf_counter(), time.process_time()
        for oid in picks:
            storage.load(oid)
        print('done %d %f %f' % (n, time.perf_counter() - start, time.process_time() - cpu))
        return
    raise SystemExit('unknown mode %s' % mode)


if __name__ == '__main__':
    main()
