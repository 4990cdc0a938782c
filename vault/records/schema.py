"""Validation against the JSON Schemas shipped in ``vault/records/schemas/``.

A small validator for the subset of JSON Schema those files use (type, const, enum,
pattern, length and size bounds, properties/required/additionalProperties, items).
Errors name the field path and say what was expected.

A ``pattern`` must match the **whole** string (``re.fullmatch``): with ``re.search`` the
schemas' ``^…$`` would accept a trailing newline (``$`` matches before a final ``\n``), so
``"1.0.0\n"`` would pass as a version. Every shipped pattern is anchored anyway, so this is
the JSON Schema meaning for them, minus that one hole.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from vault.errors import InvalidInputError, json_value

SCHEMAS = ("concept", "evidence", "status", "repr", "query")

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


SCHEMA_DIR = Path(__file__).parent / "schemas"  # package data (see pyproject.toml)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema ``name`` (one of ``SCHEMAS``)."""
    text = (SCHEMA_DIR / f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def validate(value: Any, schema_name: str, source: str | None = None) -> None:
    """Raise ``InvalidInputError`` naming source, field and expectation if ``value`` is invalid."""
    _check(value, load_schema(schema_name), "", source)


def validate_field(value: Any, schema_name: str, field: str, source: str | None = None) -> None:
    """Check one field of schema ``schema_name`` on its own (a concept id, a version or a key
    given on the command line, before anything is read). ``field`` is a top-level name or a
    dotted path into objects, ``[]`` naming an array's items: ``signature.keys[]`` is one
    key of a card's signature."""
    node = load_schema(schema_name)
    for part in field.split("."):
        name = part.removesuffix("[]")
        node = node["properties"][name]
        if part != name:
            node = node["items"]
    _check(value, node, field, source)


# What each kind of input is called in messages ("expected a grid, got a query").
KIND_NAMES = {
    "concept": "concept card",
    "evidence": "evidence record",
    "status": "status event",
    "repr": "repr",
    "query": "query",
    "task": "ARC task",
    "grid": "grid",
}


def record_kind(value: Any) -> str | None:
    """What kind of input ``value`` recognisably is — a key of ``KIND_NAMES`` — or None when
    it is not recognisably any (then the schema of the kind expected says what is wrong).
    A record's own ``kind`` decides; without one, its shape: an ARC task has ``train``,
    evidence a ``polarity``, a card a ``template`` or ``signature``, a status event a
    ``concept`` and a ``status``, a repr ``globals`` or ``nodes``, a query ``constraints``
    or ``pairs``; a grid is a non-empty list of lists."""
    if isinstance(value, list):
        return "grid" if value and all(isinstance(row, list) for row in value) else None
    if not isinstance(value, dict):
        return None
    kind = value.get("kind")
    if isinstance(kind, str) and kind in SCHEMAS:
        return kind
    if "kind" in value:  # a kind of no schema: the expected kind's check names it
        return None
    if "train" in value:
        return "task"
    if "polarity" in value:
        return "evidence"
    if "template" in value or "signature" in value:
        return "concept"
    if "status" in value and "concept" in value:
        return "status"
    if "globals" in value or "nodes" in value:
        return "repr"
    if "constraints" in value or "pairs" in value:
        return "query"
    return None


def a_kind(kind: str) -> str:
    """``"an ARC task"``, ``"a grid"``: a kind (``KIND_NAMES``) with its article."""
    name = KIND_NAMES[kind]
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def expect_kind(value: Any, wanted: tuple[str, ...], source: str | None = None) -> None:
    """Refuse ``value`` when it is recognisably another kind of input than ``wanted``
    (``record_kind``): "expected a grid or an ARC task, got a query" rather than an error
    about a field the other kind never has. Anything else passes (to its schema check)."""
    got = record_kind(value)
    if got is not None and got not in wanted:
        names = [a_kind(k) for k in wanted]
        expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
        said = isinstance(value, dict) and value.get("kind") == got  # its 'kind' says so
        raise InvalidInputError(
            f"expected {expected}, got {a_kind(got)}",
            source=source,
            field="kind" if said else None,
        )


def _fail(path: str, expected: str, value: Any, source: str | None) -> None:
    raise InvalidInputError(
        f"expected {expected}, got {json_value(value)}", source=source, field=path or "(top level)"
    )


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return False
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], path: str, source: str | None) -> None:
    desc = schema.get("description")
    if (
        "const" in schema
        and value != schema["const"]
        or ("const" in schema and type(value) is not type(schema["const"]))
    ):
        _fail(path, desc or json.dumps(schema["const"]), value, source)
    if "enum" in schema and value not in schema["enum"]:
        _fail(
            path,
            desc or "one of " + ", ".join(json.dumps(e) for e in schema["enum"]),
            value,
            source,
        )
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        article = "an" if kind[0] in "aeiou" else "a"
        _fail(path, desc or f"{article} {kind}", value, source)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            _fail(path, desc or f"at least {schema['minLength']} characters", value, source)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            _fail(path, desc or f"at most {schema['maxLength']} characters", value, source)
        if "pattern" in schema and not _regex(schema["pattern"]).fullmatch(value):
            _fail(path, desc or f"a string matching {schema['pattern']}", value, source)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            _fail(path, desc or f"a number >= {schema['minimum']}", value, source)
        if "maximum" in schema and value > schema["maximum"]:
            _fail(path, desc or f"a number <= {schema['maximum']}", value, source)
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            _fail(path, f"at least {schema['minItems']} items", value, source)
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _fail(path, f"at most {schema['maxItems']} items", value, source)
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", source)
    elif isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidInputError(
                    "missing required field", source=source, field=_join(path, name)
                )
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = props.get(name)
            if sub is not None:
                _check(item, sub, _join(path, name), source)
            elif extra is False:
                allowed = ", ".join(sorted(props))
                raise InvalidInputError(
                    f"unknown field (allowed: {allowed})", source=source, field=_join(path, name)
                )
            elif isinstance(extra, dict):
                _check(item, extra, _join(path, name), source)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
