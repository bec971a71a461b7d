"""Sign and verify rates through our key handles beside `openssl speed`, in the same run.

    python bench/crypto.py [--seconds N]

One line per figure: `<what>: ours=<n>/s reference=<n>/s ratio=<r>`. Goal: SM2 sign and verify
at least 90% of OpenSSL's rate on the same machine (both run the same libcrypto code; what we
add is the Python call overhead).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, openssl_speed, rate
from sscard.keys.software import SoftwareKey

CASES = [("SM2", "sm2", "sm2"), ("ECDSA P-256", "ec-p256", "ecdsap256"),
         ("RSA-2048", "rsa2048", "rsa2048")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="ours and openssl alternate this many times; best of each kept, "
                             "so a busy machine skews both sides alike")
    args = parser.parse_args()
    message = b"x" * 64
    for label, alg, ref_name in CASES:
        key = SoftwareKey.generate(alg)
        public = key.public_key()
        signature = key.sign(message)
        best = {"sign": 0.0, "verify": 0.0, "ref_sign": 0.0, "ref_verify": 0.0}
        for _ in range(args.rounds):
            ref_sign, ref_verify = openssl_speed([ref_name], seconds=max(1, int(args.seconds)))[
                ref_name]
            best["ref_sign"] = max(best["ref_sign"], ref_sign)
            best["ref_verify"] = max(best["ref_verify"], ref_verify)
            best["sign"] = max(best["sign"], rate(lambda: key.sign(message),  # noqa: B023
                                                  args.seconds))
            best["verify"] = max(best["verify"], rate(
                lambda: public.verify(signature, message), args.seconds))  # noqa: B023
        print(figure(f"{label} sign (key handle)", best["sign"], best["ref_sign"]), flush=True)
        print(figure(f"{label} verify (key handle)", best["verify"], best["ref_verify"]),
              flush=True)


if __name__ == "__main__":
    main()
