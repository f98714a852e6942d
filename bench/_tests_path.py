"""Puts tests/ on sys.path, so benchmarks start servers with the tests' harness (tests/testbase)."""

import sys
from pathlib import Path

TESTS_DIR = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
