"""Path validation rate beside the raw verify rate of the signatures it checks, same run.

    python bench/validation.py [--seconds N]

One line per figure: `<what>: ours=<n>/s reference=<n>/s ratio=<r>`.
- SM2, 3 levels (root -> issuing CA -> leaf) with the issuing CA's CRL, revocation required
  for the leaf: sscard.validation.validate_path against verifying the three SM2 signatures it
  checks (the CA certificate, the leaf, the CRL) directly with sscard.crypto.sm2. Goal: 0.6.
  Cold: the cache of verified signatures emptied before each call; warm: kept.
- Certificates and CRLs are parsed from their encodings, as a relying party has them.
- P-256, 3 levels, warm caches (the same parsed certificate objects every call, pyca's key
  objects loaded once for the reference): validate_path against verifying its two ECDSA
  signatures with pyca/cryptography, and against pyca/cryptography's own Rust verifier
  (cryptography.x509.verification) on the same chain, which checks the same two signatures.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives.asymmetric import ec

from bench._common import figure, rate
from sscard.crypto.sm2 import DEFAULT_UID, SM2PublicKey
from sscard.validation import RevocationMode, validate_path
from sscard.validation.signatures import forget_verified_signatures
from sscard.x509.parse import load_certificate, load_crl
from tests.validation.chain import Issued, make_ca, make_crl, make_leaf


def _parsed(issued: Issued) -> Issued:
    """As a relying party has it: parsed from its encoding (not the builder's object)."""
    return Issued(load_certificate(issued.cert.dump()), issued.key)


def sm2_figures(seconds: float) -> list[str]:
    root = make_ca("CN=Bench Root,C=CN")
    ca = make_ca("CN=Bench CA,C=CN", root)
    leaf = _parsed(make_leaf("CN=Bench Leaf,C=CN", ca))
    crl = load_crl(make_crl(ca).dump())
    root, ca = _parsed(root), _parsed(ca)
    now = datetime.now(UTC)

    def cold() -> None:
        forget_verified_signatures()
        ours()

    def ours() -> None:
        result = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert],
                               crls=[crl], revocation=RevocationMode.LEAF, at=now)
        assert result.valid, result.reasons

    root_key = SM2PublicKey.from_spki(root.cert.public_key.dump())
    ca_key = SM2PublicKey.from_spki(ca.cert.public_key.dump())
    checks = [
        (root_key, ca.cert["tbs_certificate"].dump(), ca.cert["signature_value"].native),
        (ca_key, leaf.cert["tbs_certificate"].dump(), leaf.cert["signature_value"].native),
        (ca_key, crl["tbs_cert_list"].dump(), crl["signature"].native),
    ]

    def raw() -> None:
        for key, data, signature in checks:
            key.verify(signature, data, DEFAULT_UID)

    reference = rate(raw, seconds)
    return [figure("SM2 3-level chain + CRL, validations (cold: signatures verified)",
                   rate(cold, seconds), reference),
            figure("SM2 3-level chain + CRL, validations (warm: verified signatures cached)",
                   rate(ours, seconds), reference)]


def p256_figures(seconds: float) -> list[str]:
    root = make_ca("CN=Bench P-256 Root,C=US", algorithm="ec-p256")
    ca = make_ca("CN=Bench P-256 CA,C=US", root, algorithm="ec-p256")
    leaf = _parsed(make_leaf("CN=bench.example.com,C=US", ca, algorithm="ec-p256",
                             eku=["server_auth"], dns_names=["bench.example.com"]))
    root, ca = _parsed(root), _parsed(ca)
    now = datetime.now(UTC)

    def ours() -> None:
        result = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert],
                               at=now)
        assert result.valid, result.reasons

    p_root, p_ca, p_leaf = (pyca_x509.load_der_x509_certificate(c.cert.dump())
                            for c in (root, ca, leaf))
    root_key, ca_key = p_root.public_key(), p_ca.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)

    def raw() -> None:
        for key, cert in ((root_key, p_ca), (ca_key, p_leaf)):
            assert cert.signature_hash_algorithm is not None
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))

    from cryptography.x509.verification import DNSName, PolicyBuilder, Store

    verifier = (PolicyBuilder().store(Store([p_root])).time(now)
                .build_server_verifier(DNSName("bench.example.com")))

    def pyca() -> None:
        verifier.verify(p_leaf, [p_ca])

    ours_rate = rate(ours, seconds)
    return [figure("P-256 3-level chain (warm), validations vs raw verify", ours_rate,
                   rate(raw, seconds)),
            figure("P-256 3-level chain (warm), validations vs pyca/cryptography verifier",
                   ours_rate, rate(pyca, seconds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    for line in [*sm2_figures(args.seconds), *p256_figures(args.seconds)]:
        print(line, flush=True)


if __name__ == "__main__":
    main()
