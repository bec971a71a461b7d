"""``sscard agent``: the browser agent for card login (issue 15).

A small HTTP server on 127.0.0.1 that a login page calls with ``fetch`` (the convention of
Chinese card-reading controls; browsers treat http://127.0.0.1 as potentially trustworthy, so an
https page may call it without mixed-content blocking; see docs/login-integration.md for why not
native messaging). It answers only the origins on its allow-list (a TOML file), asks the
holder's consent once per origin (remembered in a 0600 file), and signs nothing but the login
construction ``H(origin) || H(nonce)`` of sscard.idp.authtoken, for the origin the browser puts
in the Origin header. The PIN is asked in the agent's own prompt (its terminal, or for tests and
kiosk wrappers one line per login from ``--pin-from-fd``), never in the page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click
from flask import Flask, Response, jsonify, request

from sscard.card import errors
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscContext, PcscTransport
from sscard.card.validation import CardDataError, validate_pin
from sscard.idp.authtoken import FORMAT, is_origin, signed_data
from sscard.problem import Problem, response
from sscard.secrets_input import write_private_file

DEFAULT_PORT = 24821
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
"""What the provider's NonceStore issues (base64url, >= 32 bytes). Anything else is refused:
the agent signs login nonces, not data a page chose."""
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class AgentError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extensions: str) -> None:
        super().__init__(detail)
        self.problem = Problem(status, code, detail, extensions=tuple(extensions.items()))


def card_error(exc: Exception) -> AgentError:
    """The clear error for a card or reader state."""
    if isinstance(exc, errors.NoReader):
        return AgentError(503, "NO_READER", f"no card reader: {exc}")
    if isinstance(exc, errors.NoCard):
        return AgentError(503, "NO_CARD", f"no card: {exc}")
    if isinstance(exc, errors.CardRemoved):
        return AgentError(503, "CARD_REMOVED",
                          f"the card was removed during the login: {exc}; put it back and "
                          "start again")
    if isinstance(exc, errors.WrongPin):
        return AgentError(403, "PIN_WRONG", str(exc), tries_left=str(exc.tries_left))
    if isinstance(exc, errors.PinBlocked):
        return AgentError(403, "PIN_BLOCKED", str(exc))
    return AgentError(502, "CARD_ERROR", f"card error: {exc}")


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


class Consents:
    """The origins the holder agreed to, in a file only the holder may read (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AgentError(500, "CONSENT_FILE", f"consent file {self.path}: {exc}") from None
        origins = data.get("origins") if isinstance(data, dict) else None
        return {str(k): str(v) for k, v in origins.items()} if isinstance(origins, dict) else {}

    def given(self, origin: str) -> bool:
        return origin in self._load()

    def ask(self, origin: str, ask: Callable[[str], bool]) -> None:
        with self._lock:
            known = self._load()
            if origin in known:
                return
            if not ask(origin):
                raise AgentError(403, "CONSENT_REFUSED",
                                 f"the card holder did not allow {origin} to use the card")
            known[origin] = datetime.now(UTC).isoformat(timespec="seconds")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.path, json.dumps({"origins": known}, indent=1))


@dataclass
class AgentConfig:
    allowed: frozenset[str]
    consents: Consents
    pin: Callable[[str], str | None]
    """Asked once per login with the origin; None when the holder cancels."""
    consent: Callable[[str], bool]
    reader: str | None = None
    card_lock: threading.Lock = field(default_factory=threading.Lock)


def _find_reader(name: str | None) -> str:
    with PcscContext() as ctx:
        readers = ctx.readers()
        if not readers:
            raise errors.NoReader("no card reader attached")
        if name is not None and name not in readers:
            raise errors.NoReader(f"reader {name!r} not found")
        present = [r for r in ([name] if name else readers) if ctx.card_present(r)]
    if not present:
        raise errors.NoCard("insert the social security card")
    for reader in present:
        with contextlib.suppress(errors.CardError), PcscTransport(reader) as transport:
            CardClient(transport).select_ssse()
            return reader
    raise errors.NoCard("no social security card in the readers")


@contextlib.contextmanager
def _card(config: AgentConfig) -> Iterator[CardClient]:
    with config.card_lock:
        try:
            # exclusive: no other program can slip a command in between the PIN and the reset
            transport = PcscTransport(_find_reader(config.reader), exclusive=True)
            client = CardClient(transport)
            client.connect()
            try:
                yield client
            finally:
                # reset: the PIN verified for this login must not stay verified for whatever
                # program connects next (it could have the card sign without the PIN)
                transport.disconnect(reset=True)
        except errors.CardError as exc:
            raise card_error(exc) from None


def _certificate(client: CardClient) -> bytes:
    der = client.read_certificate("sign")
    if der is None:
        raise AgentError(409, "NO_CERTIFICATE", "the card holds no signing certificate")
    return der


def create_app(config: AgentConfig) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096

    def allowed_origin() -> str:
        host = request.host.rsplit(":", 1)[0] if request.host else ""
        if host not in _LOCAL_HOSTS:
            # a page on a rebinding DNS name pointing at 127.0.0.1 is not a local caller
            raise AgentError(403, "FORBIDDEN_HOST", "the agent answers on 127.0.0.1 only")
        origin = request.headers.get("Origin")
        if origin is None or origin not in config.allowed:
            raise AgentError(403, "ORIGIN_NOT_ALLOWED",
                             f"origin {origin or '(none)'} is not on the agent's allow-list")
        return origin

    def consented(origin: str) -> None:
        config.consents.ask(origin, config.consent)

    @app.errorhandler(AgentError)
    def _agent_error(exc: AgentError) -> Response:
        answer = response(exc.problem)
        origin = request.headers.get("Origin")
        if origin in config.allowed and exc.problem.code != "FORBIDDEN_HOST":
            answer.headers["Access-Control-Allow-Origin"] = origin or ""
            answer.headers["Vary"] = "Origin"
        return answer

    @app.after_request
    def _cors(answer: Response) -> Response:
        origin = request.headers.get("Origin")
        if answer.status_code < 400 and origin in config.allowed:
            answer.headers["Access-Control-Allow-Origin"] = origin or ""
            answer.headers["Vary"] = "Origin"
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @app.before_request
    def _origin_first() -> Response | None:
        """Every request, preflights included, is refused before anything else unless it comes
        from an allowed origin to 127.0.0.1."""
        allowed_origin()
        if request.method != "OPTIONS":
            return None
        answer = Response(status=204)
        answer.headers["Access-Control-Allow-Methods"] = "GET, POST"
        answer.headers["Access-Control-Allow-Headers"] = "Content-Type"
        answer.headers["Access-Control-Max-Age"] = "600"
        if request.headers.get("Access-Control-Request-Private-Network") == "true":
            answer.headers["Access-Control-Allow-Private-Network"] = "true"
        return answer

    @app.get("/v1/readers")
    def readers() -> Response:
        allowed_origin()
        try:
            with PcscContext() as ctx:
                found = [{"name": r, "card_present": ctx.card_present(r)} for r in ctx.readers()]
        except errors.CardError as exc:
            raise card_error(exc) from None
        return jsonify({"readers": found})

    @app.get("/v1/certificate")
    def certificate() -> Response:
        origin = allowed_origin()
        consented(origin)
        with _card(config) as client:
            der = _certificate(client)
        return jsonify({"certificate": base64.b64encode(der).decode(), "algorithm": "SM2-SM3"})

    @app.post("/v1/sign")
    def sign() -> Response:
        origin = allowed_origin()
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise AgentError(400, "BAD_REQUEST", "the body must be a JSON object")
        if body.get("origin") != origin:
            raise AgentError(400, "ORIGIN_MISMATCH",
                             "'origin' must be the page's own origin (the Origin header)")
        nonce = body.get("nonce")
        if not isinstance(nonce, str) or not NONCE.match(nonce):
            raise AgentError(400, "BAD_NONCE",
                             "'nonce' must be the provider's login nonce (16-64 base64url "
                             "characters)")
        consented(origin)
        with _card(config) as client:
            cert = _certificate(client)
            pin = config.pin(origin)  # the card stays connected: pulling it now is CARD_REMOVED
            if not pin:
                raise AgentError(400, "PIN_CANCELLED", "the card holder cancelled the PIN entry")
            try:
                validate_pin(pin)
            except CardDataError:
                # checked here so that a typo costs no try on the card
                raise AgentError(400, "PIN_INVALID", "a PIN is 4 to 16 digits; the card was "
                                 "not asked, no try was used") from None
            try:
                signature = CardKey(client, lambda: pin).sign(
                    signed_data("SM2-SM3", origin, nonce))
            except errors.CardError as exc:
                raise card_error(exc) from None
        return jsonify({"format": FORMAT, "algorithm": "SM2-SM3", "origin": origin,
                        "certificate": base64.b64encode(cert).decode(),
                        "signature": base64.b64encode(signature).decode()})

    return app


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
    from werkzeug.serving import make_server

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

