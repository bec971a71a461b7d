"""Issue 12 finding 5: the gateway fetches nothing for unauthenticated calls or for
certificates that do not chain to its anchors, and nothing outside its allow-list for
authenticated ones; a listener on 127.0.0.1 records every request it receives."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import x509
from flask.testing import FlaskClient

from sscard import httpsig as rs
from sscard.cms import sign
from sscard.gateway.config import (
    CARDHOLDER_ENCRYPT_POLICY,
    GatewayConfig,
    SystemPolicy,
    fingerprint,
)
from sscard.gateway.revocation import default_fetch_policy
from sscard.gateway.service import create_app
from tests.cms.pki import Issued, make_ca, make_crl, make_leaf
from tests.fetch.listener import Listener, listener
from tests.gateway.conftest import Rig, business_system, policies


def pointing_at(url: str) -> list[tuple[str, Any, bool]]:
    """caIssuers, OCSP and CRL distribution point all at ``url`` (+ a suffix each)."""
    def uri(u: str) -> x509.GeneralName:
        return x509.GeneralName(name="uniform_resource_identifier", value=u)
    return [
        ("authority_information_access", [
            {"access_method": "ca_issuers", "access_location": uri(url + "issuer.crt")},
            {"access_method": "ocsp", "access_location": uri(url + "ocsp")}], False),
        ("crl_distribution_points", [x509.DistributionPoint({
            "distribution_point": x509.DistributionPointName(
                name="full_name", value=[uri(url + "ca.crl")])})], False),
    ]


@dataclass
class Setup:
    listener: Listener
    client: FlaskClient
    caller: Issued
    rig: Rig


@pytest.fixture()
def setup(rig: Rig) -> Iterator[Setup]:
    with listener() as ls:
        ca = rig.pki.ca
        caller = business_system("CN=fetching,O=x,C=CN", ca)
        config = GatewayConfig(
            trust_anchors=[rig.pki.root.cert], intermediates=[ca.cert],
            crls=[make_crl(ca), make_crl(rig.pki.root)], fetch_revocation=True,
            fetch_allow=[ls.url("/ca/")],
            systems={"fetching": SystemPolicy(
                frozenset({"verify", "encrypt", "status", "sign"}),
                certificates=frozenset({fingerprint(caller.cert)}))})
        yield Setup(ls, create_app(config).test_client(), caller, rig)


def _post(s: Setup, who: Issued, path: str, body: dict[str, Any]) -> Any:
    data = json.dumps(body).encode()
    headers = rs.sign_request(who.key, who.cert, "POST", path, "", data)
    return s.client.post(path, data=data, headers={**headers,
                                                    "Content-Type": "application/json"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_unauthenticated_calls_make_the_gateway_fetch_nothing(setup: Setup) -> None:
    rig, evil = setup.rig, setup.listener.url("/evil/")
    outsider_root = make_ca("CN=Fetch Outsider Root,C=CN")
    callers = [
        # another CA: no path to our anchors
        make_leaf("CN=x,C=CN", outsider_root, eku=["client_auth"], extra=pointing_at(evil)),
        # our CA, the business-system profile, but not registered
        make_leaf("CN=fetching,O=x,C=CN", rig.pki.ca, eku=["client_auth"],
                  extra=[*policies("1.2.156.10260.4.2.3.1"), *pointing_at(evil)]),
        # allowed URLs, but no path to our anchors: nothing is fetched either
        make_leaf("CN=y,C=CN", outsider_root, eku=["client_auth"],
                  extra=pointing_at(setup.listener.url("/ca/"))),
    ]
    for caller in callers:
        for path in ("/v1/sign", "/v1/verify", "/v1/certificates/status"):
            answer = _post(setup, caller, path, {})
            assert answer.status_code == 401, (path, answer.json)
    assert setup.listener.seen == []


def test_authenticated_calls_fetch_only_from_the_allow_list(setup: Setup) -> None:
    rig, ls = setup.rig, setup.listener
    evil = ls.url("/evil/")
    outsider_root = make_ca("CN=Fetch Outsider Root 2,C=CN")
    ours_evil = make_leaf("CN=张三,C=CN", rig.pki.ca, ssn="350102199001011234",
                          key_usage=("key_encipherment", "digital_signature"),
                          extra=[*policies(CARDHOLDER_ENCRYPT_POLICY), *pointing_at(evil)])
    foreign_evil = make_leaf("CN=李四,C=CN", outsider_root, extra=pointing_at(evil))
    evil_ca = make_ca("CN=Evil Intermediate,C=CN", outsider_root, extra=pointing_at(evil))
    under_evil_ca = make_leaf("CN=王五,C=CN", evil_ca, extra=pointing_at(evil))
    ours_allowed = make_leaf("CN=赵六,C=CN", rig.pki.ca, extra=pointing_at(ls.url("/ca/")))

    calls: list[tuple[str, dict[str, Any]]] = []
    for signer in (ours_evil, foreign_evil, under_evil_ca):
        signed = sign(b"doc", signer.key, signer.cert)
        calls.append(("/v1/verify", {"signed": _b64(signed)}))
        calls.append(("/v1/encrypt", {"content": _b64(b"x"),
                                      "recipients": [_b64(signer.cert.dump())]}))
        calls.append(("/v1/certificates/status", {"certificate": _b64(signer.cert.dump()),
                                                  "chain": [_b64(evil_ca.cert.dump())]}))
    calls.append(("/v1/certificates/status", {"certificate": _b64(ours_allowed.cert.dump())}))
    for path, body in calls:
        answer = _post(setup, setup.caller, path, body)
        assert answer.status_code in (200, 422), (path, answer.json)
    outside = [p for _m, p in ls.seen if not p.startswith("/ca/")]
    assert outside == []
    # fetching is on: the certificate of our CA naming allowed URLs was looked up there
    assert any(p.startswith("/ca/") for _m, p in ls.seen)


def test_the_default_allow_list_is_the_configured_cas_own_hosts(rig: Rig) -> None:
    ca = make_ca("CN=Published CA,C=CN", rig.pki.root,
                 extra=pointing_at("http://ca.example:8080/pub/"))
    policy = default_fetch_policy([rig.pki.root.cert, ca.cert], ["http://crl.example/x.crl"],
                                  None)
    assert policy.allow.allows("http://ca.example:8080/crl/issuing.crl")
    assert policy.allow.allows("http://crl.example/other.crl")
    assert not policy.allow.allows("http://127.0.0.1:8080/pub/ca.crl")
    assert not policy.allow.allows("http://169.254.169.254/latest/meta-data/")
    assert not default_fetch_policy([rig.pki.root.cert], [], None).allow.allows(
        "http://ca.example:8080/x")


def test_one_request_has_one_fetch_budget(setup: Setup) -> None:
    # a batch of 20 signatures, each by a certificate of ours naming allowed (but different)
    # URLs: one call, one budget (FetchPolicy.max_requests), not 20 budgets
    rig, ls = setup.rig, setup.listener
    items = []
    for i in range(20):
        signer = make_leaf(f"CN=批量{i},C=CN", rig.pki.ca,
                           extra=pointing_at(ls.url(f"/ca/{i}/")))
        items.append({"signed": _b64(sign(b"doc", signer.key, signer.cert))})
    answer = _post(setup, setup.caller, "/v1/verify/batch", {"items": items})
    assert answer.status_code == 200, answer.json
    assert 0 < len(ls.seen) <= default_fetch_policy([], [], [ls.url("/ca/")]).max_requests
