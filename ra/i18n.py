"""The RA web UI's languages: gettext catalogs (ra/translations/<locale>/LC_MESSAGES/messages.po,
compiled to .mo) through Flask-Babel, Simplified Chinese by default (zh_CN, which CLDR and so
the catalog directory spell zh_Hans_CN) and English complete.

The language is the officer's choice (the switch on every page, kept in the session), else the
browser's Accept-Language, else Chinese. Codes are shown as names here: the national code tables
(sscard.codetables), the RA's request kinds and states, roles, card and certificate states and
RFC 5280 revocation reasons; raw codes stay in the JSON API. Times are shown in the RA's zone
(Asia/Shanghai unless configured) with the offset written out.

After editing a template or a message in ra/web.py: ``make translations`` (extract, update,
compile); tests/ra/test_browser_i18n.py fails while a message is untranslated or a .mo is stale."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import Flask, request, session
from flask_babel import Babel, get_locale, lazy_gettext
from jinja2 import pass_context
from markupsafe import Markup

from sscard import codetables
from sscard.x509.values import RevocationReason

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: the language switch's codes (kept in the session) -> gettext locales
LANGUAGES: Mapping[str, str] = {"zh": "zh_Hans_CN", "en": "en"}
DEFAULT_LANGUAGE = "zh"
DEFAULT_TIMEZONE = "Asia/Shanghai"


def language() -> str:
    """"zh" or "en": the session's choice, else the browser's, else Chinese."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"]) if request else None
    if best is None:
        return DEFAULT_LANGUAGE
    return "en" if best == "en" else "zh"


def _locale() -> str:
    return LANGUAGES[language()]


def init_app(app: Flask, timezone: str = DEFAULT_TIMEZONE) -> None:
    ZoneInfo(timezone)  # an unknown zone fails at start-up, not on the first page
    app.config.update(BABEL_DEFAULT_LOCALE="zh_Hans_CN", BABEL_DEFAULT_TIMEZONE=timezone,
                      BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS))
    Babel(app, locale_selector=_locale)
    app.extensions["sscard_ra_timezone"] = timezone
    app.jinja_env.globals.update(lang=language, names=NAMES)
    # a filter Jinja is not told depends on the request is folded at compile time when its
    # argument is a constant (``none | zone_name``): the zone's name would stay in the
    # language of the first page rendered
    app.jinja_env.filters.update(localtime=localtime,
                                 zone_name=pass_context(lambda _ctx, v=None: zone_name(v)))


def _zone() -> ZoneInfo:
    from flask import current_app

    return ZoneInfo(current_app.extensions.get("sscard_ra_timezone", DEFAULT_TIMEZONE))


def _as_datetime(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        when = value
    else:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def localtime(value: str | dt.datetime | None) -> str:
    """A stored time (ISO 8601, UTC) in the RA's zone, with its offset: 2026-03-01 17:05:09
    +08:00 (the zone's name is in every page's footer)."""
    if not value:
        return ""
    return format_datetime(_as_datetime(value), "yyyy-MM-dd HH:mm:ss xxx", tzinfo=_zone(),
                           locale=str(get_locale()))


def zone_name(_value: Any = None) -> str:
    """The RA's zone as the reader's language names it (中国标准时间, China Standard Time)."""
    return format_datetime(dt.datetime.now(dt.UTC), "zzzz", tzinfo=_zone(),
                           locale=str(get_locale()))


def parse_local(text: str, end_of_day: bool = False) -> dt.datetime:
    """A date (YYYY-MM-DD) or date and time typed by a user, in the RA's zone; a bare date
    taken as the start of that day, or the start of the next with ``end_of_day``."""
    when = dt.datetime.fromisoformat(text.strip())
    if end_of_day and len(text.strip()) == 10:
        when += dt.timedelta(days=1)
    return when.replace(tzinfo=_zone()) if when.tzinfo is None else when


_l = lazy_gettext

KINDS = {"enrollment": _l("Enrollment"), "revocation": _l("Revocation"),
         "renewal": _l("Renewal"), "key_recovery": _l("Key recovery")}
STATES = {"submitted": _l("Waiting for a decision"), "approved": _l("Approved, being carried out"),
          "done": _l("Done"), "rejected": _l("Rejected"), "failed": _l("Failed")}
ROLES = {"operator": _l("Operator"), "officer": _l("Officer"), "auditor": _l("Auditor"),
         "administrator": _l("Administrator")}
DECISIONS = {"approve": _l("Approved"), "reject": _l("Rejected")}
CARD_STATES = {"personalising": _l("Being personalised"), "active": _l("In use"),
               "spoiled": _l("Spoiled (not issued)"), "revoked": _l("Revoked")}
CERT_STATES = {"good": _l("Valid"), "revoked": _l("Revoked"), "unknown": _l("Unknown")}
USES = {"sign": _l("Signing"), "enc": _l("Encryption")}
OUTCOMES = {"success": _l("Succeeded"), "denied": _l("Denied"), "failure": _l("Failed"),
            "attempt": _l("Attempted"), "error": _l("Error"), "info": _l("Information")}
REASONS = {
    RevocationReason.unspecified.name: _l("Unspecified"),
    RevocationReason.keyCompromise.name: _l("Key compromised (card lost or stolen)"),
    RevocationReason.cACompromise.name: _l("CA compromised"),
    RevocationReason.affiliationChanged.name: _l("Cardholder's details changed"),
    RevocationReason.superseded.name: _l("Replaced by a new card"),
    RevocationReason.cessationOfOperation.name: _l("Card withdrawn from use"),
    RevocationReason.certificateHold.name: _l("On hold"),
    RevocationReason.removeFromCRL.name: _l("Removed from the CRL"),
    RevocationReason.privilegeWithdrawn.name: _l("Privilege withdrawn"),
    RevocationReason.aACompromise.name: _l("Attribute authority compromised"),
}
#: names of the audit log's actions (sscard.audit.actions.AuditAction), by code
ACTIONS = {
    "ca.hierarchy.init": _l("CA hierarchy set up"),
    "ca.hierarchy.import_issuing": _l("Issuing CA imported"),
    "ca.certificate.issue": _l("Certificate issued"),
    "ca.certificate.revoke": _l("Certificate revoked"),
    "ca.crl.issue": _l("CRL issued"),
    "ca.api.refused": _l("CA request refused"),
    "ca.issue.dual_control": _l("Issuance under dual control"),
    "ca.principal.add": _l("CA caller added"),
    "ca.principal.remove": _l("CA caller removed"),
    "ca.admin.add": _l("CA administrator added"),
    "ca.admin.remove": _l("CA administrator removed"),
    "kmc.ceremony.run": _l("Key ceremony held"),
    "kmc.ceremony.unseal": _l("Key centre unsealed"),
    "kmc.caller.add": _l("Key centre caller added"),
    "kmc.caller.deactivate": _l("Key centre caller deactivated"),
    "kmc.escrow.generate": _l("Escrowed key generated"),
    "kmc.escrow.certificate": _l("Escrowed key's certificate recorded"),
    "kmc.recovery.request": _l("Key recovery requested"),
    "kmc.recovery.judicial.request": _l("Judicial key recovery requested"),
    "kmc.recovery.approve": _l("Key recovery approved"),
    "kmc.recovery.reject": _l("Key recovery rejected"),
    "kmc.recovery.complete": _l("Key recovered"),
    "kmc.cardkey.generate": _l("Card keys generated"),
    "kmc.cardkey.import_root": _l("Card root key imported"),
    "kmc.cardkey.export_psam": _l("Keys exported for a PSAM"),
    "ra.access": _l("Page or action refused"),
    "ra.csrf": _l("Form without a valid security token"),
    "ra.login": _l("Log-in"),
    "ra.logout": _l("Log-out"),
    "ra.officer.add": _l("Officer added"),
    "ra.officer.certificate": _l("Officer's certificate registered"),
    "ra.officer.unlock": _l("Officer unlocked"),
    "ra.officer.enable": _l("Officer enabled"),
    "ra.officer.disable": _l("Officer disabled"),
    "ra.officer.password": _l("Password changed"),
    "ra.client.add": _l("Station added"),
    "ra.batch.authorise": _l("Batch authorised"),
    "ra.card.activate": _l("Card activated"),
    "ra.card.lookup": _l("Card number looked up"),
    "ra.enrollment.submit": _l("Enrollment submitted"),
    "ra.enrollment.issue": _l("Card certificates issued"),
    "ra.enrollment.rollback": _l("Enrollment rolled back"),
    "ra.request.approve": _l("Request approved"),
    "ra.request.reject": _l("Request rejected"),
    "ra.revocation.submit": _l("Revocation submitted"),
    "ra.revocation.execute": _l("Revocation carried out"),
    "ra.renewal.submit": _l("Renewal submitted"),
    "ra.renewal.issue": _l("Renewed certificate issued"),
    "ra.recovery.submit": _l("Key recovery submitted"),
    "ra.recovery.execute": _l("Key recovery carried out"),
    "gateway.sign": _l("Signed"),
    "gateway.sign_batch": _l("Signed in a batch"),
    "gateway.verify": _l("Signature verified"),
    "gateway.verify_batch": _l("Signatures verified in a batch"),
    "gateway.encrypt": _l("Encrypted"),
    "gateway.decrypt": _l("Decrypted"),
    "gateway.status": _l("Certificate status checked"),
    "gateway.cardholder_challenge": _l("Cardholder challenge issued"),
    "gateway.cardholder_verify": _l("Cardholder verified"),
    "idp.authorize": _l("Sign-in authorised for an application"),
    "idp.client.add": _l("Sign-in application added"),
    "idp.client.remove": _l("Sign-in application removed"),
    "idp.code.exchange": _l("Sign-in code exchanged for tokens"),
    "idp.key.rotate": _l("Sign-in signing key rotated"),
    "idp.login": _l("Card sign-in"),
    "idp.logout": _l("Card sign-out"),
}
#: the RA's refusals by message id (ra.errors.RAError.code; ra.policy.Decision.code), said in
#: the reader's language with the values they name (``error_message``); the JSON API keeps the
#: service's English detail
ERRORS = {
    "login_refused": _l("Log-in refused: wrong user name or password, or too many failed "
        "attempts (wait, or ask an administrator to unlock the account)."),
    "certificate_login_refused": _l("Log-in with the card refused: no account with a registered "
        "certificate of that name, the certificate is not valid, or the signature does not "
        "verify."),
    "ca_unreachable": _l("The CA cannot be reached now; try again later. Cause: %(detail)s"),
    "waiting_for_ca": _l("Waiting for the CA, which cannot be reached now: the request stays "
        "approved and is carried on when submitted again. Cause: %(detail)s"),
    "waiting_for_kmc": _l("Waiting for the key management centre, which cannot be reached now: "
        "the request stays approved and is carried on when submitted again. Cause: %(detail)s"),
    "concurrent_change": _l("The record changed meanwhile (another officer or station acted at "
        "the same time); try again."),
    "role_needed": _l("%(name)s may not do this: it needs the role %(roles)s."),
    "another_clients_request": _l("Request %(request_id)s was filed by another station."),
    "bad_username": _l("The user name %(username)s is not valid: use 1-64 letters, digits, "
        "hyphens, underscores or dots."),
    "bad_person_id": _l("The person's ID number must be 1-64 letters or digits."),
    "password_too_short": _l("The password must have at least %(n)d characters."),
    "no_role": _l("Choose at least one role."),
    "administrator_only": _l("An administrator account administers accounts only; give the "
        "person a second account for the roles %(roles)s."),
    "officer_exists": _l("An account named %(username)s already exists."),
    "officer_enabled": _l("The account %(username)s is already enabled."),
    "own_account": _l("An administrator cannot enable an account of their own person."),
    "same_administrator": _l("Enabling the account %(username)s was proposed by %(proposer)s; a "
        "second administrator (another person) must enable it."),
    "no_officer": _l("There is no account named %(username)s."),
    "batch_name": _l("A batch needs a name of 1-64 characters."),
    "batch_limit": _l("A batch covers at least one enrollment."),
    "batch_validity": _l("A batch is valid for more than 0 and at most 744 hours (31 days)."),
    "batch_bad_ssns": _l("Not social security numbers: %(ssns)s."),
    "batch_empty": _l("The batch's list of cardholders is empty."),
    "batch_over_list": _l("The batch lists %(listed)d cardholders but allows %(limit)d "
        "enrollments."),
    "no_station": _l("There is no active station (API client) named %(station)s."),
    "batch_exists": _l("A batch named %(name)s already exists."),
    "card_or_serial": _l("Name either the card number or a certificate serial."),
    "no_card": _l("There is no card numbered %(card_number)s."),
    "card_without_certificates": _l("Card %(card_number)s has no certificates to revoke."),
    "unknown_certificate": _l("Certificate %(serial)s was never issued by this CA."),
    "already_revoked": _l("Certificate %(serial)s is already revoked."),
    "bad_serial": _l("%(serial)s is not a certificate serial number (hexadecimal digits)."),
    "no_ca": _l("The RA is not connected to a CA."),
    "no_kmc": _l("The RA is not connected to a key management centre."),
    "no_ca_kmc": _l("The RA is not connected to a CA and a key management centre."),
    "renewal_failed": _l("The renewal failed. Cause: %(detail)s"),
    "issuance_failed": _l("Issuing the certificates failed. Cause: %(detail)s"),
    "escrow_failed": _l("Escrowing the encryption key failed. Cause: %(detail)s"),
    "revocation_failed": _l("Revoking certificate %(serial)s failed. Cause: %(detail)s"),
    "kmc_refused": _l("The key management centre refused. Cause: %(detail)s"),
    "recovery_failed": _l("The key recovery at the key management centre failed. Cause: "
        "%(detail)s"),
    "recovery_reason": _l("Say why the key is recovered (for the record)."),
    "bad_card_key": _l("The new card's signing key is not a valid public key."),
    "card_key_not_sm2": _l("The new card's signing key must be SM2."),
    "no_encryption_certificate": _l("No card holds the encryption certificate %(serial)s."),
    "rejection_reason": _l("Give the reason for the rejection: the requester reads it."),
    "decision_race": _l("Request %(request_id)s kept changing while it was decided; try again."),
    "no_officer_account": _l("%(name)s has no enabled officer account."),
    "no_request": _l("There is no request %(request_id)s."),
    "bad_sort": _l("This list cannot be sorted by %(sort)s."),
    "batch_cardholder_enrolled": _l("Cardholder %(ssn)s is already enrolled in this batch."),
    "batch_used_up": _l("Batch %(name)s is used up (%(limit)d enrollments)."),
    "not_an_officer": _l("%(name)s is not an RA officer: only an officer decides requests."),
    "administrator_decides": _l("%(name)s is an administrator account; administrators do not "
        "decide requests."),
    "not_waiting": _l("The request is no longer waiting for a decision (its state: %(state)s)."),
    "own_request": _l("The requester cannot decide their own request: another officer decides it."),
    "already_decided": _l("The person behind %(name)s has already decided this request; a second "
        "approval must come from another officer (another person)."),
    "no_batch": _l("There is no such pre-authorised batch."),
    "batch_enrollments_only": _l("Only enrollments can be pre-authorised."),
    "batch_closed": _l("Batch %(name)s is closed."),
    "batch_other_station": _l("Batch %(name)s is not authorised for %(station)s."),
    "batch_expired": _l("Batch %(name)s has expired."),
    "batch_other_cardholder": _l("Cardholder %(ssn)s is not in batch %(name)s."),
    "batch_own": _l("The officer who authorised the batch cannot also submit into it."),
    "challenge_spent": _l("The log-in challenge is unknown, used or expired; load the page again."),
    "card_login_refused": _l("Log-in with the card refused: the card's certificate is "
        "registered for no enabled officer account, the provider refused it, or the log-in "
        "was not started here. Start again from the log-in page."),
    "certificate_login_needs_ca": _l("Log-in with the card needs the CA, and the RA is not "
        "connected to one."),
    "bad_client_name": _l("The station name %(name)s is not valid: use 1-64 letters, digits, "
        "hyphens, underscores or dots."),
    "no_token": _l("No access token was sent."),
    "bad_card_id": _l("The card identification code must be 32 hexadecimal digits."),
    "bad_card_number": _l("The card number must be 1-9 characters."),
    "csr_subject": _l("The certificate request does not name this cardholder."),
    "card_other_station": _l("Card %(card_id)s is already registered by another station."),
    "card_registered": _l("Card %(card_id)s is already registered."),
    "cardholder_differs": _l("Cardholder %(ssn)s is registered with different details."),
    "certificate_other_person": _l("The certificate names another person than the account's."),
    "certificate_taken": _l("This certificate is already registered for the account %(username)s."),
    "bad_client_certificate": _l("The certificate of the station %(name)s is not valid."),
    "unknown_client_certificate": _l("The request's certificate belongs to no active station."),
    "unknown_token": _l("Unknown or deactivated access token."),
    "bad_cardholder_data": _l("The cardholder's details were not accepted. Cause: %(detail)s"),
    "bad_csr": _l("The certificate request was not accepted. Cause: %(detail)s"),
    "card_not_issued": _l("Card %(card_number)s is not in use (%(card_state)s): only a card in "
        "use is renewed."),
    "kmc_no_key": _l("The key management centre returned no enveloped key for the card."),
    "not_issued": _l("Request %(request_id)s is not done (%(state)s): only an issued enrollment "
        "activates its card."),
    "card_state": _l("Card %(card_number)s cannot be activated (%(card_state)s)."),
    "not_an_enrollment": _l("Request %(request_id)s is not an enrollment."),
    "card_issued": _l("Card %(card_number)s is issued: revoke it instead."),
    "client_exists": _l("A station named %(name)s or with this certificate already exists."),
    "card_number_taken": _l("The card number %(card_number)s is already taken by another card."),
    "card_number_not_allowed": _l("This caller may not look card numbers up."),
    "bad_issuer": _l("The certificate's issuer is missing or not a valid name."),
    "foreign_issuer": _l("The certificate was not issued by this RA's CA."),
    "bad_certificate": _l("The certificate is not valid. Cause: %(detail)s"),
    "bad_reason": _l("%(reason)s is not a revocation reason."),
}
#: the reasons an officer may pick when revoking a card's certificates
REVOCATION_CHOICES = ("keyCompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "unspecified")


def _table(table: Mapping[str, Any], code: Any) -> str:
    """A code's name; a code the table does not know is shown as it is."""
    if code is None:
        return ""
    name = table.get(str(code))
    return str(code) if name is None else str(name)


def _coded(lookup: Any, code: Any) -> str:
    if code is None:
        return ""
    found = lookup(str(code), language())
    return f"{code}" if found is None else str(found)


#: the names templates show for codes: ``names.kind(r.kind)``
class _Names:
    def kind(self, code: Any) -> str:
        return _table(KINDS, code)

    def state(self, code: Any) -> str:
        return _table(STATES, code)

    def role(self, code: Any) -> str:
        return _table(ROLES, code)

    def roles(self, codes: str | list[str]) -> str:
        listed = codes.split(",") if isinstance(codes, str) else codes
        return "、".join(self.role(c) for c in listed if c) if language() == "zh" else \
            ", ".join(self.role(c) for c in listed if c)

    def decision(self, code: Any) -> str:
        return _table(DECISIONS, code)

    def card_state(self, code: Any) -> str:
        return _table(CARD_STATES, code)

    def cert_state(self, code: Any) -> str:
        return _table(CERT_STATES, code)

    def use(self, code: Any) -> str:
        return _table(USES, code)

    def outcome(self, code: Any) -> str:
        return _table(OUTCOMES, code)

    def action(self, code: Any) -> str:
        return _table(ACTIONS, code)

    def reason(self, code: Any) -> str:
        return _table(REASONS, code)

    def sex(self, code: Any) -> str:
        return _coded(codetables.sex_name, code)

    def ethnicity(self, code: Any) -> str:
        return _coded(codetables.ethnicity_name, code)

    def region(self, code: Any) -> str:
        return _coded(codetables.region_name, code)

    def birth_date(self, code: Any) -> str:
        text = str(code or "")
        if len(text) == 8 and text.isdigit():
            return f"{text[:4]}-{text[4:6]}-{text[6:]}"
        return text


NAMES = _Names()

#: parameters that are codes, shown by their names (any other value is data: shown as it is)
_CODED_PARAMS = {"roles": NAMES.roles, "state": NAMES.state, "card_state": NAMES.card_state}


def error_message(code: str, params: Mapping[str, Any]) -> Markup | None:
    """A refusal (``ERRORS`` message id and its values) in the reader's language; None for an
    id the catalog does not know. Values are data (names, numbers, the upstream's own words):
    escaped and marked translate="no"; codes among them are shown as names."""
    template = ERRORS.get(code)
    if template is None:
        return None
    shown: dict[str, Any] = {}
    for key, value in params.items():
        if key in _CODED_PARAMS:
            shown[key] = _CODED_PARAMS[key](value)
        elif isinstance(value, int):
            shown[key] = value
        else:
            shown[key] = Markup('<span translate="no">{}</span>').format(value)
    return Markup.escape(str(template)) % shown
