"""Build and run `tests/go/zkgo` (a scripted session of the Go client github.com/samuel/go-zookeeper, as
Debian packages it) and normalise its transcript so runs against Apache ZooKeeper and zkfast compare.

Building
--------
There is no Go module proxy, so the program is built in GOPATH mode against Debian's packaged library::

    GO111MODULE=off GOPATH=/usr/share/gocode go build

(Debian: ``apt-get install golang-go golang-github-samuel-go-zookeeper-dev``). The binary is cached under
``$ZKFAST_GO_CACHE`` (default ``$XDG_CACHE_HOME/zkfast/zkgo`` or ``~/.cache/zkfast/zkgo``), named after a
hash of the program's source, the library's source and ``go version``: it is built once and rebuilt only
when one of them changes. Go's own build cache lives there too (GOCACHE), so no writable $HOME is needed.
Concurrent builds (pytest-xdist) wait on a lock file.

What the transcript holds is described at the top of main.go.

Normalisation (`normalise`)
---------------------------
* ``[X] session id 0x...`` lines name the session: the id becomes ``<session X>`` (``<session X#2>`` for
  the second session of the same client, e.g. after expiry), and every ``ephemeralOwner=0x...`` and
  every session id `cons` listed (``0x...[/]timeout=``) that is one of those ids becomes that name (an id
  not seen before becomes ``<unknown session N>``);
* ``ctime``/``mtime`` become ``<time>`` (0 stays 0, as on ``/`` and ``/zookeeper``);
* the random guid of a protected node name (``_c_<32 hex>-``) becomes ``_c_<guid>-``.

zxids, versions, data, errors, children and the order of events are kept exactly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbase.zkcli import ClientMissing

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "tests" / "go" / "zkgo"
SOURCE = SOURCE_DIR / "main.go"
GOPATH = Path(os.environ.get("ZKFAST_GOPATH", "/usr/share/gocode"))
LIBRARY_IMPORT = "github.com/samuel/go-zookeeper/zk"
APT_PACKAGES = ("golang-go", "golang-github-samuel-go-zookeeper-dev")
INSTALL_HINT = f"Debian: apt-get install -y {' '.join(APT_PACKAGES)}"
BUILD_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 180.0

_SESSION_LINE = re.compile(r"^\[(\w+)\] session id 0x([0-9a-f]+)$")
_OWNER = re.compile(r"(ephemeralOwner=)0x([0-9a-f]+)|()0x([0-9a-f]+)(?=/timeout=)")
_TIME = re.compile(r"\b(ctime|mtime)=(\d+)")
_GUID = re.compile(r"_c_[0-9a-f]{32}-")


class GoClientMissing(ClientMissing):
    """The Go toolchain or the go-zookeeper library is not installed."""


class GoClientError(RuntimeError):
    """zkgo could not be built, or did not run to its end."""


@dataclass(frozen=True)
class GoRun:
    address: str
    stdout: str
    stderr: str
    returncode: int


def go_binary_path() -> Path:
    """The `go` command: on PATH, or where Debian's golang-go puts it."""
    found = shutil.which("go")
    if found:
        return Path(found)
    for candidate in (Path("/usr/lib/go/bin/go"), Path("/usr/local/go/bin/go")):
        if candidate.exists():
            return candidate
    raise GoClientMissing(f"the Go toolchain (`go`) is not installed: {INSTALL_HINT}")


def library_dir() -> Path:
    return GOPATH / "src" / LIBRARY_IMPORT


def require_go() -> Path:
    """The `go` command, after checking the library is where GOPATH mode looks for it."""
    go = go_binary_path()
    lib = library_dir()
    if not (lib / "conn.go").exists():
        raise GoClientMissing(f"the Go ZooKeeper library is not in {lib}: {INSTALL_HINT} "
                              "(or set ZKFAST_GOPATH to a GOPATH holding " + LIBRARY_IMPORT + ")")
    return go


def cache_dir() -> Path:
    env = os.environ.get("ZKFAST_GO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zkfast" / "zkgo"


def _go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(cache / "gocache"),
                "GOFLAGS": ""})
    return env


def source_key(go: Path) -> str:
    """A hash of everything the binary is built from: main.go, the library's .go files, `go version`."""
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    for f in sorted(library_dir().glob("*.go")):
        if not f.name.endswith("_test.go"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    version = subprocess.run([str(go), "version"], capture_output=True, text=True, timeout=60)
    h.update(version.stdout.encode())
    return h.hexdigest()[:20]


def ensure_built() -> Path:
    """The zkgo binary for the current source, built (once) if the cache does not hold it."""
    go = require_go()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    binary = cache / f"zkgo-{source_key(go)}"
    if binary.exists():
        return binary
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if binary.exists():
                return binary
            fd, tmp_name = tempfile.mkstemp(prefix="zkgo-", suffix=".tmp", dir=cache)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                res = subprocess.run([str(go), "build", "-trimpath", "-o", str(tmp), "."], cwd=SOURCE_DIR,
                                     env=_go_env(cache), capture_output=True, text=True,
                                     timeout=BUILD_TIMEOUT_S)
                if res.returncode != 0:
                    raise GoClientError(f"go build of {SOURCE_DIR} failed:\n{res.stdout}\n{res.stderr}")
                tmp.chmod(0o755)
                os.replace(tmp, binary)
            finally:
                tmp.unlink(missing_ok=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return binary


def run_zkgo(address: str, root: str = "/zkgo", script: str = "main",
             timeout_s: float = RUN_TIMEOUT_S) -> GoRun:
    """Run `script` (``main``, or ``4lw`` for the library's four-letter-word helpers) against `address`;
    the main script's nodes live under `root`, which must not exist."""
    binary = ensure_built()
    try:
        res = subprocess.run([str(binary), "-root", root, "-script", script, address], capture_output=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise GoClientError(f"zkgo against {address} did not finish within {timeout_s}s") from e
    run = GoRun(address=address, stdout=res.stdout.decode("utf-8", "replace"),
                stderr=res.stderr.decode("utf-8", "replace"), returncode=res.returncode)
    if run.returncode != 0:
        raise GoClientError(f"zkgo against {address} exited with {run.returncode}:\n"
                            f"{run.stdout[-3000:]}\n--- stderr ---\n{run.stderr[-3000:]}")
    return run


def normalise(transcript: str) -> str:
    """Replace what differs between runs and servers (see the module docstring)."""
    names: dict[int, str] = {}
    per_client: dict[str, int] = {}
    unknown = 0

    def owner(m: re.Match[str]) -> str:
        nonlocal unknown
        prefix, hex_id = (m.group(1), m.group(2)) if m.group(2) else (m.group(3), m.group(4))
        sid = int(hex_id, 16)
        if sid == 0:
            return m.group(0)
        if sid not in names:
            unknown += 1
            names[sid] = f"<unknown session {unknown}>"
        return prefix + names[sid]

    out: list[str] = []
    for line in transcript.splitlines():
        if m := _SESSION_LINE.match(line):
            client, sid = m.group(1), int(m.group(2), 16)
            if sid not in names:
                n = per_client.get(client, 0) + 1
                per_client[client] = n
                names[sid] = f"<session {client}>" if n == 1 else f"<session {client}#{n}>"
            line = f"[{client}] session id {names[sid]}"
        line = _OWNER.sub(owner, line)
        line = _TIME.sub(lambda m: m.group(0) if m.group(2) == "0" else f"{m.group(1)}=<time>", line)
        line = _GUID.sub("_c_<guid>-", line)
        out.append(line)
    return "\n".join(out) + "\n"


def zkgo_transcript(address: str, root: str = "/zkgo", script: str = "main") -> str:
    return normalise(run_zkgo(address, root, script).stdout)
