"""Records: concept cards, evidence, status events, queries — normalized and validated.

Input may be lenient where it is unambiguous (``kind`` may be omitted, evidence may give
grids instead of repr ids); what is stored is one normal form, so the same meaning
always has the same bytes and the same address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .canonical import check_bounds
from .errors import InvalidInputError
from .grid import parse_grid
from .keys import canonical_name, obligation_key, task_keys
from .pairs import PairFacts, analyze_pair
from .reprs import grid_to_repr, normalize_repr, repr_id, strip_provenance
from .schema import validate
from .store import is_digest

SCHEMA_VERSION = 1
STATUSES = ("active", "deprecated", "suppressed")


def parse_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = text.split(".")
    return int(major), int(minor), int(patch)


def version_text(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def ref(concept: str, version: str) -> str:
    """The name of one concept version, ``id@version``."""
    return f"{concept}@{version}"


def _kind(obj: Any, kind: str, source: str | None) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"expected {'an' if kind[0] in 'aeiou' else 'a'} {kind} object, "
            f"got {type(obj).__name__}",
            source=source,
        )
    out = dict(obj)
    if out.setdefault("kind", kind) != kind:
        raise InvalidInputError(
            f"expected kind {kind!r}, got {out['kind']!r}", source=source, field="kind"
        )
    return out


def normalize_card(obj: Any, source: str | None = None) -> dict[str, Any]:
    """A concept card in normal form (defaults filled, keys sorted), or a clear error."""
    card = _kind(obj, "concept", source)
    validate(card, "concept", source)
    try:
        check_bounds(card)  # params is free-form: keep it portable JSON
    except InvalidInputError as exc:
        raise InvalidInputError(exc.detail, source=source, field="template.params") from None
    for i, name in enumerate(card.get("proof_obligations", ())):
        obligation_key(name, source, f"proof_obligations[{i}]")
    card.setdefault("status", "active")
    card["signature"] = {"keys": sorted(set(card["signature"]["keys"]))}
    card["template"] = {
        "template_dsl": card["template"]["template_dsl"],
        "params": card["template"].get("params", {}),
    }
    card["proof_obligations"] = sorted(
        {canonical_name(o) for o in card.get("proof_obligations", ())}
    )
    card.setdefault("counterexamples", [])
    card.setdefault("provenance", {})
    card.setdefault("compatibility", {})
    card["compatibility"].setdefault("repr_schema", 1)
    card["compatibility"].setdefault("dsl_grammar", "1")
    return card


@dataclass
class NormalizedEvidence:
    record: dict[str, Any]
    reprs: list[dict[str, Any]] = field(default_factory=list)  # reprs to store alongside


def _repr_ref(value: Any, source: str | None, fname: str, out: list[dict[str, Any]]) -> str:
    """A repr id from a hex id, a grid or a repr object (grids/reprs are queued to store)."""
    if isinstance(value, str):
        if not is_digest(value):
            raise InvalidInputError(
                "expected a repr id (64 hex digits), a grid or a repr", source=source, field=fname
            )
        return value
    if isinstance(value, list):
        rep = grid_to_repr(parse_grid(value, source, fname))
    else:
        try:
            rep = strip_provenance(normalize_repr(value, source))
        except InvalidInputError as exc:
            raise InvalidInputError(
                exc.detail, source=source, field=f"{fname}.{exc.field}" if exc.field else fname
            ) from None
    out.append(rep)
    return repr_id(rep)


def normalize_evidence(obj: Any, source: str | None = None) -> NormalizedEvidence:
    """Evidence in stored form; grids and reprs given inline become stored reprs."""
    ev = _kind(obj, "evidence", source)
    ev.setdefault("schema_version", SCHEMA_VERSION)
    reprs: list[dict[str, Any]] = []
    if "grid" in ev:
        if "repr_id" in ev or "repr" in ev:
            raise InvalidInputError("give one of grid, repr, repr_id", source=source)
        ev["repr_id"] = _repr_ref(ev.pop("grid"), source, "grid", reprs)
    elif "repr" in ev:
        if "repr_id" in ev:
            raise InvalidInputError("give one of grid, repr, repr_id", source=source)
        ev["repr_id"] = _repr_ref(ev.pop("repr"), source, "repr", reprs)
    pair = ev.get("pair")
    if isinstance(pair, dict) and set(pair) == {"input", "output"}:
        for k in ("input", "output"):
            if isinstance(pair[k], dict) and "grid" not in pair[k]:
                raise InvalidInputError(
                    "a pair's reprs must carry their grid (give the grid itself)",
                    source=source,
                    field=f"pair.{k}",
                )
        ev["pair"] = {
            k: _repr_ref(pair[k], source, f"pair.{k}", reprs) for k in ("input", "output")
        }
    validate(ev, "evidence", source)
    if ev["polarity"] == "negative":
        for name in ("tier", "reason"):
            if name not in ev:
                raise InvalidInputError(
                    "negative evidence needs a tier and a reason code", source=source, field=name
                )
    elif "tier" in ev or "reason" in ev:
        raise InvalidInputError(
            "tier and reason belong to negative evidence only",
            source=source,
            field="tier" if "tier" in ev else "reason",
        )
    return NormalizedEvidence(ev, reprs)


def status_event(
    concept: str, version: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "status",
        "concept": concept,
        "version": version,
        "status": status,
    }
    if reason:
        ev["reason"] = reason
    validate(ev, "status")
    return ev


@dataclass(frozen=True)
class Pair:
    input: dict[str, Any]
    output: dict[str, Any]


@dataclass(frozen=True)
class Query:
    """What the solver asks with: a repr, constraints and optional demonstration pairs."""

    domain: str = "grid_2d"
    repr: dict[str, Any] | None = None
    constraints: tuple[str, ...] = ()
    pairs: tuple[Pair, ...] = ()

    def facts(self) -> list[PairFacts]:
        return [analyze_pair(p.input, p.output) for p in self.pairs]

    def all_keys(self) -> list[str]:
        """The query's keys: domain, constraints, pair-inferred keys and repr features."""
        keys = {f"domain:{self.domain}"}
        keys.update(obligation_key(c) for c in self.constraints)
        inputs = [p.input for p in self.pairs] + ([self.repr] if self.repr else [])
        keys |= task_keys(self.facts(), inputs)
        return sorted(keys)


def normalize_query(obj: Any, source: str | None = None) -> Query:
    q = _kind(obj, "query", source)
    validate(q, "query", source)
    if "repr" in q and "grid" in q:
        raise InvalidInputError("give either repr or grid, not both", source=source)
    rep = None
    if "grid" in q:
        rep = grid_to_repr(parse_grid(q["grid"], source, "grid"))
    elif "repr" in q:
        rep = strip_provenance(normalize_repr(q["repr"], source))
    for i, name in enumerate(q.get("constraints", ())):
        obligation_key(name, source, f"constraints[{i}]")
    constraints = tuple(sorted({canonical_name(c) for c in q.get("constraints", ())}))
    pairs = tuple(
        Pair(
            grid_to_repr(parse_grid(p["input"], source, f"pairs[{i}].input")),
            grid_to_repr(parse_grid(p["output"], source, f"pairs[{i}].output")),
        )
        for i, p in enumerate(q.get("pairs", ()))
    )
    if rep is None and not pairs:
        raise InvalidInputError(
            "a query needs a repr, a grid or demonstration pairs", source=source
        )
    return Query(domain=q.get("domain", "grid_2d"), repr=rep, constraints=constraints, pairs=pairs)


def is_arc_task(obj: Any) -> bool:
    return isinstance(obj, dict) and "train" in obj and "kind" not in obj


def parse_task(obj: Any, source: str | None = None) -> tuple[list[Pair], list[dict[str, Any]]]:
    """An ARC task file: its train pairs (as reprs) and its test input reprs."""
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), list):
        raise InvalidInputError(
            'expected an ARC task: {"train": [{"input", "output"}...], "test": [{"input"}...]}',
            source=source,
        )
    unknown = set(obj) - {"train", "test", "name", "id"}
    if unknown:
        raise InvalidInputError(
            "unknown field (allowed: train, test, name, id)",
            source=source,
            field=sorted(unknown)[0],
        )
    if not obj["train"]:
        raise InvalidInputError(
            "a task needs at least one train pair", source=source, field="train"
        )
    pairs = []
    for i, p in enumerate(obj["train"]):
        if not isinstance(p, dict) or "input" not in p or "output" not in p:
            raise InvalidInputError(
                'expected {"input": grid, "output": grid}', source=source, field=f"train[{i}]"
            )
        pairs.append(
            Pair(
                grid_to_repr(parse_grid(p["input"], source, f"train[{i}].input")),
                grid_to_repr(parse_grid(p["output"], source, f"train[{i}].output")),
            )
        )
    tests = []
    test = obj.get("test", [])
    if not isinstance(test, list):
        raise InvalidInputError('expected a list of {"input": grid}', source=source, field="test")
    for i, t in enumerate(test):
        if not isinstance(t, dict) or "input" not in t:
            raise InvalidInputError('expected {"input": grid}', source=source, field=f"test[{i}]")
        tests.append(grid_to_repr(parse_grid(t["input"], source, f"test[{i}].input")))
    return pairs, tests


def task_query(obj: Any, test_index: int = 0, source: str | None = None) -> Query:
    """An ARC task as a query: all train pairs plus test input ``test_index`` as the repr."""
    pairs, tests = parse_task(obj, source)
    if tests and not 0 <= test_index < len(tests):
        raise InvalidInputError(
            f"--test-index {test_index} out of range (task has {len(tests)} test inputs)",
            source=source,
        )
    return Query(repr=tests[test_index] if tests else None, pairs=tuple(pairs))
