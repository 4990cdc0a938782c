"""The symbolic index: the vault's state folded from the audit log, with key buckets.

The index is one canonical JSON document::

    {"schema_version": 1,
     "concepts": {"id@version": {"id", "version", "card", "status", "domain", "keys",
                                 "evidence", "positive", "negative", "penalty"}},
     "by_key":    {"transform:rotate_90": ["id@version", ...]},   # sorted lists
     "by_domain": {"grid_2d": ["id@version", ...]}}

``apply`` folds one audit entry into it; a full build folds every entry into an empty
index, so an incremental update and a full build are the same function applied to the
same events, and give the same bytes.
"""

from __future__ import annotations

import bisect
from typing import Any

from vault.errors import CorruptionError
from vault.records.cards import parse_version, ref
from vault.records.keys import concept_keys, matchable
from vault.store.audit import STATE_OPS, AuditEntry
from vault.store.objects import ObjectStore

INDEX_SCHEMA_VERSION = 1


def empty() -> dict[str, Any]:
    return {"schema_version": INDEX_SCHEMA_VERSION, "concepts": {}, "by_key": {}, "by_domain": {}}


def _insert(buckets: dict[str, list[str]], key: str, name: str) -> None:
    bucket = buckets.setdefault(key, [])
    i = bisect.bisect_left(bucket, name)
    if i == len(bucket) or bucket[i] != name:
        bucket.insert(i, name)


def apply(index: dict[str, Any], entry: AuditEntry, objects: ObjectStore) -> set[str]:
    """Fold one audit entry into ``index`` in place; return the concept refs it touched."""
    touched: set[str] = set()
    if entry.op not in STATE_OPS:
        return touched
    concepts = index["concepts"]
    for digest in entry.records:
        obj = objects.get_record(digest)
        kind = obj.get("kind")
        if kind == "concept":
            name = ref(obj["id"], obj["version"])
            if name in concepts:
                continue
            keys = concept_keys(obj)
            concepts[name] = {
                "id": obj["id"],
                "version": obj["version"],
                "card": digest,
                "status": obj["status"],
                "domain": obj["domain"],
                "keys": keys,
                "evidence": [],
                "positive": 0,
                "negative": 0,
                "penalty": 0,
            }
            for key in matchable(keys):
                _insert(index["by_key"], key, name)
            _insert(index["by_domain"], obj["domain"], name)
            touched.add(name)
        elif kind == "evidence":
            name = ref(obj["concept"], obj["version"])
            entry_ = concepts.get(name)
            if entry_ is None:
                raise CorruptionError(f"audit entry {entry.seq}: evidence for unknown {name}")
            if digest in entry_["evidence"]:
                continue
            bisect.insort(entry_["evidence"], digest)
            if obj["polarity"] == "positive":
                entry_["positive"] += 1
            else:
                entry_["negative"] += 1
                entry_["penalty"] = entry_["negative"]
            touched.add(name)
        elif kind == "status":
            name = ref(obj["concept"], obj["version"])
            if name not in concepts:
                raise CorruptionError(f"audit entry {entry.seq}: status of unknown {name}")
            concepts[name]["status"] = obj["status"]
            touched.add(name)
    return touched


def build(entries: list[AuditEntry], objects: ObjectStore) -> dict[str, Any]:
    """The index from scratch: every audit entry folded into an empty index."""
    index = empty()
    for entry in entries:
        apply(index, entry, objects)
    return index


def utility(entry: dict[str, Any]) -> float:
    """Laplace-smoothed success rate from evidence: (pos + 1) / (pos + neg + 2)."""
    positive, negative = int(entry["positive"]), int(entry["negative"])
    return (positive + 1) / (positive + negative + 2)


def version_key(entry: dict[str, Any]) -> tuple[int, int, int]:
    return parse_version(entry["version"])


def versions_of(index: dict[str, Any], concept: str) -> list[str]:
    """Stored versions of ``concept``, oldest first."""
    found = [e for e in index["concepts"].values() if e["id"] == concept]
    return [e["version"] for e in sorted(found, key=version_key)]
