"""The real Python Durus 4.3 client against a durus server, one scenario per
subcommand: `python durus_client.py SCENARIO HOST:PORT [ARGS...]`. Every check is an
assert; the scenario prints what the Rust test compares, one `key value` per line.
"""
import sys
import threading
import zlib

from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.error import ConflictError, ProtocolError, ReadConflictError, WriteConflictError
from durus.persistent import Persistent
from durus.persistent_dict import PersistentDict
from durus.serialize import pack_record, split_oids
from durus.utils import int8_to_str, str_to_int8


class Item(Persistent):
    def __init__(self, value):
        self.value = value


def storage(address):
    host, port = address.rsplit(':', 1)
    return ClientStorage(host=host, port=int(port))


def out(key, value):
    sys.stdout.write('%s %s\n' % (key, value))
    sys.stdout.flush()


def bootstrap(address):
    # A fresh database: the first oid handed out is 0, and the Connection creates the
    # root with it.
    s = storage(address)
    c = Connection(s)
    root = c.get_root()
    assert root._p_oid == int8_to_str(0), root._p_oid
    assert isinstance(root, PersistentDict)
    root['item'] = Item(41)
    c.commit()
    out('item_oid', str_to_int8(root['item']._p_oid))
    # A second client finds the same root, and new oids never repeat.
    c2 = Connection(storage(address))
    assert c2.get_root()['item'].value == 41
    seen = set()
    for st in (s, c2.get_storage()):
        for _ in range(100):
            oid = st.new_oid()
            assert oid not in seen and oid != int8_to_str(0)
            seen.add(oid)
    out('oids', len(seen))


def records(address, *sizes):
    # Records of every size, stored and loaded back byte for byte through a new client.
    c = Connection(storage(address))
    root = c.get_root()
    for size in sizes:
        root['blob%s' % size] = Item(b'\x01\x02\xff' * (int(size) // 3) + b'x' * (int(size) % 3))
    c.commit()
    s2 = storage(address)
    c2 = Connection(s2)
    for size in sizes:
        item = c2.get_root()['blob%s' % size]
        assert len(item.value) == int(size), (size, len(item.value))
        raw = s2.load(item._p_oid)
        out('record', '%d %d %d' % (str_to_int8(item._p_oid), len(raw), zlib.crc32(raw) & 0xffffffff))


def bulk(address, n):
    n = int(n)
    c = Connection(storage(address))
    root = c.get_root()
    root['many'] = [Item(i) for i in range(n)]
    c.commit()
    s2 = storage(address)
    oids = [item._p_oid for item in root['many']]
    got = list(s2.bulk_load(oids))
    assert len(got) == n, len(got)
    # An oid that does not exist is a KeyError (Durus reads every answer first).
    try:
        list(s2.bulk_load(oids[:1] + [int8_to_str(10 ** 12)]))
        raise AssertionError('expected a KeyError')
    except KeyError:
        pass
    crawled = sum(1 for _ in Connection(s2).get_crawler())
    out('bulk', len(got))
    out('crawled', crawled)


def invalidations(address):
    a = Connection(storage(address))
    b = Connection(storage(address))
    watch = storage(address)
    a.get_root()['x'] = Item(1)
    a.commit()
    b.abort()
    assert b.get_root()['x'].value == 1
    watch.sync()
    # A commit by A is announced to the others (on sync) but never to A itself.
    a.get_root()['x'].value = 2
    a.commit()
    assert a.get_storage().sync() == []
    inv = watch.sync()
    assert a.get_root()['x']._p_oid in inv, inv
    assert watch.sync() == []
    b.abort()
    assert b.get_root()['x'].value == 2
    # A load of an object another client changed since the last sync answers I
    # (ReadConflictError); a Connection then syncs and loads again, transparently.
    x_oid = a.get_root()['x']._p_oid
    a.get_root()['x'].value = 3
    a.commit()
    try:
        watch.load(x_oid)
        raise AssertionError('expected a ReadConflictError')
    except ReadConflictError:
        pass
    assert x_oid in watch.sync()
    watch.load(x_oid)
    b.abort()
    assert b.get_root()['x'].value == 3
    out('invalidations', 'ok')


def conflicts(address):
    a = Connection(storage(address))
    b = Connection(storage(address))
    a.get_root()['y'] = Item(0)
    a.get_root()['z'] = Item(0)
    a.commit()
    b.abort()
    # Write conflict: both change y.
    a.get_root()['y'].value = 1
    b.get_root()['y'].value = 2
    a.commit()
    try:
        b.commit()
        raise AssertionError('expected a WriteConflictError')
    except WriteConflictError:
        b.abort()
    assert b.get_root()['y'].value == 1
    # Read conflict: b reads z and writes y from it; a changes z meanwhile.
    zb = b.get_root()['z'].value
    b.get_root()['y'].value = zb + 10
    a.get_root()['z'].value = 5
    a.commit()
    try:
        b.commit()
        raise AssertionError('expected a conflict on the read')
    except ConflictError:
        b.abort()
    # The server decides, not the client: a client that ignores the invalidations it
    # is sent still gets its stale write refused.
    a.get_root()['y'].value = 7
    a.commit()
    s = b.get_storage()
    y_oid = b.get_root()['y']._p_oid
    s.begin()
    s.store(y_oid, pack_record(y_oid, b'stale state', b''))
    try:
        s.end(handle_invalidations=lambda oids: None)
        raise AssertionError('the server accepted a stale write')
    except WriteConflictError:
        pass
    b.abort()
    assert b.get_root()['y'].value == 7
    out('conflicts', 'ok')


def counters(address, threads, increments):
    # Many clients at once, each incrementing one of ten shared counters (so clients
    # sharing one conflict now and then), retrying on conflicts.
    threads, increments = int(threads), int(increments)
    c = Connection(storage(address))
    if 'counters' not in c.get_root():
        c.get_root()['counters'] = PersistentDict((i, Item(0)) for i in range(10))
        c.commit()
    errors = []

    def work(me):
        try:
            conn = Connection(storage(address))
            done = 0
            while done < increments:
                try:
                    counter = conn.get_root()['counters'][me % 10]
                    counter.value += 1
                    conn.commit()
                    done += 1
                except ConflictError:
                    conn.abort()
        except Exception as e:
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    out('counted', threads * increments)


def total(address):
    c = Connection(storage(address))
    out('total', sum(item.value for item in c.get_root()['counters'].values()))


def commit_loop(address, n):
    # Commits n values one by one, reporting each acknowledged commit at once.
    c = Connection(storage(address))
    root = c.get_root()
    if 'log' not in root:
        root['log'] = PersistentDict()
        c.commit()
    log = root['log']
    start = len(log)
    for i in range(start, start + int(n)):
        log[i] = Item(i)
        c.commit()
        out('acked', i)


def check_log(address):
    c = Connection(storage(address))
    log = c.get_root().get('log', {})
    for k in sorted(log.keys()):
        assert log[k].value == k
    out('log', len(log))


def pack(address):
    c = Connection(storage(address))
    root = c.get_root()
    # Twenty versions of the root and nineteen children left unreachable: garbage.
    for i in range(20):
        root['child'] = Item('%d %s' % (i, 'x' * 1000))
        c.commit()
    try:
        c.pack()
        out('pack', 'answered O')
    except ProtocolError as e:
        out('pack', 'refused %s' % e)
    # The connection is still usable, and a new one reads what was kept.
    root['after_pack'] = 1
    c.commit()
    out('after_pack', 'ok')
    other = Connection(storage(address))
    out('child', other.get_root()['child'].value.split()[0])


if __name__ == '__main__':
    scenario, address = sys.argv[1], sys.argv[2]
    globals()[scenario](address, *sys.argv[3:])
