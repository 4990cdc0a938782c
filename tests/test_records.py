"""Records: card / evidence / query normalization and the shared key vocabulary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault import Vault, normalize_query, retrieve, task_query
from vault.canonical import canonical_bytes, sha256_hex
from vault.errors import ConflictError, InvalidInputError, NotFoundError
from vault.grid.reprs import grid_to_repr, repr_id
from vault.records.cards import normalize_card, normalize_evidence, status_event
from vault.records.keys import (
    ALIASES,
    INVARIANTS,
    concept_keys,
    matchable,
    obligation_key,
    template_keys,
)
from vault_cli.app import app

from .conftest import EXAMPLES, card
from .helpers import concepts

runner = CliRunner()

GRID = [[0, 0, 3], [0, 3, 3], [2, 0, 0]]
ROT = [[2, 0, 0], [0, 3, 0], [0, 3, 3]]  # GRID rotated 90 degrees clockwise


def ev(
    concept: str = "c", version: str = "1.0.0", polarity: str = "positive", **extra: Any
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "schema_version": 1,
        "concept": concept,
        "version": version,
        "polarity": polarity,
    }
    e.update(extra)
    return e


def entry_of(v: Vault, concept: str, version: str = "1.0.0") -> dict[str, Any]:
    entry: dict[str, Any] = concepts(v)[f"{concept}@{version}"]
    return entry


def audit_len(v: Vault) -> int:
    return len(v.audit.entries())


# --------------------------------------------------------------------------- cards
def test_card_normal_form_fills_defaults_and_sorts() -> None:
    c = card(
        "x",
        ["transform:rotate_90", "feature:square", "transform:rotate_90"],
        proof_obligations=["same_dims", "palette_preserved", "same_dims"],
    )
    n = normalize_card(c, "c.json")
    assert n["kind"] == "concept"
    assert n["status"] == "active"
    assert n["signature"] == {"keys": ["feature:square", "transform:rotate_90"]}
    assert n["template"] == {"template_dsl": "(x grid)", "params": {}}
    assert n["proof_obligations"] == ["palette_preserved", "same_dims"]
    assert n["counterexamples"] == []
    assert n["provenance"] == {}
    assert n["compatibility"] == {"repr_schema": 1, "dsl_grammar": "1"}
    # the caller's object is not modified
    assert "kind" not in c and "status" not in c


def test_card_normal_form_is_idempotent() -> None:
    n = normalize_card(card("x", ["feature:square"]), "c.json")
    assert normalize_card(n, "c.json") == n


def test_equivalent_cards_have_same_bytes_and_address(vault: Vault) -> None:
    a = card("x", ["feature:square", "transform:flip_h"], proof_obligations=["same_dims"])
    b = card(
        "x",
        ["transform:flip_h", "feature:square", "feature:square"],
        proof_obligations=["same_dims", "same_dims"],
        kind="concept",
        status="active",
        counterexamples=[],
        provenance={},
        compatibility={"repr_schema": 1, "dsl_grammar": "1"},
    )
    b["template"] = {"params": {}, "template_dsl": "(x grid)"}
    assert canonical_bytes(normalize_card(a)) == canonical_bytes(normalize_card(b))
    r1 = vault.add([(a, "a.json")])
    n = audit_len(vault)
    r2 = vault.add([(b, "b.json")])
    assert r1.added == ["x@1.0.0"]
    assert r2.added == [] and r2.unchanged == ["x@1.0.0"]
    assert audit_len(vault) == n
    stored = vault.objects.get(entry_of(vault, "x")["card"])
    assert stored == canonical_bytes(normalize_card(a))
    assert entry_of(vault, "x")["card"] == sha256_hex(stored)


def test_changed_card_same_version_is_conflict(vault: Vault) -> None:
    vault.add([(card("x", ["feature:square"]), "a.json")])
    with pytest.raises(ConflictError, match=r"b\.json:.*x@1\.0\.0.*different content"):
        vault.add([(card("x", ["feature:single_object"]), "b.json")])
    # a new version is fine
    r = vault.add([(card("x", ["feature:single_object"], version="1.0.1"), "b.json")])
    assert r.added == ["x@1.0.1"]


def test_same_batch_conflict_refused_and_nothing_added(vault: Vault) -> None:
    n = audit_len(vault)
    with pytest.raises(ConflictError, match="twice"):
        vault.add(
            [(card("x", ["feature:square"]), "f:1"), (card("x", ["feature:single_object"]), "f:2")]
        )
    assert audit_len(vault) == n
    assert concepts(vault) == {}


def test_concept_keys_vocabulary() -> None:
    c = normalize_card(
        card(
            "x",
            ["feature:square"],
            dsl="(rotate_90 (flip_h grid))",
            proof_obligations=["same_dims"],
        )
    )
    assert concept_keys(c) == [
        "domain:grid_2d",
        "feature:square",
        "invariant:same_dims",
        "transform:flip_h",
        "transform:rotate_90",
    ]
    assert matchable(concept_keys(c)) == [k for k in concept_keys(c) if k != "domain:grid_2d"]


def test_template_keys_only_known_whole_operator_names() -> None:
    assert template_keys("(rotate_90 grid)") == {"transform:rotate_90"}
    assert template_keys("(rotate_90x grid)") == set()
    assert template_keys("(my_tile grid)") == set()
    assert template_keys("(tile (crop grid) 2 2)") == {"transform:tile", "transform:crop"}
    assert template_keys("") == set()


def test_index_entry_keys_include_obligations_and_template(vault: Vault) -> None:
    vault.add([(card("x", [], dsl="(transpose grid)", proof_obligations=["same_dims"]), "f")])
    assert entry_of(vault, "x")["keys"] == [
        "domain:grid_2d",
        "invariant:same_dims",
        "transform:transpose",
    ]


# ------------------------------------------------------------------ obligations = constraints
def test_obligation_and_constraint_same_dims_give_same_key(vault: Vault) -> None:
    vault.add([(card("sd", [], proof_obligations=["same_dims"]), "f")])
    card_keys = entry_of(vault, "sd")["keys"]
    q = normalize_query({"schema_version": 1, "grid": GRID, "constraints": ["same_dims"]}, "q")
    assert "invariant:same_dims" in card_keys
    assert "invariant:same_dims" in list(q.all_keys())
    assert obligation_key("same_dims") == "invariant:same_dims"
    # and the shared key actually matches in retrieval
    result = retrieve(vault, q, vault.config(), "symbolic")
    assert [(h.id, h.key_overlap) for h in result.results] == [("sd", 1)]


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_aliases_map_to_the_same_key(alias: str, name: str) -> None:
    assert obligation_key(alias) == obligation_key(name) == INVARIANTS[name]


def test_alias_shape_preserved_on_card_and_query(vault: Vault) -> None:
    vault.add([(card("sp", [], proof_obligations=["shape_preserved"]), "f")])
    assert "invariant:same_dims" in entry_of(vault, "sp")["keys"]
    q = normalize_query({"schema_version": 1, "grid": GRID, "constraints": ["shape_preserved"]})
    assert "invariant:same_dims" in list(q.all_keys())
    q2 = normalize_query({"schema_version": 1, "grid": GRID, "constraints": ["same_dims"]})
    assert q.all_keys() == q2.all_keys()
    result = retrieve(vault, q, vault.config(), "symbolic")
    assert [h.id for h in result.results] == ["sp"]


def test_alias_obligation_normalizes_to_canonical_name() -> None:
    a = normalize_card(card("x", [], proof_obligations=["shape_preserved"]))
    b = normalize_card(card("x", [], proof_obligations=["same_dims"]))
    assert canonical_bytes(a) == canonical_bytes(b)


def test_unknown_obligation_rejected_with_known_list() -> None:
    with pytest.raises(InvalidInputError) as exc:
        normalize_card(card("x", [], proof_obligations=["same_dims", "sorta_same"]), "c.json:3")
    msg = str(exc.value)
    assert msg.startswith("c.json:3: ")
    assert "proof_obligations[1]" in msg
    assert "'sorta_same'" in msg
    for known in INVARIANTS:
        assert known in msg


def test_unknown_constraint_rejected_with_known_list() -> None:
    with pytest.raises(InvalidInputError) as exc:
        normalize_query({"schema_version": 1, "grid": GRID, "constraints": ["bogus"]}, "q.json")
    msg = str(exc.value)
    assert msg.startswith("q.json: ")
    assert "constraints[0]" in msg and "'bogus'" in msg
    for known in INVARIANTS:
        assert known in msg


def test_unknown_constraint_error_names_its_input_position() -> None:
    with pytest.raises(InvalidInputError) as exc:
        normalize_query(
            {"schema_version": 1, "grid": GRID, "constraints": ["same_dims", "bogus"]}, "q.json"
        )
    assert exc.value.field == "constraints[1]"


def test_obligation_key_unknown_name_lists_known() -> None:
    with pytest.raises(InvalidInputError, match="known: background_preserved"):
        obligation_key("nope")


# --------------------------------------------------------------------------- queries
def test_query_normal_form() -> None:
    constraints = ["same_dims", "palette_preserved", "same_dims"]
    q = normalize_query({"schema_version": 1, "grid": GRID, "constraints": constraints})
    assert q.domain == "grid_2d"
    assert q.constraints == ("palette_preserved", "same_dims")
    assert q.repr == grid_to_repr(GRID)
    assert q.pairs == ()


def test_query_grid_and_repr_forms_are_equivalent() -> None:
    rep = grid_to_repr(GRID, {"source": "somewhere"})
    a = normalize_query({"schema_version": 1, "grid": GRID})
    b = normalize_query({"schema_version": 1, "repr": rep})
    assert a.repr == b.repr
    assert a.all_keys() == b.all_keys()


def test_query_keys_from_repr_features() -> None:
    q = normalize_query({"schema_version": 1, "grid": [[0, 0, 0], [0, 1, 0], [0, 0, 0]]})
    assert q.all_keys() == [
        "domain:grid_2d",
        "feature:single_object",
        "feature:square",
        "feature:symmetry_anti_diagonal",
        "feature:symmetry_diagonal",
        "feature:symmetry_horizontal",
        "feature:symmetry_rot180",
        "feature:symmetry_vertical",
    ]


def test_query_keys_from_pairs() -> None:
    q = normalize_query({"schema_version": 1, "pairs": [{"input": GRID, "output": ROT}]})
    keys = q.all_keys()
    assert "transform:rotate_90" in keys
    assert "invariant:same_dims" in keys
    assert "invariant:palette_preserved" in keys
    assert "invariant:colour_count_preserved" in keys
    assert "transform:identity" not in keys


def test_query_kind_defaults_and_wrong_kind_refused() -> None:
    normalize_query({"schema_version": 1, "kind": "query", "grid": GRID})
    with pytest.raises(InvalidInputError, match="kind"):
        normalize_query({"schema_version": 1, "kind": "concept", "grid": GRID}, "q.json")


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ({"schema_version": 1}, "needs a repr"),
        ({"schema_version": 1, "grid": GRID, "repr": grid_to_repr(GRID)}, "either repr or grid"),
        ({"schema_version": 1, "grid": GRID, "colour": 3}, "field 'colour'"),
        ({"grid": GRID}, "field 'schema_version'"),
        ({"schema_version": 1, "grid": [[1, 2], [3]]}, "field 'grid'"),
        ({"schema_version": 1, "pairs": [{"input": GRID}]}, "pairs[0].output"),
        ({"schema_version": 1, "pairs": [{"input": GRID, "output": [[10]]}]}, "pairs[0].output"),
        ({"schema_version": 1, "grid": GRID, "constraints": "same_dims"}, "constraints"),
        ({"schema_version": 1, "grid": GRID, "domain": "Grid 2D"}, "field 'domain'"),
    ],
)
def test_bad_queries_refused(obj: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        normalize_query(obj, "q.json")
    assert str(exc.value).startswith("q.json")
    assert needle in str(exc.value)


def test_task_query_from_example_task() -> None:
    task = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())
    q = task_query(task, source="rotate.json")
    assert len(q.pairs) == len(task["train"])
    assert q.repr == grid_to_repr(task["test"][0]["input"])
    assert "transform:rotate_90" in list(q.all_keys())


@pytest.mark.parametrize("tests", [0, 1, 3])
def test_task_query_takes_exactly_the_test_indexes_a_task_has(tests: int) -> None:
    """Test input i of a task with n of them is the repr for 0 <= i < n; a task without
    test inputs is asked by its pairs with index 0 only — any other index is refused,
    never silently dropped."""
    task = {
        "train": [{"input": [[1, 0]], "output": [[0, 1]]}],
        "test": [{"input": [[c, c + 1]]} for c in range(tests)],
    }
    for index in range(-2, 5):
        if 0 <= index < tests or (tests == 0 and index == 0):
            q = task_query(task, index)
            want = [[index, index + 1]] if tests else None
            assert (q.repr["grid"] if q.repr else None) == want
            assert len(q.pairs) == 1
        else:
            with pytest.raises(
                InvalidInputError,
                match=rf"--test-index {index} out of range "
                rf"\(task has {'1 test input' if tests == 1 else f'{tests} test inputs'}\)$",
            ):
                task_query(task, index)


# --------------------------------------------------------------------------- evidence
def test_evidence_normal_form_grid_becomes_repr_id() -> None:
    n = normalize_evidence(ev(grid=GRID), "e.json")
    assert n.record == {
        "schema_version": 1,
        "kind": "evidence",
        "concept": "c",
        "version": "1.0.0",
        "polarity": "positive",
        "repr_id": repr_id(grid_to_repr(GRID)),
    }
    assert n.reprs == [grid_to_repr(GRID)]


def test_evidence_grid_repr_and_repr_id_forms_are_one_record() -> None:
    rid = repr_id(grid_to_repr(GRID))
    a = normalize_evidence(ev(grid=GRID)).record
    b = normalize_evidence(ev(repr=grid_to_repr(GRID, {"source": "x"}))).record
    c = normalize_evidence(ev(repr_id=rid)).record
    d = normalize_evidence({**ev(repr_id=rid), "kind": "evidence"}).record
    assert canonical_bytes(a) == canonical_bytes(b) == canonical_bytes(c) == canonical_bytes(d)


def test_evidence_pair_grids_become_repr_ids() -> None:
    n = normalize_evidence(ev(pair={"input": GRID, "output": ROT}))
    assert n.record["pair"] == {
        "input": repr_id(grid_to_repr(GRID)),
        "output": repr_id(grid_to_repr(ROT)),
    }
    assert [repr_id(r) for r in n.reprs] == [n.record["pair"]["input"], n.record["pair"]["output"]]


def test_evidence_stores_inline_reprs_and_counts(vault: Vault) -> None:
    vault.add([(card("c", ["feature:square"]), "f")])
    neg = ev(polarity="negative", tier="test", reason="wrong_output")
    r = vault.add_evidence([(ev(pair={"input": GRID, "output": ROT}), "e:1"), (neg, "e:2")])
    assert len(r.added) == 2
    for g in (GRID, ROT):
        rid = repr_id(grid_to_repr(g))
        assert vault.objects.get_json(rid) == grid_to_repr(g)
    e = entry_of(vault, "c")
    assert (e["positive"], e["negative"]) == (1, 1)
    assert sorted(e["evidence"]) == sorted(r.added)
    # the same evidence again is unchanged, no audit line
    n = audit_len(vault)
    r2 = vault.add_evidence([(ev(pair={"input": GRID, "output": ROT}), "e:1")])
    assert r2.added == [] and len(r2.unchanged) == 1
    assert audit_len(vault) == n


def test_evidence_for_a_card_in_the_same_write_back(vault: Vault) -> None:
    r = vault.write_back(cards=[(card("c", []), "f")], evidence=[(ev(), "e")])
    assert "c@1.0.0" in r.added
    assert entry_of(vault, "c")["positive"] == 1


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (ev(polarity="negative"), "tier"),
        (ev(polarity="negative", tier="test"), "reason"),
        (ev(polarity="negative", reason="wrong_output"), "tier"),
        (ev(tier="test"), "tier"),
        (ev(reason="wrong_output"), "reason"),
        (ev(polarity="maybe"), "polarity"),
        (ev(polarity="negative", tier="later", reason="x"), "tier"),
        (ev(polarity="negative", tier="test", reason="Wrong Output"), "reason"),
        (ev(concept="a/b"), "concept"),
        (ev(version="1.0"), "version"),
        (ev(repr_id="abc"), "repr_id"),
        (ev(grid=[[1, 2], [3]]), "grid"),
        (ev(pair={"input": GRID, "output": [[10]]}), "pair.output"),
        (ev(extra=1), "extra"),
        ({"concept": "c", "version": "1.0.0"}, "polarity"),
    ],
)
def test_bad_evidence_names_the_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        normalize_evidence(obj, "e.jsonl:4")
    assert exc.value.field == field
    assert str(exc.value).startswith("e.jsonl:4: ")
    assert f"field '{field}'" in str(exc.value)


def test_evidence_with_both_grid_and_repr_id_refused() -> None:
    with pytest.raises(InvalidInputError, match="one of grid, repr, repr_id"):
        normalize_evidence(ev(grid=GRID, repr_id=repr_id(grid_to_repr(GRID))), "e")


def test_evidence_unknown_repr_id_refused(vault: Vault) -> None:
    vault.add([(card("c", []), "f")])
    n = audit_len(vault)
    with pytest.raises(NotFoundError, match="e.json: unknown repr id"):
        vault.add_evidence([(ev(repr_id="0" * 64), "e.json")])
    assert audit_len(vault) == n


# --------------------------------------------------------------------------- status
def test_status_event_and_set_status(vault: Vault) -> None:
    assert status_event("c", "1.0.0", "deprecated", "old") == {
        "schema_version": 1,
        "kind": "status",
        "concept": "c",
        "version": "1.0.0",
        "status": "deprecated",
        "reason": "old",
    }
    vault.add([(card("c", []), "f")])
    r = vault.set_status("c", "1.0.0", "deprecated")
    assert (r.added, r.status) == ([], ["c@1.0.0"])  # a status change, not a new record
    assert entry_of(vault, "c")["status"] == "deprecated"
    # the card itself is unchanged: status lives in events
    assert vault.objects.get_json(entry_of(vault, "c")["card"])["status"] == "active"
    n = audit_len(vault)
    r2 = vault.set_status("c", "1.0.0", "deprecated")
    assert r2.added == [] and r2.unchanged == ["c@1.0.0"]
    assert audit_len(vault) == n


# --------------------------------------------------------------------------- fork
def test_fork_creates_next_minor_version_with_provenance(vault: Vault) -> None:
    vault.add([(card("x", ["feature:square"], provenance={"introduced_by": "me"}), "f")])
    changed = card(
        "x", ["feature:square", "feature:single_object"], provenance={"introduced_by": "me"}
    )
    r = vault.add([(changed, "g")], fork=True)
    assert r.op == "fork"
    assert r.added == ["x@1.1.0"]
    _, forked = vault.concept_card("x")
    assert forked["version"] == "1.1.0"
    assert forked["provenance"] == {"introduced_by": "me", "forked_from": "x@1.0.0"}
    assert forked["signature"]["keys"] == ["feature:single_object", "feature:square"]
    # the original is untouched
    _, orig = vault.concept_card("x", "1.0.0")
    assert orig["signature"]["keys"] == ["feature:square"]
    assert vault.audit.entries()[-1].op == "fork"
    # forking again goes from the newest
    r2 = vault.add([(card("x", ["feature:multi_object"]), "h")], fork=True)
    assert r2.added == ["x@1.2.0"]
    assert vault.concept_card("x")[1]["provenance"]["forked_from"] == "x@1.1.0"


def test_fork_from_highest_version_resets_patch(vault: Vault) -> None:
    vault.add(
        [
            (card("x", [], version="1.0.0"), "a"),
            (card("x", [], version="2.3.1"), "b"),
            (card("x", [], version="2.0.7"), "c"),
        ]
    )
    r = vault.add([(card("x", ["feature:square"], version="9.9.9"), "d")], fork=True)
    assert r.added == ["x@2.4.0"]
    assert vault.concept_card("x")[1]["provenance"]["forked_from"] == "x@2.3.1"


def test_fork_of_unknown_concept_refused(vault: Vault) -> None:
    n = audit_len(vault)
    with pytest.raises(NotFoundError, match="f.json: cannot fork 'nope'"):
        vault.add([(card("nope", []), "f.json")], fork=True)
    assert audit_len(vault) == n


def test_cli_add_fork(vault: Vault, tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps(card("x", ["feature:square"])))
    res = runner.invoke(app, ["--vault", str(vault.root), "add", str(f), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == ["x@1.0.0"]
    f.write_text(json.dumps(card("x", ["feature:single_object"])))
    res = runner.invoke(app, ["--vault", str(vault.root), "add", "--fork", str(f), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["op"] == "fork" and out["added"] == ["x@1.1.0"]
    res = runner.invoke(app, ["--vault", str(vault.root), "show", "x", "--json"])
    shown = json.loads(res.stdout)
    assert shown["card"]["version"] == "1.1.0"
    assert shown["card"]["provenance"]["forked_from"] == "x@1.0.0"


def test_a_repeated_fork_of_unchanged_content_makes_no_new_version(vault: Vault) -> None:
    """Issue 20: `add --fork` twice forked the same content twice (1.1.0, then 1.2.0)."""
    vault.add([(card("x", ["feature:square"]), "a")])
    changed = card("x", ["feature:square", "feature:single_object"])
    assert vault.add([(changed, "f")], fork=True).added == ["x@1.1.0"]
    n = audit_len(vault)
    again = vault.add([(changed, "f")], fork=True)
    assert (again.added, again.unchanged) == ([], ["x@1.1.0"])
    assert audit_len(vault) == n  # nothing written, no new generation
    assert vault.snapshot().versions("x") == ["1.0.0", "1.1.0"]
    # a fork of the newest version's own content (no change at all) adds nothing either,
    # and the same card twice in one fork request makes one version
    assert vault.add([(card("y", []), "b")]).added == ["y@1.0.0"]
    assert vault.add([(card("y", []), "b")], fork=True).unchanged == ["y@1.0.0"]
    twice = vault.add([(card("y", ["feature:square"]), "c")] * 2, fork=True)
    assert (twice.added, twice.unchanged) == (["y@1.1.0"], [])  # each ref once: added
    # content that differs from the newest is forked, even when an older version holds it
    assert vault.add([(card("x", ["feature:square"]), "g")], fork=True).added == ["x@1.2.0"]


def test_cli_add_fork_twice_reports_unchanged(vault: Vault, tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps(card("x", ["feature:square"])))
    assert runner.invoke(app, ["--vault", str(vault.root), "add", str(f)]).exit_code == 0
    f.write_text(json.dumps(card("x", ["feature:single_object"])))
    for added in (["x@1.1.0"], []):
        res = runner.invoke(app, ["--vault", str(vault.root), "add", "--fork", str(f), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["added"] == added
    res = runner.invoke(app, ["--vault", str(vault.root), "add", "--fork", str(f)])
    assert "fork: 1 already stored, unchanged" in res.stderr


def test_a_task_query_checks_every_test_input_and_takes_the_one_asked() -> None:
    """Every test input is checked (a bad one is named, whichever is asked); the query's
    repr is the asked one's, equal to the repr of that grid on its own."""
    grids = [[[1, 0], [0, 2]], [[3, 3, 0]], [[0], [4]]]
    task = {
        "train": [{"input": [[1, 2]], "output": [[2, 1]]}],
        "test": [{"input": g} for g in grids],
    }
    for i, g in enumerate(grids):
        assert task_query(task, i).repr == grid_to_repr(g)
    bad = {**task, "test": [*task["test"][:2], {"input": [[1, 2], [3]]}]}
    with pytest.raises(InvalidInputError, match=r"test\[2\]\.input"):
        task_query(bad, 0)
    with pytest.raises(InvalidInputError, match="out of range"):
        task_query(task, 3)
