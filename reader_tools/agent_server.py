"""The browser agent's HTTP side (``sscard agent``, whose command is reader_tools.agent): the
Flask app on 127.0.0.1 that answers the allow-listed origins, asks the holder's consent once per
origin (remembered in a 0600 file) and has the card sign the login construction of
sscard.idp.tokenformat for the origin the browser puts in the Origin header.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, jsonify, request

from sscard.card import errors
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscContext, PcscTransport
from sscard.card.validation import CardDataError, validate_pin
from sscard.idp.tokenformat import FORMAT, signed_data
from sscard.problem import Problem, response
from sscard.secrets_input import write_private_file

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
