"""One-card `vault add` into a vault against `vault index build`: time ratio and new bytes.

What issue 23 asks of a write-back, measured through the CLI, in fresh processes:

* `vault add CARD` of one new card (a generated vault's card, without evidence),
  ``--runs`` times, each a new card: wall time of the process, and the
  bytes it left on disk (every file under the vault: objects, logs, index, view — sizes
  summed before and after; the view is rewritten, not retained, so it counts only by what
  it grows);
* `vault index build` (nothing changed: the same generation), ``--builds`` times;
* the first `vault index build` of a copy of the vault made without the embedding cache
  (``--cold-build``): what a vault whose cache is gone pays (FORMAT §8.4).

The vault is copied first (the original is left as it is). Medians; the ratio is
median(add) / median(build) of the same run.

    python benchmarks/writeback_bytes.py --vault /tmp/bench-1e5 [--runs 5] [--builds 3]
        [--cold 9] [--cold-build] [--bin /path/to/another/vault]

Make the vault with `python benchmarks/gen.py --concepts 100000 --vault /tmp/bench-1e5`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402
from machine import against_numpy, compile_bytecode  # noqa: E402

VAULT_BIN = Path(sys.executable).parent / "vault"  # (--bin: another tree's, to compare)


def disk_bytes(root: Path) -> int:
    """Bytes of every regular file under ``root`` (apparent sizes; hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def cli(root: Path, *args: str) -> float:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
    t = time.perf_counter()
    subprocess.run(
        [str(VAULT_BIN), "--vault", str(root), *args], check=True, capture_output=True, env=env
    )
    return time.perf_counter() - t


def one_card(k: int, workdir: Path) -> Path:
    """A card file: one new concept, as `vault add` reads it."""
    cards, _evidence, _reprs = next(gen.generate(1, seed=7000 + k, start=9_000_000 + k))
    card = dict(cards[0][0])
    path = workdir / f"card{k}.json"
    path.write_text(json.dumps(card))
    return path


def cold(root: Path, work: Path, runs: int) -> dict[str, float]:
    """A fresh `vault retrieve --repr G --json` process against `python -c "import numpy"`,
    interleaved (medians, ms): what a one-query process pays to load the generation."""
    grid = work / "query.json"
    grid.write_text(json.dumps([[1, 0, 2, 0], [0, 3, 0, 0], [4, 4, 0, 1]]))
    query = [str(VAULT_BIN), "--vault", str(root), "retrieve", "--repr", str(grid), "--json"]
    t_cli, t_np = against_numpy(query, runs)
    return {
        "cold_retrieve_ms": statistics.median(t_cli) * 1000,
        "import_numpy_ms": statistics.median(t_np) * 1000,
        "cold_over_numpy_ms": (statistics.median(t_cli) - statistics.median(t_np)) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vault", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--builds", type=int, default=3)
    ap.add_argument(
        "--cold-build",
        action="store_true",
        help="also time the first build of a copy without embeddings/cache",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--bin", type=Path, default=None, help="the vault executable to time")
    ap.add_argument(
        "--cold", type=int, default=0, help="also N cold `vault retrieve --json` against numpy"
    )
    args = ap.parse_args()
    if args.bin is not None:
        global VAULT_BIN
        VAULT_BIN = args.bin
    # bytecode compiled, as an install leaves it (as bench.py does: PYTHONDONTWRITEBYTECODE
    # would otherwise make every timed process compile vault anew)
    compile_bytecode()
    work = Path(tempfile.mkdtemp(prefix="wb-", dir=args.workdir))
    try:
        root = work / "v"
        shutil.copytree(args.vault, root, symlinks=True)
        first = cli(root, "index", "build")  # the copy's first build (view, page cache)
        adds, grown = [], []
        for k in range(args.runs):
            card = one_card(k, work)
            before = disk_bytes(root)
            adds.append(cli(root, "add", str(card)))
            grown.append(disk_bytes(root) - before)
        builds = [cli(root, "index", "build") for _ in range(args.builds)]
        out = {
            "add_s": statistics.median(adds),
            "build_s": statistics.median(builds),
            "ratio": statistics.median(adds) / statistics.median(builds),
            "new_bytes": statistics.median(grown),
            "first_build_s": first,
            "adds_s": [round(a, 3) for a in adds],
            "builds_s": [round(b, 2) for b in builds],
            "new_bytes_each": grown,
        }
        if args.cold:
            out.update(cold(root, work, args.cold))
        if args.cold_build:
            shutil.rmtree(root / "embeddings" / "cache", ignore_errors=True)
            out["build_without_cache_s"] = cli(root, "index", "build")
            out["build_after_s"] = cli(root, "index", "build")
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
