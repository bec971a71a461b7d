"""Fixtures for the CMS tests: throw-away PKIs (built once per session: key generation is the
slow part) and the openssl command line."""

from __future__ import annotations

import os
import shutil

import pytest

from ca.tsa import FileSerialCounter, TimeStampAuthority
from tests.cms.pki import Pki, make_leaf, make_pki


@pytest.fixture(scope="session")
def sm2_pki() -> Pki:
    return make_pki("sm2")


@pytest.fixture(scope="session")
def ec_pki() -> Pki:
    return make_pki("ec-p256")


@pytest.fixture(scope="session")
def rsa_pki() -> Pki:
    return make_pki("rsa2048")


@pytest.fixture(scope="session")
def openssl() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI (Debian package openssl)")
        pytest.skip("openssl command line not installed")
    return exe


@pytest.fixture(scope="session")
def sm2_tsa(sm2_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TimeStampAuthority:
    """The project's RFC 3161 TSA (ca.tsa) with an SM2 key certified by the SM2 test CA."""
    leaf = make_leaf("CN=Test TSA,O=人社厅,C=CN", sm2_pki.ca, "sm2",
                     key_usage=("digital_signature",), eku=["time_stamping"], critical_eku=True)
    serials = FileSerialCounter(tmp_path_factory.mktemp("tsa") / "serial")
    return TimeStampAuthority(leaf.key, leaf.cert, serials, chain=(sm2_pki.ca.cert,))
