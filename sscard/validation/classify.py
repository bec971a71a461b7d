"""Turn pyhanko-certvalidator's exceptions into this package's reason codes.

pyhanko raises one ``PathValidationError`` class for many RFC 5280 §6 checks and tells them
apart only in the message, so those are told apart here by the message's wording; the PKITS
test pins every section's failures to the code expected for it, so a change of wording in a
new pyhanko release shows up there.
"""

from __future__ import annotations

import re

from pyhanko_certvalidator import errors as pv

from sscard.validation.result import Reason, ReasonCode
from sscard.x509.values import RevocationReason

_MESSAGE_CODES: tuple[tuple[re.Pattern[str], ReasonCode], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"signature .* could not be verified|signature parameters", ReasonCode.BAD_SIGNATURE),
        (r"issuer name could not be matched", ReasonCode.ISSUER_MISMATCH),
        (r"namespace of the issuing authority", ReasonCode.NAME_CONSTRAINTS),
        (r"polic", ReasonCode.POLICY),
        (r"is not a CA", ReasonCode.NOT_A_CA),
        (r"maximum path length", ReasonCode.PATH_LENGTH),
        (r"not allowed to sign certificates", ReasonCode.KEY_USAGE),
        (r"unsupported critical extension", ReasonCode.UNSUPPORTED_CRITICAL_EXTENSION),
    )
)


def reason_from_exception(exc: Exception) -> Reason:
    """The reason that a pyhanko validation or path-building exception stands for."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, pv.RevokedError):
        return Reason(
            ReasonCode.REVOKED,
            message,
            revocation_reason=RevocationReason.from_asn1(str(exc.reason.native)).name,
            revocation_time=exc.revocation_dt,
        )
    if isinstance(exc, pv.ExpiredError):
        return Reason(ReasonCode.EXPIRED, message)
    if isinstance(exc, pv.NotYetValidError):
        return Reason(ReasonCode.NOT_YET_VALID, message)
    if isinstance(exc, pv.InsufficientRevinfoError):
        return Reason(ReasonCode.REVOCATION_UNKNOWN, message)
    if isinstance(exc, pv.DisallowedAlgorithmError):
        return Reason(ReasonCode.WEAK_ALGORITHM, message)
    if isinstance(exc, pv.PathBuildingError):
        return Reason(ReasonCode.UNTRUSTED_ROOT, message)
    if isinstance(exc, pv.InvalidCertificateError) and "self-signed" in message:
        return Reason(
            ReasonCode.UNTRUSTED_ROOT,
            f"{message}, and not one of the trust anchors",
        )
    for pattern, code in _MESSAGE_CODES:
        if pattern.search(message):
            return Reason(code, message)
    return Reason(ReasonCode.INVALID, message)
