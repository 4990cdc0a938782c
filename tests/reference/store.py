"""A vault's current generation, read by hand from the files FORMAT.md describes.

§7.1 ``index/CURRENT`` names the generation; §3 an object ``abcd…`` lives at
``objects/ab/cd…`` and its sha256 is its name; §7.3 the manifest names the state list and
its two chunk lists; §7.5 the ``rows`` list names the rows chunks (a 32-byte header, nine
uint32 columns, then ``id@version\n`` refs, keys, counts and local postings) and the
``matrix`` list the matrix chunks (rows x 64 int8), in row order, and the chunk boundaries
follow the hash rule; §7.4 the state list names 256 concept shards of ``{"id@version":
entry}``. Each card's keys are recomputed from the card by §5's rule and must equal the
entry's. §11 ``config.toml`` and ``refs/mode.json`` give the retrieval settings.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
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


def table_rows(root: Path, manifest: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """§7.5: (id@version, vector) of every row, read from the chunks by hand; checks each
    header against its list entry, the row order and the chunk boundary rule."""
    rows_list = _json_object(root, manifest["table"]["rows"])["chunks"]
    matrix_list = _json_object(root, manifest["table"]["matrix"])["chunks"]
    if len(rows_list) != len(matrix_list):
        raise ValueError("the two chunk lists differ in length")
    out: list[tuple[str, tuple[int, ...]]] = []
    for entry, mentry in zip(rows_list, matrix_list, strict=True):
        digest, rows, ref_bytes, keys, key_bytes, postings, _lines = entry
        if mentry[1] != rows:
            raise ValueError("chunk lists disagree on a chunk's rows")
        data = _object(root, digest)
        magic = data[:8]
        header = struct.unpack("<6I", data[8:32])
        if magic != b"VTROWS1\n" or header != (rows, ref_bytes, keys, key_bytes, postings, 0):
            raise ValueError(f"rows chunk {digest}: header does not match its list entry")
        at = 32 + 9 * 4 * rows  # the nine columns
        refs = data[at : at + ref_bytes].decode("ascii").split("\n")[:-1]
        vectors = _object(root, mentry[0])
        if len(refs) != rows or len(vectors) != 64 * rows:
            raise ValueError(f"chunk {digest}: not {rows} rows")
        for i, ref in enumerate(refs):
            vec = struct.unpack("64b", vectors[64 * i : 64 * (i + 1)])
            out.append((ref, vec))
        first_id = refs[0].rsplit("@", 1)[0]
        if out[:-rows] and out[-rows - 1][0].rsplit("@", 1)[0] == first_id:
            raise ValueError(f"chunk {digest} starts inside an id")
    ids = [ref.rsplit("@", 1)[0] for ref, _ in out]
    order = sorted(range(len(out)), key=lambda i: (ids[i], semver(out[i][0].rsplit("@", 1)[1])))
    if order != list(range(len(out))):
        raise ValueError("table rows are not sorted by id, then version")
    # the boundary rule: which rows start a chunk
    starts, size, at = set(), 0, 0
    for entry in rows_list:
        starts.add(at)
        at += entry[1]
    for i, cid in enumerate(ids):
        new_id = i > 0 and cid != ids[i - 1]
        hashed = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:4], "big") % 1024 == 0
        cut = i == 0 or (new_id and (hashed or size >= 4096))
        if cut != (i in starts):
            raise ValueError(f"row {i} ({out[i][0]}): chunk boundary against the rule")
        size = 1 if cut else size + 1
    return out


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
    vectors: dict[str, tuple[int, ...]] = dict(table_rows(root, manifest))
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
        raise ValueError("the state and the table hold different concept versions")
    settings, override = read_settings(root)
    return RefVault(root, generation, tuple(concepts), settings, override)
