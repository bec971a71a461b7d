"""The main job on the embedded default (`make demo`).

Walks what the system can do so far, in one process, with a fresh data directory under
./demo-data: keys of every algorithm, a small SM2 chain, a signed document verified and a
tampered one refused. Later stages (CA service, card, KMC, gateway) join as they land.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import sys
from pathlib import Path

from sscard.crypto.algorithms import KeyAlgorithm
from sscard.crypto.errors import InvalidSignature
from sscard.keys.software import SoftwareKey
from sscard.x509 import verify
from sscard.x509.builder import CertificateBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import format_name, parse_name
from sscard.x509.pem import der_to_pem

HOME = Path("demo-data")


def step(title: str) -> None:
    print(f"\n== {title}")


def main() -> int:
    if HOME.exists():
        shutil.rmtree(HOME)
    (HOME / "keys").mkdir(parents=True)
    passphrase = secrets.token_urlsafe(24).encode()
    (HOME / "keys" / "passphrase").write_bytes(passphrase + b"\n")
    (HOME / "keys" / "passphrase").chmod(0o600)

    step("Keys of every algorithm (encrypted PKCS#8, readable by `openssl pkey`)")
    for alg in KeyAlgorithm:
        key = SoftwareKey.generate(alg)
        path = HOME / "keys" / f"{alg.value}.pem"
        key.store(path, passphrase)
        sig = key.sign(b"demo")
        key.public_key().verify(sig, b"demo")
        print(f"  {alg.value:8} -> {path} (signature {len(sig)} bytes verifies)")

    step("A small SM2 chain: root -> issuing CA -> cardholder")
    now = dt.datetime.now(dt.UTC)
    root_key, ca_key, holder_key = (SoftwareKey.generate("sm2") for _ in range(3))
    root_name = parse_name("CN=社会保障卡根CA,O=某省人力资源和社会保障厅,C=CN")
    ca_name = parse_name("CN=社会保障卡签发CA,O=某省人力资源和社会保障厅,C=CN")
    holder_name = parse_name("CN=张三,serialNumber=350102199001011234,C=CN")

    def cert(subject, issuer, key, issuer_key, ca):  # type: ignore[no-untyped-def]
        b = (CertificateBuilder().subject(subject).issuer(issuer)
             .public_key(key.public_key()).serial_number(secrets.randbits(96))
             .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
             .add_extension("key_identifier", key_identifier(key.public_key()))
             .add_extension("authority_key_identifier",
                            {"key_identifier": key_identifier(issuer_key.public_key())}))
        if ca:
            b = (b.add_extension("basic_constraints", {"ca": True}, critical=True)
                 .add_extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True))
        else:
            b = (b.add_extension("key_usage", {"digital_signature", "non_repudiation"},
                                 critical=True)
                 .add_extension("social_insurance_number", "350102199001011234"))
        return b.sign(issuer_key)

    root = cert(root_name, root_name, root_key, root_key, True)
    ca = cert(ca_name, root_name, ca_key, root_key, True)
    holder = cert(holder_name, ca_name, holder_key, ca_key, False)
    verify.verify_certificate_signature(root, root)
    verify.verify_certificate_signature(ca, root)
    verify.verify_certificate_signature(holder, ca)
    chain = HOME / "chain.pem"
    chain.write_bytes(b"".join(der_to_pem(c.dump(), "CERTIFICATE") for c in (holder, ca, root)))
    for c in (root, ca, holder):
        print(f"  {format_name(c.subject)}  (issuer: {format_name(c.issuer)})")
    print(f"  chain written to {chain}; every link verifies (SM2-with-SM3, ID 1234567812345678)")

    step("Sign and verify a document with the cardholder's SM2 key")
    document = "参保人员社会保险缴费证明 / proof of contributions".encode()
    signature = holder_key.sign(document)
    holder_key.public_key().verify(signature, document)
    print(f"  signature verifies ({len(signature)} bytes)")
    try:
        holder_key.public_key().verify(signature, document + b" (altered)")
        print("  ERROR: an altered document verified")
        return 1
    except InvalidSignature as exc:
        print(f"  altered document refused: {exc}")

    step("The social security card (emulated, in-process): read, PIN, on-card key, KMC key")
    from sscard.emulator.demo import card_demo

    for line in card_demo(HOME / "card"):
        print("  " + line)

    print("\nDemo finished: data in", HOME.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
