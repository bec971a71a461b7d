"""Start-up of the ``sscard`` command (issue 16 item 5): ``sscard --help`` imports none of the
packages' command modules or the heavy libraries they use, and the table that lets it list them
without importing them says the same as the entry points and the commands themselves."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest

from sscard.cli import COMMANDS, LazyGroup, cli

ROOT = Path(__file__).resolve().parents[2]

#: what a bare ``sscard --help`` must not import (each costs tens of milliseconds or more)
HEAVY = ("cryptography", "asn1crypto", "sqlalchemy", "flask", "werkzeug", "pyhanko",
         "pyhanko_certvalidator", "requests", "urllib3", "cffi", "smartcard", "pkcs11",
         "sscard.crypto", "sscard.audit", "sscard.x509", "sscard.cms", "sscard.gateway",
         "sscard.validation", "sscard.backup", "sscard.keys", "sscard.idp", "sscard.card", "ca",
         "ra", "keymgmt", "reader_tools")


def imported_modules(*args: str | Path, exit_code: int = 0) -> set[str]:
    """The modules ``python -X importtime -m sscard.cli ARGS`` imports."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sscard.cli",
                           *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == exit_code, proc.stderr
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "click" in names and "sscard" in names  # the trace is there to be read
    return names


def is_heavy(module: str, allowed: tuple[str, ...] = ()) -> bool:
    return module not in allowed and any(module == h or module.startswith(h + ".")
                                         for h in HEAVY)


def test_top_level_help_imports_no_heavy_module() -> None:
    heavy = sorted(m for m in imported_modules("--help") if is_heavy(m))
    assert heavy == []


#: the light modules a group's own module may use for its options (names, choices)
KEY_OPTIONS = ("sscard.keys", "sscard.keys.cli", "sscard.crypto", "sscard.crypto.oids",
               "sscard.crypto.errors", "sscard.crypto.algorithms")


@pytest.mark.parametrize(("group", "own"), [
    ("ca", ("ca", "ca.cli", "ca.errors")),
    ("card", ("reader_tools", "reader_tools.cli")),
    ("kmc", ("keymgmt", "keymgmt.cli", "keymgmt.errors")),
    ("ra", ("ra", "ra.cli")),
    ("key", KEY_OPTIONS),
    ("csr", ("sscard.x509", "sscard.x509.cli", *KEY_OPTIONS)),
    ("x509", ("sscard.x509", "sscard.x509.cli", *KEY_OPTIONS)),
    ("gateway", ("sscard.gateway", "sscard.gateway.cli", *KEY_OPTIONS)),
    ("sign", ("sscard.gateway", "sscard.gateway.cli", *KEY_OPTIONS)),
    ("verify", ("sscard.gateway", "sscard.gateway.cli", *KEY_OPTIONS)),
    ("encrypt", ("sscard.gateway", "sscard.gateway.cli", *KEY_OPTIONS)),
    ("audit", ("sscard.audit", "sscard.audit.cli", "sscard.audit.actions", "sscard.audit.errors",
               "sscard.crypto", "sscard.crypto.errors", "sscard.x509", "sscard.x509.errors")),
    ("admin", ("sscard.backup", "sscard.backup.cli", "sscard.backup.errors")),
    # a command, not a group: its options and prompts, and what an origin is for its allow-list
    # (not the agent's Flask server, the card stack, nor the provider's token validator)
    ("agent", ("reader_tools", "reader_tools.agent", "sscard.idp", "sscard.idp.tokenformat")),
])
def test_group_help_imports_only_the_groups_own_module(group: str, own: tuple[str, ...]) -> None:
    """``sscard GROUP --help``: the group's own module, not its services or libraries."""
    heavy = sorted(m for m in imported_modules(group, "--help") if is_heavy(m, own))
    assert heavy == []


def test_top_level_help_lists_every_command_with_its_short_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "sscard.cli", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout
    assert "Certificate authority: hierarchy" in proc.stdout


def test_the_table_is_the_entry_points() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group="sscard.commands")}
    assert declared == {name: target for name, (target, _) in COMMANDS.items()}


def lazy_groups(group: click.Group, path: str = "sscard") -> list[tuple[str, LazyGroup]]:
    """Every lazy group in the command tree, with its command path."""
    found: list[tuple[str, LazyGroup]] = []
    if isinstance(group, LazyGroup):
        found.append((path, group))
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if isinstance(sub, click.Group):
            found.extend(lazy_groups(sub, f"{path} {name}"))
    return found


def test_every_lazy_tables_help_is_the_commands_own() -> None:
    """The one-line help a lazy group lists without importing a command is that command's."""
    groups = lazy_groups(cli)
    assert {"sscard", "sscard ca", "sscard card"} <= {path for path, _ in groups}
    for path, group in groups:
        ctx = click.Context(group)
        for name, (_, short_help) in group.lazy.items():
            cmd = group.get_command(ctx, name)
            assert cmd is not None, f"{path} {name}"
            assert cmd.get_short_help_str(limit=300) == short_help, f"{path} {name}"


def test_an_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "sscard.cli", "nosuch"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "No such command 'nosuch'" in proc.stderr


def test_the_gateway_commands_choices_are_the_enums() -> None:
    """The choices written out for start-up are exactly the library's values."""
    from sscard.cms import ContentCipher, Sm2KeyTransport
    from sscard.gateway.cli import CIPHERS, REVOCATION_MODES, SM2_KEY_TRANSPORTS
    from sscard.validation import RevocationMode

    assert REVOCATION_MODES == tuple(m.value for m in RevocationMode)
    assert CIPHERS == tuple(c.value for c in ContentCipher)
    assert SM2_KEY_TRANSPORTS == tuple(t.value for t in Sm2KeyTransport)
    assert SM2_KEY_TRANSPORTS[0] == Sm2KeyTransport.GMT0010.value  # the default


def test_the_audit_commands_outcomes_are_the_records() -> None:
    from sscard.audit.cli import OUTCOMES
    from sscard.audit.records import OUTCOMES as RECORDED

    assert OUTCOMES == RECORDED


def lazy_packages() -> list[str]:
    """Every package that resolves its names on first use (through sscard.lazy)."""
    return sorted(".".join(init.parent.relative_to(ROOT).parts)
                  for top in ("sscard", "ca", "ra", "keymgmt", "reader_tools")
                  for init in (ROOT / top).rglob("__init__.py")
                  if "lazy_exports(" in init.read_text(encoding="utf-8"))


def test_the_lazy_packages_are_found() -> None:
    assert {"sscard.audit", "sscard.cms", "sscard.keys", "sscard.validation"} <= set(
        lazy_packages())


@pytest.mark.parametrize("package", lazy_packages())
def test_a_lazy_package_gives_every_public_name(package: str) -> None:
    """Each of its public names, from a fresh interpreter; a name it does not export is an
    AttributeError."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {package} as p\n"
         "assert sorted(p._WHERE) == sorted(p.__all__), set(p._WHERE) ^ set(p.__all__)\n"
         "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
         "assert not missing, missing\n"
         "assert set(p.__all__) <= set(dir(p))\n"
         "try:\n    p.no_such_name\nexcept AttributeError:\n    pass\n"
         "else:\n    raise SystemExit('no AttributeError')"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_local_verify_loads_no_database(tmp_path: Path) -> None:
    """``sscard verify`` without --gateway needs CMS and path validation, not the gateway
    client's request-signing replay memory (SQLAlchemy)."""
    cert = tmp_path / "root.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Test Root",
                    "-keyout", tmp_path / "root.key", "-out", cert], check=True,
                   capture_output=True, timeout=60)
    signed = tmp_path / "signed.p7s"
    signed.write_bytes(b"not CMS")
    names = imported_modules("verify", signed, "--trust", cert, exit_code=2)
    assert "sscard.cms" in names  # it did get as far as parsing
    assert sorted(m for m in names if m.split(".")[0] == "sqlalchemy") == []
