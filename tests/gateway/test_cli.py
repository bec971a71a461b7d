"""The CLI forms of the issue, exactly: ``sscard sign --key KEY --cert CERT [--detached] IN OUT``,
``sscard verify --trust ROOT [--content IN] SIGNED`` (exit 0 valid, 1 not, 2 unusable),
``sscard encrypt --to CERT IN OUT``, ``sscard decrypt --key KEY --cert CERT IN OUT``; with local
keys and through ``--gateway URL``. DER out, PEM accepted in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard.cli import cli
from sscard.cms import load_content_info
from sscard.x509.pem import der_to_pem
from tests.cms.pki import Issued
from tests.gateway.conftest import Rig

DOC = "养老保险待遇核定表\n".encode() * 50


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture()
def files(rig: Rig, tmp_path: Path) -> Path:
    signer = rig.pki.signer
    (tmp_path / "pass").write_text("correct horse\n")
    (tmp_path / "pass").chmod(0o600)  # a secret file: owner only
    signer.key.store(tmp_path / "signer.key", b"correct horse")
    (tmp_path / "signer.pem").write_bytes(der_to_pem(signer.cert.dump(), "CERTIFICATE"))
    (tmp_path / "signer.der").write_bytes(signer.cert.dump())
    (tmp_path / "ca.pem").write_bytes(der_to_pem(rig.pki.ca.cert.dump(), "CERTIFICATE"))
    (tmp_path / "root.pem").write_bytes(der_to_pem(rig.pki.root.cert.dump(), "CERTIFICATE"))
    (tmp_path / "doc.txt").write_bytes(DOC)
    system: Issued = rig.systems["employment"]
    system.key.store(tmp_path / "system.key", b"correct horse")
    (tmp_path / "system.pem").write_bytes(der_to_pem(system.cert.dump(), "CERTIFICATE"))
    (tmp_path / "enc.pem").write_bytes(der_to_pem(rig.employment_enc.cert.dump(),
                                                  "CERTIFICATE"))
    return tmp_path


def test_sign_and_verify_attached(files: Path) -> None:
    f = files
    res = run("sign", "--key", str(f / "signer.key"), "--cert", str(f / "signer.pem"),
              "--chain", str(f / "ca.pem"), "--passphrase-file", str(f / "pass"),
              str(f / "doc.txt"), str(f / "doc.p7s"))
    assert res.exit_code == 0, res.output
    der = (f / "doc.p7s").read_bytes()
    assert der[0] == 0x30 and load_content_info(der)["content_type"].native == "signed_data"
    res = run("verify", "--trust", str(f / "root.pem"), "--out", str(f / "back.txt"),
              str(f / "doc.p7s"))
    assert res.exit_code == 0, res.output
    assert res.output.startswith("VALID: signed by")
    assert "350102199001011234" in res.output
    assert (f / "back.txt").read_bytes() == DOC


def test_detached_with_pem_inputs_and_a_changed_document(files: Path) -> None:
    f = files
    res = run("sign", "--key", str(f / "signer.key"), "--cert", str(f / "signer.der"),
              "--detached", "--passphrase-file", str(f / "pass"), str(f / "doc.txt"),
              str(f / "doc.sig"))
    assert res.exit_code == 0, res.output
    pem = der_to_pem((f / "doc.sig").read_bytes(), "CMS")
    (f / "doc.sig.pem").write_bytes(pem)
    ok = run("verify", "--trust", str(f / "root.pem"), "--intermediate", str(f / "ca.pem"),
             "--content", str(f / "doc.txt"), str(f / "doc.sig.pem"))
    assert ok.exit_code == 0, ok.output
    (f / "doc.txt").write_bytes(DOC + b"tampered")
    bad = run("verify", "--trust", str(f / "root.pem"), "--intermediate", str(f / "ca.pem"),
              "--content", str(f / "doc.txt"), str(f / "doc.sig"))
    assert bad.exit_code == 1
    assert bad.output.startswith("NOT VALID")
    assert "CONTENT_CHANGED" in bad.output


def test_verify_with_unknown_root_and_unusable_input(files: Path, rig: Rig) -> None:
    f = files
    run("sign", "--key", str(f / "signer.key"), "--cert", str(f / "signer.pem"),
        "--passphrase-file", str(f / "pass"), str(f / "doc.txt"), str(f / "doc.p7s"))
    (f / "other-root.pem").write_bytes(der_to_pem(rig.outsider.cert.dump(), "CERTIFICATE"))
    res = run("verify", "--trust", str(f / "other-root.pem"), str(f / "doc.p7s"))
    assert res.exit_code == 1 and "UNTRUSTED_ROOT" in res.output
    (f / "junk").write_bytes(b"\x30\x82\x01\x00junk")
    res = CliRunner().invoke(cli, ["verify", "--trust", str(f / "root.pem"), str(f / "junk")])
    assert res.exit_code == 2
    assert "junk" in res.output and "malformed" in res.output.lower()


def test_wrong_passphrase_is_a_clear_error(files: Path) -> None:
    f = files
    (f / "wrong").write_text("nope\n")
    (f / "wrong").chmod(0o600)  # a secret file: owner only
    res = CliRunner().invoke(cli, ["sign", "--key", str(f / "signer.key"), "--cert",
                                   str(f / "signer.pem"), "--passphrase-file", str(f / "wrong"),
                                   str(f / "doc.txt"), str(f / "x.p7s")])
    assert res.exit_code == 1 and "signer.key" in res.output
    assert not (f / "x.p7s").exists()


def test_encrypt_and_decrypt(files: Path) -> None:
    f = files
    res = run("encrypt", "--to", str(f / "signer.pem"), str(f / "doc.txt"), str(f / "doc.p7m"))
    assert res.exit_code == 0, res.output
    assert (f / "doc.p7m").read_bytes()[0] == 0x30
    res = run("decrypt", "--key", str(f / "signer.key"), "--cert", str(f / "signer.pem"),
              "--passphrase-file", str(f / "pass"), str(f / "doc.p7m"), str(f / "out.txt"))
    assert res.exit_code == 0, res.output
    assert (f / "out.txt").read_bytes() == DOC
    # addressed to somebody else: a clear refusal
    res = CliRunner().invoke(cli, ["decrypt", "--key", str(f / "system.key"), "--cert",
                                   str(f / "system.pem"), "--passphrase-file", str(f / "pass"),
                                   str(f / "doc.p7m"), str(f / "out2.txt")])
    assert res.exit_code == 1 and "not addressed to" in res.output


def test_through_the_gateway(files: Path, rig: Rig) -> None:
    f = files
    auth = ["--gateway", rig.url, "--client-cert", str(f / "system.pem"), "--client-key",
            str(f / "system.key"), "--passphrase-file", str(f / "pass")]
    res = run("sign", "--key", "hr-sign", *auth, str(f / "doc.txt"), str(f / "gw.p7s"))
    assert res.exit_code == 0, res.output
    res = run("verify", *auth, str(f / "gw.p7s"))
    assert res.exit_code == 0, res.output
    assert "人社厅业务签名" in res.output
    res = run("verify", "--trust", str(f / "root.pem"), str(f / "gw.p7s"))  # and locally
    assert res.exit_code == 0, res.output
    res = run("encrypt", "--to", str(f / "enc.pem"), *auth, str(f / "doc.txt"),
              str(f / "gw.p7m"))
    assert res.exit_code == 0, res.output
    res = run("decrypt", *auth, str(f / "gw.p7m"), str(f / "gw.txt"))
    assert res.exit_code == 0, res.output
    assert (f / "gw.txt").read_bytes() == DOC
    res = CliRunner().invoke(cli, ["sign", "--key", "not-mine", *auth, str(f / "doc.txt"),
                                   str(f / "no.p7s")])
    assert res.exit_code == 1 and "FORBIDDEN" in res.output


def test_installed_command_runs(files: Path) -> None:
    """The real ``sscard`` entry point (a subprocess), as an operator runs it."""
    f = files
    res = subprocess.run([sys.executable, "-m", "sscard.cli", "sign", "--key",
                          str(f / "signer.key"), "--cert", str(f / "signer.pem"),
                          "--passphrase-stdin", str(f / "doc.txt"), str(f / "doc.p7s")],
                         input="correct horse\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "sscard.cli", "verify", "--trust",
                          str(f / "ca.pem"), str(f / "doc.p7s")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr  # the issuing CA as anchor also works


def test_sign_with_a_time_stamp_from_a_tsa_url(files: Path, rig: Rig) -> None:
    """--tsa-url: an RFC 3161 TSA over HTTP (the project's TSA behind a minimal HTTP server)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Tsa(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Content-Type", ""))
            answer = rig.tsa.respond(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tsa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        f = files
        res = run("sign", "--key", str(f / "signer.key"), "--cert", str(f / "signer.pem"),
                  "--chain", str(f / "ca.pem"), "--passphrase-file", str(f / "pass"),
                  "--tsa-url", f"http://127.0.0.1:{server.server_address[1]}/tsa",
                  str(f / "doc.txt"), str(f / "ts.p7s"))
        assert res.exit_code == 0, res.output
        assert seen == ["application/timestamp-query"]
        res = run("verify", "--trust", str(f / "root.pem"), str(f / "ts.p7s"))
        assert res.exit_code == 0, res.output
        assert "time-stamped at" in res.output
        down = CliRunner().invoke(cli, [
            "sign", "--key", str(f / "signer.key"), "--cert", str(f / "signer.pem"),
            "--passphrase-file", str(f / "pass"), "--tsa-url", "http://127.0.0.1:9/tsa",
            str(f / "doc.txt"), str(f / "none.p7s")])
        assert down.exit_code == 1 and "time-stamp authority could not be reached" in down.output
        assert not (f / "none.p7s").exists()
    finally:
        server.shutdown()
        server.server_close()
