"""Dependencies point one way: the Cython layer (ext/*.pyx, zkfast/*.pxd) imports nothing of the server,
the network, the quorum or storage, and PipelineCore reaches the server only through the hooks it declares.

The sources are read as text (Cython is not Python, so `ast` cannot parse them); comments and docstrings
are dropped first, so prose that names a module does not count.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from zkfast._pipeline import PipelineCore

from zkfast.server.commit import ImmediateCommit
from zkfast.server.zkserver import ZooKeeperServer

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("ext/*.pyx"), *ROOT.glob("zkfast/*.pxd")])
FORBIDDEN = ("zkfast.server", "zkfast.net", "zkfast.quorum", "zkfast.storage")

_DOCSTRING = re.compile(r'"""(?:.|\n)*?"""|\'\'\'(?:.|\n)*?\'\'\'')
_COMMENT = re.compile(r"#[^\n]*")
_FROM = re.compile(r"^\s*from\s+([\w.]+)\s+c?import\s+(\([^)]*\)|[^\n]*(?:\\\n[^\n]*)*)", re.M)
_IMPORT = re.compile(r"^\s*c?import\s+([^\n]*)", re.M)
_DYNAMIC = re.compile(r"(?:import_module|__import__)\(\s*[\"']([\w.]+)[\"']")


def _code(path: Path) -> str:
    # docstrings first: a '#' inside one is not a comment
    return _COMMENT.sub("", _DOCSTRING.sub('""', path.read_text()))


def imported_modules(path: Path) -> set[str]:
    """Every module a Cython source imports or cimports, by its full dotted name."""
    code = _code(path)
    found: set[str] = set()
    for module, names in _FROM.findall(code):
        found.add(module)
        # `from zkfast import server` names zkfast.server just as well
        for name in re.split(r"[\s,()\\]+", names):
            if name and name != "as" and name.isidentifier():
                found.add(f"{module}.{name}")
    for names in _IMPORT.findall(code):
        for item in names.split(","):
            words = item.split()
            if words:
                found.add(words[0])
    found.update(_DYNAMIC.findall(code))
    return found


def _forbidden(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in FORBIDDEN)


def test_sources_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"pipeline.pyx", "fastpath.pyx", "jute.pyx", "datatree.pyx", "_jute.pxd"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cython_layer_imports_no_upper_layer(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _forbidden(m))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: ext/ must depend on nothing above it"


def test_the_import_scan_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.pyx"
    sample.write_text('"""from zkfast.net import listener (prose)"""\n'
                      "# import zkfast.quorum (a comment)\n"
                      "from zkfast.server import reads\n"
                      "from zkfast import (limits,\n    storage)\n"
                      "    from zkfast.server.codes cimport Code\n"
                      "import os, zkfast.quorum.peer as peer\n"
                      "mod = importlib.import_module('zkfast.net.admin')\n")
    found = imported_modules(sample)
    assert {"zkfast.server.reads", "zkfast.storage", "zkfast.server.codes", "zkfast.quorum.peer",
            "zkfast.net.admin"} <= {m for m in found if _forbidden(m)}
    assert "zkfast.net.listener" not in found and "zkfast.quorum" not in found  # prose and comments


# -- PipelineCore's interface


def _class_body(source: str, name: str) -> str:
    start = re.search(rf"^cdef class {name}\b[^\n]*\n", source, re.M)
    assert start is not None, name
    end = re.search(r"^\S", source[start.end():], re.M)
    return source[start.end():start.end() + end.start()] if end else source[start.end():]


def _declared(body: str) -> set[str]:
    methods = re.findall(r"^    (?:def|cpdef|cdef)\s+(?:[\w*]+\s+)*?(\w+)\s*\(", body, re.M)
    attributes = re.findall(r"^    cdef\s+(?:public\s+|readonly\s+)?[\w*]+\s+(\w+)\s*(?:#[^\n]*)?$", body, re.M)
    return set(methods) | set(attributes)


def hooks() -> list[str]:
    """PipelineCore's methods that only raise NotImplementedError: what a server must provide."""
    body = _class_body(_code(ROOT / "ext" / "pipeline.pyx"), "PipelineCore")
    return re.findall(r"^    def (\w+)\([^)]*\):\s*\n(?:\s*\"\"\s*\n)?\s*raise NotImplementedError\b", body, re.M)


@pytest.mark.parametrize("cls", ["PipelineCore", "Prep"])
def test_the_core_calls_only_what_it_declares(cls: str) -> None:
    body = _class_body(_code(ROOT / "ext" / "pipeline.pyx"), cls)
    called = set(re.findall(r"\bself\.(\w+)\(", body))
    undeclared = sorted(called - _declared(body))
    assert not undeclared, f"{cls} calls {undeclared} on self without declaring them (add a hook)"


def test_hooks_are_declared_and_the_server_provides_each() -> None:
    names = hooks()
    assert {"run_read", "handle_auth", "handle_sasl", "pause", "resume_paused", "close_local_session",
            "finish_session_init"} <= set(names)
    core = PipelineCore(ImmediateCommit())
    for name in names:
        with pytest.raises(NotImplementedError):
            getattr(core, name)(*[None] * _arity(name))
        assert getattr(ZooKeeperServer, name) is not getattr(PipelineCore, name), f"{name} not provided"


def _arity(name: str) -> int:
    body = _class_body(_code(ROOT / "ext" / "pipeline.pyx"), "PipelineCore")
    params = re.search(rf"^    def {name}\(self,?([^)]*)\)", body, re.M)
    assert params is not None
    return len([p for p in params.group(1).split(",") if p.strip()])
