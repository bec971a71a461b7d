"""`make demo` end to end: scripts/demo.py run as a subprocess in a temporary directory, as a
newcomer runs it; its exit status, the lines that show each step did what it says, and what it
leaves in ./demo-data."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.x509.parse import load_certificate

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"

#: one line (as a regular expression) per thing the demo must show, in order
KEY_LINES = [
    r"== 1\. Initialise the data directory demo-data",
    r"sm2 +-> demo-data/keys/sm2\.pem: stored, reloaded, signature verifies",
    r"ed25519 +-> demo-data/keys/ed25519\.pem",
    r"root CA +CN=社会保障卡根CA",
    r"issuing CA CN=社会保障卡签发CA",
    r"custodian zhang: share written to demo-data/kmc-shares/share-01-zhang\.json",
    r"unseal with zhang's share alone is refused: 1 custodian share\(s\) given, 2 of 3 are needed",
    r"KMC health: \{'sealed': False",
    r"the RA holds the request: enrollment rq-\w+ waits for an officer's approval",
    r"officer li logged in and approved request rq-\w+: done",
    r"step install: done",
    r"step verify: done",
    r"read back: 张三 639900199001011234, card D63990001",
    r"verify: valid=True, signer CN=人社厅业务签名, .*time-stamped 20",
    r"verify an altered copy: valid=False, reasons: CONTENT_CHANGED",
    r"gateway: valid=True, signer 张三 \(social security number 639900199001011234\)",
    r"the card opened it \(PSO DECIPHER after the PIN\): 社保待遇核定结果",
    r"authenticated 张三 639900199001011234",
    r"the same answer sent again is refused: CHALLENGE_REPLAYED",
    r"OCSP before: good",
    r"wang approving it too is refused: the requester cannot decide their own request",
    r"li approves: submitted",
    r"zhao approves: done; the CA revoked certificate [0-9A-F]+",
    r"OCSP after: revoked since .*, reason keyCompromise",
    r"gateway certificate status: revoked \(keyCompromise\)",
    r"the earlier signed form now: valid=False, reasons: REVOKED: the signer's certificate "
    r"\(CN=张三",
    r"cardholder authentication with the revoked card: authenticated=False \(REVOKED",
    r"card: a wrong PIN is refused",
    r"records in the hash-chained audit log",
    r"Demo finished in [0-9.]+ s: every step behaved as described",
    r"The sscard command is \S+/sscard \(not on PATH",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cwd = tmp_path_factory.mktemp("demo")
    # leftovers of an earlier run: a second `make demo` must start from scratch, not trip
    # over an initialised CA or a finished key ceremony
    (cwd / "demo-data" / "kmc").mkdir(parents=True)
    (cwd / "demo-data" / "kmc" / "ceremony.json").write_text("{}")
    (cwd / "demo-data" / "ca.toml").write_text("left over")
    (cwd / "demo-data" / "stale-file").write_text("left over")
    env = {k: v for k, v in os.environ.items() if k != "SSCARD_DEMO_HOME"}
    result = subprocess.run([sys.executable, str(DEMO)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=110, check=False)
    return cwd, result


def test_demo_exits_0_and_shows_every_step(demo_run) -> None:
    _cwd, result = demo_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    position = 0
    for pattern in KEY_LINES:
        match = re.compile(pattern).search(result.stdout, position)
        assert match is not None, f"missing (in order): {pattern}\n{result.stdout}"
        position = match.end()
    headers = re.findall(r"^== (\d+)\. ", result.stdout, re.MULTILINE)
    assert headers == [str(n) for n in range(1, len(headers) + 1)] and len(headers) >= 13
    assert "Traceback" not in result.stderr


def test_demo_starts_from_scratch(demo_run) -> None:
    cwd, result = demo_run
    assert result.returncode == 0
    assert not (cwd / "demo-data" / "stale-file").exists()
    assert (cwd / "demo-data" / "ca.toml").read_text() != "left over"


def test_demo_leaves_a_usable_data_directory(demo_run) -> None:
    cwd, result = demo_run
    home = cwd / "demo-data"
    shares = sorted(p.name for p in (home / "kmc-shares").iterdir())
    assert shares == ["share-01-zhang.json", "share-02-li.json", "share-03-wang.json"]
    secret_files = [p for p in (home / "secrets").rglob("*") if p.is_file()]
    assert len(secret_files) >= 8  # key passphrase, 3 custodians, 5 officers, token, ...
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        # secrets are in files, never on the terminal
        assert path.read_text().strip() not in result.stdout, path
    cert = load_certificate((home / "gateway" / "employment.pem").read_bytes())
    assert cert.subject.native["common_name"] == "employment"
    keys = sorted(p.name for p in (home / "keys").iterdir())
    assert len(keys) == 7 and all(b"ENCRYPTED PRIVATE KEY" in (home / "keys" / k).read_bytes()
                                  for k in keys)


def test_a_failing_step_is_named_and_exits_1(tmp_path: Path) -> None:
    # a data directory that cannot be created: the demo stops at step 1 and says so
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should go")
    env = dict(os.environ, SSCARD_DEMO_HOME=str(blocker / "demo-data"))
    result = subprocess.run([sys.executable, str(DEMO)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "DEMO FAILED at step 1 (Initialise the data directory" in result.stderr
    assert "NotADirectoryError" in result.stderr
    assert "Demo finished" not in result.stdout
