"""Dependencies point one way (docs/design.md): a lower layer never imports a higher one.

Imports are read from the sources, not from a running interpreter, so an import under
`if TYPE_CHECKING:` or inside a function counts too: either still ties the layers together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from zkfast.storage.snapshot import TimedSession
from zkfast.storage.store import StoreOwner

ROOT = Path(__file__).resolve().parent.parent

# a package (as a folder under the repository) → the packages none of its modules may import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "zkfast/storage": ("zkfast.server", "zkfast.net", "zkfast.quorum"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names; `from a import b` also names a.b, since b
    may be a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(folder: str) -> None:
    sources = sorted((ROOT / folder).rglob("*.py"))
    assert sources, f"{folder} has no modules: the table is out of date"
    wrong = sorted(f"{path.relative_to(ROOT)} imports {module}"
                   for path in sources for module in imported_modules(path)
                   for package in FORBIDDEN[folder] if _under(module, package))
    assert not wrong, "\n".join(wrong)


# a module → what it may not import: the quorum driver does no I/O of its own, its ports do
# (zkfast.quorum.peer over sockets and files)
NO_IO: dict[str, tuple[str, ...]] = {
    "zkfast/quorum/driver.py": ("asyncio", "socket", "selectors", "threading", "os", "pathlib", "time",
                                "zkfast.storage", "zkfast.net", "zkfast.quorum.transport",
                                "zkfast.quorum.peer"),
}


@pytest.mark.parametrize("source", sorted(NO_IO))
def test_the_quorum_driver_does_no_io(source: str) -> None:
    wrong = sorted(module for module in imported_modules(ROOT / source)
                   for banned in NO_IO[source] if _under(module, banned))
    assert not wrong, f"{source} imports {wrong}"


def test_the_check_sees_every_kind_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "zkfast" / "storage" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("from typing import TYPE_CHECKING\n"
                      "import zkfast.net.listener\n"
                      "from zkfast import quorum\n"
                      "from ..server import zkserver\n"
                      "if TYPE_CHECKING:\n"
                      "    from zkfast.server.zkserver import ZooKeeperServer\n"
                      "def late():\n"
                      "    from zkfast.quorum.peer import QuorumPeer\n")
    found = imported_modules(module)
    assert {"zkfast.net.listener", "zkfast.quorum", "zkfast.server.zkserver", "zkfast.server",
            "zkfast.quorum.peer"} <= found


def test_the_server_is_what_storage_expects() -> None:
    """storage/ declares what it needs of a server (StoreOwner); the server must still offer it."""
    from zkfast.server.zkserver import ZooKeeperServer

    server = ZooKeeperServer(tick_time_ms=2000, min_session_timeout_ms=4000, max_session_timeout_ms=40000)
    assert isinstance(server, StoreOwner)
    assert isinstance(server.sessions.track(1, 4000), TimedSession)
