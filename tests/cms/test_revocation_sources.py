"""Revocation from the sources the certificates name, fetched over HTTP: OCSP from the
project's responder (ca.ocsp), falling back to the CRL distribution point when the OCSP
responder cannot be reached; and ``sscard verify`` saying when revocation was not checked,
checking it with --crl, --ocsp URL and --fetch (only under the allow-list)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard.cli import cli
from sscard.cms import TrustConfig, Verifier, sign
from sscard.cms.revocation import RevocationFetch
from sscard.fetch import AllowList, FetchPolicy
from tests.cms.pki import NOW, Issued, Pki, make_crl, make_leaf
from tests.cms.revocation_http import Http, ocsp_chain, sources

DOC = "异地就医备案".encode()


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    with Http() as server:
        yield server


@pytest.fixture(scope="module")
def chain(http: Http) -> tuple[Issued, Issued, dict[int, datetime]]:
    return ocsp_chain(http, "CN=Revocation Root,C=CN", "CN=Revocation CA,C=CN")


def _signed(leaf: Issued, ca: Issued) -> bytes:
    return sign(DOC, leaf.key, leaf.cert, chain=[ca.cert])


def _allowing(*prefixes: str) -> RevocationFetch:
    return RevocationFetch(FetchPolicy(AllowList(prefixes)))


def test_ocsp_from_the_responder_the_certificate_names(http: Http, chain) -> None:
    root, ca, revoked = chain
    good = make_leaf("CN=钱一,C=CN", ca, extra=sources(http.url + "/ocsp", http.url + "/ca.crl"))
    bad = make_leaf("CN=钱二,C=CN", ca, extra=sources(http.url + "/ocsp", http.url + "/ca.crl"))
    when = NOW - timedelta(hours=2)
    revoked[bad.cert.serial_number] = when
    http.crl = make_crl(ca).dump()  # the CRL says nothing: only OCSP knows of the revocation
    verifier = Verifier(TrustConfig([root.cert], revocation_fetch=_allowing(http.url + "/")))
    before = http.ocsp_requests
    assert verifier.verify(_signed(good, ca)).valid
    report = verifier.verify(_signed(bad, ca))
    assert [p.code.value for p in report.problems] == ["REVOKED"]
    assert report.problems[0].at == when
    assert http.ocsp_requests > before


def test_falls_back_to_the_crl_when_ocsp_is_down(http: Http, chain) -> None:
    root, ca, _revoked = chain
    dead = "http://127.0.0.1:9/ocsp"  # nothing listens on the discard port
    leaf = make_leaf("CN=钱三,C=CN", ca, extra=sources(dead, http.url + "/ca.crl"))
    other = make_leaf("CN=钱四,C=CN", ca, extra=sources(dead, http.url + "/ca.crl"))
    when = NOW - timedelta(hours=1)
    http.crl = make_crl(ca, [(leaf.cert, when)], number=2).dump()
    verifier = Verifier(TrustConfig([root.cert], revocation_fetch=_allowing(http.url + "/", dead)))
    report = verifier.verify(_signed(leaf, ca))
    assert [p.code.value for p in report.problems] == ["REVOKED"]
    assert report.problems[0].at == when
    assert verifier.verify(_signed(other, ca)).valid


def test_the_one_fetch_setting_asks_nobody_off_the_allow_list(http: Http, chain) -> None:
    """A signer's certificate names the URLs; only the operator's allow-list decides whether
    they are asked: here the responder and the distribution point are off it."""
    root, ca, revoked = chain
    bad = make_leaf("CN=钱五,C=CN", ca, extra=sources(http.url + "/ocsp", http.url + "/ca.crl"))
    revoked[bad.cert.serial_number] = NOW - timedelta(hours=2)
    verifier = Verifier(TrustConfig([root.cert],
                                    revocation_fetch=_allowing("http://127.0.0.1:9/only/")))
    before_ocsp, before_gets = http.ocsp_requests, len(http.gets)
    report = verifier.verify(_signed(bad, ca))
    assert not report.valid
    assert "REVOKED" not in [p.code.value for p in report.problems]
    assert (http.ocsp_requests, len(http.gets)) == (before_ocsp, before_gets)


# -- sscard verify: revocation you can see (issue 13) -------------------------------------


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture()
def files(chain, tmp_path: Path) -> Path:
    root, ca, _revoked = chain
    (tmp_path / "root.der").write_bytes(root.cert.dump())
    (tmp_path / "ca.der").write_bytes(ca.cert.dump())
    return tmp_path


def _revoked_signature(http: Http, chain, files: Path, revoked_in_crl: bool = True,
                       crl_url: str | None = None,
                       ocsp_url: str | None = None) -> tuple[Issued, Path]:
    _root, ca, revoked = chain
    leaf = make_leaf("CN=孙五,C=CN", ca,
                     extra=sources(ocsp_url, crl_url or http.url + "/ca.crl"))
    when = NOW - timedelta(hours=3)
    revoked[leaf.cert.serial_number] = when
    ca_crl = make_crl(ca, [(leaf.cert, when)] if revoked_in_crl else [], number=7)
    http.crl = ca_crl.dump()
    (files / "ca.crl").write_bytes(ca_crl.dump())
    (files / "doc.p7s").write_bytes(_signed(leaf, ca))
    return leaf, files / "doc.p7s"


def test_verify_says_revocation_was_not_checked(http: Http, chain, files: Path) -> None:
    """The attack: a signature by a revoked certificate printed VALID and nothing else."""
    _leaf, signed = _revoked_signature(http, chain, files)
    res = _cli("verify", "--trust", str(files / "root.der"), str(signed))
    assert res.exit_code == 0, res.output
    assert res.output.startswith("VALID")
    assert "note REVOCATION_NOT_CHECKED:" in res.output
    assert "not checked for revocation" in res.output
    as_json = _cli("verify", "--trust", str(files / "root.der"), "--json", str(signed))
    assert "REVOCATION_NOT_CHECKED" in as_json.output


def test_verify_with_the_leafs_crl_and_revocation_leaf(sm2_pki: Pki, tmp_path: Path) -> None:
    """One CRL, for the leaf only, is enough to report REVOKED with --revocation leaf; the
    default (require) also wants the issuing CA's own status from its root."""
    leaf = make_leaf("CN=孙七,C=CN", sm2_pki.ca)
    ca_crl = make_crl(sm2_pki.ca, [(leaf.cert, NOW - timedelta(hours=3))], number=9)
    (tmp_path / "ca.crl").write_bytes(ca_crl.dump())
    (tmp_path / "root.der").write_bytes(sm2_pki.root.cert.dump())
    (tmp_path / "doc.p7s").write_bytes(_signed(leaf, sm2_pki.ca))
    args = ["verify", "--trust", str(tmp_path / "root.der"), "--crl", str(tmp_path / "ca.crl")]
    res = _cli(*args, "--revocation", "leaf", str(tmp_path / "doc.p7s"))
    assert res.exit_code == 1, res.output
    assert res.output.startswith("NOT VALID")
    assert "REVOKED:" in res.output and "REVOCATION_UNKNOWN" not in res.output
    assert "REVOCATION_NOT_CHECKED" not in res.output
    res = _cli(*args, str(tmp_path / "doc.p7s"))
    assert res.exit_code == 1 and "REVOCATION_UNKNOWN" in res.output, res.output


def test_verify_revocation_leaf_when_the_ca_names_a_crl_url(http: Http, chain,
                                                           files: Path) -> None:
    """The issuing CA names a CRL distribution point of its own (root.crl): with --revocation
    leaf, the leaf's CRL alone still gives REVOKED (only the leaf's status is required), and a
    CA that the root's CRL at hand revokes is still reported revoked."""
    root, ca, _revoked = chain
    _leaf, signed = _revoked_signature(http, chain, files)
    args = ["verify", "--trust", str(files / "root.der"), "--crl", str(files / "ca.crl"),
            "--revocation", "leaf"]
    res = _cli(*args, str(signed))
    assert res.exit_code == 1, res.output
    assert "REVOKED:" in res.output and "REVOCATION_UNKNOWN" not in res.output, res.output
    good = make_leaf("CN=孙八,C=CN", ca, extra=sources(None, http.url + "/ca.crl"))
    (files / "good.p7s").write_bytes(_signed(good, ca))
    res = _cli(*args, str(files / "good.p7s"))
    assert res.exit_code == 0, res.output
    assert "REVOCATION_NOT_CHECKED" not in res.output
    (files / "root.crl").write_bytes(make_crl(root, [(ca.cert, NOW - timedelta(hours=1))]).dump())
    res = _cli(*args, "--crl", str(files / "root.crl"), str(files / "good.p7s"))
    assert res.exit_code == 1, res.output
    assert "REVOKED:" in res.output, res.output


def test_verify_with_a_given_ocsp_responder(http: Http, chain, files: Path) -> None:
    """--ocsp URL: the operator's responder answers for leaves that declare OCSP (their own,
    unreachable URL is not asked); a CRL file for the CA."""
    root, ca, revoked = chain
    declared = "http://ocsp.invalid/"
    _leaf, signed = _revoked_signature(http, chain, files, revoked_in_crl=False,
                                       ocsp_url=declared)
    good = make_leaf("CN=孙六,C=CN", ca, extra=sources(declared, http.url + "/ca.crl"))
    (files / "good.p7s").write_bytes(_signed(good, ca))
    (files / "root.crl").write_bytes(make_crl(root).dump())
    args = ["verify", "--trust", str(files / "root.der"), "--crl", str(files / "root.crl"),
            "--ocsp", http.url + "/ocsp"]
    before = http.ocsp_requests
    bad = _cli(*args, str(signed))
    assert bad.exit_code == 1, bad.output
    assert "REVOKED:" in bad.output
    ok = _cli(*args, str(files / "good.p7s"))
    assert ok.exit_code == 0, ok.output
    assert "REVOCATION_NOT_CHECKED" not in ok.output and "ocsp.invalid" not in ok.output
    assert http.ocsp_requests == before + 2
    assert good.cert.serial_number not in revoked


def test_verify_fetch_from_the_configured_cas_origin(http: Http, chain, files: Path) -> None:
    """--fetch: the CA given with --intermediate names URLs on the server's origin, so the
    leaf's CRL distribution point there is fetched."""
    _leaf, signed = _revoked_signature(http, chain, files)
    before = len(http.gets)
    res = _cli("verify", "--trust", str(files / "root.der"), "--intermediate",
               str(files / "ca.der"), "--fetch", str(signed))
    assert res.exit_code == 1, res.output
    assert "REVOKED:" in res.output
    assert "/ca.crl" in http.gets[before:]


def test_verify_fetch_refuses_urls_off_the_allow_list(http: Http, chain, files: Path) -> None:
    """A certificate naming another host is not fetched from (SSRF) unless --fetch-allow."""
    elsewhere = Http()
    try:
        elsewhere.crl = b""
        _leaf, signed = _revoked_signature(http, chain, files,
                                           crl_url=elsewhere.url + "/ca.crl")
        elsewhere.crl = http.crl
        res = _cli("verify", "--trust", str(files / "root.der"), "--intermediate",
                   str(files / "ca.der"), "--fetch", "--revocation", "leaf", str(signed))
        assert res.exit_code == 1, res.output
        assert "REVOCATION_UNKNOWN" in res.output
        assert "note REVOCATION_SOURCE_FAILED" in res.output
        assert "not on the fetch allow-list" in res.output
        assert elsewhere.gets == []
        res = _cli("verify", "--trust", str(files / "root.der"), "--intermediate",
                   str(files / "ca.der"), "--fetch", "--fetch-allow", elsewhere.url + "/",
                   "--revocation", "leaf", str(signed))
        assert res.exit_code == 1, res.output
        assert "REVOKED:" in res.output
        assert elsewhere.gets == ["/ca.crl"]
    finally:
        elsewhere.close()


def test_verify_fetch_follows_no_redirect(http: Http, chain, files: Path) -> None:
    _leaf, signed = _revoked_signature(http, chain, files, crl_url=http.url + "/redirect")
    before = len(http.gets)
    res = _cli("verify", "--trust", str(files / "root.der"), "--intermediate",
               str(files / "ca.der"), "--fetch", "--revocation", "leaf", str(signed))
    assert res.exit_code == 1, res.output
    assert "REVOCATION_UNKNOWN" in res.output and "redirects are not followed" in res.output
    assert "/ca.crl" not in http.gets[before:]


def test_verify_revocation_options_are_checked(files: Path) -> None:
    (files / "x.p7s").write_bytes(b"unused")
    res = _cli("verify", "--trust", str(files / "root.der"), "--fetch-allow", "http://x/",
               str(files / "x.p7s"))
    assert res.exit_code == 2 and "--fetch-allow applies with --fetch" in res.output
    res = _cli("verify", "--trust", str(files / "root.der"), "--ocsp", "ftp://x/ocsp",
               str(files / "x.p7s"))
    assert res.exit_code == 2 and "only http and https" in res.output
