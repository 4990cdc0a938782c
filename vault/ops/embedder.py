"""``vault embedder fit | use | status``: fit a weights object, choose the embedder, and see
how far the evidence has moved since the fit.

* ``fit_embedder`` fits ``vault.embedding.fitted`` on ARC-format tasks (each task its own
  class, or its ``labels`` group's) and/or the vault's own concepts (each concept a class:
  the reprs and pairs it verified on, and its keys; a concept verified on several tasks —
  a label group of the vault's own — weighs as many tasks, up to ``fitted.LABEL_WEIGHT``).
  With the vault's concepts the shipped embedder's training statistics are the prior
  (``vault.embedding.shipped.prior``, pooled as if fitted together): the fit adapts the
  shipped map to the vault's evidence. It stores the weights object in ``objects/`` (its
  address is its ``weights_hash``) and records the fit in the audit log (``embedder_fit``,
  naming the digest; ``vault gc`` keeps the latest fit's weights). The weights' meta
  records the audit seq and the positive evidence count at fit time.
* ``use_embedder`` makes ``shipped`` (the package's default, every new vault's), ``builtin``
  (the hand-set map), ``fitted`` (the latest fit) or a weights digest the vault's embedder:
  one audited write (``vault.ops.write.set_embedder``), one generation with every concept
  re-embedded; ``vault rollback`` takes it back.
* ``embedder_status``: the current embedder, its fit, and the share of positive evidence
  newer than the fit, with a re-fit suggestion past ``config.toml``'s ``[embedder]``
  thresholds (it never re-fits by itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vault.config import EmbedderConfig, load_embedder
from vault.embedding import fitted
from vault.embedding.builtin import BUILTIN
from vault.embedding.select import SHIPPED, load_weights, manifest_choice
from vault.embedding.vectors import concept_inputs
from vault.errors import (
    EmbeddingError,
    InvalidInputError,
    NotFoundError,
    UsageError,
    VaultError,
    counted,
)
from vault.ops.write import WriteResult, set_embedder
from vault.store.objects import is_digest

if TYPE_CHECKING:
    from vault.arc import TaskItem
    from vault.handle import Handle
    from vault.index.snapshot import Snapshot

FIT_OP = "embedder_fit"


@dataclass(frozen=True)
class FitResult:
    weights: str  # the weights object's digest (= its weights_hash)
    size: int  # bytes
    meta: dict[str, Any]
    use: WriteResult | None  # the generation that selected it (``--use``)

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "bytes": self.size,
            "meta": self.meta,
            "use": self.use.to_json() if self.use else None,
        }


# --------------------------------------------------------------------------- fit
def concept_classes(
    vault: Handle, snap: Snapshot
) -> tuple[dict[str, list[list[int]]], dict[str, float]]:
    """One class per concept version with evidence to learn from (the known reprs and
    pairs its vector is built from, plus its keys), and its weight: the number of distinct
    tasks its positive evidence names (a concept verified on several tasks is a label
    group of the vault's own), at least 1 and at most ``fitted.LABEL_WEIGHT``."""
    state = snap.state
    out: dict[str, list[list[int]]] = {}
    weights: dict[str, float] = {}
    for name, entry in sorted(state.concepts(), key=lambda item: item[0]):
        reprs, pairs = concept_inputs(entry, state.known, vault.records)
        if not reprs and not pairs:
            continue
        cls = f"concept:{name}"
        out[cls] = fitted.concept_items(
            [vault.records(r) for r in reprs],
            [(vault.records(a), vault.records(b)) for a, b in pairs],
            entry["keys"],
        )
        tasks = set()
        for digest in entry["evidence"]:
            ev = vault.records(digest)
            if ev.get("polarity") == "positive" and isinstance(ev.get("task"), str):
                tasks.add(ev["task"])
        weights[cls] = float(min(fitted.LABEL_WEIGHT, max(1, len(tasks))))
    return out, weights


def positive_evidence(snap: Snapshot) -> int:
    """Positive evidence records in a generation's state."""
    return int(snap.table.col("positive").sum())


def fit_embedder(
    vault: Handle,
    tasks: Sequence[TaskItem] = (),
    labels: Mapping[str, str] | None = None,
    *,
    from_vault: bool = False,
    sources: Sequence[str] = (),
    use: bool = False,
    settings: fitted.FitSettings | None = None,
    prior: bool | None = None,
) -> FitResult:
    """Fit on ``tasks`` (grouped by ``labels``) and, with ``from_vault``, the vault's
    concepts; ``prior`` (default: with ``from_vault``) pools the shipped embedder's training
    statistics in, so the fit adapts the shipped map; store and record the weights
    (``sources`` names what it was fitted on); with ``use``, also make them the embedder."""
    if not tasks and not from_vault:
        raise UsageError("fit needs training data: --tasks DIR, --dataset arc1 or --from-vault")
    with_prior = from_vault if prior is None else prior
    snap = vault.snapshot()
    classes, weights = fitted.items_from_tasks([(t, task) for t, task, _ in tasks], labels)
    if from_vault:
        own, own_weights = concept_classes(vault, snap)
        classes.update(own)
        weights.update(own_weights)
    meta = {
        "fitted_on": list(sources) + (["shipped prior"] if with_prior else []),
        "tasks": len(tasks),
        "concepts": sum(1 for c in classes if c.startswith("concept:")),
        "audit_seq": vault.audit.last_seq(),
        "positive_evidence": positive_evidence(snap),
    }
    if with_prior:
        from vault.embedding import shipped

        meta["prior"] = shipped.digest()
    try:
        stats = None
        if with_prior:
            from vault.embedding import shipped

            stats = shipped.prior()
        w = fitted.fit(classes, settings, class_weights=weights, prior=stats, meta=meta)
    except ValueError as exc:
        raise InvalidInputError(f"cannot fit: {exc}") from None
    data = w.to_bytes()
    with vault.lock:
        digest = vault.objects.put(data)
        vault.audit.append(FIT_OP, vault.clock(), [], {"weights": digest, **meta})
    used = set_embedder(vault, digest) if use else None
    return FitResult(digest, len(data), w.meta, used)


# --------------------------------------------------------------------------- use
def _fitted_digests(vault: Handle) -> list[str]:
    """The weights digests ``embedder_fit`` audit entries name, oldest first."""
    return [
        str(e.detail["weights"])
        for e in vault.audit.entries()
        if e.op == FIT_OP and isinstance(e.detail.get("weights"), str)
    ]


def latest_fit(vault: Handle) -> str | None:
    """The weights digest of the latest ``embedder_fit`` audit entry."""
    digests = _fitted_digests(vault)
    return digests[-1] if digests else None


def fit_roots(vault: Handle) -> list[str]:
    """What ``vault gc`` keeps besides the kept generations: the latest fit's weights."""
    fit = latest_fit(vault)
    return [] if fit is None else [fit]


def choice_of(vault: Handle, which: str) -> str:
    """The choice ``which`` names: ``builtin``, ``shipped`` (the package's default weights,
    stored into the vault here) — also named by their digest or a unique prefix of it, as
    ``vault index status`` shows it —, ``fitted`` (the latest fit), a weights digest or a
    unique prefix of a recorded fit's — checked to load."""
    which = named(vault, which)
    if which == BUILTIN:
        return BUILTIN
    if which == SHIPPED:
        from vault.embedding import shipped

        with vault.lock:
            return vault.objects.put(shipped.weights_bytes())
    try:
        load_weights(vault.objects, which)
    except EmbeddingError as exc:
        raise NotFoundError(f"cannot use {exc} (run `vault embedder fit` again)") from None
    return which


def named(vault: Handle, which: str) -> str:
    """What ``which`` names, writing nothing: ``builtin``, ``shipped`` (the word, or the
    shipped weights' digest or a prefix of it no recorded fit shares) or a weights digest
    (``fitted``: the latest fit's; a prefix: the one recorded fit's it starts)."""
    from vault.embedding import shipped

    if which in (BUILTIN, SHIPPED):
        return which
    if which == "fitted":
        digest = latest_fit(vault)
        if digest is None:
            raise NotFoundError("no fitted embedder yet: run `vault embedder fit` first")
        return digest
    if is_digest(which):
        return SHIPPED if which == shipped.digest() else which
    known = {*_fitted_digests(vault), shipped.digest()}
    matches = sorted(d for d in known if d.startswith(which))
    if len(matches) != 1:
        what = "no fit" if not matches else counted(len(matches), "fit")
        if shipped.digest() in matches:
            what = f"{len(matches)} weights (the shipped ones and fits)"
        raise NotFoundError(f"weights {which!r}: {what} recorded with that prefix")
    return SHIPPED if matches[0] == shipped.digest() else matches[0]


def use_embedder(vault: Handle, which: str) -> WriteResult:
    """``vault embedder use``: make ``which`` the embedder (a new generation)."""
    return set_embedder(vault, choice_of(vault, which))


# --------------------------------------------------------------------------- status
@dataclass(frozen=True)
class EmbedderStatus:
    embedder: dict[str, Any]  # embedder.json of the current generation
    choice: str  # builtin or the weights digest
    problem: str | None  # why this tool cannot run it (drift)
    fit: dict[str, Any] | None  # the fit in use, or else the latest one: weights, in_use, meta
    evidence: dict[str, Any] | None  # positive evidence at the fit, now, newer, share
    suggestion: str | None
    config: EmbedderConfig

    def to_json(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder,
            "choice": self.choice,
            "problem": self.problem,
            "fit": self.fit,
            "evidence": self.evidence,
            "suggestion": self.suggestion,
            "config": {
                "drift_threshold": self.config.drift_threshold,
                "refresh_interval": self.config.refresh_interval,
            },
        }


def _fit_info(vault: Handle, choice: str) -> dict[str, Any] | None:
    digest = choice if choice != BUILTIN else latest_fit(vault)
    if digest is None:
        return None
    try:
        meta: dict[str, Any] | None = load_weights(vault.objects, digest).meta
    except VaultError:
        meta = None
    return {"weights": digest, "in_use": digest == choice, "meta": meta}


def evidence_moved(at_fit: int, now: int) -> dict[str, Any]:
    newer = max(0, now - at_fit)
    return {"at_fit": at_fit, "now": now, "newer": newer, "share": newer / now if now else 0.0}


def _suggestion(evidence: dict[str, Any], cfg: EmbedderConfig, shipped: bool = False) -> str | None:
    """A re-fit suggestion past the thresholds (the shipped embedder saw none of the
    vault's evidence: only ``refresh_interval`` applies to it)."""
    newer = evidence["newer"] >= cfg.refresh_interval
    if not newer and (shipped or evidence["share"] < cfg.drift_threshold):
        return None
    return (
        f"re-fit suggested: {evidence['newer']} of {evidence['now']} positive evidence records "
        f"({evidence['share']:.0%}) are newer than the fit (drift_threshold "
        f"{cfg.drift_threshold:.0%}, refresh_interval {cfg.refresh_interval}): "
        "`vault embedder fit --from-vault --use`"
    )


def embedder_status(vault: Handle) -> EmbedderStatus:
    cfg = load_embedder(vault.config_path)
    snap = vault.snapshot()
    choice = manifest_choice(snap.manifest)
    try:
        snap.embedder()
        problem = None
    except EmbeddingError as exc:
        problem = str(exc)
    fit = _fit_info(vault, choice)
    evidence = suggestion = None
    meta = fit["meta"] if fit else None
    if meta is not None and meta.get("shipped") is True:
        evidence = evidence_moved(0, positive_evidence(snap))
        suggestion = _suggestion(evidence, cfg, shipped=True) if fit and fit["in_use"] else None
    elif meta is not None and isinstance(meta.get("positive_evidence"), int):
        evidence = evidence_moved(meta["positive_evidence"], positive_evidence(snap))
        suggestion = _suggestion(evidence, cfg) if fit and fit["in_use"] else None
    return EmbedderStatus(snap.embedder_id, choice, problem, fit, evidence, suggestion, cfg)
