"""What every worker process of vault shares: it must not outlive the process that made it.

A parent killed outright (a CI job's timeout sends SIGTERM or SIGKILL) cannot tell its pool
to stop, and a pool worker waiting for its next task would wait for ever. ``exit_with_parent``
is the initializer of every pool (batch retrieval, a full build's preload and prefetch, verify's
hashing): a daemon thread in the worker checks twice a second that its parent
is still the one that started it, and ends the worker when it is not.
"""

from __future__ import annotations

import os
import threading
import time

CHECK_SECONDS = 0.5


def exit_with_parent(parent: int) -> None:
    """Initializer of a worker process started by ``parent`` (its pid)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(CHECK_SECONDS)
        os._exit(1)  # orphaned: nothing of ours to clean up, results go nowhere

    threading.Thread(target=watch, name="vault-exit-with-parent", daemon=True).start()
