"""Every bad input gets a clear error and changes nothing.

Library: a ``VaultError`` subclass whose message names the source, the field (where there
is one) and what was expected. CLI: exit 1 (2 for usage errors), one ``error:`` line on
stderr, nothing on stdout, no traceback. Both: the vault tree is byte-identical afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from vault.canonical import loads
from vault.errors import (
    ConflictError,
    FormatError,
    InvalidInputError,
    NotAVaultError,
    NotFoundError,
    VaultError,
)
from vault.grid.grid import parse_grid
from vault.records.query import normalize_query
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import card
from .test_strict_json import LOCATED, as_document, located, message

runner = CliRunner()

GRID = [[0, 0, 3], [0, 3, 3], [2, 0, 0]]


# --------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (directories as None, files as their bytes)."""
    if not root.exists():
        return {}
    out: dict[str, bytes | None] = {".": None}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, args, env=env)


def assert_cli_error(result: Result, code: int, *needles: str) -> str:
    """One clean error line: exit ``code``, nothing on stdout, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unhandled {result.exception!r}"
    )
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr, result.stderr  # a crash is not a refusal
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def stocked(vault: Vault) -> Vault:
    """A vault holding one concept c@1.0.0."""
    vault.add([(card("c", ["feature:square"]), "seed.json")])
    return vault


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def dumps(obj: Any) -> str:
    return json.dumps(obj)


# --------------------------------------------------------------------------- strict JSON
@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('{"a": 1,', ["malformed JSON", "line 1"]),
        ('{"a": 1}\n{"b": ', ["malformed JSON", "line 2"]),
        ("", ["malformed JSON"]),
        ("[1, 2,]", ["malformed JSON"]),
        ('{"a": NaN}', ["NaN is not allowed"]),
        ('{"a": Infinity}', ["Infinity is not allowed"]),
        ('{"a": -Infinity}', ["Infinity is not allowed"]),
        ('{"a": 1e999}', ["out of range"]),
        ('{"a": 9007199254740992}', ["too large"]),
        ('{"a": -9007199254740992}', ["too large"]),
        ('{"a": 1, "a": 2}', ["duplicate key 'a'"]),
        ('{"x": {"b": 1, "b": 1}}', ["duplicate key 'b'"]),
        (b'{"a": "\xff"}', ["not UTF-8"]),
        ("[" * 100_000 + "]" * 100_000, ["invalid JSON"]),
    ],
)
def test_strict_json_errors_name_the_source(text: str | bytes, needles: list[str]) -> None:
    with pytest.raises(InvalidInputError) as exc:
        loads(text, source="in.json")
    msg = str(exc.value)
    assert msg.startswith("in.json: ")
    for needle in needles:
        assert needle in msg


def test_largest_safe_integer_is_accepted() -> None:
    assert loads('{"a": 9007199254740991, "b": -9007199254740991}') == {
        "a": 2**53 - 1,
        "b": -(2**53 - 1),
    }


# --------------------------------------------------------------------------- grids
TOO_TALL = [[0]] * 31
TOO_WIDE = [[0] * 31]
TOO_BIG = [[0] * 31 for _ in range(31)]

BAD_GRIDS: list[tuple[str, Any, str]] = [
    ("ragged", [[1, 2], [3]], "ragged grid: row 1 has 1 cell, row 0 has 2"),
    ("ragged-wider", [[1], [2, 3]], "ragged grid: row 1 has 2 cells, row 0 has 1"),
    ("empty", [], "expected a non-empty list of rows"),
    ("empty-row", [[]], "row 0: expected a non-empty list of colours"),
    ("too-tall", TOO_TALL, "31 rows; at most 30"),
    ("too-wide", TOO_WIDE, "31 columns; at most 30"),
    ("too-big", TOO_BIG, "at most 30"),
    ("colour-10", [[1, 10]], "cell [0][1] = 10: expected an integer colour 0-9"),
    ("colour-neg", [[-1, 0]], "cell [0][0] = -1"),
    ("colour-float", [[1.5]], "cell [0][0] = 1.5"),
    ("colour-int-float", [[1.0]], "cell [0][0] = 1.0"),
    ("colour-bool", [[True]], "cell [0][0] = true"),
    ("colour-str", [["1"]], 'cell [0][0] = "1"'),
    ("colour-null", [[None]], "cell [0][0] = null"),
    ("row-not-list", [1, 2], "row 0"),
    ("not-list", {"grid": [[1]]}, "expected a non-empty list of rows"),
    ("string", "[[1]]", "expected a non-empty list of rows"),
]


@pytest.mark.parametrize(("name", "grid", "needle"), BAD_GRIDS, ids=[b[0] for b in BAD_GRIDS])
def test_parse_grid_rejects(name: str, grid: Any, needle: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_grid(grid, "g.json", "grid")
    msg = str(exc.value)
    assert msg.startswith("g.json: field 'grid': ")
    assert needle in msg


def test_parse_grid_accepts_30x30_and_1x1() -> None:
    assert len(parse_grid([[9] * 30 for _ in range(30)])) == 30
    assert parse_grid([[0]]) == ((0,),)


# in evidence a dict is a repr and a string a repr id: only list-shaped grids here
LIST_GRIDS = [b for b in BAD_GRIDS if isinstance(b[1], list)]


@pytest.mark.parametrize(("name", "grid", "needle"), LIST_GRIDS, ids=[b[0] for b in LIST_GRIDS])
def test_evidence_with_bad_grid_changes_nothing(
    stocked: Vault, name: str, grid: Any, needle: str
) -> None:
    before = snapshot(stocked.root)
    ev = {
        "schema_version": 1,
        "concept": "c",
        "version": "1.0.0",
        "polarity": "positive",
        "pair": {"input": GRID, "output": grid},
    }
    with pytest.raises(InvalidInputError) as exc:
        stocked.add_evidence([(ev, "ev.jsonl:7")])
    assert str(exc.value).startswith("ev.jsonl:7: field 'pair.output': ")
    assert needle in str(exc.value)
    assert snapshot(stocked.root) == before


# (a JSON object given to --repr is a repr, so only list-shaped grids here)
JSON_GRID_TEXTS: list[tuple[str, str, str]] = [
    *[(n, dumps(g), needle) for n, g, needle in LIST_GRIDS if n != "colour-int-float"],
    ("colour-int-float", "[[1.0]]", "cell [0][0] = 1.0"),
    ("nan", "[[NaN]]", "NaN is not allowed"),
    ("bigint", "[[9007199254740993]]", "too large"),
    ("malformed", "[[1, 2]", "malformed JSON"),
]


@pytest.mark.parametrize(
    ("name", "text", "needle"), JSON_GRID_TEXTS, ids=[t[0] for t in JSON_GRID_TEXTS]
)
def test_cli_repr_bad_grid(tmp_path: Path, name: str, text: str, needle: str) -> None:
    f = write(tmp_path, "grid.json", text)
    before = snapshot(tmp_path)
    assert_cli_error(cli(["repr", str(f)]), 1, str(f), needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "text", "needle"), JSON_GRID_TEXTS, ids=[t[0] for t in JSON_GRID_TEXTS]
)
def test_cli_retrieve_bad_grid_changes_nothing(
    stocked: Vault, tmp_path: Path, name: str, text: str, needle: str
) -> None:
    f = write(tmp_path, "grid.json", text)
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "retrieve", "--mode", "symbolic", "--repr", str(f)])
    assert_cli_error(res, 1, str(f), needle)
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize(
    ("name", "grid", "needle"), BAD_GRIDS[:8], ids=[b[0] for b in BAD_GRIDS[:8]]
)
def test_cli_evidence_bad_grid_changes_nothing(
    stocked: Vault, tmp_path: Path, name: str, grid: Any, needle: str
) -> None:
    good = {"schema_version": 1, "concept": "c", "version": "1.0.0", "polarity": "positive"}
    f = write(tmp_path, "ev.jsonl", dumps(good) + "\n" + dumps({**good, "grid": grid}) + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "evidence", "add", str(f)])
    assert_cli_error(res, 1, f"{f}:2", "field 'grid'", needle)
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- cards (library)
LONG_ID = "a" * 129

BAD_CARDS: list[tuple[str, dict[str, Any], type[VaultError], list[str]]] = [
    ("id-slash", card("a/b", []), InvalidInputError, ["field 'id'", "expected an id", "no '/'"]),
    ("id-dotdot", card("a..b", []), InvalidInputError, ["field 'id'", "no '..'"]),
    ("id-dotdot-only", card("..", []), InvalidInputError, ["field 'id'"]),
    ("id-nul", card("a\x00b", []), InvalidInputError, ["field 'id'", "expected an id"]),
    ("id-too-long", card(LONG_ID, []), InvalidInputError, ["field 'id'", "at most 128"]),
    ("id-empty", card("", []), InvalidInputError, ["field 'id'"]),
    ("id-leading-dot", card(".hidden", []), InvalidInputError, ["field 'id'"]),
    ("id-int", card(7, []), InvalidInputError, ["field 'id'", "got 7"]),  # type: ignore[arg-type]
    (
        "version-int",
        card("x", [], version=1),
        InvalidInputError,  # type: ignore[arg-type]
        ["field 'version'", "semantic version"],
    ),
    ("version-2-parts", card("x", [], version="1.0"), InvalidInputError, ["field 'version'"]),
    (
        "version-leading-zero",
        card("x", [], version="01.0.0"),
        InvalidInputError,
        ["field 'version'"],
    ),
    (
        "keys-string",
        card("x", "feature:square"),
        InvalidInputError,  # type: ignore[arg-type]
        ["field 'signature.keys'", "expected an array"],
    ),
    (
        "key-bad-family",
        card("x", ["colour:red"]),
        InvalidInputError,
        ["field 'signature.keys[0]'", "family"],
    ),
    ("key-int", card("x", [1]), InvalidInputError, ["field 'signature.keys[0]'"]),  # type: ignore[list-item]
    (
        "schema-version-2",
        card("x", [], schema_version=2),
        InvalidInputError,
        ["field 'schema_version'", "schema version 1", "got 2"],
    ),
    (
        "schema-version-bool",
        card("x", [], schema_version=True),
        InvalidInputError,
        ["field 'schema_version'"],
    ),
    (
        "schema-version-float",
        card("x", [], schema_version=1.0),
        InvalidInputError,
        ["field 'schema_version'"],
    ),
    (
        "unknown-field",
        card("x", [], colour=3),
        InvalidInputError,
        ["field 'colour'", "unknown field", "allowed:"],
    ),
    (
        "unknown-nested",
        card("x", [], provenance={"by": "me"}),
        InvalidInputError,
        ["field 'provenance.by'", "unknown field"],
    ),
    (
        "status-bad",
        card("x", [], status="retired"),
        InvalidInputError,
        ["field 'status'", '"active"'],
    ),
    ("domain-bad", card("x", [], domain="Grid 2D"), InvalidInputError, ["field 'domain'"]),
    (
        "kind-bad",
        card("x", [], kind="evidence"),
        InvalidInputError,
        ["field 'kind'", "expected a concept card, got an evidence record"],
    ),
    (
        "obligation-unknown",
        card("x", [], proof_obligations=["same_dims", "mostly_same"]),
        InvalidInputError,
        ["field 'proof_obligations[1]'", "unknown constraint", "known:"],
    ),
    (
        "template-int",
        {**card("x", []), "template": {"template_dsl": 5}},
        InvalidInputError,
        ["field 'template.template_dsl'", "string"],
    ),
    (
        "counterexample-no-note",
        card("x", [], counterexamples=[{"task": "t"}]),
        InvalidInputError,
        ["field 'counterexamples[0].note'", "missing"],
    ),
    (
        "compat-float",
        card("x", [], compatibility={"repr_schema": 1.5}),
        InvalidInputError,
        ["field 'compatibility.repr_schema'", "integer"],
    ),
]
# (schema_version may be left out: 1 is the only version, as for evidence — test_daily_use)
for _missing in ("id", "version", "domain", "signature", "template"):
    _c = card("x", [])
    del _c[_missing]
    BAD_CARDS.append(
        (
            f"missing-{_missing}",
            _c,
            InvalidInputError,
            [f"field '{_missing}'", "missing required field"],
        )
    )


@pytest.mark.parametrize(
    ("name", "obj", "error", "needles"), BAD_CARDS, ids=[b[0] for b in BAD_CARDS]
)
def test_library_bad_card_changes_nothing(
    stocked: Vault, name: str, obj: dict[str, Any], error: type[VaultError], needles: list[str]
) -> None:
    before = snapshot(stocked.root)
    good = card("fine", ["feature:square"])
    with pytest.raises(error) as exc:
        stocked.add([(good, "cards.jsonl:1"), (obj, "cards.jsonl:2")])
    msg = str(exc.value)
    assert msg.startswith("cards.jsonl:2: "), msg
    assert any(w in msg for w in ("expected", "missing", "allowed:", "known:")), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize("obj", [5, "card", None, [card("x", [])], True])
def test_library_card_not_an_object(stocked: Vault, obj: Any) -> None:
    before = snapshot(stocked.root)
    with pytest.raises(InvalidInputError, match=r"^f\.json: expected a concept card, got "):
        stocked.add([(obj, "f.json")])
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize(
    ("normalize", "said"),
    [
        ("normalize_card", "expected a concept card, got an array"),
        ("normalize_evidence", "expected an evidence record, got an array"),
        ("normalize_status", "expected a status event, got an array"),
    ],
)
def test_a_record_not_an_object_is_named_as_its_kind(normalize: str, said: str) -> None:
    """Each record kind's refusal of a non-object names the kind as schema.a_kind does."""
    from vault.records import cards

    with pytest.raises(InvalidInputError) as error:
        getattr(cards, normalize)([1], "r.json")
    assert str(error.value) == f"r.json: {said}"


def test_id_of_128_characters_is_fine(stocked: Vault) -> None:
    assert stocked.add([(card("a" * 128, []), "f")]).added == [f"{'a' * 128}@1.0.0"]


def test_conflicting_readd_refused_and_changes_nothing(stocked: Vault) -> None:
    before = snapshot(stocked.root)
    with pytest.raises(ConflictError) as exc:
        stocked.add([(card("c", ["feature:single_object"]), "again.json")])
    msg = str(exc.value)
    assert msg.startswith("again.json: ")
    assert "c@1.0.0" in msg and "different content" in msg
    assert "version" in msg and "--fork" in msg
    assert snapshot(stocked.root) == before


def test_identical_readd_changes_nothing(stocked: Vault) -> None:
    before = snapshot(stocked.root)
    r = stocked.add([(card("c", ["feature:square"]), "again.json")])
    assert r.added == [] and r.unchanged == ["c@1.0.0"]
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**60])
def test_library_card_with_non_json_number_names_source(stocked: Vault, value: Any) -> None:
    before = snapshot(stocked.root)
    bad = {**card("x", []), "template": {"template_dsl": "(x grid)", "params": {"n": value}}}
    try:
        with pytest.raises(InvalidInputError) as exc:
            stocked.add([(bad, "cards.jsonl:4")])
        assert str(exc.value).startswith("cards.jsonl:4: ")
        assert "template.params" in str(exc.value)
    finally:
        assert snapshot(stocked.root) == before


def test_query_repr_with_nan_refused() -> None:
    rep = {
        "schema_version": 1,
        "domain": "grid_2d",
        "globals": {"height": 1, "width": 1, "palette_size": 1},
        "nodes": [{"id": "c0", "type": "component", "centroid": [float("nan"), 0.0]}],
        "edges": [],
    }
    with pytest.raises(InvalidInputError, match="q.json"):
        normalize_query({"schema_version": 1, "repr": rep}, "q.json")


# --------------------------------------------------------------------------- evidence (library)
def _ev(**extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "concept": "c",
        "version": "1.0.0",
        "polarity": "negative",
        **extra,
    }


@pytest.mark.parametrize(
    ("obj", "error", "needles"),
    [
        (_ev(), InvalidInputError, ["field 'tier'", "negative evidence needs a tier and a reason"]),
        (_ev(tier="test"), InvalidInputError, ["field 'reason'", "needs a tier and a reason"]),
        (_ev(reason="wrong_output"), InvalidInputError, ["field 'tier'"]),
        (
            _ev(polarity="positive", tier="test"),
            InvalidInputError,
            ["field 'tier'", "negative evidence only"],
        ),
        (
            _ev(tier="test", reason="x", concept="zz"),
            NotFoundError,
            ["unknown concept version zz@1.0.0"],
        ),
        (
            _ev(tier="test", reason="x", version="9.9.9"),
            NotFoundError,
            ["unknown concept version c@9.9.9"],
        ),
        (_ev(tier="test", reason="x", concept="../c"), InvalidInputError, ["field 'concept'"]),
        (_ev(tier="test", reason="x", repr_id="f" * 64), NotFoundError, ["unknown repr id"]),
        (_ev(tier="test", reason="x", note=3), InvalidInputError, ["field 'note'", "string"]),
        (_ev(tier="test", reason="x", kind="concept"), InvalidInputError, ["field 'kind'"]),
    ],
)
def test_library_bad_evidence_changes_nothing(
    stocked: Vault, obj: dict[str, Any], error: type[VaultError], needles: list[str]
) -> None:
    before = snapshot(stocked.root)
    good = _ev(polarity="positive")
    with pytest.raises(error) as exc:
        stocked.add_evidence([(good, "ev.jsonl:1"), (obj, "ev.jsonl:2")])
    msg = str(exc.value)
    assert msg.startswith("ev.jsonl:2: "), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert snapshot(stocked.root) == before


def test_library_bad_status_changes_nothing(stocked: Vault) -> None:
    before = snapshot(stocked.root)
    with pytest.raises(InvalidInputError, match="field 'status': expected one of"):
        stocked.set_status("c", "1.0.0", "retired")
    with pytest.raises(InvalidInputError, match="field 'concept'"):
        stocked.set_status("a/b", "1.0.0", "deprecated")
    with pytest.raises(NotFoundError, match="unknown concept version zz@1.0.0"):
        stocked.set_status("zz", "1.0.0", "deprecated")
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- vault directories
def test_open_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotAVaultError, match="no such directory"):
        Vault.open(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_open_non_vault_directory(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "notes.txt").write_text("hi")
    before = snapshot(d)
    with pytest.raises(NotAVaultError) as exc:
        Vault.open(d)
    assert str(d) in str(exc.value) and "format.json" in str(exc.value)
    with pytest.raises(NotAVaultError, match="not empty and not a vault"):
        Vault.init(d)
    assert snapshot(d) == before


def test_open_file_instead_of_directory(tmp_path: Path) -> None:
    f = write(tmp_path, "file", "x")
    with pytest.raises(NotAVaultError, match="not a directory"):
        Vault.open(f)
    with pytest.raises(NotAVaultError):
        Vault.init(f)
    assert f.read_text() == "x"


@pytest.mark.parametrize("marker", ["__init__.py", "pyproject.toml"])
def test_python_package_is_not_a_vault(tmp_path: Path, marker: str) -> None:
    d = tmp_path / "pkg"
    d.mkdir()
    (d / marker).write_text("")
    before = snapshot(d)
    for call in (Vault.open, Vault.init):
        with pytest.raises(NotAVaultError) as exc:
            call(d)
        assert "Python package" in str(exc.value) and str(d) in str(exc.value)
    assert snapshot(d) == before


def test_package_with_format_json_still_refused(vault: Vault) -> None:
    (vault.root / "__init__.py").write_text("")
    before = snapshot(vault.root)
    with pytest.raises(NotAVaultError, match="Python package"):
        Vault.open(vault.root)
    assert snapshot(vault.root) == before


@pytest.mark.parametrize("version", [99, 4])
def test_newer_format_refused(vault: Vault, version: int) -> None:
    (vault.root / "format.json").write_text(dumps({"format": "concept-vault", "version": version}))
    before = snapshot(vault.root)
    with pytest.raises(FormatError) as exc:
        Vault.open(vault.root)
    assert str(vault.root) in str(exc.value)
    assert f"format {version}" in str(exc.value) and "upgrade" in str(exc.value)
    with pytest.raises(FormatError):
        Vault.init(vault.root)
    assert snapshot(vault.root) == before


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"format": "concept-vault"}', '{"format": "other", "version": 1}']
)
def test_unreadable_or_foreign_format_json(vault: Vault, text: str) -> None:
    (vault.root / "format.json").write_text(text)
    before = snapshot(vault.root)
    with pytest.raises(NotAVaultError) as exc:
        Vault.open(vault.root)
    assert str(vault.root) in str(exc.value)
    assert snapshot(vault.root) == before


# --------------------------------------------------------------------------- CLI: records
def _card_text(**overrides: Any) -> str:
    return dumps({**card("n", ["feature:square"]), **overrides})


CLI_ADD_CASES: list[tuple[str, str, list[str]]] = [
    ("malformed", '{"id": ', ["malformed JSON", "line 1"]),
    ("duplicate-key", _card_text()[:-1] + ', "id": "m"}', ["duplicate key 'id'"]),
    (
        "nan",
        _card_text(template={"template_dsl": "x", "params": {}})[:-1] + ', "x": NaN}',
        ["NaN is not allowed"],
    ),
    ("infinity", '{"template": {"params": {"w": Infinity}}}', ["Infinity is not allowed"]),
    ("bigint", _card_text(template={"template_dsl": "x", "params": {"n": 2**53}}), ["too large"]),
    ("wrong-type", _card_text(version=1), ["field 'version'", "expected a semantic version"]),
    (
        "wrong-type-signature",
        _card_text(signature=["feature:square"]),
        ["field 'signature'", "expected an object"],
    ),
    ("unknown-field", _card_text(colour=1), ["field 'colour'", "unknown field"]),
    (
        "missing-field",
        dumps({k: v for k, v in card("n", []).items() if k != "template"}),
        ["field 'template'", "missing required field"],
    ),
    ("id-slash", _card_text(id="x/y"), ["field 'id'", "expected an id"]),
    ("id-dotdot", _card_text(id="x..y"), ["field 'id'"]),
    ("id-dotdot-path", _card_text(id="../../etc"), ["field 'id'"]),
    ("id-nul", _card_text(id="x\u0000y"), ["field 'id'"]),
    ("id-long", _card_text(id="i" * 129), ["field 'id'", "at most 128"]),
    (
        "obligation",
        _card_text(proof_obligations=["roughly_same"]),
        ["field 'proof_obligations[0]'", "unknown constraint 'roughly_same'", "same_dims"],
    ),
    (
        "conflict",
        dumps(card("c", ["feature:single_object"])),
        ["c@1.0.0", "already stored with different content"],
    ),
    ("not-object", "42", ["expected a concept card, got 42"]),
    ("empty", "", ["empty input"]),
    ("blank", "  \n\n", ["empty input"]),
    ("not-utf8", b'{"id": "\xff"}'.decode("latin-1"), []),  # written as bytes below
]


@pytest.mark.parametrize(
    ("name", "text", "needles"), CLI_ADD_CASES, ids=[c[0] for c in CLI_ADD_CASES]
)
def test_cli_add_bad_card_changes_nothing(
    stocked: Vault, tmp_path: Path, name: str, text: str, needles: list[str]
) -> None:
    if name == "not-utf8":
        f = write(tmp_path, "cards.json", b'{"id": "\xff"}')
        needles = ["not UTF-8"]
    else:
        f = write(tmp_path, "cards.json", text)
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)])
    assert_cli_error(res, 1, str(f), *needles)
    assert snapshot(stocked.root) == before


def test_cli_add_jsonl_bad_line_names_line_and_adds_nothing(stocked: Vault, tmp_path: Path) -> None:
    lines = [
        dumps(card("a1", [])),
        dumps(card("a2", [])),
        _card_text(id="bad/id"),
        dumps(card("a4", [])),
    ]
    f = write(tmp_path, "cards.jsonl", "\n".join(lines) + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)])
    assert_cli_error(res, 1, f"{f}:3:", "field 'id'")
    assert snapshot(stocked.root) == before


def test_cli_add_jsonl_malformed_line_names_line(stocked: Vault, tmp_path: Path) -> None:
    lines = [dumps(card("a1", [])), dumps(card("a2", [])), '{"id": "a3",']
    f = write(tmp_path, "cards.jsonl", "\n".join(lines) + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)])
    assert_cli_error(res, 1, f"{f}:3", "malformed JSON")
    assert snapshot(stocked.root) == before


def test_cli_add_jsonl_duplicate_key_names_line(stocked: Vault, tmp_path: Path) -> None:
    lines = [dumps(card("a1", [])), _card_text(id="a2")[:-1] + ', "id": "a3"}']
    f = write(tmp_path, "cards.jsonl", "\n".join(lines) + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)])
    assert_cli_error(res, 1, f"{f}:2", "duplicate key 'id'")
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize("command", [["add"], ["evidence", "add"], ["import"]])
@pytest.mark.parametrize("bad", [1, 2])
def test_cli_lone_surrogate_names_line_and_field(
    stocked: Vault, tmp_path: Path, command: list[str], bad: int
) -> None:
    """A lone surrogate (``"\\ud800"``, no Unicode character) is refused as the file is read,
    with its line and field — it used to pass the parser and fail at the write, naming
    nothing (`cannot be written as canonical JSON`)."""
    lines = [dumps(card(f"a{i}", [])) for i in (1, 2)]
    params = {"template_dsl": "x", "params": {"x": "\ud800"}}
    lines[bad - 1] = dumps(card(f"a{bad}", [], template=params))  # (json escapes it)
    f = write(tmp_path, "cards.jsonl", "\n".join(lines) + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), *command, str(f)])
    assert_cli_error(res, 1, f"{f}:{bad}: field 'template.params.x'", "lone surrogate")
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize("form", ["document", "json-lines"])
@pytest.mark.parametrize(("name", "case", "what", "field"), LOCATED, ids=[c[0] for c in LOCATED])
def test_cli_strict_refusal_names_line_and_column(
    stocked: Vault, tmp_path: Path, form: str, name: str, case: str, what: str, field: str | None
) -> None:
    """`vault add` of a file with a duplicate key, NaN/Infinity, an out-of-range number,
    nesting deeper than the limit or a lone surrogate: one error line naming the file, the
    line and the column of the token, and what was expected."""
    if form == "document":  # a multi-line document: the line within it
        text, line, column = located(as_document(case))
        f, source = write(tmp_path, "card.json", text), str(tmp_path / "card.json")
    else:  # line 3 of JSON lines: the file's line, the column within it
        text, _, column = located(case)
        line, column = 3, column + 1
        f = write(tmp_path, "cards.jsonl", f"{dumps(card('a1', []))}\n\n {text}\n")
        source = f"{f}:3"
    before = snapshot(stocked.root)
    err = assert_cli_error(cli(["--vault", str(stocked.root), "add", str(f)]), 1)
    assert err == f"error: {message(source, what, field, line, column)}\n"
    assert snapshot(stocked.root) == before


def test_cli_retrieve_task_with_nan_names_line_and_column(stocked: Vault, tmp_path: Path) -> None:
    task = '{"train": [{"input": [[1]], "output": [[2]]}],\n "test": [{"input": [[1, NaN]]}]}'
    f = write(tmp_path, "task.json", task)
    res = cli(["--vault", str(stocked.root), "retrieve", "--task", str(f)])
    assert assert_cli_error(res, 1) == (
        f"error: {f}: invalid JSON: NaN is not allowed, expected a finite number "
        "(line 2, column 26)\n"
    )


def test_cli_retrieve_batch_names_each_bad_line_and_column(
    example_vault: Vault, tmp_path: Path
) -> None:
    """`retrieve --batch`: the line holding 1e400 is answered with an error naming its own
    line (3) and column; the other lines are answered."""
    good = '{"repr": [[0, 1], [1, 0]], "id": "ok"}'
    lines = [good, good, '{"repr": [[0, 1e400]], "id": "over"}', good, '{"id": 1, "id": 2}']
    f = write(tmp_path, "requests.jsonl", "\n".join(lines) + "\n")
    res = cli(["--vault", str(example_vault.root), "retrieve", "--batch", str(f)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.startswith("error: 2 of 5 request lines failed"), res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [x["line"] for x in out] == [1, 2, 3, 4, 5] and out[3]["id"] == "ok"
    assert out[2]["error"] == (
        f"{f}:3: invalid JSON: number 1e400 is out of range, expected a finite number "
        "(line 3, column 15)"
    )
    assert out[4]["error"] == (
        f"{f}:5: invalid JSON: duplicate key 'id', expected each key once in an object "
        "(line 5, column 11)"
    )


@pytest.mark.parametrize(
    ("argv", "text", "said"),
    [
        (["add"], "null", "expected a concept card, got null"),
        (["add"], '"card"', 'expected a concept card, got "card"'),
        (["add"], '{"kind": false}', "field 'kind': expected kind \"concept\", got false"),
        (["evidence", "add"], "null", "expected an evidence record, got null"),
        (["repr"], "[[true]]", "field 'grid': cell [0][0] = true: expected an integer colour 0-9"),
        (
            ["repr"],
            "[[1, null]]",
            "field 'grid': cell [0][1] = null: expected an integer colour 0-9",
        ),
        (["retrieve", "--query"], "true", "expected a query, got true"),
        (
            ["import"],
            '{"kind": null}',
            "field 'kind': expected a record with 'kind' one of concept, evidence, status, "
            "repr, got null",
        ),
        (
            ["import"],
            '{"a": 1}',
            "field 'kind': expected a record with 'kind' one of concept, evidence, status, "
            "repr, got no 'kind'",
        ),
    ],
)
def test_cli_names_json_values_in_jsons_words(
    stocked: Vault, tmp_path: Path, argv: list[str], text: str, said: str
) -> None:
    """A value is named as JSON writes it (null, true, "card"), never as Python does
    (NoneType, True, str, 'card') — the words of the file the user wrote."""
    f = write(tmp_path, "in.json", text + "\n")
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), *argv, str(f)])
    assert assert_cli_error(res, 1) == f"error: {f}: {said}\n"
    assert snapshot(stocked.root) == before


@pytest.mark.parametrize("option", ["--task", "--query"])
def test_cli_input_cut_short_names_its_last_line(
    stocked: Vault, tmp_path: Path, option: str
) -> None:
    """A file cut short (`{` and a newline) is "unexpected end of input" just after its last
    character (line 1, column 2) — it used to be Python's "Expecting property name" at
    "line 2 column 1", a line the file does not have."""
    f = write(tmp_path, "q.json", "{\n")
    res = cli(["--vault", str(stocked.root), "retrieve", option, str(f)])
    assert assert_cli_error(res, 1) == (
        f"error: {f}: malformed JSON: unexpected end of input (line 1, column 2), "
        "expecting property name enclosed in double quotes\n"
    )


def test_cli_retrieve_batch_names_a_line_cut_short_by_its_own_number(
    example_vault: Vault, tmp_path: Path
) -> None:
    """`retrieve --batch`: a line cut short (`{"repr": [[1,2],`) is named by its own line
    (2) and the column after its last character — not the next line (3, column 1)."""
    good = '{"repr": [[0, 1], [1, 0]], "id": "ok"}'
    f = write(tmp_path, "requests.jsonl", "\n".join([good, '{"repr": [[1,2],', good]) + "\n")
    res = cli(["--vault", str(example_vault.root), "retrieve", "--batch", str(f)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.startswith("error: 1 of 3 request lines failed"), res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [x["line"] for x in out] == [1, 2, 3]
    assert out[1]["error"] == (
        f"{f}:2: malformed JSON: unexpected end of line (line 2, column 17), expecting value"
    )


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        (
            "audit/commits.jsonl",
            lambda line: line.replace(b'"seq":', b'"op":"x","seq":', 1),
            "duplicate key 'op', expected each key once in an object (line 2, column {col})",
        ),
        (
            "index/generations.jsonl",
            lambda line: line.replace(b'"number":', b'"number":NaN,"x":', 1),
            "NaN is not allowed, expected a finite number (line 2, column {col})",
        ),
    ],
)
def test_cli_verify_names_line_and_column_in_a_vault_file(
    stocked: Vault, file: str, edit: Callable[[bytes], bytes], expected: str
) -> None:
    """A vault file edited to hold a duplicate key or NaN: `vault verify` names the file's
    line and the token's column."""
    stocked.add([(card("c2", ["feature:square"]), "more.json")])
    path = stocked.root / file
    lines = path.read_bytes().split(b"\n")
    lines[1] = edit(lines[1])
    path.write_bytes(b"\n".join(lines))
    marker = b'"op":"x"' if file.startswith("audit") else b"NaN"
    col = lines[1].index(marker) + 1
    res = cli(["--vault", str(stocked.root), "verify"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    said = f"invalid JSON: {expected.format(col=col)}"
    if file.startswith("audit"):
        line = f"error: audit_malformed: {path}:2: {said}"
    else:
        line = f"error: generations_corrupt: {path}:2: malformed generation record ({said})"
    assert line in res.stderr.splitlines(), res.stderr  # (the place named once)


def test_cli_add_json_array_names_element(stocked: Vault, tmp_path: Path) -> None:
    f = write(tmp_path, "cards.json", dumps([card("a1", []), card("a2", [], version="x")]))
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)])
    assert_cli_error(res, 1, f"{f}[1]", "field 'version'")
    assert snapshot(stocked.root) == before


def test_cli_add_conflict_within_one_file(stocked: Vault, tmp_path: Path) -> None:
    lines = [dumps(card("d", [])), dumps(card("d", ["feature:square"]))]
    f = write(tmp_path, "cards.jsonl", "\n".join(lines) + "\n")
    before = snapshot(stocked.root)
    assert_cli_error(cli(["--vault", str(stocked.root), "add", str(f)]), 1, f"{f}:2", "d@1.0.0")
    assert snapshot(stocked.root) == before


def test_cli_add_missing_file_and_directory(stocked: Vault, tmp_path: Path) -> None:
    before = snapshot(stocked.root)
    missing = tmp_path / "nope.json"
    assert_cli_error(
        cli(["--vault", str(stocked.root), "add", str(missing)]), 1, str(missing), "no such file"
    )
    assert_cli_error(
        cli(["--vault", str(stocked.root), "add", str(tmp_path)]), 1, str(tmp_path), "directory"
    )
    assert snapshot(stocked.root) == before


def test_cli_add_fork_of_unknown_concept(stocked: Vault, tmp_path: Path) -> None:
    f = write(tmp_path, "c.json", dumps(card("nobody", [])))
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", "--fork", str(f)])
    assert_cli_error(res, 1, str(f), "cannot fork 'nobody'")
    assert snapshot(stocked.root) == before


def test_cli_add_from_stdin_bad(stocked: Vault) -> None:
    before = snapshot(stocked.root)
    res = runner.invoke(app, ["--vault", str(stocked.root), "add", "-"], input='{"id": 1')
    assert_cli_error(res, 1, "<stdin>", "malformed JSON")
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- CLI: evidence
def _evl(**extra: Any) -> str:
    return dumps(
        {"schema_version": 1, "concept": "c", "version": "1.0.0", "polarity": "negative", **extra}
    )


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (_evl(), ["field 'tier'", "needs a tier and a reason"]),
        (_evl(tier="test"), ["field 'reason'"]),
        (
            _evl(tier="test", reason="wrong", concept="ghost"),
            ["unknown concept version ghost@1.0.0"],
        ),
        (_evl(tier="test", reason="wrong", concept="a/b"), ["field 'concept'"]),
        (_evl(tier="later", reason="wrong"), ["field 'tier'", "expected the stage"]),
        (_evl(tier="test", reason="wrong", polarity="meh"), ["field 'polarity'"]),
        (_evl(tier="test", reason="wrong", colour=1), ["field 'colour'", "unknown field"]),
        (_evl(tier="test", reason="wrong")[:-1] + ', "tier": "train"}', ["duplicate key 'tier'"]),
        ("[1, 2]", ["ev.json[0]: expected an evidence record, got 1"]),
    ],
)
def test_cli_bad_evidence_changes_nothing(
    stocked: Vault, tmp_path: Path, text: str, needles: list[str]
) -> None:
    f = write(tmp_path, "ev.json", text)
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "evidence", "add", str(f)])
    assert_cli_error(res, 1, str(f), *needles)
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- CLI: other commands
def _query(tmp_path: Path, obj: Any) -> str:
    return str(write(tmp_path, "q.json", dumps(obj)))


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["retrieve"], 2, ["give exactly one of --repr, --query, --task"]),
        (["retrieve", "--repr", "G", "--query", "Q"], 2, ["give exactly one"]),
        (["retrieve", "--repr", "G", "--task", "T"], 2, ["give exactly one"]),
        (
            ["retrieve", "--query", "Q"],
            1,
            ["constraints[0]", "unknown constraint 'bogus'", "known: background_preserved"],
        ),
        (["retrieve", "--query", "G1"], 1, ["expected a query, got a grid"]),
        (["retrieve", "--task", "G1"], 1, ["expected an ARC task"]),
        (["retrieve", "--repr", "G1"], 1, ["ragged grid"]),
        (["retrieve", "--task", "T", "--test-index", "5"], 1, ["--test-index 5 out of range"]),
        (["retrieve", "--task", "T0", "--test-index", "1"], 1, ["--test-index 1 out of range"]),
        (["retrieve", "--repr", "MISSING"], 1, ["no such file"]),
        # a value of the wrong form on the command line is a usage error (2), like any other
        (["status", "c", "1.0.0", "retired"], 2, ["'STATUS'", "'retired'", "'deprecated'"]),
        (["status", "ghost", "1.0.0", "deprecated"], 1, ["unknown concept version ghost@1.0.0"]),
        (["status", "a/b", "1.0.0", "deprecated"], 2, ["'ID'", "expected an id", '"a/b"']),
        (["set-status", "c", "one", "deprecated"], 2, ["'VERSION'", '"one"']),
        (["show", "ghost"], 1, ["unknown concept 'ghost'"]),
        (["show", "c", "--version", "2.0.0"], 1, ["unknown concept version c@2.0.0"]),
        (["rollback", "--to", "99"], 1, ["unknown generation 99"]),
        (["rollback", "--to", "abcdef0123"], 1, ["unknown generation"]),
        (["rollback", "--mode", "turbo"], 2, ["'--mode'", "'turbo'", "symbolic"]),
        (["rollback", "--list", "--to", "1"], 2, ["give one of --to, --list, --mode"]),
        (["embed", "G"], 1, ["field 'grid'"]),
        (["embed", "MISSING"], 1, ["no such file"]),
    ],
)
def test_cli_bad_command_changes_nothing(
    stocked: Vault, tmp_path: Path, args: list[str], code: int, needles: list[str]
) -> None:
    files = {
        "G": str(write(tmp_path, "g.jsonl", dumps([[1, 2], [3]]) + "\n" + dumps([[1]]) + "\n")),
        "G1": str(write(tmp_path, "g1.json", dumps([[1, 2], [3]]))),
        "Q": _query(tmp_path, {"schema_version": 1, "grid": [[1]], "constraints": ["bogus"]}),
        "T": str(
            write(
                tmp_path,
                "t.json",
                dumps({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[1]]}]}),
            )
        ),
        "T0": str(  # a task without test inputs
            write(tmp_path, "t0.json", dumps({"train": [{"input": [[1]], "output": [[1]]}]}))
        ),
        "MISSING": str(tmp_path / "missing.json"),
    }
    argv = [files.get(a, a) for a in args]
    if args[:1] == ["retrieve"] and "--mode" not in args:
        argv += ["--mode", "symbolic"]
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), *argv])
    assert_cli_error(res, code, *needles)
    assert snapshot(stocked.root) == before


FRESH_REFUSALS = [
    (["rollback"], "no earlier generation"),
    (["status", "ghost", "1.0.0", "deprecated"], "unknown concept version ghost@1.0.0"),
    (["evidence", "add", "EV"], "unknown concept version ghost@1.0.0"),
]


def _fresh_refusal(vault: Vault, tmp_path: Path, argv: list[str], needle: str) -> None:
    ev = {"schema_version": 1, "concept": "ghost", "version": "1.0.0", "polarity": "positive"}
    files = {"EV": str(write(tmp_path, "ev.json", dumps(ev)))}
    res = cli(["--vault", str(vault.root), *[files.get(a, a) for a in argv]])
    assert_cli_error(res, 1, needle)


@pytest.mark.parametrize(("argv", "needle"), FRESH_REFUSALS, ids=["rollback", "status", "evidence"])
def test_cli_refused_write_on_fresh_vault(
    vault: Vault, tmp_path: Path, argv: list[str], needle: str
) -> None:
    """Nothing but (at most) the lock file may appear; see the strict test below."""
    before = snapshot(vault.root)
    _fresh_refusal(vault, tmp_path, argv, needle)
    after = snapshot(vault.root)
    if "lock" not in before:
        after.pop("lock", None)
    assert after == before


@pytest.mark.parametrize(("argv", "needle"), FRESH_REFUSALS, ids=["rollback", "status", "evidence"])
def test_cli_refused_write_on_fresh_vault_changes_nothing_at_all(
    vault: Vault, tmp_path: Path, argv: list[str], needle: str
) -> None:
    before = snapshot(vault.root)
    _fresh_refusal(vault, tmp_path, argv, needle)
    assert snapshot(vault.root) == before


@pytest.mark.parametrize(
    ("epoch", "shown"),
    [
        ("soon", "'soon'"),
        ("-5", "'-5'"),
        ("9" * 30, "9" * 30),  # was OverflowError: an internal error, exit 1 (issue 17)
        ("253402300800", "253402300800"),  # year 10000: was ValueError, exit 1
        ("\u0661", "'\u0661'"),  # an Arabic-Indic digit: str.isdigit, not ASCII
        ("9" * 5000, "(5000 digits)"),  # more than int() parses
    ],
    ids=["word", "negative", "30 digits", "year 10000", "non-ASCII digit", "5000 digits"],
)
def test_cli_bad_source_date_epoch_is_usage_error(
    stocked: Vault, tmp_path: Path, epoch: str, shown: str
) -> None:
    f = write(tmp_path, "c.json", dumps(card("n", [])))
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "add", str(f)], env={"SOURCE_DATE_EPOCH": epoch})
    assert_cli_error(res, 2, "SOURCE_DATE_EPOCH", shown)
    assert snapshot(stocked.root) == before


def test_cli_last_representable_source_date_epoch_is_accepted(
    stocked: Vault, tmp_path: Path
) -> None:
    f = write(tmp_path, "c.json", dumps(card("n", [])))
    env = {"SOURCE_DATE_EPOCH": "000253402300799"}  # leading zeros: the same integer
    res = cli(["--vault", str(stocked.root), "add", str(f)], env=env)
    assert res.exit_code == 0, res.stderr
    assert stocked.audit.entries()[-1].time == "9999-12-31T23:59:59Z"


@pytest.mark.parametrize(
    "opts",
    [["--mode", "turbo"], ["--strategy", "best"], ["--similarity", "manhattan"], ["-k", "0"]],
    ids=["mode", "strategy", "similarity", "k"],
)
def test_cli_retrieve_bad_option_value_is_usage_error(
    stocked: Vault, tmp_path: Path, opts: list[str]
) -> None:
    g = write(tmp_path, "g.json", dumps(GRID))
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "retrieve", "--repr", str(g), *opts])
    assert_cli_error(res, 2, opts[1])
    assert snapshot(stocked.root) == before


def test_cli_retrieve_bad_mode_is_a_clean_error(stocked: Vault, tmp_path: Path) -> None:
    """Whatever its exit code, a bad --mode is one clear line naming the value and the choices."""
    g = write(tmp_path, "g.json", dumps(GRID))
    before = snapshot(stocked.root)
    res = cli(["--vault", str(stocked.root), "retrieve", "--repr", str(g), "--mode", "turbo"])
    assert res.exit_code in (1, 2)
    res_code = res.exit_code
    assert_cli_error(res, res_code, "'turbo'", "symbolic", "hybrid", "soft")
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- CLI: vault dirs
@pytest.mark.parametrize(
    "command",
    [
        ["log"],
        ["add", "CARD"],
        ["index", "status"],
        ["retrieve", "--repr", "GRID"],
        ["rollback", "--list"],
    ],
)
def test_cli_not_a_vault(tmp_path: Path, command: list[str]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "readme.txt").write_text("not a vault")
    files = {
        "CARD": str(write(tmp_path, "c.json", dumps(card("x", [])))),
        "GRID": str(write(tmp_path, "g.json", dumps(GRID))),
    }
    argv = [files.get(a, a) for a in command]
    before = snapshot(plain)
    assert_cli_error(cli(["--vault", str(plain), *argv]), 1, str(plain), "not a vault")
    assert snapshot(plain) == before
    missing = tmp_path / "missing"
    assert_cli_error(cli(["--vault", str(missing), *argv]), 1, str(missing), "no such directory")
    assert not missing.exists()


def test_cli_python_package_directory(tmp_path: Path) -> None:
    pkg = tmp_path / "vault"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    before = snapshot(pkg)
    assert_cli_error(cli(["--vault", str(pkg), "log"]), 1, "Python package")
    assert_cli_error(cli(["--vault", str(pkg), "init"]), 1, "Python package")
    assert_cli_error(cli(["init", str(pkg)]), 1, "Python package")
    assert snapshot(pkg) == before


def test_cli_init_non_empty_directory(tmp_path: Path) -> None:
    d = tmp_path / "stuff"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    before = snapshot(d)
    assert_cli_error(cli(["init", str(d)]), 1, str(d), "not empty")
    assert snapshot(d) == before


def test_cli_newer_format(stocked: Vault, tmp_path: Path) -> None:
    (stocked.root / "format.json").write_text(dumps({"format": "concept-vault", "version": 99}))
    before = snapshot(stocked.root)
    f = write(tmp_path, "c.json", dumps(card("x", [])))
    commands = [
        ["log"],
        ["add", str(f)],
        ["init"],
        ["index", "build"],
        ["status", "c", "1.0.0", "deprecated"],
    ]
    for argv in commands:
        err = assert_cli_error(cli(["--vault", str(stocked.root), *argv]), 1, "format 99")
        assert "upgrade" in err
    assert snapshot(stocked.root) == before


# --------------------------------------------------------------------------- library == CLI vault
def test_fixture_vault_has_frozen_clock(vault: Vault) -> None:
    assert vault.clock() == fixed_clock(1_700_000_000)()
    assert all(e.time == "2023-11-14T22:13:20Z" for e in vault.audit.entries())


@pytest.mark.parametrize("maker", [lambda r: Vault.open(r), lambda r: Vault.init(r)])
def test_reopening_a_good_vault_changes_nothing(
    vault: Vault, maker: Callable[[Path], Vault]
) -> None:
    vault.add([(card("c", []), "f")])
    before = snapshot(vault.root)
    assert maker(vault.root).root == vault.root
    assert snapshot(vault.root) == before
