"""The embedder, exact similarity, the cache, and the hybrid/soft rankings built on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vault.embedding import builtin
from vault.embedding.cache import EmbeddingCache
from vault.embedding.similarity import cosine, euclidean, exact_dots
from vault.embedding.vectors import embed_pair, embed_repr, query_vector
from vault.grid.reprs import grid_to_repr, repr_id
from vault.records.query import Query
from vault.retrieval import retrieve
from vault.vault import Vault, fixed_clock

from .conftest import card, example_cards, example_evidence

GRIDS = {
    "tiny-mono": [[5, 5], [5, 5]],
    "checker": [[(r + c) % 2 * 3 for c in range(8)] for r in range(8)],
    "big-sparse": [
        [7 if (r, c) in {(2, 3), (15, 15), (9, 1)} else 0 for c in range(18)] for r in range(18)
    ],
    "stripes": [[c % 4 for c in range(12)] for _ in range(5)],
    "ring": [[0] * 7]
    + [[0, 2, 2, 2, 2, 2, 0]]
    + [[0, 2, 0, 0, 0, 2, 0]] * 3
    + [[0, 2, 2, 2, 2, 2, 0], [0] * 7],
}


def test_vector_shape_range_and_determinism() -> None:
    for grid in GRIDS.values():
        rep = grid_to_repr(grid)
        v1 = builtin.repr_vector(rep)
        v2 = builtin.repr_vector(grid_to_repr(grid))
        assert v1 == v2
        assert len(v1) == builtin.DIM == 64
        assert all(isinstance(x, int) and -127 <= x <= 127 for x in v1)
        assert any(v1)


def test_same_vectors_in_a_fresh_process() -> None:
    grids = list(GRIDS.values())
    here = [builtin.repr_vector(grid_to_repr(g)) for g in grids]
    code = (
        "import json,sys; from vault.embedding import builtin;"
        " from vault.grid.reprs import grid_to_repr;"
        "print(json.dumps([builtin.repr_vector(grid_to_repr(g)) for g in json.load(sys.stdin)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(grids),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == here


def test_cache_hit_equals_miss_and_checks_key(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    a, b = grid_to_repr(GRIDS["checker"]), grid_to_repr(GRIDS["stripes"])
    miss = embed_repr(builtin.EMBEDDER, a, cache)
    assert miss == builtin.repr_vector(a)
    assert cache.get(repr_id(a)) == miss
    assert embed_repr(builtin.EMBEDDER, a, cache) == miss
    pair_miss = embed_pair(builtin.EMBEDDER, a, b, cache)
    assert (
        embed_pair(builtin.EMBEDDER, a, b, cache)
        == pair_miss
        == embed_pair(builtin.EMBEDDER, a, b, None)
    )
    # an entry whose key does not match is a miss, never a wrong vector
    path = cache.path(cache.key(repr_id(a)))
    entry = json.loads(path.read_text())
    entry["key"] = "something else"
    path.write_text(json.dumps(entry))
    fresh = EmbeddingCache(tmp_path / "cache")  # (an instance remembers what it computed)
    assert fresh.get(repr_id(a)) is None
    assert embed_repr(builtin.EMBEDDER, a, fresh) == miss


@pytest.mark.parametrize("which", ["builtin", "shipped"])
def test_a_query_vector_is_its_items_one_by_one(tmp_path: Path, which: str) -> None:
    """``query_vector`` computes a query's items together: the same vector as combining
    ``embed_pair`` / ``embed_repr`` of each item one by one, the same cache entries (an item
    asked twice cached once), cache hits used, and with ``check`` a differing entry found."""
    from vault.embedding import shipped
    from vault.embedding.cache import pair_id
    from vault.embedding.select import fitted_embedder
    from vault.embedding.vectors import CachedVectorMismatch
    from vault.records.query import task_query

    emb = builtin.EMBEDDER if which == "builtin" else fitted_embedder(shipped.weights())
    grids = list(GRIDS.values())
    pairs = [(grids[i], grids[(i + 1) % len(grids)]) for i in range(len(grids))]
    pairs.append(pairs[1])  # asked twice
    task = {
        "train": [{"input": a, "output": b} for a, b in pairs],
        "test": [{"input": GRIDS["ring"]}],
    }
    q = task_query(task)
    one_by_one = [embed_pair(emb, p.input, p.output, None) for p in q.pairs]
    assert q.repr is not None
    expected = emb.combine(one_by_one + [embed_repr(emb, q.repr, None)], one_by_one, q.all_keys())
    cache = EmbeddingCache(tmp_path / "cache").bound(emb)
    assert query_vector(emb, q, cache) == expected
    ids = [pair_id(*p.ids) for p in q.pairs] + [q.rid]
    assert [cache.get(i) for i in ids] == one_by_one + [embed_repr(emb, q.repr, None)]
    assert len(list(cache.entries())) == len(set(ids)) == len(ids) - 1
    assert query_vector(emb, q, cache, check=True) == expected
    # an entry that differs from its recomputation: used as it is, found with ``check``
    wrong = [-x for x in one_by_one[0]]
    cache.put(ids[0], {"input": q.pairs[0].input["grid"]}, wrong)
    swapped = emb.combine(
        [wrong, *one_by_one[1:], cache.get(ids[-1])], [wrong, *one_by_one[1:]], q.all_keys()
    )
    assert query_vector(emb, q, cache) == swapped != expected
    with pytest.raises(CachedVectorMismatch, match="pair"):
        query_vector(emb, q, cache, check=True)


def test_bulk_writes_one_pack_that_full_builds_read(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    reps = [grid_to_repr(g) for g in GRIDS.values()]
    with cache.bulk():
        vectors = [embed_repr(builtin.EMBEDDER, r, cache) for r in reps]
    assert list(cache.entries()) == [] and len(cache.packs()) == 1
    fresh = EmbeddingCache(tmp_path / "cache")
    assert fresh.get(repr_id(reps[0])) is None  # packs are read on request (full builds)
    fresh.load_packs()
    assert [fresh.get(repr_id(r)) for r in reps] == vectors


def test_concept_is_nearest_to_the_reprs_it_was_validated_on(tmp_path: Path) -> None:
    """One shared space: each concept (same keys for all) is the nearest to its own reprs."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    cards, evidence = [], []
    for name, grid in GRIDS.items():
        cards.append((card(name, ["invariant:same_dims"]), name))
        evidence.append(
            (
                {
                    "schema_version": 1,
                    "concept": name,
                    "version": "1.0.0",
                    "polarity": "positive",
                    "grid": grid,
                },
                name,
            )
        )
    v.write_back(cards, evidence)
    for name, grid in GRIDS.items():
        result = retrieve(v, Query(repr=grid_to_repr(grid)), v.config(), "soft")
        assert result.results[0].id == name, (name, [(h.id, h.similarity) for h in result.results])
        assert (result.results[0].similarity or 0) > (result.results[1].similarity or 0)


def test_exact_dots_match_integer_arithmetic() -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(-127, 128, size=(500, 64)).astype(np.int8)
    q = rng.integers(-127, 128, size=64).astype(np.int8)
    assert (exact_dots(m, q) == m.astype(np.int64) @ q.astype(np.int64)).all()
    extreme = np.full((3, 64), 127, dtype=np.int8)
    assert exact_dots(extreme, extreme[0])[0] == 64 * 127 * 127


def test_cosine_and_euclidean_parity_on_trivial_cases() -> None:
    q = np.array([10, -20, 30] + [0] * 61, dtype=np.int8)
    m = np.stack([q, -q, np.zeros(64, dtype=np.int8), np.roll(q, 3)])
    cos, euc = cosine(m, q), euclidean(m, q)
    assert cos[0] == 1.0 and euc[0] == 1.0
    assert cos[1] == -1.0 and euc[1] < euc[3] < euc[0]
    assert cos[2] == 0.0  # zero vector: defined as 0, no NaN
    assert cos[3] == 0.0
    # on vectors of equal norm both metrics order candidates identically
    rng = np.random.default_rng(1)
    base = rng.integers(-60, 60, size=(50, 64))
    perms = np.stack([rng.permutation(base[0]) for _ in range(50)]).astype(np.int8)
    qq = base[0].astype(np.int8)
    assert list(np.argsort(-cosine(perms, qq), kind="stable")) == list(
        np.argsort(-euclidean(perms, qq), kind="stable")
    )


def _task_vault(tmp_path: Path) -> Vault:
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    v.add(example_cards())
    v.add_evidence(example_evidence())
    return v


def _rotate_query() -> Query:
    from vault.records.query import Pair

    a = grid_to_repr([[1, 2, 0], [0, 2, 0], [0, 0, 3]])
    b = grid_to_repr([[0, 0, 1], [0, 2, 2], [3, 0, 0]])
    return Query(repr=a, pairs=(Pair(a, b),))


def test_weighted_rerank_is_monotone_in_utility(tmp_path: Path) -> None:
    """Adding positive evidence to a concept never moves it down; negative never up."""
    v = _task_vault(tmp_path)
    cfg = v.config().with_overrides(strategy="weighted", k=17, delta=0.0)
    q = _rotate_query()

    def rank(cid: str) -> int:
        return [h.id for h in retrieve(v, q, cfg, "hybrid").results].index(cid)

    target = "transpose"
    r0 = rank(target)
    for _ in range(3):
        v.add_evidence(
            [
                (
                    {
                        "schema_version": 1,
                        "concept": target,
                        "version": "1.0.0",
                        "polarity": "positive",
                        "task": f"t{_}",
                    },
                    "ev",
                )
            ]
        )
        r1 = rank(target)
        assert r1 <= r0
        r0 = r1
    for i in range(3):
        v.add_evidence(
            [
                (
                    {
                        "schema_version": 1,
                        "concept": target,
                        "version": "1.0.0",
                        "polarity": "negative",
                        "tier": "test",
                        "reason": "wrong_output",
                        "task": f"n{i}",
                    },
                    "ev",
                )
            ]
        )
        r1 = rank(target)
        assert r1 >= r0
        r0 = r1


def _mean_pairwise(v: Vault, ids: list[str]) -> float:
    table = v.snapshot().table
    rows = table.matrix[[table.find(f"{i}@1.0.0") for i in ids]]
    sims = [cosine(rows, rows[i]) for i in range(len(ids))]
    total = sum(float(s[j]) for i, s in enumerate(sims) for j in range(len(ids)) if j != i)
    return total / (len(ids) * (len(ids) - 1))


def test_mmr_increases_dispersion_of_top_k(tmp_path: Path) -> None:
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    # five near-duplicates of one idea and five distinct ideas, all sharing the query key
    cards: list[tuple[Any, str]] = []
    evidence: list[tuple[Any, str]] = []
    base = GRIDS["checker"]
    for i in range(5):
        cid = f"dup-{i}"
        cards.append((card(cid, ["invariant:same_dims"]), cid))
        g = [row[:] for row in base]
        g[i][(i + 1) % 8] = 5  # a one-cell variation of the same checkerboard
        evidence.append(
            (
                {
                    "schema_version": 1,
                    "concept": cid,
                    "version": "1.0.0",
                    "polarity": "positive",
                    "grid": g,
                },
                cid,
            )
        )
    for name, grid in GRIDS.items():
        if name == "checker":
            continue
        cards.append((card(f"other-{name}", ["invariant:same_dims"]), name))
        evidence.append(
            (
                {
                    "schema_version": 1,
                    "concept": f"other-{name}",
                    "version": "1.0.0",
                    "polarity": "positive",
                    "grid": grid,
                },
                name,
            )
        )
    v.write_back(cards, evidence)
    q = Query(repr=grid_to_repr(base), constraints=("same_dims",))
    plain = v.config().with_overrides(strategy="weighted", k=4, delta=0.0)
    mmr = plain.with_overrides(delta=0.5)
    top_plain = [h.id for h in retrieve(v, q, plain, "hybrid").results]
    top_mmr = [h.id for h in retrieve(v, q, mmr, "hybrid").results]
    assert all(i.startswith("dup-") for i in top_plain)
    assert top_mmr[0] == top_plain[0]
    assert _mean_pairwise(v, top_mmr) < _mean_pairwise(v, top_plain)


def test_hybrid_tiebreak_keeps_symbolic_order_and_breaks_ties_by_similarity(tmp_path: Path) -> None:
    v = _task_vault(tmp_path)
    q = _rotate_query()
    cfg = v.config().with_overrides(strategy="tiebreak")
    sym = retrieve(v, q, cfg, "symbolic").results
    hyb = retrieve(v, q, cfg, "hybrid").results
    assert [h.key_overlap for h in hyb] == sorted((h.key_overlap for h in hyb), reverse=True)
    assert hyb[0].id == sym[0].id == "rotate-90"
    for a, b in zip(hyb, hyb[1:], strict=False):
        if (a.key_overlap, a.penalty) == (b.key_overlap, b.penalty):
            assert (a.similarity or 0) >= (b.similarity or 0)


def test_query_vector_uses_pairs_and_repr() -> None:
    q = _rotate_query()
    with_pairs = query_vector(builtin.EMBEDDER, q, None)
    only_repr = query_vector(builtin.EMBEDDER, Query(repr=q.repr), None)
    none = [0] * len(builtin.TRANSFORM)
    assert with_pairs[builtin.TRN] != none and only_repr[builtin.TRN] == none


def test_hybrid_tops_up_a_short_symbolic_list_from_embedding_neighbours(tmp_path: Path) -> None:
    v = _task_vault(tmp_path)
    q = Query(repr=grid_to_repr(GRIDS["ring"]), constraints=("background_preserved",))
    sym = retrieve(v, q, v.config().with_overrides(k=17), "symbolic").results
    cfg = v.config().with_overrides(k=17, shortlist_min=12, shortlist_max=200)
    hyb = retrieve(v, q, cfg, "hybrid").results
    assert len(sym) < 12 <= len(hyb)
    extra = [h for h in hyb if h.key_overlap == 0]
    assert len(hyb) - len(extra) == len(sym)
    # weighted: active first, then score = alpha*sim + beta*utility (no key shared: no class
    # match), never increasing down the list
    cfg_w = cfg.with_overrides(strategy="weighted")
    order = [(h.status != "active", -h.score) for h in extra]
    assert order == sorted(order)
    for h in extra:
        assert h.score == cfg_w.alpha * (h.similarity or 0.0) + cfg_w.beta * h.utility
    # a bound below the symbolic list cuts it (the rotate query matches all 17 symbolically)
    bounds = v.config().with_overrides(k=17, shortlist_min=1, shortlist_max=2)
    cut = retrieve(v, _rotate_query(), bounds, "hybrid")
    assert len(cut.results) == 2


def test_vectors_file_and_hash_identical_when_built_by_a_fresh_process(tmp_path: Path) -> None:
    from .conftest import EXAMPLES

    here = _task_vault(tmp_path)
    other = tmp_path / "other"
    env = {"SOURCE_DATE_EPOCH": "0", "VAULT_DIR": str(other), "PATH": ""}
    for args in (
        ["init"],
        ["add", str(EXAMPLES / "cards.jsonl")],
        ["evidence", "add", str(EXAMPLES / "evidence.jsonl")],
        ["index", "build"],
    ):
        subprocess.run(
            [sys.executable, "-m", "vault_cli", *args], env=env, check=True, capture_output=True
        )
    for name in ("concept_vectors.jsonl", "ann.index.sha256", "embedder.json"):
        assert (other / "embeddings" / name).read_bytes() == (
            here.embeddings_dir / name
        ).read_bytes()


def test_a_large_write_back_computes_its_vectors_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write-back with many new reprs and pairs computes their vectors in worker
    processes first (``prefetch``, as a full build does): the generation, the view and the
    cache are the bytes a serial write-back makes."""
    from vault.embedding import prefetch
    from vault.index import build

    ran: list[int] = []
    real = build.prefetch
    monkeypatch.setattr(build, "prefetch", lambda *a: ran.append(real(*a)) or ran[-1])
    made, computed = [], []
    for name, least in (("serial", 10**9), ("parallel", 1)):
        monkeypatch.setattr(prefetch, "PARALLEL_MIN", least)
        v = Vault.init(tmp_path / name, clock=fixed_clock(1_700_000_000))
        ran.clear()
        v.write_back(example_cards(), example_evidence())
        made.append(v)
        computed.append(sum(ran))
    assert computed[0] == 0 and computed[1] > 0  # the pool computed the second's vectors
    a, b = made
    assert a.snapshot().generation == b.snapshot().generation
    for rel in ("embeddings/concept_vectors.jsonl", "embeddings/ann.index.sha256"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes()
    packs = [sorted((v.root / "embeddings" / "cache").rglob("*.jsonl")) for v in made]
    assert [p.read_bytes() for p in packs[0]] == [p.read_bytes() for p in packs[1]] != []


def test_parallel_prefetch_gives_the_same_generation(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault.embedding import prefetch
    from vault.embedding.cache import FreshCache
    from vault.index.build import plan_full
    from vault.index.state import State

    v = example_vault
    entries = v.audit.entries()
    serial = plan_full(entries, State(v.objects), v.records, None).generation
    monkeypatch.setattr(prefetch, "PARALLEL_MIN", 1)
    fresh = FreshCache()
    parallel = plan_full(entries, State(v.objects), v.records, fresh).generation
    assert parallel == serial == v.snapshot().generation
    from vault.index.build import _items

    state = State(v.objects)
    inputs: dict[str, Any] = {}
    from vault.index.state import fold

    fold(entries, state, v.records, inputs)
    again = FreshCache()
    computed = prefetch.prefetch(_items(state, inputs), v.objects, again)
    assert computed > 0 and len(again.sources) == computed  # the pool really ran


@pytest.mark.parametrize("which", ["builtin", "fitted"])
def test_prefetch_computes_each_item_as_alone(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """A worker's ``compute`` embeds its items a batch at a time (``item_vectors``): each
    vector is ``embed_repr`` / ``embed_pair`` of its item alone, in the order of the items,
    across batch boundaries, with reprs and pairs mixed in one batch."""
    from vault.embedding import prefetch, shipped
    from vault.embedding.select import fitted_embedder
    from vault.index.build import _items
    from vault.index.state import State, fold

    emb = builtin.EMBEDDER if which == "builtin" else fitted_embedder(shipped.weights())
    v = example_vault
    state = State(v.objects)
    inputs: dict[str, Any] = {}
    fold(v.audit.entries(), state, v.records, inputs)
    pairs = [i for i in _items(state, inputs) if len(i) == 2]
    assert len(pairs) >= 3
    # each pair followed by its output's repr: batches of 3 hold both kinds, pairs first
    # in one and reprs first in the next, and the output keeps this order
    items = [item for a, b in pairs for item in ((a, b), (b,))]
    # an item asked twice (within one batch of 3 and across batches) comes back twice
    items = items[:2] + [items[0]] + items[2:] + [items[1]]
    alone = []
    for item in items:
        if len(item) == 1:
            alone.append(embed_repr(emb, v.objects.get_record(item[0]), None))
        else:
            a, b = (v.objects.get_record(x) for x in item)
            alone.append(embed_pair(emb, a, b, None))
    for batch in (1, 3, len(items) + 1):
        monkeypatch.setattr(prefetch, "BATCH", batch)
        got = prefetch.compute(emb, str(v.objects.root), items)
        assert [c[0] for c in got] == items
        assert [c[1] for c in got] == alone
