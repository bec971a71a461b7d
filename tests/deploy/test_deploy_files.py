"""deploy/: the systemd units verify (``systemd-analyze verify`` where systemd is installed, and
a structural check always), every command line in a unit or container file is accepted by the
service's own command, and every configuration file the units name has a sample in
deploy/zones that the service's own loader accepts."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from sqlalchemy.engine import make_url

from sscard.cli import cli
from sscard.x509.pem import der_to_pem
from tests.cms.pki import make_leaf, make_pki

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = {"ca": 8080, "kmc": 8470, "ra": 8480, "gateway": 8443, "idp": 8446}
#: the zone of each service (DESIGN.md section 5)
ZONES = {"ca": "protected", "kmc": "protected", "ra": "officer", "gateway": "service",
         "idp": "service"}
INSTALLED = "/opt/sscard/bin/sscard"
SECRET_WORDS = re.compile(r"pass|secret|token|pin|key", re.IGNORECASE)


def unit(service: str) -> Path:
    return DEPLOY / "systemd" / f"sscard-{service}.service"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order, continuation lines joined (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}: bad section line {line!r}"
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"{path.name}: {line!r} outside a section"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def check_serve_args(service: str, args: list[str], serve: str = "serve",
                     port: int | None = None) -> None:
    """``args`` (after ``sscard``) name ``<service> <serve>`` and only options it has."""
    assert args[:2] == [service, serve], args
    group = cli.get_command(click.Context(cli), service)
    assert isinstance(group, click.Group)
    command = group.get_command(click.Context(group), serve)
    assert command is not None
    parser = command.make_parser(click.Context(command))
    parser.parse_args(list(args[2:]))  # raises NoSuchOption / BadOptionUsage
    given = args[args.index("--port") + 1]
    assert int(given) == (port if port is not None else SERVICES[service])
    for i, arg in enumerate(args):
        if arg.startswith("--") and SECRET_WORDS.search(arg) and not arg.startswith("--tls-"):
            # a secret option takes a file, never the secret itself
            assert arg.endswith("-file") or arg in ("--share", "--service-key",
                                                    "--kmc-tls-key"), arg
            assert args[i + 1].startswith(("%d/", "/run/secrets/")), (arg, args[i + 1])


@pytest.mark.parametrize("service", SERVICES)
def test_unit_structure(service: str) -> None:
    sections = parse_unit(unit(service))
    assert set(sections) == {"Unit", "Service", "Install"}
    svc = sections["Service"]
    user = values(svc, "User")
    assert user and user[0] not in ("root", "0") and user[0] == f"sscard-{service}"
    assert values(svc, "NoNewPrivileges") == ["yes"]
    assert values(svc, "ProtectSystem") == ["strict"]
    assert values(svc, "UMask") == ["0077"]
    (start,) = values(svc, "ExecStart")
    argv = shlex.split(start)
    assert argv[0] == INSTALLED
    check_serve_args(service, argv[1:])
    # every credential the command line reads is loaded by the unit
    loaded = {v.split(":", 1)[0] for k, v in svc if k.startswith("LoadCredential")}
    used = {a.split("/", 1)[1] for a in argv if a.startswith("%d/")}
    assert used <= loaded, used - loaded
    # the environment holds no secret
    for key, value in svc:
        if key == "Environment":
            assert not SECRET_WORDS.search(value), value


@pytest.mark.parametrize("service", SERVICES)
def test_environment_and_config_files_have_loadable_samples(service: str) -> None:
    svc = parse_unit(unit(service))["Service"]
    (env_file,) = values(svc, "EnvironmentFile")
    sample = DEPLOY / "zones" / ZONES[service] / Path(env_file).name
    assert sample.is_file(), f"{env_file} has no sample in deploy/zones/{ZONES[service]}"
    # env files: KEY=VALUE lines of variables the services read, database URLs without a
    # password (peer authentication over the local socket)
    sources = "\n".join(p.read_text(encoding="utf-8") for d in ("sscard", "ca", "ra", "keymgmt")
                        for p in (ROOT / d).rglob("*.py"))
    for line in sample.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        assert re.fullmatch(r"SSCARD_[A-Z_]+", key), line
        assert f'"{key}"' in sources, f"{sample.name}: no service reads {key}"
        if key.endswith(("_URL", "_CHALLENGES")):
            assert make_url(value).password is None, line
    argv = shlex.split(values(svc, "ExecStart")[0])
    if "--config" in argv:
        config = Path(argv[argv.index("--config") + 1])
        assert (DEPLOY / "zones" / ZONES[service] / config.name).is_file()


def test_ca_sample_loads() -> None:
    from ca.config import load_config

    config = load_config(DEPLOY / "zones" / "protected" / "ca.toml")
    assert config.root_offline and config.issuing[0].pkcs11 is not None
    assert make_url(str(config.database_url)).password is None


def test_gateway_sample_loads(tmp_path: Path) -> None:
    """The sample, given the files it names (made here), loads with the gateway's loader, and
    holds only the gateway's own keys."""
    from sscard.gateway.config import load_config

    credentials = "/run/credentials/sscard-gateway.service/"
    text = (DEPLOY / "zones" / "service" / "gateway.toml").read_text(encoding="utf-8")
    assert credentials in text
    (tmp_path / "gateway.toml").write_text(text.replace(credentials, f"{tmp_path}/"),
                                           encoding="utf-8")
    pki = make_pki()
    (tmp_path / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    (tmp_path / "issuing.pem").write_bytes(der_to_pem(pki.ca.cert.dump(), "CERTIFICATE"))
    (tmp_path / "keys").mkdir()
    hr_sign = make_leaf("CN=hr-sign,O=人社厅,C=CN", pki.ca)
    hr_sign.key.store(tmp_path / "keys" / "hr-sign.key", b"gateway passphrase")
    (tmp_path / "keys" / "hr-sign.pem").write_bytes(der_to_pem(hr_sign.cert.dump(),
                                                               "CERTIFICATE"))
    (tmp_path / "hr-sign-passphrase").write_text("gateway passphrase\n")
    (tmp_path / "hr-sign-passphrase").chmod(0o600)
    config = load_config(tmp_path / "gateway.toml")
    assert set(config.keys) == {"hr-sign"} and set(config.systems) == {"employment", "pension"}
    # the unit loads the passphrase credential the file names
    svc = parse_unit(unit("gateway"))["Service"]
    assert any(v.startswith("hr-sign-passphrase:") for v in values(svc, "LoadCredential"))


def test_idp_sample_loads(tmp_path: Path) -> None:
    """The provider's sample, given the certificates it names, loads with the provider's
    loader: an https issuer, the cardholder CA, revocation fetched."""
    from sscard.idp.wsgi import load_settings

    credentials = "/run/credentials/sscard-idp.service/"
    text = (DEPLOY / "zones" / "service" / "idp.toml").read_text(encoding="utf-8")
    assert credentials in text
    config = tmp_path / "idp.toml"
    config.write_text(text.replace(credentials, f"{tmp_path}/"), encoding="utf-8")
    pki = make_pki()
    (tmp_path / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    (tmp_path / "issuing-ca.pem").write_bytes(der_to_pem(pki.ca.cert.dump(), "CERTIFICATE"))
    for name in ("idp-service.key.pem", "idp-service.pem", "service-key-passphrase"):
        (tmp_path / name).write_text("made by the administrator\n")
    settings = load_settings(config)
    assert settings.provider.issuer.startswith("https://") and settings.fetch_revocation
    assert settings.provider.issuer.endswith(":" + str(SERVICES["idp"]))
    assert settings.card_number_lookup is not None  # the verified card-number claim
    # the unit loads the passphrase credential the file names
    svc = parse_unit(unit("idp"))["Service"]
    assert any(v.startswith("service-key-passphrase:") for v in values(svc, "LoadCredential"))


@pytest.mark.parametrize("service", SERVICES)
def test_containerfile(service: str) -> None:
    path = DEPLOY / "containers" / f"{service}.Containerfile"
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")]
    instructions = [ln.split(None, 1) for ln in lines if not ln.startswith(" ")]
    assert instructions[0][0] == "FROM"
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    exposed = [rest for word, rest in instructions if word == "EXPOSE"]
    assert exposed == [str(SERVICES[service])]
    for word, rest in instructions:
        if word in ("ENV", "ARG"):
            assert not SECRET_WORDS.search(rest), f"{path.name}: {word} {rest}"
    (entry,) = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    assert entry[0] == INSTALLED
    check_serve_args(service, entry[1:] + cmd)


def _options(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def _made_by_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """The service ``name`` as `make serve` (scripts/serve.py) would start it."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import serve

    layout = serve.Layout(tmp_path / "serve-data")
    layout.custody.mkdir()
    for n, custodian in enumerate(serve.UNSEAL_WITH):
        (layout.custody / f"share-0{n}-{custodian}.json").write_text("{}")
    # the sample business system serve runs is a demo: it has no deploy files
    (made,) = [s for s in serve.services(layout, dict.fromkeys([*SERVICES, "sample-rp"], 1))
               if s.name == name]
    return made


@pytest.mark.parametrize("service", SERVICES)
def test_units_and_containers_run_what_make_serve_runs(
        service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each option `make serve` gives a service (scripts/serve.py; but its plain-HTTP
    --insecure-http) the unit and the container give too: the same zones, the RA with the
    CA's and the KMC's URLs and its service identity, and never a KMC share."""
    made = _made_by_serve(tmp_path, monkeypatch, service)
    # --kmc-ca-key-file: the CA's KMC key, which serve passes only while `ra serve` still
    # takes it; the deploy files are already without it
    wanted = _options(made.args[2:]) - {"--insecure-http", "--kmc-ca-key-file"}
    assert made.args[:2] == [service, "serve"]
    unit_argv = shlex.split(values(parse_unit(unit(service))["Service"], "ExecStart")[0])
    lines = (DEPLOY / "containers" / f"{service}.Containerfile").read_text().splitlines()
    container = [a for ln in lines if ln.startswith(("ENTRYPOINT", "CMD"))
                 for a in json.loads(ln.split(None, 1)[1])]
    for where, argv in (("unit", unit_argv), ("Containerfile", container)):
        assert wanted <= _options(argv), (where, wanted - _options(argv))
        if service == "ra":
            assert "--share" not in argv and "--ca-url" in argv, where


#: the CA's OCSP responder: its unit, and the port deploy/nginx/ocsp.conf passes requests to
OCSP_UNIT = DEPLOY / "systemd" / "sscard-ca-ocsp.service"
OCSP_PORT = 8081


def test_ocsp_unit_runs_the_responder_behind_the_shipped_nginx(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sscard ca ocsp-serve`` as the CA's user, hardened like the others, on the port the
    shipped nginx configuration names, with every option `make serve` gives it."""
    svc = parse_unit(OCSP_UNIT)["Service"]
    ca = parse_unit(unit("ca"))["Service"]
    for key in ("User", "Group", "EnvironmentFile", "StateDirectory", "NoNewPrivileges",
                "ProtectSystem", "UMask", "CapabilityBoundingSet", "RestrictAddressFamilies"):
        assert values(svc, key) == values(ca, key), key
    (start,) = values(svc, "ExecStart")
    argv = shlex.split(start)
    assert argv[0] == INSTALLED
    check_serve_args("ca", argv[1:], "ocsp-serve", OCSP_PORT)
    loaded = {v.split(":", 1)[0] for k, v in svc if k.startswith("LoadCredential")}
    assert {a.split("/", 1)[1] for a in argv if a.startswith("%d/")} <= loaded
    assert f"server 127.0.0.1:{OCSP_PORT};" in (DEPLOY / "nginx" / "ocsp.conf").read_text()
    made = _made_by_serve(tmp_path, monkeypatch, "ocsp")
    assert made.args[:2] == ["ca", "ocsp-serve"]
    assert _options(made.args[2:]) <= _options(argv)


def test_the_ca_image_runs_the_ocsp_responder_too() -> None:
    """Its entry point is ``sscard ca``: ``serve`` by default, ``ocsp-serve`` when asked."""
    text = (DEPLOY / "containers" / "ca.Containerfile").read_text(encoding="utf-8")
    (entry,) = [json.loads(ln.split(None, 1)[1]) for ln in text.splitlines()
                if ln.startswith("ENTRYPOINT")]
    assert entry == [INSTALLED, "ca"]
    shown = re.search(r"sscard-ca (ocsp-serve .*?)\n(?!#  )", text.replace("\\\n#", ""),
                      re.DOTALL)
    assert shown is not None, "the Containerfile shows no ocsp-serve command"
    check_serve_args("ca", ["ca", *shlex.split(shown[1].replace("#", " "))], "ocsp-serve",
                     OCSP_PORT)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (the structural checks above still ran)")
    # the units name the installed command; point them at this environment's
    installed = str(Path(sys.executable).with_name("sscard"))
    for path in (DEPLOY / "systemd").glob("*.service"):  # the OCSP responder's too
        text = path.read_text(encoding="utf-8").replace(INSTALLED, installed)
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    done = subprocess.run([tool, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warnings
