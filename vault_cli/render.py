"""Rendering: rich tables and messages for people, clean JSON for scripts, progress.

Human output goes to stdout, messages and progress to stderr. ``--json`` output is one JSON
document, ``--jsonl`` and streaming commands write JSON lines (``json_lines``): no colour,
no progress. Piped tables are never cut to the terminal's width. ``NO_COLOR`` (any
non-empty value) turns every escape code off, bold included. Progress is drawn only when
stderr is a terminal (``phases``), so scripts and logs see nothing of it.

Consoles are made per call, from the streams and environment of this run (so a test
runner's captured streams and ``env=`` are honoured); rich is imported on first use.

For a new command (``vault eval``, ``vault retrieve --batch``)::

    with render.phases(enabled=not json_out) as ph:
        tick = ph.start("evaluating tasks", len(tasks))   # known length: a bar
        done = ph.count("retrieving")                      # a stream: a count
    writer = render.json_lines()                           # one JSON line per result
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault_cli import core

if TYPE_CHECKING:
    import jsonlines
    from rich.console import Console

WIDE = 10_000  # piped output: whole rows, for scripts and `less -S`
Tick = Callable[[int, int], None]


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def stdout_console() -> Console:
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(
        file=sys.stdout,
        highlight=False,
        soft_wrap=True,
        width=None if tty else WIDE,
        color_system=None if _no_color() else "auto",
    )


def stderr_console() -> Console:
    from rich.console import Console

    return Console(
        file=sys.stderr,
        highlight=False,
        soft_wrap=True,
        color_system=None if _no_color() else "auto",
    )


def progress_console() -> Console:
    """Where progress is drawn (a test may swap in a recording console)."""
    return stderr_console()


def note(message: str) -> None:
    """A message for people, on stderr."""
    sys.stderr.write(f"{message}\n")


def json_out(obj: Any) -> None:
    """One JSON document on stdout (``--json``)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def json_lines() -> jsonlines.Writer:
    """A JSON-lines writer on stdout: compact, keys sorted, UTF-8, flushed per line (so a
    consumer reading line by line gets each result as soon as it is made)."""
    import jsonlines

    return jsonlines.Writer(sys.stdout, compact=True, sort_keys=True, flush=True)


def json_line(obj: Any) -> None:
    json_lines().write(obj)


# --------------------------------------------------------------------------- progress
class Phases:
    """Progress of a command in phases, one line each, on stderr: a bar with a count where
    the amount of work is known, a pulse where it is not — never a bar at 100% while work
    goes on. ``start`` ends the previous phase and returns the new one's ``tick(done, total)``.
    """

    def __init__(self, progress: Any = None):
        self._progress = progress
        self._task: Any = None
        self._total: int | None = None

    def start(self, label: str, total: int | None = None) -> Tick:
        bar = self._progress
        if bar is None:
            return lambda done, total: None
        self.finish()
        task = bar.add_task(label, total=total)
        self._task, self._total = task, total

        def tick(done: int, total: int) -> None:
            self._total = total
            bar.update(task, completed=done, total=total)

        return tick

    def step(self, label: str) -> None:
        """A phase of unknown length (e.g. one step of ``verify``)."""
        self.start(label)

    def count(self, label: str) -> Callable[[int], None]:
        """A phase over a stream of unknown length (``vault retrieve --batch -``): a count,
        no bar. Call it with the number of items done so far."""
        bar = self._progress
        if bar is None:
            return lambda done: None
        self.finish()
        task = bar.add_task(label, total=None)
        self._task, self._total = task, None

        def counted(done: int) -> None:
            self._total = done
            bar.update(task, completed=done, total=None)

        return counted

    def chain(self, label: str, *, then: str) -> Tick:
        """A counted phase followed by one of unknown length: when the count is complete the
        ``then`` phase starts (the work after the loop a library function reports on)."""
        tick = self.start(label)

        def chained(done: int, total: int) -> None:
            tick(done, total)
            if done >= total:
                self.start(then)

        return chained

    def finish(self) -> None:
        """Mark the current phase done (``start`` and the end of ``phases`` do it)."""
        if self._task is not None:
            done = self._total or 1
            self._progress.update(self._task, total=done, completed=done)
            self._task = None


@contextlib.contextmanager
def phases(*, enabled: bool = True) -> Iterator[Phases]:
    """``Phases`` drawing on stderr when it is a terminal and ``enabled`` (``not --json``);
    otherwise one that draws nothing."""
    if not enabled or not core.stderr_is_terminal():
        yield Phases()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=progress_console(), transient=True) as bar:
        ph = Phases(bar)
        yield ph
        ph.finish()


@contextlib.contextmanager
def progress(label: str, *, enabled: bool = True) -> Iterator[Tick]:
    """One phase: ``with progress("embedding concepts") as tick: work(progress=tick)``."""
    with phases(enabled=enabled) as ph:
        yield ph.start(label)


# --------------------------------------------------------------------------- results
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


def fit_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
        return
    meta = result.meta
    classes = meta.get("classes", {})
    stdout_console().print(result.weights, markup=False)
    note(
        f"fitted on {', '.join(meta.get('fitted_on', [])) or '-'}: {meta.get('items')} items, "
        f"{meta.get('tasks')} tasks, {meta.get('concepts')} concepts; classes per block "
        + ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
        + f"; {result.size} bytes"
    )
    if result.use is not None:
        embedder_use(result.use, False)
    else:
        note(f"not in use: `vault embedder use {result.weights[:12]}`")


def embedder_use(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    elif result.added:
        note(
            f"embedder: {result.added[0][:12]}, every concept re-embedded; generation "
            f"{result.number} ({result.generation[:12]})"
        )
    else:
        note(f"embedder: {result.unchanged[0][:12]} already in use, unchanged")


def embedder_status(status: Any, as_json: bool) -> None:
    if as_json:
        json_out(status.to_json())
        return
    s = status.to_json()
    out = stdout_console()
    ident = s["embedder"]
    out.print(f"embedder: {ident.get('name')} {ident.get('version')}", markup=False)
    out.print(f"weights: {ident.get('weights_hash')}", markup=False)
    if s["fit"]:
        fit = s["fit"]
        state = "in use" if fit["in_use"] else "latest fit, not in use"
        out.print(f"fit: {fit['weights'][:12]} ({state}): {json.dumps(fit['meta'])}", markup=False)
    if s["evidence"]:
        e = s["evidence"]
        out.print(
            f"positive evidence: {e['now']} now, {e['at_fit']} at the fit, {e['newer']} newer "
            f"({e['share']:.0%})",
            markup=False,
        )
    if s["problem"]:
        out.print(f"problem: {s['problem']}", markup=False)
    if s["suggestion"]:
        note(s["suggestion"])


def retrieval(result: Any, as_json: bool, *, like: str | None = None) -> None:
    """A ranking as a table (or one JSON document); ``like`` names the concept asked about."""
    if as_json:
        json_out({"like": like, **result.to_json()} if like else result.to_json())
        return
    from rich.table import Table

    if result.fallback_reason:
        note(f"fell back to symbolic: {result.fallback_reason}")
    if result.index_stale:
        note("the index is stale (acknowledged writes not indexed yet): any write catches up")
    title = f"like {like}" if like else f"mode {result.mode_used}"
    table = Table(title=title + (f" ({result.strategy})" if result.strategy else ""))
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
    stdout_console().print(table)
    if not result.results:
        note("no concept matches")


def retrieval_lines(result: Any) -> None:
    """``--jsonl``: one JSON line per hit (as ``llm similar``); a fallback is told on stderr."""
    if result.fallback_reason:
        note(f"fell back to symbolic: {result.fallback_reason}")
    writer = json_lines()
    for hit in result.results:
        writer.write(hit.to_json())


def log(entries: list[Any], as_json: bool) -> None:
    if as_json:
        json_out([e.to_json() for e in entries])
        return
    from rich.table import Table

    cut = sys.stdout.isatty()  # a terminal gets a readable table; a pipe gets every byte
    table = Table()
    for col in ("seq", "time", "op", "records", "detail"):
        table.add_column(col)
    for e in entries:
        detail = json.dumps(e.detail, sort_keys=True)
        if cut and len(detail) >= 80:
            detail = detail[:77] + "..."
        table.add_row(str(e.seq), e.time, e.op, str(len(e.records)), detail)
    stdout_console().print(table)


def show(entry: dict[str, Any], card: dict[str, Any], as_json: bool) -> None:
    from vault.retrieval import failure_rate  # the one evidence model (FORMAT §10)

    penalty = float(failure_rate(entry["positive"], entry["negative"]))
    info = {
        "card": card,
        "status": entry["status"],
        "keys": entry["keys"],
        "positive": entry["positive"],
        "negative": entry["negative"],
        "penalty": penalty,
        "utility": 1.0 - penalty,
        "object": entry["card"],
    }
    if as_json:
        json_out(info)
        return
    out = stdout_console()
    out.print(
        f"[bold]{card['id']}[/bold] {card['version']}  status={entry['status']}  "
        f"evidence +{entry['positive']} -{entry['negative']}"
    )
    out.print("keys: " + " ".join(entry["keys"]), markup=False)
    out.print("template: " + card["template"]["template_dsl"], markup=False)


def index_condition(status: Any) -> str:
    """``current``, ``stale``, ``drift`` or ``unreadable`` (all but the first exit 1)."""
    if status.problem and status.generation is None:
        return "unreadable"
    if status.stale:
        return "stale"
    if status.drift:
        return "drift"
    return "current"


def index_status(status: Any, as_json: bool) -> None:
    if as_json:
        json_out(status.to_json())
        return
    s = status.to_json()
    out = stdout_console()
    out.print(f"index: {index_condition(status)}", markup=False)
    for key in (
        "generation",
        "number",
        "stale",
        "pending",
        "drift",
        "mode_default",
        "counts",
        "embedder",
        "running_embedder",
        "problem",
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
    from rich.table import Table

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
            _embedder_label(g.embedder),
        )
    stdout_console().print(table)


def _embedder_label(ident: dict[str, Any]) -> str:
    """The built-in embedder by version; a fitted one by its weights digest, shortened."""
    from vault.embedding.fitted import NAME as FITTED

    if ident.get("name") == FITTED:
        return f"fitted {str(ident.get('weights_hash'))[:12]}"
    return str(ident.get("version"))


def generation_line(g: Any) -> str:
    return f"generation {g.number} ({g.generation[:12]}, {g.time}, {g.op}, " + (
        f"{g.counts.get('concepts', 0)} concepts)"
    )


def mode_result(mode: str, as_json: bool) -> None:
    if as_json:
        json_out({"mode_default": mode})
    else:
        note(f"retrieval default mode: {mode}")


def rollback_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    elif not result.changed:
        note(f"already current: {generation_line(result.current)}")
    else:
        note(f"current: {generation_line(result.current)}")


def verify_report(report: Any, as_json: bool) -> None:
    if as_json:
        json_out(report.to_json())
        return
    checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
    for p in report.problems:
        note(f"{p.severity}: {p.kind}: {p.path}: {p.detail}")
    note(("ok: " if report.ok else "FAILED: ") + checked)


def gc_summary(result: Any) -> str:
    verb = "would remove" if result.dry_run else "removed"
    if not result.kept_generations:  # (gc --cache alone: generations untouched)
        return f"{verb} {result.removed_cache_entries} cache file(s)"
    return (
        f"{verb} {len(result.removed_generations)} generation(s), {result.removed_objects} "
        f"object(s) ({result.removed_bytes} bytes), {result.removed_cache_entries} cache "
        f"entries, {result.removed_temporaries} temporaries; "
        f"kept generations {result.kept_generations}"
    )


def gc_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    else:
        note(gc_summary(result))


def upgrade_result(root: Path, old: int, new: int, as_json: bool) -> None:
    if as_json:
        json_out({"vault": str(root), "from": old, "to": new, "changed": old != new})
    elif old == new:
        note(f"{root}: already format {new}")
    else:
        note(f"{root}: upgraded from format {old} to {new}")


def eval_result(result: Any, written: dict[str, Any] | None, as_json: bool) -> None:
    if as_json:
        data = result.to_json()
        if written is not None:
            data["report"] = written
        json_out(data)
        return
    from vault.eval.report import interpretation, learning_table, table

    sys.stdout.write(table(result) + "\n")
    if result.learning:
        note("without the written-back evidence, and the gain:")
        sys.stdout.write(learning_table(result) + "\n")
    note(interpretation(result))
    if written is not None:
        note(f"wrote {', '.join(written['files'])} to {written['out']}")
        if not written["plot"]:
            note("no recall_at_k.png: install the plot extra (pip install 'concept-vault[plot]')")


def _rounded(x: float) -> str:
    """A number for people (full precision stays in --json)."""
    return f"{x:.3f}"


def concept_list(found: Iterable[Any], as_json: bool, as_jsonl: bool) -> None:
    """``vault list``: a table, a JSON list or JSON lines (``Concept.to_json``)."""
    if as_json:
        json_out([c.to_json() for c in found])
        return
    if as_jsonl:
        for c in found:
            json_line(c.to_json())
        return
    from rich.table import Table

    table = Table()
    for col in ("id", "version", "status", "+", "-", "penalty", "keys"):
        table.add_column(col, overflow="fold")
    n = 0
    for c in found:
        n += 1
        table.add_row(
            c.id,
            c.version,
            c.status,
            str(c.positive),
            str(c.negative),
            _rounded(c.penalty),
            " ".join(k for k in c.keys if not k.startswith("domain:")),
        )
    if n:
        stdout_console().print(table)
    else:
        note("no concepts match")


def export_result(lines: Iterable[bytes], output: Path | None, seq: int, as_json: bool) -> None:
    """``vault export``: the lines to ``output`` (atomically) or stdout; a summary on stderr."""
    n = 0
    if output is None:
        out = sys.stdout.buffer
        for line in lines:
            out.write(line)
            n += 1
        out.flush()
    else:
        from vault.store.fs import atomic_write

        data = list(lines)
        n = len(data)
        atomic_write(output, b"".join(data))
    summary = {"records": n, "audit_seq": seq, "output": None if output is None else str(output)}
    if as_json and output is not None:
        json_out(summary)
    elif as_json:  # stdout holds the records
        sys.stderr.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        note(f"export: {n} record(s), up to audit seq {seq} (next: --since {seq})")
