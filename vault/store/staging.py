"""Objects *staged*: fetched from a remote by a clone or a pull, or many new ones of one
write (``put_durably``), written under their names without a fsync each, and made durable
all at once (``sync_staged``: one ``syncfs``) before anything names them (FORMAT.md §14).

The **staging journal** ``remotes/staged`` lists their addresses (one a line). It is made
durable before the first of them is written and removed (durably) once all of them are.
While it is there a power cut may have left any of them empty or torn, so every writer,
under the write lock, first rechecks them (``recover``, run by ``Handle.check_layout``):
each one there is read and checked against its address — a sound one is made durable (an
fsync of it, of its fan-out directory and of ``objects/``), a damaged one removed (the
next pull fetches it again). ``vault verify`` reports a damaged object the journal lists
as a warning, not as corruption: nothing names it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vault.canonical import sha256_hex
from vault.errors import CorruptionError, NotFoundError, StorageError, VaultError
from vault.store import fs
from vault.store.fs import atomic_write, fsync_all, fsync_dir, unlink_durably
from vault.store.objects import ObjectStore, is_digest

JOURNAL = ("remotes", "staged")  # under the vault's root
RECHECK_CHUNK = 8192  # objects read (and held in memory) at a time by ``recover``
# New objects in one write from which ``put_durably`` stages them: a fsync each costs more
# than the journal and one syncfs (20,000 small objects: 6.5-11.9 s against 0.8-1.9 s,
# /tmp/putmb.py on this host); below, the journal's own fsyncs would not pay.
STAGE_MIN = 64


def put_durably(objects: ObjectStore, root: Path, items: list[tuple[str, bytes]]) -> None:
    """``objects.put_digested(items)`` (under the write lock of the vault at ``root``), with
    the same guarantee when it returns — every object durable under its name — at less cost
    when many are new: where the kernel reports write-back errors to ``syncfs``, the new
    ones (at least ``STAGE_MIN``) are staged as a pull's are: the journal listing them made
    durable, each written under its name without a fsync, then — those already there
    compared with their bytes — all made durable by one ``syncfs``, and the journal removed.
    A power cut meanwhile leaves them listed, and the next writer rechecks them
    (``recover``). An error, or an interrupt (``KeyboardInterrupt``: Ctrl-C), removes what
    was staged (nothing names it; an object file it was writing too) and the journal (if
    that fails too, the journal stays for the next writer). One already there that differs
    is repaired by ``put_digested``."""
    items = list(dict(items).items())
    new = [(d, b) for d, b in items if not os.path.lexists(objects.file(d))]
    if len(new) < STAGE_MIN or objects.readonly or fs._syncfs() is None:
        objects.put_digested(items)
        return
    fresh = {d for d, _ in new}
    remotes = journal_path(root).parent
    made = not remotes.is_dir()  # (removed again after: a vault without remotes has none)
    damaged: list[tuple[str, bytes]] = []
    try:
        root_fd = os.open(root, os.O_RDONLY)  # before the first is written (sync_staged)
        try:
            begin(root, [d for d, _ in new])
            staged = objects.stage(new)
            damaged = [(d, b) for d, b in items if d not in fresh and not objects.sound(d, b)]
            fans = sorted({os.path.dirname(f) for f in staged})
            fs.sync_staged(root_fd, root, staged, [*fans, str(objects.root)])
            _finish(root, made)
        finally:
            os.close(root_fd)
    except BaseException as exc:  # an error or an interrupt (Ctrl-C): nothing names them
        with contextlib.suppress(OSError):  # (else the journal stays: the next writer's)
            unlink_durably([Path(objects.file(d)) for d in fresh])
            _finish(root, made)
        if isinstance(exc, OSError):
            raise StorageError.of(exc, root) from None
        raise
    if damaged:
        objects.put_digested(damaged)


def _finish(root: Path, made: bool) -> None:
    """Remove the journal (durably), and ``remotes/`` when this write made it (and it is
    still there: a second call after a failed one finishes what is left)."""
    end(root)
    remotes = journal_path(root).parent
    if made and remotes.is_dir():
        try:
            os.rmdir(remotes)
        except OSError as exc:
            raise StorageError.of(exc, remotes) from None
        fsync_dir(root)


def journal_path(root: Path) -> Path:
    return root.joinpath(*JOURNAL)


def begin(root: Path, digests: list[str]) -> None:
    """Make the journal listing ``digests`` durable (before the first is staged)."""
    atomic_write(journal_path(root), "".join(f"{d}\n" for d in digests).encode())


def end(root: Path) -> None:
    """Remove the journal, durably (once every staged object is durable)."""
    unlink_durably([journal_path(root)])


def listed(root: Path) -> list[str]:
    """The addresses the journal lists (none when there is no journal)."""
    path = journal_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CorruptionError(f"{path} cannot be read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    if lines.pop() != b"" or not all(is_digest(x.decode("ascii", "replace")) for x in lines):
        raise CorruptionError(
            f"{path} is not a staging journal (one object address a line): it was changed; "
            "remove it, then run `vault verify`"
        )
    return [x.decode("ascii") for x in lines]


def recover(objects: ObjectStore, root: Path) -> int:
    """Finish an interrupted staging (under the write lock): every object the journal lists
    that is there is checked against its address — a sound one made durable, a damaged one
    removed — then the journal is removed. Returns how many were removed."""
    if not journal_path(root).exists():  # (the common case: one stat per write)
        return 0
    digests = listed(root)
    removed = 0
    for i in range(0, len(digests), RECHECK_CHUNK):
        sound: list[str] = []
        bad: list[Path] = []
        for d in digests[i : i + RECHECK_CHUNK]:
            try:
                data = objects.get(d)
            except NotFoundError:
                continue  # never written, or collected since
            except VaultError:
                data = b""  # unreadable
            if data and sha256_hex(data) == d:
                sound.append(str(objects.path(d)))
            else:
                bad.append(objects.path(d))
        removed += unlink_durably(bad)
        fans = sorted({str(Path(f).parent) for f in sound})
        fsync_all(sound, [*fans, str(objects.root)] if sound else [])
    end(root)
    return removed
