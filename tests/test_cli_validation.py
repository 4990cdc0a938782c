"""Validation that cannot be fooled: every string field of every shipped schema.

A schema ``pattern`` is a full match: ``"^…$"`` searched with ``re.search`` accepts a trailing
newline (``$`` matches before a final ``\\n``), so ``"version": "1.0.0\\n"`` was stored. Here:

* every string field is found by walking the schemas (nothing is listed by hand);
* a value matching the pattern is accepted, the same value with a newline, a space, a tab
  or a NUL before or after it is refused, naming the field (hypothesis fuzzes the values);
* any text at all in any field is accepted only if it satisfies every rule of its schema;
* end to end: a write-back with such a value is refused and leaves the vault byte-identical,
  or it is accepted and the vault stays usable (the next ``vault add`` works, ``verify`` ok).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vault.errors import InputError, InvalidInputError
from vault.grid.reprs import grid_to_repr, repr_id
from vault.ops.verify import verify
from vault.records.cards import normalize_card, normalize_evidence
from vault.records.query import normalize_query
from vault.records.schema import SCHEMAS, load_schema, validate
from vault.retrieval import retrieve
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import card
from .helpers import tree

G1 = [[0, 1], [1, 0]]
G2 = [[1, 0], [0, 1]]
R1, R2 = repr_id(grid_to_repr(G1)), repr_id(grid_to_repr(G2))
BAD_AFFIXES = ["\n", "\r\n", "\r", " ", "\t", "\x00", "\u2028"]


# --------------------------------------------------------------------------- the schemas
def string_fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, subschema) of every string-valued field; ``[]`` marks an array item."""
    enum = schema.get("enum")
    if (
        schema.get("type") == "string"
        or isinstance(schema.get("const"), str)
        or (enum and all(isinstance(e, str) for e in enum))
    ):
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from string_fields(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from string_fields(schema["items"], f"{path}[]")


FIELDS = [(name, path, sub) for name in SCHEMAS for path, sub in string_fields(load_schema(name))]
PATTERNED = [(n, p, s) for n, p, s in FIELDS if "pattern" in s]
FIELD_IDS = [f"{n}:{p}" for n, p, _ in FIELDS]
PATTERNED_IDS = [f"{n}:{p}" for n, p, _ in PATTERNED]


def _repr_without_grid() -> dict[str, Any]:
    """A user-supplied repr (no grid: stored as given) with an ``aligned_with`` edge."""
    rep = grid_to_repr([[1, 0, 2], [0, 0, 0], [3, 0, 0]])
    del rep["grid"]
    return with_repr_id(rep)


def with_repr_id(rep: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in rep.items() if k != "repr_id"}
    return {**body, "repr_id": repr_id(body)}


# One valid record per schema holding every optional string field (arrays: one item).
FULL: dict[str, dict[str, Any]] = {
    "concept": card(
        "c",
        ["feature:square"],
        dsl="(rotate_90 grid)",
        kind="concept",
        status="active",
        proof_obligations=["same_dims"],
        counterexamples=[{"note": "fails on 3x3", "task": "arc:x", "repr_id": R1}],
        provenance={
            "introduced_by": "tests",
            "validated_on": ["arc:x"],
            "invalidated_on": ["arc:y"],
            "forked_from": "c@0.9.0",
        },
        compatibility={"dsl_grammar": "1", "repr_schema": 1},
    ),
    "evidence": {
        "schema_version": 1,
        "kind": "evidence",
        "concept": "c",
        "version": "1.0.0",
        "polarity": "negative",
        "repr_id": R1,
        "pair": {"input": R1, "output": R2},
        "task": "arc:x",
        "tier": "train",
        "reason": "wrong_output",
        "note": "off by one",
    },
    "status": {
        "schema_version": 1,
        "kind": "status",
        "concept": "c",
        "version": "1.0.0",
        "status": "deprecated",
        "reason": "superseded",
    },
    "repr": _repr_without_grid(),
    "query": {
        "schema_version": 1,
        "kind": "query",
        "domain": "grid_2d",
        "grid": G1,
        "constraints": ["same_dims"],
    },
}


def _parts(path: str) -> list[str]:
    return re.findall(r"[^.\[\]]+|\[\]", path)


def _parent(record: Any, parts: list[str]) -> Any:
    """The container of the last part (for ``a[].b``: the first item of ``a`` with ``b``)."""
    node = record
    for i, part in enumerate(parts[:-1]):
        node = next(it for it in node if parts[i + 1] in it) if part == "[]" else node[part]
    return node


def put(record: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    """A copy of ``record`` with the field at ``path`` set to ``value``."""
    out = copy.deepcopy(record)
    parts = _parts(path)
    _parent(out, parts)[0 if parts[-1] == "[]" else parts[-1]] = value
    return out


def get(record: dict[str, Any], path: str) -> Any:
    parts = _parts(path)
    return _parent(record, parts)[0 if parts[-1] == "[]" else parts[-1]]


def test_the_walk_finds_every_string_field() -> None:
    paths = {f"{n}:{p}" for n, p, _ in FIELDS}
    for expected in (
        "concept:version",
        "concept:signature.keys[]",
        "concept:counterexamples[].repr_id",
        "evidence:pair.input",
        "evidence:reason",
        "status:status",
        "repr:nodes[].id",
        "repr:edges[].axis",
        "query:constraints[]",
    ):
        assert expected in paths
    assert len(PATTERNED) >= 15


def test_full_records_are_valid_and_hold_every_field() -> None:
    for name, path, _ in FIELDS:
        validate(FULL[name], name)
        assert isinstance(get(FULL[name], path), str), (name, path)


# --------------------------------------------------------------------------- schema level
@pytest.mark.parametrize(("name", "path", "sub"), PATTERNED, ids=PATTERNED_IDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pattern_is_a_full_match(data: Any, name: str, path: str, sub: dict[str, Any]) -> None:
    good = data.draw(
        st.from_regex(sub["pattern"], fullmatch=True).filter(
            lambda s: sub.get("minLength", 0) <= len(s) <= sub.get("maxLength", 10**9)
        ),
        label="good",
    )
    validate(put(FULL[name], path, good), name)
    affix = data.draw(st.sampled_from(BAD_AFFIXES), label="affix")
    for bad in (good + affix, affix + good):
        with pytest.raises(InvalidInputError) as err:
            validate(put(FULL[name], path, bad), name)
        assert err.value.field is not None and err.value.field.replace("[0]", "[]") == path


def _satisfies(value: str, sub: dict[str, Any]) -> bool:
    """The oracle: every rule of a string subschema, patterns as full matches."""
    if "const" in sub and value != sub["const"]:
        return False
    if "enum" in sub and value not in sub["enum"]:
        return False
    if not sub.get("minLength", 0) <= len(value) <= sub.get("maxLength", 10**9):
        return False
    return "pattern" not in sub or re.fullmatch(sub["pattern"], value) is not None


texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["1.0.0", "grid_2d", "c", "feature:square", R1, "active", "c0"]).flatmap(
        lambda s: st.sampled_from([s, s + "\n", "\n" + s, s + " ", s.upper(), s + "\x00"])
    ),
)


@pytest.mark.parametrize(("name", "path", "sub"), FIELDS, ids=FIELD_IDS)
@settings(max_examples=20, deadline=None)
@given(value=texts)
def test_any_text_in_any_field_is_accepted_only_if_valid(
    value: str, name: str, path: str, sub: dict[str, Any]
) -> None:
    record = put(FULL[name], path, value)
    try:
        validate(record, name)
    except InvalidInputError:
        assert not _satisfies(value, sub), (path, value)
    else:
        assert _satisfies(value, sub), (path, value)


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def seeded(tmp_path: Path) -> Vault:
    """c@1.0.0 plus evidence that makes the reprs R1 and R2 known."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000))
    v.add([(card("c", ["feature:square"]), "seed")])
    ev = {
        "schema_version": 1,
        "concept": "c",
        "version": "1.0.0",
        "polarity": "positive",
        "grid": G1,
        "pair": {"input": G1, "output": G2},
    }
    v.add_evidence([(ev, "seed")])
    return v


def _write(v: Vault, name: str, record: dict[str, Any]) -> None:
    """One write-back (or read, for reprs and queries) of ``record`` through the library."""
    if name == "concept":
        v.add([(record, "fuzz")])
    elif name == "evidence":
        v.add_evidence([(record, "fuzz")])
    elif name == "status":
        v.set_status(record["concept"], record["version"], record["status"], record.get("reason"))
    elif name == "repr":
        retrieve(v, normalize_query({"schema_version": 1, "repr": record}, "fuzz"), v.config())
    else:
        retrieve(v, normalize_query(record, "fuzz"), v.config())


def _still_usable(v: Vault, n: int) -> None:
    v.add([(card(f"after{n}", ["feature:square"]), "after")])
    result = retrieve(v, normalize_query({"schema_version": 1, "grid": G1}), v.config())
    assert result.mode_used == "hybrid"


# A status event's kind is not given by the user (`vault set-status` takes the other four).
E2E = [(n, p, s) for n, p, s in FIELDS if (n, p) != ("status", "kind")]


@pytest.mark.parametrize("name", SCHEMAS)
def test_trailing_newline_in_any_field_refused_or_harmless(seeded: Vault, name: str) -> None:
    for n, (_, path, sub) in enumerate(f for f in E2E if f[0] == name):
        base = get(FULL[name], path)
        accepted = False
        for j, bad in enumerate((base + "\n", "\n" + base)):
            record = put(FULL[name], path, bad)
            if name == "concept" and path != "id":
                record["id"] = f"e{n}-{j}"  # a new card each time, never a conflict
            if name == "repr" and path != "repr_id":
                record = with_repr_id(record)  # refused for the field, not for a stale id
            before = tree(seeded.root)
            try:
                _write(seeded, name, record)
            except InputError:
                assert tree(seeded.root) == before, (path, bad)
                assert "pattern" in sub or "enum" in sub or "const" in sub, (path, bad)
            else:
                assert _satisfies(bad, sub), f"{name}:{path} accepted {bad!r}"
                accepted = True
        if accepted:
            _still_usable(seeded, n)
    report = verify(seeded)
    assert report.ok, report.to_json()


card_fields = [p for n, p, _ in FIELDS if n == "concept"]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(card_fields), value=texts)
def test_fuzzed_card_never_breaks_the_vault(seeded: Vault, path: str, value: str) -> None:
    record = put(FULL["concept"], path, value)
    if path != "id":
        record["id"] = f"f{abs(hash((path, value))) % 10**9}"
    before = tree(seeded.root)
    try:
        normalize_card(record, "fuzz")
        seeded.add([(record, "fuzz")])
    except InputError:
        assert tree(seeded.root) == before
        return
    stored = seeded.concept_card(record["id"], record["version"])[1]
    assert stored[path.split(".")[0].split("[")[0]] is not None
    _still_usable(seeded, abs(hash(value)) % 10**6)


def test_evidence_normal_form_keeps_fields_exact() -> None:
    ev = normalize_evidence(FULL["evidence"], "x").record
    assert ev["reason"] == "wrong_output" and ev["pair"] == {"input": R1, "output": R2}


# --------------------------------------------------------------------------- the CLI
def test_cli_refuses_version_with_trailing_newline(seeded: Vault, tmp_path: Path) -> None:
    """The reported case: accepted once, after which every `vault add` crashed."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(card("x", [], version="1.0.0\n")))
    before = tree(seeded.root)
    result = CliRunner().invoke(app, ["--vault", str(seeded.root), "add", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "field 'version'" in result.stderr and '"1.0.0\\n"' in result.stderr
    assert tree(seeded.root) == before
    good = tmp_path / "good.json"
    good.write_text(json.dumps(card("x", [])))
    result = CliRunner().invoke(app, ["--vault", str(seeded.root), "add", str(good)])
    assert result.exit_code == 0, result.output
