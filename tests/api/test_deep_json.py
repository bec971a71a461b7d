"""Issue 12 finding 11: JSON nested 5,000 deep gave 500 on every service. Each service's JSON
API refuses it with a 400 (authenticated callers, so the body is really read)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.authority import CertificateAuthority
from ca.authorization import AccessConfig, ApiOperation, Principal
from ca.config import default_config_text
from ca.service import ServiceConfig
from ca.service import create_app as ca_app
from keymgmt.web import API_PREFIX
from keymgmt.web import create_app as kmc_app
from ra.web import WebConfig
from ra.web import create_app as ra_app
from sscard.audit import AuditLog
from sscard.jsonbody import JsonBodyError, parse
from tests.kmc.kmc_helpers import new_kmc
from tests.ra.rig import RaRig, make_rig

DEEP = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
HEADERS = {"Content-Type": "application/json"}


def test_parse_limits_depth_iteratively() -> None:
    assert parse(b'{"a": [[1]]}', max_depth=3) == {"a": [[1]]}
    for data, depth in ((b'{"a": [[1]]}', 2), (b"[" * 40 + b"]" * 40, 32), (DEEP, 32)):
        with pytest.raises(JsonBodyError, match=f"nested more than {depth}"):
            parse(data, max_depth=depth)


@pytest.fixture(scope="module")
def ra_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    r = make_rig(tmp_path_factory.mktemp("ra-deep"))
    yield r
    r.close()


def test_lone_surrogates_are_refused_pairs_kept() -> None:
    assert parse(b'{"a": "\\ud83d\\ude00", "b": "\\\\udc80"}') == {"a": "😀", "b": "\\udc80"}
    for data in (b'{"a": "\\udc80"}', b'{"\\uD800x": 1}', b'["\\ud83d"]'):
        with pytest.raises(JsonBodyError, match="lone surrogate"):
            parse(data)


def test_ra_api(ra_rig: RaRig) -> None:
    client = ra_app(ra_rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False)
                    ).test_client()
    answer = client.post("/api/v1/enrollments", data=DEEP, headers={
        **HEADERS, "Authorization": f"Bearer {ra_rig.api_token}"})
    assert answer.status_code == 400, answer.data


def test_kmc_api(tmp_path: Path) -> None:
    kmc = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    try:
        token = kmc.add_caller("ra", "ra")
        answer = kmc_app(kmc).test_client().post(API_PREFIX + "/escrow", data=DEEP, headers={
            **HEADERS, "Authorization": f"Bearer {token}"})
        assert answer.status_code == 400, answer.data
    finally:
        kmc.close()


def test_ca_api(tmp_path: Path) -> None:
    (tmp_path / "ca.toml").write_text(default_config_text(), encoding="utf-8")
    ca = CertificateAuthority.init(tmp_path / "home", tmp_path / "ca.toml",
                                   passphrase=b"deep json test",
                                   audit=AuditLog.at_home(tmp_path / "home"))
    try:
        token = "deep-json-token-0123456789abcdef"
        ra = Principal("ra", frozenset(ApiOperation), frozenset({"business-system"}),
                       frozenset({"issuing"}), token_sha256=ServiceConfig.hash_token(token))
        app = ca_app(ServiceConfig(authority=ca, access=AccessConfig({"ra": ra})))
        answer = app.test_client().post("/api/v1/certificates", data=DEEP, headers={
            **HEADERS, "Authorization": f"Bearer {token}"})
        assert answer.status_code == 400, answer.data
        assert b"nested more than" in answer.data
    finally:
        ca.close()
