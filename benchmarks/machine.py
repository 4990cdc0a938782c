"""What the benchmarks ran on and where they came from (shared by the generators of
benchmarks/*.md and EVALUATION.md)."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def command(script: str | None = None) -> str:
    """The command line that is running, as a user would type it from the repository root:
    ``python <script relative to the root> <args>``."""
    path = Path(script or sys.argv[0]).resolve()
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
    return shlex.join(["python", shown, *sys.argv[1:]])


#: what the benchmark and study commands write: their own changes do not make the tree dirty
GENERATED = (
    "EVALUATION.md",
    "evaluation/",
    "RELIABILITY.md",
    "SCALING.md",
    "benchmarks/RESULTS.md",
    "benchmarks/TOPK.md",
    "benchmarks/FIT.md",
)


def commit() -> str:
    """The commit the working tree is at, with a warning when tracked files differ from it
    ("unknown" outside a git checkout)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return ""
        return out.stdout

    head = git("rev-parse", "HEAD").strip()
    if not head:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    # the generated documents themselves (a command names the commit after writing them)
    names = [line[3:] for line in changed if not line[3:].startswith(GENERATED)]
    if not names:
        return head
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{head} with uncommitted changes to {shown}"


def provenance(cmd: str | None = None) -> str:
    """One Markdown line naming the commit and the exact command that produced a file."""
    return f"Produced by `{cmd or command()}` at commit `{commit()}`."


def compile_bytecode() -> None:
    """Compile vault's bytecode as an install leaves it, before timing fresh processes (pip
    compiles on install; with PYTHONDONTWRITEBYTECODE, as on some CI machines, every timed
    process would compile vault anew)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "vault"), str(ROOT / "vault_cli")],
        capture_output=True,
        check=True,
    )


# ``python -c`` preamble: at exit, the process's own peak resident memory (VmHWM, KB) is
# written to the file named by its first argument (which is removed from sys.argv).
# wait4's ru_maxrss cannot serve: a child carries into it the high-water mark of the
# process it was forked from (exec keeps it), so a child of a large benchmark process
# reports that process's peak.
OWN_PEAK = """import atexit, sys
_peak_file = sys.argv.pop(1)
def _own_peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(_peak_file, "w") as f:
        f.write(kb)
atexit.register(_own_peak)
"""


def own_peak_kb(path: Path) -> int | None:
    """The peak a process started with ``OWN_PEAK`` left in ``path`` (KB), if any."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def against_numpy(cmd: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Seconds of ``runs`` fresh runs of ``cmd`` and of ``python -c "import numpy"``,
    interleaved (the two are compared as a difference in the same run), after one untimed
    run of ``cmd`` (the page cache)."""
    import time

    numpy_only = [sys.executable, "-c", "import numpy"]
    subprocess.run(cmd, capture_output=True, check=True)
    t_cmd, t_np = [], []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        t_cmd.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(numpy_only, capture_output=True, check=True)
        t_np.append(time.perf_counter() - t)
    return t_cmd, t_np

