"""Every example in docs/integration-guide.md runs, in order, against a real gateway: the
```python blocks with this interpreter, the ```sh blocks with bash and the installed sscard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.x509.pem import der_to_pem
from tests.gateway.conftest import Rig

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integration-guide.md"
BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))]


def test_the_guide_has_examples_of_each_kind() -> None:
    kinds = [k for k, _ in blocks()]
    assert kinds.count("python") >= 2 and kinds.count("sh") >= 2


@pytest.fixture(scope="module")
def guide_env(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("guide")
    # the 'employment' system with an ECDSA P-256 key (section 4 signs with it by hand)
    system = rig.extra["employment-p256"]
    system.key.store(home / "system.key", b"guide passphrase")
    (home / "system.pass").write_text("guide passphrase\n")
    (home / "system.pass").chmod(0o600)  # a secret file: owner only

    def pem(name: str, der: bytes) -> str:
        (home / name).write_bytes(der_to_pem(der, "CERTIFICATE"))
        return str(home / name)

    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        GATEWAY_URL=rig.url,
        SYSTEM_CERT=pem("system.pem", system.cert.dump()),
        SYSTEM_KEY=str(home / "system.key"),
        SYSTEM_KEY_PASSPHRASE_FILE=str(home / "system.pass"),
        SIGN_KEY_ID="hr-sign",
        RECIPIENT_CERT=pem("recipient.pem", rig.employment_enc.cert.dump()),
        ROOT_CERT=pem("root.pem", rig.pki.root.cert.dump()),
        CA_CERT=pem("ca.pem", rig.pki.ca.cert.dump()),
    )


@pytest.mark.parametrize("index", range(len(blocks())))
def test_guide_example_runs(guide_env: dict[str, str], tmp_path: Path, index: int) -> None:
    kind, code = blocks()[index]
    command = [sys.executable, "-c", code] if kind == "python" else ["bash", "-e", "-c", code]
    res = subprocess.run(command, cwd=tmp_path, env=guide_env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"{kind} example {index}:\n{code}\n{res.stdout}\n{res.stderr}"
