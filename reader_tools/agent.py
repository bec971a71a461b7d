"""``sscard agent``: the browser agent for card login (issue 15).

A small HTTP server on 127.0.0.1 that a login page calls with ``fetch`` (the convention of
Chinese card-reading controls; browsers treat http://127.0.0.1 as potentially trustworthy, so an
https page may call it without mixed-content blocking; see docs/login-integration.md for why not
native messaging). It answers only the origins on its allow-list (a TOML file), asks the
holder's consent once per origin (remembered in a 0600 file), and signs nothing but the login
construction ``H(origin) || H(nonce)`` of sscard.idp.tokenformat, for the origin the browser
puts in the Origin header. The PIN is asked in the agent's own prompt (its terminal, or for tests
and kiosk wrappers one line per login from ``--pin-from-fd``), never in the page.

This module is the command, its options and prompts, light enough that ``sscard agent --help``
starts as fast as ``sscard --help``; the HTTP side is reader_tools.agent_server.
"""

from __future__ import annotations

import os
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from sscard.idp.tokenformat import is_origin

DEFAULT_PORT = 24821


def load_allow_list(path: Path) -> frozenset[str]:
    """``origins = ["https://rp.example:8443", ...]``: exact origins, no wildcards."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"allow-list {path}: {exc}") from None
    origins = data.get("origins")
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise click.UsageError(f"allow-list {path}: 'origins' must be a list of strings")
    bad = [o for o in origins if not is_origin(o)]
    if bad:
        raise click.UsageError(f"allow-list {path}: not a web origin (scheme://host[:port]): "
                               f"{', '.join(bad)}")
    return frozenset(origins)


# -- prompts ------------------------------------------------------------------------------


def _line_reader(fd: int) -> Callable[[], str | None]:
    stream: IO[str] = os.fdopen(fd, "r", encoding="utf-8")
    lock = threading.Lock()

    def read() -> str | None:
        with lock:
            line = stream.readline()
        return line.rstrip("\r\n") if line else None

    return read


def pin_prompt(pin_fd: int | None) -> Callable[[str], str | None]:
    if pin_fd is not None:
        read = _line_reader(pin_fd)

        def from_fd(origin: str) -> str | None:
            # a wrapper (or a test) knows when to answer; the PIN itself is never printed
            click.echo(f"PIN asked for a login to {origin}", err=True)
            sys.stderr.flush()
            return read()

        return from_fd

    def ask(origin: str) -> str | None:
        try:
            return str(click.prompt(f"PIN of the social security card to log in to {origin}",
                                    hide_input=True, err=True))
        except click.Abort:
            return None

    return ask


def consent_prompt(consent_fd: int | None) -> Callable[[str], bool]:
    if consent_fd is not None:
        read = _line_reader(consent_fd)
        return lambda _origin: (read() or "").strip().lower() in ("y", "yes")

    def ask(origin: str) -> bool:
        try:
            return click.confirm(f"Allow {origin} to read your card's certificate and to ask "
                                 "for a login signature?", err=True)
        except click.Abort:
            return False

    return ask


def _default_consent_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sscard" / "agent-consent.json"


@click.command("agent")
@click.option("--allow-list", "allow_list", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="TOML file: origins = [\"https://rp.example\", ...].")
@click.option("--consent-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Where consents are remembered (0600; default "
                   "~/.config/sscard/agent-consent.json).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1 (0: a free one, printed on start).")
@click.option("--reader", help="Card reader name (default: $SSCARD_READER, else the reader "
                               "holding a social security card).")
@click.option("--pin-from-fd", type=int,
              help="Read one PIN per login from this file descriptor (tests, kiosk wrappers) "
                   "instead of the terminal.")
@click.option("--consent-from-fd", type=int,
              help="Read one yes/no answer per consent question from this file descriptor.")
def agent_command(allow_list: Path, consent_file: Path | None, port: int, reader: str | None,
                  pin_from_fd: int | None, consent_from_fd: int | None) -> None:
    """Browser agent for card login: listens on 127.0.0.1 for allow-listed pages.

    Lists readers, gives the card's certificate and signs a login nonce for the page's origin
    after the holder's consent (once per origin) and PIN (every login, in this program's own
    prompt, never in the page)."""
    # the server's modules (Flask, the card stack) only for a real start, not for --help
    from werkzeug.serving import make_server

    from reader_tools.agent_server import AgentConfig, Consents, create_app

    if pin_from_fd is None and not sys.stdin.isatty():
        raise click.UsageError("the PIN prompt needs a terminal; or give --pin-from-fd")
    # one question at a time on the holder's terminal, whatever the requests in flight
    prompts = threading.Lock()
    ask_pin, ask_consent = pin_prompt(pin_from_fd), consent_prompt(consent_from_fd)

    def pin(origin: str) -> str | None:
        with prompts:
            return ask_pin(origin)

    def consent(origin: str) -> bool:
        with prompts:
            return ask_consent(origin)

    config = AgentConfig(
        allowed=load_allow_list(allow_list),
        consents=Consents(consent_file or _default_consent_file()),
        pin=pin, consent=consent,
        reader=reader or os.environ.get("SSCARD_READER") or None)
    server = make_server("127.0.0.1", port, create_app(config), threaded=True)
    click.echo(f"sscard agent listening on http://127.0.0.1:{server.server_port} for "
               f"{', '.join(sorted(config.allowed)) or 'no origin'}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass

