"""Python Durus 4.3 clients for durus-stress's server_stress (after Durus's own
test/stress.py): `python server_stress.py HOST PORT MODE ARG...`.

init ACCOUNTS CLIENTS     the bank: ACCOUNTS accounts of 100 each, an empty log per client
work CLIENT TXNS SEED START  TXNS transactions: transfers (each appended to the client's own
                          log, numbered from START), audits that the total is conserved;
                          every conflict is aborted and retried. Prints
                          `done COMMITS CONFLICTS AUDITS`.
check CLIENTS COMMITS...  the total is conserved and client i's log has COMMITS[i]
                          entries, in order. Prints `ok TOTAL`.
"""
import random
import sys

from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.error import ConflictError
from durus.persistent import Persistent
from durus.persistent_dict import PersistentDict
from durus.persistent_list import PersistentList


class Account(Persistent):
    def __init__(self, balance):
        self.balance = balance


class Entry(Persistent):
    def __init__(self, n, amount):
        self.n = n
        self.amount = amount


def total(root):
    return sum(a.balance for a in root['accounts'].values())


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = Connection(ClientStorage(host=host, port=port))
    if mode == 'init':
        accounts, clients = int(sys.argv[4]), int(sys.argv[5])
        root = c.get_root()
        root['accounts'] = PersistentDict((i, Account(100)) for i in range(accounts))
        root['logs'] = PersistentDict((i, PersistentList()) for i in range(clients))
        root['total'] = 100 * accounts
        c.commit()
        print('init %d' % total(root))
        return
    if mode == 'work':
        me, txns, seed, start = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
        rng = random.Random(seed)
        commits = conflicts = audits = 0
        for _ in range(txns):
            op = rng.random()
            while True:
                try:
                    root = c.get_root()
                    if op < 0.2:
                        # An audit: a read-only view is consistent or raises.
                        if total(root) != root['total']:
                            raise SystemExit('audit: total %d != %d' % (total(root), root['total']))
                        c.abort()
                        audits += 1
                        break
                    accounts = root['accounts']
                    a, b = rng.sample(sorted(accounts.keys()), 2)
                    amount = rng.randint(0, accounts[a].balance)
                    accounts[a].balance -= amount
                    accounts[b].balance += amount
                    log = root['logs'][me]
                    log.append(Entry(start + commits, amount))
                    c.commit()
                    commits += 1
                    break
                except ConflictError:
                    conflicts += 1
                    c.abort()
        print('done %d %d %d' % (commits, conflicts, audits))
        return
    if mode == 'check':
        clients = int(sys.argv[4])
        want = [int(x) for x in sys.argv[5:5 + clients]]
        root = c.get_root()
        if total(root) != root['total']:
            raise SystemExit('check: total %d != %d' % (total(root), root['total']))
        for i in range(clients):
            log = root['logs'][i]
            ns = [e.n for e in log]
            if ns != list(range(want[i])):
                raise SystemExit('check: client %d log has %d entries, %d acknowledged'
                                 % (i, len(ns), want[i]))
        print('ok %d' % total(root))
        return
    raise SystemExit('unknown mode %s' % mode)


if __name__ == '__main__':
    main()
