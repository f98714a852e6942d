"""One ZooKeeper session for the shell: kazoo's connection underneath, the Java client's behaviour on top.

kazoo (2.11) owns the socket, the handshake, pings, reconnection and re-authentication.  What zkCli.sh users
see comes from the Java client, so this module adds it:

* requests are kazoo request records (or `raw` ones for the calls kazoo lacks) submitted with
  `client._call`; every failure becomes a `KeeperError(code, client_path)` with Java's message;
* watches are kept as Java's ZKWatchManager keeps them for a client that only uses its default watcher
  (data, exist, child, persistent and persistent-recursive paths), registered when the reply is read (on
  kazoo's connection thread, before any later notification), re-armed with setWatches2 after a reconnect,
  and removed with the `DataWatchRemoved`/`ChildWatchRemoved`/`PersistentWatchRemoved` events;
* every notification the server sends is read off kazoo's connection before kazoo dispatches it, matched
  against those watches (`materialize`) and printed as `WatchedEvent state:... type:... path:...`;
  connection state changes are printed the same way (`SyncConnected`, `Disconnected`, `Expired`,
  `AuthFailed`, `Closed`), each state once, as the Java EventThread does;
* an expired or auth-failed session is dead, as a Java ZooKeeper handle is: kazoo is stopped rather than
  left to open a new session;
* a request still queued when a connection attempt fails is dropped with ConnectionLoss (the Java client
  fails its outgoing queue), and no request waits longer than the session timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ZookeeperError
from kazoo.protocol.serialization import (
    Delete,
    Exists,
    GetACL,
    GetChildren,
    GetChildren2,
    GetData,
    Reconfig,
    SetData,
    Sync,
    Transaction,
    Watch,
)
from kazoo.protocol.states import KazooState, KeeperState, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import ACL

from zkfast._jute import (
    ADD_WATCH_PERSISTENT,
    ADD_WATCH_PERSISTENT_RECURSIVE,
    FLAG_CONTAINER,
    FLAG_EPHEMERAL_SEQUENTIAL,
    FLAG_PERSISTENT_SEQUENTIAL,
    FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL,
    WATCHER_CHILDREN,
    WATCHER_DATA,
    Code,
    EventType,
)
from zkfast.shell import raw
from zkfast.shell.javacompat import IllegalArgument, KeeperError, validate_path

CONFIG_NODE = "/zookeeper/config"

# WatchedEvent type names as the Java client prints them (Watcher.Event.EventType)
EVENT_TYPES = {
    EventType.NONE: "None", EventType.NODE_CREATED: "NodeCreated", EventType.NODE_DELETED: "NodeDeleted",
    EventType.NODE_DATA_CHANGED: "NodeDataChanged", EventType.NODE_CHILDREN_CHANGED: "NodeChildrenChanged",
    EventType.DATA_WATCH_REMOVED: "DataWatchRemoved", EventType.CHILD_WATCH_REMOVED: "ChildWatchRemoved",
    EventType.PERSISTENT_WATCH_REMOVED: "PersistentWatchRemoved",
}


def _quiet_logger() -> logging.Logger:
    log = logging.getLogger("zkfast.shell.kazoo")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    log.setLevel(logging.CRITICAL + 1)
    return log


def _kazoo_watch(event: object) -> None:
    """The watcher handed to kazoo for one-time watches: kazoo needs one to set the watch flag; the shell
    prints notifications itself (see ZkSession._on_watch_event)."""


def parse_connect_string(connect: str) -> tuple[str, str | None]:
    """ConnectStringParser: `host:port[,host:port][/chroot]` -> (hosts, chroot or None)."""
    off = connect.find("/")
    if off < 0:
        return connect, None
    hosts, chroot = connect[:off], connect[off:]
    if len(chroot) == 1:
        return hosts, None
    validate_path(chroot)
    return hosts, chroot


class _Reply:
    """The async object kazoo completes on its connection thread; `on_done(rc)` runs there, before kazoo
    reads the next packet (which is when the Java client registers watches)."""

    def __init__(self, client: KazooClient, on_done: Callable[[int], None] | None) -> None:
        self.inner = client.handler.async_result()
        self.on_done = on_done

    def _done(self, rc: int) -> None:
        if self.on_done is not None:
            try:
                self.on_done(rc)
            finally:
                self.on_done = None

    def set(self, value: object = None) -> None:
        self._done(Code.OK)
        self.inner.set(value)

    def set_exception(self, exc: BaseException) -> None:
        self._done(int(getattr(exc, "code", Code.CONNECTIONLOSS)))
        self.inner.set_exception(exc)


class WatchManager:
    """ZKWatchManager for a client whose only watcher is the default one: a watch is just a path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: set[str] = set()
        self.exist: set[str] = set()
        self.child: set[str] = set()
        self.persistent: set[str] = set()
        self.recursive: set[str] = set()

    def any(self) -> bool:
        return bool(self.data or self.exist or self.child or self.persistent or self.recursive)

    # -- registration (WatchRegistration.register)
    def register_data(self, path: str, rc: int) -> None:
        if rc == Code.OK:
            with self.lock:
                self.data.add(path)

    def register_exists(self, path: str, rc: int) -> None:
        with self.lock:
            if rc == Code.OK:
                self.data.add(path)
            elif rc == Code.NONODE:
                self.exist.add(path)

    def register_child(self, path: str, rc: int) -> None:
        if rc == Code.OK:
            with self.lock:
                self.child.add(path)

    def register_persistent(self, path: str, recursive: bool, rc: int) -> None:
        if rc in (Code.OK, Code.NONODE):
            with self.lock:
                (self.recursive if recursive else self.persistent).add(path)

    # -- delivery (materialize): whether the default watcher gets this event
    def _persistent_hit(self, path: str) -> bool:
        if path in self.persistent:
            return True
        p = path
        while True:
            if p in self.recursive:
                return True
            if p == "/":
                return False
            p = p[:p.rfind("/")] or "/"

    def materialize(self, event_type: int, path: str) -> bool:
        with self.lock:
            hit = False
            if event_type in (EventType.NODE_DATA_CHANGED, EventType.NODE_CREATED):
                for s in (self.data, self.exist):
                    if path in s:
                        s.discard(path)
                        hit = True
            elif event_type == EventType.NODE_CHILDREN_CHANGED:
                if path in self.child:
                    self.child.discard(path)
                    hit = True
            elif event_type == EventType.NODE_DELETED:
                for s in (self.data, self.exist, self.child):
                    if path in s:
                        s.discard(path)
                        hit = True
            else:
                return False
            return self._persistent_hit(path) or hit

    # -- removal (removeWatcher): the removal event types, or a KeeperError
    def remove(self, path: str, watcher_type: int, local: bool, rc: int) -> list[int]:
        with self.lock:
            candidates: tuple[set[str], ...]
            if watcher_type == WATCHER_CHILDREN:
                candidates = (self.child, self.persistent, self.recursive)
            elif watcher_type == WATCHER_DATA:
                candidates = (self.data, self.exist, self.persistent, self.recursive)
            else:
                candidates = (self.child, self.data, self.exist, self.persistent, self.recursive)
            if not any(path in s for s in candidates):
                raise KeeperError(Code.NOWATCHER, path)
            if watcher_type == WATCHER_CHILDREN:
                plan = [(self.child, EventType.CHILD_WATCH_REMOVED)]
            elif watcher_type == WATCHER_DATA:
                plan = [(self.data, EventType.DATA_WATCH_REMOVED), (self.exist, EventType.DATA_WATCH_REMOVED)]
            else:
                plan = [(self.child, EventType.CHILD_WATCH_REMOVED), (self.data, EventType.DATA_WATCH_REMOVED),
                        (self.exist, EventType.DATA_WATCH_REMOVED),
                        (self.persistent, EventType.PERSISTENT_WATCH_REMOVED),
                        (self.recursive, EventType.PERSISTENT_WATCH_REMOVED)]
            removed: list[int] = []
            for watches, kind in plan:
                if not local and rc != Code.OK:
                    raise KeeperError(rc, path)
                if path in watches:
                    watches.discard(path)
                    if kind not in removed:
                        removed.append(kind)
            if not removed:
                raise KeeperError(Code.NOWATCHER, path)
            return removed

    def snapshot(self) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
        with self.lock:
            return (sorted(self.data), sorted(self.exist), sorted(self.child), sorted(self.persistent),
                    sorted(self.recursive))


class ZkSession:
    """A connected (or connecting) ZooKeeper handle with the Java client's semantics."""

    def __init__(self, connect_string: str, timeout_ms: int, read_only: bool,
                 print_event: Callable[[str], None]) -> None:
        self.connect_string = connect_string
        hosts, self.chroot = parse_connect_string(connect_string)
        self.timeout_ms = timeout_ms
        self.print_event = print_event
        self.watches = WatchManager()
        self.closing = False
        self.dead_state: str | None = None  # "CLOSED" or "AUTH_FAILED" once the handle is dead
        self.session_state = "Disconnected"  # ClientCnxn.EventThread.sessionState
        self._event_lock = threading.Lock()
        self._attempts = 0
        self._ever_connected = False
        retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_jitter=0.2, max_delay=1.0)
        self.client = KazooClient(hosts=hosts, timeout=max(timeout_ms, 1) / 1000.0, read_only=read_only or None,
                                  connection_retry=retry, logger=_quiet_logger())
        self.client.add_listener(self._on_state)
        conn = self.client._connection
        original_event = conn._read_watch_event
        original_attempt = conn._connect_attempt

        def read_watch_event(buffer: bytes, offset: int) -> Any:
            try:
                watch, _ = Watch.deserialize(buffer, offset)
                self._on_watch_event(watch.type, watch.path)
            except Exception:  # never break kazoo's reader
                pass
            return original_event(buffer, offset)

        def connect_attempt(*args: Any) -> Any:
            try:
                return original_attempt(*args)
            finally:
                self._attempts += 1

        conn._read_watch_event = read_watch_event
        conn._connect_attempt = connect_attempt

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> threading.Event:
        """Start connecting; the returned event is set once connected."""
        return self.client.start_async()  # type: ignore[no-any-return]

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client.connected:
                return True
            if self.dead_state is not None:
                return False
            time.sleep(0.01)
        return self.client.connected  # type: ignore[no-any-return]

    @property
    def alive(self) -> bool:
        """ZooKeeper.States.isAlive: anything but CLOSED and AUTH_FAILED."""
        return self.dead_state is None and not self.closing

    def state_name(self) -> str:
        """ZooKeeper.getState() as the prompt shows it."""
        if self.dead_state is not None:
            return self.dead_state
        if self.closing:
            return "CLOSED"
        state = self.client.client_state
        if state == KeeperState.CONNECTED:
            return "CONNECTED"
        if state == KeeperState.CONNECTED_RO:
            return "CONNECTEDREADONLY"
        if state == KeeperState.AUTH_FAILED:
            return "AUTH_FAILED"
        return "CONNECTING"

    def close(self) -> None:
        """ZooKeeper.close(): end the session; prints the Closed event."""
        if self.dead_state is None and not self.closing:
            self.closing = True
            try:
                self.client.stop()
                self.client.close()
            except Exception:
                pass
            self._state_event("Closed")
        self.closing = True
        if self.dead_state is None:
            self.dead_state = "CLOSED"

    def abandon(self) -> None:
        """Leave without closing the session (the JVM's System.exit): the server expires it later."""
        self.closing = True

    def _kill_async(self) -> None:
        def stop() -> None:
            try:
                self.client.stop()
                self.client.close()
            except Exception:
                pass
        threading.Thread(target=stop, name="zkfast-shell-stop", daemon=True).start()

    # ------------------------------------------------------------------------------------------ events
    def _state_event(self, state: str) -> None:
        with self._event_lock:
            if self.session_state == state:
                return
            self.session_state = state
        self.print_event(f"WatchedEvent state:{state} type:None path:null")

    def _on_state(self, state: str) -> None:
        if self.dead_state is not None:
            return
        if state == KazooState.CONNECTED:
            ro = self.client.client_state == KeeperState.CONNECTED_RO
            self._state_event("ConnectedReadOnly" if ro else "SyncConnected")
            if self._ever_connected and self.watches.any():
                self._rearm_watches()
            self._ever_connected = True
        elif state == KazooState.SUSPENDED:
            self._state_event("Disconnected")
        elif state == KazooState.LOST:
            client_state = self.client.client_state
            if self.closing:
                self._state_event("Closed")
            elif client_state == KeeperState.AUTH_FAILED:
                self.dead_state = "AUTH_FAILED"
                self._state_event("AuthFailed")
                self._kill_async()
            elif client_state == KeeperState.EXPIRED_SESSION:
                self._state_event("Expired")
                self.dead_state = "CLOSED"
                self._kill_async()
            else:
                self._state_event("Closed")
                self.dead_state = "CLOSED"

    def _rearm_watches(self) -> None:
        data, exist, child, persistent, recursive = self.watches.snapshot()
        sp = self.server_path
        request = raw.SetWatches2(self.client.last_zxid or 0, [sp(p) for p in data], [sp(p) for p in exist],
                                  [sp(p) for p in child], [sp(p) for p in persistent], [sp(p) for p in recursive])
        self.client._call(request, _Reply(self.client, None))

    def _on_watch_event(self, event_type: int, server_path: str | None) -> None:
        if self.dead_state is not None or self.closing or server_path is None:
            return
        path = self.client_path(server_path)
        if not self.watches.materialize(event_type, path):
            return
        self._watch_event("SyncConnected", event_type, path)

    def _watch_event(self, state: str, event_type: int, path: str) -> None:
        with self._event_lock:
            self.session_state = state
        self.print_event(f"WatchedEvent state:{state} type:{EVENT_TYPES.get(event_type, event_type)} path:{path}")

    # ------------------------------------------------------------------------------------------ paths
    def server_path(self, path: str) -> str:
        """ZooKeeper.prependChroot."""
        if self.chroot is None:
            return path
        return self.chroot if len(path) == 1 else self.chroot + path

    def client_path(self, server_path: str) -> str:
        if self.chroot is None:
            return server_path
        if server_path == self.chroot:
            return "/"
        if len(server_path) > len(self.chroot):
            return server_path[len(self.chroot):]
        return server_path

    # ------------------------------------------------------------------------------------------ requests
    def submit(self, request: Any, client_path: str | None, on_done: Callable[[int], None] | None = None,
               timeout_ms: int | None = None) -> Any:
        """Send `request`, wait for its reply (at most the session timeout, or `timeout_ms`); errors become
        KeeperError(code, client_path)."""
        if not self.alive:
            raise KeeperError(Code.SESSIONEXPIRED if self.dead_state == "CLOSED" else Code.AUTHFAILED,
                              client_path)
        deadline = time.monotonic() + max(timeout_ms or self.timeout_ms, 1000) / 1000.0
        # right after start the connection thread has not left CLOSED yet, and kazoo refuses calls then
        while self.client.client_state == KeeperState.CLOSED and self.alive and time.monotonic() < deadline:
            time.sleep(0.002)
        reply = _Reply(self.client, on_done)
        attempts = self._attempts
        self.client._call(request, reply)
        timeout_exc = self.client.handler.timeout_exception
        while True:
            try:
                return reply.inner.get(timeout=0.05)
            except timeout_exc:
                pass
            except ZookeeperError as e:
                raise KeeperError(int(getattr(e, "code", Code.SYSTEMERROR)), client_path) from None
            except KeeperError:
                raise
            except Exception:
                raise KeeperError(Code.MARSHALLINGERROR, client_path) from None
            queued = self._unqueue(request, reply, only_check=True)
            if (queued and self._attempts != attempts) or time.monotonic() > deadline:
                self._unqueue(request, reply)
                reply._done(Code.CONNECTIONLOSS)
                raise KeeperError(Code.CONNECTIONLOSS, client_path)

    def _unqueue(self, request: Any, reply: _Reply, only_check: bool = False) -> bool:
        """Whether the request still waits in kazoo's send queue (and, unless `only_check`, take it out)."""
        queue = self.client._queue
        try:
            entries = list(queue)
        except RuntimeError:  # changed under us by the connection thread: it is being sent
            return False
        for entry in entries:
            if entry[0] is request and entry[1] is reply:
                if not only_check:
                    try:
                        queue.remove(entry)
                    except ValueError:
                        return False
                return True
        return False

    # -- the ZooKeeper API the commands use (client paths in, Java semantics out)
    def get_data(self, path: str, watch: bool) -> tuple[bytes | None, ZnodeStat]:
        validate_path(path)
        on_done = (lambda rc: self.watches.register_data(path, rc)) if watch else None
        data, stat = self.submit(GetData(self.server_path(path), _kazoo_watch if watch else None), path, on_done)
        return data, stat

    def exists(self, path: str, watch: bool) -> ZnodeStat | None:
        validate_path(path)
        on_done = (lambda rc: self.watches.register_exists(path, rc)) if watch else None
        stat = self.submit(Exists(self.server_path(path), _kazoo_watch if watch else None), path, on_done)
        return stat  # type: ignore[no-any-return]

    def get_children(self, path: str, watch: bool, with_stat: bool,
                     timeout_ms: int | None = None) -> tuple[list[str], ZnodeStat | None]:
        validate_path(path)
        on_done = (lambda rc: self.watches.register_child(path, rc)) if watch else None
        watcher = _kazoo_watch if watch else None
        if with_stat:
            children, stat = self.submit(GetChildren2(self.server_path(path), watcher), path, on_done, timeout_ms)
            return list(children), stat
        return list(self.submit(GetChildren(self.server_path(path), watcher), path, on_done, timeout_ms)), None

    def create(self, path: str, data: bytes | None, acl: list[ACL], flags: int, ttl: int | None = None) -> str:
        sequential = flags in (FLAG_PERSISTENT_SEQUENTIAL, FLAG_EPHEMERAL_SEQUENTIAL,
                               FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL)
        validate_path(path, sequential)
        if not acl:
            raise KeeperError(Code.INVALIDACL)
        sp = self.server_path(path)
        if ttl is not None:
            created, _stat = self.submit(raw.CreateTTL(sp, data, acl, flags, ttl), path)
        elif flags == FLAG_CONTAINER:
            created = self.submit(raw.CreateContainer(sp, data, acl), path)
        else:
            created = self.submit(raw.Create(sp, data, acl, flags), path)
        if self.chroot is not None and created:
            return str(created)[len(self.chroot):]
        return str(created)

    def delete(self, path: str, version: int) -> None:
        validate_path(path)
        self.submit(Delete(path if path == "/" else self.server_path(path), version), path)

    def set_data(self, path: str, data: bytes | None, version: int) -> ZnodeStat:
        validate_path(path)
        return self.submit(SetData(self.server_path(path), data, version), path)  # type: ignore[no-any-return]

    def get_acl(self, path: str) -> tuple[list[ACL], ZnodeStat]:
        validate_path(path)
        acl, stat = self.submit(GetACL(self.server_path(path)), path)
        return list(acl), stat

    def set_acl(self, path: str, acl: list[ACL], version: int) -> ZnodeStat:
        validate_path(path)
        if not acl:
            raise KeeperError(Code.INVALIDACL)
        return self.submit(raw.SetACL(self.server_path(path), acl, version), path)  # type: ignore[no-any-return]

    def sync(self, path: str) -> int:
        """The result code of sync (zkCli.sh prints it rather than raising)."""
        validate_path(path)
        try:
            self.submit(Sync(self.server_path(path)), path)
        except KeeperError as e:
            return e.code
        return Code.OK

    def get_all_children_number(self, path: str) -> int:
        validate_path(path)
        return int(self.submit(raw.GetAllChildrenNumber(self.server_path(path)), path))

    def get_ephemerals(self, prefix: str) -> list[str]:
        validate_path(prefix)
        try:
            return list(self.submit(raw.GetEphemerals(prefix), prefix))
        except KeeperError as e:
            raise KeeperError(e.code) from None  # Java raises it without a path

    def add_watch(self, path: str, recursive: bool) -> None:
        validate_path(path)
        mode = ADD_WATCH_PERSISTENT_RECURSIVE if recursive else ADD_WATCH_PERSISTENT
        self.submit(raw.AddWatch(self.server_path(path), mode), path,
                    lambda rc: self.watches.register_persistent(path, recursive, rc))

    def remove_all_watches(self, path: str, watcher_type: int, local: bool) -> None:
        """ZooKeeper.removeAllWatches with WatchDeregistration: the server is asked first, then the local
        watches go, each kind with its removal event."""
        validate_path(path)
        try:
            self.submit(raw.RemoveWatches(self.server_path(path), watcher_type), path)
            rc = Code.OK
        except KeeperError as e:
            rc = e.code
        kinds = self.watches.remove(path, watcher_type, local, rc)
        state = "Disconnected" if rc in (Code.SESSIONEXPIRED, Code.CONNECTIONLOSS) else "SyncConnected"
        for kind in kinds:
            self._watch_event(state, kind, path)

    def who_am_i(self) -> list[tuple[str | None, str | None]] | None:
        try:
            return list(self.submit(raw.WhoAmI(), None))
        except KeeperError:
            return None

    def get_config(self, watch: bool) -> tuple[bytes | None, ZnodeStat]:
        on_done = (lambda rc: self.watches.register_data(CONFIG_NODE, rc)) if watch else None
        data, stat = self.submit(GetData(CONFIG_NODE, _kazoo_watch if watch else None), None, on_done)
        return data, stat

    def reconfig(self, joining: str | None, leaving: str | None, members: str | None,
                 version: int) -> tuple[bytes | None, ZnodeStat]:
        data, stat = self.submit(Reconfig(joining, leaving, members, version), None)
        return data, stat

    def multi_delete(self, paths: list[str]) -> bool:
        """One multi of delete(path, -1) ops: whether every op succeeded."""
        for p in paths:
            validate_path(p)
        ops = [Delete(self.server_path(p), -1) for p in paths]
        try:
            results = self.submit(Transaction(ops), paths[0] if paths else None)
        except KeeperError:
            return False
        return not any(isinstance(r, Exception) for r in results)

    def add_auth(self, scheme: str, auth: str | None) -> None:
        """ZooKeeper.addAuthInfo: sent and not waited for; a failure shows as the AuthFailed event."""
        if not self.alive:
            return
        # kazoo re-sends client.auth_data after a reconnect; the live packet is the Java client's
        self.client.auth_data.add((scheme, auth or ""))
        data = None if auth is None else auth.encode("utf-8")
        self.client._call(raw.Auth(scheme, data), _Reply(self.client, None))


__all__ = ["ZkSession", "WatchManager", "IllegalArgument", "parse_connect_string", "EVENT_TYPES"]
