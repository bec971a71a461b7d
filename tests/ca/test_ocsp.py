"""The pure OCSP responder: statuses, CertID matching, nonces, refusals, signatures, caching."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core, x509
from asn1crypto import ocsp as asn1ocsp
from test_ocsp_support import NOW, Pki, issue_leaf, make_pki

from ca.ocsp import OcspResponder, respond
from ca.ocsp_cache import ResponseCache
from ca.records import CertificateStatus, RevocationReason, Status
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.hashes import digest
from sscard.keys.base import KeyHandle, KeyHandleError
from sscard.keys.software import SoftwareKey
from sscard.x509.pem import der_to_pem
from sscard.x509.verify import verify_signature


@pytest.fixture(scope="module")
def pki() -> Pki:
    pki = make_pki("ec-p256")
    issue_leaf(pki, "张三")
    issue_leaf(pki, "李四")
    return pki


@pytest.fixture(scope="module")
def sm2_pki() -> Pki:
    pki = make_pki("sm2")
    issue_leaf(pki, "王五")
    return pki


def cert_id(issuer: x509.Certificate, serial: int, hash_name: str = "sha1") -> dict[str, Any]:
    return {
        "hash_algorithm": {"algorithm": hash_name},
        "issuer_name_hash": digest(hash_name, issuer.subject.dump()),
        "issuer_key_hash": digest(hash_name, issuer.public_key["public_key"].contents[1:]),
        "serial_number": serial,
    }


def make_request(*ids: dict[str, Any], nonce: bytes | None = None,
                 extensions: list[dict[str, Any]] | None = None) -> bytes:
    tbs: dict[str, Any] = {"request_list": [{"req_cert": i} for i in ids]}
    exts = list(extensions or [])
    if nonce is not None:
        exts.append({"extn_id": "nonce", "extn_value": core.OctetString(nonce)})
    if exts:
        tbs["request_extensions"] = exts
    return asn1ocsp.OCSPRequest({"tbs_request": tbs}).dump()


class Table:
    """A status store standing in for the CA database: counts its lookups."""

    def __init__(self) -> None:
        self.rows: dict[int, CertificateStatus] = {}
        self.calls = 0
        self.generation = 0

    def add(self, cert: x509.Certificate) -> int:
        serial = cert.serial_number
        self.rows[serial] = CertificateStatus(serial, Status.GOOD)
        return serial

    def revoke(self, serial: int, reason: RevocationReason = RevocationReason.keyCompromise,
               invalidity: Any = None) -> None:
        self.rows[serial] = CertificateStatus(serial, Status.REVOKED, NOW - timedelta(hours=2),
                                              reason, invalidity)
        self.generation += 1

    def __call__(self, serial: int) -> CertificateStatus:
        self.calls += 1
        return self.rows.get(serial, CertificateStatus(serial, Status.UNKNOWN))


def parse_ok(der: bytes, pki: Pki) -> asn1ocsp.BasicOCSPResponse:
    """Parse a successful response and check its signature with the responder certificate."""
    response = asn1ocsp.OCSPResponse.load(der, strict=True)
    assert response["response_status"].native == "successful"
    basic = response["response_bytes"]["response"].parsed
    assert basic["certs"][0].dump() == pki.ocsp_cert.dump()
    key = PublicKey.from_spki(pki.ocsp_cert.public_key.dump())
    verify_signature(key, basic["tbs_response_data"].dump(), basic["signature"].native,
                     basic["signature_algorithm"])
    return basic


def single(basic: asn1ocsp.BasicOCSPResponse, index: int = 0) -> asn1ocsp.SingleResponse:
    return basic["tbs_response_data"]["responses"][index]


def error_status(der: bytes) -> str:
    response = asn1ocsp.OCSPResponse.load(der, strict=True)
    assert isinstance(response["response_bytes"], core.Void), "error responses carry no body"
    return str(response["response_status"].native)


def answer(pki: Pki, table: Table, request: bytes) -> bytes:
    return respond(request, table, pki.ocsp_key, pki.ocsp_cert, pki.ca_cert, NOW)


# -- statuses -------------------------------------------------------------------------------


def test_good(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    basic = parse_ok(answer(pki, table, make_request(cert_id(pki.ca_cert, serial))), pki)
    data = basic["tbs_response_data"]
    one = single(basic)
    assert one["cert_status"].name == "good"
    assert one["cert_id"]["serial_number"].native == serial
    assert data["produced_at"].native == NOW
    assert one["this_update"].native == NOW
    assert one["next_update"].native == NOW + timedelta(hours=1)
    # RFC 5019: responder named by the SHA-1 hash of its key
    assert data["responder_id"].name == "by_key"
    assert data["responder_id"].chosen.native == pki.ocsp_cert.public_key.sha1
    assert isinstance(data["response_extensions"], core.Void)


def test_revoked_with_reason_time_and_invalidity_date(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["李四"][1])
    table.revoke(serial, RevocationReason.keyCompromise, invalidity=NOW - timedelta(days=1))
    basic = parse_ok(answer(pki, table, make_request(cert_id(pki.ca_cert, serial))), pki)
    one = single(basic)
    assert one["cert_status"].name == "revoked"
    info = one["cert_status"].chosen
    assert info["revocation_time"].native == NOW - timedelta(hours=2)
    assert info["revocation_reason"].native == "key_compromise"
    assert one.invalidity_date_value.native == NOW - timedelta(days=1)


def test_unknown_serial_of_our_issuer(pki: Pki) -> None:
    basic = parse_ok(answer(pki, Table(), make_request(cert_id(pki.ca_cert, 12345))), pki)
    assert single(basic)["cert_status"].name == "unknown"


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384", "sm3"])
def test_cert_id_hash_algorithms(pki: Pki, hash_name: str) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    der = answer(pki, table, make_request(cert_id(pki.ca_cert, serial, hash_name)))
    one = single(parse_ok(der, pki))
    assert one["cert_status"].name == "good"
    assert one["cert_id"]["hash_algorithm"]["algorithm"].native == hash_name


def test_cert_id_for_another_issuer_is_unknown_beside_ours(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    foreign = cert_id(pki.root_cert, serial)  # same serial, wrong issuer hashes
    basic = parse_ok(answer(pki, table, make_request(cert_id(pki.ca_cert, serial), foreign)), pki)
    assert [single(basic, i)["cert_status"].name for i in (0, 1)] == ["good", "unknown"]
    assert table.calls == 1  # the foreign CertID never reached the database


def test_only_foreign_or_unmatchable_cert_ids_are_unauthorized(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    assert error_status(answer(pki, table, make_request(cert_id(pki.root_cert, serial)))) == (
        "unauthorized"
    )
    md5_id = cert_id(pki.ca_cert, serial, "sha1")
    md5_id["hash_algorithm"] = {"algorithm": "md5"}
    assert error_status(answer(pki, table, make_request(md5_id))) == "unauthorized"
    # the right name hash with the wrong key hash is not our issuer either
    wrong_key = cert_id(pki.ca_cert, serial)
    wrong_key["issuer_key_hash"] = digest("sha1", b"another key")
    assert error_status(answer(pki, table, make_request(wrong_key))) == "unauthorized"
    assert table.calls == 0


# -- nonces ---------------------------------------------------------------------------------


def test_nonce_is_echoed(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    nonce = os.urandom(16)
    basic = parse_ok(answer(pki, table, make_request(cert_id(pki.ca_cert, serial), nonce=nonce)),
                     pki)
    exts = basic["tbs_response_data"]["response_extensions"]
    assert [(e["extn_id"].native, e["extn_value"].parsed.native) for e in exts] == [
        ("nonce", nonce)
    ]


@pytest.mark.parametrize("length", [0, 33, 200])
def test_nonce_of_bad_length_is_malformed(pki: Pki, length: int) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    request = make_request(cert_id(pki.ca_cert, serial), nonce=b"\x01" * length)
    assert error_status(answer(pki, table, request)) == "malformed_request"


# -- malformed and refused ------------------------------------------------------------------


def _garbage(pki: Pki) -> dict[str, bytes]:
    good = make_request(cert_id(pki.ca_cert, 7))
    return {
        "empty": b"",
        "text": b"GET / HTTP/1.1\r\n\r\n",
        "truncated": good[:-5],
        "trailing data": good + b"\x00",
        "a certificate": pki.ca_cert.dump(),
        "wrong tag inside": good[:4] + b"\x04" + good[5:],
        "huge length": b"\x30\x84\xff\xff\xff\xff" + good[2:],
        "no cert ids": make_request(),
    }


def test_malformed_requests_get_malformed_request(pki: Pki) -> None:
    table = Table()
    table.add(pki.leaves["张三"][1])
    for what, request in _garbage(pki).items():
        assert error_status(answer(pki, table, request)) == "malformed_request", what
    assert table.calls == 0


def test_unknown_critical_extension_is_refused(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    ext = {"extn_id": "1.2.3.4.5", "critical": True,
           "extn_value": core.ParsableOctetString(core.Null().dump())}
    request = make_request(cert_id(pki.ca_cert, serial), extensions=[ext])
    assert error_status(answer(pki, table, request)) == "malformed_request"
    ext["critical"] = False  # a non-critical unknown extension is ignored (RFC 6960 §4.4)
    request = make_request(cert_id(pki.ca_cert, serial), extensions=[ext])
    assert single(parse_ok(answer(pki, table, request), pki))["cert_status"].name == "good"


def test_client_refusing_basic_responses_is_unauthorized(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    ext = {"extn_id": "acceptable_responses", "extn_value": ["1.2.3.4"]}
    request = make_request(cert_id(pki.ca_cert, serial), extensions=[ext])
    assert error_status(answer(pki, table, request)) == "unauthorized"


class BrokenKey(KeyHandle):
    """A key handle whose token went away mid-flight."""

    def __init__(self, inner: SoftwareKey) -> None:
        self.inner = inner

    @property
    def algorithm(self) -> Any:
        return self.inner.algorithm

    def public_key(self) -> PublicKey:
        return self.inner.public_key()

    def sign(self, data: bytes, algorithm: Any = None, uid: bytes = b"") -> bytes:
        raise KeyHandleError("token removed")


def test_signer_or_database_failure_is_internal_error(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    request = make_request(cert_id(pki.ca_cert, serial))
    broken = BrokenKey(pki.ocsp_key)
    der = respond(request, table, broken, pki.ocsp_cert, pki.ca_cert, NOW)
    assert error_status(der) == "internal_error"

    def failing_lookup(serial: int) -> CertificateStatus:
        raise ConnectionError("database is down")

    der = respond(request, failing_lookup, pki.ocsp_key, pki.ocsp_cert, pki.ca_cert, NOW)
    assert error_status(der) == "internal_error"


def test_responder_key_must_match_its_certificate(pki: Pki) -> None:
    with pytest.raises(ValueError, match="does not match"):
        OcspResponder(pki.tsa_key, pki.ocsp_cert, pki.ca_cert, Table())
    der = respond(make_request(cert_id(pki.ca_cert, 1)), Table(), pki.tsa_key, pki.ocsp_cert,
                  pki.ca_cert, NOW)
    assert error_status(der) == "internal_error"


def test_sm2_responder_signs_with_sm2_sm3(sm2_pki: Pki) -> None:
    table = Table()
    serial = table.add(sm2_pki.leaves["王五"][1])
    der = answer(sm2_pki, table, make_request(cert_id(sm2_pki.ca_cert, serial, "sm3")))
    basic = parse_ok(der, sm2_pki)
    assert basic["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert single(basic)["cert_status"].name == "good"


def test_issuer_signing_its_own_responses_omits_certs(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    der = respond(make_request(cert_id(pki.ca_cert, serial)), table, pki.ca_key, pki.ca_cert,
                  pki.ca_cert, NOW)
    basic = asn1ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    assert isinstance(basic["certs"], core.Void)
    key = PublicKey.from_spki(pki.ca_cert.public_key.dump())
    verify_signature(key, basic["tbs_response_data"].dump(), basic["signature"].native,
                     basic["signature_algorithm"])


# -- caching --------------------------------------------------------------------------------


def cached_responder(pki: Pki, table: Table) -> OcspResponder:
    cache = ResponseCache(timedelta(hours=1), generation=lambda: table.generation)
    return OcspResponder(pki.ocsp_key, pki.ocsp_cert, pki.ca_cert, table, cache=cache)


def status_of(der: bytes) -> str:
    basic = asn1ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    return str(single(basic)["cert_status"].name)


def test_cache_serves_the_same_answer_until_half_its_validity(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    responder = cached_responder(pki, table)
    request = make_request(cert_id(pki.ca_cert, serial))
    first = responder.respond(request, NOW)
    assert responder.respond(request, NOW + timedelta(minutes=29)) == first
    assert table.calls == 1
    later = responder.respond(request, NOW + timedelta(minutes=31))
    assert later != first and table.calls == 2
    basic = parse_ok(later, pki)
    assert single(basic)["this_update"].native == NOW + timedelta(minutes=31)


def test_cache_refreshed_when_a_certificate_is_revoked(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    responder = cached_responder(pki, table)
    request = make_request(cert_id(pki.ca_cert, serial))
    assert status_of(responder.respond(request, NOW)) == "good"
    assert status_of(responder.respond(request, NOW)) == "good"
    table.revoke(serial)  # bumps the generation, as the CA database does
    assert status_of(responder.respond(request, NOW)) == "revoked"


def test_invalidate_hook_drops_cached_answers(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    cache = ResponseCache(timedelta(hours=1))  # no shared generation: in-process hook only
    responder = OcspResponder(pki.ocsp_key, pki.ocsp_cert, pki.ca_cert, table, cache=cache)
    request = make_request(cert_id(pki.ca_cert, serial))
    assert status_of(responder.respond(request, NOW)) == "good"
    table.revoke(serial)
    assert status_of(responder.respond(request, NOW)) == "good"  # stale until told
    cache.invalidate(serial)
    assert status_of(responder.respond(request, NOW)) == "revoked"


def test_nonce_requests_are_signed_afresh_but_skip_the_database(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])
    responder = cached_responder(pki, table)
    answers = [responder.respond(make_request(cert_id(pki.ca_cert, serial), nonce=n), NOW)
               for n in (b"first nonce", b"second nonce")]
    assert table.calls == 1
    nonces = [parse_ok(a, pki)["tbs_response_data"]["response_extensions"][0]["extn_value"]
              .parsed.native for a in answers]
    assert nonces == [b"first nonce", b"second nonce"]


def test_answer_computed_during_a_revocation_is_not_cached(pki: Pki) -> None:
    table = Table()
    serial = table.add(pki.leaves["张三"][1])

    def racing_lookup(s: int) -> CertificateStatus:
        # the status is read as "good", then the revocation commits before we store it
        result = table(s)
        table.revoke(serial)
        return result

    cache = ResponseCache(timedelta(hours=1), generation=lambda: table.generation)
    responder = OcspResponder(pki.ocsp_key, pki.ocsp_cert, pki.ca_cert, racing_lookup,
                              cache=cache)
    request = make_request(cert_id(pki.ca_cert, serial))
    assert status_of(responder.respond(request, NOW)) == "good"
    responder.status_lookup = table
    assert status_of(responder.respond(request, NOW)) == "revoked"


def test_malformed_requests_are_not_cached(pki: Pki) -> None:
    table = Table()
    responder = cached_responder(pki, table)
    assert error_status(responder.respond(b"\x30\x00", NOW)) == "malformed_request"
    assert responder.cache is not None and len(responder.cache) == 0


# -- the hand-written DER agrees with asn1crypto --------------------------------------------


def test_hand_encoded_single_response_equals_asn1crypto(pki: Pki) -> None:
    from ca import ocsp_der

    cid = asn1ocsp.CertId(cert_id(pki.ca_cert, 0x1234, "sha256"))
    revoked_at, invalid_at = NOW - timedelta(days=2), NOW - timedelta(days=3)
    for reason in (None, RevocationReason.keyCompromise):
        ours = ocsp_der.single_response(
            cid.dump(), ocsp_der.revoked(revoked_at, reason.value if reason else None),
            NOW, NOW + timedelta(hours=1), invalid_at)
        info: dict[str, Any] = {"revocation_time": revoked_at}
        if reason is not None:
            info["revocation_reason"] = reason.asn1_name
        reference = asn1ocsp.SingleResponse({
            "cert_id": cid, "cert_status": asn1ocsp.CertStatus(name="revoked", value=info),
            "this_update": NOW, "next_update": NOW + timedelta(hours=1),
            "single_extensions": [{"extn_id": "invalidity_date", "extn_value": invalid_at}],
        }).dump()
        assert ours == reference


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24])
def test_der_lengths(size: int) -> None:
    from ca import ocsp_der

    encoded = ocsp_der.octet_string(b"\x00" * size)
    assert core.OctetString.load(encoded, strict=True).native == b"\x00" * size


# -- interoperability without a server: openssl builds the request and checks our answer ----


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa2048"])
@pytest.mark.parametrize("digest_option", ["-sha1", "-sha256"])
def test_openssl_request_and_verification(algorithm: str, digest_option: str,
                                          tmp_path: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI")
        pytest.skip("openssl command line not installed")
    pki = make_pki(algorithm)
    _, leaf = issue_leaf(pki, "openssl peer")
    paths = pki.write(tmp_path)
    (tmp_path / "leaf.pem").write_bytes(der_to_pem(leaf.dump(), "CERTIFICATE"))
    # (the digest option applies to the -cert options after it)
    subprocess.run([exe, "ocsp", digest_option, "-issuer", paths["ca"], "-cert",
                    tmp_path / "leaf.pem", "-no_nonce", "-reqout", tmp_path / "req.der"],
                   check=True, capture_output=True)
    table = Table()
    serial = table.add(leaf)
    table.revoke(serial, RevocationReason.superseded)
    # answered at the real time: openssl checks thisUpdate/nextUpdate against its own clock
    (tmp_path / "resp.der").write_bytes(respond((tmp_path / "req.der").read_bytes(), table,
                                                pki.ocsp_key, pki.ocsp_cert, pki.ca_cert,
                                                datetime.now(UTC)))
    result = subprocess.run(
        [exe, "ocsp", digest_option, "-issuer", paths["ca"], "-cert", tmp_path / "leaf.pem",
         "-no_nonce", "-respin", tmp_path / "resp.der", "-CAfile", paths["chain"]],
        capture_output=True, text=True,
    )
    # the issuer/cert pair re-derives the CertID, so openssl checks our key and name hashes
    assert "Response verify OK" in result.stderr, result.stderr
    assert f"{tmp_path / 'leaf.pem'}: revoked" in result.stdout
    assert "Reason: superseded" in result.stdout
