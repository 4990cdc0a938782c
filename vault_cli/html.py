"""``--html FILE``: grids drawn as coloured cells, because people judge grids by looking.

``vault show ID --html FILE`` draws a concept's validated grids (the input → output pairs of
its positive evidence, then its negative evidence); ``vault retrieve … --html FILE`` draws
the query (a task's demonstration pairs and test input, a repr's grid, or the concept asked
``--like``) and each hit's validated grids beside its figures (and its explanation with
``--explain``). One self-contained file: inline CSS in the ARC palette, no script, no
image, nothing fetched from the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

# The ARC palette, colours 0-9 (as the ARC-AGI viewer draws them).
PALETTE = (
    "#000000",
    "#0074D9",
    "#FF4136",
    "#2ECC40",
    "#FFDC00",
    "#AAAAAA",
    "#F012BE",
    "#FF851B",
    "#7FDBFF",
    "#870C25",
)
MAX_PAIRS = 4  # validated pairs drawn per concept (the rest are counted)

CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
    "h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}"
    ".pairs{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}"
    ".pair{display:flex;gap:.4em;align-items:center}"
    ".arrow{font-size:1.4em;color:#666}"
    "table.grid{border-collapse:collapse;border:1px solid #888}"
    "table.grid td{width:14px;height:14px;padding:0;border:1px solid #555}"
    ".meta{color:#444;font-size:.9em}.neg{border:3px solid #c00;padding:.3em}"
    + "".join(f"td.c{i}{{background:{c}}}" for i, c in enumerate(PALETTE))
)


def grid_html(grid: Sequence[Sequence[int]]) -> str:
    """A grid as a table of cells, one ``td.cN`` (colour N) per cell."""
    rows = "".join(
        "<tr>" + "".join(f'<td class="c{int(v)}"></td>' for v in row) + "</tr>" for row in grid
    )
    h, w = len(grid), len(grid[0]) if grid else 0
    return f'<table class="grid" title="{h}x{w}">{rows}</table>'


def pair_html(inp: Sequence[Sequence[int]] | None, out: Sequence[Sequence[int]] | None) -> str:
    parts = [grid_html(g) for g in (inp, out) if g is not None]
    return '<div class="pair">' + '<span class="arrow">→</span>'.join(parts) + "</div>"


def page(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>" + "".join(body) + "</body></html>\n"
    )


def write(path: Path, text: str) -> None:
    """Write the page (``core.write_output``: never half a page)."""
    from vault_cli.core import write_output

    write_output(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- what is drawn
def _grid_of(vault: Any, repr_id: str | None) -> list[list[int]] | None:
    if not repr_id:
        return None
    from vault.errors import CorruptionError

    try:
        rep = vault.objects.get_json(repr_id, check=True)
    except CorruptionError:
        raise  # (a damaged repr is an error, never drawn as if it were the stored one)
    except Exception:  # noqa: BLE001 - a repr that cannot be read is left out of a picture
        return None
    grid = rep.get("grid") if isinstance(rep, dict) else None
    return grid if isinstance(grid, list) else None


def validated(vault: Any, entry: dict[str, Any], polarity: str = "positive") -> list[str]:
    """The pairs (or grids) of a concept version's evidence of ``polarity``, drawn."""
    drawn: list[str] = []
    more = 0
    for digest in entry.get("evidence", []):
        record = vault.records(digest)
        if not isinstance(record, dict) or record.get("polarity") != polarity:
            continue
        if len(drawn) == MAX_PAIRS:
            more += 1
            continue
        pair = record.get("pair") or {}
        inp, out = _grid_of(vault, pair.get("input")), _grid_of(vault, pair.get("output"))
        if inp is None and out is None:
            inp = _grid_of(vault, record.get("repr_id"))
        if inp is not None or out is not None:
            drawn.append(pair_html(inp, out))
    if more:
        drawn.append(f'<span class="meta">and {more} more</span>')
    return drawn


def _section(heading: str, meta: str, pairs: list[str], empty: str) -> str:
    inner = "".join(pairs) if pairs else f'<span class="meta">{escape(empty)}</span>'
    return (
        f'<section><h2>{escape(heading)}</h2><p class="meta">{escape(meta)}</p>'
        f'<div class="pairs">{inner}</div></section>'
    )


def concept_page(vault: Any, entry: dict[str, Any], card: dict[str, Any]) -> str:
    from vault.retrieval import evidence_of
    from vault_cli.render import evidence_line

    ev = evidence_of(entry["positive"], entry["negative"])
    meta = (
        f"status {entry['status']}; "
        + evidence_line(ev["evidence"], ev["penalty"], ev["utility"])
        + f"; template {card['template']['template_dsl']}; keys {' '.join(entry['keys'])}"
    )
    body = [_section("validated on", meta, validated(vault, entry), "no positive evidence")]
    failed = validated(vault, entry, "negative")
    if failed:
        body.append(_section("failed on", "negative evidence", failed, ""))
    return page(f"{card['id']} {card['version']}", body)


def retrieval_page(
    vault: Any,
    result: Any,
    query: Any,
    *,
    like: str | None = None,
    explain: list[dict[str, Any]] | None = None,
) -> str:
    from vault_cli.render import evidence_line, explain_line, number

    snap = vault.snapshot()
    body = []
    if like is not None:
        concept, _, version = like.partition("@")
        _, entry = snap.entry(concept, version or None)
        body.append(_section(f"like {like}", "validated on", validated(vault, entry), "none"))
    elif query is not None:
        pairs = [pair_html(_cells(p.input), _cells(p.output)) for p in query.pairs]
        if query.repr is not None:
            pairs.append(pair_html(_cells(query.repr), None))
        body.append(
            _section(
                "the query", "demonstration pairs, then the grid asked about", pairs, "no grids"
            )
        )
    for i, h in enumerate(result.results):
        _, entry = snap.entry(h.id, h.version)
        meta = (
            f"score {number(h.score)}, key overlap {h.key_overlap}, similarity "
            f"{number(h.similarity) or '-'}; "
            + evidence_line({"positive": h.positive, "negative": h.negative}, h.penalty, h.utility)
        )
        if explain is not None:
            meta += "; " + explain_line(explain[i])
        body.append(
            _section(
                f"#{h.rank} {h.id} {h.version} ({h.status})",
                meta,
                validated(vault, entry),
                "no validated grids",
            )
        )
    mode = result.mode_used + (f" ({result.strategy})" if result.strategy else "")
    return page(f"vault retrieve: {like and f'like {like}' or 'mode ' + mode}", body)


def _cells(rep: dict[str, Any] | None) -> list[list[int]] | None:
    grid = rep.get("grid") if isinstance(rep, dict) else None
    return grid if isinstance(grid, list) else None
