"""``vault push``, ``vault pull``, ``vault clone``: a vault's audit log and the records it
names, moved to and from an object store; the commit protocol of many writers.

The remote's log is the shared history; a local vault is a replica of its first ``head``
entries plus a *tail* of local entries not pushed yet. Pushing creates the next log segment
with a create-only put (``If-None-Match: *``): the writer that creates it has committed.
A writer that loses the race fetches what it lacks, puts its vault back at ``head``
(``CURRENT`` first, then the log cut), appends the remote's entries, and **re-applies**
its tail on top through the public write-back operations (an operation is a deterministic
function of its input: the records its entry names), then tries again, with backoff.
Every byte fetched is checked (log lines: canonical, checksummed, known op, no seq gap;
objects: sha256 against the address) before the local log or index changes. Fetched objects
are staged (clone and pull alike: ``_fetch_staged``) and made durable by one sync before
anything names them. FORMAT.md §14 tells the protocol and its failure cases.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.canonical import dumps_line, loads
from vault.errors import (
    ConflictError,
    CorruptionError,
    NotAVaultError,
    StorageError,
    UsageError,
    VaultError,
    counted,
)
from vault.remote import protocol as p
from vault.remote.config import add_text, check, resolve, without_remotes
from vault.remote.store import RemoteStore
from vault.store import staging
from vault.store.audit import STATE_OPS, AuditEntry
from vault.store.fs import atomic_write, fsync_dir, make_dir, sync_staged, unlink_durably

if TYPE_CHECKING:
    from vault.handle import Handle

ATTEMPTS = 200  # commit attempts before giving up (each loser re-applies and retries)
BACKOFF = 0.01  # seconds: the first retry's mean wait; doubled each time, capped at CAP
CAP = 0.5
PUT_BATCH = 8192  # objects made durable per call while fetching
FETCH_PACKS = 8  # packs fetched at once
REPLAYABLE = STATE_OPS | {"index_build", "gc", "mode", "repair", "embedder_fit"}
Sleep = Callable[[float], None]
Store = Callable[[list[tuple[str, bytes]]], None]


@dataclass
class SyncResult:
    """What one push, pull or clone moved."""

    remote: str
    url: str
    head: int = 0  # the last seq the local vault shares with the remote
    pushed: int = 0  # audit entries committed to the remote
    pulled: int = 0  # audit entries taken from it
    replayed: int = 0  # local entries re-applied on top of newer remote ones
    conflicts: int = 0  # local entries that could not be re-applied (dropped)
    retries: int = 0  # lost races
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_received: int = 0
    bytes_received: int = 0
    generation: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- remote side
class Remote:
    """One remote as the protocol sees it: its log segments and its packs."""

    def __init__(self, store: RemoteStore, cache_dir: Path | None):
        self.store = store
        self.cache_dir = cache_dir  # where pack indexes already read are kept
        self.index: dict[str, tuple[str, int, int]] = {}  # digest -> (pack, offset, length)
        self._packs: set[str] = set()

    def check_format(self, *, create: bool) -> bool:
        """True when the remote holds a vault; an empty one is made one when ``create``."""
        data = self.store.get(p.FORMAT_KEY)
        if data is None:
            if self.store.keys(p.LOG_PREFIX):
                raise p.RemoteCorruptionError(f"{self.store.url}: a log but no format.json")
            if not create:
                return False
            self.store.create(p.FORMAT_KEY, p.format_bytes())
            data = self.store.get(p.FORMAT_KEY)
        if data != p.format_bytes():
            raise NotAVaultError(
                f"{self.store.url}: not a vault remote of a version this tool reads "
                f"(format.json: {(data or b'')[:80]!r})"
            )
        return True

    def segments_after(self, head: int) -> list[list[AuditEntry]]:
        """The log segments after ``head``, each checked, contiguous from ``head + 1``."""
        keys = self.store.keys(p.LOG_PREFIX, after=p.log_key(head) if head else None)
        out: list[list[AuditEntry]] = []
        expect = head + 1
        for key, data in zip(keys, self.store.get_many(keys), strict=True):
            if data is None:
                raise p.RemoteCorruptionError(f"remote {key}: listed but cannot be read")
            entries = p.parse_segment(data, key, expect)
            out.append(entries)
            expect = entries[-1].seq + 1
        return out

    def load_index(self) -> None:
        """Every pack index of the remote (those read before come from the local cache)."""
        keys = [k for k in self.store.keys(p.PACK_PREFIX) if k.endswith(".idx")]
        todo = []
        for key in keys:
            name = key[len(p.PACK_PREFIX) :]
            if name[: -len(".idx")] in self._packs:
                continue
            cached = self.cache_dir / name if self.cache_dir else None
            if cached is not None and cached.is_file():
                self._add(p.parse_index(cached.read_bytes(), key))
            else:
                todo.append(key)
        for key, data in zip(todo, self.store.get_many(todo), strict=True):
            if data is None:
                raise p.RemoteCorruptionError(f"remote {key}: listed but cannot be read")
            idx = p.parse_index(data, key)
            self._add(idx)
            self._cache(idx)

    def _add(self, idx: p.PackIndex) -> None:
        self._packs.add(idx.pack)
        for digest, offset, length in idx.objects:
            self.index.setdefault(digest, (idx.pack, offset, length))

    def _cache(self, idx: p.PackIndex) -> None:
        if self.cache_dir is not None:
            make_dir(self.cache_dir, durable=False)
            atomic_write(self.cache_dir / f"{idx.pack}.idx", idx.to_bytes(), durable=False)

    def send(self, items: list[tuple[str, bytes]]) -> int:
        """Upload objects as packs (each pack before its index); returns bytes sent."""
        sent = 0
        groups: list[list[tuple[str, bytes]]] = [[]]
        size = 0
        for digest, data in items:
            if groups[-1] and size + len(data) > p.PACK_BYTES:
                groups.append([])
                size = 0
            groups[-1].append((digest, data))
            size += len(data)
        packs = [p.make_pack(g) for g in groups if g]
        for i in range(0, len(packs), 4):
            chunk = packs[i : i + 4]
            self.store.put_many([(f"{p.PACK_PREFIX}{x.pack}.pack", blob) for blob, x in chunk])
            self.store.put_many([(f"{p.PACK_PREFIX}{x.pack}.idx", x.to_bytes()) for _, x in chunk])
            for blob, x in chunk:
                self._add(x)
                self._cache(x)
                sent += len(blob) + len(x.to_bytes())
        return sent

    def fetch(self, digests: Iterable[str], optional: set[str], store: Store) -> tuple[int, int]:
        """Fetch objects, check each against its address, hand them to ``store`` in batches;
        a digest no pack holds is corruption unless ``optional``. Returns (count, bytes)."""
        by_pack: dict[str, list[tuple[str, int, int]]] = {}
        for digest in sorted(set(digests)):
            where = self.index.get(digest)
            if where is None:
                if digest in optional:
                    continue
                raise p.RemoteCorruptionError(
                    f"{self.store.url}: the log names object {digest[:16]}… that no pack holds"
                )
            pack, offset, length = where
            by_pack.setdefault(pack, []).append((digest, offset, length))
        count = size = 0
        packs = sorted(by_pack)
        for i in range(0, len(packs), FETCH_PACKS):
            names = packs[i : i + FETCH_PACKS]
            wanted = [sorted(by_pack[n], key=lambda r: r[1]) for n in names]
            got = self.store.ranges_many(
                [
                    (f"{p.PACK_PREFIX}{n}.pack", [(o, o + ln) for _, o, ln in rows])
                    for n, rows in zip(names, wanted, strict=True)
                ]
            )
            batch: list[tuple[str, bytes]] = []
            for n, rows, blobs in zip(names, wanted, got, strict=True):
                for (digest, _, _), data in zip(rows, blobs, strict=True):
                    p.check_object(digest, data, f"{p.PACK_PREFIX}{n}.pack")
                    batch.append((digest, data))
                    size += len(data)
            for j in range(0, len(batch), PUT_BATCH):
                store(batch[j : j + PUT_BATCH])
            count += len(batch)
        return count, size


# --------------------------------------------------------------------------- local side
def _remote_dir(root: Path, name: str) -> Path:
    return root / "remotes" / name


def _read_head(vault: Handle, name: str) -> int:
    """The seq up to which the local log is known to equal the remote's (0: unknown);
    checked against the local line it names."""
    path = _remote_dir(vault.root, name) / "head"
    try:
        obj = loads(path.read_bytes(), source=str(path))
        seq, check = int(obj["seq"]), obj["check"]
    except FileNotFoundError:
        return 0
    except (VaultError, KeyError, TypeError, ValueError, OSError):
        return 0  # derived data: recomputed by comparing the logs
    if seq < 1:
        return 0
    entries = vault.audit.entries_after(seq - 1)
    if not entries or entries[0].seq != seq or entries[0].check != check:
        return 0
    return seq


def _write_head(vault: Handle, name: str, entry: AuditEntry | None) -> None:
    d = _remote_dir(vault.root, name)
    make_dir(d)
    body = {"check": entry.check, "seq": entry.seq} if entry else {"check": None, "seq": 0}
    atomic_write(d / "head", dumps_line(body))


def _shared(segments: list[list[AuditEntry]], tail: list[AuditEntry]) -> int:
    """How many whole leading segments equal the local tail's first entries (a push whose
    segment was created but whose head was not recorded: a crash, a lost reply)."""
    n = 0
    for seg in segments:
        local = tail[n : n + len(seg)]
        if len(local) != len(seg) or any(
            p.line_bytes(a) != p.line_bytes(b) for a, b in zip(seg, local, strict=True)
        ):
            break
        n += len(seg)
    return n


def _append(vault: Handle, entries: list[AuditEntry]) -> None:
    """Append entries taken from the remote to the local log (one write, one fsync)."""
    from vault.store.jsonl import tail_offset

    path = vault.audit.path
    last = vault.audit.last_seq()
    if entries[0].seq != last + 1:
        raise CorruptionError(f"{path}: cannot append seq {entries[0].seq} after {last}")
    good = tail_offset(path)
    data = p.segment_bytes(entries)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_size != good:
            os.ftruncate(fd, good)  # a torn tail: never acknowledged
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, good)
        raise
    finally:
        os.close(fd)


def _reset(vault: Handle, name: str, head: int, tail: list[AuditEntry]) -> None:
    """Put the local vault back at ``head`` (under the lock): the tail is saved aside
    first (``remotes/NAME/rebase.jsonl``), then ``CURRENT`` moves to a generation of at
    most ``head`` (or is removed when ``vault gc`` left none), the newer generation records
    are dropped, and the log is cut."""
    from vault.index.build import point_current
    from vault.index.generations import CurrentRef
    from vault.index.snapshot import Snapshot

    d = _remote_dir(vault.root, name)
    make_dir(d)
    atomic_write(d / "rebase.jsonl", p.segment_bytes(tail))
    history = vault.generations.history()
    by_number = {g.number: g for g in history}
    cur = vault.current_ref(tolerant=True)
    rec = by_number.get(cur.number) if cur else None
    while rec is not None and rec.audit_seq > head:
        rec = by_number.get(rec.parent) if rec.parent is not None else None
    if rec is not None and cur is not None and cur.audit_seq > head:
        ref = CurrentRef(rec.generation, rec.number, rec.audit_seq, rec.reverted)
        point_current(vault, ref, Snapshot.open(vault.objects, ref).manifest)
    elif cur is not None and cur.audit_seq > head:
        # ``vault gc`` dropped every generation at or before ``head``: none to go back to.
        # CURRENT goes (first, durably: it must never name a generation of the cut log);
        # ``_reindex`` then builds one from the whole log, a new history.
        unlink_durably([vault.generations.current_path])
    vault.generations.rewrite([g for g in history if g.audit_seq <= head])
    path = vault.audit.path
    with open(path, "rb") as f:
        data = f.read()
    cut = 0
    for _ in range(head):
        cut = data.index(b"\n", cut) + 1
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.ftruncate(fd, cut)
        os.fsync(fd)
    finally:
        os.close(fd)


def _reindex(vault: Handle) -> str:
    """Bring the index up to the log (under the lock): incrementally, or from the whole
    log when a rollback is pending (its record numbers are another replica's)."""
    from vault.index.build import build_all, catch_up

    cur = vault.current_ref(tolerant=True)
    if cur is not None:
        vault.generations.check(cur)  # (a log that lost CURRENT's record: write nothing)
    pending = vault.audit.entries_after(cur.audit_seq) if cur else vault.audit.entries()
    if cur is None or any(e.op == "rollback" for e in pending):
        return build_all(vault, "catch-up", cur.number if cur else None).generation
    return catch_up(vault, repair=True).generation


def _replay(vault: Handle, e: AuditEntry) -> None:
    """Re-apply one local entry on top of the current state, through the operations
    (``vault.ops.write``: a no-op when its effect is already there). ``vault`` may be a
    plain ``Handle`` (the CLI's) as well as a ``Vault``: only what both have is used."""
    from vault.ops import write

    if e.op in ("add", "fork", "evidence", "import", "transaction"):
        skip = int(e.detail.get("reprs", 0))
        records = [vault.records(d) for d in e.records]
        reprs = records[:skip]
        src = f"local seq {e.seq}"
        cards = [(r, src) for r in records[skip:] if r.get("kind") == "concept"]
        ev = [(r, src) for r in records[skip:] if r.get("kind") == "evidence"]
        st = [(r, src) for r in records[skip:] if r.get("kind") == "status"]
        detail = None
        if e.op == "import":
            drop = ("evidence", "reprs", "status")
            detail = {k: v for k, v in e.detail.items() if k not in drop}
        write.write_back(
            vault, cards, ev, fork=e.op == "fork", op=e.op, detail=detail, reprs=reprs, statuses=st
        )
    elif e.op == "status":
        event = vault.records(e.records[0])
        concept, version, status = event["concept"], event["version"], event["status"]
        write.set_status(vault, concept, version, status, event.get("reason"))
    elif e.op == "embedder":
        write.set_embedder(vault, str(e.detail["embedder"]))
    else:  # housekeeping lines: kept in the history as they were
        with vault.lock:
            vault.audit.append(e.op, e.time, list(e.records), e.detail)


def _objects_of(entries: list[AuditEntry], reverted: frozenset[int]) -> tuple[list[str], set[str]]:
    """(objects the entries need, those of them only reverted entries need)."""
    needed: list[str] = []
    optional: set[str] = set()
    live: set[str] = set()
    for e in entries:
        refs = p.referenced(e)
        needed += refs
        (optional if e.seq in reverted else live).update(refs)
    return needed, optional - live


def _sync(
    vault: Handle,
    name: str | None,
    *,
    push: bool,
    discard: bool = False,
    attempts: int = ATTEMPTS,
    sleep: Sleep = time.sleep,
) -> SyncResult:
    name, url = resolve(vault.config_path, name)
    remote = Remote(RemoteStore(url, create=push), _remote_dir(vault.root, name) / "packs")
    result = SyncResult(name, url)
    with vault.lock:
        if not remote.check_format(create=push):
            raise NotAVaultError(f"{url}: holds no vault yet (`vault push` first)")
        if vault.stale():  # a pull killed between its log and its index
            _reindex(vault)
        _resume_rebase(vault, name, result)
        for attempt in range(attempts):
            head, tail = _catch_up_with(vault, name, remote, result, discard=discard)
            result.head = head
            if not push or not tail:
                break
            _send_objects(vault, remote, tail, result)
            _ensure_config(remote.store, vault.config_path)
            if remote.store.create(p.log_key(head + 1), p.segment_bytes(tail)):
                result.pushed += len(tail)
                result.head = tail[-1].seq
                _write_head(vault, name, tail[-1])
                break
            result.retries += 1  # another writer created that segment first
            sleep(random.uniform(0, min(CAP, BACKOFF * 2**attempt)))
        else:
            raise ConflictError(
                f"{url}: gave up after {attempts} lost races; the local write-backs stay "
                "unpushed (`vault push` again)"
            )
        cur = vault.current_ref(tolerant=True)
        result.generation = cur.generation if cur else None
    if result.conflicts:
        raise ConflictError(
            f"{counted(result.conflicts, 'local write-back')} "
            + ("conflicts" if result.conflicts == 1 else "conflict")
            + " with the remote's newer entries (the same concept version with other content) "
            + ("and was" if result.conflicts == 1 else "and were")
            + " dropped; the rest is "
            f"at {url} (seq {result.head})"
        )
    return result


def _catch_up_with(
    vault: Handle, name: str, remote: Remote, result: SyncResult, *, discard: bool
) -> tuple[int, list[AuditEntry]]:
    """Bring the local vault up to the remote's log (under the lock): fetch the newer
    entries and their records (all checked first), put the local vault back at the shared
    head if it has a tail, append them, re-index, re-apply the tail. Returns (head, the
    local entries still to push)."""
    from vault.index.state import reverted_in_effect

    head = _read_head(vault, name)
    segments = remote.segments_after(head)
    tail = vault.audit.entries_after(head)
    n = _shared(segments, tail)
    if n:  # segments this vault created before (a crash before its head was written)
        head = tail[n - 1].seq
        _write_head(vault, name, tail[n - 1])
        tail = tail[n:]
        segments = [s for s in segments if s[-1].seq > head]
    new = [e for seg in segments for e in seg]
    if not new:
        return head, tail
    cur = vault.current_ref(tolerant=True)
    if cur is not None:  # before anything is fetched, cut or appended
        vault.generations.check(cur)
    if tail and not discard:
        if tail[0].seq == 1:
            raise UsageError(
                f"{remote.store.url} holds another vault's history (this vault was not "
                "cloned from it): clone it into a new directory"
            )
        bad = [e for e in tail if e.op not in REPLAYABLE]
        if bad:
            raise ConflictError(
                f"the remote has {counted(len(new), 'newer entry', 'newer entries')} and local "
                f"seq {bad[0].seq} ({bad[0].op}) is not re-applied on top of "
                f"{'it' if len(new) == 1 else 'them'} (a rollback is a decision "
                "about the state its author saw): `vault pull --discard-unpushed` takes the "
                "remote's history, then roll back again if still wanted. Nothing was changed."
            )
    remote.load_index()
    everything = vault.audit.entries()[:head] + new
    needed, optional = _objects_of(new, reverted_in_effect(everything))
    missing = [d for d in dict.fromkeys(needed) if not vault.objects.has(d)]
    _fetch_staged(vault, remote, missing, optional, result)
    t = time.perf_counter()
    if tail:
        _reset(vault, name, head, tail)
    _append(vault, new)
    result.pulled += len(new)
    head = new[-1].seq
    _write_head(vault, name, new[-1])
    _reindex(vault)
    _spent(result, "index", t)
    if tail and not discard:
        _replay_all(vault, tail, result)
    _saved(vault, name).unlink(missing_ok=True)
    return head, vault.audit.entries_after(head)


def _saved(vault: Handle, name: str) -> Path:
    return _remote_dir(vault.root, name) / "rebase.jsonl"


def _replay_all(vault: Handle, tail: list[AuditEntry], result: SyncResult) -> None:
    for e in tail:
        try:
            _replay(vault, e)
            result.replayed += 1
        except CorruptionError:
            raise
        except VaultError:  # e.g. the same concept version with other content
            result.conflicts += 1


def _resume_rebase(vault: Handle, name: str, result: SyncResult) -> None:
    """A sync killed while re-applying its tail left it in ``remotes/NAME/rebase.jsonl``:
    re-apply what is not there yet (identical records are no-ops; a fork is re-applied
    only when no local entry followed the cut). Killed before the log was cut, the tail is
    still the log's own: nothing to re-apply (the sync does it again, with the cut)."""
    path = _saved(vault, name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    head = _read_head(vault, name)
    after = vault.audit.entries_after(head)
    lines = data.split(b"\n")[:-1]
    tail = [p.parse_entry(line, str(path)) for line in lines]
    if tail and after[: len(tail)] == tail:  # never cut (a gc would run twice)
        path.unlink()
        return
    _replay_all(vault, [e for e in tail if e.op != "fork" or not after], result)
    path.unlink()


def _send_objects(
    vault: Handle, remote: Remote, tail: list[AuditEntry], result: SyncResult
) -> None:
    """Upload the records the tail names that the remote has no pack for."""
    from vault.index.state import reverted_in_effect

    remote.load_index()
    needed, optional = _objects_of(tail, reverted_in_effect(vault.audit.entries()))
    items = []
    for d in dict.fromkeys(needed):
        if d in remote.index:
            continue
        if not vault.objects.has(d):
            if d in optional:  # a reverted entry's record, collected by gc
                continue
            raise CorruptionError(f"object {d[:16]}… named by the local log is missing")
        items.append((d, vault.objects.get(d, check=True)))
    if items:
        result.bytes_sent += remote.send(items)
        result.objects_sent += len(items)


def _ensure_config(store: RemoteStore, config_path: Path) -> None:
    """The first pusher's config (retrieval and embedder settings, no remotes) for clones."""
    try:
        text = config_path.read_text("utf-8")
    except FileNotFoundError:
        return
    store.create(p.CONFIG_KEY, without_remotes(text).encode())


def _spent(result: SyncResult, part: str, since: float) -> None:
    seconds = result.seconds.get(part, 0.0) + time.perf_counter() - since
    result.seconds[part] = round(seconds, 3)


def _fetch_staged(
    vault: Handle,
    remote: Remote,
    digests: list[str],
    optional: set[str],
    result: SyncResult,
    *,
    dirs: tuple[Path, ...] = (),
    always: bool = False,
) -> None:
    """Fetch ``digests`` (each checked against its address on arrival) and **stage** them
    (clone and pull alike, under the lock): the staging journal listing them is made
    durable first (``vault.store.staging``), each object is written under its name without
    a fsync of its own, then all of them are made durable at once — ``sync_staged``: one
    ``syncfs`` on a descriptor of the vault's directory opened before the first was
    written; elsewhere a fsync of every staged file, its fan-out directory, ``objects/``
    and ``dirs`` — and the journal is removed. Only then may the caller name them (log,
    refs, manifests). Nothing to fetch: nothing is written or synced, unless ``always``."""
    if not digests and not always:
        return
    root = vault.root
    t = time.perf_counter()
    root_fd = os.open(root, os.O_RDONLY)  # before any object is staged (sync_staged)
    try:
        if digests:
            staging.begin(root, digests)
        staged: list[str] = []
        got, size = remote.fetch(
            digests, optional, lambda batch: staged.extend(vault.objects.stage(batch))
        )
        result.objects_received += got
        result.bytes_received += size
        _spent(result, "fetch", t)
        t = time.perf_counter()
        fans = sorted({os.path.dirname(f) for f in staged})
        try:
            sync_staged(root_fd, root, staged, [*fans, str(vault.objects.root), *map(str, dirs)])
            staging.end(root)
        except OSError as exc:  # a write-back error: nothing names them; rechecked later
            raise StorageError.of(exc, root) from None
        _spent(result, "sync", t)
    finally:
        os.close(root_fd)


def push(
    vault: Handle, name: str | None = None, *, attempts: int = ATTEMPTS, sleep: Sleep = time.sleep
) -> SyncResult:
    """Commit the local entries the remote lacks (re-applying them on top of newer remote
    entries when another writer got there first)."""
    return _sync(vault, name, push=True, attempts=attempts, sleep=sleep)


def pull(vault: Handle, name: str | None = None, *, discard_unpushed: bool = False) -> SyncResult:
    """Take the remote's newer entries and the records they name; unpushed local entries
    are re-applied on top (or dropped with ``discard_unpushed``)."""
    return _sync(vault, name, push=False, discard=discard_unpushed)


MARKER = ".clone-partial"


def clone(url: str, root: Path | str, *, clock: Any = None, name: str = "origin") -> SyncResult:
    """A new vault at ``root`` from the remote at ``url``: its log, the records the log
    names (checked on arrival), the index built from the log; ``format.json`` last.
    ``root`` must be new or an empty directory (as for ``git clone``; anything else is a
    ``NotAVaultError``, exit 1). An interrupted clone resumes where it stopped (objects
    already fetched stay; those the staging journal lists are checked again). The records
    are staged as a pull's are (``_fetch_staged``: no fsync each, all made durable by one
    ``syncfs``) before the log that names them is written: until ``format.json`` is there,
    it is not a vault."""
    from vault.config import default_text
    from vault.config import load as load_config
    from vault.index.build import build_all
    from vault.index.state import reverted_in_effect
    from vault.vault import FORMAT_FILE, Vault, format_bytes

    root = Path(root)
    try:  # (the form first: a usage error, before the disk is read)
        check(name, url)
    except UsageError as exc:
        raise UsageError(f"cannot clone into {root}: {exc}") from None
    # (found by reading the disk: exit 1, not a usage error. An empty directory is fine,
    # as for git clone; one holding the marker is an interrupted clone, resumed.)
    if (root / FORMAT_FILE).exists():
        raise NotAVaultError(
            f"cannot clone into {root}: it is a vault already (`vault pull` there takes "
            "the remote's entries); choose a new or empty directory"
        )
    if root.exists() and not root.is_dir():
        raise NotAVaultError(
            f"cannot clone into {root}: it exists and is not a directory; "
            "choose a new or empty directory"
        )
    partial = (root / MARKER).exists()
    if root.exists() and any(root.iterdir()) and not partial:
        raise NotAVaultError(
            f"cannot clone into {root}: it exists and is not empty; choose a new or empty directory"
        )
    try:
        store = RemoteStore(url)
        remote = Remote(store, root / "remotes" / name / "packs")
        if not remote.check_format(create=False):
            raise NotAVaultError(f"{url}: holds no vault (nothing was pushed there)")
    except VaultError as exc:
        raise type(exc)(f"cannot clone into {root}: {exc}") from None
    segments = remote.segments_after(0)
    entries = [e for seg in segments for e in seg]
    if not entries:
        raise NotAVaultError(f"{url}: holds an empty log")
    config = store.get(p.CONFIG_KEY)
    text = config.decode("utf-8", "replace") if config is not None else default_text()
    for sub in ("objects", "audit", "index", "refs", "embeddings/cache", f"remotes/{name}"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()
    (root / "lock").touch()
    vault = Vault(root, clock=clock)
    atomic_write(vault.config_path, add_text(without_remotes(text), name, url).encode())
    try:
        load_config(vault.config_path)
    except VaultError:
        atomic_write(vault.config_path, add_text(default_text(), name, url).encode())
    result = SyncResult(name, url)
    with vault.lock:  # (an interrupted clone's staged objects rechecked first: §14)
        remote.load_index()
        needed, optional = _objects_of(entries, reverted_in_effect(entries))
        missing = [d for d in dict.fromkeys(needed) if not vault.objects.has(d)]
        _fetch_staged(
            vault, remote, missing, optional, result, dirs=(root, root.parent), always=True
        )
        atomic_write(vault.audit.path, p.segment_bytes(entries))
        result.pulled = len(entries)
        vault.generations.rewrite([])
        vault.generations.current_path.unlink(missing_ok=True)
        t = time.perf_counter()
        build = build_all(vault, "build", None)
        result.seconds["build"] = round(time.perf_counter() - t, 3)
        result.generation = build.generation
        _write_head(vault, name, entries[-1])
        result.head = entries[-1].seq
    atomic_write(root / FORMAT_FILE, format_bytes())
    (root / MARKER).unlink()
    fsync_dir(root)
    return result
