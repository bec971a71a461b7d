"""A cardholder PKI for the login tests: root -> issuing CA -> cardholder certificates of the
card profiles (signing: the one that authenticates; encryption; a revoked and an expired one),
a CRL naming the revoked one, and a token made by a software key or the emulated card."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sscard.cms.verify import TrustConfig
from sscard.gateway.config import CARDHOLDER_ENCRYPT_POLICY, CARDHOLDER_SIGN_POLICY
from sscard.idp.authtoken import AuthToken, signed_data
from sscard.keys.base import KeyHandle
from tests.cms.pki import NOW, Issued, make_ca, make_crl, make_leaf
from tests.cms.revocation_http import sources

SSN = "350102199001011234"
NAME = "张三"


def _policy(oid: str) -> list[tuple[str, object, bool]]:
    return [("certificate_policies", [{"policy_identifier": oid}], False)]


def holder(issuer: Issued, algorithm: str = "sm2", ssn: str = SSN, name: str = NAME,
           **kwargs: object) -> Issued:
    extra = kwargs.pop("extra", _policy(CARDHOLDER_SIGN_POLICY))
    return make_leaf(f"CN={name},serialNumber={ssn},C=CN", issuer, algorithm, ssn=ssn,
                     extra=extra, **kwargs)  # type: ignore[arg-type]


@dataclass
class LoginPki:
    root: Issued
    ca: Issued
    sign: Issued
    es256: Issued
    encrypt: Issued
    nonrepudiation_only: Issued
    revoked: Issued
    expired: Issued
    outsider: Issued
    card_extensions: list[tuple[str, Any, bool]] = field(default_factory=list)
    """Extra extensions of the emulated card's certificate (agent_rig.personalised_card)."""

    def trust(self, cache_seconds: float = 0.0) -> TrustConfig:
        crl = make_crl(self.ca, [(self.revoked.cert, NOW - timedelta(hours=1))])
        return TrustConfig(trust_anchors=[self.root.cert], intermediates=[self.ca.cert],
                           crls=[crl, make_crl(self.root)], cache_seconds=cache_seconds)


def make_login_pki(publication: str | None = None) -> LoginPki:
    """With ``publication`` (an HTTP server's URL), the issuing CA names the root's CRL there
    (``/root.crl``) and the card's certificate its OCSP responder (``/ocsp``) and CRL
    (``/ca.crl``): what a provider that fetches revocation follows."""
    root = make_ca("CN=Login Test Root,O=人社厅,C=CN")
    ca = make_ca("CN=Login Test Cardholder CA,O=人社厅,C=CN", root,
                 extra=sources(None, publication + "/root.crl") if publication else ())
    other_root = make_ca("CN=Another Root,C=CN")
    return LoginPki(
        root, ca,
        sign=holder(ca),
        es256=holder(ca, "ec-p256"),
        encrypt=holder(ca, key_usage=("key_agreement", "key_encipherment", "data_encipherment"),
                       extra=_policy(CARDHOLDER_ENCRYPT_POLICY)),
        nonrepudiation_only=holder(ca, key_usage=("non_repudiation",)),
        revoked=holder(ca, ssn="350102199505055678", name="赵六"),
        expired=holder(ca, not_before=NOW - timedelta(days=400),
                       not_after=NOW - timedelta(days=1)),
        outsider=holder(other_root),
        card_extensions=(sources(publication + "/ocsp", publication + "/ca.crl")
                         if publication else []),
    )


def make_token(key: KeyHandle, cert_der: bytes, origin: str, nonce: str,
               algorithm: str = "SM2-SM3") -> AuthToken:
    return AuthToken(cert_der, algorithm, key.sign(signed_data(algorithm, origin, nonce)), origin)
