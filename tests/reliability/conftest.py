"""Fixtures of the reliability suite (see ``harness.py`` for the machinery)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import STRESS, copy_vault, warm_cli
from .workloads import Seed, seed_vault


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """The pristine seeded vault (copy it before changing anything)."""
    base = tmp_path_factory.mktemp("seed")
    made = seed_vault(base / "v", base / "inputs")
    warm_cli(copy_vault(made.root, base / "warm"))  # before any fork: children start warm
    return made


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory on tmpfs (``/dev/shm``) when there is one, else ``tmp_path``:
    the sweeps copy a vault per point, and directory operations and fsync cost nothing
    there (they test process crashes and injected errors, not power loss)."""
    base = Path("/dev/shm")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(dir=base, prefix="vault-reliability-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pytest_report_header(config: Any) -> str:
    return f"reliability: {'long (VAULT_STRESS=1)' if STRESS else 'short (CI)'} variants"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record each test's outcome for RELIABILITY.md (only when the report asks)."""
    target = os.environ.get("VAULT_RELIABILITY_FIGURES")
    if not target or "reliability" not in report.nodeid:
        return
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    outcome = report.outcome
    reason = getattr(report, "wasxfail", None)
    if reason is not None:
        outcome = "xfailed" if report.outcome == "skipped" else "xpassed"
    line = {
        "outcome": {
            "nodeid": report.nodeid,
            "outcome": outcome,
            "xfail": reason,
            "duration": round(report.duration, 3),
        }
    }
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
