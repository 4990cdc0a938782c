"""An object-store location (``s3://``, ``gs://``, ``az://``, ``file://``) through obstore.

obstore (Python bindings of the Rust ``object_store`` crate, the one Delta Lake's and
LanceDB's Rust writers commit through) gives the one thing a log on object storage needs —
a native create-only put (``mode="create"``: ``If-None-Match: *`` on S3, a generation
precondition on GCS, ``If-None-Match`` on Azure, ``link(2)`` on a local file system) — with
concurrent requests from one thread (asyncio over a Rust runtime) and coalesced ranged
reads. fsspec exposes conditional writes per back end (s3fs only lately, not at all in the
generic API), so the commit protocol could not rely on it. Credentials and endpoints come
from obstore's usual environment (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``), never from vault
files. Imported only by the remote commands (the ``remote`` extra)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from vault.errors import UsageError, VaultError

SCHEMES = ("s3", "gs", "az", "file")
CONCURRENCY = 32  # requests in flight at once
T = TypeVar("T")


class RemoteError(VaultError):
    """The remote cannot be reached or answered with an error (exit 1)."""


def _obstore() -> Any:
    try:
        import obstore
    except ImportError:
        raise RemoteError(  # (a missing extra is a failure, exit 1, as the arc extra's)
            "remotes need the `remote` extra: pip install 'concept-vault[remote]'"
        ) from None
    return obstore


def check_url(url: str) -> str:
    """``url`` if it names an object-store location vault can use; a usage error otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES:
        raise UsageError(
            f"remote URL {url!r}: expected s3://BUCKET/PREFIX, gs://, az:// or file:///PATH"
        )
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise UsageError(f"remote URL {url!r}: a file URL is file:///ABSOLUTE/PATH")
    elif not parsed.netloc:
        raise UsageError(f"remote URL {url!r}: no bucket or container")
    if parsed.query or parsed.fragment or parsed.params:
        raise UsageError(
            f"remote URL {url!r}: no query or fragment (credentials come from the environment)"
        )
    if parsed.username or parsed.password:
        raise UsageError(f"remote URL {url!r}: credentials never go in a URL")
    return url


class RemoteStore:
    """The keys under one remote location; every call maps obstore's errors to
    ``RemoteError``."""

    def __init__(self, url: str, *, create: bool = False):
        self.url = check_url(url)
        obs = self.obs = _obstore()
        parsed = urlparse(url)
        try:
            if parsed.scheme == "file":
                path = Path(unquote(parsed.path))
                if create:
                    path.mkdir(parents=True, exist_ok=True)
                elif not path.is_dir():
                    raise RemoteError(f"{url}: no such directory")
                from obstore.store import LocalStore

                self.store = LocalStore(str(path))
            else:
                self.store = obs.store.from_url(url)
        except RemoteError:
            raise
        except (OSError, ValueError, obs.exceptions.BaseError) as exc:
            raise RemoteError(f"{url}: cannot open ({exc})") from None

    def _fail(self, key: str, exc: BaseException) -> RemoteError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RemoteError(f"{self.url}/{key}: {first}")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when it does not exist."""
        try:
            return bytes(self.obs.get(self.store, key).bytes())
        except FileNotFoundError:
            return None
        except self.obs.exceptions.NotFoundError:
            return None
        except Exception as exc:  # (obstore's errors, I/O)
            raise self._fail(key, exc) from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self.obs.put(self.store, key, data)
        except Exception as exc:
            raise self._fail(key, exc) from None

    def create(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist (the commit point): True when this call
        created it, False when it was there already."""
        try:
            self.obs.put(self.store, key, data, mode="create")
            return True
        except self.obs.exceptions.AlreadyExistsError:
            return False
        except FileExistsError:
            return False
        except Exception as exc:
            raise self._fail(key, exc) from None

    def keys(self, prefix: str, after: str | None = None) -> list[str]:
        """Keys under ``prefix`` (sorted), only those after ``after`` when given."""
        try:
            kwargs: dict[str, Any] = {"prefix": prefix}
            if after is not None:
                kwargs["offset"] = after
            keys = [m["path"] for batch in self.obs.list(self.store, **kwargs) for m in batch]
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._fail(prefix, exc) from None
        return sorted(k for k in keys if after is None or k > after)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several whole objects, ``CONCURRENCY`` requests in flight."""

        async def one(key: str) -> bytes | None:
            try:
                result = await self.obs.get_async(self.store, key)
                return bytes(await result.bytes_async())
            except (FileNotFoundError, self.obs.exceptions.NotFoundError):
                return None
            except Exception as exc:
                raise self._fail(key, exc) from None

        return run_bounded([functools.partial(one, k) for k in keys])

    def get_ranges(self, key: str, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        """Byte ranges ``[start, end)`` of one object; nearby ranges are fetched by one
        request (obstore coalesces them)."""
        try:
            out = self.obs.get_ranges(
                self.store, key, starts=[s for s, _ in spans], ends=[e for _, e in spans]
            )
        except Exception as exc:
            raise self._fail(key, exc) from None
        return [bytes(b) for b in out]

    def ranges_many(
        self, requests: Sequence[tuple[str, Sequence[tuple[int, int]]]]
    ) -> list[list[bytes]]:
        """``get_ranges`` of several objects at once."""

        async def one(key: str, spans: Sequence[tuple[int, int]]) -> list[bytes]:
            try:
                out = await self.obs.get_ranges_async(
                    self.store, key, starts=[s for s, _ in spans], ends=[e for _, e in spans]
                )
            except Exception as exc:
                raise self._fail(key, exc) from None
            return [bytes(b) for b in out]

        return run_bounded([functools.partial(one, k, s) for k, s in requests], 8)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        async def one(key: str, data: bytes) -> None:
            try:
                await self.obs.put_async(self.store, key, data)
            except Exception as exc:
                raise self._fail(key, exc) from None

        run_bounded([functools.partial(one, k, d) for k, d in items], 8)


def run_bounded(calls: Sequence[Callable[[], Awaitable[T]]], limit: int = CONCURRENCY) -> list[T]:
    """Await every call with at most ``limit`` in flight; results in order."""
    if not calls:
        return []

    async def main() -> list[T]:
        gate = asyncio.Semaphore(limit)

        async def guarded(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        return list(await asyncio.gather(*(guarded(c) for c in calls)))

    return asyncio.run(main())
