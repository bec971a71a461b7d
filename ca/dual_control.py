"""Dual control for CA-level issuance: two administrators approve a request before
``sscard ca issue`` signs a certificate of a CA-level profile (sub-CA, OCSP signer, TSA,
service identities).

Each administrator holds a key pair of their own (``sscard key generate``, an encrypted PKCS#8
file under their own passphrase) whose public key is registered in the CA's access file
(``sscard ca admin add``). An approval is a small JSON document that one administrator signs
over exactly what will be issued: the CA, the profile, the SHA-256 of the request (the CSR's
DER), the request fields (SIN, DNS names, validity) and an expiry. ``check_approvals`` wants
approvals by at least two distinct registered administrators, each with a valid signature over
that very request, unexpired; anything else is refused with the reason, and nothing is issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ca.authorization import AccessConfig
from ca.errors import CAError
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.keys.base import KeyHandle
from sscard.x509.pem import pem_blocks

REQUIRED_APPROVALS = 2
APPROVAL_CONTEXT = b"sscard-ca-approval-v1\n"
MAX_APPROVAL_VALIDITY = timedelta(days=7)


class ApprovalError(CAError):
    """Dual control not met: missing, forged, foreign, expired or duplicate approvals."""


@dataclass(frozen=True)
class IssueIntent:
    """What the administrators approve: one issuance, exactly."""

    ca: str
    profile: str
    request_sha256: str
    extra: Mapping[str, Any]

    @classmethod
    def of(cls, ca: str, profile: str, request_der: bytes,
           extra: Mapping[str, Any] | None = None) -> IssueIntent:
        return cls(ca, profile, hashlib.sha256(request_der).hexdigest(), dict(extra or {}))

    def fields(self) -> dict[str, Any]:
        return {"ca": self.ca, "profile": self.profile, "request_sha256": self.request_sha256,
                "extra": dict(self.extra)}


def _message(doc: Mapping[str, Any]) -> bytes:
    signed = {k: v for k, v in doc.items() if k != "signature"}
    return APPROVAL_CONTEXT + json.dumps(signed, sort_keys=True, ensure_ascii=False,
                                         separators=(",", ":")).encode("utf-8")


def sign_approval(key: KeyHandle, administrator: str, intent: IssueIntent,
                  validity: timedelta = timedelta(hours=24),
                  now: datetime | None = None) -> bytes:
    """One administrator's approval of ``intent``, as JSON bytes."""
    if not timedelta(0) < validity <= MAX_APPROVAL_VALIDITY:
        raise ApprovalError(f"an approval is valid for at most {MAX_APPROVAL_VALIDITY.days} days")
    now = now or datetime.now(UTC)
    doc: dict[str, Any] = {"version": 1, "administrator": administrator, **intent.fields(),
                           "expires": (now + validity).isoformat()}
    doc["signature"] = base64.b64encode(key.sign(_message(doc))).decode("ascii")
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")


def _public_key(pem: str) -> PublicKey:
    return PublicKey.from_spki(pem_blocks(pem.encode("ascii"))[0][1])


def check_approvals(access: AccessConfig, intent: IssueIntent, approvals: Iterable[bytes],
                    now: datetime | None = None,
                    required: int = REQUIRED_APPROVALS) -> list[str]:
    """The administrators whose approvals hold; raises ``ApprovalError`` (naming each
    problem) unless at least ``required`` distinct registered administrators approved
    exactly ``intent``."""
    now = now or datetime.now(UTC)
    approved: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(approvals, 1):
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            name = str(doc.get("administrator"))
            admin = access.administrators.get(name)
            if admin is None:
                raise ValueError(f"administrator {name!r} is not registered in the CA's "
                                 "access file")
            for key, value in intent.fields().items():
                if doc.get(key) != value:
                    raise ValueError(f"it approves another {key} ({doc.get(key)!r})")
            if doc.get("version") != 1:
                raise ValueError("unknown approval version")
            expires = datetime.fromisoformat(str(doc.get("expires")))
            if expires.tzinfo is None or expires <= now:
                raise ValueError(f"it expired at {doc.get('expires')}")
            if expires - now > MAX_APPROVAL_VALIDITY:
                raise ValueError("its expiry is too far in the future")
            signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
            _public_key(admin.public_key_pem).verify(signature, _message(doc))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            problems.append(f"approval {number}: {exc}")
            continue
        except CryptoError:
            problems.append(f"approval {number}: the signature of {name} does not verify")
            continue
        if name in approved:
            problems.append(f"approval {number}: {name} already approved (one person, "
                            "one approval)")
            continue
        approved.append(name)
    if len(approved) < required:
        detail = "; ".join(problems) if problems else "none given"
        raise ApprovalError(
            f"profile {intent.profile} is CA-level and needs approvals by {required} distinct "
            f"administrators; valid: {', '.join(approved) or 'none'} ({detail})")
    return approved
