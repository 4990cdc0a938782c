"""Point 6 of the CLI issue — progress that tells the truth: ``arc import`` shows reading,
analysing, and the write-back (embedding and indexing) as phases, so no bar stands at 100%
while work goes on; ``index build`` and ``verify`` show progress on a terminal; nothing
is drawn when stderr is not a terminal or with ``--json``."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from vault.ops import arc_import
from vault.vault import Vault
from vault_cli import core, render
from vault_cli.app import app

from .conftest import EXAMPLES

runner = CliRunner()
TASKS = sorted(str(p) for p in (EXAMPLES / "tasks").glob("*.json"))


def run(root: Path, *args: str) -> Result:
    result = runner.invoke(app, [*args, "--vault", str(root)], env={"VAULT_DIR": None})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A terminal on stderr: progress is drawn into the returned buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(core, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(
        render,
        "progress_console",
        lambda: Console(file=buffer, force_terminal=True, width=120, color_system=None),
    )
    return buffer


def test_arc_import_shows_each_phase_on_a_terminal(vault: Vault, screen: io.StringIO) -> None:
    run(vault.root, "arc", "import", *TASKS)
    drawn = screen.getvalue()
    labels = ["reading task files", "analysing tasks", "writing back: embedding and indexing"]
    positions = [drawn.find(label) for label in labels]
    assert -1 not in positions, drawn
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("args", "label"),
    [(["index", "build"], "embedding concepts"), (["verify"], "verify: ")],
)
def test_build_and_verify_show_progress_on_a_terminal(
    example_vault: Vault, screen: io.StringIO, args: list[str], label: str
) -> None:
    result = run(example_vault.root, *args)
    assert label in screen.getvalue()
    assert label not in result.stderr  # drawn on the terminal, not mixed into messages


@pytest.mark.parametrize(
    "args",
    [["arc", "import", *TASKS], ["index", "build"], ["verify"]],
    ids=["arc import", "index build", "verify"],
)
def test_nothing_is_drawn_with_json_even_on_a_terminal(
    vault: Vault, screen: io.StringIO, args: list[str]
) -> None:
    result = run(vault.root, *args, "--json")
    json.loads(result.stdout)
    assert screen.getvalue() == ""


@pytest.mark.parametrize(
    "args",
    [["arc", "import", *TASKS], ["index", "build"], ["verify"]],
    ids=["arc import", "index build", "verify"],
)
def test_nothing_is_drawn_when_not_a_terminal(vault: Vault, args: list[str]) -> None:
    result = run(vault.root, *args)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # just the summary
    assert "\x1b" not in result.output and "━" not in result.output


# --------------------------------------------------------------------------- the truth
class Recorder:
    """Stands in for rich's Progress and records what a person would have seen."""

    def __init__(self, events: list[Any]):
        self.events = events
        self.labels: list[str] = []
        self.state: dict[int, tuple[float | None, float | None]] = {}

    def add_task(self, label: str, total: int | None = None) -> int:
        self.labels.append(label)
        self.state[len(self.labels) - 1] = (0, total)
        self.events.append(("start", label))
        return len(self.labels) - 1

    def update(self, task: int, completed: int, total: int | None) -> None:
        self.state[task] = (completed, total)
        if total and completed >= total:
            self.events.append(("full", self.labels[task]))

    def active(self) -> str:
        open_ = [i for i, (done, total) in self.state.items() if not total or done < total]
        return self.labels[open_[-1]] if open_ else ""


def test_no_bar_is_full_while_its_work_goes_on(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue: the import bar reached 100% at 5 s of a 14 s run (the write-back — all the
    embedding and indexing — came after it). Now the write-back is a phase of its own."""
    events: list[Any] = []
    recorder = Recorder(events)

    @contextlib.contextmanager
    def recording(*, enabled: bool = True) -> Iterator[render.Phases]:
        ph = render.Phases(recorder)
        yield ph
        ph.finish()

    original = arc_import.write_back

    def write_back(*args: Any, **kwargs: Any) -> Any:
        events.append(("write_back begins", recorder.active()))
        out = original(*args, **kwargs)
        events.append(("write_back ends", recorder.active()))
        return out

    monkeypatch.setattr(render, "phases", recording)
    monkeypatch.setattr(arc_import, "write_back", write_back)
    run(vault.root, "arc", "import", *TASKS)
    write = "writing back: embedding and indexing"
    assert events[0] == ("start", "reading task files")
    assert events.index(("full", "reading task files")) < events.index(("start", "analysing tasks"))
    assert ("write_back begins", write) in events and ("write_back ends", write) in events
    begins = events.index(("write_back begins", write))
    assert events.index(("full", "analysing tasks")) < begins  # analysis really was done
    assert events.index(("full", write)) > events.index(("write_back ends", write))


def test_phases_helpers_for_streams_and_counts() -> None:
    """What `vault eval` and `vault retrieve --batch` will use: a bar, a count, a chain."""
    events: list[Any] = []
    recorder = Recorder(events)
    ph = render.Phases(recorder)
    tick = ph.start("known", 2)
    tick(1, 2)
    assert recorder.active() == "known"
    tick(2, 2)
    counted = ph.count("stream")
    counted(5)
    assert recorder.active() == "stream"
    chained = ph.chain("loop", then="after")
    chained(3, 3)
    assert recorder.active() == "after"
    ph.finish()
    assert recorder.active() == ""
    assert [e for e in events if e[0] == "start"] == [
        ("start", "known"),
        ("start", "stream"),
        ("start", "loop"),
        ("start", "after"),
    ]
    off = render.Phases()  # not a terminal: every helper is a no-op
    off.start("x", 1)(1, 1)
    off.count("y")(3)
    off.chain("z", then="w")(1, 1)
    off.finish()
