"""Item 6 — bit flips: single-byte changes across every kind of file (every kind of object,
the view files, ``index/CURRENT``, ``generations.jsonl``, the audit log, ``refs/mode.json``,
``config.toml``, ``format.json``, cache entries of reprs and of pairs). Random changes
(``runs(1, 40)`` per kind) plus targeted ones that keep the file well formed — the hard
ones: a digit of a time, a count, an op name, a renamed key, a digit of a cached vector.

Per kind of file, each criterion is its own test: verify detects every change (exit 1; a
view file, derived data: exit 0 with a warning) and names the file, verify changes
nothing, no command prints a traceback, retrieval is never silently wrong (a clean
error, the same answer, or a stated fallback), and neither is it after ``vault index
build``. ``config.toml`` is the user's to edit: changes that leave a valid config are
counted apart and not required to be detected."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from vault.vault import Vault, fixed_clock

from . import bitflips as bf
from .harness import STRESS, copy_vault, figure, runs
from .workloads import EPOCH, Seed

KINDS = [
    "card", "evidence", "repr", "status event", "orphan object", "manifest", "state list",
    "concept shard", "repr shard", "table rows list", "table matrix list", "table rows chunk",
    "table matrix chunk", "embedder json", "view embedder.json", "view concept_vectors.jsonl",
    "view ann.index.sha256", "index CURRENT", "generations log", "audit log",
    "refs mode.json", "config.toml", "format.json", "cache repr entry", "cache pair entry",
]  # fmt: skip

Results = dict[str, list[bf.Outcome]]


@pytest.fixture(scope="module")
def flips(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Results:
    base = tmp_path_factory.mktemp("flips")
    root = copy_vault(seed.root, base / "v", link_objects=False)
    Vault.open(root, clock=fixed_clock(EPOCH)).set_mode("symbolic")  # refs/mode.json
    kinds = bf.classify(root)
    b = bf.baseline(root, seed.query_task, seed.inputs / "next-card.json")
    chosen = bf.targeted_flips(root, kinds, seed.query_task)
    chosen += bf.random_flips(root, kinds, runs(1, 40), seed=2024)
    out: Results = defaultdict(list)
    work = Path("/dev/shm") if Path("/dev/shm").is_dir() else base
    scratch = Path(tempfile.mkdtemp(dir=work, prefix="vault-flips-"))
    try:
        for o in bf.run_all(b, chosen, scratch):
            out[o.flip.kind].append(o)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for kind in sorted(out):
        outs = out[kind]
        real = [o for o in outs if not o.config_valid]
        figure(
            "bitflips",
            kind=kind,
            flips=len(outs),
            valid_config=len(outs) - len(real),
            detected=sum(o.detected for o in real),
            named=sum(o.named for o in real),
            verify_changed=sum(not o.verify_unchanged for o in outs),
            tracebacks=sum(bool(o.tracebacks) for o in outs),
            silent=sum(bool(o.silent) for o in outs),
            silent_after_build=sum(bool(o.silent_after_build) for o in outs),
        )
    return dict(out)


def _xfail(failing: dict[str, str]) -> list[Any]:
    return [
        pytest.param(
            k, marks=[pytest.mark.xfail(strict=True, reason=failing[k])] if k in failing else []
        )
        for k in KINDS
    ]


def _show(outs: list[bf.Outcome], attr: str) -> list[str]:
    return [f"{o.flip.label()}: {getattr(o, attr) if attr else o.verify_problems}" for o in outs][
        :4
    ]


def test_every_kind_of_file_is_flipped(flips: Results) -> None:
    assert set(flips) == set(KINDS), set(KINDS) ^ set(flips)
    total = sum(len(v) for v in flips.values())
    figure("bitflips_total", flips=total)
    if STRESS:
        assert total >= 1000


UNDETECTED: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(UNDETECTED))
def test_verify_detects_every_flip(flips: Results, kind: str) -> None:
    missed = [o for o in flips[kind] if not o.detected and not o.config_valid]
    assert not missed, _show(missed, "")


UNNAMED: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(UNNAMED))
def test_verify_names_the_flipped_file(flips: Results, kind: str) -> None:
    unnamed = [o for o in flips[kind] if o.detected and not o.named]
    assert not unnamed, _show(unnamed, "verify_problems")


@pytest.mark.parametrize("kind", KINDS)
def test_verify_changes_nothing(flips: Results, kind: str) -> None:
    changed = [o for o in flips[kind] if not o.verify_unchanged]
    assert not changed, _show(changed, "")


TRACEBACKS: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(TRACEBACKS))
def test_no_command_prints_a_traceback(flips: Results, kind: str) -> None:
    crashed = [o for o in flips[kind] if o.tracebacks]
    assert not crashed, _show(crashed, "tracebacks")


SILENT: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(SILENT))
def test_retrieval_is_never_silently_wrong(flips: Results, kind: str) -> None:
    silent = [o for o in flips[kind] if o.silent]
    assert not silent, _show(silent, "silent")


SILENT_AFTER_BUILD: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(SILENT_AFTER_BUILD))
def test_index_build_never_bakes_in_corruption(flips: Results, kind: str) -> None:
    silent = [o for o in flips[kind] if o.silent_after_build]
    assert not silent, _show(silent, "silent_after_build")
