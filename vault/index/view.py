"""``embeddings/``: the current generation published for people and tools.

``embedder.json``, ``concept_vectors.jsonl`` and ``ann.index.sha256`` are derived data of the
current generation (FORMAT §8): written after ``CURRENT``, each replaced atomically
(a temporary, then ``rename(2)``), without fsync, and not kept per generation. The stamp
``ann.index.sha256`` (the manifest's ``ann_hash``) is removed first and written last, so a
view whose stamp names the current generation is complete. A write-back splices the lines
of the chunks it kept from the previous view (when its stamp and size say it is the
previous generation's) and writes only its new chunks' lines. Readers inside vault never
use the view: a crash leaves it behind or without a stamp, which the next write (or `vault
index build`) repairs and `vault verify` reports as a warning.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.canonical import loads_trusted
from vault.errors import VaultError
from vault.store.fs import atomic_write
from vault.store.objects import ObjectStore

if TYPE_CHECKING:
    from vault.index.table import Table

EMBEDDER_FILE = "embedder.json"
VECTORS_FILE = "concept_vectors.jsonl"
HASH_FILE = "ann.index.sha256"
FILES = (EMBEDDER_FILE, VECTORS_FILE, HASH_FILE)


class View:
    def __init__(self, root: Path):
        self.root = root

    def paths(self) -> dict[str, Path]:
        return {name: self.root / name for name in FILES}

    def current(self, objects: ObjectStore, manifest: Mapping[str, Any]) -> bool:
        """Whether the view is ``manifest``'s generation's: its stamp, and the size of its
        vectors file (the lines its rows list counts)."""
        try:
            stamp = (self.root / HASH_FILE).read_bytes()
            if stamp != f"{manifest['ann_hash']}\n".encode():
                return False
            size = os.stat(self.root / VECTORS_FILE).st_size
            listed = loads_trusted(objects.get(manifest["table"]["rows"]))["chunks"]
            return size == sum(int(e[6]) for e in listed)
        except (OSError, VaultError, ValueError, KeyError, TypeError, IndexError):
            return False

    def publish(
        self,
        objects: ObjectStore,
        manifest: Mapping[str, Any],
        table: Table | Callable[[], Table],
        before: Table | None = None,
        before_manifest: Mapping[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> None:
        """Make the view ``manifest``'s generation's (nothing when it is already);
        ``before``: the table of the generation the view may show now (to splice from);
        ``force``: write it even when its stamp says it is current (`vault index build`)."""
        from vault.index.table import Table

        if not force and self.current(objects, manifest):
            return
        t = table if isinstance(table, Table) else table()
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = self.root / HASH_FILE
        old: dict[str, tuple[int, int]] = {}  # chunk digest -> (offset, length) in the old file
        src = self.root / VECTORS_FILE
        if force:  # (the old file is not trusted: it may have been edited in place)
            before = None
        if (
            before is not None
            and before_manifest is not None
            and self.current(objects, before_manifest)
        ):
            at = 0
            for m in before.metas:
                old.setdefault(m.digest, (at, m.lines))
                at += m.lines
        stamp.unlink(missing_ok=True)
        tmp = self.root / f".{VECTORS_FILE}.tmp"
        try:
            with open(tmp, "wb") as out, contextlib.ExitStack() as stack:
                fin = stack.enter_context(open(src, "rb")) if old else None
                run: list[int] = []  # a run of kept lines: [offset, length]
                for c, m in enumerate(t.metas):
                    kept = old.get(m.digest)
                    if fin is not None and kept is not None:
                        if run and run[0] + run[1] == kept[0]:
                            run[1] += kept[1]
                            continue
                        if run:
                            _copy(fin, out, run[0], run[1])
                        run = list(kept)
                        continue
                    if run:
                        _copy(fin, out, run[0], run[1])
                        run = []
                    if fin is not None and before is not None:
                        out.flush()
                        out.write(_reused_lines(t, c, before, fin))
                    else:
                        out.write(t.view_lines(int(t.starts[c]), int(t.starts[c + 1])))
                if run:
                    _copy(fin, out, run[0], run[1])
            os.replace(tmp, src)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(self.root / EMBEDDER_FILE, objects.get(manifest["embedder"]), durable=False)
        atomic_write(stamp, f"{manifest['ann_hash']}\n".encode(), durable=False)


def _copy(fin: Any, out: Any, offset: int, length: int) -> None:
    """``length`` bytes of ``fin`` from ``offset`` appended to ``out`` (in the kernel where
    it can)."""
    out.flush()
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(
                fin.fileno(), out.fileno(), length - done, offset + done, out.tell() + done
            )
            if n <= 0:
                break
            done += n
        out.seek(0, os.SEEK_END)
    except OSError:
        out.seek(0, os.SEEK_END)
    if done < length:
        fin.seek(offset + done)
        out.write(fin.read(length - done))


def _reused_lines(t: Table, c: int, before: Table, fin: Any) -> bytes:
    """The view lines of ``t``'s chunk ``c`` (made by a write-back from ``before``): a row
    ``before`` holds with the same vector keeps its line from the old view file ``fin``
    (rows are only ever replaced or inserted); only the others are formatted."""
    import bisect

    import numpy as np

    from vault.index.table import _Keys, sort_key

    lo, hi = int(t.starts[c]), int(t.starts[c + 1])
    keys = _Keys(before)
    b0 = bisect.bisect_left(keys, sort_key(t.ref(lo)))
    b1 = min(before.n, bisect.bisect_left(keys, sort_key(t.ref(hi - 1))) + 1)
    if b0 >= b1:
        return t.view_lines(lo, hi)
    c0, c1 = before.chunk_of(b0), before.chunk_of(b1 - 1)
    at = sum(m.lines for m in before.metas[:c0])
    size = sum(m.lines for m in before.metas[c0 : c1 + 1])
    fin.seek(at)
    old = fin.read(size).split(b"\n")[:-1]
    base = int(before.starts[c0])
    if len(old) != int(before.starts[c1 + 1]) - base:
        return t.view_lines(lo, hi)
    new_refs = t.refs[int(t.ref_offsets[lo]) : int(t.ref_offsets[hi])].split(b"\n")[:-1]
    old_refs = before.refs[
        int(before.ref_offsets[base]) : int(before.ref_offsets[int(before.starts[c1 + 1])])
    ].split(b"\n")[:-1]
    pairs_new, pairs_old = [], []
    j = b0 - base  # the first old row the chunk can hold
    for i, ref in enumerate(new_refs):  # the old rows in its range, all in it, in order
        if j < len(old_refs) and old_refs[j] == ref:
            pairs_new.append(i)
            pairs_old.append(j)
            j += 1
    same = np.zeros(hi - lo, dtype=bool)
    if pairs_new:
        pn, po = np.array(pairs_new), np.array(pairs_old)
        equal = (t.matrix[lo + pn] == before.matrix[base + po]).all(axis=1)
        same[pn[equal]] = True
        source = dict(zip(pn[equal].tolist(), po[equal].tolist(), strict=True))
    else:
        source = {}
    out: list[bytes] = []
    i = 0
    while i < hi - lo:
        if same[i]:
            out.append(old[source[i]] + b"\n")
            i += 1
            continue
        k = i
        while k < hi - lo and not same[k]:
            k += 1
        out.append(t.view_lines(lo + i, lo + k))
        i = k
    return b"".join(out)
