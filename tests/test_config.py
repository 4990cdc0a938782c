"""config.toml: written with documented defaults; bad values refused with the key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.config import Config, check, default_text, load
from vault.errors import ConfigError, UsageError
from vault.vault import Vault


def test_init_writes_the_documented_defaults(vault: Vault) -> None:
    text = vault.config_path.read_text()
    assert text == default_text()
    cfg = load(vault.config_path)
    assert cfg == Config()
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.delta) == (0.65, 0.20, 0.0, 0.0)
    assert (cfg.mode, cfg.shortlist_min, cfg.shortlist_max, cfg.similarity, cfg.strategy) == (
        "hybrid",
        10,
        200,
        "structured",
        "weighted",
    )


def test_mmr_lambda_of_older_files_is_accepted_and_has_no_effect(vault: Vault) -> None:
    vault.config_path.write_text("[retrieval]\nmmr_lambda = 0.7\ndelta = 0.1\n")
    assert vault.config() == Config(delta=0.1)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('mode = "fuzzy"', "mode"),
        ("k = 0", "k"),
        ('k = "ten"', "k"),
        ("alpha = 1.5", "alpha"),
        ("delta = -0.1", "delta"),
        ('similarity = "dot"', "similarity"),
        ('strategy = "random"', "strategy"),
        ("shortlist_min = 300", "shortlist_min"),
        ("colour = 3", "retrieval.colour"),
        ("beta = true", "beta"),
    ],
)
def test_bad_values_are_refused_with_the_key(vault: Vault, line: str, key: str) -> None:
    vault.config_path.write_text(f"[retrieval]\n{line}\n")
    with pytest.raises(ConfigError, match=key):
        vault.config()


def test_malformed_toml_and_unknown_table(vault: Vault) -> None:
    vault.config_path.write_text("[retrieval\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        vault.config()
    vault.config_path.write_text("[other]\nx = 1\n")
    with pytest.raises(ConfigError, match="other"):
        vault.config()


def test_flags_override_file_and_bad_flags_are_usage_errors(vault: Vault) -> None:
    vault.config_path.write_text('[retrieval]\nk = 3\nstrategy = "weighted"\n')
    cfg = vault.config()
    assert (cfg.k, cfg.strategy) == (3, "weighted")
    assert cfg.with_overrides(k=7, strategy=None).k == 7
    with pytest.raises(UsageError, match="invalid value for 'k'"):  # library words, no --
        cfg.with_overrides(k=0)


def test_integers_are_accepted_for_weights() -> None:
    assert check(Config(alpha=1, beta=0)) == Config(alpha=1, beta=0)


@pytest.mark.parametrize(
    ("line", "said"),
    [("beta = true", "got true"), ('mode = "fuzzy"', 'got "fuzzy"'), ("k = [1]", "got an array")],
)
def test_a_bad_value_is_named_in_tomls_words(vault: Vault, line: str, said: str) -> None:
    """`true`, `"fuzzy"` as the file writes them — not Python's `True`, `'fuzzy'`."""
    vault.config_path.write_text(f"[retrieval]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        vault.config()
    assert str(error.value).endswith(f", {said}"), error.value


KEEP = "invalid value for 'gc.keep': expected an integer 0..1000000 (0: never), got -1"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("# mine\n[retrieval]\nk = 3\n\n[gc]   # retention\nkeep = -1\n", f"6: {KEEP}"),
        ("[gc]\nkeep_days = 1\n  'keep' = -1\n", f"3: {KEEP}"),
        ("# top level\ngc.keep = -1\n", f"2: {KEEP}"),
        (
            "[retrieval]\nk = true\n",
            "2: invalid value for 'k': expected an integer 1..10000, got true",
        ),
        (
            "[retrieval]\nalpha = 2\n",
            "2: invalid value for 'alpha': expected a number in [0, 1], got 2",
        ),
        (
            "[retrieval]\nshortlist_min = 300\n",
            "2: invalid value for 'shortlist_min': expected <= shortlist_max (200), got 300",
        ),
        (
            "[embedder]\n\nrefresh_interval = 0\n",
            "3: invalid value for 'refresh_interval': expected an integer >= 1, got 0",
        ),
        (
            '[keys]\ninvariant = []\ntransform = [\n  "ok",\n  "Bad",\n]\n',
            "3: invalid value for 'keys.transform': expected a list of lower-case names (a-z, "
            "0-9, '_', at most 64, starting with a letter), got an array",
        ),
        ("[gc]\nkeep = 1\nkept = 2\n", "3: unknown key 'gc.kept' (known: keep, keep_days)"),
        # not found unambiguously: no line rather than a wrong one
        ("gc = { keep = -1 }\n", f" {KEEP}"),
        ('[gc]\nkeep = -1\n[retrieval]\nmode = """\n[gc]\nkeep = -1"""\n', f" {KEEP}"),
    ],
)
def test_a_bad_value_is_named_with_its_line(vault: Vault, text: str, said: str) -> None:
    """tomllib gives no positions for values: the key's line is found by a scan of the
    text (`key =` in its [table], or `table.key =` at the top level) and given when exactly
    one line holds it with the refused value; otherwise the message has no line."""
    vault.config_path.write_text(text)
    with pytest.raises(ConfigError) as error:
        vault.config()
    assert str(error.value) == f"{vault.config_path}:{said}"


def test_cli_names_a_bad_config_value_with_its_line(vault: Vault, tmp_path: Path) -> None:
    """A command reading config.toml: one error line `config.toml:LINE: ...`, exit 1."""
    from typer.testing import CliRunner

    from vault_cli.app import app

    text = vault.config_path.read_text().replace("\nkeep = 50 ", "\nkeep = -1 ")
    assert text != vault.config_path.read_text()
    vault.config_path.write_text(text)
    line = text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith("keep =")))
    grid = tmp_path / "g.json"
    grid.write_text("[[1, 2]]\n")
    result = CliRunner().invoke(app, ["--vault", str(vault.root), "retrieve", "--repr", str(grid)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {vault.config_path}:{line + 1}: {KEEP}\n"
