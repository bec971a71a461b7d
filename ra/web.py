"""The RA web application (Flask): the officers' UI, rendered on the server and usable without
JavaScript, and the JSON enrollment API for reader tools and kiosks.

Access is decided in one place, ``ACCESS``: every endpoint names the roles that may call it
(``ANONYMOUS`` for the log-in page, ``CLIENT`` for API token holders); an endpoint missing from
the table is refused. Every UI POST carries the session's CSRF token; the API takes bearer
tokens only, never the session cookie."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ra.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RAError,
    UpstreamFailed,
    UpstreamUnavailable,
)
from ra.i18n import DEFAULT_LANGUAGE, LANGUAGES, translate
from ra.models import RequestKind, RequestState, Role
from ra.service import Actor, CardInput, RegistrationAuthority
from ra.sessions import ServerSession, ServerSessionInterface
from sscard import httpops, httpsig, problem
from sscard.card.records import HolderData
from sscard.jsonbody import limit_json

ANONYMOUS, CLIENT = "anonymous", "client"
OPERATOR, OFFICER, AUDITOR, ADMIN = (Role.OPERATOR.value, Role.OFFICER.value,
                                     Role.AUDITOR.value, Role.ADMINISTRATOR.value)
LOGGED_IN = frozenset({OPERATOR, OFFICER, AUDITOR, ADMIN})
READERS = frozenset({OPERATOR, OFFICER, AUDITOR})

#: endpoint -> who may call it (the authorisation matrix; tests/ra/test_authorisation.py checks
#: every pair)
ACCESS: dict[str, frozenset[str]] = {
    "ui.login": frozenset({ANONYMOUS, *LOGGED_IN}),
    "ui.login_certificate": frozenset({ANONYMOUS, *LOGGED_IN}),
    "ui.language": frozenset({ANONYMOUS, *LOGGED_IN}),
    "ui.logout": LOGGED_IN,
    "ui.password": LOGGED_IN,
    "ui.queue": READERS,
    "ui.request_detail": READERS,
    "ui.decide": frozenset({OFFICER}),
    "ui.revoke": frozenset({OPERATOR, OFFICER}),
    "ui.search": READERS,
    "ui.recoveries": frozenset({OFFICER}),
    "ui.batches": frozenset({OFFICER}),
    "ui.audit": frozenset({AUDITOR}),
    "ui.officers": frozenset({ADMIN}),
    "ui.unlock": frozenset({ADMIN}),
    "ui.enable": frozenset({ADMIN}),
    "ui.disable": frozenset({ADMIN}),
    "api.openapi": frozenset({ANONYMOUS, CLIENT}),
    "api.whoami": frozenset({CLIENT}),
    "api.submit": frozenset({CLIENT}),
    "api.status": frozenset({CLIENT}),
    "api.confirm": frozenset({CLIENT}),
    "api.rollback": frozenset({CLIENT}),
    "static": frozenset({ANONYMOUS, *LOGGED_IN}),
    # /health, /ready, /metrics (sscard.httpops): for the load balancer and monitoring
    **{name: frozenset({ANONYMOUS, *LOGGED_IN}) for name in httpops.ENDPOINTS},
}

#: the one place the RA's web layer maps its errors to an HTTP status and a stable code; the
#: API answers them as RFC 9457 problem documents, the UI as a page
PROBLEMS = problem.ProblemTable({
    BadRequest: (400, "bad_request"), AuthenticationFailed: (401, "unauthenticated"),
    Forbidden: (403, "forbidden"), NotFound: (404, "not_found"), Conflict: (409, "conflict"),
    UpstreamUnavailable: (503, "upstream_unavailable"),
    UpstreamFailed: (502, "upstream_failed"), RAError: (500, "ra_error"),
})


@dataclass(frozen=True)
class WebConfig:
    secret_key: bytes
    #: Secure cookies: set behind TLS (the reverse proxy); tests run plain HTTP on loopback
    secure_cookies: bool = True


def _ra() -> RegistrationAuthority:
    ra: RegistrationAuthority = g.ra
    return ra


def _actor() -> Actor:
    actor: Actor = g.actor
    return actor


def _lang() -> str:
    # Chinese unless the user switched: the staff's browsers do not reliably say what they
    # read (headless and kiosk browsers send en-US)
    lang = session.get("lang")
    return str(lang) if lang in LANGUAGES else DEFAULT_LANGUAGE


def _(key: str) -> str:
    return translate(_lang(), key)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


ui = Blueprint("ui", __name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")


# --- UI: log-in -----------------------------------------------------------------------------


def _session() -> ServerSession:
    assert isinstance(session, ServerSession)
    return session


def _source() -> str:
    """The client's address, for log-in throttling (behind a proxy: its ProxyFix setting)."""
    return request.remote_addr or "-"


def _start_session(actor: Actor) -> None:
    lang = session.get("lang")
    session.clear()  # a fresh session under a new token (and CSRF token) at log-in
    _session().regenerate()
    # roles here only choose the menu; every request is authorised from the database
    session.update(user=actor.name, roles=sorted(r.value for r in actor.roles),
                   csrf=secrets.token_urlsafe(32))
    if lang:
        session["lang"] = lang


@ui.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        try:
            actor = _ra().authenticate(request.form.get("username", ""),
                                       request.form.get("password", ""), _source())
        except AuthenticationFailed as exc:
            flash(str(exc), "error")
            return render_template("login.html"), 401
        _start_session(actor)
        return redirect(url_for("ui.queue"))
    return render_template("login.html")


@ui.route("/login/certificate", methods=["GET", "POST"])
def login_certificate() -> Any:
    if request.method == "POST":
        challenge = session.pop("login_challenge", None)
        try:
            signature = base64.b64decode(request.form.get("signature", ""), validate=True)
        except (binascii.Error, ValueError):
            flash("the signature is not base64", "error")
            return render_template("login_certificate.html", challenge=None), 400
        if not challenge:
            flash("no challenge in this session; reload the page", "error")
            return redirect(url_for("ui.login_certificate"))
        try:
            # the RA consumes the challenge (held server-side): a captured log-in never replays
            actor = _ra().authenticate_certificate(request.form.get("username", ""),
                                                   bytes.fromhex(str(challenge)), signature)
        except AuthenticationFailed as exc:
            flash(str(exc), "error")
            return render_template("login_certificate.html", challenge=None), 401
        _start_session(actor)
        return redirect(url_for("ui.queue"))
    challenge = _ra().new_login_challenge().hex()
    session["login_challenge"] = challenge
    return render_template("login_certificate.html", challenge=challenge)


@ui.route("/logout", methods=["POST"])
def logout() -> Any:
    actor = _actor()
    with _ra().audit.operation(actor.audit_name, "ra.logout", actor.name):
        _session().end()  # the server forgets the session: its cookie is worth nothing now
    return redirect(url_for("ui.login"))


@ui.route("/account/password", methods=["GET", "POST"])
def password() -> Any:
    """Change one's own password; every session of the account ends (log in again)."""
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("new_password_again", ""):
            raise BadRequest("the two new passwords differ")
        _ra().change_password(_actor().name, request.form.get("password", ""), new, _source())
        _session().end()
        return redirect(url_for("ui.login"))
    return render_template("password.html")


@ui.route("/language/<lang>")
def language(lang: str) -> Any:
    if lang not in LANGUAGES:
        abort(404)
    session["lang"] = lang
    target = request.referrer or url_for("ui.login")
    return redirect(target if target.startswith(request.host_url) else url_for("ui.login"))


# --- UI: requests ---------------------------------------------------------------------------


@ui.route("/")
def queue() -> Any:
    kind = request.args.get("kind") or None
    try:
        kind_enum = RequestKind(kind) if kind else None
    except ValueError:
        abort(400)
    rows = _ra().queue(_actor(), RequestState.SUBMITTED, kind_enum)
    return render_template("queue.html", rows=rows, kinds=[k.value for k in RequestKind])


@ui.route("/requests/<request_id>")
def request_detail(request_id: str) -> Any:
    return render_template("request.html", r=_ra().request(_actor(), request_id))


@ui.route("/requests/<request_id>/decide", methods=["POST"])
def decide(request_id: str) -> Any:
    reason = request.form.get("reason", "")
    action = request.form.get("action")
    if action == "approve":
        _ra().approve(_actor(), request_id, reason)
    elif action == "reject":
        _ra().reject(_actor(), request_id, reason)
    else:
        raise BadRequest("action must be approve or reject")
    flash(_("approved_msg"), "info")
    return redirect(url_for("ui.request_detail", request_id=request_id))


@ui.route("/revoke", methods=["GET", "POST"])
def revoke() -> Any:
    if request.method == "POST":
        card_number = request.form.get("card_number", "").strip() or None
        serial = request.form.get("serial", "").strip() or None
        info = _ra().submit_revocation(_actor(), card_number=card_number, serial=serial,
                                       reason=request.form.get("reason_code", "keyCompromise"),
                                       comment=request.form.get("reason", ""))
        flash(_("submitted_msg"), "info")
        return redirect(url_for("ui.request_detail", request_id=info["request_id"]))
    return render_template("revoke.html")


@ui.route("/search")
def search() -> Any:
    text = request.args.get("q", "")
    what = request.args.get("what", "cardholders")
    if what == "certificates":
        rows = _ra().search_certificates(_actor(), text)
    else:
        rows = _ra().search_cardholders(_actor(), text)
    return render_template("search.html", q=text, what=what, rows=rows)


@ui.route("/recoveries", methods=["GET", "POST"])
def recoveries() -> Any:
    if request.method == "POST":
        from sscard.x509.errors import X509Error
        from sscard.x509.pem import pem_to_der

        try:
            spki = pem_to_der(request.form.get("new_card_key", "").encode(), "PUBLIC KEY")
        except (X509Error, ValueError) as exc:
            raise BadRequest(f"new card key: {exc}") from None
        info = _ra().submit_key_recovery(_actor(), request.form.get("enc_serial", ""), spki,
                                         request.form.get("reason", ""))
        flash(_("submitted_msg"), "info")
        return redirect(url_for("ui.request_detail", request_id=info["request_id"]))
    rows = _ra().queue(_actor(), RequestState.SUBMITTED, RequestKind.KEY_RECOVERY)
    return render_template("recoveries.html", rows=rows)


@ui.route("/batches", methods=["GET", "POST"])
def batches() -> Any:
    if request.method == "POST":
        try:
            limit = int(request.form.get("limit", ""))
            hours = float(request.form.get("valid_hours", "12"))
        except ValueError:
            raise BadRequest("the number of enrollments and the hours must be numbers") from None
        if not 0 < hours <= 31 * 24:
            raise BadRequest("a batch is valid for more than 0 and at most 744 hours")
        listed = request.form.get("cardholders", "").split()
        _ra().authorise_batch(_actor(), request.form.get("name", ""), limit,
                              station=request.form.get("station", "").strip(),
                              cardholders=listed or None,
                              valid_for=dt.timedelta(hours=hours))
        flash(_("submitted_msg"), "info")
        return redirect(url_for("ui.batches"))
    return render_template("batches.html")


@ui.route("/audit")
def audit() -> Any:
    return render_template("audit.html", rows=_ra().audit_records(_actor()))


@ui.route("/admin/officers", methods=["GET", "POST"])
def officers() -> Any:
    if request.method == "POST":
        try:
            roles = {Role(r) for r in request.form.getlist("roles")}
        except ValueError:
            raise BadRequest("unknown role") from None
        _ra().add_officer(_actor(), request.form.get("username", ""),
                          request.form.get("display_name", ""),
                          request.form.get("password", ""), roles,
                          person_id=request.form.get("person_id", "").strip())
        flash(_("submitted_msg"), "info")
        return redirect(url_for("ui.officers"))
    return render_template("officers.html", rows=_ra().officers(_actor()),
                           roles=[r.value for r in Role])


@ui.route("/admin/officers/<username>/unlock", methods=["POST"])
def unlock(username: str) -> Any:
    _ra().unlock_officer(_actor(), username)
    flash(_("submitted_msg"), "info")
    return redirect(url_for("ui.officers"))


@ui.route("/admin/officers/<username>/enable", methods=["POST"])
def enable(username: str) -> Any:
    """Propose (first administrator) or complete (a second one) enabling an account."""
    _ra().enable_officer(_actor(), username)
    flash(_("submitted_msg"), "info")
    return redirect(url_for("ui.officers"))


@ui.route("/admin/officers/<username>/disable", methods=["POST"])
def disable(username: str) -> Any:
    _ra().disable_officer(_actor(), username)
    flash(_("submitted_msg"), "info")
    return redirect(url_for("ui.officers"))


# --- API ------------------------------------------------------------------------------------


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (Content-Type: application/json)")
    return body


@api.route("/openapi.json")
def openapi() -> Any:
    from ra.openapi import SPEC

    return jsonify(SPEC)


@api.route("/whoami")
def whoami() -> Any:
    """Lets a reader tool check its token before it touches a card."""
    return jsonify({"client": _actor().name})


@api.route("/enrollments", methods=["POST"])
def submit() -> Any:
    body = _json_body()
    try:
        h, c = body["cardholder"], body["card"]
        holder = HolderData(**{k: str(h[k]) for k in ("ssn", "name", "sex", "ethnicity",
                                                      "birthplace", "birth_date")})
        card = CardInput(str(c["card_id"]), str(c["card_number"]),
                         int(c.get("generation", 3)))
        csr = base64.b64decode(str(body["csr"]), validate=True)
    except KeyError as exc:
        raise BadRequest(f"missing field {exc.args[0]}") from None
    except (TypeError, ValueError, binascii.Error) as exc:
        raise BadRequest(f"malformed enrollment: {exc}") from None
    batch = body.get("batch")
    if batch is not None and not isinstance(batch, str):
        raise BadRequest("batch must be a string")
    info = _ra().submit_enrollment(_actor(), holder, card, csr, batch)
    return jsonify(info), 201


@api.route("/enrollments/<request_id>")
def status(request_id: str) -> Any:
    return jsonify(_ra().request(_actor(), request_id))


@api.route("/enrollments/<request_id>/confirm", methods=["POST"])
def confirm(request_id: str) -> Any:
    _ra().request(_actor(), request_id)  # the caller's own request only
    return jsonify(_ra().confirm_personalised(_actor(), request_id))


@api.route("/enrollments/<request_id>/rollback", methods=["POST"])
def rollback(request_id: str) -> Any:
    body = _json_body()
    _ra().request(_actor(), request_id)
    return jsonify(_ra().rollback_enrollment(_actor(), request_id,
                                             str(body.get("reason") or "rolled back")))


# --- the app ----------------------------------------------------------------------------------


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _who() -> tuple[str, Actor | None]:
    """The caller's principal for ACCESS, and the Actor when logged in."""
    if _is_api():
        if httpsig.RequestVerifier.present(request.headers):
            return CLIENT, _signed_client()
        header = request.headers.get("Authorization", "")
        if not header:
            return ANONYMOUS, None
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed("use Authorization: Bearer <token>")
        return CLIENT, _ra().authenticate_client(token.strip())
    # the session itself is server-side: unknown, ended and idle sessions load empty
    user = session.get("user")
    if not user:
        return ANONYMOUS, None
    current = _ra().session_actor(str(user))
    if current is None:
        _session().end()
        return ANONYMOUS, None
    return "session", current


def _signed_client() -> Actor:
    """A station or service signing its requests (sscard.httpsig) with the certificate bound
    to its API client (``sscard ra add-client --certificate``)."""
    verifier: httpsig.RequestVerifier = current_app.extensions["sscard_ra_signatures"]
    found: list[Actor] = []

    def bound_client(signed: httpsig.SignedRequest) -> None:
        if not signed.certificate_valid_at(_ra().clock()):
            raise AuthenticationFailed("the request's certificate is not valid now")
        found.append(_ra().authenticate_signed_client(signed.identity))

    verifier.verify(request.headers, request.method, request.path,
                    request.query_string.decode("latin-1"), request.get_data(), bound_client)
    return found[0]


def create_app(ra: RegistrationAuthority, config: WebConfig) -> Flask:
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.config.update(SECRET_KEY=config.secret_key, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_SECURE=config.secure_cookies,
                      MAX_CONTENT_LENGTH=256 * 1024)
    app.session_interface = ServerSessionInterface(ra)
    app.register_blueprint(ui)
    app.register_blueprint(api)
    limit_json(app)  # a deeply nested body is a 400, not a RecursionError
    app.jinja_env.globals.update(_=_, csrf_token=csrf_token, lang=_lang)
    httpops.install(app, "ra", {"database": httpops.database_check(ra.engine)})
    # signed requests seen, in the RA's database: every worker refuses a replay
    app.extensions["sscard_ra_signatures"] = httpsig.RequestVerifier(
        httpsig.SqlReplayStore(ra.engine, ra.clock), clock=ra.clock)

    @app.before_request
    def _guard() -> Any:
        g.ra = ra
        endpoint = request.endpoint or ""
        allowed = ACCESS.get(endpoint)
        if allowed is None:
            return _refuse(404 if request.url_rule is None else 403, "not found"
                           if request.url_rule is None else "this endpoint is not open to anyone")
        try:
            kind, actor = _who()
        except AuthenticationFailed as exc:
            return _refuse(401, str(exc))
        except httpsig.SignatureError as exc:
            return _refuse(401, exc.message, exc.code)
        except httpsig.ReplayStoreUnavailable as exc:
            return _refuse(503, str(exc), "replay_memory_unavailable")
        g.actor = actor
        if actor is None:
            if ANONYMOUS in allowed:
                return None
            if _is_api():
                return _refuse(401, "authentication required (Authorization: Bearer <token>)")
            flash(_("not_logged_in"), "error")
            return redirect(url_for("ui.login"))
        if kind == CLIENT:
            ok = CLIENT in allowed
        else:
            ok = bool({r.value for r in actor.roles} & allowed)
        if not ok:
            with ra.audit.operation(actor.audit_name, "ra.access", request.path) as op:
                op.deny(f"{request.method} {endpoint} not allowed for "
                        f"{','.join(sorted(r.value for r in actor.roles))}")
            return _refuse(403, _("forbidden"))
        if not _is_api() and request.method == "POST":
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                with ra.audit.operation(actor.audit_name, "ra.csrf", request.path) as op:
                    op.deny("CSRF token missing or wrong")
                return _refuse(400, _("csrf_refused"))
        return None

    @app.before_request
    def _anonymous_csrf() -> Any:
        # the log-in forms carry the token too (log-in CSRF); checked here for anonymous POSTs
        if (not _is_api() and request.method == "POST" and getattr(g, "actor", None) is None
                and request.endpoint in ("ui.login", "ui.login_certificate")):
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                return _refuse(400, _("csrf_refused"))
        return None

    @app.errorhandler(RAError)
    def _ra_error(exc: RAError) -> Any:
        found = PROBLEMS.problem(exc) or problem.for_status(500, str(exc))
        return _refuse(found.status, found.detail, found.code)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if (exc.code or 500) < 400:
            return exc  # a routing redirect
        return _refuse(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        app.logger.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return _refuse(500, "internal error; see the RA's log", "internal_error")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; style-src 'self' 'unsafe-inline'")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app


def _refuse(code: int, message: str, problem_code: str | None = None) -> Any:
    if _is_api():
        return problem.response(problem.Problem(code, problem_code or
                                                problem.for_status(code, message).code, message))
    return render_template("message.html", code=code, message=message), code

