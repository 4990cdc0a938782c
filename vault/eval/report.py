"""The study's report: ``REPORT.md`` (settings, data-set fingerprint, the table, what it
says), ``results.json`` (everything, for scripts) and ``recall_at_k.png`` (recall@k curves
per mode; needs the optional ``matplotlib``, extra ``plot``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vault.errors import counted
from vault.eval.study import BOOTSTRAP_CONFIDENCE, StudyResult
from vault.store.fs import atomic_write

COLUMNS = (
    ("MRR", "mrr"),
    ("R@1", "recall@1"),
    ("R@5", "recall@5"),
    ("R@10", "recall@10"),
    ("R@50", "recall@50"),
    ("P@5", "precision@5"),
    ("MAP@10", "map@10"),
    ("helpful", "helpful_rate"),
)


def table(result: StudyResult) -> str:
    """The results table in Markdown."""
    # each column names what it measures: the MRR gain and the coverage change over
    # symbolic are two columns (one "vs symbolic" column showed a coverage change)
    head = [
        "mode",
        *(c for c, _ in COLUMNS),
        "coverage@10",
        "MRR vs symbolic",
        "coverage@10 vs symbolic",
        "ms median",
        "ms p95",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, summary in result.summaries.items():
        s = summary.to_json()
        change = result.coverage_change.get(mode)
        gain = result.versus_symbolic.get(mode)
        lines.append(
            "| "
            + " | ".join(
                [
                    mode,
                    *(f"{s[key]:.3f}" for _, key in COLUMNS),
                    str(summary.coverage),
                    "" if gain is None or mode == "symbolic" else f"{gain.mean_diff:+.3f}",
                    "" if change is None or mode == "symbolic" else f"{change:+.0%}",
                    f"{summary.latency_median_ms:.2f}",
                    f"{summary.latency_p95_ms:.2f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def learning_table(result: StudyResult) -> str:
    """The learning protocol's table: each mode's figures on the same queries without and
    with the written-back evidence, and the MRR gain with its bootstrap interval."""
    if not result.learning:
        return ""
    head = [
        "mode",
        "MRR without",
        "MRR with",
        "gain",
        f"{BOOTSTRAP_CONFIDENCE:.0%} interval",
        "R@10 without",
        "R@10 with",
        "helpful without",
        "helpful with",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, item in result.learning.items():
        before, after = item.without.to_json(), result.summaries[mode].to_json()
        g = item.gain
        lines.append(
            "| "
            + " | ".join(
                [
                    mode,
                    f"{before['mrr']:.3f}",
                    f"{after['mrr']:.3f}",
                    f"{g.mean_diff:+.3f}",
                    f"[{g.low:+.3f}, {g.high:+.3f}]",
                    f"{before['recall@10']:.3f}",
                    f"{after['recall@10']:.3f}",
                    f"{before['helpful_rate']:.3f}",
                    f"{after['helpful_rate']:.3f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def interpretation(result: StudyResult) -> str:
    """Two sentences the numbers support."""
    s = result.summaries
    cross = result.dataset.get("protocol") == "cross"
    key = "precision_at_5" if cross else "mrr"
    label = "precision@5" if cross else "MRR"
    ranked = sorted((m for m in s if m != "none"), key=lambda m: (-float(getattr(s[m], key)), m))
    if not ranked:
        return "Only the no-retrieval baseline ran."
    value = {m: round(float(getattr(s[m], key)), 3) for m in ranked}  # as the table shows
    tied = [m for m in ranked if value[m] == value[ranked[0]]]
    if len(tied) > 1 and key != "mrr":  # a tie is a tie: MRR, the next measure, decides
        by_mrr = sorted(tied, key=lambda m: (-round(float(s[m].mrr), 3), m))
        first = f"On this data set {_names(tied)} tie by {label} ({value[tied[0]]:.3f})" + (
            f"; by MRR `{by_mrr[0]}` ranks first ({s[by_mrr[0]].mrr:.3f})"
            if round(float(s[by_mrr[0]].mrr), 3) != round(float(s[by_mrr[1]].mrr), 3)
            else f" and by MRR too ({s[by_mrr[0]].mrr:.3f})"
        )
        best = by_mrr[0]
    elif len(tied) > 1:
        first = f"On this data set {_names(tied)} tie by {label} ({value[tied[0]]:.3f})"
        best = tied[0]
    else:
        best = ranked[0]
        first = f"On this data set `{best}` ranks best by {label} ({value[best]:.3f}"
        if "symbolic" in s and best != "symbolic":
            first += (
                f" vs {value.get('symbolic', float(getattr(s['symbolic'], key))):.3f} for symbolic)"
            )
        else:
            first += ")"
    if "symbolic" in s and best != "symbolic" and best in result.versus_symbolic:
        b = result.versus_symbolic[best]
        first += (
            f". `{best}`'s MRR is {b.mean_diff:+.3f} over symbolic's ({BOOTSTRAP_CONFIDENCE:.0%} "
            f"bootstrap interval [{b.low:+.3f}, {b.high:+.3f}]"
            + (", which includes 0: not a measured difference" if b.low <= 0.0 <= b.high else "")
            + ")."
        )
    else:
        first += "."
    second = ""
    if "symbolic" in s and best != "symbolic":
        change = result.coverage_change.get(best)
        sym_ms = s["symbolic"].latency_median_ms
        if change is not None:
            k = s[best].coverage_k
            more = (
                f"as many distinct concepts in the top {k} as symbolic"
                if round(change, 2) == 0
                else f"{abs(change):.0%} {'more' if change > 0 else 'fewer'} distinct concepts "
                f"in the top {k} than symbolic"
            )
            second = (
                f" It surfaces {more}, at a median {s[best].latency_median_ms:.2f} ms per query "
                f"against {sym_ms:.2f} ms."
            )
    return first + second


def _names(modes: list[str]) -> str:
    quoted = [f"`{m}`" for m in modes]
    return (
        " and ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    )


def _embedder_name(ident: dict[str, Any]) -> str:
    return f"{ident['name']} {ident['version']} (weights {ident['weights_hash'][:12]})"


def markdown(result: StudyResult, command: str | None = None) -> str:
    d = result.dataset
    cfg = result.settings["config"]
    lines = [
        f"# vault eval — {d['name']}",
        "",
        d["description"] + ".",
        "",
        f"- data set fingerprint: `{d['fingerprint']}`",
        f"- concepts: {d['concepts']}, queries: {d['queries']} (protocol: {d['protocol']})",
        f"- results: top {result.settings['k_max']} per query; modes: "
        + ", ".join(result.settings["modes"]),
        "- configuration: " + ", ".join(f"{k} = {v}" for k, v in sorted(cfg.items())),
        f"- embedder: {_embedder_name(result.settings['embedder'])}",
        f"- wall clock: {result.seconds:.1f} s (import {result.import_seconds:.1f} s)",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += ["", table(result), "", interpretation(result), ""]
    if result.learning:
        lines += [
            "The same queries asked of the vault without the written-back evidence "
            f"({counted(d.get('evidence', 0), 'record')}):",
            "",
            learning_table(result),
            "",
        ]
    fell = {m: n for m, n in result.fallbacks.items() if n}
    if fell:
        lines += [f"Fallbacks to symbolic: {fell}.", ""]
    return "\n".join(lines)


def plot(result: StudyResult, path: Path) -> bool:
    """Write the recall@k curves; False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for mode, curve in result.curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.set_title(f"vault eval — {result.dataset['name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return True


def write(result: StudyResult, out: Path, command: str | None = None) -> dict[str, Any]:
    """Write REPORT.md, results.json and (with matplotlib) recall_at_k.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(out / "results.json", data.encode(), durable=False)
    atomic_write(out / "REPORT.md", markdown(result, command).encode(), durable=False)
    plotted = plot(result, out / "recall_at_k.png")
    files = ["REPORT.md", "results.json"] + (["recall_at_k.png"] if plotted else [])
    return {"out": str(out), "files": files, "plot": plotted}
