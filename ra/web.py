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
from enum import StrEnum
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
from flask_babel import gettext, lazy_gettext
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ra import i18n
from ra.cardlogin import CardLogin, CardLoginConfig
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
from ra.models import RequestKind, RequestState, Role
from ra.service import MIN_PASSWORD, Actor, CardInput, RegistrationAuthority
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
    "ui.login_card": frozenset({ANONYMOUS, *LOGGED_IN}),
    "ui.login_card_callback": frozenset({ANONYMOUS, *LOGGED_IN}),
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
    # and then only a signed client whose certificate WebConfig.card_number_readers names
    "api.card_number": frozenset({CLIENT}),
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
    #: the zone the UI shows times in (IANA name); stored times are UTC
    timezone: str = i18n.DEFAULT_TIMEZONE
    #: officers' card log-in through the OpenID Connect provider (ra.cardlogin); None: off
    card_login: CardLoginConfig | None = None
    #: the old pasted-signature certificate form (/login/certificate), for an RA that must
    #: work while the provider cannot be reached; off unless set (``--offline-certificate-login``)
    offline_certificate_login: bool = False
    #: identities (sscard.httpsig: SHA-256 of the tbsCertificate, hex) of the signed callers
    #: that may look card numbers up (the identity provider's service certificate); none by
    #: default
    card_number_readers: frozenset[str] = frozenset()


def _ra() -> RegistrationAuthority:
    ra: RegistrationAuthority = g.ra
    return ra


def _actor() -> Actor:
    actor: Actor = g.actor
    return actor


def _my_roles() -> frozenset[str]:
    """The caller's roles as the database has them now (never the session's copy): the menu
    and the buttons follow them."""
    actor = getattr(g, "actor", None)
    return frozenset() if actor is None else frozenset(r.value for r in actor.roles)


def may(endpoint: str) -> bool:
    """May the caller open ``endpoint``? From ACCESS and the database's roles: the menu and
    the links offer only what the server would allow."""
    return bool(_my_roles() & ACCESS.get(endpoint, frozenset()))


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


ui = Blueprint("ui", __name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")


# --- UI: forms and lists ----------------------------------------------------------------------


class FormErrors(dict[str, str]):
    """Field name -> what is wrong with it, in the reader's language; ``FORM`` for what
    belongs to no one field. A form with errors is shown again with what was typed, the errors
    summed up at the top and each beside its field (the GOV.UK pattern)."""

    FORM = "_form"

    def service(self, exc: RAError,
                known: dict[type[RAError], tuple[str, str]] | None = None) -> None:
        """A refusal from the RA itself. One the form knows (``known``: error class -> field
        and message) is put at its field in the reader's language; any other is its kind and
        its message (by its id, ra/i18n.py ERRORS) in the reader's language; one without a
        known id keeps the RA's own words (English, and marked so)."""
        for kind, (field, message) in (known or {}).items():
            if isinstance(exc, kind):
                self[field] = message
                return
        said = i18n.error_message(exc.code, exc.params)
        if said is not None:
            self[self.FORM] = Markup("{} {}").format(_refusal_title(exc), said)
            return
        self[self.FORM] = Markup('{} <span lang="en">{}</span>').format(_refusal_title(exc),
                                                                        str(exc))


def _refusal_title(exc: RAError) -> str:
    status = (PROBLEMS.problem(exc) or problem.for_status(500, str(exc))).status
    return str(STATUS_TITLES.get(status, STATUS_TITLES[500]))


STATUS_TITLES = {
    400: lazy_gettext("The input was not accepted:"),
    401: lazy_gettext("Not logged in, or the log-in failed:"),
    403: lazy_gettext("Not allowed:"),
    404: lazy_gettext("Not found:"),
    409: lazy_gettext("This conflicts with what is already recorded:"),
    500: lazy_gettext("Internal error:"),
    502: lazy_gettext("A service the RA relies on failed:"),
    503: lazy_gettext("A service the RA relies on cannot be reached now:"),
}


def _form_page(template: str, errors: FormErrors, status: int = 400, **context: Any) -> Any:
    return render_template(template, errors=errors, values=request.form, **context), status


PAGE_SIZES = (10, 20, 50, 100)


class InputRefused(BadRequest):
    """Bad input the web layer itself refuses, its message already in the reader's language."""


@dataclass(frozen=True)
class Listing:
    """A list's page, size and order from the query string (page, size, sort, order)."""

    page: int
    size: int
    sort: str
    descending: bool

    @classmethod
    def from_args(cls, sorts: tuple[str, ...], default_sort: str,
                  default_descending: bool = False) -> Listing:
        args = request.args
        try:
            page = int(args.get("page", "1"))
            size = int(args.get("size", "20"))
        except ValueError:
            raise InputRefused(gettext("The page and the page size must be whole numbers."),
                             ) from None
        if page < 1 or size not in PAGE_SIZES:
            raise InputRefused(gettext("The page must be 1 or more and the page size one of "
                                     "%(sizes)s.", sizes=", ".join(map(str, PAGE_SIZES))))
        sort = args.get("sort", default_sort)
        if sort not in sorts:
            raise InputRefused(gettext("This list cannot be sorted by %(sort)s.", sort=sort))
        order = args.get("order")
        if order not in (None, "asc", "desc"):
            raise InputRefused(gettext("The order must be asc or desc."))
        descending = default_descending if order is None else order == "desc"
        return cls(page, size, sort, descending)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def pages(self, total: int) -> int:
        return max(1, -(-total // self.size))

    def url(self, **changes: Any) -> str:
        """This list's address with some of its arguments changed (filters kept)."""
        # empty values kept: "state=" (every state) differs from no state (waiting ones)
        args: dict[str, Any] = dict(request.args.items())
        args.update({k: str(v) for k, v in changes.items()})
        return url_for(str(request.endpoint), **(request.view_args or {}), **args)

    def sort_url(self, key: str) -> str:
        descending = not self.descending if key == self.sort else False
        return self.url(sort=key, order="desc" if descending else "asc", page=1)

    def slice(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sort and cut a list held in memory (lists bounded by the RA: officers, batches,
        search results)."""
        ordered = sorted(rows, key=lambda r: (r.get(self.sort) is None, str(r.get(self.sort))),
                         reverse=self.descending)
        return ordered[self.offset:self.offset + self.size]


def _paged(template: str, listing: Listing, rows: list[dict[str, Any]], total: int,
           **context: Any) -> Any:
    return render_template(template, rows=rows, total=total, listing=listing,
                           pages=listing.pages(total), **context)


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
    # the session holds only who logged in: every request is authorised from the database
    session.update(user=actor.name, csrf=secrets.token_urlsafe(32))
    if lang:
        session["lang"] = lang


#: one answer for every failed log-in (never which part was wrong)
LOGIN_REFUSED_TEXT = i18n.ERRORS["login_refused"]
CERTIFICATE_LOGIN_REFUSED_TEXT = i18n.ERRORS["certificate_login_refused"]
CARD_LOGIN_REFUSED_TEXT = i18n.ERRORS["card_login_refused"]


def _card_login() -> CardLogin:
    card: CardLogin | None = current_app.extensions.get("ra_card_login")
    if card is None:
        abort(404)  # this RA logs officers in with passwords only
    return card


@ui.route("/login/card")
def login_card() -> Any:
    """To the provider; whatever the request carries, the officer comes back to the queue
    (no ``next``: nothing to turn into an open redirect)."""
    return _card_login().start()


@ui.route("/login/card/callback")
def login_card_callback() -> Any:
    card = _card_login()
    try:
        try:
            claims, id_token = card.finish()  # state, PKCE, the ID token: Authlib's checks
        except AuthenticationFailed as exc:
            with _ra().audit.operation(f"browser:{_source()}", "ra.login", "-",
                                       details={"method": "card", "source": _source()}) as op:
                op.deny(str(exc))
            raise
        actor = _ra().authenticate_card(claims.fingerprint, claims.profile, claims.ssn,
                                        card.config.profiles, _source())
    except AuthenticationFailed:
        flash(str(CARD_LOGIN_REFUSED_TEXT), "error")
        return render_template("login.html", values={}), 401
    _start_session(actor)
    session["id_token"] = id_token  # the hint for the provider's logout
    return redirect(url_for("ui.queue"))


@ui.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        try:
            actor = _ra().authenticate(request.form.get("username", ""),
                                       request.form.get("password", ""), _source())
        except AuthenticationFailed:
            flash(str(LOGIN_REFUSED_TEXT), "error")
            return render_template("login.html", values={
                "username": request.form.get("username", "")}), 401
        _start_session(actor)
        return redirect(url_for("ui.queue"))
    return render_template("login.html", values={})


@ui.route("/login/certificate", methods=["GET", "POST"])
def login_certificate() -> Any:
    if not current_app.config["RA_OFFLINE_CERTIFICATE_LOGIN"]:
        abort(404)
    if request.method == "POST":
        challenge = session.pop("login_challenge", None)
        try:
            signature = base64.b64decode(request.form.get("signature", ""), validate=True)
        except (binascii.Error, ValueError):
            flash(gettext("The signature is not base64 text."), "error")
            return render_template("login_certificate.html", challenge=None), 400
        if not challenge:
            flash(gettext("This session has no challenge; load the page again."), "error")
            return redirect(url_for("ui.login_certificate"))
        try:
            # the RA consumes the challenge (held server-side): a captured log-in never replays
            actor = _ra().authenticate_certificate(request.form.get("username", ""),
                                                   bytes.fromhex(str(challenge)), signature)
        except AuthenticationFailed:
            flash(str(CERTIFICATE_LOGIN_REFUSED_TEXT), "error")
            return render_template("login_certificate.html", challenge=None), 401
        _start_session(actor)
        return redirect(url_for("ui.queue"))
    challenge = _ra().new_login_challenge().hex()
    session["login_challenge"] = challenge
    return render_template("login_certificate.html", challenge=challenge)


@ui.route("/logout", methods=["POST"])
def logout() -> Any:
    actor = _actor()
    id_token = session.get("id_token")
    with _ra().audit.operation(actor.audit_name, "ra.logout", actor.name):
        _session().end()  # the server forgets the session: its cookie is worth nothing now
    card: CardLogin | None = current_app.extensions.get("ra_card_login")
    if card is not None and id_token:
        # logged in with the card: the provider's session ends too (RP-initiated logout)
        there = card.logout_url(str(id_token))
        if there is not None:
            return redirect(there)
    return redirect(url_for("ui.login"))


@ui.route("/account/password", methods=["GET", "POST"])
def password() -> Any:
    """Change one's own password; every session of the account ends (log in again)."""
    if request.method == "POST":
        errors = FormErrors()
        old, new = request.form.get("password", ""), request.form.get("new_password", "")
        if not old:
            errors["password"] = gettext("Enter your current password.")
        if len(new) < MIN_PASSWORD:
            errors["new_password"] = gettext(
                "The new password must have at least %(n)d characters.", n=MIN_PASSWORD)
        elif new != request.form.get("new_password_again", ""):
            errors["new_password_again"] = gettext("The two new passwords differ.")
        if not errors:
            try:
                _ra().change_password(_actor().name, old, new, _source())
            except AuthenticationFailed:
                errors["password"] = str(LOGIN_REFUSED_TEXT)
            except RAError as exc:
                errors.service(exc)
        if errors:  # passwords are never sent back into the form
            return render_template("password.html", errors=errors, values={}), 400
        _session().end()
        return redirect(url_for("ui.login"))
    return render_template("password.html", errors=FormErrors(), values={})


@ui.route("/language/<lang>")
def language(lang: str) -> Any:
    if lang not in i18n.LANGUAGES:
        abort(404)
    session["lang"] = lang
    target = request.referrer or url_for("ui.login")
    return redirect(target if target.startswith(request.host_url) else url_for("ui.login"))


# --- UI: requests ---------------------------------------------------------------------------


def _enum_arg(name: str, enum: type[StrEnum], label: str) -> Any:
    value = request.args.get(name) or None
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise InputRefused(gettext("%(field)s has no value %(value)s.", field=label,
                                   value=value)) from None


@ui.route("/")
def queue() -> Any:
    kind = _enum_arg("kind", RequestKind, gettext("Type"))
    state = _enum_arg("state", RequestState, gettext("State")) if "state" in request.args \
        else RequestState.SUBMITTED
    listing = Listing.from_args(tuple(RegistrationAuthority.REQUEST_ORDERS), "created")
    rows, total = _ra().requests_page(_actor(), state=state, kind=kind, sort=listing.sort,
                                      descending=listing.descending, offset=listing.offset,
                                      limit=listing.size)
    return _paged("queue.html", listing, rows, total, kinds=list(RequestKind),
                  states=list(RequestState), kind=kind, state=state)


def _request_page(request_id: str, errors: FormErrors | None = None,
                  status: int = 200) -> Any:
    r = _ra().request(_actor(), request_id)
    verdict = _ra().may_decide(_actor(), request_id)
    return render_template("request.html", r=r, can_decide=verdict.allowed,
                           errors=errors or FormErrors(),
                           values=request.form if errors else {}), status


@ui.route("/requests/<request_id>")
def request_detail(request_id: str) -> Any:
    return _request_page(request_id)


@ui.route("/requests/<request_id>/decide", methods=["POST"])
def decide(request_id: str) -> Any:
    reason = request.form.get("reason", "")
    action = request.form.get("action")
    errors = FormErrors()
    if action not in ("approve", "reject"):
        errors[FormErrors.FORM] = gettext("Choose approve or reject.")
    elif action == "reject" and not reason.strip():
        errors["reason"] = gettext("Give the reason for the rejection: the requester reads it.")
    if not errors:
        try:
            if action == "approve":
                _ra().approve(_actor(), request_id, reason)
            else:
                _ra().reject(_actor(), request_id, reason)
        except (BadRequest, Forbidden, Conflict) as exc:
            errors.service(exc)
    if errors:
        return _request_page(request_id, errors, 400)
    flash(gettext("Decision recorded."), "info")
    return redirect(url_for("ui.request_detail", request_id=request_id))


@ui.route("/revoke", methods=["GET", "POST"])
def revoke() -> Any:
    choices = i18n.REVOCATION_CHOICES
    if request.method == "POST":
        errors = FormErrors()
        card_number = request.form.get("card_number", "").strip() or None
        serial = request.form.get("serial", "").strip() or None
        reason_code = request.form.get("reason_code", "keyCompromise")
        if not card_number and not serial:
            errors["card_number"] = gettext("Enter the card number or a certificate serial.")
        if reason_code not in choices:
            errors["reason_code"] = gettext("Choose a revocation reason from the list.")
        if not request.form.get("reason", "").strip():
            errors["reason"] = gettext("Say why the card is revoked (for the record).")
        if not errors:
            try:
                info = _ra().submit_revocation(_actor(), card_number=card_number, serial=serial,
                                               reason=reason_code,
                                               comment=request.form.get("reason", ""))
            except (BadRequest, NotFound, Conflict) as exc:
                field = "card_number" if card_number else "serial"
                errors.service(exc, {
                    NotFound: (field, gettext("No such card or certificate is known to the RA.")),
                    Conflict: (field, gettext("Nothing left to revoke: the certificates are "
                                              "already revoked."))})
        if errors:
            return _form_page("revoke.html", errors, choices=choices)
        flash(gettext("Request submitted."), "info")
        return redirect(url_for("ui.request_detail", request_id=info["request_id"]))
    # the search page links here with the card or serial filled in
    return render_template("revoke.html", errors=FormErrors(), values=request.args,
                           choices=choices)


SEARCHES = ("cardholders", "certificates")


@ui.route("/search")
def search() -> Any:
    text = request.args.get("q", "")
    what = request.args.get("what", "cardholders")
    if what not in SEARCHES:
        raise InputRefused(gettext("Search for cardholders or certificates."))
    if what == "certificates":
        listing = Listing.from_args(("serial", "use", "status", "ssn", "name", "card_number"),
                                    "ssn")
        rows = _ra().search_certificates(_actor(), text)
    else:
        listing = Listing.from_args(("ssn", "name", "birth_date"), "ssn")
        rows = _ra().search_cardholders(_actor(), text)
    return _paged("search.html", listing, listing.slice(rows), len(rows), q=text, what=what,
                  may_revoke=may("ui.revoke"))


@ui.route("/recoveries", methods=["GET", "POST"])
def recoveries() -> Any:
    listing = Listing.from_args(tuple(RegistrationAuthority.REQUEST_ORDERS), "created")

    def page(errors: FormErrors, status: int = 200) -> Any:
        rows, total = _ra().requests_page(
            _actor(), state=RequestState.SUBMITTED, kind=RequestKind.KEY_RECOVERY,
            sort=listing.sort, descending=listing.descending, offset=listing.offset,
            limit=listing.size)
        return _paged("recoveries.html", listing, rows, total, errors=errors,
                      values=request.form), status

    if request.method == "POST":
        from sscard.x509.errors import X509Error
        from sscard.x509.pem import pem_to_der

        errors = FormErrors()
        enc_serial = request.form.get("enc_serial", "").strip()
        if not enc_serial:
            errors["enc_serial"] = gettext("Enter the serial of the encryption certificate.")
        try:
            spki = pem_to_der(request.form.get("new_card_key", "").encode(), "PUBLIC KEY")
        except (X509Error, ValueError):
            errors["new_card_key"] = gettext(
                "Paste the new card's public key in PEM (-----BEGIN PUBLIC KEY-----).")
        if not request.form.get("reason", "").strip():
            errors["reason"] = gettext("Say why the key is recovered (for the record).")
        if not errors:
            try:
                info = _ra().submit_key_recovery(_actor(), enc_serial, spki,
                                                 request.form.get("reason", ""))
            except (BadRequest, NotFound, Conflict) as exc:
                errors.service(exc, {NotFound: ("enc_serial", gettext(
                    "No card holds an encryption certificate with this serial."))})
        if errors:
            return page(errors, 400)
        flash(gettext("Request submitted."), "info")
        return redirect(url_for("ui.request_detail", request_id=info["request_id"]))
    return page(FormErrors())


@ui.route("/batches", methods=["GET", "POST"])
def batches() -> Any:
    listing = Listing.from_args(("name", "station", "authorised_by", "created_at",
                                 "expires_at", "used"), "created_at", default_descending=True)

    open_only = request.args.get("open", "")
    if open_only not in ("", "0", "1"):
        raise InputRefused(gettext("Show open (1) or closed (0) batches."))

    def page(errors: FormErrors, status: int = 200) -> Any:
        rows = [b for b in _ra().batches(_actor())
                if not open_only or b["active"] == (open_only == "1")]
        return _paged("batches.html", listing, listing.slice(rows), len(rows), errors=errors,
                      values=request.form), status

    if request.method == "POST":
        errors = FormErrors()
        name = request.form.get("name", "").strip()
        station = request.form.get("station", "").strip()
        if not name:
            errors["name"] = gettext("Give the batch a name.")
        if not station:
            errors["station"] = gettext("Enter the station (API client) that submits the batch.")
        try:
            limit = int(request.form.get("limit", ""))
            if limit < 1:
                raise ValueError
        except ValueError:
            errors["limit"] = gettext("The number of enrollments is a whole number, 1 or more.")
        try:
            hours = float(request.form.get("valid_hours", "12"))
            if not 0 < hours <= 31 * 24:
                raise ValueError
        except ValueError:
            errors["valid_hours"] = gettext("A batch is valid for more than 0 and at most 744 "
                                            "hours.")
        listed = request.form.get("cardholders", "").split()
        if not errors:
            try:
                _ra().authorise_batch(_actor(), name, limit, station=station,
                                      cardholders=listed or None,
                                      valid_for=dt.timedelta(hours=hours))
            except (BadRequest, Conflict) as exc:
                errors.service(exc, {Conflict: ("name", gettext(
                    "A batch of this name exists already; choose another name."))})
        if errors:
            return page(errors, 400)
        flash(gettext("Batch authorised."), "info")
        return redirect(url_for("ui.batches"))
    return page(FormErrors())


@ui.route("/audit")
def audit() -> Any:
    listing = Listing.from_args(("seq",), "seq", default_descending=True)
    errors = FormErrors()
    bounds: dict[str, dt.datetime | None] = {"since": None, "until": None}
    for field, end_of_day in (("since", False), ("until", True)):
        typed = request.args.get(field, "").strip()
        if typed:
            try:
                bounds[field] = i18n.parse_local(typed, end_of_day)
            except ValueError:
                errors[field] = gettext("Enter a date as YYYY-MM-DD.")
    if errors:
        return render_template("audit.html", rows=[], total=0, listing=listing, pages=1,
                               errors=errors, values=request.args), 400
    rows, total = _ra().audit_page(
        _actor(), action=request.args.get("action", "").strip() or None,
        actor_name=request.args.get("actor", "").strip() or None,
        since=bounds["since"], until=bounds["until"], offset=listing.offset,
        limit=listing.size)
    return _paged("audit.html", listing, rows, total, errors=errors, values=request.args)


@ui.route("/admin/officers", methods=["GET", "POST"])
def officers() -> Any:
    listing = Listing.from_args(("username", "display_name", "roles", "active"), "username")

    text = request.args.get("q", "").strip().lower()
    role = request.args.get("role", "")
    account = request.args.get("state", "")
    if role and role not in {r.value for r in Role}:
        raise InputRefused(gettext("Choose roles from the list."))
    if account not in ("", "enabled", "disabled", "locked"):
        raise InputRefused(gettext("Choose an account state from the list."))

    def shown(o: dict[str, Any]) -> bool:
        return ((not text or text in o["username"].lower()
                 or text in o["display_name"].lower())
                and (not role or role in o["roles"].split(","))
                and (not account or (account == "locked" and o["locked"])
                     or (account == "enabled" and o["active"])
                     or (account == "disabled" and not o["active"])))

    def page(errors: FormErrors, status: int = 200) -> Any:
        rows = [o for o in _ra().officers(_actor()) if shown(o)]
        return _paged("officers.html", listing, listing.slice(rows), len(rows), errors=errors,
                      values=request.form, all_roles=[r.value for r in Role],
                      chosen=request.form.getlist("roles")), status

    if request.method == "POST":
        errors = FormErrors()
        form = request.form
        for field, message in (
                ("username", gettext("Enter a user name.")),
                ("display_name", gettext("Enter the officer's name as it is shown.")),
                ("person_id", gettext("Enter the ID number of the person the account is for."))):
            if not form.get(field, "").strip():
                errors[field] = message
        if len(form.get("password", "")) < MIN_PASSWORD:
            errors["password"] = gettext("The password must have at least %(n)d characters.",
                                         n=MIN_PASSWORD)
        try:
            roles = {Role(r) for r in form.getlist("roles")}
        except ValueError:
            roles = set()
            errors["roles"] = gettext("Choose roles from the list.")
        if not roles:
            errors.setdefault("roles", gettext("Choose at least one role."))
        if not errors:
            try:
                _ra().add_officer(_actor(), form.get("username", "").strip(),
                                  form.get("display_name", "").strip(), form.get("password", ""),
                                  roles, person_id=form.get("person_id", "").strip())
            except (BadRequest, Conflict) as exc:
                errors.service(exc, {Conflict: ("username", gettext(
                    "This user name is taken; choose another."))})
        if errors:
            return page(errors, 400)
        flash(gettext("Account added; a second administrator enables it."), "info")
        return redirect(url_for("ui.officers"))
    return page(FormErrors())


@ui.route("/admin/officers/<username>/unlock", methods=["POST"])
def unlock(username: str) -> Any:
    _ra().unlock_officer(_actor(), username)
    flash(gettext("Account unlocked."), "info")
    return redirect(url_for("ui.officers"))


@ui.route("/admin/officers/<username>/enable", methods=["POST"])
def enable(username: str) -> Any:
    """Propose (first administrator) or complete (a second one) enabling an account."""
    done = _ra().enable_officer(_actor(), username)
    flash(gettext("Account enabled.") if done else
          gettext("Enabling proposed; a second administrator completes it."), "info")
    return redirect(url_for("ui.officers"))


@ui.route("/admin/officers/<username>/disable", methods=["POST"])
def disable(username: str) -> Any:
    _ra().disable_officer(_actor(), username)
    flash(gettext("Account disabled."), "info")
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


@api.route("/card-numbers/<serial>")
def card_number(serial: str) -> Any:
    """The card number for a signing certificate, its serial here and its issuer's name (DER,
    hex) in ``?issuer=``: the identity provider's verified card-number claim
    (RegistrationAuthority.card_number_of_certificate says who may ask)."""
    number = _ra().card_number_of_certificate(_actor(), request.args.get("issuer", ""), serial)
    if number is None:
        raise NotFound(f"no active card carries the certificate {serial}", "no_card_number")
    return jsonify({"card_number": number})


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
                      MAX_CONTENT_LENGTH=256 * 1024,
                      RA_OFFLINE_CERTIFICATE_LOGIN=config.offline_certificate_login)
    app.session_interface = ServerSessionInterface(ra)
    ra.card_number_readers = config.card_number_readers
    app.register_blueprint(ui)
    app.register_blueprint(api)
    limit_json(app)  # a deeply nested body is a 400, not a RecursionError
    i18n.init_app(app, config.timezone)
    app.jinja_env.globals.update(csrf_token=csrf_token, my_roles=_my_roles, may=may,
                                 card_login=config.card_login is not None,
                                 certificate_form=config.offline_certificate_login)
    # the logout form's redirect to the provider must pass the pages' CSP form-action
    form_action = "'self'"
    if config.card_login is not None:
        app.extensions["ra_card_login"] = CardLogin(app, config.card_login)
        form_action += " " + config.card_login.issuer_origin
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
            if request.url_rule is None:
                return _refuse(404, "not found", ui_message=gettext(
                    "There is no such page in the RA."))
            return _refuse(403, "this endpoint is not open to anyone",
                           ui_message=gettext("This page is not open to anyone."))
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
            flash(gettext("Please log in."), "error")
            return redirect(url_for("ui.login"))
        if kind == CLIENT:
            ok = CLIENT in allowed
        else:
            ok = bool({r.value for r in actor.roles} & allowed)
        if not ok:
            with ra.audit.operation(actor.audit_name, "ra.access", request.path) as op:
                op.deny(f"{request.method} {endpoint} not allowed for "
                        f"{','.join(sorted(r.value for r in actor.roles))}")
            return _refuse(403, "your role does not allow this",
                           ui_message=gettext("Your role does not allow this."))
        if not _is_api() and request.method == "POST":
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                with ra.audit.operation(actor.audit_name, "ra.csrf", request.path) as op:
                    op.deny("CSRF token missing or wrong")
                return _refuse(400, "the form's CSRF token is missing or wrong",
                               ui_message=str(CSRF_REFUSED))
        return None

    @app.before_request
    def _anonymous_csrf() -> Any:
        # the log-in forms carry the token too (log-in CSRF); checked here for anonymous POSTs
        if (not _is_api() and request.method == "POST" and getattr(g, "actor", None) is None
                and request.endpoint in ("ui.login", "ui.login_certificate")):
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                return _refuse(400, "the form's CSRF token is missing or wrong",
                               ui_message=str(CSRF_REFUSED))
        return None

    @app.errorhandler(RAError)
    def _ra_error(exc: RAError) -> Any:
        found = PROBLEMS.problem(exc) or problem.for_status(500, str(exc))
        return _refuse(found.status, found.detail, found.code,
                       ui_message=str(exc) if isinstance(exc, InputRefused) else
                       i18n.error_message(exc.code, exc.params))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if (exc.code or 500) < 400:
            return exc  # a routing redirect
        return _refuse(exc.code or 500, exc.description or exc.name, ui_message=gettext(
            "There is no such page in the RA.") if exc.code == 404 else None)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        app.logger.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return _refuse(500, "internal error; see the RA's log", "internal_error",
                       ui_message=gettext("Internal error; the RA's log has the details."))

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        # no inline script or style anywhere (Pico's icons are data: images in its CSS)
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                f"form-action {form_action}; frame-ancestors 'none'")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app


CSRF_REFUSED = lazy_gettext("The form was refused: its security token is missing or wrong. "
                            "Load the page again and try again.")


def _refuse(code: int, message: str, problem_code: str | None = None,
            ui_message: str | None = None) -> Any:
    """The API's problem document, or the UI's page: the kind of refusal in the reader's
    language and ``ui_message``, or else the RA's own words (which name the value concerned)."""
    if _is_api():
        return problem.response(problem.Problem(code, problem_code or
                                                problem.for_status(code, message).code, message))
    title = STATUS_TITLES.get(code) or STATUS_TITLES[400 if code < 500 else 500]
    return render_template("message.html", code=code, title=title,
                           message=ui_message or message,
                           translated=ui_message is not None), code

