"""The RA's calls to a KMC that asks for TLS client certificates (``sscard kmc serve
--tls-client-ca``, as deploy/systemd/sscard-kmc.service runs it): the RA's KMC caller as
``sscard ra serve --kmc-url https://... --kmc-ca-file --kmc-tls-cert --kmc-tls-key
--kmc-tls-key-passphrase-file`` builds it (ra.kmc_http.kmc_client with sscard.tls_client),
against the real served KMC. Without the client certificate, or with one from another CA, the
handshake is refused and nothing is escrowed; the KMC's server certificate is checked against
the CA file given and nothing else; with the RA's certificate (its key encrypted at rest) the
escrow goes through. Bad options are named before anything is served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keymgmt.db import default_url
from keymgmt.errors import KmcUnavailable
from keymgmt.records import EscrowResult
from ra.kmc_http import HttpKmc, kmc_client
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.tls_client import ClientTls
from tests.deploy.test_serving import (  # noqa: F401  (fixtures)
    Site,
    Start,
    _tls_args,
    serve,
    site,
)
from tests.deploy.tlsfiles import encrypted_client_key, free_port, make_foreign_client

KEY_PASSPHRASE = "ra kmc tls key passphrase 3"


def _kmc(deployment: Site, start: Start) -> str:
    """``sscard kmc serve`` over HTTPS asking for client certificates under the test TLS CA;
    its base URL."""
    served = start("kmc", *_tls_args(deployment), "--tls-client-ca", str(deployment.tls.ca),
                   client=True)
    return served.url.removesuffix("/health")


def _escrow(url: str, deployment: Site, tls: ClientTls) -> EscrowResult:
    ra_key = (deployment.tmp / "ra.key").read_text().strip()
    kmc = HttpKmc(kmc_client(url, ra_key, tls), lambda officer: kmc_client(url, officer, tls))
    try:
        return kmc.escrow("350102199001011234", SM2PrivateKey.generate().public_key().spki_der())
    finally:
        kmc.close()


def test_the_kmc_refuses_the_ra_without_its_client_certificate(
        site: Site, serve: Start, tmp_path: Path) -> None:  # noqa: F811
    url = _kmc(site, serve)
    before = _escrowed(site)
    with pytest.raises(KmcUnavailable, match=r"(?i)ssl|certificate|handshake|reset|EOF"):
        _escrow(url, site, ClientTls(site.tls.ca))  # the KMC's CA, but no client certificate
    _, (cert, key) = make_foreign_client(tmp_path)
    with pytest.raises(KmcUnavailable):
        _escrow(url, site, ClientTls(site.tls.ca, Path(cert), Path(key)))  # another CA's
    assert _escrowed(site) == before  # nothing reached the KMC's service


def test_the_ra_checks_the_kmcs_server_certificate_against_its_ca_file_only(
        site: Site, serve: Start, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = _kmc(site, serve)
    other_ca, _ = make_foreign_client(tmp_path)
    # requests would take this bundle (which does hold the KMC's CA) over its own settings
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(site.tls.ca))
    key, _ = encrypted_client_key(site.tls, tmp_path, KEY_PASSPHRASE)
    tls = ClientTls(other_ca, site.tls.client_cert, key, KEY_PASSPHRASE.encode())
    with pytest.raises(KmcUnavailable, match=r"(?i)certificate verify failed"):
        _escrow(url, site, tls)


def test_the_ra_with_its_client_certificate_escrows_at_the_kmc(
        site: Site, serve: Start, tmp_path: Path) -> None:  # noqa: F811
    url = _kmc(site, serve)
    key, _ = encrypted_client_key(site.tls, tmp_path, KEY_PASSPHRASE)
    before = _escrowed(site)
    tls = ClientTls(site.tls.ca, site.tls.client_cert, key, KEY_PASSPHRASE.encode())
    escrowed = _escrow(url, site, tls)
    assert escrowed.owner == "350102199001011234" and escrowed.public_key_spki
    assert _escrowed(site) == before + 1
    assert KEY_PASSPHRASE not in repr(tls)


def _escrowed(deployment: Site) -> int:
    """How many keys the KMC's database holds."""
    from sqlalchemy import create_engine, text

    engine = create_engine(default_url(deployment.home))
    try:
        with engine.connect() as db:
            return int(db.execute(text("SELECT count(*) FROM kmc_escrowed_keys")).scalar_one())
    finally:
        engine.dispose()


def _ra_serve(deployment: Site, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    for name, content in (("ra.key", "k\n"), ("service.key", "-\n"), ("service.pass", "p\n")):
        (tmp_path / name).write_text(content)
        (tmp_path / name).chmod(0o600)
    return subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(tmp_path / "ra-home"), "ra", "serve",
         "--port", str(free_port()), "--kmc-ra-key-file", str(tmp_path / "ra.key"),
         "--ca-url", "http://127.0.0.1:9", "--service-key", str(tmp_path / "service.key"),
         "--service-key-passphrase-file", str(tmp_path / "service.pass"),
         "--service-certificate", str(deployment.tls.client_cert), *extra],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("extra", "refusal"), [
    (["--kmc-url", "http://127.0.0.1:9", "--kmc-ca-file", "{ca}"], "for an https --kmc-url"),
    (["--kmc-url", "https://127.0.0.1:9", "--kmc-tls-cert", "{cert}", "--kmc-tls-key",
      "{key}"], "needs --kmc-ca-file"),
    (["--kmc-url", "https://127.0.0.1:9", "--kmc-ca-file", "{ca}", "--kmc-tls-cert", "{cert}"],
     "go together"),
    (["--kmc-url", "https://127.0.0.1:9", "--kmc-ca-file", "{ca}", "--kmc-tls-cert", "{cert}",
      "--kmc-tls-key", "{key}"], "an encrypted key needs --kmc-tls-key-passphrase-file"),
    (["--kmc-url", "https://127.0.0.1:9", "--kmc-ca-file", "{ca}", "--kmc-tls-cert", "{cert}",
      "--kmc-tls-key", "{key}", "--kmc-tls-key-passphrase-file", "{wrong}"],
     "wrong passphrase"),
])
def test_bad_kmc_tls_options_are_named_before_serving(site: Site, tmp_path: Path,  # noqa: F811
                                                      extra: list[str], refusal: str) -> None:
    key, _ = encrypted_client_key(site.tls, tmp_path, KEY_PASSPHRASE)
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    files = {"ca": site.tls.ca, "cert": site.tls.client_cert, "key": key, "wrong": wrong}
    done = _ra_serve(site, tmp_path, *(arg.format(**files) for arg in extra))
    assert done.returncode == 2 and refusal in " ".join(done.stderr.split()), done.stderr
    assert "not the passphrase" not in done.stderr + done.stdout
    assert not (tmp_path / "ra-home").exists()  # refused before anything was made
