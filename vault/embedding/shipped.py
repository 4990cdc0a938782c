"""The shipped default embedder: a fitted weights object inside the package, loaded lazily.

``vault/embedding/fitted_data/`` (package data) holds two files that ``make weights``
rebuilds bit for bit from pinned public data and a fixed seed
(``vault.embedding.recipe``):

* ``default.vfitw`` — the weights object (``FittedWeights.to_bytes``, FORMAT.md §9.1): every
  new vault starts with it (``Vault.init`` stores it in ``objects/`` and chooses it with an
  ``embedder`` audit entry); ``vault embedder use shipped`` chooses it in an older vault;
* ``default.prior`` — the statistics the weights were fitted from (one ``Scatter`` per
  output block, layout below): ``vault embedder fit --from-vault`` pools them with the
  vault's own evidence, so the vault's fit adapts the shipped map instead of starting over.

Nothing here is read until asked for (``vault retrieve`` reads the weights from the vault's
own ``objects/``, never from here).

Prior layout (integers little-endian): magic ``VFITP\\0``, u16 format version 1, u32 header
length L, L bytes of canonical JSON ``{"blocks": [{"classes", "dim", "inputs", "name",
"weight", "within_weight"}...], "raw_spec_hash", "version", "weights_sha256"}``, then per
block in header order, float64 little-endian: ``mean_sum`` (dim), ``between_sum`` (dim ×
dim, row-major), ``within_sum`` (dim × dim).
"""

from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vault.embedding.fitted import FittedWeights, OutputBlocks, Scatter

SHIPPED = "shipped"  # the name `vault embedder use` and `vault eval --embedder` take
PACKAGE = "vault.embedding.fitted_data"
WEIGHTS_FILE = "default.vfitw"
PRIOR_FILE = "default.prior"
PRIOR_MAGIC = b"VFITP\x00"
PRIOR_VERSION = 1


def _read(name: str) -> bytes:
    return resources.files(PACKAGE).joinpath(name).read_bytes()


@lru_cache(maxsize=1)
def weights_bytes() -> bytes:
    """The shipped weights object's bytes."""
    return _read(WEIGHTS_FILE)


def digest() -> str:
    """The shipped weights' sha256 (their address in a vault and their ``weights_hash``)."""
    return hashlib.sha256(weights_bytes()).hexdigest()


@lru_cache(maxsize=1)
def weights() -> FittedWeights:
    from vault.embedding.fitted import FittedWeights

    return FittedWeights.from_bytes(weights_bytes())


def prior_to_bytes(
    stats: dict[str, Scatter], output_blocks: OutputBlocks, weights_sha256: str
) -> bytes:
    """The prior file of ``stats`` (one Scatter per output block)."""
    import numpy as np

    from vault.canonical import canonical_bytes
    from vault.embedding.fitted import RAW_SPEC_HASH, VERSION

    head = {
        "version": VERSION,
        "raw_spec_hash": RAW_SPEC_HASH,
        "weights_sha256": weights_sha256,
        "blocks": [
            {
                "name": name,
                "inputs": list(inputs),
                "dim": len(stats[name].mean_sum),
                "weight": float(stats[name].weight),
                "within_weight": float(stats[name].within_weight),
                "classes": stats[name].classes,
            }
            for name, _, _, inputs, _ in output_blocks
        ],
    }
    header = canonical_bytes(head)
    parts = [PRIOR_MAGIC, struct.pack("<HI", PRIOR_VERSION, len(header)), header]
    for name, *_ in output_blocks:
        s = stats[name]
        for array in (s.mean_sum, s.between_sum, s.within_sum):
            parts.append(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return b"".join(parts)


def prior_from_bytes(data: bytes) -> tuple[dict[str, object], dict[str, Scatter]]:
    """(header, Scatter per output block) of a prior file; ``ValueError`` if it is not
    one, is truncated or padded, or belongs to other raw features."""
    import numpy as np

    from vault.embedding.fitted import RAW_SPEC_HASH, VERSION, Scatter

    if not data.startswith(PRIOR_MAGIC) or len(data) < len(PRIOR_MAGIC) + 6:
        raise ValueError("not a fitted-embedder prior")
    version, n = struct.unpack_from("<HI", data, len(PRIOR_MAGIC))
    if version != PRIOR_VERSION:
        raise ValueError(f"prior format {version}; this tool reads {PRIOR_VERSION}")
    at = len(PRIOR_MAGIC) + 6
    head = json.loads(data[at : at + n].decode("utf-8"))
    at += n
    if head.get("version") != VERSION or head.get("raw_spec_hash") != RAW_SPEC_HASH:
        raise ValueError("the prior belongs to other raw features (version mismatch)")
    out: dict[str, Scatter] = {}
    for blk in head["blocks"]:
        p = int(blk["dim"])
        arrays = []
        for count in (p, p * p, p * p):
            if at + 8 * count > len(data):
                raise ValueError("prior is truncated")
            arrays.append(np.frombuffer(data, dtype="<f8", count=count, offset=at).astype(float))
            at += 8 * count
        out[blk["name"]] = Scatter(
            float(blk["weight"]),
            float(blk["within_weight"]),
            arrays[0],
            arrays[1].reshape(p, p),
            arrays[2].reshape(p, p),
            int(blk["classes"]),
        )
    if at != len(data):
        raise ValueError("trailing bytes after the prior")
    return head, out


@lru_cache(maxsize=1)
def prior() -> dict[str, Scatter]:
    """The shipped prior's statistics, checked to belong to the shipped weights."""
    head, stats = prior_from_bytes(_read(PRIOR_FILE))
    if head.get("weights_sha256") != digest():
        raise ValueError("the shipped prior does not belong to the shipped weights")
    return stats
