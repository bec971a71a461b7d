"""Interoperability with the OpenSSL 3 command line, in both directions."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest

from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.crypto.errors import InvalidSignature, WrongPassphrase
from sscard.keys.software import SoftwareKey
from sscard.x509 import parse, verify
from sscard.x509.builder import CertificateBuilder, CrlBuilder, CsrBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from tests.crypto.openssl_cli import DISTID, openssl

PASS = b"correct horse battery staple"


@pytest.fixture()
def passfile(tmp_path: Path) -> Path:
    p = tmp_path / "pass.txt"
    p.write_bytes(PASS + b"\n")
    p.chmod(0o600)  # a secret file: owner only
    return p


# --- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", [a.value for a in KeyAlgorithm if a is not KeyAlgorithm.RSA4096])
def test_our_encrypted_keys_read_by_openssl(alg: str, tmp_path: Path, passfile: Path) -> None:
    key = SoftwareKey.generate(alg)
    path = tmp_path / "key.pem"
    key.store(path, PASS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    pub = openssl("pkey", "-in", path, "-passin", f"file:{passfile}", "-pubout").stdout
    assert PublicKey.from_pem(pub) == key.public_key()
    bad = tmp_path / "bad.txt"
    bad.write_text("wrong\n")
    assert openssl("pkey", "-in", path, "-passin", f"file:{bad}", check=False).returncode != 0


@pytest.mark.parametrize("genpkey", [
    ["-algorithm", "SM2"],
    ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    ["-algorithm", "ED25519"],
])
def test_openssl_keys_read_by_us(genpkey: list[str], tmp_path: Path, passfile: Path) -> None:
    plain = tmp_path / "plain.pem"
    enc = tmp_path / "enc.pem"
    openssl("genpkey", *genpkey, "-out", plain)
    openssl("pkcs8", "-topk8", "-in", plain, "-out", enc, "-passout", f"file:{passfile}",
            "-v2", "aes-256-cbc")
    key = SoftwareKey.load(enc, PASS)
    pub = openssl("pkey", "-in", plain, "-pubout").stdout
    assert PublicKey.from_pem(pub) == key.public_key()
    with pytest.raises(WrongPassphrase):
        SoftwareKey.load(enc, b"wrong")


# --- SM2 signatures and encryption ------------------------------------------------------------

def _sm2_pair(tmp_path: Path) -> tuple[SoftwareKey, Path, Path]:
    key = SoftwareKey.generate("sm2")
    priv = tmp_path / "sm2.pem"
    priv.write_bytes(PrivateKey.from_pkcs8(key.private_key.pkcs8_der()).pkcs8_der())
    priv_pem = tmp_path / "sm2_plain.pem"
    priv_pem.write_bytes(der_to_pem(key.private_key.pkcs8_der(), "PRIVATE KEY"))
    pub = tmp_path / "sm2_pub.pem"
    pub.write_bytes(key.public_key().spki_pem())
    return key, priv_pem, pub


def test_sm2_signature_ours_verified_by_openssl(tmp_path: Path) -> None:
    key, _priv, pub = _sm2_pair(tmp_path)
    msg = tmp_path / "msg.bin"
    msg.write_bytes("社会保障卡 signed".encode())
    sig = tmp_path / "sig.der"
    sig.write_bytes(key.sign(msg.read_bytes()))
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3",
                  "-pkeyopt", DISTID, "-in", msg, "-sigfile", sig)
    assert b"Signature Verified Successfully" in out.stdout
    other = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3",
                    "-pkeyopt", "distid:someone-else", "-in", msg, "-sigfile", sig, check=False)
    assert other.returncode != 0


def test_sm2_signature_openssl_verified_by_us(tmp_path: Path) -> None:
    key, priv, _pub = _sm2_pair(tmp_path)
    msg = tmp_path / "msg.bin"
    msg.write_bytes(b"from openssl")
    sig = openssl("pkeyutl", "-sign", "-inkey", priv, "-rawin", "-digest", "sm3",
                  "-pkeyopt", DISTID, "-in", msg).stdout
    key.public_key().verify(sig, b"from openssl")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, b"from openssl", uid=b"another id")


def test_sm2_encryption_both_directions(tmp_path: Path) -> None:
    key, priv, pub = _sm2_pair(tmp_path)
    ours = tmp_path / "ours.bin"
    ours.write_bytes(key.public_key().encrypt(b"to openssl"))
    out = openssl("pkeyutl", "-decrypt", "-inkey", priv, "-in", ours).stdout
    assert out == b"to openssl"
    plain = tmp_path / "plain.bin"
    plain.write_bytes("给我们".encode())
    theirs = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", plain).stdout
    assert key.decrypt(theirs) == "给我们".encode()
    assert key.decrypt(PublicKey.from_spki(key.public_key().spki_der()).encrypt(
        b"c1c3c2", EncryptionScheme.SM2_C1C3C2), EncryptionScheme.SM2_C1C3C2) == b"c1c3c2"


# --- CSRs, chains and CRLs ---------------------------------------------------------------------

def _chain(alg: str) -> tuple[list[object], list[SoftwareKey]]:
    now = dt.datetime.now(dt.UTC)
    keys = [SoftwareKey.generate(alg) for _ in range(3)]
    names = [parse_name("CN=根CA,O=人社厅,C=CN"), parse_name("CN=签发CA,O=人社厅,C=CN"),
             parse_name("CN=张三,serialNumber=350102199001011234,C=CN")]
    certs = []
    for i in range(3):
        issuer = max(i - 1, 0)
        b = (CertificateBuilder().subject(names[i]).issuer(names[issuer])
             .public_key(keys[i].public_key()).serial_number(secrets.randbits(96))
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=30))
             .add_extension("key_identifier", key_identifier(keys[i].public_key()))
             .add_extension("authority_key_identifier",
                            {"key_identifier": key_identifier(keys[issuer].public_key())}))
        if i < 2:
            b = (b.add_extension("basic_constraints", {"ca": True}, critical=True)
                 .add_extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True))
        else:
            b = (b.add_extension("key_usage", {"digital_signature"}, critical=True)
                 .add_extension("social_insurance_number", "350102199001011234"))
        certs.append(b.sign(keys[issuer]))
    return certs, keys


def _openssl_checks_sm2_signature(tmp_path: Path, signed: bytes, signature: bytes,
                                  issuer_pem: Path) -> None:
    tbs, sig, pub = tmp_path / "tbs.der", tmp_path / "sig.der", tmp_path / "issuer_pub.pem"
    tbs.write_bytes(signed)
    sig.write_bytes(signature)
    pub.write_bytes(openssl("x509", "-in", issuer_pem, "-noout", "-pubkey").stdout)
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3",
                  "-pkeyopt", DISTID, "-in", tbs, "-sigfile", sig)
    assert b"Signature Verified Successfully" in out.stdout


def _verify_invocations(alg: str, root: Path, inter: Path, leaf: Path) -> list[list[object]]:
    """How to ask openssl to verify the chain.

    OpenSSL 3.0's ``verify -vfyopt distid:...`` sets the SM2 ID on the target certificate only,
    so it cannot check an SM2 signature deeper in a chain (its own 3-level SM2 chains fail the
    same way). For SM2 each link is verified as a target of its own: the intermediate against
    the root, then the leaf against the intermediate as a partial-chain anchor.
    """
    if alg != "sm2":
        return [["-CAfile", root, "-untrusted", inter, leaf]]
    return [["-CAfile", root, inter], ["-partial_chain", "-CAfile", inter, leaf]]


@pytest.mark.parametrize("alg", ["sm2", "ec-p256", "ec-p384", "rsa2048"])
def test_our_chain_and_crl_pass_openssl_verify(alg: str, tmp_path: Path) -> None:
    certs, keys = _chain(alg)
    root, inter, leaf = (tmp_path / n for n in ("root.pem", "inter.pem", "leaf.pem"))
    for path, cert in zip((root, inter, leaf), certs, strict=True):
        path.write_bytes(der_to_pem(cert.dump(), "CERTIFICATE"))  # type: ignore[attr-defined]
    now = dt.datetime.now(dt.UTC)
    crl = (CrlBuilder().issuer(certs[1]["tbs_certificate"]["subject"])  # type: ignore[index]
           .this_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=1))
           .crl_number(1).authority_key_identifier(key_identifier(keys[1].public_key()))
           .sign(keys[1]))
    root_crl = (CrlBuilder().issuer(certs[0]["tbs_certificate"]["subject"])  # type: ignore[index]
                .this_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=1))
                .crl_number(1).sign(keys[0]))
    crls = tmp_path / "crls.pem"
    crls.write_bytes(der_to_pem(crl.dump(), "X509 CRL") + der_to_pem(root_crl.dump(), "X509 CRL"))
    opts = ["-vfyopt", DISTID] if alg == "sm2" else []
    for args in _verify_invocations(alg, root, inter, leaf):
        assert b": OK" in openssl("verify", *opts, *args).stdout
    if alg == "sm2":
        # OpenSSL 3.0 has no way to give the SM2 ID for a CRL signature (verify's -vfyopt
        # reaches the target certificate only), so check each CRL's signature with pkeyutl
        # and let openssl parse it; the revocation semantics are checked for ECDSA and RSA.
        for crl_obj, issuer in ((crl, inter), (root_crl, root)):
            _openssl_checks_sm2_signature(tmp_path, crl_obj["tbs_cert_list"].dump(),
                                          crl_obj["signature"].native, issuer)
            der = tmp_path / "one.crl"
            der.write_bytes(crl_obj.dump())
            assert b"Certificate Revocation List" in openssl(
                "crl", "-inform", "DER", "-in", der, "-noout", "-text").stdout
        return
    out = openssl("verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", root,
                  "-untrusted", inter, leaf)
    assert b": OK" in out.stdout
    # revoke the leaf: openssl must now refuse it
    serial = certs[2]["tbs_certificate"]["serial_number"].native  # type: ignore[index]
    revoked = (CrlBuilder().issuer(certs[1]["tbs_certificate"]["subject"])  # type: ignore[index]
               .this_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=1))
               .crl_number(2).add_revoked(serial, now - dt.timedelta(seconds=30), "key_compromise")
               .sign(keys[1]))
    crls.write_bytes(der_to_pem(revoked.dump(), "X509 CRL")
                     + der_to_pem(root_crl.dump(), "X509 CRL"))
    out = openssl("verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", root,
                  "-untrusted", inter, leaf, check=False)
    assert out.returncode != 0 and b"revoked" in (out.stdout + out.stderr)
    text = openssl("x509", "-in", leaf, "-noout", "-text", "-nameopt", "utf8").stdout.decode()
    assert "张三" in text


@pytest.mark.parametrize("alg", ["sm2", "ec-p256", "rsa2048", "ed25519"])
def test_our_csr_passes_openssl_req_verify(alg: str, tmp_path: Path) -> None:
    key = SoftwareKey.generate(alg)
    req = CsrBuilder().subject(parse_name("CN=张三,serialNumber=350102199001011234")).sign(key)
    path = tmp_path / "req.der"
    path.write_bytes(req.dump())
    opts = ["-vfyopt", DISTID] if alg == "sm2" else []
    out = openssl("req", "-inform", "DER", "-in", path, "-verify", "-noout", *opts)
    assert b"verify OK" in out.stdout + out.stderr


@pytest.mark.parametrize("alg,keyopts,sigopts", [
    ("SM2", [], ["-sm3", "-sigopt", DISTID]),
    ("EC", ["-pkeyopt", "ec_paramgen_curve:P-384"], ["-sha384"]),
    ("RSA", ["-pkeyopt", "rsa_keygen_bits:2048"], ["-sha256", "-sigopt",
                                                   "rsa_padding_mode:pss"]),
])
def test_openssl_certificates_and_crls_parse_and_verify_here(
    alg: str, keyopts: list[str], sigopts: list[str], tmp_path: Path
) -> None:
    key = tmp_path / "ca.key"
    cert = tmp_path / "ca.pem"
    openssl("genpkey", "-algorithm", alg, *keyopts, "-out", key)
    openssl("req", "-new", "-x509", "-key", key, "-subj", "/C=CN/O=测试/CN=OpenSSL CA",
            "-utf8", "-days", "5", *sigopts, "-out", cert)
    # a minimal CA database so that openssl ca can produce a CRL with one revoked entry
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "crlnumber").write_text("1000\n")
    conf = tmp_path / "ca.cnf"
    conf.write_text(
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\n"
        "default_md=" + ("sm3" if alg == "SM2" else "sha256") + "\ndefault_crl_days=1\n"
    )
    leafkey = tmp_path / "leaf.key"
    leaf = tmp_path / "leaf.pem"
    openssl("genpkey", "-algorithm", alg, *keyopts, "-out", leafkey)
    csr = tmp_path / "leaf.csr"
    openssl("req", "-new", "-key", leafkey, "-subj", "/CN=leaf", *sigopts, "-out", csr)
    vfy = ["-vfyopt", DISTID] if alg == "SM2" else []
    openssl("x509", "-req", "-in", csr, "-CA", cert, "-CAkey", key, "-CAcreateserial",
            "-days", "2", *sigopts, *vfy, "-out", leaf, cwd=tmp_path)
    openssl("ca", "-config", conf, "-revoke", leaf, "-keyfile", key, "-cert", cert,
            cwd=tmp_path)
    crl = tmp_path / "crl.pem"
    openssl("ca", "-config", conf, "-gencrl", "-keyfile", key, "-cert", cert, "-out", crl,
            *(["-sigopt", DISTID] if alg == "SM2" else []), cwd=tmp_path)

    ca_cert = parse.load_certificate(cert.read_bytes())
    verify.verify_certificate_signature(ca_cert, ca_cert)
    leaf_cert = parse.load_certificate(leaf.read_bytes())
    verify.verify_certificate_signature(leaf_cert, ca_cert)
    crl_obj = parse.load_crl(crl.read_bytes())
    verify.verify_crl_signature(crl_obj, ca_cert)
    entries = crl_obj["tbs_cert_list"]["revoked_certificates"]
    revoked = [e["user_certificate"].native for e in entries]
    assert revoked == [leaf_cert.serial_number]
    assert "测试" in str(ca_cert.subject.native)
    with pytest.raises(InvalidSignature):
        verify.verify_certificate_signature(ca_cert, leaf_cert)
