"""The RFC 3161 TSA: tokens, nonces, unique serials, rejections, and openssl ts -verify."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from test_ocsp_support import NOW, Pki, make_pki

from ca.tsa import FileSerialCounter, TimeStampAuthority, TimeStampResp, TsaConfigError
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.hashes import digest
from sscard.x509.verify import verify_signature


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("ec-p256")


@pytest.fixture()
def tsa(pki: Pki, tmp_path: Path) -> TimeStampAuthority:
    return TimeStampAuthority(pki.tsa_key, pki.tsa_cert, FileSerialCounter(tmp_path / "serial"),
                              chain=(pki.ca_cert,), accuracy=timedelta(milliseconds=500))


def request(data: bytes = b"document", hash_name: str = "sha256", **fields: Any) -> bytes:
    req: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name},
                            "hashed_message": digest(hash_name, data)},
    }
    req.update(fields)
    return tsp.TimeStampReq(req).dump()


def granted(der: bytes, pki: Pki) -> tuple[tsp.TSTInfo, cms.SignedData]:
    """Parse a granted response and check the CMS signature and its signed attributes."""
    resp = TimeStampResp.load(der, strict=True)
    assert resp["status"]["status"].native == "granted"
    signed = resp["time_stamp_token"]["content"]
    encap = signed["encap_content_info"]
    assert encap["content_type"].native == "tst_info"
    tst_der = encap["content"].contents
    signer = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert attrs["content_type"].native == "tst_info"
    assert attrs["message_digest"].native == hashlib.sha256(tst_der).digest()
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(pki.tsa_cert.dump()).digest()
    assert ess["issuer_serial"]["serial_number"].native == pki.tsa_cert.serial_number
    to_verify = signer["signed_attrs"].untag()
    key = PublicKey.from_spki(pki.tsa_cert.public_key.dump())
    verify_signature(key, to_verify.dump(), signer["signature"].native,
                     signer["signature_algorithm"])
    return tsp.TSTInfo.load(tst_der), signed


def rejected(der: bytes) -> tuple[set[str], str]:
    resp = TimeStampResp.load(der, strict=True)
    status = resp["status"]
    assert status["status"].native == "rejection"
    assert resp["time_stamp_token"].native is None
    return set(status["fail_info"].native), " ".join(status["status_string"].native)


def test_token_fields(tsa: TimeStampAuthority, pki: Pki) -> None:
    info, signed = granted(tsa.respond(request(nonce=0x1234567890ABCDEF, cert_req=True), NOW),
                           pki)
    assert info["policy"].dotted == tsa.policy
    assert info["gen_time"].native == NOW
    assert info["nonce"].native == 0x1234567890ABCDEF
    assert info["accuracy"].native == {"seconds": None, "millis": 500, "micros": None}
    assert info["message_imprint"]["hashed_message"].native == digest("sha256", b"document")
    # a SET OF: DER orders it, so compare without order
    assert {c.chosen.dump() for c in signed["certificates"]} == {pki.tsa_cert.dump(),
                                                                 pki.ca_cert.dump()}


def test_certificates_only_when_asked(tsa: TimeStampAuthority, pki: Pki) -> None:
    _, signed = granted(tsa.respond(request(), NOW), pki)
    assert signed["certificates"].native is None


def test_serials_unique_and_persistent(pki: Pki, tmp_path: Path) -> None:
    counter_file = tmp_path / "serial"
    seen = []
    for _ in range(2):  # a restart: a second authority on the same counter file
        tsa = TimeStampAuthority(pki.tsa_key, pki.tsa_cert, FileSerialCounter(counter_file,
                                                                              block=3))
        for _ in range(5):
            info, _ = granted(tsa.respond(request(), NOW), pki)
            seen.append(info["serial_number"].native)
    assert len(set(seen)) == len(seen) == 10


def _take(path: str, count: int, queue: Any) -> None:
    counter = FileSerialCounter(Path(path), block=7)
    queue.put([counter.next_serial() for _ in range(count)])


def test_serials_unique_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(str(tmp_path / "serial"), 50, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    serials = [s for _ in procs for s in queue.get(timeout=30)]
    for p in procs:
        p.join(timeout=30)
    assert len(serials) == 200 and len(set(serials)) == 200


def test_corrupt_counter_is_a_system_failure_not_a_crash(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "serial").write_text("not a number")
    tsa = TimeStampAuthority(pki.tsa_key, pki.tsa_cert, FileSerialCounter(tmp_path / "serial"))
    fail, text = rejected(tsa.respond(request(), NOW))
    assert fail == {"system_failure"}
    assert "could not sign" in text
    assert (tmp_path / "serial").read_text() == "not a number"  # left for the operator


@pytest.mark.parametrize(
    ("what", "der", "fail"),
    [
        ("garbage", b"\x30\x03\x02\x01", "bad_data_format"),
        ("empty", b"", "bad_data_format"),
        ("version 2", request(version=2), "bad_data_format"),
        ("md5 imprint", tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "md5"},
                                "hashed_message": b"\x00" * 16}}).dump(), "bad_alg"),
        ("short imprint", tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                "hashed_message": b"\x00" * 20}}).dump(), "bad_data_format"),
        ("foreign policy", request(req_policy="1.2.3.4"), "unaccepted_policy"),
        ("negative nonce", request(nonce=-5), "bad_request"),
        ("huge nonce", request(nonce=1 << 600), "bad_request"),
        ("extension", request(extensions=[{"extn_id": "1.2.3", "extn_value": b"x"}]),
         "unaccepted_extensions"),
    ],
)
def test_bad_requests_are_rejected_with_fail_info(
    tsa: TimeStampAuthority, what: str, der: bytes, fail: str
) -> None:
    fail_info, text = rejected(tsa.respond(der, NOW))
    assert fail_info == {fail}, what
    assert text


def test_requested_policy_when_offered(pki: Pki, tmp_path: Path) -> None:
    tsa = TimeStampAuthority(pki.tsa_key, pki.tsa_cert, FileSerialCounter(tmp_path / "s"),
                             accepted_policies=("1.2.3.4",))
    info, _ = granted(tsa.respond(request(req_policy="1.2.3.4"), NOW), pki)
    assert info["policy"].dotted == tsa.policy


def test_tsa_certificate_must_be_fit(pki: Pki, tmp_path: Path) -> None:
    counter = FileSerialCounter(tmp_path / "s")
    with pytest.raises(TsaConfigError, match="timeStamping"):
        TimeStampAuthority(pki.ocsp_key, pki.ocsp_cert, counter)  # EKU OCSPSigning
    with pytest.raises(TsaConfigError, match="does not match"):
        TimeStampAuthority(pki.ocsp_key, pki.tsa_cert, counter)


def test_sm2_tsa_signs_with_sm2_and_sm3(tmp_path: Path) -> None:
    sm2 = make_pki("sm2")
    tsa = TimeStampAuthority(sm2.tsa_key, sm2.tsa_cert, FileSerialCounter(tmp_path / "s"))
    resp = TimeStampResp.load(tsa.respond(request(hash_name="sm3"), NOW))
    signer = resp["time_stamp_token"]["content"]["signer_infos"][0]
    assert signer["digest_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.401"
    assert signer["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == digest("sm3", sm2.tsa_cert.dump())
    signed = signer["signed_attrs"].untag()
    key = PublicKey.from_spki(sm2.tsa_cert.public_key.dump())
    verify_signature(key, signed.dump(), signer["signature"].native,
                     signer["signature_algorithm"])


# -- interoperability: openssl ts -query -> our TSA -> openssl ts -verify -------------------


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI")
        pytest.skip("openssl command line not installed")
    return path


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa2048"])
def test_openssl_ts_verify_accepts_our_tokens(algorithm: str, tmp_path: Path) -> None:
    exe = openssl()
    pki = make_pki(algorithm)
    paths = pki.write(tmp_path)
    data = tmp_path / "document.txt"
    data.write_bytes("社会保障卡 document".encode())
    tsa = TimeStampAuthority(pki.tsa_key, pki.tsa_cert, FileSerialCounter(tmp_path / "serial"),
                             chain=(pki.ca_cert,))
    for cert_req in (True, False):
        query = tmp_path / "req.tsq"
        reply = tmp_path / "reply.tsr"
        subprocess.run([exe, "ts", "-query", "-data", data, "-sha256",
                        *(["-cert"] if cert_req else []), "-out", query],
                       check=True, capture_output=True)
        reply.write_bytes(tsa.respond(query.read_bytes()))
        # checked against the query (imprint, nonce, policy) and the data itself
        for source in (["-queryfile", query], ["-data", data]):
            result = subprocess.run(
                [exe, "ts", "-verify", "-in", reply, *source, "-CAfile", paths["chain"],
                 "-untrusted", paths["tsa"]],
                capture_output=True, text=True,
            )
            assert result.returncode == 0, result.stderr
            assert "Verification: OK" in result.stdout
        # the token does not vouch for other data
        other = tmp_path / "other.txt"
        other.write_bytes(b"tampered")
        result = subprocess.run(
            [exe, "ts", "-verify", "-in", reply, "-data", other, "-CAfile", paths["chain"],
             "-untrusted", paths["tsa"]],
            capture_output=True, text=True,
        )
        assert result.returncode != 0
        assert "message imprint mismatch" in result.stderr


def test_openssl_reads_our_rejection(tmp_path: Path, tsa: TimeStampAuthority) -> None:
    exe = openssl()
    reply = tmp_path / "reply.tsr"
    reply.write_bytes(tsa.respond(b"garbage"))
    result = subprocess.run([exe, "ts", "-reply", "-in", reply, "-text"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "Status: Rejected" in result.stdout
    assert "the data submitted has the wrong format" in result.stdout
