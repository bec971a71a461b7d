"""Sign rates on a SoftHSM2 token: through our Pkcs11Key handle beside python-pkcs11 direct.

    python bench/pkcs11.py [--seconds N] [--rounds N] [--module PATH]

Both sides run the same token mechanisms in the same process on the same keys; what the
reference lacks is our layer (the session lock, the reopen check, choosing the mechanism, and
for ECDSA building the DER signature, which the reference does too so that both return what X.509
needs). One line per figure: `<what>: ours=<n>/s reference=<n>/s ratio=<r>`.

The script initialises a throw-away token in a temporary SOFTHSM2_CONF and removes it at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
# run as a script, bench/ is sys.path[0] and this file would shadow the pkcs11 package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from bench._common import figure, rate  # noqa: E402


def _init_token(root: Path, label: str, pin: str) -> None:
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before the module is first loaded
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                    "--pin", pin, "--so-pin", secrets.token_hex(4)],
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="ours and the reference alternate; best of each is kept")
    parser.add_argument("--module", default="/usr/lib/softhsm/libsofthsm2.so")
    args = parser.parse_args()
    if shutil.which("softhsm2-util") is None or not Path(args.module).is_file():
        raise SystemExit("SoftHSM2 not installed (Debian package softhsm2)")

    root = Path(tempfile.mkdtemp(prefix="sscard-bench-pkcs11-"))
    try:
        pin = secrets.token_hex(4)
        _init_token(root, "bench", pin)
        run(args, pin)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, pin: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from pkcs11 import Mechanism, ObjectClass

    from sscard.crypto.algorithms import SignatureAlgorithm
    from sscard.keys.pkcs11 import Pkcs11Token

    message = b"x" * 64
    with Pkcs11Token("bench", pin.encode(), args.module) as token:
        rsa = token.generate_key("rsa2048", "bench-rsa")
        ec = token.generate_key("ec-p256", "bench-p256")
        # the reference: a second python-pkcs11 session on the same token and the same objects
        session = token.run(lambda s: s.token.open(rw=False))
        try:
            rsa_obj = session.get_key(ObjectClass.PRIVATE_KEY, id=rsa.key_id)
            ec_obj = session.get_key(ObjectClass.PRIVATE_KEY, id=ec.key_id)

            def ref_rsa() -> bytes:
                return bytes(rsa_obj.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS))

            def ref_pss() -> bytes:
                return bytes(rsa_obj.sign(
                    message, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                    mechanism_param=(Mechanism.SHA256, 2, 32)))  # CKG_MGF1_SHA256 = 2

            def ref_ecdsa() -> bytes:
                raw = ec_obj.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
                return bytes(encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                  int.from_bytes(raw[32:], "big")))

            cases = [
                ("PKCS#11 RSA-2048 PKCS#1 SHA-256 sign",
                 lambda: rsa.sign(message, SignatureAlgorithm.RSA_PKCS1_SHA256), ref_rsa),
                ("PKCS#11 RSA-2048 PSS SHA-256 sign",
                 lambda: rsa.sign(message, SignatureAlgorithm.RSA_PSS_SHA256), ref_pss),
                ("PKCS#11 ECDSA P-256 SHA-256 sign",
                 lambda: ec.sign(message, SignatureAlgorithm.ECDSA_SHA256), ref_ecdsa),
            ]
            assert ref_rsa() == rsa.sign(message)  # same key, same deterministic signature
            for what, ours_fn, ref_fn in cases:
                best_ours = best_ref = 0.0
                for _ in range(args.rounds):
                    best_ours = max(best_ours, rate(ours_fn, args.seconds))
                    best_ref = max(best_ref, rate(ref_fn, args.seconds))
                print(figure(what, best_ours, best_ref), flush=True)
        finally:
            session.close()


if __name__ == "__main__":
    main()
