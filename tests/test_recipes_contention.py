"""kazoo 2.11's recipes under contention: many clients (each its own session and connection) using one
recipe at the same time, checked for what the recipe promises — mutual exclusion, exactly one leader,
nobody through a barrier early, every queue item consumed exactly once, no lost counter updates,
membership and cache contents equal to the server's. Two tests add connection drops (clients behind proxies
that a seeded chaos thread cuts every 20-80 ms) to the Lock and the TreeCache: sessions survive, so the
promises must too, and zkfast's reconnect path (session revalidation, SetWatches) is exercised under load.

Every test runs against zkfast and against Apache ZooKeeper 3.8 (`any_server`): a failure on both means
the test (or the recipe) is wrong, a failure on zkfast only is zkfast's. Tests are bounded (every wait has
a deadline, every worker thread is joined with a timeout) and their random choices come from seeded
`random.Random` instances; thread interleavings of course still vary from run to run.

The clients retry recipe commands quickly (`command_retry`, 5 ms growing to 50 ms, forever) instead of
kazoo's default (100 ms doubling without bound), which would turn CAS conflicts into multi-second sleeps.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter as Multiset
from collections.abc import Callable
from typing import Any

import pytest
from conftest import KazooFactory, wait_until
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, LockTimeout, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.recipe.cache import TreeCache
from kazoo.recipe.lock import Lock
from kazoo.retry import KazooRetry
from testbase.process import ServerProcess

SEED = 20240611
JOIN_TIMEOUT_S = 45.0

pytestmark = pytest.mark.timeout(120)


def command_retry() -> KazooRetry:
    return KazooRetry(max_tries=-1, delay=0.005, backoff=1.5, max_delay=0.05, max_jitter=0.5)


def make_clients(kazoo_client: KazooFactory, server: ServerProcess, n: int) -> list[KazooClient]:
    return [kazoo_client(server, command_retry=command_retry()) for _ in range(n)]


def try_acquire(lock: Lock, timeout_s: float) -> bool:
    """acquire() with a timeout raises LockTimeout instead of returning False."""
    try:
        return bool(lock.acquire(timeout=timeout_s))
    except LockTimeout:
        return False


def rng(test: str, worker: int) -> random.Random:
    return random.Random(f"{SEED}:{test}:{worker}")


class Workers:
    """Threads that run to completion or fail the test: exceptions are collected (with the worker's
    name) and re-raised by `join`, a thread still alive after the deadline fails the test."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._guard = threading.Lock()

    def start(self, name: str, fn: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # reported by join()
                with self._guard:
                    self.errors.append((name, e))

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in self.threads if t.is_alive()]
        if self.errors:
            name, err = self.errors[0]
            raise AssertionError(f"worker {name} failed ({len(self.errors)} failed in all): {err!r}") from err
        assert not hung, f"workers still running after {timeout_s}s: {hung}"


# ---------------------------------------------------------------------------------------------- Lock


def test_lock_mutual_exclusion(kazoo_client: KazooFactory, any_server: ServerProcess, zk_root: str) -> None:
    """12 clients take one Lock 10 times each. Inside, a read-sleep-write of a shared counter (lost
    updates if two are inside at once) and an enter/exit log that must strictly alternate. Then a holder
    whose session closes passes the lock to the client waiting for it."""
    n, rounds = 12, 10
    clients = make_clients(kazoo_client, any_server, n)
    path = f"{zk_root}/lock"
    guard = threading.Lock()
    log: list[tuple[str, int]] = []
    inside: list[int] = []
    counter = [0]
    per_worker = [0] * n

    def worker(i: int) -> Callable[[], None]:
        r = rng("lock", i)

        def run() -> None:
            lock = clients[i].Lock(path, f"w{i}")
            for _ in range(rounds):
                assert lock.acquire(timeout=30), f"w{i} did not get the lock within 30 s"
                try:
                    with guard:
                        inside.append(i)
                        log.append(("enter", i))
                        overlap = len(inside)
                    assert overlap == 1, f"w{i} entered while {inside} were inside"
                    value = counter[0]
                    time.sleep(r.uniform(0, 0.003))
                    counter[0] = value + 1
                    per_worker[i] += 1
                    with guard:
                        inside.remove(i)
                        log.append(("exit", i))
                finally:
                    lock.release()
                time.sleep(r.uniform(0, 0.002))
        return run

    most_waiting = [0]
    stop_watching = threading.Event()

    def watch_queue() -> None:  # how many lock nodes existed at once: shows the lock was contended
        while not stop_watching.is_set():
            most_waiting[0] = max(most_waiting[0], len(clients[0].get_children(path)))
            time.sleep(0.002)

    workers = Workers()
    clients[0].ensure_path(path)
    monitor = Workers()
    monitor.start("monitor", watch_queue)
    for i in range(n):
        workers.start(f"w{i}", worker(i))
    workers.join()
    stop_watching.set()
    monitor.join()
    assert most_waiting[0] >= 3, f"at most {most_waiting[0]} lock nodes at once: no contention"
    assert counter[0] == n * rounds, f"lost updates: {counter[0]} != {n * rounds}"
    assert per_worker == [rounds] * n
    assert len(log) == 2 * n * rounds
    for k in range(0, len(log), 2):
        assert log[k][0] == "enter" and log[k + 1] == ("exit", log[k][1]), log[k:k + 2]
    assert clients[0].get_children(path) == []

    # a holder whose session closes hands the lock to the waiter
    holder = clients[0].Lock(path, "holder")
    assert holder.acquire(timeout=10)
    waiter = clients[1].Lock(path, "waiter")
    got = threading.Event()
    workers = Workers()
    workers.start("waiter", lambda: got.set() if waiter.acquire(timeout=30) else None)
    wait_until(lambda: len(clients[2].get_children(path)) == 2, what="the waiter's lock node")
    assert not got.wait(0.3), "the waiter got the lock while the holder held it"
    assert holder.contenders() == ["holder", "waiter"]
    clients[0].stop()
    workers.join()
    assert got.is_set()
    assert clients[2].Lock(path).contenders() == ["waiter"]
    waiter.release()


class DroppingProxy:
    """A 127.0.0.1 TCP proxy in front of a server whose `drop()` closes every connection it carries
    (the client reconnects through it at once, into the same session)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.guard = threading.Lock()
        self.socks: list[socket.socket] = []
        self.drops = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                if self.listener.fileno() < 0:
                    return
                continue
            up.settimeout(None)
            with self.guard:
                self.socks += [down, up]
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        with self.guard:
            socks, self.socks = self.socks, []
            self.drops += 1
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.drop()


def test_lock_mutual_exclusion_with_connection_drops(kazoo_client: KazooFactory, any_server: ServerProcess,
                                                     zk_root: str) -> None:
    """6 clients, each behind its own proxy, take one Lock 15 times each while a seeded chaos thread drops
    a random client's connection every 20-80 ms. Sessions survive (kazoo reconnects into them at once),
    so the lock must stay exclusive, no acquisition may be lost and no lock node may be left behind
    (kazoo finds a node whose create reply was lost by its guid prefix)."""
    n, rounds = 6, 15
    proxies = [DroppingProxy(any_server.address) for _ in range(n)]
    try:
        clients = [kazoo_client(hosts=p.address, command_retry=command_retry(), timeout=10.0)
                   for p in proxies]
        path = f"{zk_root}/lock"
        guard = threading.Lock()
        inside: list[int] = []
        counter = [0]
        violations: list[str] = []

        def worker(i: int) -> Callable[[], None]:
            r = rng("lock-drops", i)

            def run() -> None:
                lock = clients[i].Lock(path, f"w{i}")
                for _ in range(rounds):
                    assert lock.acquire(timeout=30), f"w{i} did not get the lock within 30 s"
                    try:
                        with guard:
                            if inside:
                                violations.append(f"w{i} entered while {inside} were inside")
                            inside.append(i)
                        value = counter[0]
                        time.sleep(r.uniform(0.001, 0.01))
                        counter[0] = value + 1
                        with guard:
                            inside.remove(i)
                    finally:
                        lock.release()
            return run

        done = threading.Event()

        def chaos() -> None:
            r = rng("lock-drops-chaos", 0)
            while not done.wait(r.uniform(0.02, 0.08)):
                r.choice(proxies).drop()

        workers = Workers()
        for i in range(n):
            workers.start(f"w{i}", worker(i))
        monkey = Workers()
        monkey.start("chaos", chaos)
        try:
            workers.join()
        finally:
            done.set()
            monkey.join()
        assert not violations, violations
        assert counter[0] == n * rounds
        assert sum(p.drops for p in proxies) >= 10, "the chaos thread hardly dropped anything"
        wait_until(lambda: all(c.connected for c in clients), what="every client reconnected")
        assert clients[0].get_children(path) == []
    finally:
        for p in proxies:
            p.close()


# ------------------------------------------------------------------------------- ReadLock / WriteLock


def test_read_write_lock(kazoo_client: KazooFactory, any_server: ServerProcess, zk_root: str) -> None:
    """Readers share the lock (all 6 hold it at once: they meet at a thread barrier while holding it),
    writers exclude readers and each other (checked on every entry while 6 readers and 4 writers each
    take it 4 times), and a waiting writer gets in only after every reader left."""
    n_readers, n_writers, rounds = 6, 4, 4
    clients = make_clients(kazoo_client, any_server, n_readers + n_writers)
    path = f"{zk_root}/rw"

    # phase 1: all readers inside at the same time
    meet = threading.Barrier(n_readers, timeout=20)
    workers = Workers()

    def reader_meets(i: int) -> Callable[[], None]:
        def run() -> None:
            lock = clients[i].ReadLock(path, f"r{i}")
            assert lock.acquire(timeout=20)
            try:
                meet.wait()  # raises BrokenBarrierError unless all readers hold the lock together
            finally:
                lock.release()
        return run

    for i in range(n_readers):
        workers.start(f"r{i}", reader_meets(i))
    workers.join()

    # phase 2: a writer waits for readers that hold the lock, and readers wait for a writer
    readers = [clients[i].ReadLock(path, f"r{i}") for i in range(2)]
    for lock in readers:
        assert lock.acquire(timeout=10)
    writer = clients[n_readers].WriteLock(path, "w")
    assert not try_acquire(writer, 0.3)
    readers[0].release()
    assert not try_acquire(writer, 0.3)
    readers[1].release()
    assert writer.acquire(timeout=10)
    late_reader = clients[0].ReadLock(path, "late")
    assert not try_acquire(late_reader, 0.3)
    writer.release()
    assert late_reader.acquire(timeout=10)
    late_reader.release()

    # phase 3: mixed contention
    guard = threading.Lock()
    state = {"readers": 0, "writers": 0, "max_readers": 0}
    violations: list[str] = []
    entries = Multiset[str]()

    def user(i: int, write: bool) -> Callable[[], None]:
        r = rng("rw", i)

        def run() -> None:
            lock = clients[i].WriteLock(path, f"w{i}") if write else clients[i].ReadLock(path, f"r{i}")
            for _ in range(rounds):
                assert lock.acquire(timeout=30), f"client {i} did not get the lock"
                try:
                    with guard:
                        if write:
                            if state["readers"] or state["writers"]:
                                violations.append(f"writer {i} entered with {dict(state)}")
                            state["writers"] += 1
                        else:
                            if state["writers"]:
                                violations.append(f"reader {i} entered with {dict(state)}")
                            state["readers"] += 1
                            state["max_readers"] = max(state["max_readers"], state["readers"])
                        entries["write" if write else "read"] += 1
                    time.sleep(r.uniform(0.001, 0.01))
                    with guard:
                        state["writers" if write else "readers"] -= 1
                finally:
                    lock.release()
                time.sleep(r.uniform(0, 0.003))
        return run

    workers = Workers()
    for i in range(n_readers + n_writers):
        workers.start(f"u{i}", user(i, write=i >= n_readers))
    workers.join()
    assert not violations, violations
    assert entries == {"read": n_readers * rounds, "write": n_writers * rounds}
    assert clients[0].get_children(path) == []


# ---------------------------------------------------------------------------------------------- Election


def test_election_one_leader_at_a_time(kazoo_client: KazooFactory, any_server: ServerProcess,
                                       zk_root: str) -> None:
    """10 candidates: leaders come one at a time in the order the candidates joined; every other leader
    steps down by returning, the others by losing their session (closed with the leader inside), and
    the next candidate takes over. Each new leader sees itself first among the contenders."""
    n = 10
    clients = make_clients(kazoo_client, any_server, n)
    observer = kazoo_client(any_server, command_retry=command_retry())
    path = f"{zk_root}/election"
    guard = threading.Lock()
    active: set[str] = set()
    leaders: list[str] = []
    problems: list[str] = []
    release = {f"c{i}": threading.Event() for i in range(n)}
    checked = {f"c{i}": threading.Event() for i in range(n)}
    closed: set[str] = set()

    def lead(i: int) -> None:
        name = f"c{i}"
        with guard:
            if active:
                problems.append(f"{name} became leader while {sorted(active)} led")
            active.add(name)
            leaders.append(name)
        first = clients[i].Election(path).contenders()[:1]
        if first != [name]:
            problems.append(f"{name} leads but the first contender is {first}")
        checked[name].set()
        release[name].wait(30)
        with guard:
            active.discard(name)

    def candidate(i: int) -> Callable[[], None]:
        def run() -> None:
            try:
                clients[i].Election(path, f"c{i}").run(lead, i)
            except KazooException:
                if f"c{i}" not in closed:  # releasing after the session was closed fails; that's fine
                    raise
        return run

    workers = Workers()
    for i in range(n):
        workers.start(f"c{i}", candidate(i))
    wait_until(lambda: len(observer.Election(path).contenders()) == n, what="all candidates", timeout_s=20)
    order = observer.Election(path).contenders()
    for k in range(n):
        wait_until(lambda: len(leaders) > k, what=f"leader #{k + 1}", timeout_s=20)  # noqa: B023 - used here
        name = leaders[k]
        assert checked[name].wait(10), f"{name} did not finish its check"
        if k % 2:
            with guard:
                active.discard(name)  # it stops leading when its session is gone
                closed.add(name)
            clients[int(name[1:])].stop()
        release[name].set()
    workers.join()
    assert not problems, problems
    assert leaders == order, f"leaders {leaders} did not follow the join order {order}"
    assert observer.get_children(path) == []


# ---------------------------------------------------------------------------------------------- Barriers


def test_barrier_nobody_passes_early(kazoo_client: KazooFactory, any_server: ServerProcess,
                                     zk_root: str) -> None:
    """8 clients wait at a Barrier; none passes while it stands, all pass once it is removed (twice)."""
    n = 8
    clients = make_clients(kazoo_client, any_server, n + 1)
    path = f"{zk_root}/gate"

    def cycle(number: int) -> None:
        clients[n].Barrier(path).create()
        passed: dict[int, float] = {}
        guard = threading.Lock()

        def waiter(i: int) -> Callable[[], None]:
            def run() -> None:
                assert clients[i].Barrier(path).wait(timeout=30), f"waiter {i} timed out"
                with guard:
                    passed[i] = time.monotonic()
            return run

        workers = Workers()
        for i in range(n):
            workers.start(f"waiter{i}", waiter(i))
        time.sleep(0.5)
        assert not passed, f"cycle {number}: {sorted(passed)} passed a standing barrier"
        assert clients[n].Barrier(path).wait(timeout=0.05) is False
        removed_at = time.monotonic()
        clients[n].Barrier(path).remove()
        workers.join()
        assert sorted(passed) == list(range(n))
        assert min(passed.values()) >= removed_at

    cycle(1)
    cycle(2)


def test_double_barrier_enter_and_leave_together(kazoo_client: KazooFactory, any_server: ServerProcess,
                                                 zk_root: str) -> None:
    """10 clients arrive at a DoubleBarrier at seeded random times: nobody gets past enter() before the
    last one arrived, nobody gets out of leave() before the last one started leaving. Two rounds, each on
    its own path."""
    n = 10
    clients = make_clients(kazoo_client, any_server, n)

    def one_round(round_: int) -> None:
        path = f"{zk_root}/double{round_}"
        guard = threading.Lock()
        times: dict[str, dict[int, float]] = {k: {} for k in ("arrive", "entered", "leaving", "left")}
        all_inside = threading.Barrier(n, timeout=30)

        def mark(what: str, i: int) -> None:
            with guard:
                times[what][i] = time.monotonic()

        def member(i: int) -> Callable[[], None]:
            r = rng(f"double{round_}", i)

            def run() -> None:
                barrier = clients[i].DoubleBarrier(path, n, f"m{i}")
                time.sleep(r.uniform(0, 0.3))
                mark("arrive", i)
                barrier.enter()
                assert barrier.participating, f"m{i} failed to enter"
                mark("entered", i)
                time.sleep(r.uniform(0, 0.05))
                # kazoo's enter() can miss the ready node if the others already left: let everyone be in
                all_inside.wait()
                time.sleep(r.uniform(0, 0.2))
                mark("leaving", i)
                barrier.leave()
                mark("left", i)
            return run

        workers = Workers()
        for i in range(n):
            workers.start(f"m{i}", member(i))
        workers.join()
        assert all(len(t) == n for t in times.values()), times
        assert min(times["entered"].values()) >= max(times["arrive"].values()), "someone entered early"
        assert min(times["left"].values()) >= max(times["leaving"].values()), "someone left early"
        assert clients[0].get_children(path) == []

    one_round(0)
    one_round(1)


# ---------------------------------------------------------------------------------------------- Queues


def test_queue_every_item_once(kazoo_client: KazooFactory, any_server: ServerProcess, zk_root: str) -> None:
    """4 producers put 100 items each while 4 consumers take them: every item is consumed exactly once,
    and each consumer sees each producer's items in the order they were put."""
    n_prod, n_cons, per_producer = 4, 4, 100
    clients = make_clients(kazoo_client, any_server, n_prod + n_cons)
    path = f"{zk_root}/queue"
    clients[0].ensure_path(path)
    producers_done = threading.Event()
    produced = [0]
    guard = threading.Lock()
    consumed: list[list[tuple[int, int]]] = [[] for _ in range(n_cons)]

    def producer(p: int) -> Callable[[], None]:
        r = rng("queue-producer", p)

        def run() -> None:
            q = clients[p].Queue(path)
            for k in range(per_producer):
                q.put(f"{p}:{k}".encode())
                with guard:
                    produced[0] += 1
                if r.random() < 0.2:
                    time.sleep(r.uniform(0, 0.005))
        return run

    def consumer(c: int) -> Callable[[], None]:
        def run() -> None:
            q = clients[n_prod + c].Queue(path)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                item = q.get()
                if item is None:
                    if producers_done.is_set() and len(q) == 0:
                        return
                    time.sleep(0.005)
                    continue
                p, k = (int(x) for x in item.decode().split(":"))
                consumed[c].append((p, k))
            raise AssertionError(f"consumer {c} still busy after 40 s")
        return run

    prod, cons = Workers(), Workers()
    for c in range(n_cons):
        cons.start(f"consumer{c}", consumer(c))
    for p in range(n_prod):
        prod.start(f"producer{p}", producer(p))
    prod.join()
    producers_done.set()
    cons.join()
    everything = Multiset(item for items in consumed for item in items)
    expected = Multiset((p, k) for p in range(n_prod) for k in range(per_producer))
    assert everything == expected, (f"lost: {sorted(expected - everything)[:10]}, "
                                    f"twice: {sorted(everything - expected)[:10]}")
    # consumers race for the head of the queue and the losers back off, so one may starve (on Apache
    # too); but several must have taken items, or there was no contention to speak of
    assert sum(1 for items in consumed if items) >= 2, [len(items) for items in consumed]
    for c, items in enumerate(consumed):
        for p in range(n_prod):
            ks = [k for pp, k in items if pp == p]
            assert ks == sorted(ks), f"consumer {c} got producer {p}'s items out of order: {ks}"
    assert clients[0].get_children(path) == []


def test_locking_queue_every_item_once(kazoo_client: KazooFactory, any_server: ServerProcess,
                                       zk_root: str) -> None:
    """3 producers put 20 items each (10 one by one, 10 in two put_all transactions) while 4 consumers
    get and consume them; a fifth consumer takes one item and loses its session without consuming it.
    Every item, that one included, is consumed exactly once, and consume() never fails."""
    n_prod, n_cons = 3, 4
    clients = make_clients(kazoo_client, any_server, n_prod + n_cons + 1)
    path = f"{zk_root}/lqueue"
    producers_done = threading.Event()
    consumed: list[list[bytes]] = [[] for _ in range(n_cons)]
    lost_holder: list[bytes] = []
    expected = Multiset(f"{p}:{k}".encode() for p in range(n_prod) for k in range(20))

    def producer(p: int) -> Callable[[], None]:
        r = rng("lqueue-producer", p)

        def run() -> None:
            q = clients[p].LockingQueue(path)
            q.put_all([f"{p}:{k}".encode() for k in range(0, 5)])
            for k in range(5, 15):
                q.put(f"{p}:{k}".encode(), priority=r.choice([10, 100]))
            q.put_all([f"{p}:{k}".encode() for k in range(15, 20)], priority=50)
        return run

    def consumer(c: int) -> Callable[[], None]:
        def run() -> None:
            q = clients[n_prod + c].LockingQueue(path)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                item = q.get(timeout=0.2)
                if item is None:
                    if producers_done.is_set() and len(q) == 0:
                        return
                    continue
                consumed[c].append(item)
                assert q.consume(), f"consumer {c} could not consume {item!r}"
            raise AssertionError(f"consumer {c} still busy after 40 s")
        return run

    dying = clients[-1]

    def dying_consumer() -> None:
        q = dying.LockingQueue(path)
        item = q.get(timeout=20)
        assert item is not None, "the dying consumer got nothing"
        lost_holder.append(item)
        dying.stop()  # its lock (an ephemeral) goes with the session; the entry stays

    prod, cons = Workers(), Workers()
    prod.start("producer0", producer(0))
    cons.start("dying", dying_consumer)
    wait_until(lambda: bool(lost_holder), what="the dying consumer's item", timeout_s=20)
    for p in range(1, n_prod):
        prod.start(f"producer{p}", producer(p))
    for c in range(n_cons):
        cons.start(f"consumer{c}", consumer(c))
    prod.join()
    producers_done.set()
    cons.join()
    everything = Multiset(item for items in consumed for item in items)
    assert everything == expected, (f"lost: {sorted(expected - everything)[:10]}, "
                                    f"twice: {sorted(everything - expected)[:10]}")
    assert lost_holder[0] in everything
    assert clients[0].get_children(f"{path}/entries") == []
    assert clients[0].get_children(f"{path}/taken") == []


# ---------------------------------------------------------------------------------------------- Counter


def test_counter_no_lost_increments(kazoo_client: KazooFactory, any_server: ServerProcess,
                                    zk_root: str) -> None:
    """10 clients add 1 thirty times each: the sum is 300, the znode was set exactly 300 times, and the
    post values the increments saw are exactly 1..300, each once (every CAS won at its own version)."""
    n, per_client = 10, 30
    clients = make_clients(kazoo_client, any_server, n)
    path = f"{zk_root}/counter"
    clients[0].Counter(path).value  # noqa: B018 - creates the node with the default 0
    posts: list[list[int]] = [[] for _ in range(n)]

    def bump(i: int) -> Callable[[], None]:
        def run() -> None:
            counter = clients[i].Counter(path)
            for _ in range(per_client):
                counter += 1
                assert counter.post_value == counter.pre_value + 1
                posts[i].append(int(counter.post_value))
        return run

    workers = Workers()
    for i in range(n):
        workers.start(f"c{i}", bump(i))
    workers.join()
    assert clients[0].Counter(path).value == n * per_client
    assert clients[0].exists(path).version == n * per_client
    assert sorted(v for vs in posts for v in vs) == list(range(1, n * per_client + 1))
    for i, vs in enumerate(posts):
        assert vs == sorted(vs), f"client {i} saw the counter go backwards: {vs}"


# ---------------------------------------------------------------------------------------------- Party


def test_party_membership(kazoo_client: KazooFactory, any_server: ServerProcess, zk_root: str) -> None:
    """10 clients join a Party and a ShallowParty at once; every client sees all 10. Then 3 leave and 2
    lose their sessions at once; every remaining client sees exactly the other 5."""
    n = 10
    clients = make_clients(kazoo_client, any_server, n)
    start = threading.Barrier(n, timeout=20)
    parties = [c.Party(f"{zk_root}/party", f"m{i}") for i, c in enumerate(clients)]
    shallow = [c.ShallowParty(f"{zk_root}/shallow", f"m{i}") for i, c in enumerate(clients)]

    def join(i: int) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            parties[i].join()
            shallow[i].join()
        return run

    workers = Workers()
    for i in range(n):
        workers.start(f"m{i}", join(i))
    workers.join()
    everyone = sorted(f"m{i}" for i in range(n))
    for i in range(n):
        assert sorted(parties[i]) == everyone and len(parties[i]) == n
        assert sorted(shallow[i]) == everyone and len(shallow[i]) == n

    leaving, dying = [1, 4, 7], [2, 8]
    stay = [i for i in range(n) if i not in leaving and i not in dying]
    go = threading.Barrier(len(leaving) + len(dying), timeout=20)

    def depart(i: int) -> Callable[[], None]:
        def run() -> None:
            go.wait()
            if i in leaving:
                parties[i].leave()
                shallow[i].leave()
            else:
                clients[i].stop()
        return run

    workers = Workers()
    for i in leaving + dying:
        workers.start(f"m{i}", depart(i))
    workers.join()
    remaining = sorted(f"m{i}" for i in stay)
    for i in stay:
        assert sorted(parties[i]) == remaining, (i, sorted(parties[i]))
        assert sorted(shallow[i]) == remaining, (i, sorted(shallow[i]))


# ---------------------------------------------------------------------------------------------- TreeCache


def server_tree(zk: KazooClient, root: str) -> dict[str, tuple[bytes, int, int]]:
    """path -> (data, version, mzxid) of every node under and including root."""
    out: dict[str, tuple[bytes, int, int]] = {}

    def walk(path: str) -> None:
        try:
            data, stat = zk.get(path)
            children = zk.get_children(path)
        except NoNodeError:
            return
        out[path] = (data, stat.version, stat.mzxid)
        for child in children:
            walk(f"{path}/{child}")

    walk(root)
    return out


def cache_tree(cache: TreeCache, root: str) -> dict[str, tuple[bytes, int, int]]:
    out: dict[str, tuple[bytes, int, int]] = {}

    def walk(path: str) -> None:
        node = cache.get_data(path)
        children = cache.get_children(path)
        if node is None or children is None:
            return
        out[path] = (node.data, node.stat.version, node.stat.mzxid)
        for child in sorted(children):
            walk(f"{path}/{child}")

    walk(root)
    return out


@pytest.mark.parametrize("drops", [False, True], ids=["steady", "drops"])
def test_tree_cache_converges(kazoo_client: KazooFactory, any_server: ServerProcess, zk_root: str,
                              drops: bool) -> None:
    """8 writers make 80 seeded random changes each (create/set/delete over a two-level tree) while a
    TreeCache watches the tree: once they stop, the cache holds exactly the server's tree (paths, data,
    versions, mzxids). With `drops` the cache's connection is dropped every 20-80 ms meanwhile (its
    watches come back through SetWatches and kazoo's refresh on reconnect)."""
    n, ops = 8, 80
    clients = make_clients(kazoo_client, any_server, n)
    proxy = DroppingProxy(any_server.address)
    watcher = kazoo_client(hosts=proxy.address, command_retry=command_retry(), timeout=10.0)
    done = threading.Event()

    def chaos() -> None:
        r = rng("treecache-chaos", 0)
        while not done.wait(r.uniform(0.02, 0.08)):
            proxy.drop()

    monkey = Workers()
    watcher.create(zk_root, b"root")
    cache = TreeCache(watcher, zk_root)
    cache.start()
    try:
        wait_until(lambda: cache.get_data(zk_root) is not None, what="cache initialised")
        if drops:
            monkey.start("chaos", chaos)
        names = [f"{zk_root}/{a}" for a in "abc"] + [f"{zk_root}/{a}/{b}" for a in "abc" for b in "xyz"]

        def writer(i: int) -> Callable[[], None]:
            r = rng("treecache", i)

            def run() -> None:
                zk = clients[i]
                for k in range(ops):
                    path = r.choice(names)
                    op = r.choice(["create", "create", "set", "set", "delete"])
                    try:
                        if op == "create":
                            zk.create(path, f"w{i}-{k}".encode(), makepath=True)
                        elif op == "set":
                            zk.set(path, f"w{i}-{k}".encode())
                        else:
                            zk.delete(path)
                    except (NodeExistsError, NoNodeError, NotEmptyError):
                        pass
                    time.sleep(r.uniform(0, 0.01))
            return run

        workers = Workers()
        for i in range(n):
            workers.start(f"writer{i}", writer(i))
        workers.join()
        done.set()
        monkey.join()
        if drops:
            assert proxy.drops >= 5, "the chaos thread hardly dropped anything"
        truth = server_tree(clients[0], zk_root)
        assert len(truth) > 1, "the writers left nothing but the root"
        deadline = time.monotonic() + 15
        while cache_tree(cache, zk_root) != truth and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache_tree(cache, zk_root) == truth
    finally:
        done.set()
        cache.close()
        proxy.close()
