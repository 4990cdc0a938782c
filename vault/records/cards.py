"""Records: concept cards, evidence, status events, queries — normalized and validated.

Input may be lenient where it is unambiguous (``kind`` may be omitted, evidence may give
grids instead of repr ids); what is stored is one normal form, so the same meaning
always has the same bytes and the same address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vault.canonical import check_bounds
from vault.errors import InvalidInputError, json_value
from vault.grid.grid import parse_grid
from vault.grid.reprs import grid_to_repr, normalize_repr, repr_id, strip_provenance
from vault.records.keys import (
    NONE_DECLARED,
    Declared,
    canonical_key,
    canonical_name,
    obligation_key,
)
from vault.records.schema import a_kind, expect_kind, validate
from vault.store.objects import is_digest

SCHEMA_VERSION = 1
STATUSES = ("active", "deprecated", "suppressed")
VERSION_PART_MAX = 999_999_999  # each of MAJOR.MINOR.PATCH: at most 9 digits (the schemas)


def parse_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = text.split(".")
    return int(major), int(minor), int(patch)


def version_text(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def ref(concept: str, version: str) -> str:
    """The name of one concept version, ``id@version``."""
    return f"{concept}@{version}"


def _kind(obj: Any, kind: str, source: str | None) -> dict[str, Any]:
    expect_kind(obj, (kind,), source)  # another kind of record: said as such
    if not isinstance(obj, dict):
        raise InvalidInputError(f"expected {a_kind(kind)}, got {json_value(obj)}", source=source)
    out = dict(obj)
    if out.setdefault("kind", kind) != kind:
        raise InvalidInputError(
            f"expected kind {json_value(kind)}, got {json_value(out['kind'])}",
            source=source,
            field="kind",
        )
    return out


def normalize_card(
    obj: Any, source: str | None = None, declared: Declared = NONE_DECLARED
) -> dict[str, Any]:
    """A concept card in normal form (defaults filled, keys sorted), or a clear error;
    ``declared``: the names the vault's config adds to the closed key families."""
    card = _kind(obj, "concept", source)
    card.setdefault("schema_version", SCHEMA_VERSION)  # as evidence: the only version
    validate(card, "concept", source)
    try:
        check_bounds(card)  # params is free-form: keep it portable JSON
    except InvalidInputError as exc:
        raise InvalidInputError(exc.detail, source=source, field="template.params") from None
    for i, name in enumerate(card.get("proof_obligations", ())):
        obligation_key(name, source, f"proof_obligations[{i}]", declared)
    card.setdefault("status", "active")
    card["signature"] = {
        "keys": sorted(
            {
                canonical_key(k, source, f"signature.keys[{i}]", declared)
                for i, k in enumerate(card["signature"]["keys"])
            }
        )
    }
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


def normalize_status(obj: Any, source: str | None = None) -> dict[str, Any]:
    """A status event in stored form (``{"concept", "version", "status"[, "reason"]}``)."""
    ev = _kind(obj, "status", source)
    ev.setdefault("schema_version", SCHEMA_VERSION)
    validate(ev, "status", source)
    return ev


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
