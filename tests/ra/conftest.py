"""RA test fixtures: one rig (CA, KMC, audit log, RA) per module and its web app."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from flask import Flask

from ra.web import WebConfig, create_app
from tests.ra.rig import RaRig, make_rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    r = make_rig(tmp_path_factory.mktemp("ra"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def app(rig: RaRig) -> Flask:
    # with the offline certificate form switched on: its pages and attacks are tested here
    # (off by default: tests/ra/test_card_login.py checks it is not served then)
    return create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False,
                                        offline_certificate_login=True))
