"""Database URLs with passwords never come from argv (every local user reads argv through ps
and /proc): one resolver (sscard.sqlschema.resolve_db_url) behind every command line's
``--db-url``-style option takes them from a 0600 file or the environment instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard.cli import cli
from sscard.sqlschema import DatabaseUrlError, resolve_db_url

SECRET = "s3cr3t-pw"
PG = f"postgresql+psycopg://kmc:{SECRET}@127.0.0.1:1/kmc"


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], env=env)


# every option that takes a database URL, with a command line that reaches it
COMMANDS = [
    ("kmc", "--db-url", PG, "unseal"),
    ("kmc", "serve", "--audit-url", PG),
    ("ra", "--db-url", PG, "add-officer", "x", "--role", "officer"),
    ("ra", "serve", "--kmc-db-url", PG, "--kmc-ra-key-file", "k"),
    ("ca", "serve", "--database-url", PG),
    ("ca", "serve", "--audit-db", PG),
    ("audit", "show", "--db", PG),
    ("audit", "verify", "--db", PG),
    ("admin", "backup", "--out", "b", "--passphrase-file", "p", "--database-url", PG),
    ("admin", "restore", "b", "--passphrase-file", "p", "--database", f"ca={PG}"),
    # the one spelling (docs/cli.md); the older ones above are its hidden aliases
    ("kmc", "serve", "--audit-db-url", PG),
    ("ca", "serve", "--db-url", PG),
    ("ca", "--db-url", PG, "list"),
    ("ca", "serve", "--audit-db-url", PG),
    ("audit", "show", "--db-url", PG),
    ("audit", "verify", "--db-url", PG),
    ("admin", "backup", "--out", "b", "--passphrase-file", "p", "--db-url", PG),
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2] + a[-2:-1]))
def test_a_password_on_the_command_line_is_refused(tmp_path: Path, argv: tuple[str, ...]) -> None:
    result = run(tmp_path / "home", *argv)
    assert result.exit_code == 2, result.output
    assert "carries a password" in result.output and "-file" in result.output
    assert SECRET not in result.output  # the refusal does not repeat it
    assert not (tmp_path / "home").exists()  # refused before anything was touched


def test_a_url_file_must_be_private_and_is_then_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url_file = tmp_path / "kmc.url"
    url_file.write_text(f"sqlite:///{tmp_path / 'elsewhere.db'}\n")
    url_file.chmod(0o644)
    result = run(home, "kmc", "--db-url-file", str(url_file), "cardkeys", "list")
    assert result.exit_code == 2 and "may be read by others (mode 0644)" in result.output
    url_file.chmod(0o600)
    result = run(home, "kmc", "--db-url-file", str(url_file), "cardkeys", "list")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere.db").exists() and not (home / "kmc.db").exists()


def test_resolver_order_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSCARD_TEST_DB_URL", PG)
    assert resolve_db_url(None, None, "SSCARD_TEST_DB_URL") == PG  # the environment may
    no_password = "postgresql+psycopg://kmc@db.example/kmc"
    assert resolve_db_url(no_password, None, "SSCARD_TEST_DB_URL") == no_password
    private = tmp_path / "url"
    private.write_text(PG + "\n")
    private.chmod(0o600)
    assert resolve_db_url(None, private, "SSCARD_TEST_DB_URL") == PG
    monkeypatch.delenv("SSCARD_TEST_DB_URL")
    assert resolve_db_url(None, None, "SSCARD_TEST_DB_URL") is None
    for url, url_file, why in [
        (PG, None, "carries a password"),
        (no_password, private, "not both"),
        ("not a url", None, "not a database URL"),
        (None, tmp_path / "missing", "No such file"),
    ]:
        with pytest.raises(DatabaseUrlError, match=why):
            resolve_db_url(url, url_file, "SSCARD_TEST_DB_URL")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(DatabaseUrlError, match="is empty"):
        resolve_db_url(None, empty, "SSCARD_TEST_DB_URL")


def test_old_spellings_are_hidden_and_named_deprecated(tmp_path: Path) -> None:
    for group, command, old, new in [("ca", "serve", "--database-url", "--db-url"),
                                     ("ca", "serve", "--audit-db", "--audit-db-url"),
                                     ("kmc", "serve", "--audit-url", "--audit-db-url"),
                                     ("audit", "verify", "--db", "--db-url"),
                                     ("admin", "backup", "--database-url", "--db-url")]:
        shown = run(tmp_path, group, command, "--help").output
        assert f"{new} " in shown and f"{old} " not in shown, (group, command, shown)
    audit = tmp_path / "audit.sqlite"
    result = run(tmp_path, "audit", "verify", "--db", f"sqlite:///{audit}")
    assert "--db is deprecated; use --db-url" in result.output
    both = run(tmp_path, "audit", "verify", "--db", f"sqlite:///{audit}",
               "--db-url", f"sqlite:///{audit}")
    assert both.exit_code == 2 and "not both" in both.output
