"""``vault remote add|list|remove``, ``vault push``, ``vault pull``, ``vault clone``:
vaults on object storage (the ``remote`` extra; the library is ``vault.remote``).
Registered into the app by ``register``; only typer is imported here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vault.errors import counted
from vault_cli import render
from vault_cli.core import VaultOpt, clock, example, open_vault, vault_path

JsonOpt = Annotated[bool, typer.Option("--json", help="Print clean JSON on stdout.")]
NameArg = Annotated[
    str | None,
    typer.Argument(metavar="NAME", help="The remote (default: origin, or the only one)."),
]


def _summary(verb: str, r: Any) -> str:
    moved = (
        f"{counted(r.objects_sent, 'object')}, {r.bytes_sent:,} bytes sent"
        if verb == "pushed"
        else f"{counted(r.objects_received, 'object')}, {r.bytes_received:,} bytes received"
    )
    extra = f"; {r.replayed} re-applied on newer entries" if r.replayed else ""
    extra += f"; {counted(r.retries, 'lost race')}" if r.retries else ""
    count = r.pushed if verb == "pushed" else r.pulled
    return (
        f"{verb} {counted(count, 'audit entry', 'audit entries')} ({moved}){extra}; "
        f"{r.remote} at seq {r.head}"
    )


def _result(verb: str, r: Any, as_json: bool) -> None:
    if as_json:
        render.json_out(r.to_json())
    else:
        render.note(_summary(verb, r))


def register(app: typer.Typer, make_group: Callable[[str, str], typer.Typer]) -> None:
    """Add the remote commands to ``app`` (``make_group(help, epilog)`` makes a group)."""
    remote_app = make_group(
        "Name the object stores a vault is pushed to and pulled from.",
        example(
            "vault remote add origin s3://my-bucket/vaults/arc",
            "vault remote add backup file:///mnt/backup/arc",
        ),
    )
    app.add_typer(remote_app, name="remote")

    @remote_app.command("add", epilog=example("vault remote add origin s3://my-bucket/arc"))
    def remote_add(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        url: Annotated[str, typer.Argument(metavar="URL", help="s3://, gs://, az:// or file://")],
        vault_dir: VaultOpt = None,
    ) -> None:
        """Name a remote. Only the URL is stored (in config.toml); credentials come from the
        object store's usual environment (AWS_*, GOOGLE_*, AZURE_*). A NAME the vault has
        already is an error (exit 1): `vault remote remove NAME` first."""
        from vault.remote.config import add_remote, check

        check(name, url)  # (a usage error, told before the vault is read)
        vault = open_vault(vault_dir)
        with vault.lock:
            add_remote(vault.config_path, name, url)
        render.note(f"remote {name}: {url}")

    @remote_app.command("list", epilog=example("vault remote list --json"))
    def remote_list(json_out: JsonOpt = False, vault_dir: VaultOpt = None) -> None:
        """The vault's remotes."""
        from vault.remote.config import remotes

        known = remotes(open_vault(vault_dir).config_path)
        if json_out:
            render.json_out(known)
        else:
            for n, u in sorted(known.items()):
                print(f"{n}\t{u}")

    @remote_app.command("remove", epilog=example("vault remote remove backup"))
    def remote_remove(
        name: Annotated[str, typer.Argument(metavar="NAME")], vault_dir: VaultOpt = None
    ) -> None:
        """Forget a remote (nothing on the remote changes)."""
        from vault.remote.config import remove_remote

        vault = open_vault(vault_dir)
        with vault.lock:
            remove_remote(vault.config_path, name)
        render.note(f"removed remote {name}")

    @app.command(epilog=example("vault push", "vault push backup --json"))
    def push(name: NameArg = None, json_out: JsonOpt = False, vault_dir: VaultOpt = None) -> None:
        """Send the audit entries the remote lacks and the records they name (packed; only
        what is missing). The next log segment is created only if absent: when another
        writer got there first, its entries are pulled and the local ones re-applied on top,
        then pushed again."""
        from vault.remote.sync import push as run

        _result("pushed", run(open_vault(vault_dir), name), json_out)

    @app.command(epilog=example("vault pull", "vault pull --discard-unpushed"))
    def pull(
        name: NameArg = None,
        discard_unpushed: Annotated[
            bool,
            typer.Option(
                "--discard-unpushed",
                help="Drop local entries not pushed yet instead of re-applying them.",
            ),
        ] = False,
        json_out: JsonOpt = False,
        vault_dir: VaultOpt = None,
    ) -> None:
        """Take the remote's newer audit entries and the records they name (each checked
        against its address before anything local changes); the index follows. An
        interrupted pull leaves the log and the index as they were; run it again: what it
        fetched is kept (checked again) and only the rest is fetched."""
        from vault.remote.sync import pull as run

        vault = open_vault(vault_dir)
        _result("pulled", run(vault, name, discard_unpushed=discard_unpushed), json_out)

    @app.command(epilog=example("vault clone s3://my-bucket/vaults/arc ./arc-vault"))
    def clone(
        url: Annotated[str, typer.Argument(metavar="URL")],
        directory: Annotated[
            Path | None, typer.Argument(metavar="DIR", help="Where (default: --vault).")
        ] = None,
        json_out: JsonOpt = False,
        vault_dir: VaultOpt = None,
    ) -> None:
        """A new vault in DIR from the remote at URL (named origin): its log, the records
        it names, the index built from the log. DIR must be new or an empty directory (as
        for git clone; anything else is an error, exit 1). Run again to resume an
        interrupted clone."""
        from vault.remote.sync import clone as run

        _result("pulled", run(url, directory or vault_path(vault_dir), clock=clock()), json_out)
