"""The signing fast path (SignedDataTemplate) writes exactly what asn1crypto writes for the same
SignedData: checked byte for byte with deterministic signatures (RSA PKCS#1 v1.5, Ed25519)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asn1crypto import cms

from sscard.cms import Flavour, sign
from sscard.cms.content_types import content_type
from sscard.cms.signed import digest_name_for, signing_certificate_v2
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.hashes import digest
from tests.cms.pki import Pki, make_pki

WHEN = datetime(2026, 11, 28, 8, 30, 15, tzinfo=UTC)
LATE = datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)  # GeneralizedTime from 2050
DOC = b"deterministic " * 40


def reference(pki: Pki, alg: SignatureAlgorithm, flavour: Flavour, detached: bool,
              when: datetime) -> bytes:
    """The same SignedData built entirely by asn1crypto."""
    cert = pki.signer.cert
    digest_name = digest_name_for(alg)
    data_type = content_type("data", flavour)
    kind = "utc_time" if when.year < 2050 else "generalized_time"
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [data_type]},
        {"type": "signing_time", "values": [cms.Time(name=kind, value=when)]},
        {"type": "message_digest", "values": [digest(digest_name, DOC)]},
        {"type": "signing_certificate_v2",
         "values": [signing_certificate_v2(cert, "sha256")]},
    ])
    signature = pki.signer.key.sign(attrs.dump(), alg)
    info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number}),
        "digest_algorithm": {"algorithm": digest_name},
        "signed_attrs": attrs,
        "signature_algorithm": alg.asn1_algorithm_identifier(),
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": data_type}
    if not detached:
        encap["content"] = DOC
    return cms.ContentInfo({
        "content_type": content_type("signed_data", flavour),
        "content": {"version": "v1", "digest_algorithms": [{"algorithm": digest_name}],
                    "encap_content_info": encap, "certificates": [cert, *pki.chain],
                    "signer_infos": [info]},
    }).dump()


@pytest.fixture(scope="module")
def ed25519_pki() -> Pki:
    return make_pki("ed25519")


@pytest.mark.parametrize("family,alg", [("rsa", SignatureAlgorithm.RSA_PKCS1_SHA256),
                                        ("ed25519", SignatureAlgorithm.ED25519)])
@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("detached", [False, True])
@pytest.mark.parametrize("when", [WHEN, LATE])
def test_template_equals_asn1crypto(request: pytest.FixtureRequest, family: str,
                                    alg: SignatureAlgorithm, flavour: Flavour, detached: bool,
                                    when: datetime) -> None:
    pki: Pki = request.getfixturevalue(f"{family}_pki")
    ours = sign(DOC, pki.signer.key, pki.signer.cert, chain=pki.chain, algorithm=alg,
                flavour=flavour, detached=detached, signing_time=when)
    assert ours == reference(pki, alg, flavour, detached, when)
