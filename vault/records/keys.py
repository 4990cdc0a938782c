"""The one key vocabulary shared by concepts and queries.

Keys are ``family:name`` strings in four families: ``domain:``, ``transform:``,
``invariant:`` and ``feature:``. Concepts get keys from their signature, their proof
obligations and the operators of their template; queries get keys from their repr,
their constraints and their demonstration pairs. A proof obligation and the query
constraint that mean the same thing are the same name and map to the same key
(``same_dims`` -> ``invariant:same_dims``); historical aliases map there too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vault.errors import InvalidInputError
from vault.grid.pairs import PairFacts
from vault.grid.reprs import SYMMETRIES

FAMILIES = ("domain", "transform", "invariant", "feature")

# Constraint / obligation name -> key. Both vocabularies are this one table.
INVARIANTS: dict[str, str] = {
    "same_dims": "invariant:same_dims",
    "palette_preserved": "invariant:palette_preserved",
    "fixed_dims": "invariant:fixed_dims",
    "object_count_preserved": "invariant:object_count_preserved",
    "colour_count_preserved": "invariant:colour_count_preserved",
    "background_preserved": "invariant:background_preserved",
}
# Names of the original design, accepted on input and mapped to the same key.
ALIASES: dict[str, str] = {
    "shape_preserved": "same_dims",
    "dims_preserved": "same_dims",
    "same_shape": "same_dims",
    "colors_preserved": "palette_preserved",
    "color_count_preserved": "colour_count_preserved",
}

# Transform names that can be inferred exactly from pairs or named in a template.
TRANSFORMS = (
    "identity",
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "flip_h",
    "flip_v",
    "transpose",
    "anti_transpose",
    "scale_up",
    "scale_down",
    "tile",
    "crop",
    "recolor",
    "fill",
    "erase",
    "symmetrize",
    "move",
    "extend",
)

_IDENT = re.compile(r"[a-z_][a-z0-9_]*")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a name a vault's config may declare
# Closed families: a name outside these sets is refused (with the nearest known name).
# The ``feature:`` keys ``repr_keys`` and ``pair_keys`` emit, in the order of the fitted
# embedder's one-hot key block (``vault.embedding.fitted.raw.KEY_VOCABULARY``).
FEATURE_KEYS: tuple[str, ...] = (
    *(f"symmetry_{s}" for s in SYMMETRIES),
    "no_object",
    "single_object",
    "multi_object",
    "square",
    "has_containment",
    "monochrome_objects",
    "output_larger",
    "output_smaller",
    "colours_added",
    "colours_removed",
    "objects_added",
    "objects_removed",
)
CLOSED = {"transform": frozenset(TRANSFORMS), "invariant": frozenset(INVARIANTS)}
DECLARE_HINT = "declare a new one under [keys] in the vault's config.toml"


@dataclass(frozen=True)
class Declared:
    """Names a vault's config.toml adds to the closed families (``[keys]``: ``transform``,
    ``invariant``), so that its cards and queries may use them; any other unknown name is
    still refused as a typo. Only input is checked against them: a stored record is folded
    whatever the config says (``stored_key``), so an index stays a function of the log."""

    transform: frozenset[str] = frozenset()
    invariant: frozenset[str] = frozenset()

    def names(self, family: str) -> frozenset[str]:
        extra: frozenset[str] = getattr(self, family, frozenset())
        return CLOSED.get(family, frozenset()) | extra


NONE_DECLARED = Declared()


def obligation_key(
    name: str, source: str | None = None, field: str = "", declared: Declared = NONE_DECLARED
) -> str:
    """The key of a proof obligation or query constraint name (a built-in invariant or one
    the vault declares)."""
    canonical = ALIASES.get(name, name)
    key = INVARIANTS.get(canonical)
    if key is None:
        if canonical in declared.invariant:
            return f"invariant:{canonical}"
        known = ", ".join(sorted(declared.names("invariant")))
        raise InvalidInputError(
            f"unknown constraint {name!r} (known: {known}; {DECLARE_HINT})",
            source=source,
            field=field or None,
        )
    return key


def stored_obligation_key(name: str) -> str:
    """A stored card's proof obligation as a key: a declared name is kept as written."""
    canonical = ALIASES.get(name, name)
    return INVARIANTS.get(canonical, f"invariant:{canonical}")


def canonical_key(
    key: str,
    source: str | None = None,
    field: str | None = None,
    declared: Declared = NONE_DECLARED,
) -> str:
    """The canonical form of a ``family:name`` key: aliases of the original design mapped
    (``invariant:shape_preserved`` -> ``invariant:same_dims``); an unknown ``transform:`` or
    ``invariant:`` name is refused with the nearest known one suggested. ``domain:`` and
    ``feature:`` names are open (any lower-case name)."""
    family, _, name = key.partition(":")
    if family == "invariant":
        name = ALIASES.get(name, name)
    if family in CLOSED:
        known = declared.names(family)
        if name not in known:
            import difflib  # (only for the error message)

            choices = sorted(known | (set(ALIASES) if family == "invariant" else set()))
            near = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
            hint = f"; did you mean {family}:{near[0]}?" if near else ""
            raise InvalidInputError(
                f"unknown key {key!r}{hint} (known {family} names: "
                f"{', '.join(sorted(known))}; {DECLARE_HINT})",
                source=source,
                field=field,
            )
    return f"{family}:{name}"


def canonical_name(name: str) -> str:
    """The canonical constraint / obligation name (aliases of the original design mapped)."""
    return ALIASES.get(name, name)


def template_keys(template_dsl: str) -> set[str]:
    """``transform:`` keys for the known operators named in a template."""
    names = set(_IDENT.findall(template_dsl))
    return {f"transform:{t}" for t in TRANSFORMS if t in names}


def stored_key(key: str) -> str:
    """A stored card's key, canonical: aliases mapped; a name a newer vocabulary dropped is
    kept as written (it was accepted once, and a fold of stored records never fails on it)."""
    try:
        return canonical_key(key)
    except InvalidInputError:
        return key


def concept_keys(card: dict[str, Any]) -> list[str]:
    """All keys of a concept card, sorted: signature, obligations, template operators."""
    keys = {stored_key(k) for k in card["signature"]["keys"]}
    keys.update(stored_obligation_key(o) for o in card.get("proof_obligations", ()))
    keys.update(template_keys(card["template"]["template_dsl"]))
    keys.add(f"domain:{card['domain']}")
    return sorted(keys)


def repr_keys(rep: dict[str, Any]) -> set[str]:
    """``feature:`` keys describing one grid repr."""
    g = rep["globals"]
    keys = {f"domain:{rep['domain']}"}
    for name, flag in g.get("symmetry", {}).items():
        if flag:
            keys.add(f"feature:symmetry_{name}")
    n = g.get("component_count")
    if n is not None:
        keys.add(
            "feature:no_object"
            if n == 0
            else "feature:single_object"
            if n == 1
            else "feature:multi_object"
        )
    if g["height"] == g["width"]:
        keys.add("feature:square")
    if any(e["type"] == "contained_in" for e in rep.get("edges", ())):
        keys.add("feature:has_containment")
    comps = [x for x in rep.get("nodes", ()) if x["type"] == "component"]
    if len(comps) > 1 and len({x.get("colour") for x in comps}) == 1:
        keys.add("feature:monochrome_objects")
    return keys


def pair_keys(facts: PairFacts) -> set[str]:
    """``transform:``, ``invariant:`` and ``feature:`` keys true of one pair."""
    keys: set[str] = set()
    if facts.identity:
        keys.add("transform:identity")
    keys.update(f"transform:{name}" for name in facts.d4)
    for flag, name in (
        (facts.scale_up, "scale_up"),
        (facts.scale_down, "scale_down"),
        (facts.tiled, "tile"),
        (facts.crop, "crop"),
        (facts.recolor, "recolor"),
        (facts.fill, "fill"),
        (facts.erase, "erase"),
        (facts.symmetrized, "symmetrize"),
    ):
        if flag:
            keys.add(f"transform:{name}")
    if facts.same_dims and facts.counts_preserved and not facts.identity and not facts.d4:
        keys.add("transform:move")
    if facts.embed and not facts.tiled and not facts.scale_up:
        keys.add("transform:extend")
    if facts.same_dims:
        keys.add(INVARIANTS["same_dims"])
    if facts.colours_in == facts.colours_out:
        keys.add(INVARIANTS["palette_preserved"])
    if facts.objects_in == facts.objects_out:
        keys.add(INVARIANTS["object_count_preserved"])
    if facts.counts_preserved:
        keys.add(INVARIANTS["colour_count_preserved"])
    if facts.background_in == facts.background_out:
        keys.add(INVARIANTS["background_preserved"])
    hi, wi = facts.in_dims
    ho, wo = facts.out_dims
    if ho * wo > hi * wi:
        keys.add("feature:output_larger")
    elif ho * wo < hi * wi:
        keys.add("feature:output_smaller")
    if facts.colours_out - facts.colours_in:
        keys.add("feature:colours_added")
    if facts.colours_in - facts.colours_out:
        keys.add("feature:colours_removed")
    if facts.objects_out > facts.objects_in:
        keys.add("feature:objects_added")
    elif facts.objects_out < facts.objects_in:
        keys.add("feature:objects_removed")
    return keys


def task_keys(facts: Sequence[PairFacts], input_reprs: Iterable[dict[str, Any]]) -> set[str]:
    """Keys true of every demonstration pair and every input grid of a task."""
    per_pair = [pair_keys(f) for f in facts]
    keys = set.intersection(*per_pair) if per_pair else set()
    if len(facts) > 1 and len({f.out_dims for f in facts}) == 1:
        keys.add(INVARIANTS["fixed_dims"])
    per_input = [repr_keys(r) for r in input_reprs]
    if per_input:
        keys |= set.intersection(*per_input)
    return keys


def matchable(keys: Iterable[str]) -> list[str]:
    """Keys that count towards overlap: every family except ``domain:`` (a filter)."""
    return sorted(k for k in keys if not k.startswith("domain:"))
