"""What every ``vault`` command shares: exit codes, one-line errors, ``--vault``, finding the
vault, confirmation prompts and help examples. A new command (``vault eval``, say) uses
``VaultOpt`` + ``open_vault``, an ``epilog=example(...)``, and raises ``vault.errors``
exceptions (or ``typer.BadParameter`` from a parameter callback); the rest is done here.

The exit-code rule (also in ``vault --help`` and the README):

* **0** ok.
* **1** the command ran and failed, or found what it checks for: a bad input file, an
  unknown concept or generation, a vault it cannot use, a missing optional extra, the write
  lock held too long, output that cannot be written (stdout closed before the run),
  ``verify`` found an error, ``index status`` is not current, a
  ``retrieve --batch`` line failed (every line still answered), a prompt answered no.
* **2** usage: the command line itself is wrong — an unknown command or option, a missing or
  extra argument, a value of the wrong form or out of range (a choice, a count, an id, a
  version), conflicting options, a bad ``SOURCE_DATE_EPOCH``. Told from the command line
  alone, before any input file or the vault is read.
* **130** interrupted; **141** stdout closed early, before the output was all written
  (``vault export | head -1`` with more output than the pipe's buffer holds), whatever the
  output form (rich tables too: rich's own handler would exit 1): quietly, as git.

Errors are one line on stderr, ``error: <message>``; never a traceback (an unexpected one is
reported as ``error: internal error: …``; ``VAULT_TRACEBACK=1`` shows it, and
``VAULT_INTERNAL_ERRORS=FILE`` appends it to FILE: ``vault.internal``, how the test suite
fails on any). On a terminal a usage error is preceded by the command's usage line.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, BinaryIO, NoReturn, cast

import typer

# typer (>= 0.29, see pyproject.toml) vendors click as ``typer._click``: its exceptions.
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from vault.errors import UsageError, VaultError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_CLOSED_PIPE = 130, 141
DEFAULT_VAULT = Path("vault")
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a timestamp can name

EXIT_CODES_HELP = """\b
Exit codes: 0 ok; 1 failure (bad input, unknown concept, vault problem, missing
extra, stdout closed before the run; verify found a problem; index status not
current; a failed --batch line; prompt declined); 2 usage error (bad option or
argument value, conflicting options); 130 interrupted; 141 output pipe closed
(quiet).
Without --vault or VAULT_DIR the vault is the one containing the current
directory (searched upwards, as git does), else ./vault."""


def example(*lines: str) -> str:
    """A help epilog showing command lines (``\\b`` keeps click from re-wrapping them)."""
    title = "Example:" if len(lines) == 1 else "Examples:"
    return "\b\n" + title + "\n" + "\n".join(f"  {line}" for line in lines)


# --------------------------------------------------------------------------- the vault
class Invocation:
    """Per-run settings from the root options (set by the root callback on every run)."""

    vault: Path | None = None


def _one_vault(value: Path | None) -> Path | None:
    """``--vault`` given before the command (or its group) and again after it must name the
    same directory (compared resolved: ``v`` and ``./v/`` are one): two different ones are
    conflicting options, a usage error, not the last one silently."""
    before = Invocation.vault
    if (
        value is not None
        and before is not None
        and os.path.realpath(value) != os.path.realpath(before)
    ):
        raise UsageError(
            f"--vault given twice with different directories ({before} and {value}); give one"
        )
    return value


VaultOpt = Annotated[
    Path | None,
    typer.Option(
        "--vault",
        metavar="PATH",
        help="Vault directory (also before the command, the same one if both; env VAULT_DIR; "
        "default: the vault containing the current directory, else ./vault).",
        show_default=False,
        callback=_one_vault,
    ),
]


def vault_path(given: Path | None = None) -> Path:
    """``--vault`` (after the command or before it: the same one, see ``_one_vault``) >
    ``VAULT_DIR`` > the vault containing the current directory > ``./vault``."""
    if given is not None:
        return given
    if Invocation.vault is not None:
        return Invocation.vault
    env = os.environ.get("VAULT_DIR")
    if env:
        return Path(env)
    from vault.handle import find_vault

    try:
        here = Path.cwd()
    except OSError:  # the current directory was removed
        return DEFAULT_VAULT
    return find_vault(here) or DEFAULT_VAULT


def clock() -> Any:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) freezes the audit clock."""
    from vault.handle import fixed_clock

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return None
    if not (epoch.isascii() and epoch.isdigit()):
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer >= 0, got {epoch!r}")
    digits = epoch.lstrip("0") or "0"  # (int() refuses more than 4,300 digits: look first)
    if len(digits) > len(str(MAX_EPOCH)) or int(digits) > MAX_EPOCH:  # past year 9999
        shown = epoch if len(epoch) <= 40 else f"{epoch[:20]}... ({len(epoch)} digits)"
        raise UsageError(
            f"SOURCE_DATE_EPOCH must be at most {MAX_EPOCH} (9999-12-31T23:59:59Z), got {shown}"
        )
    return fixed_clock(int(epoch))


def open_vault(given: Path | None = None) -> Any:
    """The vault this command means (see ``vault_path``), opened: the bottom handle, which
    each command passes to its one library call (a query loads no operation module)."""
    from vault.handle import Handle

    return Handle.open(vault_path(given), clock=clock())


def open_for_write(given: Path | None = None) -> Any:
    """The vault this command means, opened through the facade (``vault.Vault``): a write
    goes through it so that the ``[gc]`` retention policy runs after it."""
    from vault.vault import Vault

    return Vault.open(vault_path(given), clock=clock())


# --------------------------------------------------------------------------- output files
def output_file(path: Path, root: Path, option: str) -> Path:
    """Check a file a command is to write for the user (``export -o``, ``--html``) before
    it does any work: not in the vault's folder (its files are the vault's own: writing
    one over would break it), not a folder, and in a folder that exists (none is made)."""
    target = Path(os.path.realpath(path))  # (a link's target: what will be written)
    home = Path(os.path.realpath(root))
    if target == home or home in target.parents:
        raise UsageError(f"{option} {path}: inside the vault ({root}); write it elsewhere")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file")
    if not target.parent.is_dir():
        missing = target.parent if path.is_symlink() else path.parent
        raise UsageError(f"{option} {path}: no folder {missing}")
    return path


def output_folder(path: Path, root: Path, option: str) -> Path:
    """Check a folder a command is to write its files into (``eval --out``) before it does
    any work: not the folder of the vault ``root`` (``--vault``, or the vault the command
    would use) nor of any other vault (a vault's files are its own: one more breaks
    ``vault verify``), the vault's root itself included; not a file."""
    target = Path(os.path.realpath(path))  # (a link's target: where the files will go)
    home = Path(os.path.realpath(root))
    inside = root if target == home or home in target.parents else vault_holding(target)
    if inside is not None:
        raise UsageError(f"{option} {path}: inside the vault ({inside}); write it elsewhere")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file; give a folder")
    return path


def vault_holding(path: Path) -> Path | None:
    """The vault whose folder ``path`` (a link's target) is or is in, or None."""
    from vault.handle import find_vault

    return find_vault(Path(os.path.realpath(path)))


def new_vault_folder(path: Path) -> Path:
    """Check where ``vault init`` is to make a vault: not inside another vault's folder
    (``nv/inner``, ``nv/objects/zz``: a stray there fails that vault's ``verify`` and
    ``gc``). A vault already at ``path`` is fine (``init`` leaves it as it is)."""
    inside = vault_holding(path)
    if inside is not None and inside != Path(os.path.realpath(path)):
        from vault.errors import VaultStateError

        raise VaultStateError(f"{path}: inside the vault ({inside}); create it elsewhere")
    return path


def same_file_as_stdout(path: Path) -> bool:
    """Whether ``path`` is the file stdout writes to (``-o /dev/stdout``, the file stdout is
    redirected to): output meant for it and for stdout would be mixed."""
    try:
        there, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no such file yet, or no real stdout
        return False
    return (there.st_dev, there.st_ino) == (out.st_dev, out.st_ino)


def write_output(path: Path, data: bytes) -> None:
    """Write ``data`` to the user's ``path`` (checked by ``output_file``): into a device,
    FIFO or socket there as a shell would (``/dev/null``, ``/dev/stdout``, a pipe a reader
    waits on); else replacing the file atomically (the target of a link: the link stays),
    so a reader never sees half of it."""
    import stat

    from vault.store.fs import atomic_write, naming

    with naming(path):
        try:  # (through links: /dev/stdout is one, to a pipe's magic name)
            special = not stat.S_ISREG(os.stat(path).st_mode)
        except FileNotFoundError:
            special = False
        if special:
            with open(path, "wb") as f:
                f.write(data)
            return
        atomic_write(Path(os.path.realpath(path)), data, durable=False)


# --------------------------------------------------------------------------- values
def int_range(low: int, high: int | None = None) -> Callable[[str | int], int]:
    """A parameter parser: an integer in ``low..high``; the message names the value given
    (use with ``metavar="N"``)."""
    expected = f"an integer >= {low}" if high is None else f"an integer {low}..{high}"

    def parse(text: str | int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise typer.BadParameter(f"expected {expected}, got {str(text)!r}") from None
        if value < low or (high is not None and value > high):
            raise typer.BadParameter(f"expected {expected}, got {value}")
        return value

    return parse


def checked(schema: str, field: str) -> Callable[[str | None], str | None]:
    """A parameter callback: the value must be a valid ``field`` of ``schema`` (an id, a
    version...), so a malformed one is a usage error, told before the vault is read."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        from vault.errors import InvalidInputError
        from vault.records.schema import validate_field

        try:
            validate_field(value, schema, field)
        except InvalidInputError as exc:
            raise typer.BadParameter(exc.detail) from None
        return value

    return check


# --------------------------------------------------------------------------- prompts
class Declined(VaultError):
    """The user answered no to a confirmation prompt (exit 1, nothing changed)."""


def stderr_is_terminal() -> bool:
    """Whether a person watches stderr (progress and the usage line are drawn only then)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def can_prompt() -> bool:
    """Ask only a person: stdin and stderr are both terminals."""
    try:
        return sys.stdin.isatty() and stderr_is_terminal()
    except (AttributeError, ValueError):
        return False


def confirm(question: str, *, yes: bool) -> None:
    """Ask ``question`` on a terminal (unless ``yes``); raise ``Declined`` unless answered y.
    Never asks when not a terminal: scripts and CI go ahead (say so in the command's help)."""
    if yes or not can_prompt():
        return
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        if not answer.endswith("\n"):
            sys.stderr.write("\n")
        raise Declined("aborted; nothing changed")


# --------------------------------------------------------------------------- errors
def error_line(message: str) -> None:
    """``error: <message>`` on stderr, always one line."""
    text = " ".join(str(message).splitlines()) or "unknown error"
    try:
        sys.stderr.write(f"error: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed too: nothing more to say
        pass


class StdoutClosed(OSError):
    """A write to stdout when it was closed before the run (``vault list >&-``)."""

    def __init__(self) -> None:
        super().__init__(errno.EBADF, "stdout is closed: the output could not be written")


class _ClosedBinaryStdout(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data):
            raise StdoutClosed
        return 0


class _ClosedStdout(io.TextIOBase):
    """``sys.stdout`` for a run whose stdout was closed (Python sets it to None): a write of
    anything fails with ``StdoutClosed`` (reported as one line, exit 1: the output is lost,
    as ``ls >&-`` fails); a command that writes nothing to stdout succeeds."""

    encoding = "utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.buffer = cast(BinaryIO, _ClosedBinaryStdout())  # (``export`` writes bytes)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if text:
            raise StdoutClosed
        return 0


def mend_standard_streams() -> None:
    """A run started with stdin, stdout or stderr closed (``<&-``, ``>&-``, ``2>&-``): the
    closed descriptor is held open on /dev/null (so no file the vault opens gets the number
    0, 1 or 2, where a stray write meant for the stream would land); a closed stdin stays
    None (``vault.input`` refuses ``-`` then), a closed stdout fails a command that writes
    to it (``StdoutClosed``), a closed stderr drops every message (the exit code is still
    the command's own)."""
    for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                held = os.open(os.devnull, flags)
                if held != fd:
                    os.dup2(held, fd)
                    os.close(held)
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the run


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush of
    what is still buffered cannot fail ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test runner)
        pass


def report(exc: BaseException) -> int:
    """Say what went wrong in one line (or nothing, for a closed pipe); the exit code."""
    if isinstance(exc, VaultError):
        error_line(str(exc))
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        _quiet_stdout()
        return EXIT_CLOSED_PIPE
    if isinstance(exc, KeyboardInterrupt):
        error_line("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        error_line(f"{where}{exc.strerror or exc}")
        return EXIT_FAILURE
    from vault.internal import note

    message = note(exc, "cli")  # recorded for the test suite (VAULT_INTERNAL_ERRORS)
    if os.environ.get("VAULT_TRACEBACK"):
        import traceback

        traceback.print_exception(exc)
    error_line(f"{message} (a bug: please report it; VAULT_TRACEBACK=1 shows where)")
    return EXIT_FAILURE


def _on_stdout(exc: OSError) -> OSError:
    """An error writing the output, named as such when it names no file."""
    if exc.filename or isinstance(exc, StdoutClosed):
        return exc
    return OSError(exc.errno, exc.strerror, "stdout")


def finish(code: int) -> NoReturn:
    """End the process with ``code`` once the command is done: flush stdout and stderr, run
    the exit handlers (``atexit``, which also runs ``weakref.finalize``), then leave without
    the interpreter's teardown (freeing every object; nothing is written there). Every write
    of a command is complete, closed and synced before it returns."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = report(BrokenPipeError())
    except OSError as exc:  # the output is incomplete: say so, and fail
        code = report(_on_stdout(exc))
    except ValueError:  # stdout closed by the command
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def usage_message(exc: click_exceptions.ClickException) -> str:
    """A click/typer usage error as one lower-case line."""
    text = " ".join(exc.format_message().split("\n")).strip()
    text = text.replace("Value error, ", "")  # typer's validation prefix
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text.removesuffix(".")


class VaultGroup(TyperGroup):
    """The root command group: every failure becomes one line and a documented exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_exceptions.ClickException, SystemExit):
            raise  # click's own signals: handled in main()
        except BaseException as exc:  # noqa: BLE001 - the one place errors are reported
            raise typer.Exit(report(exc)) from None

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        # `vault --help` / `--version` write while the root's arguments are parsed, outside
        # ``invoke``: a closed pipe there is 141 too (click's own handler exits 1).
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            raise typer.Exit(report(BrokenPipeError())) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        Invocation.vault = None  # nothing carries over from an earlier run in this process
        mend_standard_streams()
        try:
            rv = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = rv if isinstance(rv, int) else EXIT_OK
            sys.stdout.flush()
        except click_exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click_exceptions.ClickException as exc:
            code = exc.exit_code
            ctx = getattr(exc, "ctx", None)
            if ctx is not None and stderr_is_terminal():
                sys.stderr.write(f"{ctx.get_usage()}\nTry '{ctx.command_path} -h' for help.\n")
            error_line(usage_message(exc))
        except typer.Abort:  # end of input at a prompt
            error_line("aborted")
            code = EXIT_FAILURE
        except BrokenPipeError:
            code = report(BrokenPipeError())
        except OSError as exc:  # writing the output itself failed (a full disk): not a traceback
            code = report(_on_stdout(exc))
        if standalone_mode:
            sys.exit(code)
        return code
