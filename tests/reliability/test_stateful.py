"""Item 8 — the stateful model test: hypothesis drives add / fork / evidence / status /
index build / rollback / rollback --to / gc / verify against an in-memory model of the vault
(the concept versions with their keys, status, status history and evidence, and the
generation records with their parents), ``runs(8, 100)`` examples × ``runs(20, 80)`` steps.

Invariants after every step: the served state equals the model's; the current generation
equals a full build of the audit log; symbolic retrieval for fixed queries equals the
model's ranking (status, overlap desc, negative evidence asc, version desc, id asc;
suppressed never; one per id). Every few steps, and at the end: verify passes without
changing a byte."""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import card
from tests.helpers import assert_sound, full_build_id
from vault.errors import NotFoundError
from vault.index.snapshot import clear_cache
from vault.records.keys import matchable
from vault.records.query import normalize_query
from vault.retrieval import retrieve
from vault.vault import Vault, fixed_clock

from .harness import STRESS, figure, runs

IDS = ["alpha", "beta", "gamma", "delta", "eps"]
SIG = ["invariant:same_dims", "invariant:palette_preserved", "feature:square",
       "feature:single_object", "feature:multi_object", "feature:symmetry_horizontal",
       "transform:flip_h"]  # fmt: skip
QUERIES = [
    {"schema_version": 1, "grid": [[1, 0], [0, 1]], "constraints": ["same_dims"]},
    {"schema_version": 1, "grid": [[2, 2, 2], [0, 3, 0]], "constraints": ["palette_preserved"]},
    {"schema_version": 1, "grid": [[4, 0, 4], [0, 0, 0], [4, 0, 4]]},
]
STATUS = ("active", "deprecated", "suppressed")


@dataclass(frozen=True)
class Entry:
    """The model of one concept version's state entry."""

    keys: frozenset[str]
    dsl: str
    status: str = "active"
    events: frozenset[str] = frozenset()  # statuses ever set by an event
    evidence: frozenset[int] = frozenset()
    positive: int = 0
    negative: int = 0


State = dict[str, Entry]  # ref -> entry


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def model_penalty(positive: int, negative: int) -> float:
    """The documented evidence model, written out: max(0, the 95% Wilson lower bound of the
    failure rate - 0.05), 0 without failures (``vault.retrieval`` module docstring)."""
    n = positive + negative
    if negative == 0:
        return 0.0
    z = 1.96
    p = negative / n
    low = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (
        1 + z * z / n
    )
    return max(low - 0.05, 0.0)


def model_ranking(state: State, query_keys: list[str], k: int) -> list[tuple[str, str, int, float]]:
    qm = set(matchable(query_keys))
    rows = []
    for name, e in state.items():
        overlap = len(e.keys & qm)
        if e.status == "suppressed" or overlap == 0:
            continue
        cid, version = name.split("@")
        neg_v = tuple(-x for x in _vkey(version))
        pen = model_penalty(e.positive, e.negative)
        rows.append((STATUS.index(e.status), -overlap, pen, neg_v, cid, version, overlap))
    rows.sort()
    out, seen = [], set()
    for _, _, pen, _, cid, version, overlap in rows:
        if cid in seen:
            continue
        seen.add(cid)
        out.append((cid, version, overlap, pen))
    return out[:k]


class VaultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(dir=base, prefix="vault-model-"))
        self.v = Vault.init(self.dir / "v", clock=fixed_clock(0))
        clear_cache()
        self.state: State = {}
        self.records: dict[int, tuple[State, int | None]] = {1: ({}, None)}
        self.current = 1
        self.evidence_n = 0
        self.steps = 0
        self.queries = [normalize_query(q) for q in QUERIES]

    def teardown(self) -> None:
        try:
            assert_sound(self.v)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            clear_cache()
            figure_steps(self.steps)

    # ------------------------------------------------------------------ model helpers
    def _publish(self, new: State) -> None:
        """A write-back made ``new`` current (publish's record rule, FORMAT §7.2)."""
        last = max(self.records)
        last_state, last_parent = self.records[last]
        if last_state == new and last_parent == self.current:
            self.current = last  # the same generation and parent: the record is reused
        else:
            self.records[last + 1] = (new, self.current)
            self.current = last + 1
        self.state = new

    def _refs(self) -> list[str]:
        return sorted(self.state)

    # ------------------------------------------------------------------ rules
    @rule(i=st.integers(0, len(IDS) - 1))
    def add(self, i: int) -> None:
        cid = IDS[i]
        # one card per id at 1.0.0 (re-adding the same bytes is a no-op)
        sig = sorted({SIG[(i + j) % len(SIG)] for j in range(1 + i % 3)})
        name = f"{cid}@1.0.0"
        self.v.add([(card(cid, sig), "model")])
        self.steps += 1
        if name not in self.state:
            self._publish(
                {**self.state, name: Entry(frozenset(sig) | {"domain:grid_2d"}, "(x grid)")}
            )

    @precondition(lambda self: bool(self.state))
    @rule(data=st.data(), keys=st.sets(st.sampled_from(SIG), min_size=1, max_size=3))
    def fork(self, data: Any, keys: set[str]) -> None:
        cid = data.draw(st.sampled_from(sorted({r.split("@")[0] for r in self.state})))
        top = max(_vkey(r.split("@")[1]) for r in self.state if r.split("@")[0] == cid)
        version = f"{top[0]}.{top[1] + 1}.0"
        dsl = f"(y{len(keys)} grid)"
        self.v.add([(card(cid, sorted(keys), dsl=dsl), "model")], fork=True)
        self.steps += 1
        entry = Entry(frozenset(keys) | {"domain:grid_2d"}, dsl)
        newest = self.state[f"{cid}@{top[0]}.{top[1]}.{top[2]}"]
        if (newest.keys, newest.dsl) == (entry.keys, entry.dsl):
            return  # the newest version holds this content already: no new version
        self._publish({**self.state, f"{cid}@{version}": entry})

    @precondition(lambda self: bool(self.state))
    @rule(data=st.data(), positive=st.booleans(), grid=st.booleans())
    def evidence(self, data: Any, positive: bool, grid: bool) -> None:
        name = data.draw(st.sampled_from(self._refs()))
        cid, version = name.split("@")
        self.evidence_n += 1
        n = self.evidence_n
        ev: dict[str, Any] = {
            "schema_version": 1,
            "concept": cid,
            "version": version,
            "polarity": "positive" if positive else "negative",
            "task": f"t{n}",
        }
        if not positive:
            ev.update(tier="train", reason="wrong_output")
        elif grid:
            ev["grid"] = [[n % 10, 1], [2, 3]]
        self.v.add_evidence([(ev, "model")])
        self.steps += 1
        e = self.state[name]
        e = replace(
            e,
            evidence=e.evidence | {n},
            positive=e.positive + positive,
            negative=e.negative + (not positive),
        )
        self._publish({**self.state, name: e})

    @precondition(lambda self: bool(self.state))
    @rule(data=st.data(), status=st.sampled_from(STATUS))
    def status(self, data: Any, status: str) -> None:
        name = data.draw(st.sampled_from(self._refs()))
        cid, version = name.split("@")
        self.v.set_status(cid, version, status)
        self.steps += 1
        e = self.state[name]
        if e.status != status:
            self._publish(
                {**self.state, name: replace(e, status=status, events=e.events | {status})}
            )

    @rule()
    def build(self) -> None:
        self.v.build_index()
        self.steps += 1

    @rule()
    def rollback(self) -> None:
        parent = self.records[self.current][1]
        self.steps += 1
        if parent is None or parent not in self.records:
            try:
                self.v.rollback()
            except NotFoundError:
                return
            raise AssertionError(f"rollback from {self.current} (parent {parent}) was accepted")
        self.v.rollback()
        self.current = parent
        self.state = self.records[parent][0]

    @rule(data=st.data())
    def rollback_to(self, data: Any) -> None:
        n = data.draw(st.sampled_from(sorted(self.records)))
        self.v.rollback(str(n))
        self.steps += 1
        self.current = n
        self.state = self.records[n][0]

    @rule(keep=st.integers(1, 4))
    def gc(self, keep: int) -> None:
        self.v.gc(keep)
        self.steps += 1
        kept = set(sorted(self.records)[-keep:]) | {self.current}
        self.records = {n: r for n, r in self.records.items() if n in kept}

    @rule()
    def verify(self) -> None:
        assert_sound(self.v)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def served_state_is_the_model(self) -> None:
        clear_cache()
        snap = self.v.snapshot()
        assert snap.number == self.current
        got = {
            name: (
                frozenset(e["keys"]),
                e["status"],
                e["positive"],
                e["negative"],
                len(e["evidence"]),
            )
            for name, e in snap.state.concepts()
        }
        want = {
            name: (e.keys, e.status, e.positive, e.negative, len(e.evidence))
            for name, e in self.state.items()
        }
        assert got == want
        assert sorted(g.number for g in self.v.generations.history()) == sorted(self.records)

    @invariant()
    def index_is_a_full_build(self) -> None:
        cur = self.v.generations.current()
        assert cur is not None and full_build_id(self.v) == cur.generation

    @invariant()
    def symbolic_ranking_is_the_model(self) -> None:
        cfg = self.v.config()
        for q in self.queries:
            r = retrieve(self.v, q, cfg, "symbolic")
            got = [(h.id, h.version, h.key_overlap, h.penalty) for h in r.results]
            want = model_ranking(self.state, q.all_keys(), cfg.k)
            assert [g[:3] for g in got] == [w[:3] for w in want]
            pairs = zip(got, want, strict=True)
            assert all(math.isclose(g[3], w[3], abs_tol=1e-12) for g, w in pairs)


_steps: list[int] = []


def figure_steps(n: int) -> None:
    _steps.append(n)


VaultMachine.TestCase.settings = settings(
    max_examples=runs(8, 100),
    stateful_step_count=runs(20, 80),
    deadline=None,
    derandomize=not STRESS,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TestVaultModel(VaultMachine.TestCase):  # type: ignore[name-defined,misc]
    @classmethod
    def tearDownClass(cls) -> None:
        figure(
            "stateful",
            examples=len(_steps),
            steps=sum(_steps),
            max_steps=max(_steps, default=0),
            settings={"max_examples": runs(8, 100), "stateful_step_count": runs(20, 80)},
        )
        super().tearDownClass()
