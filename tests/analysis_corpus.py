"""A fixed corpus of tasks and the digests of what analysing them gives: reprs, pair facts,
keys and vectors (built-in and shipped embedders). tests/test_analysis_bytes.py compares
today's code with ``tests/fixtures/analysis_digests.json``, which was written by this
module from the code *before* task analysis was restructured for speed (issue 23):

    python tests/analysis_corpus.py --write

The corpus: tasks of every synthetic family (``vault.eval.synthetic``, seed 0) and a few
hand-made large tasks (30x30, many objects, 10 pairs) drawn here with ``random.Random``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "analysis_digests.json"
SYNTHETIC_SEED = 0
TASKS_PER_FAMILY = 12
SYNTHETIC_PAIRS = 4


def _noise(
    rng: random.Random, h: int, w: int, density: float, colours: list[int]
) -> list[list[int]]:
    return [
        [rng.choice(colours) if rng.random() < density else 0 for _ in range(w)] for _ in range(h)
    ]


def _boxes(rng: random.Random, h: int, w: int, n: int) -> list[list[int]]:
    """Rectangles, hollow rectangles (nested ones too) and dots: many objects, enclosures."""
    g = [[0] * w for _ in range(h)]
    for _ in range(n):
        bh, bw = rng.randint(1, 7), rng.randint(1, 7)
        top, left = rng.randrange(h - bh + 1), rng.randrange(w - bw + 1)
        colour = rng.randint(1, 9)
        hollow = rng.random() < 0.5
        for r in range(top, top + bh):
            for c in range(left, left + bw):
                edge = r in (top, top + bh - 1) or c in (left, left + bw - 1)
                if edge or not hollow:
                    g[r][c] = colour
    return g


def _transform(rng: random.Random, kind: str, g: list[list[int]]) -> list[list[int]]:
    if kind == "flip":
        return [row[::-1] for row in g]
    if kind == "rotate":
        return [list(r) for r in zip(*g[::-1], strict=True)]
    if kind == "recolor":
        m = list(range(10))
        rng.shuffle(m)
        return [[m[x] for x in row] for row in g]
    if kind == "fill":
        return [
            [5 if x == 0 and (r + c) % 7 == 0 else x for c, x in enumerate(row)]
            for r, row in enumerate(g)
        ]
    if kind == "erase":
        return [[0 if x == 3 else x for x in row] for row in g]
    if kind == "crop":
        return [row[3:17] for row in g[2:14]]
    if kind == "tile":
        small = [row[:10] for row in g[:10]]
        return [row * 3 for _ in range(3) for row in small]
    if kind == "scale":
        small = [row[:15] for row in g[:15]]
        return [[x for x in row for _ in range(2)] for row in small for _ in range(2)]
    if kind == "mirror":  # symmetrise: the left half mirrored
        return [row[: len(row) // 2] + row[: len(row) // 2][::-1] for row in g]
    return [row[:] for row in g]


BIG_KINDS = ("flip", "rotate", "recolor", "fill", "erase", "crop", "tile", "scale", "mirror")


def big_tasks() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i, kind in enumerate(BIG_KINDS):
        rng = random.Random(f"analysis-corpus:{i}:{kind}")
        pairs = []
        for p in range(11):
            if (i + p) % 3 == 0:
                g = _noise(
                    rng,
                    30,
                    30,
                    rng.choice([0.3, 0.6, 0.95]),
                    rng.sample(range(1, 10), rng.randint(2, 9)),
                )
            else:
                g = _boxes(rng, 30, 30, rng.randint(20, 60))
            pairs.append({"input": g, "output": _transform(rng, kind, g)})
        out.append((f"big-{kind}", {"train": pairs[:10], "test": [{"input": pairs[10]["input"]}]}))
    # small and odd shapes: 1x1, one row, one column, uniform, a checkerboard
    odd = [
        [[7]],
        [[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]],
        [[c] for c in (3, 3, 0, 3, 1, 1)],
        [[4] * 30 for _ in range(30)],
        [[(r + c) % 2 for c in range(30)] for r in range(30)],
        [[(r * c) % 10 for c in range(29)] for r in range(30)],
    ]
    pairs = [{"input": a, "output": b} for a, b in zip(odd, odd[1:] + odd[:1], strict=True)]
    out.append(("odd", {"train": pairs, "test": [{"input": odd[4]}]}))
    return out


def corpus() -> list[tuple[str, dict[str, Any]]]:
    from vault.eval.synthetic import generate

    tasks = generate(SYNTHETIC_SEED, TASKS_PER_FAMILY, SYNTHETIC_PAIRS)
    return [(t.task_id, t.task) for t in tasks] + big_tasks()


def synthetic_fingerprint() -> str:
    from vault.eval.synthetic import fingerprint, generate

    return fingerprint(generate(SYNTHETIC_SEED, TASKS_PER_FAMILY, SYNTHETIC_PAIRS))


def _h(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=sorted)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _facts(f: Any) -> dict[str, Any]:
    return {
        k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in dataclasses.asdict(f).items()
    }


def digests(task: dict[str, Any]) -> dict[str, str]:
    """What one task's analysis gives, as short digests."""
    from vault.embedding import builtin, shipped
    from vault.embedding.select import fitted_embedder
    from vault.embedding.vectors import query_vector
    from vault.grid.pairs import analyze_pair
    from vault.records.query import task_query

    q = task_query(task)
    reprs = [[p.input, p.output] for p in q.pairs] + [q.repr]
    facts = [_facts(analyze_pair(p.input, p.output)) for p in q.pairs]
    out = {"reprs": _h(reprs), "facts": _h(facts), "keys": _h(q.all_keys())}
    for name, emb in (
        ("builtin", builtin.EMBEDDER),
        ("shipped", fitted_embedder(shipped.weights())),
    ):
        items = [emb.repr_vector(p.input) for p in q.pairs] + [emb.repr_vector(q.repr)]  # type: ignore[arg-type]
        items += [
            emb.pair_vector(p.input, p.output, f) for p, f in zip(q.pairs, q.facts(), strict=True)
        ]
        out[f"{name}_items"] = _h(items)
        out[f"{name}_query"] = _h(query_vector(emb, q, None))
    return out


def compute() -> dict[str, Any]:
    return {
        "synthetic": {
            "seed": SYNTHETIC_SEED,
            "tasks_per_family": TASKS_PER_FAMILY,
            "pairs": SYNTHETIC_PAIRS,
            "fingerprint": synthetic_fingerprint(),
        },
        "tasks": {name: digests(task) for name, task in corpus()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    data = compute()
    if args.write:
        tasks = data.pop("tasks")
        lines = [json.dumps(n) + ": " + json.dumps(d, sort_keys=True) for n, d in tasks.items()]
        head = json.dumps(data, sort_keys=True)[:-1]
        FIXTURE.write_text(head + ', "tasks": {\n' + ",\n".join(lines) + "\n}}\n")
        print(f"wrote {FIXTURE}: {len(tasks)} tasks")
    else:
        json.dump(data, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
