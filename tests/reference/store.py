"""A vault's current generation, read by hand from the files FORMAT.md describes.

§7.1 ``index/CURRENT`` names the generation; §3 an object ``abcd…`` lives at
``objects/ab/cd…`` and its sha256 is its name; §7.3 the manifest names the state list and
the vectors object; §7.4 the state list names 256 concept shards of ``{"id@version":
entry}``; §8.2 the vectors object holds one ``{"id","vector","version"}`` line per concept
version. Each card's keys are recomputed from the card by §5's rule and must equal the
entry's. §11 ``config.toml`` and ``refs/mode.json`` give the retrieval settings.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("active", "deprecated", "suppressed")  # §7.5: status codes 0, 1, 2

# §5's closed vocabularies and aliases, copied from FORMAT.md
TRANSFORMS = frozenset(
    [
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
    ]
)
INVARIANT_ALIASES = {
    "shape_preserved": "same_dims",
    "dims_preserved": "same_dims",
    "same_shape": "same_dims",
    "colors_preserved": "palette_preserved",
    "color_count_preserved": "colour_count_preserved",
}
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

# §11's defaults
DEFAULTS: dict[str, Any] = {
    "mode": "hybrid",
    "k": 10,
    "shortlist_min": 10,
    "shortlist_max": 200,
    "similarity": "structured",
    "strategy": "weighted",
    "alpha": 0.65,
    "beta": 0.2,
    "gamma": 0.0,
    "delta": 0.0,
}


@dataclass(frozen=True)
class Concept:
    ref: str  # id@version
    id: str
    version: str
    semver: tuple[int, int, int]
    domain: str  # the card's domain field
    status: int  # 0 active, 1 deprecated, 2 suppressed
    positive: int
    negative: int
    keys: tuple[str, ...]  # §5 concept keys, sorted (domain: ones included)
    matchable: frozenset[str]  # the keys without the domain: family
    vector: tuple[int, ...]  # 64 int8 values (§8.2)


@dataclass(frozen=True)
class RefVault:
    root: Path
    generation: str
    concepts: tuple[Concept, ...]
    settings: dict[str, Any]  # [retrieval] of config.toml over §11's defaults
    mode_override: str | None  # refs/mode.json

    def by_ref(self, ref: str) -> Concept:
        for c in self.concepts:
            if c.ref == ref:
                return c
        raise KeyError(ref)

    def newest(self, concept_id: str) -> Concept:
        return max((c for c in self.concepts if c.id == concept_id), key=lambda c: c.semver)


def semver(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(x) for x in version.split("."))
    return major, minor, patch


def _object(root: Path, digest: str) -> bytes:
    data = (root / "objects" / digest[:2] / digest[2:]).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"object {digest} does not match its address")
    return data


def _json_object(root: Path, digest: str) -> Any:
    return json.loads(_object(root, digest))


def concept_keys(card: dict[str, Any]) -> tuple[str, ...]:
    """§5: signature keys ∪ obligation keys ∪ transform:<t> for every template identifier
    that is a transform name ∪ domain:<domain> (aliases mapped)."""
    keys = set()
    for key in card["signature"]["keys"]:
        family, _, name = key.partition(":")
        if family == "invariant":
            name = INVARIANT_ALIASES.get(name, name)
        keys.add(f"{family}:{name}")
    for name in card.get("proof_obligations", ()):
        keys.add("invariant:" + INVARIANT_ALIASES.get(name, name))
    for ident in IDENTIFIER.findall(card["template"]["template_dsl"]):
        if ident in TRANSFORMS:
            keys.add(f"transform:{ident}")
    keys.add(f"domain:{card['domain']}")
    return tuple(sorted(keys))


def read_settings(root: Path) -> tuple[dict[str, Any], str | None]:
    settings = dict(DEFAULTS)
    path = root / "config.toml"
    if path.exists():
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("retrieval", {})
        table.pop("mmr_lambda", None)  # accepted, no effect (§11)
        settings.update(table)
    override = None
    mode_file = root / "refs" / "mode.json"
    if mode_file.exists():
        override = json.loads(mode_file.read_text(encoding="utf-8"))["mode"]
    return settings, override


def read_vault(root: Path | str, *, check_cards: bool = True) -> RefVault:
    """The current generation of the vault at ``root``. ``check_cards`` reads every card
    and recomputes its keys (§5); without it the entry's keys are used as stored."""
    root = Path(root)
    current = json.loads((root / "index" / "CURRENT").read_text(encoding="utf-8"))
    generation = current["generation"]
    manifest = _json_object(root, generation)
    state = _json_object(root, manifest["state"])
    vectors: dict[str, tuple[int, ...]] = {}
    for line in _object(root, manifest["vectors"]).decode("utf-8").splitlines():
        obj = json.loads(line)
        vectors[f"{obj['id']}@{obj['version']}"] = tuple(obj["vector"])
    concepts = []
    for shard_digest in state["concepts"]:
        shard = _json_object(root, shard_digest)
        for ref, entry in shard.items():
            keys = tuple(entry["keys"])
            if check_cards:
                card = _json_object(root, entry["card"])
                if concept_keys(card) != keys or card["domain"] != entry["domain"]:
                    raise ValueError(f"{ref}: state keys {keys} != §5 keys {concept_keys(card)}")
            concepts.append(
                Concept(
                    ref=ref,
                    id=entry["id"],
                    version=entry["version"],
                    semver=semver(entry["version"]),
                    domain=entry["domain"],
                    status=STATUSES.index(entry["status"]),
                    positive=int(entry["positive"]),
                    negative=int(entry["negative"]),
                    keys=keys,
                    matchable=frozenset(k for k in keys if not k.startswith("domain:")),
                    vector=vectors[ref],
                )
            )
    if len(concepts) != len(vectors):
        raise ValueError("the state and the vectors object hold different concept versions")
    settings, override = read_settings(root)
    return RefVault(root, generation, tuple(concepts), settings, override)
