"""Peak memory of `vault retrieve --batch` over many maximum-size tasks (issue 18, item 5).

Each request is an ARC task at the input limits' size (vault/limits.py): 100 train pairs
of 30x30 grids and a 30x30 test input, every task different (so no cache answers for
another). The requests are generated as they are sent, through a pipe to a real
`vault retrieve --batch - --workers W` process; its peak resident memory is the figure
(the kernel's high-water mark `VmHWM`, which the process writes down as it exits; not
`ru_maxrss` from `wait4`, which carries the peak of the process it was forked from — a
large bench.py — into the child's) — for W > 1 also each
worker's (`VmHWM` polled every 0.1 s) and their sum (an upper bound: forked workers share
pages with the parent).
The peak is also recorded after the 1st, 10th, 100th, ... answer, to show it stays flat.

Content: `arc` (default) — a background, 4-12 filled rectangles and a few stray cells per
input, the output a rotation, flip or recolouring of it (ARC-like, a few dozen objects a
grid); `noise` — every cell a uniform random colour (the worst case: ~650 single-cell
objects a grid, ~10 s a task).

    python benchmarks/batch_memory.py [--tasks 1000] [--workers 1] [--content arc|noise]
        [--tests 1] [--json]

Target (issue 18): peak <= 500 MB over 1,000 tasks. `make bench` runs it (bench.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from machine import OWN_PEAK, own_peak_kb

ROOT = Path(__file__).resolve().parents[1]
SIDE, PAIRS = 30, 100


def _rect_grid(rng: random.Random) -> list[list[int]]:
    bg = rng.choice([0, 0, 0, rng.randrange(10)])
    g = [[bg] * SIDE for _ in range(SIDE)]
    for _ in range(rng.randint(4, 12)):
        colour = rng.randrange(10)
        top, left = rng.randrange(SIDE), rng.randrange(SIDE)
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        for r in range(top, min(SIDE, top + h)):
            for c in range(left, min(SIDE, left + w)):
                g[r][c] = colour
    for _ in range(rng.randint(0, 20)):
        g[rng.randrange(SIDE)][rng.randrange(SIDE)] = rng.randrange(10)
    return g


def _transform(rng: random.Random, g: list[list[int]]) -> list[list[int]]:
    kind = rng.randrange(4)
    if kind == 0:
        return [list(row) for row in zip(*g[::-1], strict=True)]  # rotate 90
    if kind == 1:
        return [row[::-1] for row in g]  # flip
    if kind == 2:
        return g[::-1]
    a, b = rng.sample(range(10), 2)  # swap two colours
    return [[b if x == a else a if x == b else x for x in row] for row in g]


def _noise_grid(rng: random.Random) -> list[list[int]]:
    return [[rng.randrange(10) for _ in range(SIDE)] for _ in range(SIDE)]


def task(rng: random.Random, content: str, tests: int) -> dict[str, Any]:
    """One maximum-size task (100 train pairs of 30x30, ``tests`` test inputs)."""
    train = []
    for _ in range(PAIRS):
        if content == "noise":
            train.append({"input": _noise_grid(rng), "output": _noise_grid(rng)})
        else:
            g = _rect_grid(rng)
            train.append({"input": g, "output": _transform(rng, g)})
    make = _noise_grid if content == "noise" else _rect_grid
    return {"train": train, "test": [{"input": make(rng)} for _ in range(tests)]}


def _vault(root: Path) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import example_cards, example_evidence

    from vault.vault import Vault, fixed_clock

    v = Vault.init(root, clock=fixed_clock(1_700_000_000))
    v.add(example_cards())
    v.add_evidence(example_evidence())


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out + [g for c in out for g in _children(c)]


def measure(tasks: int, workers: int, content: str, tests: int, seed: int = 0) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vault-batch-memory-"))
    _vault(work / "v")
    peak_file = work / "peak"
    cli = OWN_PEAK + "sys.argv[0] = 'vault'\nfrom vault_cli.app import main\nmain()\n"
    cmd = [sys.executable, "-c", cli, str(peak_file), "--vault", str(work / "v"), "retrieve"]
    cmd += ["--batch", "-", "--workers", str(workers)]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    child = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    peaks: dict[int, int] = {}
    state: dict[str, Any] = {"answers": 0, "errors": 0, "fallbacks": 0, "at": {}}
    digest = hashlib.sha256()

    def poll() -> None:
        for pid in [child.pid, *_children(child.pid)]:
            kb = _hwm_kb(pid)
            if kb is not None:
                peaks[pid] = max(peaks.get(pid, 0), kb)

    def send() -> None:
        rng = random.Random(seed)
        assert child.stdin is not None
        try:
            for i in range(tasks):
                request = {"task": task(rng, content, tests), "id": i}
                line = json.dumps(request, separators=(",", ":")) + "\n"
                child.stdin.write(line.encode())
            child.stdin.close()
        except BrokenPipeError:
            pass

    def receive() -> None:
        assert child.stdout is not None
        for raw in child.stdout:
            digest.update(raw)
            answer = json.loads(raw)
            state["answers"] += 1
            state["errors"] += "error" in answer
            state["fallbacks"] += answer.get("fallback_reason") is not None
            n = state["answers"]
            if n == 1 or str(n).strip("0") == "1":  # 1, 10, 100, 1000, ...
                poll()
                state["at"][n] = round(peaks.get(child.pid, 0) / 1024, 1)

    start = time.monotonic()
    threads = [threading.Thread(target=send), threading.Thread(target=receive)]
    for t in threads:
        t.start()
    while True:  # the child's own peak (VmHWM) polled, and as it left it at exit
        pid, status, _ = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            peaks[child.pid] = max(peaks.get(child.pid, 0), own_peak_kb(peak_file) or 0)
            break
        poll()
        time.sleep(0.1)
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    err = child.stderr.read().decode("utf-8", "replace")
    parent_mb = peaks.get(child.pid, 0) / 1024
    worker_mb = sorted((kb / 1024 for pid, kb in peaks.items() if pid != child.pid), reverse=True)
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return {
        "tasks": tasks,
        "answers": state["answers"],
        "workers": workers,
        "content": content,
        "tests": tests,
        "seconds": round(seconds, 1),
        "peak_mb": round(parent_mb, 1),
        "worker_peaks_mb": [round(x, 1) for x in worker_mb],
        "sum_mb": round(parent_mb + sum(worker_mb), 1),
        "peak_after_mb": state["at"],
        "errors": state["errors"],
        "fallbacks": state["fallbacks"],
        "exit": child.returncode,
        "stderr": err.strip()[-500:],
        "output_sha256": digest.hexdigest(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--content", choices=["arc", "noise"], default="arc")
    ap.add_argument("--tests", type=int, default=1, help="test inputs per task (limit: 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    out = measure(args.tasks, args.workers, args.content, args.tests, args.seed)
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{out['answers']}/{out['tasks']} max-size tasks ({out['content']}, {out['tests']} test "
        f"input(s)), --workers {out['workers']}: peak {out['peak_mb']:.0f} MB"
        + (
            f" (+ workers {out['worker_peaks_mb']}, sum {out['sum_mb']:.0f} MB)"
            if out["worker_peaks_mb"]
            else ""
        )
        + f", {out['seconds']:.0f} s; peak after answers {out['peak_after_mb']}; "
        f"errors {out['errors']}, fallbacks {out['fallbacks']}, exit {out['exit']}"
    )
    if out["exit"] != 0:
        print(out["stderr"], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
