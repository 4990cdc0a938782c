"""Differential property tests: every retrieval entry point against the independent
reference of ``tests/reference`` (FORMAT.md's rules in plain Python), every field of every
hit compared, on random vaults.

Entry points: CLI ``retrieve --task/--query/--repr``, ``--batch``, ``--batch --workers 2``
and ``--like``; ``Retriever.retrieve``, ``Retriever.retrieve_many`` and ``vault.like``.
The vaults (hypothesis, derandomized: the same tree draws the same vaults — hypothesis also
draws constants found in the test modules imported, so a lone run of this module draws
other vaults than ``make test``) hold random concept versions:
keys from a small vocabulary (overlaps and ties happen), obligations and template
operators, random statuses, evidence counts, versions, another domain (a ``text`` card
may carry the key ``domain:grid_2d``), vectors from known reprs, the built-in or a fitted
embedder, a kill switch; their sizes straddle ``shortlist_min`` / ``shortlist_max`` (small
values in config.toml); queries share a key with every concept or with none, with and
without exclusions. A mid-size vault crosses the top-k kernel's 4,096-row conversion
block; under ``VAULT_STRESS=1`` (``make stress``) a vault of more than 131,072 rows
takes the kernel's summary path, and 450 random vaults are compared instead of 12.

The count of compared cases is printed at the end of the run (tests/conftest.py).
``VAULT_REFERENCE_COUNT_ONLY=1`` counts mismatches instead of failing on the first one
(to measure a tree before a fix).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vault.config import Config
from vault.embedding.vectors import query_vector
from vault.grid.reprs import grid_to_repr, repr_id
from vault.like import neighbours
from vault.ops.embedder import fit_embedder, use_embedder
from vault.records.query import Query, query_from
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import EXAMPLES
from .reference import RefConfig, read_vault
from .reference import like as ref_like
from .reference import rank as ref_rank
from .reference.rank import resolve_mode
from .reference.tally import TALLY, difference

STRESS = os.environ.get("VAULT_STRESS") == "1"
COUNT_ONLY = os.environ.get("VAULT_REFERENCE_COUNT_ONLY") == "1"
# random vaults; each is asked at least 45 questions (3 queries x 11 library calls, the
# batch, the CLI, retrieve_many), so these guarantee the 500 / 20,000 cases
WORLDS = 450 if STRESS else 12
MODES = ("symbolic", "hybrid", "soft")
METRICS = ("cosine", "euclidean", "structured")
STRATEGIES = ("weighted", "tiebreak")
runner = CliRunner()


def check(entry: str, got: Any, want: Any) -> None:
    """One compared case: ``got`` (an entry point's JSON) must equal the reference's."""
    TALLY.cases[entry] += 1
    found = difference(got, want)
    if found is None:
        return
    TALLY.mismatches[entry] += 1
    if len(TALLY.examples) < 20:
        TALLY.examples.append(f"{entry}: {found}")
    if not COUNT_ONLY:
        raise AssertionError(f"{entry} differs from the reference at {found}")


# --------------------------------------------------------------------------- pools
def _rot90(g: list[list[int]]) -> list[list[int]]:
    return [list(r) for r in zip(*g[::-1], strict=True)]


def _flip(g: list[list[int]]) -> list[list[int]]:
    return [r[::-1] for r in g]


def _recolour(g: list[list[int]]) -> list[list[int]]:
    return [[(x + 3) % 10 if x else 0 for x in r] for r in g]


GRIDS = [
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]],  # square, one object, symmetric
    [[1, 0, 2, 0], [0, 0, 0, 3]],  # several objects
    [[1, 1, 0], [0, 2, 0], [0, 0, 0]],
    [[5, 5], [5, 0], [0, 0]],
    [[2, 0], [0, 2]],  # square, monochrome objects
    [[3, 3, 3, 3], [3, 1, 1, 3], [3, 1, 1, 3], [3, 3, 3, 3]],  # containment
    [[0, 4, 0, 0, 6], [7, 0, 0, 0, 0]],
]
NO_KEY_GRID = [[0, 0, 0]]  # no object, symmetric: none of its keys is in VOCAB
PAIRS = [(g, f(g)) for g in GRIDS[:5] for f in (_rot90, _flip, _recolour)]
REPR_IDS = [repr_id(grid_to_repr(g)) for g in GRIDS]  # known: the seed evidence cites them
INVARIANT_NAMES = [
    "same_dims",
    "palette_preserved",
    "fixed_dims",
    "object_count_preserved",
    "colour_count_preserved",
    "background_preserved",
    "same_shape",  # aliases
    "colors_preserved",
]
VOCAB = [
    "invariant:same_dims",
    "invariant:palette_preserved",
    "invariant:background_preserved",
    "invariant:object_count_preserved",
    "invariant:colour_count_preserved",
    "transform:rotate_90",
    "transform:rotate_180",
    "transform:flip_h",
    "transform:recolor",
    "feature:square",
    "feature:single_object",
    "feature:multi_object",
    "feature:zz_open",
]
EVERY_KEY = "invariant:same_dims"  # "shared with every concept": the query's constraint
DSLS = ["(x grid)", "(rotate_90 x)", "(flip_h (recolor x))", "(Rotate_90 rotate90 x)"]
IDS = ["B", "Zed", "a", "a.1", "a-2", "b", "b_3", "c", "c9", "d", "e", "f", "g", "h", "k"]
VERSIONS = ["0.9.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"]
TASKS = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "tasks").glob("*.json"))]
TASKS += [
    {"train": [{"input": a, "output": b} for a, b in PAIRS[i : i + 3 : 2]], "test": [{"input": a}]}
    for i, (a, _) in enumerate(PAIRS[:6])
]


# --------------------------------------------------------------------------- worlds
@dataclass
class World:
    """A random vault (its write-back input) and the questions asked of it."""

    cards: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    config: dict[str, Any]
    fitted: bool
    kill_switch: str | None
    queries: list[tuple[str, Any]]  # (kind, value)
    excludes: list[list[str]]
    workers: int
    seed: int
    every: bool = field(default=False)


def _evidence_for(draw: Any, cid: str, version: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = {"schema_version": 1, "concept": cid, "version": version}
    for i in range(draw(st.integers(0, 3))):
        ev = {**base, "polarity": "positive", "note": f"p{i}"}
        shape = draw(st.sampled_from(["none", "none", "grid", "pair"]))
        if shape == "grid":
            ev["grid"] = draw(st.sampled_from(GRIDS))
        elif shape == "pair":
            a, b = draw(st.sampled_from(PAIRS))
            ev["pair"] = {"input": a, "output": b}
        out.append(ev)
    for i in range(draw(st.integers(0, 3))):
        tier = draw(st.sampled_from(["syntax", "runtime", "train", "test"]))
        out.append(
            {**base, "polarity": "negative", "tier": tier, "reason": "wrong", "note": f"n{i}"}
        )
    return out


@st.composite
def worlds(draw: Any) -> World:
    every = draw(st.booleans())
    # uniform: every row active or deprecated and of the query's domain, so the hybrid
    # shortlist can hold every row of the table (the case that hid a wrong similarity)
    uniform = draw(st.integers(0, 2)) == 0
    n_ids = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 12, 15]))
    ids = draw(st.permutations(IDS))[:n_ids]
    cards: list[dict[str, Any]] = []
    evidence: list[dict[str, Any]] = []
    for cid in ids:
        versions = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=3, unique=True))
        for version in versions:
            keys = draw(st.lists(st.sampled_from(VOCAB), max_size=3, unique=True))
            domain = "grid_2d" if uniform else draw(st.sampled_from(["grid_2d"] * 4 + ["text"]))
            if domain == "text" and draw(st.booleans()):
                keys.append("domain:grid_2d")  # a key is not a domain (the card's field is)
            if every:
                keys.append(EVERY_KEY)
            card: dict[str, Any] = {
                "schema_version": 1,
                "id": cid,
                "version": version,
                "domain": domain,
                "status": draw(
                    st.sampled_from(
                        ["active"] * 3 + ["deprecated"] + ([] if uniform else ["suppressed"])
                    )
                ),
                "signature": {"keys": keys},
                "template": {"template_dsl": draw(st.sampled_from(DSLS))},
            }
            obligations = draw(st.lists(st.sampled_from(INVARIANT_NAMES), max_size=2, unique=True))
            if obligations:
                card["proof_obligations"] = obligations
            cited = draw(st.lists(st.sampled_from(REPR_IDS), max_size=2, unique=True))
            if cited:
                card["provenance"] = {"validated_on": cited}
            cards.append(card)
            evidence += _evidence_for(draw, cid, version)
    shortlist_min = draw(st.integers(1, 5))
    config = {
        "k": draw(st.integers(1, 8)),
        "shortlist_min": shortlist_min,
        "shortlist_max": draw(st.sampled_from([0, 1, 3, 6, 50])) + shortlist_min,
        "alpha": draw(st.sampled_from([0.65, 1.0, 0.3])),
        "beta": draw(st.sampled_from([0.2, 0.0, 0.7])),
        "gamma": draw(st.sampled_from([0.2, 0.0, 0.55])),
        "delta": draw(st.sampled_from([0.0, 0.0, 0.25, 1.0])),
    }
    queries: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(3, 6))):
        kind = draw(st.sampled_from(["task", "query", "query", "repr"]))
        if kind == "task":
            queries.append(("task", draw(st.sampled_from(TASKS))))
        elif kind == "repr":
            queries.append(("repr", draw(st.sampled_from([*GRIDS, NO_KEY_GRID]))))
        else:
            q: dict[str, Any] = {
                "schema_version": 1,
                "grid": draw(st.sampled_from([*GRIDS, NO_KEY_GRID])),
            }
            constraints = draw(st.lists(st.sampled_from(INVARIANT_NAMES), max_size=3, unique=True))
            if every and draw(st.booleans()):
                constraints.append("same_dims")  # shares a key with every concept
            if constraints:
                q["constraints"] = sorted(set(constraints))
            if draw(st.integers(0, 5)) == 0:
                q["domain"] = "text"
            queries.append(("query", q))
    if draw(st.booleans()):
        queries.append(("repr", NO_KEY_GRID))  # shares a key with no concept
    known = list(ids) + ["ghost"]
    excludes = [[], *(draw(st.lists(st.sampled_from(known), max_size=3)) for _ in range(2))]
    return World(
        cards=cards,
        evidence=evidence,
        config=config,
        fitted=draw(st.integers(0, 3)) == 0,
        kill_switch=draw(st.sampled_from([None, None, None, "symbolic", "soft", "hybrid"])),
        queries=queries,
        excludes=excludes,
        workers=draw(st.sampled_from([1, 2])),
        seed=draw(st.integers(0, 2**32 - 1)),
        every=every,
    )


# --------------------------------------------------------------------------- vaults
def scratch() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory on tmpfs (``/dev/shm``) when there is one: these tests check
    rankings, not durability, and a vault's thousands of fsynced objects cost nothing
    there."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(dir=where, prefix="vault-reference-")


def _config_text(values: dict[str, Any]) -> str:
    lines = ["[retrieval]"] + [f"{k} = {json.dumps(v)}" for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def weights() -> Iterator[bytes]:
    """Fitted-embedder weights (fitted once, on the bundled tasks)."""
    from vault.arc import read_task_files

    with tempfile.TemporaryDirectory() as d:
        v = Vault.init(Path(d) / "fit", clock=fixed_clock(1_700_000_000))
        tasks = read_task_files([str(p) for p in sorted((EXAMPLES / "tasks").glob("*.json"))])
        digest = fit_embedder(v, tasks, sources=["examples"]).weights
        yield v.objects.path(digest).read_bytes()


def build(root: Path, world: World, weights: bytes) -> Vault:
    v = Vault.init(root, clock=fixed_clock(1_700_000_000))
    (root / "config.toml").write_text(_config_text(world.config))
    seed_card = {
        "schema_version": 1,
        "id": "zz-seed",
        "version": "1.0.0",
        "domain": "grid_2d",
        "signature": {"keys": [EVERY_KEY] if world.every else []},
        "template": {"template_dsl": "(x grid)"},
    }
    seed_evidence = [
        {
            "schema_version": 1,
            "concept": "zz-seed",
            "version": "1.0.0",
            "polarity": "positive",
            "grid": g,
        }
        for g in GRIDS
    ]
    v.write_back(
        cards=[(c, f"card {i}") for i, c in enumerate([seed_card, *world.cards])],
        evidence=[(e, f"evidence {i}") for i, e in enumerate(seed_evidence + world.evidence)],
    )
    if world.fitted:
        use_embedder(v, v.objects.put(weights))
    if world.kill_switch:
        v.set_mode(world.kill_switch)
    return v


# --------------------------------------------------------------------------- asking
@dataclass
class Asked:
    kind: str
    value: Any
    query: Query
    vector: list[int]


def _reference(
    ref: Any, asked: Asked, *, mode: str | None, exclude: Sequence[str] = (), **over: Any
) -> dict[str, Any]:
    cfg = RefConfig.of(ref.settings, **over)
    resolved = resolve_mode(ref, mode)
    out = ref_rank(
        ref,
        domain=asked.query.domain,
        keys=asked.query.all_keys(),
        vector=asked.vector,
        cfg=cfg,
        mode=resolved,
        exclude=exclude,
    )
    if resolved == "hybrid" and cfg.strategy == "weighted":
        assert_scores_fall_as_format_says(out["results"], cfg.delta)
    return out


def assert_scores_fall_as_format_says(hits: list[dict[str, Any]], delta: float) -> None:
    """FORMAT §10, weighted: down the list the score never increases within a status
    class, except that with delta > 0 the second may exceed the first."""
    for i in range(1, len(hits)):
        before, now = hits[i - 1], hits[i]
        if before["status"] != now["status"] or (i == 1 and delta > 0):
            continue
        assert now["score"] <= before["score"], hits


def _cli(root: Path, *args: str) -> str:
    res = runner.invoke(app, ["--vault", str(root), "retrieve", *args], env={"VAULT_DIR": None})
    assert res.exit_code == 0 and "internal error" not in res.output, res.output
    return res.stdout


def exercise(v: Vault, world: World, tmp: Path) -> None:
    """Ask every entry point and compare each answer with the reference."""
    rng = random.Random(world.seed)
    ref = read_vault(v.root)
    emb = v.snapshot().embedder()
    asked = []
    for kind, value in world.queries:
        q = query_from(kind, value)
        asked.append(Asked(kind, value, q, query_vector(emb, q, None)))
    cfg = v.config()

    # Retriever.retrieve: every mode (and the default), metric, strategy; exclusions
    with v.retriever() as r:
        for a in asked:
            combos: list[tuple[str | None, str | None, str | None]] = [(None, None, None)]
            combos += [("symbolic", None, None)]
            combos += [("soft", m, None) for m in METRICS]
            combos += [("hybrid", m, s) for m in METRICS for s in STRATEGIES]
            for mode, metric, strategy in combos:
                k = rng.choice([None, 1, 3, 7])
                exclude = rng.choice(world.excludes)
                got = r.retrieve(
                    a.value, mode=mode, k=k, similarity=metric, strategy=strategy, exclude=exclude
                )
                want = _reference(
                    ref, a, mode=mode, exclude=exclude, k=k, similarity=metric, strategy=strategy
                )
                check("Retriever.retrieve", got.to_json(), want)
        # retrieve_many: one option set for all queries
        metric, strategy = rng.choice(METRICS), rng.choice(STRATEGIES)
        many = r.retrieve_many(
            [a.value for a in asked], mode="hybrid", similarity=metric, strategy=strategy
        )
        for a, got in zip(asked, many, strict=True):
            check(
                "Retriever.retrieve_many",
                got.to_json(),
                _reference(ref, a, mode="hybrid", similarity=metric, strategy=strategy),
            )

    # CLI --task / --query / --repr (the vault's config.toml and kill switch, flags over them)
    for i, a in enumerate(asked[:3]):
        path = tmp / f"q{i}.json"
        path.write_text(json.dumps(a.value))
        mode = rng.choice([None, *MODES])
        metric = rng.choice([None, *METRICS])
        strategy = rng.choice([None, *STRATEGIES])
        if (mode or cfg.mode) == "symbolic":  # (options a mode does not use are refused)
            metric = strategy = None
        elif (mode or cfg.mode) == "soft":
            strategy = None
        args = [f"--{a.kind}", str(path), "--json"]
        for flag, value in (("--mode", mode), ("--similarity", metric), ("--strategy", strategy)):
            if value:
                args += [flag, value]
        got = json.loads(_cli(v.root, *args))
        check(
            f"CLI --{a.kind}",
            got,
            _reference(ref, a, mode=mode, similarity=metric, strategy=strategy),
        )

    # CLI --batch (and --workers 2): every query, random modes, k and exclusions per line
    requests, wanted = [], []
    metric = rng.choice(METRICS)
    for i, a in enumerate(asked):
        for _ in range(2):
            line: dict[str, Any] = {a.kind: a.value, "id": f"r{i}"}
            mode = rng.choice([None, *MODES])
            k = rng.choice([None, 2, 5])
            exclude = rng.choice(world.excludes)
            if mode:
                line["mode"] = mode
            if k:
                line["k"] = k
            if exclude:
                line["exclude"] = exclude
            requests.append(line)
            wanted.append(_reference(ref, a, mode=mode, exclude=exclude, k=k, similarity=metric))
    batch = tmp / "requests.jsonl"
    batch.write_text("".join(json.dumps(x) + "\n" for x in requests))
    args = ["--batch", str(batch), "--similarity", metric]
    if world.workers > 1:
        args += ["--workers", str(world.workers)]
    lines = [json.loads(x) for x in _cli(v.root, *args).splitlines()]
    entry = "CLI --batch" + (" --workers 2" if world.workers > 1 else "")
    assert len(lines) == len(requests)
    for n, (got, want, req) in enumerate(zip(lines, wanted, requests, strict=True), start=1):
        assert (got.pop("line"), got.pop("id")) == (n, req["id"])
        check(entry, got, want)

    # --like: the library for every concept id (newest and oldest version), the CLI for one
    ids = sorted({c["id"] for c in world.cards})
    for cid in ids:
        versions = sorted(
            (c.version for c in ref.concepts if c.id == cid),
            key=lambda s: tuple(map(int, s.split("."))),
        )
        for version in (None, versions[0]):
            metric = rng.choice(METRICS)
            k = rng.choice([1, 4, 10])
            got_like = neighbours(
                v, cid, version, cfg.with_overrides(similarity=metric, k=k)
            ).to_json()
            target = cid if version is None else f"{cid}@{version}"
            check(
                "like (library)",
                got_like,
                ref_like(ref, target, RefConfig.of(ref.settings, similarity=metric, k=k)),
            )
    if ids:
        cid = rng.choice(ids)
        got = json.loads(_cli(v.root, "--like", cid, "--json", "--similarity", "euclidean"))
        check(
            "CLI --like",
            got,
            ref_like(ref, cid, RefConfig.of(ref.settings, similarity="euclidean")),
        )


@settings(
    max_examples=WORLDS,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(world=worlds())
def test_every_entry_point_equals_the_reference_on_random_vaults(
    world: World, weights: bytes
) -> None:
    with scratch() as d:
        tmp = Path(d)
        v = build(tmp / "v", world, weights)
        TALLY.vaults["all"] += 1
        TALLY.vaults["fitted embedder"] += world.fitted
        TALLY.vaults["every concept shares a key"] += world.every
        TALLY.vaults["kill switch"] += world.kill_switch is not None
        exercise(v, world, tmp)


# --------------------------------------------------------------------------- larger vaults
def _bulk_cards(n: int, seed: int) -> list[tuple[dict[str, Any], str]]:
    """``n`` concept versions with keys-only or repr-combination vectors (many ties), mostly
    active, a few deprecated, suppressed and of another domain."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c: dict[str, Any] = {
            "schema_version": 1,
            "id": f"m{i // 2:06d}",
            "version": "1.0.0" if i % 2 == 0 else rng.choice(["0.1.0", "1.1.0", "2.0.0"]),
            "domain": "grid_2d" if rng.random() < 0.98 else "text",
            "status": rng.choice(["active"] * 96 + ["deprecated"] * 3 + ["suppressed"]),
            "signature": {"keys": rng.sample(VOCAB, rng.randint(0, 2))},
            "template": {"template_dsl": "(x grid)"},
        }
        if rng.random() < 0.7:
            c["provenance"] = {"validated_on": rng.sample(REPR_IDS, rng.randint(1, 3))}
        out.append((c, f"bulk {i}"))
    return out


def _bulk_vault(root: Path, n: int, cfg: dict[str, Any]) -> Vault:
    v = Vault.init(root, clock=fixed_clock(1_700_000_000))
    (root / "config.toml").write_text(_config_text(cfg))
    seed = [
        (
            {
                "schema_version": 1,
                "concept": "m000000",
                "version": "1.0.0",
                "polarity": "positive",
                "grid": g,
            },
            "seed",
        )
        for g in GRIDS
    ]
    pairs = [
        (
            {
                "schema_version": 1,
                "concept": f"m{i:06d}",
                "version": "1.0.0",
                "polarity": "positive" if i % 3 else "negative",
                **({} if i % 3 else {"tier": "test", "reason": "wrong"}),
                "pair": {"input": PAIRS[i % len(PAIRS)][0], "output": PAIRS[i % len(PAIRS)][1]},
            },
            "pair",
        )
        for i in range(1, 60)
    ]
    v.write_back(cards=_bulk_cards(n, n), evidence=seed + pairs)
    return v


def _compare_bulk(v: Vault, ref: Any, queries: list[tuple[str, Any]], label: str) -> None:
    emb = v.snapshot().embedder()
    with v.retriever() as r:
        for kind, value in queries:
            q = query_from(kind, value)
            a = Asked(kind, value, q, query_vector(emb, q, None))
            for metric in METRICS:
                for mode in ("soft", "hybrid"):
                    for strategy in STRATEGIES if mode == "hybrid" else ("weighted",):
                        got = r.retrieve(value, mode=mode, similarity=metric, strategy=strategy)
                        want = _reference(ref, a, mode=mode, similarity=metric, strategy=strategy)
                        check(label, got.to_json(), want)
            got = r.retrieve(value, mode="symbolic")
            check(label, got.to_json(), _reference(ref, a, mode="symbolic"))


BULK_QUERIES: list[tuple[str, Any]] = [
    ("repr", NO_KEY_GRID),  # no shared key: hybrid is all top-up (a top-k over the rows)
    ("query", {"schema_version": 1, "grid": GRIDS[2], "constraints": ["background_preserved"]}),
    ("task", TASKS[0]),
    ("task", TASKS[4]),
    ("repr", GRIDS[5]),
]


def _bulk_test(n: int, cfg: dict[str, Any], label: str) -> int:
    """Build an ``n``-row vault on scratch space and compare BULK_QUERIES; returns the
    number of active grid rows (the rows soft mode scans)."""
    with scratch() as d:
        v = _bulk_vault(Path(d) / "v", n, cfg)
        ref = read_vault(v.root, check_cards=False)
        _compare_bulk(v, ref, BULK_QUERIES, label)
        return sum(1 for c in ref.concepts if c.status == 0 and c.domain == "grid_2d")


def test_a_vault_past_the_topk_conversion_block_equals_the_reference() -> None:
    """4,400 rows (> the kernel's 4,096-row block, and > shortlist_max so hybrid cuts)."""
    from vault.embedding import topk

    cfg = {"k": 12, "shortlist_min": 40, "shortlist_max": 300, "delta": 0.3}
    assert _bulk_test(4400, cfg, "Retriever.retrieve (4,400 rows)") > topk.BLOCK


@pytest.mark.skipif(not STRESS, reason="VAULT_STRESS=1 (make stress): a 140,000-row vault")
def test_a_vault_past_the_topk_summary_threshold_equals_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """140,000 rows, > 131,072 of them active grid concepts: soft and the hybrid top-up
    take the top-k kernel's summary path (``topk.SUMMARY_MIN_ROWS``) over several
    super-blocks (``topk.SUPER``)."""
    from vault.embedding import topk

    summaries = []
    real = topk.cached

    def spy(*args: Any) -> Any:
        summaries.append(args[1])
        return real(*args)

    monkeypatch.setattr(topk.single, "cached", spy)  # (where the single-query scan reads it)
    cfg = {"k": 10, "shortlist_min": 20, "shortlist_max": 200}
    assert _bulk_test(140_000, cfg, "Retriever.retrieve (140,000 rows)") >= topk.SUMMARY_MIN_ROWS
    assert {"parts", "full"} <= set(summaries)  # the summary path ran, for every metric


def test_the_reference_agrees_with_itself_on_a_handmade_case(tmp_path: Path) -> None:
    """The reference is not vacuous: on a 3-card vault its hybrid order and figures are
    the ones FORMAT.md's rules give by hand (rotate-90 first, overlap 1, utility 1)."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000))
    lines = (EXAMPLES / "cards.jsonl").read_text().splitlines()
    wanted = {"rotate-90", "flip-horizontal", "flip-vertical"}
    v.add([(json.loads(x), "c") for x in lines if json.loads(x)["id"] in wanted])
    ref = read_vault(v.root)
    q = query_from("task", json.loads((EXAMPLES / "tasks" / "rotate.json").read_text()))
    vec = query_vector(v.snapshot().embedder(), q, None)
    out = ref_rank(
        ref,
        domain="grid_2d",
        keys=q.all_keys(),
        vector=vec,
        cfg=RefConfig.of(ref.settings),
        mode="hybrid",
    )
    first = out["results"][0]
    assert first["id"] == "rotate-90" and first["key_overlap"] >= 1 and first["utility"] == 1.0
    cfg = Config()
    sim = first["similarity"]
    n = len([k for k in q.all_keys() if not k.startswith("domain:")])
    assert first["score"] == cfg.alpha * sim + cfg.beta * 1.0 + cfg.gamma * first["key_overlap"] / n


def test_zz_enough_cases_were_compared() -> None:
    """The make-test share compares at least 500 cases (20,000 under make stress); runs
    last in this module (pytest keeps file order)."""
    TALLY.record()
    if TALLY.cases["Retriever.retrieve"] == 0:
        pytest.skip("run with the whole module")
    assert TALLY.total() >= (20_000 if STRESS else 500), TALLY.summary()
    assert sum(TALLY.mismatches.values()) == 0 or COUNT_ONLY, TALLY.examples


def test_the_reference_defaults_are_format_s_table() -> None:
    """The reference's §11 defaults are read off FORMAT.md's table (not the library's)."""
    text = (Path(__file__).resolve().parent.parent / "FORMAT.md").read_text()
    section = text[text.index("## 11.") : text.index("## 12.")]
    table: dict[str, Any] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split("/")]
        values = [v.strip().strip("`").strip('"') for v in cells[1].split("/")]
        for name, value in zip(names, values, strict=True):
            table[name] = value
    from tests.reference.store import DEFAULTS

    for name, value in DEFAULTS.items():
        expected = type(value)(table[name])
        assert value == expected, (name, value, table[name])
    assert RefConfig() == RefConfig.of(DEFAULTS)  # the dataclass's own defaults too
