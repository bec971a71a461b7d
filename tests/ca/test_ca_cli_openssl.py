"""The ``sscard ca`` command line end to end, with the OpenSSL 3 command line as the peer:
openssl makes the keys and CSRs, parses our certificates and CRLs, and verifies our chains
with ``-crl_check`` (full and delta CRLs) for ECDSA and RSA hierarchies.

SM2 with OpenSSL 3.0: ``openssl verify -vfyopt distid:1234567812345678`` applies the GM/T 0009
default ID to the certificate being verified only; intermediates and CRLs are checked with an
empty ID, so no GM/T-conformant three-level SM2 chain (OpenSSL's own included) passes
``openssl verify`` in one call on 3.0. The SM2 test therefore checks each link with -vfyopt,
and the CRL signature with ``openssl pkeyutl -verify -pkeyopt distid:...`` over its TBS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import crl as asn1crl
from click.testing import CliRunner, Result

from sscard.cli import cli
from sscard.x509.parse import load_certificate, load_certificates, load_crl
from sscard.x509.pem import der_to_pem
from tests.ca.conftest import run_openssl, write_config

DISTID = "distid:1234567812345678"


def sscard(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "ca", *args], catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def openssl_key_and_csr(tmp: Path, algorithm: str, subject: str, distid: bool = True) -> Path:
    key, csr = tmp / "holder.key", tmp / "holder.csr"
    if algorithm == "sm2":
        run_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2",
                    "-out", str(key))
        sig = ["-sigopt", DISTID] if distid else []
    elif algorithm == "ec-p256":
        run_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(key))
        sig = []
    else:
        run_openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key))
        sig = []
    run_openssl("req", "-new", "-key", str(key), "-subj", subject, "-utf8", *sig,
                "-out", str(csr))
    return csr


SUBJECT = "/CN=张三/serialNumber=350102199001011238/C=CN"


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa2048"])
def test_openssl_verifies_chain_with_full_and_delta_crls(
        tmp_path: Path, openssl_bin: str, algorithm: str) -> None:
    home = tmp_path / "home"
    out = ok(sscard(home, "init", "--config", str(write_config(tmp_path / "c.toml", algorithm))))
    assert "stored it in" in out and (home / "secrets" / "ca.pass").stat().st_mode & 0o777 == 0o600
    csr = openssl_key_and_csr(tmp_path, algorithm, SUBJECT)
    leaf = tmp_path / "leaf.pem"
    ok(sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(csr),
              "--out", str(leaf)))
    chain = tmp_path / "chain.pem"
    ok(sscard(home, "certs", "--out", str(chain)))
    certs = load_certificates(chain.read_bytes())
    assert [c.ca for c in certs] == [True, True] and certs[1].self_signed == "maybe"
    text = run_openssl("x509", "-in", str(leaf), "-noout", "-text").stdout
    assert "1.2.156.10260.4.1.2" in text and "CRL Distribution Points" in text
    assert "Digital Signature, Non Repudiation" in text

    crl1, root_crl = tmp_path / "crl1.pem", tmp_path / "root.crl.pem"
    ok(sscard(home, "crl", "--out", str(crl1)))
    ok(sscard(home, "crl", "--ca", "root", "--out", str(root_crl)))
    run_openssl("crl", "-in", str(crl1), "-noout", "-text")
    verify = ["verify", "-crl_check_all", "-CAfile", str(chain), "-CRLfile", str(crl1),
              "-CRLfile", str(root_crl)]
    assert run_openssl(*verify, str(leaf)).stdout.strip().endswith("OK")

    serial = run_openssl("x509", "-in", str(leaf), "-noout", "-serial").stdout.strip()
    assert serial.startswith("serial=")
    out = ok(sscard(home, "revoke", serial.removeprefix("serial="), "--reason", "keyCompromise"))
    assert "reason=keyCompromise" in out

    # a delta CRL on top of the old full CRL already tells openssl the leaf is revoked
    delta = tmp_path / "delta.pem"
    ok(sscard(home, "crl", "--delta", "--out", str(delta)))
    dtext = run_openssl("crl", "-in", str(delta), "-noout", "-text").stdout
    assert "Delta CRL Indicator" in dtext and serial.removeprefix("serial=") in dtext
    fail = run_openssl(*verify, "-use_deltas", "-CRLfile", str(delta), str(leaf), check=False)
    assert fail.returncode != 0 and "certificate revoked" in fail.stdout + fail.stderr

    crl2 = tmp_path / "crl2.pem"
    ok(sscard(home, "crl", "--out", str(crl2)))
    fail = run_openssl("verify", "-crl_check", "-CAfile", str(chain), "-CRLfile", str(crl2),
                       str(leaf), check=False)
    assert fail.returncode != 0 and "certificate revoked" in fail.stdout + fail.stderr
    assert "Key Compromise" in run_openssl("crl", "-in", str(crl2), "-noout", "-text").stdout


def test_sm2_chain_links_and_crl_signature_verify_in_openssl(tmp_path: Path,
                                                             openssl_bin: str) -> None:
    home = tmp_path / "home"
    ok(sscard(home, "init"))  # the default: an SM2 root and issuing CA
    csr = openssl_key_and_csr(tmp_path, "sm2", SUBJECT)
    leaf = tmp_path / "leaf.pem"
    ok(sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(csr),
              "--out", str(leaf)))
    chain = tmp_path / "chain.pem"
    ok(sscard(home, "certs", "--out", str(chain)))
    issuing_cert, root_cert = load_certificates(chain.read_bytes())
    issuing, root = tmp_path / "issuing.pem", tmp_path / "root.pem"
    issuing.write_bytes(der_to_pem(issuing_cert.dump(), "CERTIFICATE"))
    root.write_bytes(der_to_pem(root_cert.dump(), "CERTIFICATE"))
    assert "SM2-with-SM3" in run_openssl("x509", "-in", str(leaf), "-noout", "-text").stdout
    # openssl req without -sigopt distid signs with an empty ID: still proof of possession
    (tmp_path / "plain").mkdir()
    plain = openssl_key_and_csr(tmp_path / "plain", "sm2", SUBJECT, distid=False)
    ok(sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(plain),
              "--out", str(tmp_path / "plain.pem")))
    run_openssl("verify", "-vfyopt", DISTID, "-partial_chain", "-CAfile", str(issuing),
                str(leaf))
    run_openssl("verify", "-vfyopt", DISTID, "-CAfile", str(root), str(issuing))
    # the signatures carry the GM/T default ID: without it openssl rejects them
    assert run_openssl("verify", "-partial_chain", "-CAfile", str(issuing), str(leaf),
                       check=False).returncode != 0

    serial = load_certificate(leaf.read_bytes()).serial_number
    ok(sscard(home, "revoke", f"{serial:X}", "--reason", "superseded"))
    crl_file = tmp_path / "crl.pem"
    ok(sscard(home, "crl", "--out", str(crl_file)))
    crl = load_crl(crl_file.read_bytes())
    assert f"{serial:X}" in run_openssl("crl", "-in", str(crl_file), "-noout",
                                        "-text").stdout.replace(":", "")
    tbs, sig = tmp_path / "tbs.der", tmp_path / "sig.der"
    tbs.write_bytes(crl["tbs_cert_list"].dump())
    sig.write_bytes(crl["signature"].native)
    pub = tmp_path / "pub.pem"
    pub.write_text(run_openssl("x509", "-in", str(issuing), "-noout", "-pubkey").stdout)
    checked = run_openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
                          "-digest", "sm3", "-pkeyopt", DISTID, "-in", str(tbs),
                          "-sigfile", str(sig))
    assert "Signature Verified Successfully" in checked.stdout


def test_offline_root_signs_the_issuing_csr(tmp_path: Path, openssl_bin: str) -> None:
    home = tmp_path / "home"
    csr_out = tmp_path / "issuing.csr.pem"
    out = ok(sscard(home, "init", "--config", str(write_config(tmp_path / "c.toml", "ec-p256")),
                    "--issuing-only", "--csr-out", str(csr_out)))
    assert "waiting for its certificate" in out
    pending = sscard(home, "certs", "--out", str(tmp_path / "x.pem"))
    assert pending.exit_code == 1 and "waits for its certificate" in pending.output

    # the root lives elsewhere: here, openssl
    root_key, root = tmp_path / "root.key", tmp_path / "root.pem"
    run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(root_key), "-subj", "/CN=Offline Root/C=CN",
                "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(root))
    ext = tmp_path / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                   "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n")
    issuing = tmp_path / "issuing.pem"
    run_openssl("x509", "-req", "-in", str(csr_out), "-CA", str(root), "-CAkey", str(root_key),
                "-days", "1000", "-extfile", str(ext), "-out", str(issuing))

    # a certificate from another root is refused, and changes nothing
    other_key, other = tmp_path / "other.key", tmp_path / "other.pem"
    run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(other_key), "-subj", "/CN=Other/C=CN",
                "-days", "30", "-out", str(other))
    wrong = sscard(home, "import-issuing-cert", "--cert", str(issuing), "--root", str(other))
    assert wrong.exit_code == 1 and "not signed by the given root" in wrong.output

    ok(sscard(home, "import-issuing-cert", "--cert", str(issuing), "--root", str(root)))
    csr = openssl_key_and_csr(tmp_path, "ec-p256", SUBJECT)
    leaf = tmp_path / "leaf.pem"
    ok(sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(csr),
              "--out", str(leaf)))
    chain = tmp_path / "chain.pem"
    ok(sscard(home, "certs", "--out", str(chain)))
    crl = tmp_path / "crl.pem"
    ok(sscard(home, "crl", "--out", str(crl)))
    run_openssl("verify", "-crl_check", "-CAfile", str(chain), "-CRLfile", str(crl), str(leaf))


def test_cli_errors_name_the_problem_and_change_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = sscard(home, "certs", "--out", str(tmp_path / "c.pem"))
    assert missing.exit_code == 1 and "run `sscard --home" in missing.output
    ok(sscard(home, "init"))
    again = sscard(home, "init")
    assert again.exit_code == 1 and "already holds a CA" in again.output

    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CsrBuilder
    from sscard.x509.names import parse_name

    key = SoftwareKey.generate("sm2")
    evil = CsrBuilder().subject(parse_name("CN=张三,serialNumber=350102199001011238")) \
        .add_extension("basic_constraints", {"ca": True}, critical=True).sign(key)
    req = tmp_path / "evil.csr"
    req.write_bytes(der_to_pem(evil.dump(), "CERTIFICATE REQUEST"))
    refused = sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(req),
                     "--out", str(tmp_path / "evil.pem"))
    assert refused.exit_code == 1 and "CA=true" in refused.output
    assert not (tmp_path / "evil.pem").exists()
    unknown_profile = sscard(home, "issue", "--profile", "nope", "--csr", str(req),
                             "--out", str(tmp_path / "x.pem"))
    assert unknown_profile.exit_code == 1 and "no profile named 'nope'" in unknown_profile.output
    garbage = tmp_path / "garbage.csr"
    garbage.write_bytes(b"\x30\x03\x02\x01")
    bad = sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(garbage),
                 "--out", str(tmp_path / "x.pem"))
    assert bad.exit_code == 1 and "certificate request rejected" in bad.output

    never = sscard(home, "revoke", "0BADC0DE", "--reason", "keyCompromise")
    assert never.exit_code == 1 and "never issued" in never.output
    not_hex = sscard(home, "revoke", "xyz", "--reason", "keyCompromise")
    assert not_hex.exit_code == 2 and "not hexadecimal" in not_hex.output
    assert "no issued certificates" not in ok(sscard(home, "list"))
    assert ok(sscard(home, "list")).strip() == ""  # the refusals stored nothing

    good = CsrBuilder().subject(parse_name("CN=张三,serialNumber=350102199001011238")).sign(key)
    req.write_bytes(good.dump())  # DER is accepted too
    cert = tmp_path / "good.pem"
    ok(sscard(home, "issue", "--profile", "cardholder-sign", "--csr", str(req),
              "--out", str(cert)))
    serial = f"{load_certificate(cert.read_bytes()).serial_number:X}"
    ok(sscard(home, "revoke", serial, "--reason", "affiliationChanged",
              "--invalidity-date", "2026-01-02T03:04:05Z"))
    twice = sscard(home, "revoke", serial, "--reason", "keyCompromise")
    assert twice.exit_code == 1 and "already revoked" in twice.output
    shown = ok(sscard(home, "show", serial))
    assert "status: revoked" in shown and "reason=affiliationChanged" in shown
    assert "invalidity date: 2026-01-02T03:04:05Z" in shown
    listed = ok(sscard(home, "list"))
    assert serial in listed and "revoked" in listed
    full = tmp_path / "full.der"
    ok(sscard(home, "crl", "--der", "--out", str(full)))
    entries = asn1crl.CertificateList.load(full.read_bytes())["tbs_cert_list"][
        "revoked_certificates"]
    assert [e["user_certificate"].native for e in entries] == [int(serial, 16)]


def test_passphrase_from_a_file_is_not_stored_and_is_required(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "pass.txt"
    secret.write_text("a long enough passphrase\n")
    secret.chmod(0o600)  # a secret file: owner only
    out = ok(sscard(home, "init", "--passphrase-file", str(secret)))
    assert "stored it in" not in out and not (home / "secrets").exists()
    key_file = home / "ca" / "keys" / "issuing.key.pem"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert key_file.stat().st_mode & 0o777 == 0o600
    crl = tmp_path / "crl.pem"
    missing = sscard(home, "crl", "--out", str(crl))
    assert missing.exit_code == 1 and "a passphrase is needed" in missing.output
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it\n")
    wrong.chmod(0o600)  # a secret file: owner only
    refused = sscard(home, "crl", "--out", str(crl), "--passphrase-file", str(wrong))
    assert refused.exit_code == 1 and "cannot open the key of CA issuing" in refused.output
    assert not crl.exists()
    ok(sscard(home, "crl", "--out", str(crl), "--passphrase-file", str(secret)))
    # no revocations: revokedCertificates is absent, as RFC 5280 §5.1.2.6 asks
    assert load_crl(crl.read_bytes())["tbs_cert_list"]["revoked_certificates"].native is None
