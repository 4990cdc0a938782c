"""Rendering: rich tables and messages for people, clean JSON for scripts.

Human output goes to stdout, messages and progress to stderr; ``NO_COLOR`` is honoured
by rich. ``--json`` output is plain ``json.dumps`` (no colour, no progress).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Piped output is not cut to 80 columns: scripts and `less -S` get whole tables.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 10_000)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def note(message: str) -> None:
    err.print(message, markup=False)


def json_out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def json_line(obj: Any) -> None:
    sys.stdout.write(
        json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    )


@contextlib.contextmanager
def progress(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only when stderr is a terminal and enabled)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def init_result(root: Path, created: bool, as_json: bool) -> None:
    if as_json:
        json_out({"vault": str(root), "created": created})
    else:
        note(f"{'created' if created else 'already a vault:'} {root}")


def write_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
        return
    if result.added:
        shown = ", ".join(a if "@" in a else a[:12] for a in result.added[:5])
        note(
            f"{result.op}: {len(result.added)} new ({shown}"
            f"{', ...' if len(result.added) > 5 else ''}); generation {result.generation[:12]}"
        )
    if result.unchanged:
        note(f"{result.op}: {len(result.unchanged)} already stored, unchanged")


def build_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    else:
        note(
            f"generation {result.number} ({result.generation[:12]}): {result.concepts} concepts"
            f"{'' if result.changed else ', unchanged'}"
        )


def retrieval(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
        return
    if result.fallback_reason:
        note(f"fell back to symbolic: {result.fallback_reason}")
    table = Table(
        title=f"mode {result.mode_used}" + (f" ({result.strategy})" if result.strategy else "")
    )
    width = max(
        (len(h.id) + (0 if h.status == "active" else len(h.status) + 3) for h in result.results),
        default=2,
    )
    for col in ("#", "id", "version", "score", "keys", "penalty", "sim", "utility"):
        if col == "id":
            table.add_column(col, no_wrap=True, min_width=width)
        else:
            table.add_column(col, justify="left" if col == "version" else "right")
    for h in result.results:
        sim = "" if h.similarity is None else f"{h.similarity:.4f}"
        name = h.id if h.status == "active" else f"{h.id} ({h.status})"
        table.add_row(
            str(h.rank),
            name,
            h.version,
            f"{h.score:.4f}",
            str(h.key_overlap),
            str(h.penalty),
            sim,
            f"{h.utility:.3f}",
        )
    out.print(table)
    if not result.results:
        note("no concept matches")


def log(entries: list[Any], as_json: bool) -> None:
    if as_json:
        json_out([e.to_json() for e in entries])
        return
    table = Table()
    for col in ("seq", "time", "op", "records", "detail"):
        table.add_column(col)
    for e in entries:
        detail = json.dumps(e.detail, sort_keys=True)
        table.add_row(
            str(e.seq),
            e.time,
            e.op,
            str(len(e.records)),
            detail if len(detail) < 80 else detail[:77] + "...",
        )
    out.print(table)


def show(entry: dict[str, Any], card: dict[str, Any], as_json: bool) -> None:
    info = {
        "card": card,
        "status": entry["status"],
        "keys": entry["keys"],
        "positive": entry["positive"],
        "negative": entry["negative"],
        "penalty": entry["negative"],
        "object": entry["card"],
    }
    if as_json:
        json_out(info)
        return
    out.print(
        f"[bold]{card['id']}[/bold] {card['version']}  status={entry['status']}  "
        f"evidence +{entry['positive']} -{entry['negative']}"
    )
    out.print("keys: " + " ".join(entry["keys"]), markup=False)
    out.print("template: " + card["template"]["template_dsl"], markup=False)


def index_status(status: Any, as_json: bool) -> None:
    if as_json:
        json_out(status.to_json())
        return
    s = status.to_json()
    for key in (
        "generation",
        "number",
        "stale",
        "drift",
        "mode_default",
        "counts",
        "embedder",
        "running_embedder",
    ):
        out.print(f"{key}: {json.dumps(s.get(key))}", markup=False)


def generations(history: list[Any], current: str | None, number: int | None, as_json: bool) -> None:
    if as_json:
        json_out(
            {
                "current": current,
                "current_number": number,
                "generations": [g.to_json() for g in history],
            }
        )
        return
    table = Table()
    for col in ("", "number", "parent", "generation", "time", "op", "concepts", "embedder"):
        table.add_column(col)
    for g in history:
        mark = "*" if g.number == number else ""
        table.add_row(
            mark,
            str(g.number),
            "" if g.parent is None else str(g.parent),
            g.generation[:12],
            g.time,
            g.op,
            str(g.counts.get("concepts", "")),
            f"{g.embedder.get('version')}",
        )
    out.print(table)


def mode_result(mode: str, as_json: bool) -> None:
    if as_json:
        json_out({"mode_default": mode})
    else:
        note(f"retrieval default mode: {mode}")


def rollback_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    else:
        g = result.current
        note(f"current generation: {g.number} ({g.generation[:12]}, {g.time})")


@contextlib.contextmanager
def status(label: str, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr naming the current step (terminals only)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda step: None
        return
    with err.status(label) as live:
        yield lambda step: live.update(f"{label}: {step}")


def verify_report(report: Any, as_json: bool) -> None:
    if as_json:
        json_out(report.to_json())
        return
    checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
    for p in report.problems:
        note(f"{p.severity}: {p.kind}: {p.path}: {p.detail}")
    note(("ok: " if report.ok else "FAILED: ") + checked)


def gc_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
        return
    verb = "would remove" if result.dry_run else "removed"
    note(
        f"{verb} {len(result.removed_generations)} generation(s), {result.removed_objects} "
        f"object(s) ({result.removed_bytes} bytes), {result.removed_cache_entries} cache entries; "
        f"kept generations {result.kept_generations}"
    )


def upgrade_result(root: Path, old: int, new: int, as_json: bool) -> None:
    if as_json:
        json_out({"vault": str(root), "from": old, "to": new, "changed": old != new})
    elif old == new:
        note(f"{root}: already format {new}")
    else:
        note(f"{root}: upgraded from format {old} to {new}")
