"""RFC 3161 time-stamps for CMS signatures: asking for a token and checking one.

Transport stays outside: a ``TimeStamper`` wraps any ``bytes -> bytes`` function that takes a
TimeStampReq DER and returns the TimeStampResp DER (an HTTP POST, or the TSA in-process).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, core, tsp, x509

from sscard.cms.errors import CmsBuildError, CmsParseError
from sscard.cms.signer_check import Finding, attribute, check_signer_info, find_signer
from sscard.crypto.hashes import digest


class _TimeStampResp(core.Sequence):
    """TimeStampResp with the token OPTIONAL, as RFC 3161 has it (asn1crypto makes it
    mandatory, so a rejection would not parse)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class TimeStamper:
    """How to get a token: the transport function and the request options."""

    fetch: Callable[[bytes], bytes]
    policy: str | None = None
    cert_req: bool = True


def request_der(message: bytes, hash_name: str, *, nonce: int, policy: str | None = None,
                cert_req: bool = True) -> bytes:
    req: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name},
                            "hashed_message": digest(hash_name, message)},
        "nonce": nonce,
        "cert_req": cert_req,
    }
    if policy:
        req["req_policy"] = policy
    return tsp.TimeStampReq(req).dump()


def fetch_token(stamper: TimeStamper, message: bytes, hash_name: str) -> cms.ContentInfo:
    """Ask for a token over ``message``; check that the answer is granted and is for our
    imprint and nonce. Raises CmsBuildError naming the problem."""
    nonce = secrets.randbits(63)
    req = request_der(message, hash_name, nonce=nonce, policy=stamper.policy,
                      cert_req=stamper.cert_req)
    try:
        answer = stamper.fetch(req)
    except Exception as exc:
        raise CmsBuildError(f"the time-stamp authority could not be reached: {exc}") from exc
    try:
        resp = _TimeStampResp.load(answer, strict=True)
        status = resp["status"]["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsBuildError(f"the time-stamp answer is not a TimeStampResp: {exc}") from None
    if status not in ("granted", "granted_with_mods"):
        text = "; ".join(resp["status"]["status_string"].native or [])
        raise CmsBuildError(f"the time-stamp authority refused: {status} {text}".strip())
    token = resp["time_stamp_token"]
    info = tst_info(token)
    imprint = info["message_imprint"]
    if info["nonce"].native != nonce:
        raise CmsBuildError("the time-stamp token does not carry our nonce")
    if not hmac.compare_digest(imprint["hashed_message"].native, digest(hash_name, message)):
        raise CmsBuildError("the time-stamp token is for a different message imprint")
    return cms.ContentInfo.load(token.dump())


def tst_info(token: cms.ContentInfo) -> tsp.TSTInfo:
    try:
        if token["content_type"].native != "signed_data":
            raise CmsParseError("a time-stamp token must be a SignedData")
        encap = token["content"]["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise CmsParseError("the time-stamp token does not hold a TSTInfo")
        info = encap["content"].parsed
        info.native  # noqa: B018  (force the full parse now)
        return info
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsParseError(f"malformed time-stamp token: {exc}") from None


@dataclass(frozen=True)
class TokenCheck:
    """What a token says and what is wrong with it (path validation is the caller's)."""

    gen_time: datetime | None
    tsa_certificate: x509.Certificate | None
    certificates: tuple[x509.Certificate, ...]
    findings: tuple[Finding, ...]


def check_token(token: cms.ContentInfo, message: bytes,
                extra_certificates: tuple[x509.Certificate, ...] = ()) -> TokenCheck:
    """Check a token's imprint against ``message`` and its own signature; findings use the
    TIMESTAMP_* codes."""
    try:
        info = tst_info(token)
    except CmsParseError as exc:
        return TokenCheck(None, None, (), (("TIMESTAMP_INVALID", str(exc)),))
    signed = token["content"]
    certs = tuple(c.chosen for c in signed["certificates"] or () if c.name == "certificate")
    certs = certs + extra_certificates
    gen_time = info["gen_time"].native
    findings: list[Finding] = []
    imprint = info["message_imprint"]
    hash_name = imprint["hash_algorithm"]["algorithm"].native
    try:
        expected = digest(hash_name, message)
    except ValueError:
        return TokenCheck(gen_time, None, certs,
                          (("TIMESTAMP_INVALID", f"unsupported imprint hash {hash_name}"),))
    if not hmac.compare_digest(imprint["hashed_message"].native, expected):
        findings.append(("TIMESTAMP_MISMATCH",
                         "the time-stamp token is not over this signature"))
    infos = signed["signer_infos"]
    if len(infos) != 1:
        findings.append(("TIMESTAMP_INVALID", "a time-stamp token must have one signer"))
        return TokenCheck(gen_time, None, certs, tuple(findings))
    signer = infos[0]
    tsa_cert = find_signer(signer["sid"], certs)
    if tsa_cert is None:
        findings.append(("TIMESTAMP_INVALID",
                         "the time-stamp authority's certificate is not in the token"))
        return TokenCheck(gen_time, None, certs, tuple(findings))
    for code, message_text in check_signer_info(
        signer, tsa_cert, bytes(signed["encap_content_info"]["content"]), "tst_info"
    ):
        findings.append(("TIMESTAMP_INVALID", f"time-stamp token: {code}: {message_text}"))
    ess = attribute(signer["signed_attrs"], "signing_certificate_v2")
    if ess is None:
        ess = attribute(signer["signed_attrs"], "signing_certificate")
    if ess is None:
        findings.append(("TIMESTAMP_INVALID",
                         "the time-stamp token lacks the ESS signing-certificate attribute"))
    return TokenCheck(gen_time, tsa_cert, certs, tuple(findings))
