"""Shared machinery of the reliability suite: run counts, figures, forked and real CLI
children, vault copies and the whole-vault checks.

Run counts: every test reads its counts through ``runs(short, long)``; ``VAULT_STRESS=1``
(``make stress``) selects the long variants, otherwise CI runs the short ones.

Figures: ``figure(name, **values)`` appends one JSON line to the file named by
``VAULT_RELIABILITY_FIGURES`` (set by ``tests/reliability/report.py``); without it, nothing
is written. ``RELIABILITY.md`` is rendered from those lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.index.snapshot import clear_cache
from vault.vault import Vault

from .inject import Injector

STRESS = os.environ.get("VAULT_STRESS", "") not in ("", "0")
EPOCH = 0  # SOURCE_DATE_EPOCH of every CLI child: the clock of fixed_clock(0)
CLI_ENV = {"SOURCE_DATE_EPOCH": str(EPOCH), "NO_COLOR": "1", "COLUMNS": "200"}


def runs(short: int, long: int) -> int:
    """The run count of a test: ``long`` under ``make stress``, ``short`` in CI."""
    return long if STRESS else short


def figure(name: str, **values: Any) -> None:
    """Record a measured figure for ``RELIABILITY.md`` (no-op unless the report asks)."""
    target = os.environ.get("VAULT_RELIABILITY_FIGURES")
    if not target:
        return
    line = json.dumps({"figure": name, "stress": STRESS, **values}, sort_keys=True, default=str)
    with open(target, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# --------------------------------------------------------------------------- vault files
def copy_vault(src: Path, dst: Path, *, link_objects: bool = True) -> Path:
    """A copy of a vault at ``dst``: directories, modes and hard links between the view
    and the objects as in ``src``. With ``link_objects`` the write-once objects (and the
    view files, their links) are hard links to ``src``'s — vault never writes an object in
    place, so this is safe for tests that do not themselves modify objects; everything else
    (logs, refs, the cache) is copied."""
    if dst.exists() or dst.is_symlink():
        shutil.rmtree(dst)
    inodes: dict[tuple[int, int], Path] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        rel = here.relative_to(src)
        target = dst / rel
        target.mkdir()
        shutil.copystat(here, target)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            s = here / name
            d = target / name
            st = s.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
                continue
            key = (st.st_dev, st.st_ino)
            if key in inodes:
                os.link(inodes[key], d)
            elif (
                link_objects
                and rel.parts[:1] in (("objects",), ("embeddings",))
                and (rel.parts[:2] != ("embeddings", "cache"))
            ):
                try:
                    os.link(s, d)
                except OSError:  # another file system: copy
                    shutil.copy2(s, d)
                inodes[key] = d
            else:
                shutil.copy2(s, d)
                inodes[key] = d
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return dst


def fingerprint(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every entry under ``root`` by (mode, size, mtime, inode): a cheap "did anything change"
    (a write changes the size or the mtime; a replace changes the inode)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def temporaries(root: Path) -> list[str]:
    """Every leftover of an interrupted writer: names starting with '.' under the root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


STATE_FILES = (
    "format.json",
    "config.toml",
    "audit/commits.jsonl",
    "index/CURRENT",
    "index/generations.jsonl",
    "refs/mode.json",
    "embeddings/embedder.json",
    "embeddings/concept_vectors.jsonl",
    "embeddings/ann.index.sha256",
)


def state_files(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for name in STATE_FILES:
        try:
            out[name] = (root / name).read_bytes()
        except FileNotFoundError:
            out[name] = None
    return out


def concepts_of(root: Path) -> dict[str, Any]:
    """ref -> state entry of the current generation (read fresh from disk)."""
    clear_cache()
    return dict(Vault.open(root).snapshot().state.concepts())


def verify_report(root: Path) -> tuple[bool, dict[str, Any], bool]:
    """(ok, report json, tree unchanged) of a library verify on a fresh handle."""
    clear_cache()
    before = fingerprint(root)
    report = Vault.open(root).verify()
    return report.ok, report.to_json(), fingerprint(root) == before


def errors_of(report: dict[str, Any]) -> list[str]:
    return [f"{p['kind']}:{p['path']}" for p in report["problems"] if p["severity"] == "error"]


def unchanged_but_objects(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Paths that differ between two ``tree()`` results, except *added* complete objects
    and cache entries (unreferenced objects and cache entries are harmless, FORMAT §12)."""
    from vault.canonical import sha256_hex

    bad = []
    for rel in sorted(set(before) | set(after)):
        if before.get(rel) == after.get(rel):
            continue
        if rel not in before and rel in after:
            kind, _, data = after[rel]
            parts = rel.split("/")
            complete = kind == "dir" or (
                len(parts) == 3 and sha256_hex(data) == parts[1] + parts[2]
            )
            if parts[0] == "objects" and len(parts) <= 3 and parts[-1][:1] != "." and complete:
                continue
            if parts[:2] == ["embeddings", "cache"] and not parts[-1].startswith("."):
                continue
        bad.append(rel)
    return bad


# --------------------------------------------------------------------------- children
INTERNAL_ERROR = "error: internal error:"


def crashed_in(stdout: str, stderr: str) -> bool:
    """Whether a command crashed: a traceback, or ``error: internal error: …`` (the CLI's
    one line for an exception nobody planned: exit 1 like a clean refusal, but a bug). The
    crash log of ``tests/conftest.py`` fails the test too; this names the case."""
    return "Traceback" in stderr or "Traceback" in stdout or INTERNAL_ERROR in stderr


@dataclass
class Child:
    code: int  # exit status, or -signal
    stdout: str
    stderr: str
    elapsed: float
    trace: list[tuple[str, str]] = field(default_factory=list)
    fired: tuple[str, str] | None = None
    cpu: float = 0.0  # user + system seconds of the child (independent of the machine's load)

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def crashed(self) -> bool:
        """A traceback, or an unexpected exception reported as one line (``crashed_in``)."""
        return crashed_in(self.stdout, self.stderr)

    @property
    def one_line_error(self) -> bool:
        err = self.stderr
        return err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1


def _child_stdio(out: int, err: int) -> None:
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8")


def fork_call(
    fn: Callable[[], int],
    injector: Injector | None = None,
    *,
    timeout: float = 120.0,
    kill_after: float | None = None,
    memory: int | None = None,
) -> Child:
    """Run ``fn`` in a forked child (with ``injector`` installed) and return its exit code,
    output and injector trace. ``kill_after`` SIGKILLs it after that many seconds;
    ``memory`` caps the child's address space at that many bytes above its size at the fork
    (RLIMIT_AS); past ``timeout`` it is killed and ``TimeoutError`` raised."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as tr,
    ):  # noqa: E501
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                _child_stdio(out.fileno(), err.fileno())
                if memory is not None:
                    _limit_memory(memory)
                if injector is not None:
                    injector.install()
                code = fn()
                if injector is not None:
                    injector.uninstall()
                    os.write(tr.fileno(), json.dumps([injector.trace, injector.fired]).encode())
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:  # noqa: BLE001 - a traceback, as python would print it
                with contextlib.suppress(BaseException):
                    if injector is not None:
                        injector.uninstall()
                    traceback.print_exc()
                code = 1
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        status, cpu = _wait(pid, timeout, kill_after)
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        tr.seek(0)
        raw = tr.read()
        trace, fired = json.loads(raw) if raw else ([], None)
        code = os.waitstatus_to_exitcode(status)
        return Child(
            code,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            elapsed,
            [tuple(t) for t in trace],  # type: ignore[misc]
            tuple(fired) if fired else None,  # type: ignore[arg-type]
            cpu,
        )


def _limit_memory(extra: int) -> None:
    import resource

    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def _wait(pid: int, timeout: float, kill_after: float | None) -> tuple[int, float]:
    """(wait status, CPU seconds the child used)."""
    deadline = time.monotonic() + timeout
    kill_at = None if kill_after is None else time.monotonic() + kill_after
    delay = 0.0005
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage.ru_utime + usage.ru_stime
        now = time.monotonic()
        if kill_at is not None and now >= kill_at:
            os.kill(pid, 9)
            _, status, usage = os.wait4(pid, 0)
            return status, usage.ru_utime + usage.ru_stime
        if now > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"child {pid} did not finish in {timeout}s")
        wait = delay if kill_at is None else min(delay, max(0.0, kill_at - now))
        time.sleep(wait)
        delay = min(delay * 2, 0.002)


_command: Any = None


def cli_command() -> Any:
    """The CLI's click command, built once (typer rebuilds it on every call, ~90 ms: a
    forked child reuses the parent's)."""
    global _command
    if _command is None:
        import typer.main

        from vault_cli.app import app

        _command = typer.main.get_command(app)
    return _command


def cli_main(root: Path, args: list[str], env: dict[str, str] | None = None) -> int:
    """The CLI, in this (child) process: ``vault --vault root args`` — what
    ``vault_cli.app.main`` does, with the command tree built once."""
    os.environ.update({**CLI_ENV, **(env or {})})
    argv = ["--vault", str(root), *[str(a) for a in args]]
    sys.argv = ["vault", *argv]
    try:
        cli_command().main(args=argv, prog_name="vault")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    return 0


def fork_cli(
    root: Path,
    args: list[str],
    injector: Injector | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    kill_after: float | None = None,
    memory: int | None = None,
    stdin: Path | None = None,
) -> Child:
    def run() -> int:
        if stdin is not None:
            fd = os.open(stdin, os.O_RDONLY)
            os.dup2(fd, 0)
            sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        return cli_main(root, args, env)

    return fork_call(run, injector, timeout=timeout, kill_after=kill_after, memory=memory)


@dataclass
class Proc:
    code: int
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool = False

    @property
    def crashed(self) -> bool:
        """A traceback, or an unexpected exception reported as one line (``crashed_in``)."""
        return crashed_in(self.stdout, self.stderr)

    @property
    def one_line_error(self) -> bool:
        err = self.stderr
        return err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1


def cli_proc(
    root: Path | None,
    args: list[str],
    *,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    memory_limit: int | None = None,
    cwd: Path | None = None,
) -> Proc:
    """A real ``python -m vault_cli`` subprocess (``memory_limit``: RLIMIT_AS bytes)."""
    cmd = [sys.executable, "-m", "vault_cli"]
    if root is not None:
        cmd += ["--vault", str(root)]
    cmd += [str(a) for a in args]

    def limit() -> None:
        if memory_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **CLI_ENV, **(env or {})},
            preexec_fn=limit if memory_limit else None,
            cwd=cwd or tempfile.gettempdir(),
        )
    except subprocess.TimeoutExpired as exc:
        return Proc(
            -9,
            (exc.stdout or b"").decode("utf-8", "replace"),
            (exc.stderr or b"").decode("utf-8", "replace"),
            time.monotonic() - start,
            True,
        )
    return Proc(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        time.monotonic() - start,
    )


_startup: float | None = None


def cli_startup() -> float:
    """Wall time of a trivial CLI subprocess (interpreter start + imports), measured once."""
    global _startup
    if _startup is None:
        samples = [cli_proc(None, ["--help"]).elapsed for _ in range(3)]
        _startup = min(samples)
    return _startup


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def writable(path: Path) -> None:
    """Objects are created 0444: make one writable before a test modifies it (portable to
    non-root runs)."""
    path.chmod(0o644)


def warm_cli(root: Path) -> None:
    """Run a few CLI commands in this process so that forked children start with typer's
    lazily imported modules loaded (a child then costs milliseconds, not 150 ms)."""
    from typer.testing import CliRunner

    from vault_cli.app import app

    cli_command()
    runner = CliRunner()
    for args in (
        ["index", "status", "--json"],
        ["log", "-n", "1", "--json"],
        ["rollback", "--list", "--json"],
        ["add", "/nonexistent/x.json", "--json"],
        ["gc", "--keep", "1", "--dry-run", "--json"],
    ):
        runner.invoke(app, ["--vault", str(root), *args], env=CLI_ENV)


@dataclass
class InProc:
    """The result of a CLI command run in this process (``run_inproc``)."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_inproc(root: Path, args: list[str], env: dict[str, str] | None = None) -> InProc:
    """``vault --vault root args`` in this process, stdio captured; an exception that
    escapes the CLI is returned (it would be a traceback)."""
    saved_env = {k: os.environ.get(k) for k in {**CLI_ENV, **(env or {})}}
    saved = sys.stdout, sys.stderr, sys.argv
    out, err = io.StringIO(), io.StringIO()
    os.environ.update({**CLI_ENV, **(env or {})})
    sys.stdout, sys.stderr = out, err
    argv = ["--vault", str(root), *[str(a) for a in args]]
    sys.argv = ["vault", *argv]
    code, exc = 0, None
    try:
        cli_command().main(args=argv, prog_name="vault")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException as e:  # noqa: BLE001 - the CLI let it escape: a traceback
        code, exc = 1, e
    finally:
        sys.stdout, sys.stderr, sys.argv = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return InProc(code, out.getvalue(), err.getvalue(), exc)
