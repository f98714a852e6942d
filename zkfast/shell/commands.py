"""The zkCli.sh commands (org.apache.zookeeper.cli.*Command in ZooKeeper 3.8.0), one class each.

`parse(args)` takes the whole argument list (the command name first, as zkCli.sh passes it) and raises
`CliError` for a usage problem; `exec()` runs the command and returns whether it left a watch.  Output goes
to stdout or stderr exactly where the Java command prints it, with the same text.  Two commands that 3.8
dropped are kept for older guides: `ls2 path [watch]` (= `ls -s`) and `rmr path` (= `deleteall`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from kazoo.security import ACL

from zkfast._jute import (
    FLAG_CONTAINER,
    FLAG_EPHEMERAL,
    FLAG_EPHEMERAL_SEQUENTIAL,
    FLAG_PERSISTENT,
    FLAG_PERSISTENT_SEQUENTIAL,
    FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL,
    FLAG_PERSISTENT_WITH_TTL,
    WATCHER_ANY,
    WATCHER_CHILDREN,
    WATCHER_DATA,
)
from zkfast.shell.cliparse import CommandLine, Option, OptionGroup, Options, ParseError, parse
from zkfast.shell.console import Console
from zkfast.shell.javacompat import (
    LIMIT_NODE,
    OPEN_ACL_UNSAFE,
    PROC_ZOOKEEPER,
    QUOTA_ZOOKEEPER,
    STAT_NODE,
    CliError,
    Code,
    IllegalArgument,
    KeeperError,
    NumberFormatError,
    StatLike,
    StatsTrack,
    check_ttl,
    cli_wrapper_message,
    decode_data,
    id_to_string,
    java_list,
    java_sort_key,
    java_split,
    limit_path,
    parse_acl,
    parse_int,
    parse_long,
    parse_long_hex,
    perm_string,
    quota_path,
    stat_lines,
    stat_path,
    trim_quota_path,
    validate_path,
)
from zkfast.shell.session import ZkSession
from zkfast.version import version_line

T = TypeVar("T")


class JavaCrash(Exception):
    """An exception zkCli.sh does not catch: the JVM prints it and exits (`text` is its toString)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _nfe(e: NumberFormatError) -> JavaCrash:
    return JavaCrash(f"java.lang.NumberFormatException: {e}")


class CliCommand:
    """org.apache.zookeeper.cli.CliCommand."""

    name = ""
    option_str = ""
    options = Options()
    min_args = 0  # the words it needs, its name included; fewer: its usage line (as each Java command)

    def __init__(self, console: Console, zk: ZkSession) -> None:
        self.console = console
        self.zk = zk
        self.cl = CommandLine()
        self.args: list[str] = []

    def usage(self) -> str:
        return f"{self.name} {self.option_str}"

    def _parse(self, args: list[str]) -> CommandLine:
        try:
            return parse(self.options, args)
        except ParseError as e:
            raise CliError(str(e)) from None

    def parse(self, args: list[str]) -> CliCommand:
        self.cl = self._parse(args)
        self.args = self.cl.args
        if len(self.args) < self.min_args:
            raise CliError(self.usage())
        return self

    def exec(self) -> bool:
        raise NotImplementedError

    # -- helpers
    def out(self, line: str = "") -> None:
        self.console.out(line)

    def err(self, line: str = "") -> None:
        self.console.err(line)

    def print_stat(self, stat: StatLike | None) -> None:
        if stat is None:
            return
        for line in stat_lines(stat):
            self.out(line)

    def _retain_compatibility(self, cmd_args: list[str], what: str | None) -> None:
        """`get|stat|ls path [watch]`: the third word becomes -w, with a deprecation note."""
        if len(self.args) > 2:
            cmd_args[2] = "-w"
            if what is not None:
                self.err(what)
            self.cl = self._parse(cmd_args)
            self.args = self.cl.args


def _wrap(call: Callable[[], T]) -> T:
    """Run a client call as the commands do: bad paths are MalformedPathException, server errors go
    through CliWrapperException."""
    try:
        return call()
    except NumberFormatError:
        raise
    except IllegalArgument as e:
        raise CliError(str(e)) from None
    except KeeperError as e:
        raise CliError(cli_wrapper_message(e)) from None


def visit_subtree_dfs(zk: ZkSession, path: str, watch: bool, callback: Callable[[str], None]) -> None:
    """ZKUtil.visitSubTreeDFS: the node, then each level of children in sorted order, depth first."""
    validate_path(path)
    zk.get_data(path, watch)
    callback(path)
    _visit(zk, path, watch, callback)


def _visit(zk: ZkSession, path: str, watch: bool, callback: Callable[[str], None]) -> None:
    is_root = len(path) == 1
    try:
        children, _ = zk.get_children(path, watch, False)
    except KeeperError as e:
        if e.code == Code.NONODE:
            return
        raise
    children.sort(key=java_sort_key)
    for child in children:
        callback((path if is_root else path + "/") + child)
    for child in children:
        _visit(zk, (path if is_root else path + "/") + child, watch, callback)


# ---------------------------------------------------------------------------------------------------------
# reading


class LsCommand(CliCommand):
    name = "ls"
    option_str = "[-s] [-w] [-R] path"
    options = Options(Option("?", description="help"), Option("s", description="stat"),
                      Option("w", description="watch"), Option("R", description="recurse"))
    HELP = ("usage: ls [options] path\n"
            " -?   help\n"
            " -R   recurse\n"
            " -s   stat\n"
            " -w   watch")

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        if self.cl.has("?"):
            self.out(self.HELP)
        self._retain_compatibility(args, "'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.")
        return self

    def _with_stat(self) -> bool:
        return self.cl.has("s")

    def exec(self) -> bool:
        if len(self.args) < 2:
            raise CliError(self.usage())
        path = self.args[1]
        watch = self.cl.has("w")
        if self.cl.has("R"):
            _wrap(lambda: visit_subtree_dfs(self.zk, path, watch, self.out))
            return watch
        children, stat = _wrap(lambda: self.zk.get_children(path, watch, self._with_stat()))
        children.sort(key=java_sort_key)
        self.out(java_list(children))
        if stat is not None:
            self.print_stat(stat)
        return watch


class Ls2Command(LsCommand):
    """`ls2 path [watch]`, the pre-3.5 name of `ls -s` (zkCli.sh 3.8 no longer has it)."""

    name = "ls2"
    option_str = "path [watch]"

    def parse(self, args: list[str]) -> CliCommand:
        CliCommand.parse(self, args)  # not ls's, which warns of the `watch` word
        if self.cl.has("?"):
            self.out(self.HELP)
        self._retain_compatibility(args, None)  # the old optional `watch` word, without a deprecation note
        return self

    def _with_stat(self) -> bool:
        return True


class StatCommand(CliCommand):
    name = "stat"
    option_str = "[-w] path"
    options = Options(Option("w", description="watch"))
    min_args = 2

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        self._retain_compatibility(
            args, "'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.")
        return self

    def exec(self) -> bool:
        path = self.args[1]
        watch = self.cl.has("w")
        stat = _wrap(lambda: self.zk.exists(path, watch))
        if stat is None:
            raise CliError(cli_wrapper_message(KeeperError(Code.NONODE, path)))
        self.print_stat(stat)
        return watch


class GetCommand(CliCommand):
    name = "get"
    option_str = "[-s] [-w] path"
    options = Options(Option("s", description="stats"), Option("w", description="watch"))
    min_args = 2

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        self._retain_compatibility(
            args, "'get path [watch]' has been deprecated. Please use 'get [-s] [-w] path' instead.")
        return self

    def exec(self) -> bool:
        watch = self.cl.has("w")
        path = self.args[1]
        data, stat = _wrap(lambda: self.zk.get_data(path, watch))
        self.out(decode_data(data))
        if self.cl.has("s"):
            self.print_stat(stat)
        return watch


class GetAclCommand(CliCommand):
    name = "getAcl"
    option_str = "[-s] path"
    options = Options(Option("s", description="stats"))
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        acl, stat = _wrap(lambda: self.zk.get_acl(path))
        for a in acl:
            self.out(f"{id_to_string(a.id.scheme, a.id.id)}: {perm_string(a.perms)}")
        if self.cl.has("s"):
            self.print_stat(stat)
        return False


class GetAllChildrenNumberCommand(CliCommand):
    name = "getAllChildrenNumber"
    option_str = "path"

    def exec(self) -> bool:
        if len(self.args) < 2:
            raise CliError(self.usage())
        path = self.args[1]
        self.out(str(_wrap(lambda: self.zk.get_all_children_number(path))))
        return False


class GetEphemeralsCommand(CliCommand):
    name = "getEphemerals"
    option_str = "path"

    def exec(self) -> bool:
        prefix = self.args[1] if len(self.args) >= 2 else "/"
        ephemerals = _wrap(lambda: self.zk.get_ephemerals(prefix))
        self.out(java_list(ephemerals))
        return False


class GetConfigCommand(CliCommand):
    name = "config"
    option_str = "[-c] [-w] [-s]"
    options = Options(Option("s", description="stats"), Option("w", description="watch"),
                      Option("c", description="client connection string"))

    def exec(self) -> bool:
        watch = self.cl.has("w")
        try:
            data, stat = self.zk.get_config(watch)
        except KeeperError as e:
            raise CliError(cli_wrapper_message(e)) from None
        text = decode_data(data)
        self.out(client_config_str(text) if self.cl.has("c") else text)
        if self.cl.has("s"):
            self.print_stat(stat)
        return watch


def _properties(text: str) -> list[tuple[str, str]]:
    """java.util.Properties.load, enough for a dynamic config file: `key=value` / `key:value` lines."""
    items: list[tuple[str, str]] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            key, value = line, ""
        else:
            key, value = line[:cut].strip(), line[cut + 1:].strip()
        items.append((key, value))
    return items


def client_config_str(config: str) -> str:
    """ConfigUtils.getClientConfigStr: `version host:clientPort,...` (servers in the order written)."""
    version = ""
    hosts: list[str] = []
    for key, value in _properties(config):
        if key == "version":
            version = value
        if not key.startswith("server."):
            continue
        client = value.split(";", 1)[1].strip() if ";" in value else None
        if client is None:
            hosts.append("")
        elif client.rfind(":") > 0:
            hosts.append(client)
        else:
            hosts.append(f"0.0.0.0:{client}")
    return version + " " + ",".join(hosts)


class WhoAmICommand(CliCommand):
    name = "whoami"
    option_str = ""

    def parse(self, args: list[str]) -> CliCommand:
        return self

    def exec(self) -> bool:
        infos = self.zk.who_am_i()
        self.out("Auth scheme: User")
        for scheme, user in infos or []:
            self.out(f"{'null' if scheme is None else scheme}: {'null' if user is None else user}")
        return False


class VersionCommand(CliCommand):
    name = "version"
    option_str = ""

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        if len(self.args) > 1:
            raise CliError(self.usage())
        return self

    def exec(self) -> bool:
        self.out(f"ZooKeeper CLI version: {version_line()}")
        return False


class SyncCommand(CliCommand):
    name = "sync"
    option_str = "path"
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        rc = _wrap(lambda: self.zk.sync(path))
        self.out("Sync is OK" if rc == 0 else f"Sync has failed. rc={rc}")
        return False


# ---------------------------------------------------------------------------------------------------------
# writing


class CreateCommand(CliCommand):
    name = "create"
    option_str = "[-s] [-e] [-c] [-t ttl] path [data] [acl]"
    options = Options(Option("e", description="ephemeral"), Option("s", description="sequential"),
                      Option("c", description="container"), Option("t", True, "ttl"))
    min_args = 2

    def exec(self) -> bool:
        has_e, has_s, has_c, has_t = (self.cl.has(k) for k in "esct")
        if has_c and (has_e or has_s):
            raise CliError("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.")
        ttl = 0
        if has_t:
            try:
                ttl = parse_long(self.cl.value("t"))
            except NumberFormatError:
                raise CliError("-t argument must be a long value") from None
        if has_t and has_e:
            raise CliError("TTLs cannot be used with Ephemeral znodes")
        if has_t and has_c:
            raise CliError("TTLs cannot be used with Container znodes")
        if has_e and has_s:
            flags = FLAG_EPHEMERAL_SEQUENTIAL
        elif has_e:
            flags = FLAG_EPHEMERAL
        elif has_s:
            flags = FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL if has_t else FLAG_PERSISTENT_SEQUENTIAL
        elif has_c:
            flags = FLAG_CONTAINER
        else:
            flags = FLAG_PERSISTENT_WITH_TTL if has_t else FLAG_PERSISTENT
        if has_t:
            try:
                check_ttl(ttl)
            except IllegalArgument as e:
                raise CliError(str(e)) from None
        path = self.args[1]
        data = self.args[2].encode("utf-8") if len(self.args) > 2 else None
        acl: list[ACL] = list(OPEN_ACL_UNSAFE)
        if len(self.args) > 3:
            acl = parse_acl(self.args[3], self.err)
        try:
            new_path = self.zk.create(path, data, acl, flags, ttl if has_t else None)
        except IllegalArgument as e:
            raise CliError(str(e)) from None
        except KeeperError as e:
            if e.code == Code.EPHEMERALONLOCALSESSION:
                self.err("Unable to create ephemeral node on a local session")
            elif e.code == Code.INVALIDACL:
                self.err(e.message)
            raise CliError(cli_wrapper_message(e)) from None
        self.err(f"Created {new_path}")
        return True


class SetCommand(CliCommand):
    name = "set"
    option_str = "[-s] [-v version] path data"
    options = Options(Option("s", description="stats"), Option("v", True, "version"))
    min_args = 3

    def exec(self) -> bool:
        path = self.args[1]
        data = self.args[2].encode("utf-8")
        version = _version(self.cl)
        stat = _wrap(lambda: self.zk.set_data(path, data, version))
        if self.cl.has("s"):
            self.print_stat(stat)
        return False


def _version(cl: CommandLine) -> int:
    """`Integer.parseInt(cl.getOptionValue("v"))`, outside any try in the Java commands."""
    if not cl.has("v"):
        return -1
    try:
        return parse_int(cl.value("v"))
    except NumberFormatError as e:
        raise _nfe(e) from None


class DeleteCommand(CliCommand):
    name = "delete"
    option_str = "[-v version] path"
    options = Options(Option("v", True, "version"))
    min_args = 2

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        if len(self.args) > 2:
            self.err("'delete path [version]' has been deprecated. Please use 'delete [-v version] path' instead.")
            self.cl = self._parse(args)
            self.args = self.cl.args
        return self

    def exec(self) -> bool:
        path = self.args[1]
        version = _version(self.cl)
        _wrap(lambda: self.zk.delete(path, version))
        return False


class DeleteAllCommand(CliCommand):
    name = "deleteall"
    option_str = "path [-b batch size]"
    options = Options(Option("b", True, "batch size"))
    min_args = 2

    def exec(self) -> bool:
        try:
            batch = parse_int(self.cl.value("b")) if self.cl.has("b") else 1000
        except NumberFormatError:
            raise CliError("-b argument must be an int value") from None
        path = self.args[1]
        if not _wrap(lambda: delete_recursive(self.zk, path, batch)):
            self.err("Failed to delete some node(s) in the subtree!")
        return False


class RmrCommand(DeleteAllCommand):
    """`rmr path`, the pre-3.5 name of `deleteall`."""

    name = "rmr"


def list_subtree_bfs(zk: ZkSession, root: str) -> list[str]:
    """ZKUtil.listSubTreeBFS."""
    queue = [root]
    tree = [root]
    while queue:
        node = queue.pop(0)
        children, _ = zk.get_children(node, False, False)
        for child in children:
            child_path = ("" if node == "/" else node) + "/" + child
            queue.append(child_path)
            tree.append(child_path)
    return tree


def delete_recursive(zk: ZkSession, root: str, batch_size: int) -> bool:
    """ZKUtil.deleteRecursive: leaves first, in multis of `batch_size` deletes; whether all succeeded."""
    validate_path(root)
    tree = list_subtree_bfs(zk, root)
    ops: list[str] = []
    success = True
    for i in range(len(tree) - 1, -1, -1):
        ops.append(tree[i])
        if len(ops) == batch_size or i == 0:
            if not success:
                break
            success = zk.multi_delete(ops)
            ops = []
    return success


class SetAclCommand(CliCommand):
    name = "setAcl"
    option_str = "[-s] [-v version] [-R] path acl"
    options = Options(Option("s", description="stats"), Option("v", True, "version"),
                      Option("R", description="recursive"))
    min_args = 3

    def exec(self) -> bool:
        path = self.args[1]
        acl = parse_acl(self.args[2], self.err)
        version = _version(self.cl)
        if self.cl.has("R"):
            def set_one(p: str) -> None:
                try:
                    self.zk.set_acl(p, acl, version)
                except KeeperError as e:
                    self.console.write_out(e.message)
            _wrap(lambda: visit_subtree_dfs(self.zk, path, False, set_one))
        else:
            stat = _wrap(lambda: self.zk.set_acl(path, acl, version))
            if self.cl.has("s"):
                self.print_stat(stat)
        return False


class AddAuthCommand(CliCommand):
    name = "addauth"
    option_str = "scheme auth"
    min_args = 2

    def exec(self) -> bool:
        auth = self.args[2] if len(self.args) >= 3 else None
        self.zk.add_auth(self.args[1], auth)
        return False


class CloseCommand(CliCommand):
    name = "close"
    option_str = ""

    def parse(self, args: list[str]) -> CliCommand:
        return self

    def exec(self) -> bool:
        self.zk.close()
        return False


# ---------------------------------------------------------------------------------------------------------
# watches

WATCH_MODES = ("PERSISTENT", "PERSISTENT_RECURSIVE")


class AddWatchCommand(CliCommand):
    name = "addWatch"
    option_str = ("[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is "
                  "PERSISTENT_RECURSIVE")
    options = Options(Option("m", True, ""))

    def parse(self, args: list[str]) -> CliCommand:
        super().parse(args)
        if len(self.args) != 2:
            raise CliError(self.usage())
        # zkCli.sh 3.8 keeps the last -m mode for later addWatch commands (one command object per shell);
        # here a command without -m gets the documented default, PERSISTENT_RECURSIVE.
        self.mode = "PERSISTENT_RECURSIVE"
        if self.cl.has("m"):
            mode = (self.cl.value("m") or "").upper()
            if mode not in WATCH_MODES:
                raise CliError(self.usage())
            self.mode = mode
        return self

    def exec(self) -> bool:
        path = self.args[1]
        try:
            self.zk.add_watch(path, self.mode == "PERSISTENT_RECURSIVE")
        except IllegalArgument as e:
            raise JavaCrash(f"java.lang.IllegalArgumentException: {e}") from None
        except KeeperError as e:
            raise CliError(cli_wrapper_message(e)) from None
        return False


class RemoveWatchesCommand(CliCommand):
    name = "removewatches"
    option_str = "path [-c|-d|-a] [-l]"
    options = Options(Option("c", description="child watcher type"), Option("d", description="data watcher type"),
                      Option("a", description="any watcher type"),
                      Option("l", description="remove locally when there is no server connection"))
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        watcher_type = WATCHER_ANY
        if self.cl.has("c"):
            watcher_type = WATCHER_CHILDREN
        elif self.cl.has("d"):
            watcher_type = WATCHER_DATA
        local = self.cl.has("l")
        _wrap(lambda: self.zk.remove_all_watches(path, watcher_type, local))
        return True


# ---------------------------------------------------------------------------------------------------------
# quotas


def _quota_options(with_values: bool, required: bool) -> Options:
    group = OptionGroup([Option("n", with_values, "num soft quota"), Option("b", with_values, "bytes soft quota"),
                         Option("N", with_values, "num hard quota"), Option("B", with_values, "bytes hard quota")],
                        required=required)
    return Options(groups=(group,))


class SetQuotaCommand(CliCommand):
    name = "setquota"
    option_str = "-n|-b|-N|-B val path"
    options = _quota_options(True, True)
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        if path.startswith(QUOTA_ZOOKEEPER):
            self.err(f"cannot set a quota under the path: {QUOTA_ZOOKEEPER}")
            return False
        quota = StatsTrack({"count": -1, "bytes": -1, "countHardLimit": -1, "byteHardLimit": -1})
        if not self._check_option_values(quota):
            return False
        if any(self.cl.has(k) for k in "nNbB"):
            _wrap(lambda: create_quota(self.zk, path, quota, self.out))
        else:
            self.err(self.usage())
        return False

    def _check_option_values(self, quota: StatsTrack) -> bool:
        try:
            for key, field, parser, strict in (("n", "count", parse_int, True), ("b", "bytes", parse_long, False),
                                               ("N", "countHardLimit", parse_int, True),
                                               ("B", "byteHardLimit", parse_long, False)):
                if not self.cl.has(key):
                    continue
                value = parser(self.cl.value(key))
                if strict and value <= 0:
                    self.err("the num quota must be greater than zero")
                    return False
                if not strict and value < 0:
                    self.err("the bytes quota must be greater than or equal to zero")
                    return False
                quota.set(field, value)
        except NumberFormatError:
            self.err("NumberFormatException happens when parsing the option value")
            return False
        return True


def create_quota(zk: ZkSession, path: str, quota: StatsTrack, out: Callable[[str], None]) -> bool:
    """SetQuotaCommand.createQuota."""
    if zk.exists(path, False) is None:
        raise IllegalArgument(f"{path} does not exist.")
    _check_child_quota(zk, path)
    _check_parent_quota(zk, path)
    qpath = QUOTA_ZOOKEEPER
    if zk.exists(qpath, False) is None:
        try:
            zk.create(PROC_ZOOKEEPER, None, list(OPEN_ACL_UNSAFE), FLAG_PERSISTENT)
            zk.create(QUOTA_ZOOKEEPER, None, list(OPEN_ACL_UNSAFE), FLAG_PERSISTENT)
        except KeeperError as e:
            if e.code != Code.NODEEXISTS:
                raise
    splits = java_split(path, "/")
    for part in splits[1:]:
        qpath = qpath + "/" + part
        if zk.exists(qpath, False) is None:
            try:
                zk.create(qpath, None, list(OPEN_ACL_UNSAFE), FLAG_PERSISTENT)
            except KeeperError as e:
                if e.code != Code.NODEEXISTS:
                    raise
    spath = qpath + "/" + STAT_NODE
    qpath = qpath + "/" + LIMIT_NODE
    if zk.exists(qpath, False) is None:
        zk.create(qpath, quota.to_bytes(), list(OPEN_ACL_UNSAFE), FLAG_PERSISTENT)
        stats = StatsTrack({"count": 0, "bytes": 0})
        zk.create(spath, stats.to_bytes(), list(OPEN_ACL_UNSAFE), FLAG_PERSISTENT)
        limits = StatsTrack.parse(zk.get_data(qpath, False)[0])
        current = StatsTrack.parse(zk.get_data(spath, False)[0])
        _check_quota(limits, current, out)
    else:
        limits = StatsTrack.parse(zk.get_data(qpath, False)[0])
        for field in ("count", "bytes", "countHardLimit", "byteHardLimit"):
            if quota.get(field) > -1:
                limits.set(field, quota.get(field))
        current = StatsTrack.parse(zk.get_data(spath, False)[0])
        _check_quota(limits, current, out)
        zk.set_data(qpath, limits.to_bytes(), -1)
    return True


def _check_quota(limits: StatsTrack, current: StatsTrack, out: Callable[[str], None]) -> None:
    if ((limits.count > -1 and limits.count < current.count)
            or (limits.count_hard > -1 and limits.count_hard < current.count)):
        out(f"[Warning]: the count quota you create is less than the existing count:{current.count}")
    if ((limits.num_bytes > -1 and limits.num_bytes < current.num_bytes)
            or (limits.bytes_hard > -1 and limits.bytes_hard < current.num_bytes)):
        out(f"[Warning]: the bytes quota you create is less than the existing bytes:{current.num_bytes}")


def _check_child_quota(zk: ZkSession, path: str) -> None:
    real = quota_path(path)

    def check(qpath: str) -> None:
        try:
            children, _ = zk.get_children(qpath, False, False)
        except KeeperError:
            return
        for child in children:
            if qpath != QUOTA_ZOOKEEPER + path and child == LIMIT_NODE:
                raise IllegalArgument(f"{path} has a child {trim_quota_path(qpath)} which has a quota")

    try:
        visit_subtree_dfs(zk, real, False, check)
    except KeeperError as e:
        if e.code != Code.NONODE:
            raise


def _check_parent_quota(zk: ZkSession, path: str) -> None:
    splits = java_split(path, "/")
    qpath = QUOTA_ZOOKEEPER
    for part in splits[1:-1]:
        qpath = qpath + "/" + part
        try:
            children, _ = zk.get_children(qpath, False, False)
        except KeeperError as e:
            if e.code == Code.NONODE:
                return
            raise
        if not children:
            return
        for child in children:
            if qpath != quota_path(path) and child == LIMIT_NODE:
                raise IllegalArgument(f"{path} has a parent {trim_quota_path(qpath)} which has a quota")


class ListQuotaCommand(CliCommand):
    name = "listquota"
    option_str = "path"
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        try:
            self.err(f"absolute path is {limit_path(path)}")
            limits = StatsTrack.parse(self.zk.get_data(limit_path(path), False)[0])
            stats = StatsTrack.parse(self.zk.get_data(stat_path(path), False)[0])
            self.out(f"Output quota for {path} {limits}")
            self.out(f"Output stat for {path} {stats}")
        except IllegalArgument as e:
            raise CliError(str(e)) from None
        except KeeperError as e:
            if e.code != Code.NONODE:
                raise CliError(cli_wrapper_message(e)) from None
            self.err(f"quota for {path} does not exist.")
        return False


class DelQuotaCommand(CliCommand):
    name = "delquota"
    option_str = "[-n|-b|-N|-B] path"
    options = _quota_options(False, False)
    min_args = 2

    def exec(self) -> bool:
        path = self.args[1]
        flags = {"n": "count", "b": "bytes", "N": "countHardLimit", "B": "byteHardLimit"}
        chosen = [field for key, field in flags.items() if self.cl.has(key)]
        try:
            self._del_quota(path, chosen or None)
        except IllegalArgument as e:
            raise CliError(str(e)) from None
        except KeeperError as e:
            if e.code != Code.NONODE:
                raise CliError(cli_wrapper_message(e)) from None
            self.err(f"quota for {path} does not exist.")
        return False

    def _del_quota(self, path: str, fields: list[str] | None) -> None:
        """DelQuotaCommand.delQuota."""
        zk = self.zk
        parent = quota_path(path)
        qpath = limit_path(path)
        if zk.exists(qpath, False) is None:
            self.out(f"Quota does not exist for {path}")
            return
        limits = StatsTrack.parse(zk.get_data(qpath, False)[0])
        if fields is None:
            children, _ = zk.get_children(parent, False, False)
            for child in children:
                zk.delete(parent + "/" + child, -1)
            self._trim(parent)
        else:
            for field in fields:
                limits.set(field, -1)
            zk.set_data(qpath, limits.to_bytes(), -1)

    def _trim(self, path: str) -> None:
        while path != QUOTA_ZOOKEEPER:
            children, _ = self.zk.get_children(path, False, False)
            if children:
                return
            self.zk.delete(path, -1)
            path = path[:path.rfind("/")]


# ---------------------------------------------------------------------------------------------------------
# reconfig


class ReconfigCommand(CliCommand):
    name = "reconfig"
    option_str = ("[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | "
                  "[-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]")
    options = Options(Option("s", description="stats"), Option("v", True, "required current config version"),
                      Option("file", True, "path of config file to parse for membership"),
                      Option("members", True, "comma-separated list of config strings for non-incremental reconfig"),
                      Option("add", True, "comma-separated list of config strings for new servers"),
                      Option("remove", True, "comma-separated list of server IDs to remove"))

    def parse(self, args: list[str]) -> CliCommand:
        self.joining: str | None = None
        self.leaving: str | None = None
        self.members: str | None = None
        self.cl = cl = self._parse(args)
        if not (cl.has("file") or cl.has("members")) and not cl.has("add") and not cl.has("remove"):
            raise CliError(self.usage())
        self.version = -1
        if cl.has("v"):
            try:
                self.version = parse_long_hex(cl.value("v"))
            except NumberFormatError:
                raise CliError("-v must be followed by a long (configuration version)") from None
        if (cl.has("file") or cl.has("members")) and (cl.has("add") or cl.has("remove")):
            raise CliError("Can't use -file or -members together with -add or -remove (mixing incremental and "
                           "non-incremental modes is not allowed)")
        if cl.has("file") and cl.has("members"):
            raise CliError("Can't use -file and -members together (conflicting non-incremental modes)")
        if cl.has("add"):
            self.joining = (cl.value("add") or "").lower()
        if cl.has("remove"):
            self.leaving = (cl.value("remove") or "").lower()
        if cl.has("members"):
            self.members = (cl.value("members") or "").lower()
        if cl.has("file"):
            name = cl.value("file") or ""
            try:
                with open(name, encoding="utf-8", errors="replace") as f:
                    props = _properties(f.read())
            except OSError as e:
                reason = os.strerror(e.errno) if e.errno else str(e)
                raise CliError(f"Error processing {name}{name} ({reason})") from None
            lines = [f"{k}={v}" for k, v in props if k.startswith(("server.", "group.", "weight."))]
            self.members = "\n".join(lines)
        return self

    def exec(self) -> bool:
        try:
            data, stat = self.zk.reconfig(self.joining, self.leaving, self.members, self.version)
        except KeeperError as e:
            raise CliError(cli_wrapper_message(e)) from None
        self.out("Committed new configuration:\n" + decode_data(data))
        if self.cl.has("s"):
            self.print_stat(stat)
        return False


# ---------------------------------------------------------------------------------------------------------
# the table

CLI_COMMANDS: dict[str, type[CliCommand]] = {cls.name: cls for cls in (
    CloseCommand, CreateCommand, DeleteCommand, DeleteAllCommand, SetCommand, GetCommand, LsCommand,
    GetAclCommand, SetAclCommand, StatCommand, SyncCommand, SetQuotaCommand, ListQuotaCommand, DelQuotaCommand,
    AddAuthCommand, ReconfigCommand, GetConfigCommand, RemoveWatchesCommand, GetEphemeralsCommand,
    GetAllChildrenNumberCommand, VersionCommand, AddWatchCommand, WhoAmICommand)}

# the commands zkCli.sh 3.8 knows, with the option strings its usage lists
COMMAND_MAP: dict[str, str] = {"connect": "host:port", "history": "", "redo": "cmdno", "printwatches": "on|off",
                               "quit": ""}
COMMAND_MAP.update({name: cls.option_str for name, cls in CLI_COMMANDS.items()})

# names zkCli.sh 3.8 dropped, still understood here (not listed in the usage, as in 3.8)
ALIASES: dict[str, type[CliCommand]] = {"ls2": Ls2Command, "rmr": RmrCommand}


def all_command_names() -> list[str]:
    """What tab completion offers: zkCli.sh's commands and the old aliases."""
    return sorted([*COMMAND_MAP, *ALIASES])
