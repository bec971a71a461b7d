"""Where a CA's private key lives, recorded as a small JSON spec in the ``cas`` table.

``software``: an encrypted PKCS#8 file under ``<home>/ca/keys/`` (passphrase from
``sscard.secrets_input``); ``pkcs11``: a token label and key label in a PKCS#11 module, with the
PIN read from the file the configuration names; ``none``: a CA whose key is elsewhere (an
offline root, known here only by its certificate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ca.config import CASpec, Pkcs11Spec
from ca.errors import CAError
from sscard.crypto.errors import CryptoError
from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey


def _token(spec: Pkcs11Spec) -> Any:
    from sscard.keys.pkcs11 import Pkcs11Token
    from sscard.secrets_input import read_secret

    pin = read_secret(file=Path(spec.pin_file) if spec.pin_file else None,
                      prompt=f"PIN of token {spec.token}")
    return Pkcs11Token(spec.token, pin, spec.module)


def create_key(home: Path, ca: CASpec, passphrase: bytes) -> tuple[KeyHandle, str]:
    """Generate the CA's key where its spec says; returns the handle and the JSON key spec."""
    if ca.pkcs11 is not None:
        key = _token(ca.pkcs11).generate_key(ca.algorithm, ca.pkcs11.label)
        spec = {"type": "pkcs11", "module": ca.pkcs11.module, "token": ca.pkcs11.token,
                "label": ca.pkcs11.label, "pin_file": ca.pkcs11.pin_file}
        return key, json.dumps(spec)
    key = SoftwareKey.generate(ca.algorithm, label=f"ca:{ca.name}")
    relative = Path("ca") / "keys" / f"{ca.name}.key.pem"
    target = home / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key.store(target, passphrase)
    return key, json.dumps({"type": "software", "path": str(relative)})


def load_key(home: Path, key_spec: str, passphrase: bytes | None, ca_name: str) -> KeyHandle:
    spec = json.loads(key_spec)
    kind = spec.get("type")
    if kind == "software":
        if passphrase is None:
            raise CAError(f"the key of CA {ca_name} is encrypted: a passphrase is needed "
                          "(--passphrase-file, or <home>/secrets/ca.pass)")
        path = home / spec["path"]
        try:
            return SoftwareKey.load(path, passphrase)
        except OSError as exc:
            raise CAError(f"cannot read the key of CA {ca_name} at {path}: {exc.strerror}") \
                from None
        except CryptoError as exc:
            raise CAError(f"cannot open the key of CA {ca_name}: {exc}") from None
    if kind == "pkcs11":
        p = Pkcs11Spec(spec["module"], spec["token"], spec["label"], spec.get("pin_file"))
        return _token(p).find_key(label=p.label)
    raise CAError(f"CA {ca_name} has no private key here (its key is kept elsewhere)")
