"""The gateway over real HTTP: operations, caller authentication, authorisation, limits,
errors and the audit trail."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from openapi_spec_validator import validate

from sscard import httpsig as rs
from sscard.cms import ContentCipher, encrypt
from sscard.gateway.client import GatewayClient, GatewayClientError
from tests.cms.pki import make_leaf
from tests.gateway.conftest import Rig

DOC = "失业保险金申领登记表 编号 2026-000123".encode() * 20


def error_of(exc: pytest.ExceptionInfo[GatewayClientError]) -> str:
    return exc.value.code


def test_openapi_document_is_served(rig: Rig) -> None:
    doc = requests.get(rig.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    validate(doc)  # a valid OpenAPI document, by an independent validator
    for path in ("/v1/sign", "/v1/sign/batch", "/v1/verify", "/v1/verify/batch", "/v1/encrypt",
                 "/v1/decrypt", "/v1/certificates/status", "/v1/cardholder/challenge",
                 "/v1/cardholder/verify"):
        assert "post" in doc["paths"][path], path
    assert set(doc["components"]["securitySchemes"]) == {"mutualTLS", "requestSignature"}


def test_sign_then_verify_names_the_signer(rig: Rig) -> None:
    gw = rig.client()
    signed = gw.sign(DOC, "hr-sign")
    report = gw.verify(signed, return_content=True)
    assert report["valid"] is True and report["reasons"] == []
    assert report["signer"]["common_name"] == "人社厅业务签名"
    assert base64.b64decode(report["content"]) == DOC
    detached = gw.sign(DOC, "hr-sign", detached=True)
    assert gw.verify(detached, DOC)["valid"]
    changed = gw.verify(detached, DOC + b" ")
    assert [r["code"] for r in changed["reasons"]] == ["CONTENT_CHANGED"]


def test_sign_with_timestamp_and_gm_content_types(rig: Rig) -> None:
    gw = rig.client()
    signed = gw.sign(DOC, "hr-sign", timestamp=True, content_types="gm")
    report = gw.verify(signed)
    assert report["valid"], report
    assert report["timestamp_time"] is not None


def test_batch_sign_and_verify(rig: Rig) -> None:
    gw = rig.client()
    docs = [DOC + str(i).encode() for i in range(5)]
    signed = gw.sign_batch(docs, "hr-sign", detached=True)
    assert len(signed) == 5
    results = gw.verify_batch([(s, d) for s, d in zip(signed, docs, strict=True)]
                              + [(signed[0], docs[1]), (b"junk", None)])
    assert [r["valid"] for r in results] == [True] * 5 + [False, False]
    assert results[5]["reasons"][0]["code"] == "CONTENT_CHANGED"
    assert results[6]["error"]["code"] == "MALFORMED_INPUT"


def test_encrypt_and_decrypt_for_the_calling_system(rig: Rig) -> None:
    gw = rig.client()
    for cipher in ("sm4_cbc", "sm4_gcm", "aes256_gcm"):
        env = gw.encrypt(DOC, [rig.employment_enc.cert], cipher=cipher)
        assert gw.decrypt(env) == DOC
    auth = gw.encrypt(DOC, [rig.employment_enc.cert], cipher="sm4_gcm", authenticated=True)
    assert gw.decrypt(auth) == DOC
    with pytest.raises(GatewayClientError) as exc:
        gw.encrypt(DOC, [rig.employment_enc.cert], cipher="sm4_cbc", authenticated=True)
    assert exc.value.code == "BAD_REQUEST" and "GCM" in exc.value.message
    # an envelope for somebody else is not opened
    other = make_leaf("CN=someone else,C=CN", rig.pki.ca)
    with pytest.raises(GatewayClientError) as exc:
        gw.decrypt(encrypt(DOC, [other.cert], cipher=ContentCipher.SM4_CBC))
    assert exc.value.code == "NOT_ADDRESSED_TO_CALLER" and exc.value.status == 422


def test_certificate_status(rig: Rig) -> None:
    gw = rig.client()
    good = gw.certificate_status(rig.pki.signer.cert)
    assert good["status"] == "good" and good["revocation_checked"]
    assert good["subject"]["social_insurance_number"] == "350102199001011234"
    revoked = gw.certificate_status(rig.revoked_person.cert)
    assert revoked["status"] == "revoked"
    assert revoked["revocation_time"] is not None
    assert revoked["revocation_reason"] == "keyCompromise"  # one spelling on every API


def test_unauthenticated_caller_is_refused(rig: Rig) -> None:
    answer = requests.post(rig.url + "/v1/verify", json={"signed": "AA=="}, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("who,code", [
    ("outsider", "UNAUTHENTICATED"),          # a certificate from another CA
    ("revoked_system", "UNAUTHENTICATED"),    # our CA, but revoked
    ("no-client-eku", "UNAUTHENTICATED"),     # our CA, not for client authentication
])
def test_callers_with_unacceptable_certificates_are_refused(rig: Rig, who: str,
                                                            code: str) -> None:
    issued = {"outsider": rig.outsider, "revoked_system": rig.revoked_system}.get(who) \
        or rig.systems[who]
    gw = GatewayClient(rig.url, key=issued.key, certificate=issued.cert)
    with pytest.raises(GatewayClientError) as exc:
        gw.verify(b"x")
    assert exc.value.code == code and exc.value.status == 401


def _signed_post(rig: Rig, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(rig.url + path, data=body,
                         headers={"Content-Type": "application/json", **headers}, timeout=10)


def test_forged_stale_and_replayed_request_signatures_are_refused(rig: Rig) -> None:
    s = rig.systems["employment"]
    body = json.dumps({"signed": base64.b64encode(b"junk").decode()}).encode()
    headers = rs.sign_request(s.key, s.cert, "POST", "/v1/verify", "", body)
    first = _signed_post(rig, "/v1/verify", body, headers)
    assert first.status_code == 400  # authenticated; the junk is refused as malformed
    replay = _signed_post(rig, "/v1/verify", body, headers)
    assert replay.status_code == 401 and replay.json()["code"] == "REPLAYED_REQUEST"

    altered = _signed_post(rig, "/v1/verify", body.replace(b"signed", b"signeD"),
                           rs.sign_request(s.key, s.cert, "POST", "/v1/verify", "", body))
    assert altered.status_code == 401 and altered.json()["code"] == "UNAUTHENTICATED"

    old = rs.sign_request(s.key, s.cert, "POST", "/v1/verify", "", body,
                          now=datetime.now(UTC) - timedelta(minutes=10))
    stale = _signed_post(rig, "/v1/verify", body, old)
    assert stale.status_code == 401 and stale.json()["code"] == "REQUEST_EXPIRED"

    partial = {k: v for k, v in headers.items() if k != rs.NONCE}
    missing = _signed_post(rig, "/v1/verify", body, partial)
    assert missing.status_code == 401 and "X-Sscard-Nonce" in missing.json()["detail"]


def test_authorisation_per_system(rig: Rig) -> None:
    fund = rig.client("fund")
    signed = rig.client().sign(DOC, "hr-sign")
    assert fund.verify(signed)["valid"]  # fund may verify
    for call in (lambda: fund.sign(DOC, "hr-sign"),
                 lambda: fund.decrypt(b"x"),
                 lambda: fund.cardholder_challenge()):
        with pytest.raises(GatewayClientError) as exc:
            call()
        assert exc.value.code == "FORBIDDEN" and exc.value.status == 403
    with pytest.raises(GatewayClientError) as exc:
        rig.client().sign(DOC, "someone-elses-key")
    assert exc.value.code == "FORBIDDEN"
    with pytest.raises(GatewayClientError) as exc:
        rig.client("unregistered").verify(signed)
    assert exc.value.code == "UNAUTHENTICATED" and "not registered" in exc.value.message


def test_request_size_and_batch_limits(rig: Rig) -> None:
    gw = rig.client()
    with pytest.raises(GatewayClientError) as exc:
        gw.sign(b"x" * (300 * 1024), "hr-sign")
    assert exc.value.code == "PAYLOAD_TOO_LARGE" and exc.value.status == 413
    with pytest.raises(GatewayClientError) as exc:
        gw.sign_batch([b"a"] * 51, "hr-sign")
    assert exc.value.code == "BATCH_TOO_LARGE"


@pytest.mark.parametrize("body,code", [
    ({"key": "hr-sign", "content": "not base64!"}, "BAD_REQUEST"),
    ({"key": "hr-sign"}, "BAD_REQUEST"),
    ({"content": "AA=="}, "BAD_REQUEST"),
])
def test_bad_sign_requests_name_the_problem(rig: Rig, body: dict[str, object],
                                            code: str) -> None:
    with pytest.raises(GatewayClientError) as exc:
        rig.client().call("/v1/sign", body)
    assert exc.value.code == code and exc.value.status == 400
    assert "'content'" in exc.value.message or "'key'" in exc.value.message


def test_malformed_documents_are_refused_clearly(rig: Rig) -> None:
    gw = rig.client()
    with pytest.raises(GatewayClientError) as exc:
        gw.verify(b"\x30\x80garbage")
    assert exc.value.code == "MALFORMED_INPUT"
    with pytest.raises(GatewayClientError) as exc:
        gw.decrypt(b"\x04\x01\x00")
    assert exc.value.code == "MALFORMED_INPUT"
    with pytest.raises(GatewayClientError) as exc:
        gw.encrypt(DOC, [b"not a certificate"])
    assert exc.value.code == "MALFORMED_INPUT" and "recipients[0]" in exc.value.message
    s = rig.systems["employment"]
    body = b"[1, 2]"
    answer = _signed_post(rig, "/v1/verify", body,
                          rs.sign_request(s.key, s.cert, "POST", "/v1/verify", "", body))
    assert answer.status_code == 400 and answer.json()["code"] == "BAD_REQUEST"


def test_mutual_tls_caller(rig: Rig) -> None:
    gw = GatewayClient(rig.tls_url, tls_client=(str(rig.files / "tls-client.pem"),
                                                str(rig.files / "tls-client.key")),
                       ca_file=str(rig.files / "tls-roots.pem"))
    signed = gw.sign(DOC, "hr-sign")
    assert gw.verify(signed)["valid"]
    assert any(r["actor"] == "employment" and r["details"].get("auth") == "mtls"
               for r in rig.recorder.records)


def test_tls_without_client_certificate_is_refused(rig: Rig) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(rig.tls_url + "/v1/verify", json={}, timeout=10,
                      verify=str(rig.files / "tls-roots.pem"))


def test_every_call_is_recorded_without_content(rig: Rig) -> None:
    secret_doc = "机密：张三的医保结算明细".encode()
    gw = rig.client()
    signed = gw.sign(secret_doc, "hr-sign")
    gw.verify(signed)
    requests.post(rig.url + "/v1/sign", json={}, timeout=10)
    dump = json.dumps(list(rig.recorder.records), ensure_ascii=False)
    assert "机密" not in dump
    assert base64.b64encode(secret_doc).decode() not in dump
    actions = [(r["actor"], r["action"], r["outcome"]) for r in list(rig.recorder.records)[-3:]]
    assert actions == [("employment", "gateway.sign", "success"),
                       ("employment", "gateway.verify", "success"),
                       ("unauthenticated", "gateway.sign", "denied")]
    assert list(rig.recorder.records)[-3]["object"] == "key:hr-sign"


def test_encrypting_to_a_revoked_or_foreign_certificate_is_refused(rig: Rig) -> None:
    gw = rig.client()
    for cert, words in ((rig.revoked_person.cert, "REVOKED"),
                        (rig.outsider.cert, "UNTRUSTED_ROOT")):
        with pytest.raises(GatewayClientError) as exc:
            gw.encrypt(DOC, [cert])
        assert exc.value.code == "RECIPIENT_NOT_VALID" and exc.value.status == 422
        assert words in exc.value.message and "recipients[0]" in exc.value.message
