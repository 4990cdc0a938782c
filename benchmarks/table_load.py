"""Loading a generation's table in a fresh process, two vault trees interleaved.

What every query of a one-shot process pays before it ranks: open the current generation
(``Vault.snapshot``), its table (read, hash, check, join: columns, refs, the tie rank,
key postings) and its vector matrix. Each run is a new process; the runs of the two trees
alternate (``--old-src``/``--old-vault`` against this tree and ``--vault``), so load on a
shared machine hits both alike. Medians, ms.

    python benchmarks/table_load.py --vault /tmp/v3 --old-src /tmp/main-src \\
        --old-vault /tmp/v2 [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNIPPET = """
import json, sys, time
import numpy
from vault.vault import Vault
v = Vault.open(sys.argv[1], readonly=True)
t0 = time.perf_counter()
snap = v.snapshot()
table = snap.table
table.col("tail"), table.posting("transform:rotate_90")
t1 = time.perf_counter()
table.matrix
t2 = time.perf_counter()
print(json.dumps({"table_ms": (t1 - t0) * 1e3, "matrix_ms": (t2 - t1) * 1e3, "n": table.n}))
"""


def run(src: Path | None, vault: Path) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET, str(vault)],
        env=env,
        capture_output=True,
        check=True,
        text=True,
        cwd=str(src or HERE.parent),
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vault", type=Path, required=True)
    ap.add_argument("--old-src", type=Path)
    ap.add_argument("--old-vault", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    trees = {"new": (None, args.vault)}
    if args.old_src and args.old_vault:
        trees["old"] = (args.old_src, args.old_vault)
    for src, vault in trees.values():
        run(src, vault)  # (the page cache and bytecode, not timed)
    got: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, (src, vault) in trees.items():
            got[name].append(run(src, vault))
    out = {}
    for name, rows in got.items():
        out[name] = {
            "n": rows[0]["n"],
            "table_ms": round(statistics.median(r["table_ms"] for r in rows), 1),
            "matrix_ms": round(statistics.median(r["matrix_ms"] for r in rows), 1),
            "total_ms": round(statistics.median(r["table_ms"] + r["matrix_ms"] for r in rows), 1),
            "table_ms_each": [round(r["table_ms"], 1) for r in rows],
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
