#!/usr/bin/env python3
"""zk-latencies on kazoo: a drop-in for zk-smoketest's `zk-latencies.py` (same flags, same defaults,
same phases, same output lines), usable against any ZooKeeper server.

For each server in --servers (or once for --cluster, or for the ensemble named in --config):
create --znode_count permanent znodes of --znode_size bytes under --root_znode, set them, get
them, delete them, create as many ephemeral znodes, set --watch_multiple exists-watches on each,
delete the ephemerals, and wait for the notifications. Each phase prints

    created   10000 permanent znodes  in   1234 ms (0.123400 ms/op 8103.727715/sec)

Calls are asynchronous (pipelined) by default, synchronous with --synchronous.

    python bench/zk_latencies.py --servers 127.0.0.1:2181 --znode_count 1000
"""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from optparse import OptionParser, Values
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import WatchedEvent


class SmokeError(Exception):
    pass


def build_parser() -> OptionParser:
    p = OptionParser(usage="usage: %prog [options]")
    p.add_option("", "--servers", dest="servers", default="localhost:2181",
                 help="comma separated list of host:port (default %default), test each in turn")
    p.add_option("", "--cluster", dest="cluster", default=None,
                 help="comma separated list of host:port, test as a cluster, alternative to --servers")
    p.add_option("", "--config", dest="configfile", default=None,
                 help="zookeeper configuration file to lookup cluster from")
    p.add_option("", "--timeout", dest="timeout", type="int", default=5000,
                 help="session timeout in milliseconds (default %default)")
    p.add_option("", "--root_znode", dest="root_znode", default="/zk-latencies",
                 help="root for the test, will be created as part of test (default /zk-latencies)")
    p.add_option("", "--znode_size", dest="znode_size", type="int", default=25,
                 help="data size when creating/setting znodes (default %default)")
    p.add_option("", "--znode_count", dest="znode_count", default=10000, type="int",
                 help="the number of znodes to operate on in each performance section (default %default)")
    p.add_option("", "--watch_multiple", dest="watch_multiple", default=1, type="int",
                 help="number of watches to put on each znode (default %default)")
    p.add_option("", "--force", action="store_true", dest="force", default=False,
                 help="force the test to run, even if root_znode exists - WARNING! don't run this on a "
                      "real znode or you'll lose it!!!")
    p.add_option("", "--synchronous", action="store_true", dest="synchronous", default=False,
                 help="by default asynchronous ZK api is used, this forces synchronous calls")
    p.add_option("-v", "--verbose", action="store_true", dest="verbose", default=False,
                 help="verbose output, include more detail")
    p.add_option("-q", "--quiet", action="store_true", dest="quiet", default=False,
                 help="quiet output, basically just success/failure")
    return p


class Session:
    """One kazoo session (zk-smoketest's ZKClient)."""

    counter = 0

    def __init__(self, servers: str, opts: Values) -> None:
        self.opts = opts
        Session.counter += 1
        self.handle = Session.counter
        if not opts.quiet:
            print(f"Connecting to {servers}")
        start = time.time()
        self.zk = KazooClient(hosts=servers, timeout=opts.timeout / 1000.0, randomize_hosts=False)
        try:
            self.zk.start(timeout=max(opts.timeout / 1000.0, 10.0))
        except Exception as e:
            self.zk.close()
            raise SmokeError(f"Unable to connect to {servers}: {e}") from e
        if not opts.quiet:
            print(f"Connected in {int((time.time() - start) * 1000)} ms, handle is {self.handle}")

    def create(self, path: str, data: bytes, ephemeral: bool = False) -> str:
        start = time.time()
        result = self.zk.create(path, data, ephemeral=ephemeral)
        if self.opts.verbose:
            print(f"Node {path} created in {int((time.time() - start) * 1000)} ms")
        return str(result)

    def delete(self, path: str) -> None:
        start = time.time()
        self.zk.delete(path)
        if self.opts.verbose:
            print(f"Node {path} deleted in {int((time.time() - start) * 1000)} ms")

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


class CountingWatcher:
    """A watcher that counts its notifications."""

    def __init__(self, opts: Values, handle: int) -> None:
        self.opts = opts
        self.handle = handle
        self.count = 0
        self.cv = threading.Condition()

    def __call__(self, event: WatchedEvent) -> None:
        with self.cv:
            self.count += 1
            self.cv.notify_all()
        if self.opts.verbose:
            print(f"handle {self.handle} got watch for {event.path} in watcher, count {self.count}")

    def wait_for_expected(self, count: int, maxwait_ms: int) -> int:
        """Wait up to maxwait_ms for `count` notifications; the count reached either way."""
        deadline = time.monotonic() + maxwait_ms / 1000.0
        with self.cv:
            while self.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            return self.count


class LatencyTest:
    def __init__(self, opts: Values) -> None:
        self.opts = opts
        self.n: int = opts.znode_count

    def child_path(self, i: int) -> str:
        return f"{self.opts.root_znode}/session_{i}"

    @staticmethod
    def print_elap(start: float, msg: str, count: int) -> None:
        elapms = (time.time() - start) * 1000
        if int(elapms) != 0:
            print(f"{msg} in {int(elapms):6d} ms ({elapms / count:f} ms/op {count / (elapms / 1000.0):f}/sec)")
        else:
            print(f"{msg} in {int(elapms):6d} ms (included in prior)")

    def timer(self, ops: Iterable[Any], msg: str, count: int | None = None) -> None:
        start = time.time()
        for _ in ops:
            pass
        self.print_elap(start, msg, self.n if count is None else count)

    def timer2(self, func: Callable[[], None], msg: str, count: int | None = None) -> None:
        start = time.time()
        func()
        self.print_elap(start, msg, self.n if count is None else count)

    def wait_notifications(self, watches: list[CountingWatcher]) -> None:
        start = time.time()
        for w in watches:
            if w.wait_for_expected(self.n, 60000) != self.n:
                raise SmokeError(f"wrong number of watches: {w.count}")
        total = self.opts.watch_multiple * self.n
        self.print_elap(start, f"notif   {total:7d}           watches", total)

    # -- synchronous calls
    def synchronous(self, s: Session, data: bytes) -> None:
        n = self.n
        zk = s.zk
        self.timer((s.create(self.child_path(j), data) for j in range(n)),
                   f"created {n:7d} permanent znodes ")
        self.timer((zk.set(self.child_path(j), data) for j in range(n)),
                   f"set     {n:7d}           znodes ")
        self.timer((zk.get(self.child_path(j)) for j in range(n)),
                   f"get     {n:7d}           znodes ")
        self.timer((s.delete(self.child_path(j)) for j in range(n)),
                   f"deleted {n:7d} permanent znodes ")
        self.timer((s.create(self.child_path(j), data, ephemeral=True) for j in range(n)),
                   f"created {n:7d} ephemeral znodes ")
        watches = [CountingWatcher(self.opts, s.handle) for _ in range(self.opts.watch_multiple)]

        def watch(j: int) -> None:
            for w in watches:
                zk.exists(self.child_path(j), watch=w)

        total = self.opts.watch_multiple * n
        self.timer((watch(j) for j in range(n)), f"watched {total:7d}           znodes ", total)
        self.timer((s.delete(self.child_path(j)) for j in range(n)),
                   f"deleted {n:7d} ephemeral znodes ")
        self.wait_notifications(watches)

    # -- asynchronous calls
    def asynchronous(self, s: Session, data: bytes) -> None:
        n = self.n
        zk = s.zk

        def wait_all(results: list[Any], check: Callable[[int, Any], None] | None = None) -> None:
            for j, r in enumerate(results):
                try:
                    value = r.get(timeout=60)
                except Exception as e:
                    raise SmokeError(f"asynchronous operation failed on handle {s.handle}: {e!r}") from e
                if check is not None:
                    check(j, value)

        def check_path(j: int, path: Any) -> None:
            if path != self.child_path(j):
                raise SmokeError(f"invalid path {path} for operation {j} on handle {s.handle}")

        def check_data(j: int, value: Any) -> None:
            if value[0] != data:
                raise SmokeError(f"invalid data {value[0]!r} for operation {j} on handle {s.handle}")

        def create(ephemeral: bool) -> Callable[[], None]:
            def func() -> None:
                wait_all([zk.create_async(self.child_path(j), data, ephemeral=ephemeral) for j in range(n)],
                         check_path)
            return func

        def set_all() -> None:
            wait_all([zk.set_async(self.child_path(j), data) for j in range(n)])

        def get_all() -> None:
            wait_all([zk.get_async(self.child_path(j)) for j in range(n)], check_data)

        def delete_all() -> None:
            wait_all([zk.delete_async(self.child_path(j)) for j in range(n)])

        self.timer2(create(False), f"created {n:7d} permanent znodes ")
        self.timer2(set_all, f"set     {n:7d}           znodes ")
        self.timer2(get_all, f"get     {n:7d}           znodes ")
        self.timer2(delete_all, f"deleted {n:7d} permanent znodes ")
        self.timer2(create(True), f"created {n:7d} ephemeral znodes ")
        watches = [CountingWatcher(self.opts, s.handle) for _ in range(self.opts.watch_multiple)]

        def watch_all() -> None:
            wait_all([zk.exists_async(self.child_path(j), watch=w) for w in watches for j in range(n)])

        total = self.opts.watch_multiple * n
        self.timer2(watch_all, f"watched {total:7d}           znodes ", total)
        self.timer2(delete_all, f"deleted {n:7d} ephemeral znodes ")
        self.wait_notifications(watches)


def read_zk_config(filename: str) -> dict[str, str]:
    config: dict[str, str] = {}
    with open(filename) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#!" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            config[k.strip()] = v.strip()
    return config


def get_zk_servers(opts: Values) -> list[str]:
    if opts.cluster:
        return [opts.cluster]
    if opts.configfile:
        config = read_zk_config(opts.configfile)
        hosts = []
        for k, v in config.items():
            if not k.startswith("server."):
                continue
            host = v.split(":", 1)[0]
            port = config.get("clientPort", "2181")
            if ";" in v:  # 3.5+ dynamic form: server.N=host:peer:election[:role];[clientHost:]clientPort
                client = v.split(";", 1)[1]
                port = client.rsplit(":", 1)[-1]
            hosts.append(f"{host}:{port}")
        if not hosts:  # standalone: clientPortAddress:clientPort
            hosts.append(f"{config.get('clientPortAddress', 'localhost')}:{config.get('clientPort', '2181')}")
        return [",".join(hosts)]
    return opts.servers.split(",")


def main(argv: list[str] | None = None) -> int:
    opts, _ = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if opts.verbose else logging.ERROR)
    data = b"x" * opts.znode_size
    servers = get_zk_servers(opts)
    test = LatencyTest(opts)
    sessions: list[Session] = []
    try:
        # create all the sessions first so that every server is up (and a quorum formed)
        for server in servers:
            sessions.append(Session(server, opts))
        root = opts.root_znode
        s0 = sessions[0]
        if s0.zk.exists(root):
            if not opts.force:
                raise SmokeError(f"Node {root} already exists!")
            for child in s0.zk.get_children(root):
                s0.zk.delete(f"{root}/{child}")
        else:
            s0.create(root, f"smoketest root, delete after test done, created "
                            f"{datetime.datetime.now().ctime()}".encode())
        for i, s in enumerate(sessions):
            # "syncronous" as zk-smoketest prints it, for scripts that parse the output
            kind = "syncronous" if opts.synchronous else "asynchronous"
            print(f"Testing latencies on server {servers[i]} using {kind} calls")
            if opts.synchronous:
                test.synchronous(s, data)
            else:
                test.asynchronous(s, data)
            sys.stdout.flush()
        s0.delete(root)
    except SmokeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for s in sessions:
            s.close()
    print("Latency test complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
