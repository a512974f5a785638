"""Durus database files written by the real Python Durus 4.3, for `durus import`.

  python durus_files.py write FORMAT PATH EXPECTED RECORDS [pack]
      Writes a database in FORMAT (shelf: FileStorage, SHELF-1; dfs20: FileStorage2)
      at PATH, in many transactions with overwrites and garbage, packed if asked (and
      then written to again). EXPECTED gets a pickle of what a client must read back;
      RECORDS every newest record as Durus stores it (length(8) · record), which the
      Rust side compares byte for byte with the journal.
  python durus_files.py check HOST:PORT EXPECTED
      Reads the database back through a durus server, compares it with EXPECTED,
      commits new objects, checks their oids are new, and reads them back.
"""
import os
import pickle
import sys

from durus.btree import BTree
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.file_storage import FileStorage
from durus.file_storage2 import FileStorage2
from durus.persistent import Persistent
from durus.persistent_dict import PersistentDict
from durus.persistent_list import PersistentList
from durus.utils import int8_to_str, str_to_int8

TREE_KEYS = 5000
UNICODE = u'h\xe9llo w\xf6rld \u2713 \u65e5\u672c\u8a9e \U0001f389 '


class Item(Persistent):
    def __init__(self, value):
        self.value = value


def canon(obj):
    """The graph under obj as plain values, each persistent object with its oid."""
    if isinstance(obj, BTree):
        return ('BTree', str_to_int8(obj._p_oid), [(canon(k), canon(v)) for k, v in obj.items()])
    if isinstance(obj, PersistentDict):
        return ('dict', str_to_int8(obj._p_oid), sorted((k, canon(v)) for k, v in obj.items()))
    if isinstance(obj, PersistentList):
        return ('list', str_to_int8(obj._p_oid), [canon(v) for v in obj])
    if isinstance(obj, Item):
        return ('Item', str_to_int8(obj._p_oid), canon(obj.value))
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    if isinstance(obj, dict):
        return sorted((k, canon(v)) for k, v in obj.items())
    return obj


def big_bytes():
    # Two MiB that do not compress to nothing.
    x, out = 12345, bytearray()
    while len(out) < (2 << 20):
        x = (x * 1103515245 + 12345) & 0x7fffffff
        out += int8_to_str(x)
    return bytes(out)


def build(c):
    root = c.get_root()
    root['dict'] = PersistentDict({'a': 1, 'b': 'two', 'c': [1, 2, 3], 'd': {'x': None}})
    root['list'] = PersistentList(range(100))
    c.commit()
    tree = root['tree'] = BTree()
    for start in range(0, TREE_KEYS, 1000):
        for i in range(start, min(start + 1000, TREE_KEYS)):
            tree[i] = Item('value %d' % i)
        c.commit()
    nested = Item('bottom')
    for depth in range(30):
        nested = Item({'depth': depth, 'child': nested, 'list': PersistentList([depth])})
    root['nested'] = nested
    root['big'] = Item(big_bytes())
    root['unicode'] = Item(UNICODE * 200)
    root['names'] = PersistentDict((UNICODE + str(i), Item(i)) for i in range(50))
    c.commit()
    # Overwrites: new versions of objects, and old Items left unreachable.
    for round in range(3):
        for i in range(round, TREE_KEYS, 7):
            tree[i] = Item('overwritten %d %d' % (round, i))
        root['dict']['a'] = round
        root['list'].append(round)
        c.commit()
    # Garbage: a list of objects made reachable, then dropped.
    root['tmp'] = PersistentList([Item(i) for i in range(200)])
    c.commit()
    del root['tmp']
    c.commit()


def write(fmt, path, expected, records, pack=None):
    storage = {'shelf': FileStorage, 'dfs20': FileStorage2}[fmt](path)
    c = Connection(storage)
    build(c)
    if pack:
        c.pack()
        root = c.get_root()
        root['after_pack'] = Item('written after the pack')
        root['tree'][TREE_KEYS + 1] = Item('a new key after the pack')
        c.commit()
    oids = sorted(str_to_int8(oid) for oid, _ in storage.gen_oid_record())
    with open(expected, 'wb') as f:
        pickle.dump({'root': canon(c.get_root()), 'oids': oids}, f, 2)
    with open(records, 'wb') as f:
        for oid, record in storage.gen_oid_record():
            f.write(int8_to_str(len(record)))
            f.write(record)
    storage.close()


def check(address, expected):
    with open(expected, 'rb') as f:
        want = pickle.load(f)
    host, port = address.rsplit(':', 1)
    c = Connection(ClientStorage(host=host, port=int(port)))
    got = canon(c.get_root())
    assert got == want['root'], 'the imported database reads differently'
    # New objects, whose oids must not be in the source (durus hands out oids after
    # its highest; Durus itself would reuse the holes a pack left).
    root = c.get_root()
    root['new'] = PersistentList([Item('new %d' % i) for i in range(20)])
    c.commit()
    new_oids = [str_to_int8(root['new']._p_oid)] + [str_to_int8(x._p_oid) for x in root['new']]
    assert min(new_oids) > max(want['oids']), (new_oids, max(want['oids']))
    again = Connection(ClientStorage(host=host, port=int(port)))
    back = again.get_root()['new']
    assert [x.value for x in back] == ['new %d' % i for i in range(20)]
    assert canon(again.get_root()['tree']) == dict(want['root'][2])['tree']
    sys.stdout.write('checked %d\n' % len(new_oids))


if __name__ == '__main__':
    globals()[sys.argv[1]](*sys.argv[2:])
