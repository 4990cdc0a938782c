from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from vault.internal import ENV as INTERNAL_ERRORS
from vault.vault import Vault, fixed_clock

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    """A fresh empty vault in this test's own directory, with a frozen clock (and the
    shipped fitted embedder every new vault starts with)."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000))
    return v


@pytest.fixture
def builtin_vault(tmp_path: Path) -> Vault:
    """The same with the built-in (hand-set) embedder, as a vault made before issue 22."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000), embedder="builtin")
    return v


def card(
    cid: str, keys: list[str], version: str = "1.0.0", dsl: str = "(x grid)", **extra: Any
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "schema_version": 1,
        "id": cid,
        "version": version,
        "domain": "grid_2d",
        "signature": {"keys": keys},
        "template": {"template_dsl": dsl},
    }
    c.update(extra)
    return c


def example_cards() -> list[tuple[Any, str]]:
    lines = (EXAMPLES / "cards.jsonl").read_text().splitlines()
    return [(json.loads(line), f"cards.jsonl:{i}") for i, line in enumerate(lines, 1)]


def example_evidence() -> list[tuple[Any, str]]:
    lines = (EXAMPLES / "evidence.jsonl").read_text().splitlines()
    return [(json.loads(line), f"evidence.jsonl:{i}") for i, line in enumerate(lines, 1)]


@pytest.fixture
def example_vault(vault: Vault) -> Vault:
    vault.add(example_cards())
    vault.add_evidence(example_evidence())
    return vault


@pytest.fixture
def example_builtin_vault(builtin_vault: Vault) -> Vault:
    """The example cards and evidence in a built-in-embedder vault (the drift tests change
    the running built-in embedder's identity)."""
    builtin_vault.add(example_cards())
    builtin_vault.add_evidence(example_evidence())
    return builtin_vault


# --------------------------------------------------------------------------- crashes fail
# An unexpected exception is reported to a user as one line (``error: internal error: …``,
# exit 1) or, in retrieval, as a fallback to symbolic: both look like a designed refusal to
# a test that checks the exit code or the mode used. So every test runs with
# ``VAULT_INTERNAL_ERRORS`` naming a log that ``vault.internal.note`` appends each one to —
# from this process, a forked child or a subprocess alike — and a test (setup, call or
# teardown) that added a line fails, whatever it asserted. A test that provokes an internal
# error on purpose says so with ``@pytest.mark.internal_error`` and must then provoke one.


_LOG: list[Path] = []  # this session's log (one file; set by pytest_configure)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "internal_error: the test provokes an internal error on purpose (it must record one; "
        "the crash check of tests/conftest.py is otherwise off for it)",
    )
    log = Path(tempfile.mkdtemp(prefix="vault-internal-errors-")) / "log.jsonl"
    log.touch()
    _LOG[:] = [log]
    os.environ[INTERNAL_ERRORS] = str(log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/reliability first, whatever order the command line named the tests in: its
    checks fork this process, and a fork does not survive a runtime some other tests start
    in it for good (obstore's tokio runtime, once tests/test_remote.py has pushed: the
    forked child of ``powerloss_check.pull_base`` then waits forever). The default order
    has them first already."""
    here = Path(__file__).resolve().parent / "reliability"
    items.sort(key=lambda item: not Path(str(item.path)).resolve().is_relative_to(here))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _LOG:
        shutil.rmtree(_LOG[0].parent, ignore_errors=True)


def internal_errors_since(offset: int) -> list[dict[str, Any]]:
    """The internal errors recorded after byte ``offset`` of this session's log."""
    with open(_LOG[0], "rb") as f:
        f.seek(offset)
        data = f.read()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def _log_end() -> int:
    os.environ[INTERNAL_ERRORS] = str(_LOG[0])  # whatever an earlier test did to it
    return os.path.getsize(_LOG[0])


def _checked(item: pytest.Item, when: str) -> Generator[None, Any, Any]:
    start = _log_end()
    failed = True
    try:
        result = yield
        failed = False
    finally:
        found = internal_errors_since(start)
        planned = item.get_closest_marker("internal_error") is not None
        if found:
            text = "\n".join(f"[{e['where']}] {e['error']}\n{e['traceback']}" for e in found)
            item.add_report_section(when, "internal errors", text)
    if not failed:
        if found and not planned:
            where = "; ".join(f"[{e['where']}] {e['error']}" for e in found[:3])
            pytest.fail(
                f"{len(found)} internal error(s) during {when} (a crash, even when reported "
                f"as one line or a fallback): {where} (tracebacks in 'internal errors')",
                pytrace=False,
            )
        if planned and when == "call" and not found:
            pytest.fail("marked internal_error, but no internal error was recorded", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _checked(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _checked(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _checked(item, "teardown"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many cases tests/test_reference.py compared with the reference ranking."""
    from .reference.tally import TALLY

    if TALLY.total():
        terminalreporter.write_line(TALLY.summary())
