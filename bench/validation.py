"""Path validation rate beside the raw verify rate of the signatures it checks, same run.

    python bench/validation.py [--seconds N]

One line per figure and clock: `<what> [wall|CPU]: ours=<n>/s reference=<n>/s ratio=<r>`.
Each figure is measured by wall-clock time and by this process's CPU time; on a shared machine
the CPU-time rates are the steadier (waiting for a core does not count). The SM2 figures and
their reference are taken in alternating rounds of a few milliseconds each, so that load that
comes and goes on the machine falls on both alike (one after the other, a busy second on one
side moved the ratio by a third at a load average of 10).
- SM2, 3 levels (root -> issuing CA -> leaf) with the issuing CA's CRL, revocation required
  for the leaf: sscard.validation.validate_path against verifying the three SM2 signatures it
  checks (the CA certificate, the leaf, the CRL) directly with sscard.crypto.sm2. Goal: 0.6.
  Cold: every cache of the validator emptied before each call (memo.forget_all); warm, each
  signature verified: only the cache of verified signatures emptied (the three signatures are
  checked on every call, as the reference does); warm: all kept (no signature checked).
- SM2, a new leaf each call under the same CA and CRL (what a gateway sees): the CA, anchor
  and CRL work is cached, the leaf's is not; against verifying the leaf's one signature.
- SM2, the same chain with a 20,000-entry CRL (a large issuing CA's), warm, against the same
  with the small CRL: what the size of the CRL costs per validation (goal: ratio near 1).
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
from datetime import UTC, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import time
from collections.abc import Callable

from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives.asymmetric import ec

from bench._common import figure, rates
from sscard.crypto.sm2 import DEFAULT_UID, SM2PublicKey
from sscard.validation import RevocationMode, validate_path
from sscard.validation.memo import forget_all
from sscard.validation.signatures import forget_verified_signatures
from sscard.x509.builder import CrlBuilder
from sscard.x509.parse import load_certificate, load_crl
from tests.validation.chain import Issued, make_ca, make_crl, make_leaf


def _figures(what: str, ours: tuple[float, float], reference: tuple[float, float]) -> list[str]:
    return [figure(f"{what} [wall]", ours[0], reference[0]),
            figure(f"{what} [CPU]", ours[1], reference[1])]


def _once_each(fn: Callable[[int], object], count: int) -> tuple[float, float]:
    """Rates of fn(0) .. fn(count - 1), each called once (wall-clock, CPU time)."""
    fn(0)
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(1, count):
        fn(index)
    return ((count - 1) / (time.perf_counter() - start),
            (count - 1) / max(time.process_time() - cpu_start, 1e-9))


def _alternating(ours: Callable[[], object], reference: Callable[[], object], seconds: float,
                 calls: int = 10) -> tuple[tuple[float, float], tuple[float, float]]:
    """Rates (wall-clock, CPU time) of ``ours`` and ``reference``, measured in alternating
    rounds of ``calls`` calls each until each has had about ``seconds`` of wall-clock time."""
    ours()
    reference()
    spent = {"ours": [0.0, 0.0, 0], "reference": [0.0, 0.0, 0]}
    while min(spent["ours"][0], spent["reference"][0]) < seconds:
        for name, fn in (("ours", ours), ("reference", reference)):
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            tally = spent[name]
            tally[0] += time.perf_counter() - start
            tally[1] += time.process_time() - cpu_start
            tally[2] += calls
    wall_o, cpu_o, n_o = spent["ours"]
    wall_r, cpu_r, n_r = spent["reference"]
    return ((n_o / wall_o, n_o / max(cpu_o, 1e-9)), (n_r / wall_r, n_r / max(cpu_r, 1e-9)))


def _parsed(issued: Issued) -> Issued:
    """As a relying party has it: parsed from its encoding (not the builder's object)."""
    return Issued(load_certificate(issued.cert.dump()), issued.key)


def sm2_figures(seconds: float, leaf_count: int) -> list[str]:
    root = make_ca("CN=Bench Root,C=CN")
    ca = make_ca("CN=Bench CA,C=CN", root)
    leaf = _parsed(make_leaf("CN=Bench Leaf,C=CN", ca))
    crl = load_crl(make_crl(ca).dump())
    root, ca = _parsed(root), _parsed(ca)
    now = datetime.now(UTC)

    def cold() -> None:
        forget_all()
        ours()

    def ours() -> None:
        result = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert],
                               crls=[crl], revocation=RevocationMode.LEAF, at=now)
        assert result.valid, result.reasons

    def verifying() -> None:
        forget_verified_signatures()
        ours()

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

    leaf_check = checks[1]

    def raw_leaf() -> None:
        key, data, signature = leaf_check
        key.verify(signature, data, DEFAULT_UID)

    # a leaf never seen before on each call; as many as one measurement takes
    leaves = [load_certificate(make_leaf(f"CN=Bench Leaf {n},C=CN", ca).cert.dump())
              for n in range(leaf_count)]

    def new_leaf(index: int) -> None:
        result = validate_path(leaves[index], trust_anchors=[root.cert],
                               intermediates=[ca.cert], crls=[crl],
                               revocation=RevocationMode.LEAF, at=now)
        assert result.valid, result.reasons

    big = CrlBuilder().issuer(ca.cert.subject).this_update(now - timedelta(hours=1)) \
        .next_update(now + timedelta(days=1)).crl_number(2).authority_key_identifier(ca.ski)
    for serial in range(1, 20_001):
        big = big.add_revoked(serial * 7919, now - timedelta(hours=2))
    big_crl = load_crl(big.sign(ca.key).dump())

    def with_big_crl() -> None:
        result = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert],
                               crls=[big_crl], revocation=RevocationMode.LEAF, at=now)
        assert result.valid, result.reasons

    return [*_figures("SM2 3-level chain + 20,000-entry CRL (warm) vs the same with a small "
                      "CRL", *_alternating(with_big_crl, ours, seconds)),
            *_figures("SM2 3-level chain + CRL, validations (cold: no caches)",
                      *_alternating(cold, raw, seconds)),
            *_figures("SM2 3-level chain + CRL, validations (warm, each signature verified)",
                      *_alternating(verifying, raw, seconds)),
            *_figures("SM2 3-level chain + CRL, validations (warm: all cached)",
                      *_alternating(ours, raw, seconds)),
            *_figures("SM2 3-level chain + CRL, a new leaf each call (vs its one signature)",
                      _once_each(new_leaf, leaf_count), rates(raw_leaf, seconds))]


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

    ours_rates = rates(ours, seconds)
    return [*_figures("P-256 3-level chain (warm), validations vs raw verify", ours_rates,
                      rates(raw, seconds)),
            *_figures("P-256 3-level chain (warm), validations vs pyca/cryptography verifier",
                      ours_rates, rates(pyca, seconds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--leaves", type=int, default=300,
                        help="distinct leaves for the new-leaf figure")
    args = parser.parse_args()
    for line in [*sm2_figures(args.seconds, args.leaves), *p256_figures(args.seconds)]:
        print(line, flush=True)


if __name__ == "__main__":
    main()
