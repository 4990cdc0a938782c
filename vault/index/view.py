"""``embeddings/``: the current generation published for people and tools.

``embedder.json``, ``concept_vectors.jsonl`` and ``ann.index.sha256`` are hard links to the
current generation's objects (copies where hard links fail). They are replaced one at a
time (a temporary link, then ``rename(2)``), after ``CURRENT``; readers inside vault never
use them, so a crash between two replaces is harmless: the next write (or ``vault index
build``) brings the view up to date, and ``vault verify`` reports a lagging view as a
warning. Never modify them in place: they share their bytes with the object store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault.store.fs import atomic_write
from vault.store.objects import ObjectStore

EMBEDDER_FILE = "embedder.json"
VECTORS_FILE = "concept_vectors.jsonl"
HASH_FILE = "ann.index.sha256"
FILES = {EMBEDDER_FILE: "embedder", VECTORS_FILE: "vectors", HASH_FILE: "ann_hash_file"}


class View:
    def __init__(self, root: Path):
        self.root = root

    def paths(self) -> dict[str, Path]:
        return {name: self.root / name for name in FILES}

    def publish(self, objects: ObjectStore, manifest: Mapping[str, Any]) -> None:
        """Point the three files at ``manifest``'s objects (skipping those already there)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, field in FILES.items():
            digest = manifest[field]
            target = self.root / name
            source = objects.path(digest)
            tmp = self.root / f".{name}.link"
            try:
                if (
                    target.is_file()
                    and not target.is_symlink()
                    and os.path.samefile(source, target)
                ):
                    continue
                tmp.unlink(missing_ok=True)
                os.link(source, tmp)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)
                atomic_write(target, objects.get(digest))
