"""The snapshot model: each defect the review found, and the random-sequence property.

Every test here failed on the design before the snapshot model (generations with parents,
the index a fold of acknowledged records only, read-only verify, immutable snapshots for
readers, a closed key vocabulary, all D4 symmetries of a pair)."""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.canonical import canonical_bytes
from vault.errors import CorruptionError, InvalidInputError, NotFoundError, VaultError
from vault.grid.reprs import grid_to_repr, repr_id
from vault.index.snapshot import clear_cache
from vault.ops import rollback as rollback_mod
from vault.ops import write as writeback
from vault.records.keys import task_keys
from vault.records.query import Pair, Query, normalize_query
from vault.retrieval import retrieve
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import card
from .helpers import assert_sound, concepts, full_build_id, tree

runner = CliRunner()
GRID_A = [[1, 2, 0], [0, 1, 2], [2, 0, 1]]
GRID_B = [[3, 3, 0, 0], [0, 3, 3, 0], [0, 0, 3, 3]]


def vector(v: Vault, name: str) -> list[int]:
    t = v.snapshot().table
    row = t.find(name)
    assert row is not None
    return [int(x) for x in t.matrix[row]]


def evidence(concept: str, **extra: Any) -> dict[str, Any]:
    ev = {"schema_version": 1, "concept": concept, "version": "1.0.0", "polarity": "positive"}
    ev.update(extra)
    return ev


def concepts_of(v: Vault, number: int) -> dict[str, Any]:
    from vault.index.generations import CurrentRef
    from vault.index.snapshot import Snapshot

    g = v.generations.find(str(number))
    return dict(Snapshot.open(v.objects, CurrentRef(g.generation, g.number, 0)).state.concepts())


def served(v: Vault) -> set[str]:
    return {name.split("@")[0] for name in concepts(v)}


# --------------------------------------------------------------------------- 1. rollback
def test_rollback_returns_to_the_previously_current_state(vault: Vault) -> None:
    vault.add([(card("good", ["transform:flip_h"]), "good")])
    vault.add([(card("junk", ["transform:flip_h"]), "junk")])
    vault.rollback()
    assert served(vault) == {"good"}
    vault.add([(card("w", ["transform:flip_h"]), "w")])
    assert served(vault) == {"good", "w"}
    vault.rollback()  # undoes `add w`: back to what was current before it, junk stays out
    assert served(vault) == {"good"}
    assert_sound(vault)
    vault.rollback()  # and once more: before `add good`
    assert served(vault) == set()
    with pytest.raises(NotFoundError, match="no earlier generation"):
        vault.rollback()
    assert_sound(vault)


def test_rollback_walks_parents_and_to_redoes(vault: Vault) -> None:
    for name in ("a", "b", "c"):
        vault.add([(card(name, ["feature:square"]), name)])
    history = {g.number: g for g in vault.generations.history()}
    assert [history[n].parent for n in (1, 2, 3, 4)] == [None, 1, 2, 3]
    vault.rollback()
    vault.rollback()
    assert served(vault) == {"a"}
    vault.rollback("4")  # undo of the undo
    assert served(vault) == {"a", "b", "c"}
    vault.add([(card("d", ["feature:square"]), "d")])
    assert vault.generations.last().parent == 4  # type: ignore[union-attr]
    assert_sound(vault)


def test_cli_rollback_after_rollback_and_write(tmp_path: Path) -> None:
    root = str(tmp_path / "v")
    env = {"SOURCE_DATE_EPOCH": "0"}

    def ok(*args: str) -> Any:
        result = runner.invoke(app, ["--vault", root, *args, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    ok("init")
    for name in ("good", "junk"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(card(name, ["transform:flip_h"])))
        ok("add", str(path))
    ok("rollback")
    path = tmp_path / "w.json"
    path.write_text(json.dumps(card("w", ["transform:flip_h"])))
    ok("add", str(path))
    out = ok("rollback")
    assert out["current"]["counts"]["concepts"] == 1
    task = tmp_path / "t.json"
    task.write_text(json.dumps({"train": [{"input": GRID_B, "output": [r[::-1] for r in GRID_B]}]}))
    ids = [h["id"] for h in ok("retrieve", "--task", str(task), "--mode", "symbolic")["results"]]
    assert ids == ["good"]


# --------------------------------------------------------------------------- 2. inputs
def test_late_repr_reembeds_the_card_that_cites_it(vault: Vault) -> None:
    rid = repr_id(grid_to_repr(GRID_A))
    prov = {"validated_on": [rid, "arc:some-task"]}
    vault.add([(card("c", ["feature:square"], provenance=prov), "c")])
    vault.add([(card("plain", ["feature:square"]), "plain")])
    before = vector(vault, "c@1.0.0")
    assert before == vector(vault, "plain@1.0.0")  # the repr is not known: keys only
    assert_sound(vault)
    # a later write-back stores the repr (as another concept's evidence): now it counts
    vault.write_back([(card("d", ["feature:square"]), "d")], [(evidence("d", grid=GRID_A), "e")])
    after = vector(vault, "c@1.0.0")
    assert after != before and after[:26] != [0] * 26  # the appearance block is filled
    assert_sound(vault)


def test_repr_never_stored_and_orphan_repr_do_not_count(vault: Vault) -> None:
    rep = grid_to_repr(GRID_B)
    orphan = vault.objects.put(canonical_bytes(rep))  # a write-back killed before its line
    never = repr_id(grid_to_repr(GRID_A))
    prov = {"validated_on": [orphan, never]}
    vault.add([(card("c", ["feature:square"], provenance=prov), "c")])
    vault.add([(card("plain", ["feature:square"]), "plain")])
    assert vector(vault, "c@1.0.0") == vector(vault, "plain@1.0.0")
    with pytest.raises(NotFoundError, match="unknown repr id"):
        vault.add_evidence([(evidence("c", repr_id=orphan), "e")])
    assert_sound(vault)
    result = vault.gc(1)
    assert not vault.objects.has(orphan) and result.removed_objects > 0
    assert_sound(vault)  # the current generation still verifies: nothing it used is gone


def test_gc_keeps_what_kept_generations_reach(vault: Vault) -> None:
    vault.write_back([(card("a", ["feature:square"]), "a")], [(evidence("a", grid=GRID_A), "e")])
    vault.add([(card("junk", ["feature:square"]), "junk")])
    vault.rollback()
    vault.gc(1)  # the newest generation (3, with junk) and the current one (2)
    assert [g.number for g in vault.generations.history()] == [2, 3]
    junk = concepts_of(vault, 3)["junk@1.0.0"]["card"]
    assert vault.objects.has(junk)
    vault.add([(card("b", ["feature:square"]), "b")])
    vault.gc(1)  # now only generation 4 (a, b): junk's records are unreachable
    assert [g.number for g in vault.generations.history()] == [4]
    assert not vault.objects.has(junk)
    assert_sound(vault)
    clear_cache()
    assert served(vault) == {"a", "b"}


# --------------------------------------------------------------------------- 3. verify
def test_verify_changes_no_byte_and_reports_a_truncated_cache_entry(example_vault: Vault) -> None:
    v = example_vault
    before = tree(v.root)
    assert v.verify().ok
    assert tree(v.root) == before
    entry = v.cache.packs()[0]
    entry.chmod(0o644)
    entry.write_bytes(entry.read_bytes()[:-20])
    before = tree(v.root)
    report = v.verify()
    assert not report.ok
    assert [p.path for p in report.problems if p.kind.startswith("cache_")] == [str(entry)]
    assert tree(v.root) == before  # not repaired, not rewritten
    result = runner.invoke(app, ["--vault", str(v.root), "verify"])
    assert result.exit_code == 1 and str(entry) in result.stderr
    assert tree(v.root) == before


def test_verify_does_not_repopulate_a_deleted_cache(example_vault: Vault) -> None:
    v = example_vault
    for entry in list(v.cache.entries()) + v.cache.packs():
        entry.unlink()
    before = tree(v.root)
    assert v.verify().ok
    assert tree(v.root) == before
    assert list(v.cache.entries()) == [] and v.cache.packs() == []


# --------------------------------------------------------------------------- 4. readers
def _writer(root: str, n: int) -> None:
    v = Vault.open(root, clock=fixed_clock(0))
    for i in range(n):
        v.write_back(
            [(card(f"w{i}", ["transform:rotate_90"]), "w")],
            [(evidence(f"w{i}", pair={"input": GRID_B, "output": GRID_B[::-1]}), "e")],
        )


def test_readers_never_see_a_mix_while_another_process_writes(example_vault: Vault) -> None:
    root = example_vault.root
    q = normalize_query({"schema_version": 1, "grid": GRID_B})
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_writer, args=(str(root), 25))
    proc.start()
    reads, generations = 0, set()
    while proc.is_alive() or reads < 20:
        v = Vault.open(root)
        r = retrieve(v, q, v.config(), "hybrid")
        assert r.mode_used == "hybrid", r.fallback_reason
        generations.add(r.generation)
        reads += 1
    proc.join(60)
    assert proc.exitcode == 0
    assert len(generations) > 1  # the reads really overlapped the writes
    assert_sound(Vault.open(root))


# --------------------------------------------------------------------------- 5. catch-up
def test_rollback_killed_after_its_audit_line_is_completed_by_the_next_write(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add([(card("good", ["transform:flip_h"]), "good")])
    vault.add([(card("junk", ["transform:flip_h"]), "junk")])

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(rollback_mod, "point_current", die)
    with pytest.raises(KeyboardInterrupt):
        vault.rollback()
    monkeypatch.undo()
    assert vault.audit.entries()[-1].op == "rollback"  # acknowledged
    assert served(vault) == {"good", "junk"} and vault.stale()
    vault.add([(card("other", ["feature:square"]), "other")])  # an unrelated write-back
    assert served(vault) == {"good", "other"}
    assert vault.generations.last().parent == 2  # type: ignore[union-attr]
    assert_sound(vault)


def test_only_a_pending_rollback_is_finished_without_a_new_generation(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add([(card("a", ["feature:square"]), "a")])
    monkeypatch.setattr(rollback_mod, "point_current", lambda *a, **k: None)
    vault.rollback()
    monkeypatch.undo()
    n = len(vault.generations.history())
    vault.build_index()
    assert served(vault) == set() and len(vault.generations.history()) == n
    assert vault.snapshot().number == 1
    assert_sound(vault)


def test_write_back_killed_after_its_audit_line_is_caught_up(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add([(card("a", ["feature:square"]), "a")])

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(writeback, "publish", die)
    with pytest.raises(KeyboardInterrupt):
        vault.add([(card("b", ["feature:square"]), "b")])
    monkeypatch.undo()
    assert served(vault) == {"a"}
    report = vault.verify()
    assert report.ok and "index_stale" in {p.kind for p in report.problems}
    vault.rollback()  # the rollback first completes `add b`, then undoes it
    assert served(vault) == {"a"}
    vault.rollback("3")
    assert served(vault) == {"a", "b"}
    assert_sound(vault)


# --------------------------------------------------------------------------- 6. keys
def test_alias_in_signature_keys_matches_the_canonical_constraint(vault: Vault) -> None:
    vault.add([(card("c", ["invariant:shape_preserved"]), "c")])
    stored = vault.concept_card("c")[1]
    assert stored["signature"]["keys"] == ["invariant:same_dims"]
    for constraint in ("shape_preserved", "same_dims"):
        q = normalize_query({"schema_version": 1, "grid": GRID_A, "constraints": [constraint]})
        hits = retrieve(vault, q, vault.config(), "symbolic").results
        assert [(h.id, h.key_overlap) for h in hits] == [("c", 1)]


@pytest.mark.parametrize(
    ("key", "hint"),
    [("transform:rotate90", "transform:rotate_90"), ("invariant:same_dim", "invariant:same_dims")],
)
def test_unknown_closed_key_is_refused_with_the_nearest(vault: Vault, key: str, hint: str) -> None:
    n = vault.audit.last_seq()
    with pytest.raises(InvalidInputError, match=f"did you mean {hint}") as exc:
        vault.add([(card("c", [key]), "cards.jsonl:3")])
    assert "cards.jsonl:3" in str(exc.value) and "signature.keys[0]" in str(exc.value)
    assert vault.audit.last_seq() == n
    vault.add([(card("c", ["feature:anything_goes"]), "open family")])


# --------------------------------------------------------------------------- 7. pairs
def test_symmetric_input_keeps_every_consistent_transform() -> None:
    sym = [[1, 2, 3], [2, 5, 6], [3, 6, 9]]  # equals its transpose: flip_h == rotate_90
    other = [[1, 0, 0], [4, 4, 0]]
    pairs = [Pair(grid_to_repr(g), grid_to_repr([row[::-1] for row in g])) for g in (sym, other)]
    facts = Query(pairs=tuple(pairs)).facts()
    assert {"flip_h", "rotate_90"} <= facts[0].d4 and facts[1].d4 == {"flip_h"}
    keys = task_keys(facts, [p.input for p in pairs])
    assert "transform:flip_h" in keys and "transform:rotate_90" not in keys


# --------------------------------------------------------------------------- 8. smaller
def test_corrupted_record_is_a_clean_error_in_index_build(vault: Vault) -> None:
    vault.add([(card("c", ["feature:square"]), "c")])
    path = vault.objects.path(concepts(vault)["c@1.0.0"]["card"])  # type: ignore[arg-type]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"signature"', b'"signatur_"'))
    with pytest.raises(CorruptionError, match="does not match its address"):
        vault.build_index()
    result = runner.invoke(app, ["--vault", str(vault.root), "index", "build"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr


def test_objects_are_read_only(example_vault: Vault) -> None:
    modes = {
        stat.S_IMODE(example_vault.objects.path(d).stat().st_mode) for d in example_vault.objects
    }
    assert modes == {0o444}
    view = example_vault.view.paths()["concept_vectors.jsonl"]
    assert view.stat().st_nlink == 1  # derived data of its own (FORMAT §8), no object's link


def test_repr_output_carries_its_id(tmp_path: Path) -> None:
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(GRID_A))
    result = runner.invoke(app, ["repr", str(grid)])
    assert result.exit_code == 0
    rep = json.loads(result.stdout)
    assert rep["repr_id"] == repr_id(grid_to_repr(GRID_A))
    q = normalize_query({"schema_version": 1, "repr": rep})  # the output is valid input
    assert q.repr is not None and repr_id(q.repr) == rep["repr_id"]
    with pytest.raises(InvalidInputError, match="repr_id"):
        normalize_query({"schema_version": 1, "repr": {**rep, "repr_id": "0" * 64}})


# --------------------------------------------------------------------------- the property
KEYS = ["transform:rotate_90", "transform:flip_h", "invariant:same_dims", "feature:square"]
GRIDS = [GRID_A, GRID_B, [[5]], [[0, 7], [7, 0]], [[1, 1, 1], [0, 2, 0]]]


def _step(v: Vault, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> str:
    ids = sorted({name.split("@")[0] for name in concepts(v)})
    kind = rng.choice(
        [
            "add",
            "add",
            "fork",
            "evidence",
            "evidence",
            "negative",
            "status",
            "rollback",
            "rollback_to",
            "build",
            "gc",
            "orphan",
            "crash",
        ]
    )
    if kind in ("add", "crash") or not ids:
        cid = f"c{rng.randrange(8)}"
        cited = [repr_id(grid_to_repr(rng.choice(GRIDS))) for _ in range(rng.randint(0, 2))]
        c = card(cid, rng.sample(KEYS, rng.randint(1, 3)), provenance={"validated_on": cited})
        if kind == "crash":  # killed after the acknowledgement: the next op must catch up
            monkeypatch.setattr(writeback, "publish", _die)
            try:
                v.add([(c, "op")])
            except (KeyboardInterrupt, VaultError):
                pass
            finally:
                monkeypatch.undo()
            return "crash"
        v.add([(c, "op")])
    elif kind == "fork":
        v.add([(card(rng.choice(ids), rng.sample(KEYS, 2), dsl="(fork x)"), "op")], fork=True)
    elif kind in ("evidence", "negative"):
        cid = rng.choice(ids)
        version = v.snapshot().versions(cid)[-1]
        ev: dict[str, Any] = {**evidence(cid), "version": version}
        g = rng.choice(GRIDS)
        if kind == "negative":
            ev.update(polarity="negative", tier="train", reason="wrong_output")
        elif rng.random() < 0.5:
            ev["grid"] = g
        else:
            ev["pair"] = {"input": g, "output": [row[::-1] for row in g]}
        v.add_evidence([(ev, "op")])
    elif kind == "status":
        cid = rng.choice(ids)
        version = v.snapshot().versions(cid)[-1]
        v.set_status(cid, version, rng.choice(["active", "deprecated", "suppressed"]))
    elif kind == "rollback":
        v.rollback()
    elif kind == "rollback_to":
        v.rollback(str(rng.choice(v.generations.history()).number))
    elif kind == "build":
        v.build_index()
    elif kind == "gc":
        v.gc(rng.randint(1, 3))
    elif kind == "orphan":
        v.objects.put(canonical_bytes(grid_to_repr(rng.choice(GRIDS))))
    return kind


def _die(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("seed", range(8))
def test_random_sequences_incremental_equals_full_and_verify_holds(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    done: list[str] = []
    for i in range(18):
        try:
            done.append(_step(v, rng, monkeypatch))
        except NotFoundError as exc:  # e.g. rollback past the first generation
            done.append(f"refused: {exc}")
        except VaultError as exc:
            if "different content" not in str(exc):
                raise
        if done[-1] != "crash":
            cur = v.generations.current()
            assert cur is not None and full_build_id(v) == cur.generation, done
        if i % 6 == 5:
            assert_sound(v)
    v.build_index()
    assert_sound(v)


def test_the_rollback_plan_is_the_rollback_after_the_catch_up(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rollback(dry_run=True)`` (what `vault rollback` shows before it asks) plans as the
    rollback does: after completing an acknowledged write the index missed, not before."""
    vault.add([(card("a", ["feature:square"]), "a")])  # generation 2

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(writeback, "publish", die)
    with pytest.raises(KeyboardInterrupt):
        vault.add([(card("b", ["feature:square"]), "b")])  # acknowledged, not indexed
    monkeypatch.undo()
    assert vault.current_ref() is not None and vault.current_ref().number == 2  # type: ignore[union-attr]
    plan = vault.rollback(dry_run=True)
    assert plan.dry_run and plan.to_json()["dry_run"] is True
    assert (plan.previous_number, plan.current.number) == (3, 2)  # from `add b`'s generation
    assert plan.previous_record is not None and plan.previous_record.op == "catch-up"
    before = tree(vault.root)
    again = vault.rollback(dry_run=True)
    assert tree(vault.root) == before  # a plan writes nothing once caught up
    assert (again.previous_number, again.current.number) == (3, 2)
    done = vault.rollback()
    assert not done.dry_run and "dry_run" not in done.to_json()
    assert (done.previous_number, done.current.number) == (3, 2) and served(vault) == {"a"}
    assert vault.rollback("2", dry_run=True).changed is False  # already current: final result


def test_a_write_back_reads_each_concept_shard_once(vault: Vault, monkeypatch: Any) -> None:
    """A write-back naming concepts spread over every shard reads each shard of the
    snapshot's state once, even when the record memo holds almost nothing (at 10^5
    concepts it cannot hold the 256 shards: a 10,000-card write-back parsed them ~18,000
    times); ``entries`` gives what ``concept`` gives, None for a version not stored."""
    from vault.index import state as state_mod

    vault.add([(card(f"s{i:04d}", ["transform:rotate_90"]), f"c{i}") for i in range(600)])
    snap = vault.snapshot()
    names = [f"s{i:04d}@1.0.0" for i in range(0, 600, 7)] + ["nope@1.0.0", "s0001@9.9.9"]
    assert snap.entries(names) == {n: snap.concept(n) for n in names}
    assert snap.entries(names)["nope@1.0.0"] is None
    loads: list[int] = []
    real = state_mod.State._load

    def counted(self: Any, kind: str, i: int) -> Any:
        if kind == "concepts":
            loads.append(i)
        return real(self, kind, i)

    monkeypatch.setattr(state_mod.State, "_load", counted)
    monkeypatch.setattr(vault.objects, "_memo_max", 1)  # remembers nothing
    clear_cache()
    evidence = [
        (
            {
                "schema_version": 1,
                "concept": f"s{i:04d}",
                "version": "1.0.0",
                "polarity": "positive",
                "grid": [[1, 2], [3, i % 10]],
            },
            f"e{i}",
        )
        for i in range(600)
    ]
    more = [(card(f"s{i:04d}", ["transform:rotate_90"]), f"c{i}") for i in range(600)]
    planned: list[int] = []
    plan_status = writeback._plan_status

    def after_planning(*args: Any) -> Any:  # cards and evidence planned: what was read
        planned.extend(loads)
        return plan_status(*args)

    monkeypatch.setattr(writeback, "_plan_status", after_planning)
    result = writeback.write_back(vault, more, evidence)
    assert len(result.unchanged) == 600 and result.added  # the cards as they were
    assert len(planned) == len(set(planned)) > 200, sorted(planned)
