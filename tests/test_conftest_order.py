"""tests/conftest.py runs tests/reliability first whatever order the command line names tests
in (its checks fork the pytest process; tests/test_remote.py starts a runtime that a fork
does not survive). Checked on the collection order of a separate pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_reliability_tests_are_collected_before_the_others_named_first() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            "tests/test_remote.py",
            "tests/reliability/test_powerloss.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    files = [line.split("::")[0] for line in ids]
    assert "tests/test_remote.py" in files and "tests/reliability/test_powerloss.py" in files
    first_remote = files.index("tests/test_remote.py")
    assert all(f.startswith("tests/reliability/") for f in files[:first_remote])
    assert all(f == "tests/test_remote.py" for f in files[first_remote:])
