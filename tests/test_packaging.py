"""What the installed package may contain: no test harness, no planted bug, no environment switch.

The server's sources (zkfast/**/*.py, zkfast/*.pxd, ext/*.pyx) must not mention the planted bugs of
the tests (tests/fault/planted_server.py, tests/quorum/planted.py) nor the old in-package harness, and
may read only the environment variables an operator is told about (OPERATOR_VARIABLES). pyproject's
package selection must leave tests/ out. Cheap on purpose: no wheel is built here (README's Tests
section has the `pip wheel` check).
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import setuptools
from fault.planted_server import PLANTED_WRITERS
from quorum.planted import BUGS as ZAB_BUGS

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

# every environment variable the server reads, each one an operator's
OPERATOR_VARIABLES = frozenset({
    # Apache's zkEnv.sh / zkServer.sh, read as those scripts read them
    "ZOOCFGDIR", "ZOOPIDFILE", "ZOO_LOG_DIR", "ZOO_LOG_FILE", "ZOO_LOG4J_PROP",
    "ZOO_DATADIR_AUTOCREATE_DISABLE", "SERVER_JVMFLAGS", "JVMFLAGS",
    # zkfast's own (README, `zkfast --help`)
    "ZKFAST_LOG_LEVEL",
    # zkfast.testing's kind="apache": an Apache release directory, as kazoo's harness reads it (docs/testing.md)
    "ZOOKEEPER_PATH",
    # the platform's: where per-user files go, and envi's java.io.tmpdir
    "HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TMPDIR",
})
# the names the process environment travels under once taken from os.environ
ENV_NAMES = frozenset({"environ", "environb", "env"})
FORBIDDEN_WORDS = ("PLANT", "_testbase", *sorted(PLANTED_WRITERS), *sorted(ZAB_BUGS))


def package_sources() -> list[Path]:
    return sorted([*(ROOT / "zkfast").rglob("*.py"), *(ROOT / "zkfast").glob("*.pxd"), *(ROOT / "ext").glob("*.pyx")])


# -- environment reads in Python sources


def _is_env(node: ast.expr) -> bool:
    """os.environ, environ, env, self.environ, inv.environ ..."""
    return (isinstance(node, ast.Name) and node.id in ENV_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr in ENV_NAMES)


def _is_getenv(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "getenv") or (
        isinstance(node, ast.Attribute) and node.attr == "getenv")


def _string_values(tree: ast.Module) -> dict[str, list[str]]:
    """What a name used as a variable's name can hold: module constants (LEVEL_ENV = "...") and the
    loop variables of `for var in ("A", "B")`."""
    values: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = [node.value.value]
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple | ast.List)
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)):
            values.setdefault(node.target.id, []).extend(e.value for e in node.iter.elts)  # type: ignore[attr-defined]
    return values


def _variable_names(key: ast.expr | None, values: dict[str, list[str]]) -> list[str] | None:
    """The variable(s) a lookup key names; None if the source does not say."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return [key.value]
    if isinstance(key, ast.Name):
        return values.get(key.id)
    return None


def _lookup_key(node: ast.AST) -> tuple[bool, ast.expr | None]:
    """(is an environment lookup, its key) for env.get(KEY), env[KEY], getenv(KEY)."""
    if isinstance(node, ast.Call):
        func = node.func
        key = node.args[0] if node.args else None
        if _is_getenv(func):
            return True, key
        if isinstance(func, ast.Attribute) and func.attr == "get" and _is_env(func.value):
            return True, key
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_env(node.value):
        return True, node.slice
    return False, None


def _whole_environ_uses(tree: ast.Module) -> Iterator[int]:
    """Lines where os.environ is used other than looked up by key or handed to a name of ENV_NAMES:
    reads there could not be told apart."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if _lookup_key(node)[0]:
            target = node.func.value if isinstance(node, ast.Call) else node.value  # type: ignore[attr-defined]
            allowed.add(id(target))
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in ENV_NAMES for t in node.targets):
            allowed.update(id(n) for n in ast.walk(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb") and id(node) not in allowed \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            yield node.lineno


def environment_reads(source: str) -> Iterator[tuple[int, str | None]]:
    """(line, variable) of every environment variable the Python source reads; None: cannot be told."""
    tree = ast.parse(source)
    values = _string_values(tree)
    for node in ast.walk(tree):
        is_lookup, key = _lookup_key(node)
        if is_lookup:
            for name in _variable_names(key, values) or [None]:
                yield node.lineno, name  # type: ignore[attr-defined]
    for line in _whole_environ_uses(tree):
        yield line, None


def _disallowed_reads(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    if path.suffix != ".py":
        # Cython sources take no environment at all (getenv from libc included)
        text = path.read_text()
        return [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                for m in re.finditer(r"\b(environ\w*|getenv)\b", text)]
    return [f"{rel}:{line}: {name or 'a variable the source does not name'}"
            for line, name in environment_reads(path.read_text()) if name not in OPERATOR_VARIABLES]


# -- pyproject's package selection


def selected_packages() -> list[tuple[str, Path]]:
    """(package, directory) of what `pip wheel .` packs, by pyproject's [tool.setuptools] rules."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = cfg.get("packages", {"find": {}})
    if isinstance(packages, list):
        return [(p, ROOT / cfg.get("package-dir", {}).get(p, p.replace(".", "/"))) for p in packages]
    find = packages["find"]
    finder = setuptools.find_namespace_packages if find.get("namespaces", True) else setuptools.find_packages
    found = []
    for where in find.get("where", ["."]):
        base = ROOT / where
        names = finder(where=str(base), include=find.get("include", ["*"]), exclude=find.get("exclude", []))
        found += [(name, base / name.replace(".", "/")) for name in names]
    return found


# -----------------------------------------------------------------------------------------------


def test_the_sources_are_scanned() -> None:
    sources = {p.relative_to(ROOT).as_posix() for p in package_sources()}
    assert {"zkfast/storage/txnlog.py", "zkfast/quorum/zab.py", "zkfast/_jute.pxd", "ext/pipeline.pyx"} <= sources


@pytest.mark.parametrize("path", package_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_test_switch_nor_harness_in_the_package(path: Path) -> None:
    text = path.read_text()
    found = [w for w in FORBIDDEN_WORDS if w.lower() in text.lower()]
    assert not found, f"{path.relative_to(ROOT)} mentions {found}: test code belongs in tests/"
    bad = _disallowed_reads(path)
    assert not bad, ("environment variables read outside OPERATOR_VARIABLES (a test switch belongs in "
                     "tests/; an operator variable needs documenting, then adding there):\n" + "\n".join(bad))


def test_every_allowed_variable_is_still_read() -> None:
    """The allow-list stays the list of what the server reads, not a blanket."""
    read = {name for p in package_sources() if p.suffix == ".py" for _, name in environment_reads(p.read_text())}
    assert read == OPERATOR_VARIABLES, (f"read, not allowed: {sorted(read - OPERATOR_VARIABLES)}; "
                                        f"allowed, never read: {sorted(OPERATOR_VARIABLES - read)}")


@pytest.mark.parametrize(("source", "expected"), [
    ('import os\nX = os.environ.get("ZKFAST_PLANT_BUG", "")\n', [(2, "ZKFAST_PLANT_BUG")]),
    ('import os\nX = os.getenv("A")\n', [(2, "A")]),
    ('def f(environ):\n    return environ["B"]\n', [(2, "B")]),
    ('V = "C"\ndef f(self):\n    return self.environ.get(V)\n', [(3, "C")]),
    ('def f(env):\n    for v in ("D", "E"):\n        env.get(v)\n', [(3, "D"), (3, "E")]),
    ('def f(env, k):\n    return env.get(k)\n', [(2, None)]),
    ('import os\ne = os.environ\n', [(2, None)]),
    ('import os\nenv = os.environ if x is None else x\nenv.get("F")\n', [(3, "F")]),
    ('import os\nsubprocess.run(a, env=dict(os.environ))\n', [(2, None)]),
    ('d = {}\nd.get("G")\nos.path.join("a")\n', []),
])
def test_the_environment_scan_sees_reads(source: str, expected: list[tuple[int, str | None]]) -> None:
    assert sorted(environment_reads(source), key=str) == sorted(expected, key=str)


def test_pyproject_packs_zkfast_and_nothing_of_tests() -> None:
    selected = selected_packages()
    names = [name for name, _ in selected]
    assert "zkfast" in names and "zkfast.storage" in names, names
    in_tests = [name for name, d in selected if d.resolve().is_relative_to(TESTS) or "testbase" in name]
    assert not in_tests, f"the wheel would ship test code: {in_tests}"
    assert all(name == "zkfast" or name.startswith("zkfast.") for name in names), names
