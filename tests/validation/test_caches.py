"""The validator's caches (sscard.validation.memo) are bounded and never change a verdict: the
same certificates validated again at another time, with other revocation information or under
another profile get the answer a fresh process would give."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asn1crypto import x509

from sscard.validation import RevocationMode, memo, validate_path
from sscard.validation.memo import BoundedCache, forget_all, private_copy
from sscard.validation.result import ReasonCode
from sscard.x509.parse import load_certificate, load_crl
from tests.validation.chain import NOW, make_ca, make_crl, make_leaf
from tests.validation.pkits import load_runs, run

RUNS = load_runs()

ROOT = make_ca("CN=Cache Root,C=CN")
CA = make_ca("CN=Cache CA,C=CN", ROOT)
LEAF = make_leaf("CN=Cache Leaf,C=CN", CA, not_after=NOW + timedelta(days=2))


def _validate(leaf=LEAF.cert, *, crls=(), at=NOW, **options):
    # parsed afresh on every call, as a gateway gets them: the caches key on encodings
    return validate_path(
        load_certificate(leaf.dump()), trust_anchors=[load_certificate(ROOT.cert.dump())],
        intermediates=[load_certificate(CA.cert.dump())],
        crls=[load_crl(c.dump()) for c in crls], at=at, **options)


def test_the_verdict_follows_the_validation_time() -> None:
    for _ in range(2):
        assert _validate().valid
        late = _validate(at=NOW + timedelta(days=3))
        assert not late.valid and late.reasons[0].code is ReasonCode.EXPIRED, late.reasons


def test_the_verdict_follows_the_revocation_information() -> None:
    clean = make_crl(CA, number=1)
    revoking = make_crl(CA, [(LEAF.cert, "key_compromise")], number=2)
    for _ in range(2):
        assert _validate(crls=[clean], revocation=RevocationMode.LEAF).valid
        revoked = _validate(crls=[revoking], revocation=RevocationMode.LEAF)
        assert not revoked.valid and revoked.reasons[0].code is ReasonCode.REVOKED
        missing = _validate(revocation=RevocationMode.LEAF)
        assert not missing.valid
        assert missing.reasons[0].code is ReasonCode.REVOCATION_UNKNOWN, missing.reasons


def test_the_verdict_follows_the_profile() -> None:
    """The leaf has no subjectAltName nor EKU: fine under RFC 5280, not under the web PKI."""
    for _ in range(2):
        assert _validate().valid
        assert not _validate(profile="webpki").valid


@pytest.mark.skipif(not RUNS, reason="PKITS data not found (SSCARD_CONFORMANCE)")
def test_a_certificate_asn1crypto_reencodes_lossily_stays_valid_when_validated_again() -> None:
    """PKITS 4.3.6: its CA's subjectUniqueID BIT STRING does not survive asn1crypto's
    re-encoding. A parsed copy kept from one validation for the next broke the signature
    check of the second (BAD_SIGNATURE); such a copy must not be reused."""
    case = next(c for c in RUNS if c.id.endswith("ValidNameChainingUIDsTest6"))
    forget_all()
    for _ in range(3):
        result = run(case)
        assert result.valid, result.reasons


def test_a_bounded_cache_keeps_the_most_recently_used() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for n in range(3):
        cache.put(n, str(n))
    assert cache.get(0) == "0"  # 0 used last: 1 is the least recently used
    cache.put(3, "3")
    assert 1 not in cache and cache.get(0) == "0" and cache.get(3) == "3"
    assert cache.get_or_make(42, lambda: "made") == "made" and cache.get(42) == "made"
    for n in range(100, 200):
        cache.put(n, str(n))
    assert sum(n in cache for n in range(200)) == 3


def test_private_copies_are_bounded_and_never_the_callers(monkeypatch) -> None:
    monkeypatch.setattr(memo, "_COPIES_MAX", 4)
    forget_all()
    certs = [load_certificate(make_leaf(f"CN=Copy {n},C=CN", CA).cert.dump())
             for n in range(8)]
    for _ in range(3):
        for cert in certs:
            copy = private_copy(cert)
            assert copy is not cert and copy.dump() == cert.dump()
    assert len(memo._COPIES.items) == 4 and memo._COPIES.size > 0
    again = private_copy(certs[-1])
    assert private_copy(certs[-1]) is again  # the recent ones are reused


def test_the_thread_event_loop_is_reused_safely() -> None:
    """validate_path keeps one event loop per thread (asyncio.run's set-up is a tenth of a
    warm validation): it works from several threads, and inside a running loop it refuses
    as asyncio.run does (await validate_path_async there)."""
    answers: list[bool] = []
    threads = [threading.Thread(target=lambda: answers.append(_validate().valid))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True, True, True] and _validate().valid

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError):
            _validate()

    asyncio.run(inside_a_loop())
    assert _validate().valid


def _rdns(*rdns: list[tuple[str, str]]) -> x509.Name:
    return x509.Name.load(x509.Name(name="", value=x509.RDNSequence([
        x509.RelativeDistinguishedName([
            {"type": kind, "value": x509.DirectoryString(name="utf8_string", value=value)}
            for kind, value in rdn])
        for rdn in rdns])).dump())


def test_names_compare_as_rfc_5280_says_through_the_cached_forms() -> None:
    """Name == goes through the cached comparison forms (adjust_pyhanko): RFC 5280 §7.1
    string preparation (case, inner spaces) still applies, and a multi-valued RDN repeating
    a type is not equal to the RDN with the type once (the forms keep one value per type)."""
    assert _rdns([("common_name", "Foo  Bar")]) == _rdns([("common_name", "foo bar")])
    assert _rdns([("common_name", "Foo")]) != _rdns([("common_name", "Fob")])
    assert _rdns([("common_name", "a"), ("common_name", "a")]) != _rdns([("common_name", "a")])
    assert _rdns([("country_name", "CN")], [("common_name", "a")]) != _rdns(
        [("common_name", "a")], [("country_name", "CN")])


def test_private_copies_are_bounded_in_octets_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers choose the sizes: the copies kept per thread stay under an octet budget."""
    monkeypatch.setattr(memo, "_COPIES_MAX_OCTETS", 1000)
    forget_all()
    certs = [load_certificate(make_leaf(f"CN=Octets {n},C=CN", CA).cert.dump())
             for n in range(6)]
    for _ in range(2):
        for cert in certs:
            private_copy(cert)
    assert 1 <= len(memo._COPIES.items) < 6
    assert memo._COPIES.size == sum(octets for _, octets in memo._COPIES.items.values())
    assert memo._COPIES.size <= 1000


def test_the_verdict_follows_the_trust_anchors() -> None:
    """pyhanko's trust manager is kept per thread for the same anchor objects: another set of
    anchors, given in any order and again after, gets its own answer."""
    stranger = make_ca("CN=Cache Stranger Root,C=CN")

    def anchored(*anchors):
        return validate_path(
            load_certificate(LEAF.cert.dump()),
            trust_anchors=[load_certificate(a.cert.dump()) for a in anchors],
            intermediates=[load_certificate(CA.cert.dump())], at=NOW)

    for _ in range(3):
        assert anchored(ROOT).valid
        alone = anchored(stranger)
        assert not alone.valid and alone.reasons[0].code is ReasonCode.UNTRUSTED_ROOT
        assert anchored(stranger, ROOT).valid
        assert anchored(ROOT, stranger).valid


def test_what_a_validation_hands_back_is_not_what_it_keeps() -> None:
    """Attack: kept private copies are reused without a change check, so none may reach a
    caller: changing the certificates of a result's path changes nothing for the next
    validation of the same encodings."""
    forget_all()
    for _ in range(3):  # the CA and anchor are kept from the second call on
        result = _validate()
        assert result.valid, result.reasons
    anchor, ca, leaf = result.path
    assert anchor.dump() == ROOT.cert.dump() and ca.dump() == CA.cert.dump()
    anchor["tbs_certificate"]["validity"]["not_after"] = x509.Time(
        name="utc_time", value=NOW - timedelta(days=1))
    ca["tbs_certificate"]["serial_number"] = 1
    leaf["tbs_certificate"]["serial_number"] = 2
    again = _validate()
    assert again.valid, again.reasons
    assert [c.dump() for c in again.path] == [ROOT.cert.dump(), CA.cert.dump(),
                                              LEAF.cert.dump()]
    assert all(a is not b for a, b in zip(result.path, again.path, strict=True))


@pytest.mark.parametrize("copies_kept", [256, 1])
def test_the_thread_memo_never_answers_for_a_changed_certificate(
    monkeypatch: pytest.MonkeyPatch, copies_kept: int
) -> None:
    """Attack: what validations remember by object identity (memo.within_validation, kept
    across the validations of a thread) is never used for a certificate changed since,
    whether it was handed back as it was (a leaf seen once) or as a new parse (a kept copy),
    and whether the kept copies were dropped meanwhile (one kept at most)."""
    monkeypatch.setattr(memo, "_COPIES_MAX", copies_kept)
    forget_all()
    leaf = load_certificate(LEAF.cert.dump())
    for _ in range(3):
        result = validate_path(leaf, trust_anchors=[load_certificate(ROOT.cert.dump())],
                               intermediates=[load_certificate(CA.cert.dump())], at=NOW)
        assert result.valid, result.reasons
        for cert in result.path:  # the caller changes all it was given, and sees it changed
            before = cert.dump()
            cert["tbs_certificate"]["serial_number"] = 3
            assert cert.dump() != before
        again = validate_path(result.path[-1], trust_anchors=[result.path[0]],
                              intermediates=[result.path[1]], at=NOW)
        assert not again.valid and ReasonCode.BAD_SIGNATURE in again.codes, again.reasons
    assert _validate().valid


def test_the_name_constraint_verdict_follows_the_path_and_the_trust_mode() -> None:
    """Attack: name-constraint verdicts are kept by the path's encodings and whether the
    anchor's own constraints apply; a leaf outside a constraint never gets the verdict of one
    inside under the same CA, nor the anchor-mode verdict in constrained-anchor mode."""
    from asn1crypto import x509 as asn1_x509

    dns = {"permitted_subtrees": [{"base": asn1_x509.GeneralName(
        name="dns_name", value="good.example.cn")}]}
    root = make_ca("CN=NC Cache Root,C=CN", extra=[("name_constraints", dns, True)])
    ca = make_ca("CN=NC Cache CA,C=CN", root, extra=[("name_constraints", dns, True)])
    free_ca = make_ca("CN=NC Cache Free CA,C=CN", root)
    inside = make_leaf("CN=In,C=CN", ca, dns_names=["a.good.example.cn"])
    outside = make_leaf("CN=Out,C=CN", ca, dns_names=["evil.example.com"])
    # outside the anchor's constraints only: an anchor's constraints count in constrained mode
    past_anchor = make_leaf("CN=Past,C=CN", free_ca, dns_names=["evil.example.com"])

    def codes(leaf, issuer, mode="constrained-anchor"):
        return validate_path(load_certificate(leaf.cert.dump()),
                             trust_anchors=[load_certificate(root.cert.dump())],
                             intermediates=[load_certificate(issuer.cert.dump())],
                             at=NOW, trust_mode=mode).codes

    forget_all()
    for _ in range(3):
        assert codes(inside, ca) == frozenset()
        assert codes(outside, ca) == {ReasonCode.NAME_CONSTRAINTS}
        assert codes(past_anchor, free_ca, "anchor") == frozenset()
        assert codes(past_anchor, free_ca) == {ReasonCode.NAME_CONSTRAINTS}
