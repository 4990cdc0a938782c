"""Rendering: rich tables and messages for people, clean JSON for scripts, progress.

Human output goes to stdout, messages and progress to stderr. ``--json`` output is one JSON
document, ``--jsonl`` and streaming commands write JSON lines (``json_lines``): no colour,
no progress. Tables (``table``) fit a terminal's width and are plain TSV when piped; their
numbers are rounded (``number``). ``NO_COLOR`` (any
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
import errno
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.errors import counted
from vault_cli import core

if TYPE_CHECKING:
    import jsonlines
    from rich.console import Console

Tick = Callable[[int, int], None]


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


# C0 and C1 control characters and DEL, but newline and tab (see ``_console_class``)
_UNPRINTABLE = {c: "\ufffd" for c in (*range(32), *range(127, 160)) if c not in (9, 10)}


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console
    from rich.segment import Segment

    class StdoutConsole(Console):
        """rich exits 1 on a closed pipe (``on_broken_pipe``); vault's rule is 141 for every
        output form, so the error goes to the one place that reports it (``core.report``).

        Text from a vault (a card's template, an id or note an import or a pull brought)
        may hold terminal control codes: rich drops a few (BEL, CR) but passes ESC, so a
        card could recolour the terminal or retitle it. Every control character of the
        text but newline and tab is drawn as U+FFFD (one cell: tables stay aligned); the
        codes rich makes for styles and cursor moves are not text and stay."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(
                seg if seg.control else Segment(seg.text.translate(_UNPRINTABLE), seg.style)
                for seg in buffer
            )

    return StdoutConsole


def stdout_console() -> Console:
    return _console_class()(
        file=sys.stdout,
        highlight=False,
        soft_wrap=True,
        color_system=None if _no_color() else "auto",
    )


def table(
    columns: Sequence[str | tuple[str, str]],
    rows: Iterable[Sequence[str]],
    *,
    title: str | None = None,
    whole: Sequence[str] = (),
) -> None:
    """A table for people. On a terminal (or with FORCE_COLOR) a rich table fitted to its
    width; piped, plain TSV: a header line, then one line per row, tab-separated, every value
    whole (a tab or newline inside one becomes a space) and a title as a ``# `` line before
    them — for ``cut``, ``sort``, ``column -t`` (``--json`` keeps full precision). A column
    given as ``(name, "right")`` is right-aligned on a terminal; the columns named in
    ``whole`` and the right-aligned ones (numbers) are never cut there (values fold in the
    others, never an ellipsis)."""
    names = [c if isinstance(c, str) else c[0] for c in columns]
    out = stdout_console()
    if not out.is_terminal:
        _tsv(names, rows, title)
        return
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table

    rows = [list(row) for row in rows]
    # no side borders and one space between columns: 80 columns go further
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    need = 0  # the narrowest the table can be: every whole value, the others' names
    for i, c in enumerate(columns):
        name, justify = (c, "left") if isinstance(c, str) else c
        if name in whole or justify == "right":
            # never cut nor folded (an id; a number: "1.0" over "87" would read as 1.0): the
            # other columns give way
            widest = max([cell_len(name), *(cell_len(row[i]) for row in rows)])
            need += widest
            t.add_column(
                name,
                justify=justify,  # type: ignore[arg-type]
                no_wrap=True,
                min_width=widest,
            )
        else:
            t.add_column(
                name,
                justify=justify,  # type: ignore[arg-type]
                overflow="fold",
                min_width=len(name),
            )
            need += cell_len(name)
    for row in rows:
        t.add_row(*row)
    if need + 2 * len(names) > out.width:  # (one space of padding each side of a column)
        # narrower than the whole values: rich would drop columns — the plain form instead
        _tsv(names, rows, title)
        return
    out.print(t, markup=False)


def _tsv(names: Sequence[str], rows: Iterable[Sequence[str]], title: str | None) -> None:
    lines = [f"# {title}"] if title else []
    lines.append("\t".join(names))
    lines += ["\t".join(_tsv_cell(cell) for cell in row) for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")


def _tsv_cell(text: str) -> str:
    """A value on one TSV line: tab, CR and newline as spaces, other control characters
    as U+FFFD (as on a terminal: see ``_console_class``)."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ").translate(_UNPRINTABLE)


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

        def tally(done: int) -> None:
            self._total = done
            bar.update(task, completed=done, total=None)

        return tally

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
    status = getattr(result, "status", [])
    said = [
        f"{len(items)} {what} ({', '.join(a if '@' in a else a[:12] for a in items[:5])}"
        f"{', ...' if len(items) > 5 else ''})"
        for items, what in (
            (result.added, "new"),
            (status, "status change" if len(status) == 1 else "status changes"),
        )
        if items
    ]
    if said:
        note(f"{result.op}: {', '.join(said)}; generation {result.generation[:12]}")
    if result.unchanged:
        note(f"{result.op}: {len(result.unchanged)} already stored, unchanged")
    if not said and not result.unchanged:
        note(f"{result.op}: nothing to write")


def build_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    else:
        note(
            f"generation {result.number} ({result.generation[:12]}): "
            f"{counted(result.concepts, 'concept')}{'' if result.changed else ', unchanged'}"
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
    ident = s["embedder"]
    rows = [
        ["embedder", f"{ident.get('name')} {ident.get('version')}"],
        ["weights", str(ident.get("weights_hash"))[:12]],
    ]
    if s["fit"]:
        fit, meta = s["fit"], s["fit"]["meta"]
        state = "in use" if fit["in_use"] else "latest fit, not in use"
        rows.append(["fit", f"{fit['weights'][:12]} ({state})"])
        if meta.get("fitted_on"):
            rows.append(["fitted on", "; ".join(str(x) for x in meta["fitted_on"])])
        size = [f"{meta[k]} {k}" for k in ("items", "tasks", "concepts") if k in meta]
        if size:
            rows.append(["fit size", ", ".join(size)])
    else:
        rows.append(["fit", "none"])
    if s["evidence"]:
        e = s["evidence"]
        rows.append(
            [
                "positive evidence",
                f"{e['now']} now, {e['at_fit']} at the fit, {e['newer']} newer ({e['share']:.0%})",
            ]
        )
    if s["problem"]:
        rows.append(["problem", s["problem"]])
    table(["what", "value"], rows)
    if s["suggestion"]:
        note(s["suggestion"])


def _with_explain(result: Any, explain: list[dict[str, Any]] | None) -> dict[str, Any]:
    doc: dict[str, Any] = result.to_json()
    if explain is not None:
        for hit, why in zip(doc["results"], explain, strict=True):
            hit["explain"] = why
    return doc


def retrieval(
    result: Any,
    as_json: bool,
    *,
    like: str | None = None,
    explain: list[dict[str, Any]] | None = None,
) -> None:
    """A ranking as a table (or one JSON document); ``like`` names the concept asked about;
    ``explain`` (``vault.explain``) adds why each hit ranks where it does."""
    if as_json:
        doc = _with_explain(result, explain)
        json_out({"like": like, **doc} if like else doc)
        return
    if result.fallback_reason:
        note(f"fell back to symbolic: {result.fallback_reason}")
    if result.index_stale:
        note("the index is stale (acknowledged writes not indexed yet): any write catches up")
    title = f"like {like}" if like else f"mode {result.mode_used}"
    right = "right"
    table(
        [
            ("#", right),
            "id",
            "version",
            ("score", right),
            ("keys", right),
            ("+/-", right),
            ("penalty", right),
            ("sim", right),
            ("utility", right),
        ],
        [
            [
                str(h.rank),
                h.id if h.status == "active" else f"{h.id} ({h.status})",
                h.version,
                number(h.score),
                str(h.key_overlap),
                signed_counts(h.positive, h.negative),
                number(h.penalty),
                number(h.similarity),
                number(h.utility),
            ]
            for h in result.results
        ],
        title=title + (f" ({result.strategy})" if result.strategy else ""),
        whole=("id", "version"),
    )
    if not result.results:
        note("no concept matches")
    if explain is not None:
        out = stdout_console()
        for h, why in zip(result.results, explain, strict=True):
            out.print(f"#{h.rank} {h.id}@{h.version}: " + explain_line(why), markup=False)


def explain_line(why: dict[str, Any]) -> str:
    """An explanation (``vault.explain``) in one line for people."""
    keys = why["shared_keys"]
    parts = [f"shares {counted(len(keys), 'key')}" + (f" ({', '.join(keys)})" if keys else "")]
    if why["similarity"] is not None:
        sim = f"similarity {number(why['similarity'])}"
        blocks = why["block_similarity"]
        if blocks:
            sim += " (" + ", ".join(f"{k} {number(v) or '-'}" for k, v in blocks.items()) + ")"
        parts.append(sim)
    ev = why["evidence"]
    parts.append(evidence_line(ev, why["penalty"], why["utility"]))
    if why["score_terms"]:
        parts.append(
            "score = " + " + ".join(f"{k} {number(v)}" for k, v in why["score_terms"].items())
        )
    parts.append(f"ahead of the next by {why['decided_by']}")
    return "; ".join(parts)


def retrieval_lines(result: Any, *, explain: list[dict[str, Any]] | None = None) -> None:
    """``--jsonl``: one JSON line per hit (as ``llm similar``); a fallback is told on stderr."""
    if result.fallback_reason:
        note(f"fell back to symbolic: {result.fallback_reason}")
    writer = json_lines()
    for hit in _with_explain(result, explain)["results"]:
        writer.write(hit)


def log(entries: list[Any], as_json: bool) -> None:
    if as_json:
        json_out([e.to_json() for e in entries])
        return
    cut = stdout_console().is_terminal  # a terminal gets a readable table; TSV every byte
    rows = []
    for e in entries:
        detail = json.dumps(e.detail, sort_keys=True)
        if cut and len(detail) >= 80:
            detail = detail[:77] + "..."
        rows.append([str(e.seq), e.time, e.op, str(len(e.records)), detail])
    table([("seq", "right"), "time", "op", ("records", "right"), "detail"], rows)


def show(entry: dict[str, Any], card: dict[str, Any], as_json: bool) -> None:
    from vault.retrieval import evidence_of  # the one evidence model (FORMAT §10)

    ev = evidence_of(entry["positive"], entry["negative"])
    info = {
        "card": card,
        "status": entry["status"],
        "keys": entry["keys"],
        "positive": entry["positive"],  # (also in "evidence", as in every hit)
        "negative": entry["negative"],
        **ev,
        "object": entry["card"],
    }
    if as_json:
        json_out(info)
        return
    out = stdout_console()
    out.print(f"[bold]{card['id']}[/bold] {card['version']}  status={entry['status']}")
    out.print(evidence_line(ev["evidence"], ev["penalty"], ev["utility"]), markup=False)
    out.print("keys: " + " ".join(entry["keys"]), markup=False)
    out.print("template: " + card["template"]["template_dsl"], markup=False)


def evidence_line(counts: dict[str, int], penalty: float, utility: float) -> str:
    """``evidence +1 -1  penalty 0.045  utility 0.955``: what a table row says, in words."""
    return (
        f"evidence {signed_counts(counts['positive'], counts['negative'])}  "
        f"penalty {number(penalty)}  utility {number(utility)}"
    )


def signed_counts(positive: int, negative: int) -> str:
    return f"+{positive} -{negative}"


def number(x: float | None, places: int = 3) -> str:
    """A number for people: ``places`` decimals (full precision stays in ``--json``)."""
    return "" if x is None else f"{x:.{places}f}"


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
    rows = [["index", index_condition(status)]]
    if status.generation is not None:
        rows.append(["generation", f"{status.number} ({status.generation[:12]})"])
    rows.append(["pending writes", f"{status.pending} acknowledged, not indexed yet"])
    rows.append(["mode default", status.mode_default])
    if status.counts:
        rows.append(["counts", ", ".join(f"{v} {k}" for k, v in sorted(status.counts.items()))])
    if status.embedder is not None:
        rows.append(["embedder", _embedder_label(status.embedder)])
    if status.embedder is None or status.drift:
        rows.append(["this tool runs", _embedder_label(status.running_embedder)])
    if status.problem:
        rows.append(["problem", status.problem])
    table(["what", "value"], rows)


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
    rows = [
        [
            "*" if g.number == number else "",
            str(g.number),
            "" if g.parent is None else str(g.parent),
            g.generation[:12],
            g.time,
            g.op,
            str(g.counts.get("concepts", "")),
            _embedder_label(g.embedder),
        ]
        for g in history
    ]
    table(
        [
            "cur",
            ("#", "right"),
            ("parent", "right"),
            "generation",
            "time",
            "op",
            ("concepts", "right"),
            "embedder",
        ],
        rows,
        whole=("generation", "time"),
    )


def _embedder_label(ident: dict[str, Any]) -> str:
    """The built-in embedder by version; a fitted one by its weights digest, shortened."""
    from vault.embedding.fitted import NAME as FITTED

    if ident.get("name") == FITTED:
        return f"fitted {str(ident.get('weights_hash'))[:12]}"
    return str(ident.get("version"))


def generation_line(g: Any) -> str:
    return f"generation {g.number} ({g.generation[:12]}, {g.time}, {g.op}, " + (
        f"{counted(g.counts.get('concepts', 0), 'concept')})"
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


GC_LEFT_SHOWN = 10  # entries gc left in place named one a line (then a count)


def gc_summary(result: Any) -> str:
    verb = "would remove" if result.dry_run else "removed"
    if not result.kept_generations:  # (gc --cache alone: generations untouched)
        return f"{verb} {counted(result.removed_cache_entries, 'cache file')}"
    return (
        f"{verb} {counted(len(result.removed_generations), 'generation')}, "
        f"{counted(result.removed_objects, 'object')} ({counted(result.removed_bytes, 'byte')}), "
        f"{counted(result.removed_cache_entries, 'cache entry', 'cache entries')}, "
        f"{counted(result.removed_temporaries, 'temporary', 'temporaries')}; "
        f"kept generations {result.kept_generations}"
    )


def gc_result(result: Any, as_json: bool) -> None:
    if as_json:
        json_out(result.to_json())
    else:
        note(gc_summary(result))
    for path in result.left[:GC_LEFT_SHOWN]:
        note(f"warning: {path}: not a file gc owns (object, temporary, cache file): left in place")
    if len(result.left) > GC_LEFT_SHOWN:
        note(f"warning: … and {len(result.left) - GC_LEFT_SHOWN} more left in place")
    if result.left:
        note("warning: `vault verify` names what does not belong in the vault; move it out")


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


def concept_list(found: Iterable[Any], as_json: bool, as_jsonl: bool) -> None:
    """``vault list``: a table, a JSON list or JSON lines (``Concept.to_json``)."""
    if as_json:
        json_out([c.to_json() for c in found])
        return
    if as_jsonl:
        for c in found:
            json_line(c.to_json())
        return
    rows = [
        [
            c.id,
            c.version,
            c.status,
            signed_counts(c.positive, c.negative),
            number(c.penalty),
            " ".join(k for k in c.keys if not k.startswith("domain:")),
        ]
        for c in found
    ]
    if not rows:
        note("no concepts match")
        return
    table(
        ["id", "version", "status", "evidence", ("penalty", "right"), "keys"],
        rows,
        whole=["id", "version", "evidence"],
    )


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
        from vault_cli.core import write_output

        data = list(lines)
        n = len(data)
        write_output(output, b"".join(data))
    if as_json and output is not None:  # (--json without -o is refused: stdout holds records)
        json_out({"records": n, "audit_seq": seq, "output": str(output)})
    else:
        note(f"export: {counted(n, 'record')}, up to audit seq {seq} (next: --since {seq})")
