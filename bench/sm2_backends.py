"""How the SM2 backend was chosen: the candidate bindings side by side, in one run.

    python bench/sm2_backends.py

Measures sign and verify rates and checks interoperability (a signature from each backend
verified by OpenSSL's libcrypto with the default ID, and ours verified by it) for whichever
candidates are installed: tongsuopy (Tongsuo), gmssl_pyx (GmSSL 3), gmssl (pure Python), beside
our libcrypto binding and `openssl speed`. The candidates are not project dependencies;
install them into a scratch environment to rerun the comparison.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, openssl_speed, rate
from sscard.crypto import sm2

MSG = b"x" * 64


def _interop(sign: Callable[[bytes], bytes], pub_point: bytes) -> str:
    try:
        sm2.SM2PublicKey.from_point(pub_point).verify(sign(MSG), MSG)
        return "interoperates (default ID)"
    except Exception as exc:
        return f"does NOT interoperate: {exc}"


def main() -> None:
    ref_sign, ref_verify = openssl_speed(["sm2"])["sm2"]
    ours = sm2.SM2PrivateKey.generate()
    sig = ours.sign(MSG)
    print(figure("libcrypto binding (ours) sign", rate(lambda: ours.sign(MSG)), ref_sign))
    print(figure("libcrypto binding (ours) verify",
                 rate(lambda: ours.public_key().verify(sig, MSG)), ref_verify))

    try:
        from tongsuopy.crypto import hashes as th
        from tongsuopy.crypto.asymciphers import ec as tec
        from tongsuopy.crypto.serialization import Encoding, PublicFormat

        tk = tec.generate_private_key(tec.SM2())
        tsig = tk.sign(MSG, tec.ECDSA(th.SM3()))
        tpub = tk.public_key()
        print(figure("tongsuopy sign", rate(lambda: tk.sign(MSG, tec.ECDSA(th.SM3()))),
                     ref_sign))
        print(figure("tongsuopy verify",
                     rate(lambda: tpub.verify(tsig, MSG, tec.ECDSA(th.SM3()))), ref_verify))
        point = tpub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        print("tongsuopy:", _interop(lambda m: tk.sign(m, tec.ECDSA(th.SM3())), point),
              "- no API for another user ID or for SM2 encryption")
    except ImportError:
        print("tongsuopy: not installed")

    try:
        import gmssl_pyx as g

        pub, priv = g.sm2_key_generate()
        uid = sm2.DEFAULT_UID
        gsig = g.sm2_sign(priv, pub, MSG, signer_id=uid)
        print(figure("gmssl_pyx sign", rate(lambda: g.sm2_sign(priv, pub, MSG, signer_id=uid)),
                     ref_sign))
        print(figure("gmssl_pyx verify",
                     rate(lambda: g.sm2_verify(pub, MSG, gsig, signer_id=uid)), ref_verify))
        print("gmssl_pyx:", _interop(lambda m: g.sm2_sign(priv, pub, m, signer_id=uid),
                                     b"\x04" + pub))
    except ImportError:
        print("gmssl_pyx: not installed")

    try:
        from gmssl import sm2 as pure

        d = ours.private_value()
        point = ours.public_key().point
        crypt = pure.CryptSM2(private_key=f"{d:064x}", public_key=point[1:].hex())
        psig = crypt.sign_with_sm3(MSG)
        print(figure("gmssl (pure Python) sign", rate(lambda: crypt.sign_with_sm3(MSG), 2.0, 5),
                     ref_sign))
        print(figure("gmssl (pure Python) verify",
                     rate(lambda: crypt.verify_with_sm3(psig, MSG), 2.0, 5), ref_verify))
    except ImportError:
        print("gmssl: not installed")


if __name__ == "__main__":
    main()
