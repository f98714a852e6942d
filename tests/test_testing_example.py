"""The documented example projects, run as a new user would run them: README's ("Testing with zkfast")
and docs/testing.md's, their files written to a temporary directory, then `pytest` there with the
zkfast installed here (the plugin found through its `pytest11` entry point), once as the environment
has it and once with no `java` on PATH.

The files are the documents' own code blocks whose first line names a path (`# tests/...py`), so the
documented examples cannot drift from ones that work. README's example is one file of docs/testing.md's
project, word for word (checked here), so one run of that project runs both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "testing.md"
README = ROOT / "README.md"
README_SECTION = "## Testing with zkfast"
PROJECT_FILE = re.compile(r"```python\n# (?P<path>[\w/.-]+\.py)\n(?P<body>.*?)```", re.S)
RUN_TIMEOUT_S = 120
# the example's tests, as pytest names them: each must pass
EXPECTED = {"test_lock", "test_a_lock_whose_holder_lost_its_session_is_free", "test_data_survives_a_leader_crash"}


def project_files(text: str) -> dict[str, str]:
    return {m["path"]: f"# {m['path']}\n{m['body']}" for m in PROJECT_FILE.finditer(text)}


def example_files() -> dict[str, str]:
    """docs/testing.md's example project."""
    return project_files(DOC.read_text())


def readme_example_files() -> dict[str, str]:
    """README's example project: the files in its section "Testing with zkfast"."""
    text = README.read_text()
    assert README_SECTION in text, f"README.md has no section {README_SECTION!r}"
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    return project_files(section)


def write_project(root: Path) -> None:
    files = example_files()
    for rel, body in readme_example_files().items():
        assert files.get(rel) == body, f"README's {rel} is not docs/testing.md's: the run would not test it"
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def user_environment(path: str) -> dict[str, str]:
    """This environment as a user's shell would have it: nothing of this suite's pytest set-up."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_") and k not in ("PYTHONPATH", "COV_CORE_SOURCE")}
    env["PATH"] = path
    return env


def run_pytest(project: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=project,
                          env=user_environment(path), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def passed_tests(output: str) -> set[str]:
    return set(re.findall(r"::(\w+) PASSED", output))


def test_the_documented_projects_have_their_files() -> None:
    assert set(example_files()) == {"tests/conftest.py", "tests/test_lock.py", "tests/test_faults.py"}
    readme = readme_example_files()
    assert set(readme) == {"tests/test_lock.py"}
    assert "def test_lock(zk_client):" in readme["tests/test_lock.py"]
    # README's example is run as part of docs/testing.md's project: the very same file
    assert readme["tests/test_lock.py"] == example_files()["tests/test_lock.py"]


def without_java(path: str) -> str:
    """PATH without any directory that holds a `java`."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d) / "java").exists())


@pytest.mark.parametrize("java", ["as-is", "absent"])
def test_the_example_project_passes(tmp_path: Path, java: str) -> None:
    path = os.environ.get("PATH", "")
    if java == "absent":
        path = without_java(path)
        assert shutil.which("java", path=path) is None
    write_project(tmp_path)
    proc = run_pytest(tmp_path, path)
    output = proc.stdout + proc.stderr
    if "fixture 'zk_" in output:
        pytest.fail("the plugin's fixtures are missing: is zkfast installed with its pytest11 entry point "
                    f"(pip install -e .)?\n{output[-4000:]}")
    assert proc.returncode == 0, output[-6000:]
    assert passed_tests(output) == EXPECTED, output[-6000:]
