"""The solver-loop API, batch requests, and the ranking's exactness at scale (packed keys,
ties) — small N here; speed lives in `make bench`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vault.errors import UsageError
from vault.grid.reprs import grid_to_repr
from vault.records.query import task_query
from vault.retrieval import _Ranker
from vault.vault import Vault

from .conftest import EXAMPLES, card

ROTATE = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())


def test_retriever_serves_many_queries_from_one_snapshot(example_vault: Vault) -> None:
    v = example_vault
    with v.retriever() as r:
        first = r.retrieve(ROTATE, mode="hybrid", k=5)
        gen = r.generation
        assert first.results[0].id == "rotate-90" and first.generation == gen
        v.add([(card("zz-new", ["transform:rotate_90"]), "new")])  # a write-back meanwhile
        again = r.retrieve(ROTATE, mode="hybrid", k=5)
        assert again.to_json() == first.to_json()  # the open snapshot does not move
        assert r.refresh() is True and r.generation != gen
        assert r.refresh() is False
        assert r.retrieve(ROTATE).generation == r.generation
    with pytest.raises(UsageError, match="closed"):
        r.retrieve(ROTATE)


def test_refresh_every_n_calls(example_vault: Vault) -> None:
    v = example_vault
    r = v.retriever(refresh_every=2)
    gen = r.generation
    r.retrieve(ROTATE)
    v.add([(card("zz-new", ["transform:rotate_90"]), "new")])
    assert r.retrieve(ROTATE).generation == gen  # second call: still the old snapshot
    assert r.retrieve(ROTATE).generation != gen  # third call: refreshed first
    with pytest.raises(UsageError):
        v.retriever(refresh_every=0)


def test_retriever_accepts_what_a_solver_holds(example_vault: Vault) -> None:
    r = example_vault.retriever()
    grid = ROTATE["test"][0]["input"]
    as_task = r.retrieve(ROTATE, k=3)
    assert r.retrieve(task_query(ROTATE), k=3).to_json() == as_task.to_json()
    assert r.retrieve(grid, k=3).to_json() == r.retrieve(grid_to_repr(grid), k=3).to_json()
    assert r.retrieve({"schema_version": 1, "grid": grid}, k=3).results


def test_drift_is_a_fallback_reason_not_a_failure(
    example_builtin_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault.embedding import builtin

    r = example_builtin_vault.retriever()
    monkeypatch.setattr(builtin, "WEIGHTS_HASH", "0" * 64)
    result = r.retrieve(ROTATE, mode="hybrid")
    assert result.mode_used == "symbolic" and "embedder drift" in (result.fallback_reason or "")


def test_batch_equals_single_and_reports_bad_lines(example_vault: Vault) -> None:
    r = example_vault.retriever()
    grid = ROTATE["test"][0]["input"]
    requests = [
        (1, {"task": ROTATE, "k": 3, "id": "t1"}),
        (2, {"repr": grid, "mode": "symbolic"}),
        (3, {"task": ROTATE, "k": 0}),
        (4, {"nope": 1}),
        (5, ["not", "an", "object"]),
        (6, {"query": {"schema_version": 1, "grid": grid}, "mode": "soft", "k": 2}),
        (7, {"task": ROTATE, "mode": "bogus"}),
    ]
    out = list(r.batch(requests))
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6, 7]
    single = r.retrieve(ROTATE, k=3).to_json()
    assert {k: v for k, v in out[0].items() if k not in ("line", "id")} == single
    assert out[0]["id"] == "t1"
    assert out[1]["mode_used"] == "symbolic"
    assert out[5]["results"] == r.retrieve(grid, mode="soft", k=2).to_json()["results"]
    for bad in (out[2], out[3], out[4], out[6]):
        assert set(bad) - {"id"} == {"line", "error"} and bad["error"]


def _cache_files(v: Vault) -> tuple[set[str], set[str]]:
    root = v.embeddings_dir / "cache"
    singles = {str(p.relative_to(root)) for p in root.glob("??/*.json")}
    packs = (
        {p.name for p in (root / "packs").glob("*.jsonl")} if (root / "packs").is_dir() else set()
    )
    return singles, packs


def test_a_batch_caches_its_new_query_vectors_as_one_pack(example_vault: Vault) -> None:
    """A batch of new grids writes one pack at the end (not a file per request); a later
    single query of one of them meets the same vector (no nondeterminism detected)."""
    v = example_vault
    grids = [[[(r + c + i) % 3 for c in range(4)] for r in range(3 + i % 3)] for i in range(6)]
    singles, packs = _cache_files(v)
    out = list(v.retriever().batch([(i + 1, {"repr": g, "k": 3}) for i, g in enumerate(grids)]))
    assert all("error" not in o and o["mode_used"] == "hybrid" for o in out)
    singles_after, packs_after = _cache_files(v)
    assert singles_after == singles and len(packs_after - packs) == 1
    (new,) = packs_after - packs
    lines = (v.embeddings_dir / "cache" / "packs" / new).read_text().splitlines()
    assert len(lines) == len({json.dumps(g) for g in grids})
    fresh = Vault.open(v.root).retriever()  # another process' view: packs are not memo
    for o, g in zip(out, grids, strict=True):
        again = fresh.retrieve(g, k=3).to_json()
        assert again["fallback_reason"] is None
        assert again["results"] == o["results"]


def _task(i: int) -> dict:
    """A small task no test asked before (two pairs: input -> input turned, and a test)."""
    grids = [
        [[(r * 3 + c + i + j) % 4 for c in range(3 + j)] for r in range(2 + i % 3)]
        for j in range(3)
    ]
    turn = [list(row) for row in zip(*grids[0][::-1], strict=True)]
    return {
        "train": [{"input": grids[0], "output": turn}, {"input": grids[1], "output": grids[1]}],
        "test": [{"input": grids[2]}],
    }


def test_a_solver_loop_writes_its_queries_cache_entries_as_packs(example_vault: Vault) -> None:
    """A retriever collects the cache entries of the items it is asked about (grids and
    pairs) and writes them as one pack when it closes — not one file per item — and another
    when it refreshes; each entry is the item's vector as a single query computes it
    (verify recomputes every entry from its source: no problem), and a later single query
    of the same task in another process meets them without nondeterminism."""
    v = example_vault
    singles, packs = _cache_files(v)
    tasks = [_task(i) for i in range(5)]
    r = v.retriever()
    asked = [r.retrieve(t, mode="hybrid", k=3).to_json() for t in tasks[:3]]
    assert _cache_files(v) == (singles, packs)  # nothing written yet
    r.refresh()  # the same generation, but a refresh writes what was collected
    singles_1, packs_1 = _cache_files(v)
    assert singles_1 == singles and len(packs_1 - packs) == 1
    asked += [r.retrieve(t, mode="hybrid", k=3).to_json() for t in tasks[3:]]
    r.close()
    singles_2, packs_2 = _cache_files(v)
    assert singles_2 == singles and len(packs_2 - packs_1) == 1
    root = v.embeddings_dir / "cache" / "packs"
    keys = [
        json.loads(line)["key"]
        for name in packs_2 - packs
        for line in (root / name).read_text().splitlines()
    ]
    # per task: two pairs and the test input (a pair whose output is its input included)
    assert len(keys) == len(set(keys)) == 3 * len(tasks)
    report = v.verify().to_json()
    assert report["ok"], report["problems"]
    for t, first in zip(tasks, asked, strict=True):
        fresh = Vault.open(v.root)  # another process asking once: the same ranking
        again = fresh.retrieve(t, fresh.config().with_overrides(k=3))
        assert again.fallback_reason is None and again.to_json()["results"] == first["results"]


def test_a_retriever_never_closed_writes_its_pack_at_exit(
    example_vault: Vault, tmp_path: Path
) -> None:
    """A solver that never closes its retriever still leaves its entries, as one pack, when
    the process exits; one whose vault was removed meanwhile leaves nothing behind."""
    v = example_vault
    _, packs = _cache_files(v)
    task = tmp_path / "task.json"
    task.write_text(json.dumps(_task(7)))
    code = (
        "import json, shutil, sys\n"
        "from vault.vault import Vault\n"
        "r = Vault.open(sys.argv[1]).retriever()\n"
        "r.retrieve(json.loads(open(sys.argv[2]).read()))\n"
        "if len(sys.argv) > 3: shutil.rmtree(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(v.root), str(task)], check=True)
    _, after = _cache_files(v)
    assert len(after - packs) == 1
    gone = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(v.root), str(gone)], check=True)
    task.write_text(json.dumps(_task(8)))
    subprocess.run([sys.executable, "-c", code, str(gone), str(task), "rm"], check=True)
    assert not gone.exists()


def test_packed_symbolic_order_equals_the_reference_with_ties(tmp_path: Path) -> None:
    """Many concepts with equal overlap, penalty and version: the final order is by id; the
    packed-key selection of any prefix equals a full lexsort."""
    rng = random.Random(7)
    keys = ["feature:a", "feature:b", "feature:c", "feature:d"]
    cards = [
        (card(f"c{i:03d}", rng.sample(keys, rng.randint(1, 3)), version=f"1.{i % 3}.0"), "x")
        for i in range(150)
    ]
    v = Vault.init(tmp_path / "v")
    v.add(cards)
    neg = [
        (
            {
                "schema_version": 1,
                "concept": f"c{i:03d}",
                "version": f"1.{i % 3}.0",
                "polarity": "negative",
                "tier": "test",
                "reason": "r",
            },
            "n",
        )
        for i in range(0, 150, 7)
    ]
    v.add_evidence(neg)
    table = v.snapshot().table
    ranker = _Ranker(table, keys, "grid_2d")
    rows = ranker.candidates()
    ref = rows[
        np.lexsort(
            (ranker.tail[rows], ranker.penalty[rows], -ranker.overlap(rows), ranker.status[rows])
        )
    ]
    assert ranker.base.packable
    for m in (1, 5, 17, 64, len(rows), len(rows) + 5):
        assert ranker.symbolic(m).tolist() == ref[:m].tolist()
    ranker.base.packable = False  # the fallback path agrees too
    assert ranker.symbolic(17).tolist() == ref[:17].tolist()
    # one row per concept id, first occurrence in the reference order
    seen: list[int] = []
    groups = table.groups
    for r in ref.tolist():
        if all(groups[r] != groups[s] for s in seen):
            seen.append(r)
    assert ranker.symbolic_distinct(40).tolist() == seen[:40]


def test_key_overlap_equals_a_count_of_the_postings(tmp_path: Path) -> None:
    """The ranker's key overlap, counted densely (byte masks for frequent keys, increments
    for rare ones) or sparsely (no entries here): for every row (those holding no key too)
    a bincount of the concatenated postings."""
    rng = random.Random(11)
    keys = [f"feature:k{j}" for j in range(6)]
    cards = [(card(f"c{i:03d}", rng.sample(keys, rng.randint(1, 4))), "x") for i in range(120)]
    v = Vault.init(tmp_path / "v")
    v.add(cards)
    table = v.snapshot().table
    every = np.arange(table.n)
    for query_keys in (keys[:1], keys[2:5], keys, ["feature:absent"], []):
        ranker = _Ranker(table, query_keys, "grid_2d")
        assert (ranker.counts is None) == (query_keys in (["feature:absent"], []))
        parts = [table.posting(k) for k in query_keys]
        dense = np.bincount(
            np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64), minlength=table.n
        )
        assert ranker.overlap(every).tolist() == dense.tolist()
        assert ranker.overlap(every[::-1]).tolist() == dense[::-1].tolist()
        assert ranker.candidates().tolist() == np.nonzero(ranker.eligible & (dense > 0))[0].tolist()
        assert ranker.without_keys().tolist() == (ranker.eligible & (dense == 0)).tolist()


def test_symbolic_selection_by_overlap_level_equals_a_plain_sort(tmp_path: Path) -> None:
    """The ranker selects the first m candidates among the active rows holding the highest
    overlap level that has m of them (else among every candidate): for every m, equal to a
    plain-Python sort whose overlap is counted from the cards' own key sets, over statuses,
    failures and excluded concepts — with m straddling every level's population (levels
    above 1, level 1, and too few active candidates are each taken)."""
    rng = random.Random(5)
    vocab = [f"feature:k{j}" for j in range(8)]
    rare = [f"feature:r{j}" for j in range(3)]  # held by fewer than 1/32 of the rows
    held: dict[str, set[str]] = {}
    cards = []
    for i in range(260):
        keys = rng.sample(vocab, rng.choice([1, 1, 2, 3, 4, 6]))
        if i % 50 == 7:
            keys.append(rare[i % 3])
        version = f"1.{i % 2}.0"
        cards.append((card(f"c{i // 2:03d}", keys, version=version), "x"))
        held[f"c{i // 2:03d}@{version}"] = set(keys)
    v = Vault.init(tmp_path / "v")
    v.add(cards)
    for i in range(0, 130, 6):
        v.set_status(f"c{i:03d}", "1.1.0", rng.choice(["deprecated", "suppressed"]))
    evidence = []
    for i in range(0, 130, 5):
        ev = {"schema_version": 1, "concept": f"c{i:03d}", "version": "1.0.0"}
        if rng.random() < 0.6:
            ev |= {"polarity": "negative", "tier": "test", "reason": "r"}
        else:
            ev |= {"polarity": "positive"}
        evidence.append((ev, "e"))
    v.add_evidence(evidence)
    table = v.snapshot().table
    refs = [table.ref(r) for r in range(table.n)]
    status_of = table.col("status").tolist()
    levels: set[object] = set()
    sparse: set[bool] = set()  # few posting entries: counted sparsely, else densely
    for query in (vocab[:3], vocab[2:7] + rare, vocab, vocab[5:6], rare[:2] + vocab[:1], rare):
        for exclude in ((), ("c004", "c017")):
            ranker = _Ranker(table, query, "grid_2d", exclude=exclude)
            sparse.add(ranker.counts is None)
            rows = [
                r
                for r in range(table.n)
                if status_of[r] != 2 and refs[r].split("@")[0] not in exclude
            ]
            overlap = {r: len(held[refs[r]] & set(query)) for r in rows}
            cands = [r for r in rows if overlap[r]]
            ref = sorted(
                cands,
                key=lambda r: (
                    status_of[r],
                    -overlap[r],
                    float(ranker.penalty[r]),
                    int(ranker.tail[r]),
                ),
            )
            active = [overlap[r] for r in cands if status_of[r] == 0]
            for m in sorted({1, 2, 7, 20, 45, 90, len(active), len(active) + 1, len(cands)}):
                got = ranker.symbolic(m).tolist()
                assert got == ref[:m], (query, exclude, m)
                level = max((x for x in set(active) if sum(a >= x for a in active) >= m), default=0)
                levels.add(level if level else "every candidate")
                assert ranker.overlap(np.array(got)).tolist() == [overlap[r] for r in got]
    assert {1, "every candidate"} <= levels and any(isinstance(x, int) and x > 1 for x in levels)
    assert sparse == {True, False}


def test_solver_loop_example_runs(example_vault: Vault) -> None:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}  # this checkout's library
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "solver_loop.py"), str(example_vault.root)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "rotate: try rotate-90@1.0.0" in out.stdout
    assert "(rotate_90 grid)" in out.stdout  # the hit's template, read through hit.card()
    assert "wrote back 10 records as one generation (transaction" in out.stdout
    assert "newest concept: solver-idea-1@1.0.0" in out.stdout
    after = Vault.open(example_vault.root)
    assert after.concept("rotate-90").positive == 3  # 2 in the examples + the loop's
    assert [e.op for e in after.audit.entries()][-1] == "transaction"


def test_soft_selection_equals_a_full_sort_with_ties_and_statuses(tmp_path: Path) -> None:
    """Soft mode selects without sorting the vault: it must equal the reference order
    (status, similarity desc, version desc, id; one version per id) exactly."""
    from vault.config import Config
    from vault.embedding.similarity import similarity_rows
    from vault.records.query import normalize_query
    from vault.retrieval import retrieve

    rng = random.Random(3)
    v = Vault.init(tmp_path / "v")
    cards = []
    for i in range(120):  # many share their keys (equal vectors: ties by version, then id)
        keys = ["feature:a"] if i % 3 else ["feature:b", "transform:flip_h"]
        cards.append((card(f"c{i % 40:02d}", keys, version=f"1.{i // 40}.0"), "x"))
    v.add(cards)
    for i in range(0, 40, 5):
        v.set_status(f"c{i:02d}", "1.2.0", "deprecated")
    for i in range(1, 40, 9):
        v.set_status(f"c{i:02d}", "1.1.0", "suppressed")
    table = v.snapshot().table
    ranker = _Ranker(table, [], "grid_2d")
    q = normalize_query({"schema_version": 1, "grid": [[rng.randint(0, 3) for _ in range(3)]]})
    from vault.embedding.vectors import query_vector

    qv = np.array(query_vector(v.snapshot().embedder(), q, None), dtype=np.int8)
    rows = np.nonzero(ranker.eligible)[0]
    sims = similarity_rows(table, rows, qv, "structured")
    ref = rows[np.lexsort((ranker.tail[rows], -sims, ranker.status[rows]))]
    seen: list[int] = []
    for r in ref.tolist():
        if all(table.groups[r] != table.groups[s] for s in seen):
            seen.append(r)
    for k in (1, 5, 17, 40):
        got = retrieve(v, q, Config(k=k), "soft").results
        assert [f"{h.id}@{h.version}" for h in got] == [table.ref(r) for r in seen[:k]]
