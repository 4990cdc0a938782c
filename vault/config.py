"""Configuration: value objects resolved once at the edge (flag > file > default).

``config.toml`` in the vault root is written by ``vault init`` with every default spelled
out: ``[retrieval]`` (``Config``), ``[embedder]`` (``EmbedderConfig``: when `vault
embedder status` suggests a re-fit) and ``[gc]`` (``Retention``: what write-backs keep);
unknown keys and invalid values are refused with the key's name, and its line of the file
when a scan of the text finds it unambiguously (``key_line``: tomllib gives no positions)."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from vault.errors import ConfigError, UsageError, json_value

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

MODES = ("symbolic", "hybrid", "soft")
STRATEGIES = ("tiebreak", "weighted")
SIMILARITIES = ("cosine", "euclidean", "structured")

DEFAULT_MODE = "hybrid"
DEFAULT_K = 10
DEFAULT_SHORTLIST_MIN = 10
DEFAULT_SHORTLIST_MAX = 200


# Chosen on the generalisation protocols, training side only (benchmarks/features_study.py,
# EVALUATION.md): with the shipped embedder, hybrid `weighted` with the `structured`
# similarity and no class-match term (gamma 0) has the best cross-task figure of the
# settings whose mean over the d4, colour, self, learning, fresh and cross-task sets is
# within the noise of the best (cosine: a little higher on a task's own concept, lower
# across tasks); the diversity term (delta) cost precision and time.
DEPRECATED_KEYS = {"mmr_lambda": "the weighted strategy's diversity weight is delta"}


DEFAULT_DRIFT_THRESHOLD = 0.2
DEFAULT_REFRESH_INTERVAL = 500


@dataclass(frozen=True)
class EmbedderConfig:
    """When ``vault embedder status`` suggests fitting again (it never re-fits by itself):
    when at least ``drift_threshold`` of the positive evidence is newer than the fit, or
    at least ``refresh_interval`` positive evidence records are."""

    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    refresh_interval: int = DEFAULT_REFRESH_INTERVAL


@dataclass(frozen=True)
class Retention:
    """``[gc]``: what every write-back keeps (``vault gc`` with these settings runs after a
    write-back once ``keep // 2`` (at least 1) generations are past them). A generation is
    past them when it is not among the ``keep`` newest and is older than ``keep_days`` days.
    ``keep = 0`` (the value when the table is absent, as in vaults made before it): never."""

    keep: int = 0
    keep_days: float = 0.0

    @property
    def slack(self) -> int:
        return max(1, self.keep // 2)


DEFAULT_RETENTION_KEEP = 50  # written by `vault init`


@dataclass(frozen=True)
class Config:
    mode: str = DEFAULT_MODE
    k: int = DEFAULT_K
    shortlist_min: int = DEFAULT_SHORTLIST_MIN
    shortlist_max: int = DEFAULT_SHORTLIST_MAX
    similarity: str = "structured"
    strategy: str = "weighted"
    alpha: float = 0.65
    beta: float = 0.20
    gamma: float = 0.0
    delta: float = 0.0

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with the non-None overrides applied and checked."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return check(replace(self, **given), "option")
        except ConfigError as exc:  # a bad argument is a usage error (exit 2)
            raise UsageError(str(exc).removeprefix("option: ")) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fail(
    key: str, expected: str, value: Any, where: str | Path, table: str = "retrieval"
) -> ConfigError:
    """``<where>: invalid value for '<key>': expected ..., got ...``; ``where`` a file is
    named with the key's line (``config.toml:12``) when it is found (``key_line``)."""
    return ConfigError(
        f"{_place(where, table, key, value)}: invalid value for '{key}': expected {expected}, "
        f"got {json_value(value)}"
    )


def _place(where: str | Path, table: str, key: str, value: Any) -> str:
    """``where``, and when it is a file and ``key`` (its last part: ``gc.keep`` is ``keep``)
    of ``[table]`` is found in it holding ``value``, ``:LINE``."""
    if not isinstance(where, Path):
        return where
    try:
        text = where.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return str(where)
    line = key_line(text, table, key.rpartition(".")[2], value)
    return str(where) if line is None else f"{where}:{line}"


def _unknown(path: Path, table: str, key: str, value: Any, names: set[str]) -> ConfigError:
    return ConfigError(
        f"{_place(path, table, key, value)}: unknown key '{table}.{key}' "
        f"(known: {', '.join(sorted(names))})"
    )


_HEADER = re.compile(
    r"[ \t]*\[[ \t]*([A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)*)[ \t]*\]"
    r"[ \t]*(?:#.*)?"
)


def key_line(text: str, table: str, key: str, value: Any) -> int | None:
    """The line (from 1) of ``key = value`` in ``[table]`` of the TOML ``text`` — also the
    top-level dotted form ``table.key = value`` — found by a scan of the text (``tomllib``
    gives no positions for values). Exact or nothing: None unless exactly one line names
    the key there and what it sets, parsed on its own (with the lines after it a
    multi-line array needs), is ``value``. A text with a multi-line string (which could
    hold anything that looks like a key) is not scanned."""
    if '"""' in text or "'''" in text:
        return None
    bare = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    in_table = re.compile(rf"[ \t]*{bare}[ \t]*=")
    dotted = re.compile(rf"[ \t]*{re.escape(table)}[ \t]*\.[ \t]*{bare}[ \t]*=")
    lines = text.splitlines()
    current: str | None = ""  # the table of the lines so far ("": the top level)
    found: list[tuple[int, bool]] = []  # (index, dotted form)
    for i, line in enumerate(lines):
        header = _HEADER.fullmatch(line)
        if header is not None:
            current = re.sub(r"[ \t]", "", header[1])
        elif line.lstrip().startswith("["):  # an array of tables, a quoted name: unknown
            current = None
        elif current == table and in_table.match(line):
            found.append((i, False))
        elif current == "" and dotted.match(line):
            found.append((i, True))
    if len(found) != 1:
        return None
    start, is_dotted = found[0]
    for end in range(start + 1, len(lines) + 1):
        try:
            parsed: Any = tomllib.loads("\n".join(lines[start:end]))
        except tomllib.TOMLDecodeError:
            continue
        got = parsed.get(table, {}) if is_dotted else parsed
        if not isinstance(got, dict) or key not in got:
            return None
        same = got[key] == value and isinstance(got[key], bool) == isinstance(value, bool)
        return start + 1 if same else None
    return None


def check(cfg: Config, where: str | Path = "config") -> Config:
    """Raise ``ConfigError`` naming the key if any value is out of range."""
    if cfg.mode not in MODES:
        raise _fail("mode", " | ".join(MODES), cfg.mode, where)
    if cfg.strategy not in STRATEGIES:
        raise _fail("strategy", " | ".join(STRATEGIES), cfg.strategy, where)
    if cfg.similarity not in SIMILARITIES:
        raise _fail("similarity", " | ".join(SIMILARITIES), cfg.similarity, where)
    for key, low, high in (
        ("k", 1, 10_000),
        ("shortlist_min", 1, 100_000),
        ("shortlist_max", 1, 100_000),
    ):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(key, f"an integer {low}..{high}", value, where)
    if cfg.shortlist_min > cfg.shortlist_max:
        raise _fail(
            "shortlist_min", f"<= shortlist_max ({cfg.shortlist_max})", cfg.shortlist_min, where
        )
    for key in ("alpha", "beta", "gamma", "delta"):
        value = getattr(cfg, key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0.0 <= value <= 1.0
        ):
            raise _fail(key, "a number in [0, 1]", value, where)
    return cfg


def _read(path: Path) -> dict[str, Any]:
    """The tables of ``config.toml`` (none for a missing file), both checked."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown_tables = set(data) - {"retrieval", "embedder", "gc", "keys", "remote"}
    if unknown_tables:
        raise ConfigError(
            f"{path}: unknown table or key '{sorted(unknown_tables)[0]}' "
            "(expected [retrieval], [embedder], [gc], [keys] and [remote.NAME])"
        )  # ([remote.NAME] tables: `vault remote add`, read by vault.remote.config)
    _embedder_config(data, path)
    _retention(data, path)
    _declared(data, path)
    return data


DECLARABLE = ("transform", "invariant")


def _declared(data: dict[str, Any], path: Path) -> dict[str, frozenset[str]]:
    table = data.get("keys", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'keys' must be a table ([keys])")
    out: dict[str, frozenset[str]] = {}
    for family, names in table.items():
        if family not in DECLARABLE:
            raise ConfigError(
                f"{_place(path, 'keys', family, names)}: unknown key 'keys.{family}' "
                "(a vault declares names of the closed "
                f"families: {', '.join(DECLARABLE)}; domain: and feature: names are open)"
            )
        if not isinstance(names, list) or not all(
            isinstance(n, str) and _NAME.fullmatch(n) for n in names
        ):
            raise _fail(
                f"keys.{family}",
                "a list of lower-case names (a-z, 0-9, '_', at most 64, starting with a letter)",
                names,
                path,
                "keys",
            )
        out[family] = frozenset(names)
    return out


def load_declared(path: Path) -> dict[str, frozenset[str]]:
    """The ``[keys]`` table of ``config.toml``: names a solver adds per closed family."""
    return _declared(_read(path), path)


def _retention(data: dict[str, Any], path: Path) -> Retention:
    table = data.get("gc", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'gc' must be a table ([gc])")
    names = {f.name for f in fields(Retention)}
    for key in table:
        if key not in names:
            raise _unknown(path, "gc", key, table[key], names)
    keep = table.get("keep", 0)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= 1_000_000:
        raise _fail("gc.keep", "an integer 0..1000000 (0: never)", keep, path, "gc")
    days = table.get("keep_days", 0.0)
    if (
        isinstance(days, bool)
        or not isinstance(days, int | float)
        or not math.isfinite(days)
        or not 0.0 <= days <= 36_500
    ):
        raise _fail("gc.keep_days", "a number of days in [0, 36500]", days, path, "gc")
    return Retention(keep, float(days))


def load_retention(path: Path) -> Retention:
    """The ``[gc]`` table of ``config.toml`` (never collect when absent)."""
    return _retention(_read(path), path)


def _embedder_config(data: dict[str, Any], path: Path) -> EmbedderConfig:
    table = data.get("embedder", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'embedder' must be a table ([embedder])")
    names = {f.name for f in fields(EmbedderConfig)}
    for key in table:
        if key not in names:
            raise _unknown(path, "embedder", key, table[key], names)
    threshold = table.get("drift_threshold", DEFAULT_DRIFT_THRESHOLD)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 < threshold <= 1.0
    ):
        raise _fail("drift_threshold", "a number in (0, 1]", threshold, path, "embedder")
    interval = table.get("refresh_interval", DEFAULT_REFRESH_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int) or not interval >= 1:
        raise _fail("refresh_interval", "an integer >= 1", interval, path, "embedder")
    return EmbedderConfig(float(threshold), interval)


def load_embedder(path: Path) -> EmbedderConfig:
    """The ``[embedder]`` table of ``config.toml`` (defaults when absent)."""
    return _embedder_config(_read(path), path)


def load(path: Path) -> Config:
    """Read ``config.toml``'s ``[retrieval]``; a missing file means the defaults."""
    data = _read(path)
    table = dict(data.get("retrieval", {}))
    names = {f.name for f in fields(Config)}
    for key in DEPRECATED_KEYS:
        table.pop(key, None)  # written by older versions; accepted, no effect
    for key in table:
        if key not in names:
            raise _unknown(path, "retrieval", key, table[key], names)
    cfg = check(replace(Config(), **table), path)  # (a value refused as the file has it)
    return replace(
        cfg,
        alpha=float(cfg.alpha),
        beta=float(cfg.beta),
        gamma=float(cfg.gamma),
        delta=float(cfg.delta),
    )


def default_text() -> str:
    d, e = Config(), EmbedderConfig()
    return f"""\
# vault configuration. Command-line flags override these values.
[retrieval]
mode = "{d.mode}"            # symbolic | hybrid | soft
k = {d.k}                       # results returned
shortlist_min = {d.shortlist_min}           # hybrid: top up from embedding neighbours below this
shortlist_max = {d.shortlist_max}          # hybrid: symbolic shortlist cut
similarity = "{d.similarity}"  # structured | cosine | euclidean (exact integer arithmetic)
strategy = "{d.strategy}"      # weighted | tiebreak
alpha = {d.alpha}                # weighted: similarity
beta = {d.beta}                  # weighted: utility from evidence (1 - penalty)
gamma = {d.gamma}                 # weighted: class match (share of the query's keys held)
delta = {d.delta}                 # weighted: diversity (MMR: similarity to those chosen)

[embedder]                      # `vault embedder status` suggests a re-fit (never silently)
drift_threshold = {e.drift_threshold}           # when this share of positive evidence is newer
refresh_interval = {e.refresh_interval}        # or this many positive evidence records are

[gc]                            # write-backs collect old generations (audited as gc)
keep = {DEFAULT_RETENTION_KEEP}                       # the newest generations kept (0: never)
keep_days = 0                   # ... and those younger than this many days

[keys]                          # your own names for the closed key families, e.g.
transform = []                  # ["shift_rows"]: cards may then carry transform:shift_rows
invariant = []                  # ["row_sums_preserved"]: proof obligations / query constraints
"""
