"""``sscard sign | verify | encrypt | decrypt`` (local keys, or ``--gateway URL``) and
``sscard gateway serve | authenticate-card``.

DER is written; PEM or DER is read. Exit status of ``verify``: 0 valid, 1 not valid (the
reasons are printed), 2 unusable input. Passphrases and PINs come from a file, stdin or a
prompt, never from the command line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sscard.cli import UnusableInput, db_url_options
from sscard.exitcodes import Exit
from sscard.keys.cli import open_software_key, passphrase_options
from sscard.serving import ServeOptions, run, serve_options

if TYPE_CHECKING:
    from asn1crypto import x509

    from sscard.cms import TimeStamper
    from sscard.gateway.client import GatewayClient

EXIT_VALID, EXIT_NOT_VALID, EXIT_UNUSABLE = Exit.OK, Exit.REFUSED, Exit.USAGE
#: the values of sscard.validation.RevocationMode, sscard.cms.ContentCipher and
#: sscard.cms.Sm2KeyTransport, written out so that the options' choices need neither package at
#: start-up (tests/cli/test_startup.py holds them to the enums)
REVOCATION_MODES = ("require", "leaf", "if-declared", "none")
CIPHERS = ("sm4_cbc", "sm4_gcm", "aes128_cbc", "aes256_cbc", "aes128_gcm", "aes256_gcm")
SM2_KEY_TRANSPORTS = ("gmt0010", "bouncycastle")
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_OUT = click.Path(dir_okay=False, path_type=Path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None


def _cert(path: Path) -> x509.Certificate:
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_certificate

    try:
        return load_certificate(_read(path))
    except X509Error as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _certs(paths: tuple[Path, ...]) -> list[x509.Certificate]:
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_certificates

    out = []
    for p in paths:
        try:
            out.extend(load_certificates(_read(p)))
        except X509Error as exc:
            raise click.ClickException(f"{p}: {exc}") from None
    return out


def gateway_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--gateway URL and how to authenticate to it."""
    f = click.option("--ca-file", type=_FILE,
                     help="CA certificates for the gateway's TLS server certificate.")(f)
    f = click.option("--tls-key", type=_FILE,
                     help="Mutual TLS: the system's unencrypted key PEM (with --tls-cert).")(f)
    f = click.option("--tls-cert", type=_FILE,
                     help="Mutual TLS: the system's certificate PEM (chain may follow).")(f)
    f = click.option("--client-key", type=_FILE,
                     help="Request signatures: the system's encrypted key "
                          "(passphrase via --passphrase-file/--passphrase-stdin).")(f)
    f = click.option("--client-cert", type=_FILE,
                     help="Request signatures: the system's certificate.")(f)
    f = click.option("--gateway", "gateway_url", metavar="URL",
                     help="Call the gateway at URL instead of using local keys.")(f)
    return f


def _client(opts: dict[str, Any]) -> GatewayClient:
    from sscard.gateway.client import GatewayClient

    url = opts["gateway_url"]
    tls = None
    if opts.get("tls_cert") or opts.get("tls_key"):
        if not (opts.get("tls_cert") and opts.get("tls_key")):
            raise click.UsageError("--tls-cert and --tls-key go together")
        tls = (str(opts["tls_cert"]), str(opts["tls_key"]))
    key = cert = None
    if opts.get("client_cert") or opts.get("client_key"):
        if not (opts.get("client_cert") and opts.get("client_key")):
            raise click.UsageError("--client-cert and --client-key go together")
        key = open_software_key(opts["client_key"], opts.get("passphrase_file"),
                                bool(opts.get("passphrase_stdin")))
        cert = _cert(opts["client_cert"])
    if key is None and tls is None:
        raise click.UsageError("--gateway needs --client-cert/--client-key (request "
                               "signatures) or --tls-cert/--tls-key (mutual TLS)")
    return GatewayClient(url, key=key, certificate=cert, tls_client=tls,
                         ca_file=str(opts["ca_file"]) if opts.get("ca_file") else None)


def _remote(call: Callable[[], Any]) -> Any:
    from sscard.gateway.client import GatewayClientError

    try:
        return call()
    except GatewayClientError as exc:
        raise click.ClickException(f"gateway refused: {exc.code}: {exc.message}") from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise click.ClickException(f"gateway unreachable: {exc}") from None


def _http_tsa(url: str) -> TimeStamper:
    import requests

    from sscard.cms import TimeStamper

    def fetch(req: bytes) -> bytes:
        answer = requests.post(url, data=req, timeout=30,
                               headers={"Content-Type": "application/timestamp-query"})
        answer.raise_for_status()
        return answer.content
    return TimeStamper(fetch)


# -- sign --------------------------------------------------------------------------------


@click.command("sign")
@click.option("--key", "key_ref", required=True,
              help="The encrypted private key file (with --gateway: the gateway's key id).")
@click.option("--cert", "cert_file", type=_FILE, help="The signer's certificate.")
@click.option("--chain", type=_FILE, multiple=True, help="CA certificates to include.")
@click.option("--detached", is_flag=True, help="Leave the content out of the signature.")
@click.option("--gm", is_flag=True, help="GM/T 0010 content-type OIDs.")
@click.option("--tsa-url", help="Add an RFC 3161 time-stamp from this TSA.")
@click.option("--timestamp", is_flag=True, help="With --gateway: the gateway time-stamps.")
@click.argument("in_file", type=_FILE)
@click.argument("out_file", type=_OUT)
@passphrase_options
@gateway_options
def sign_command(key_ref: str, cert_file: Path | None, chain: tuple[Path, ...], detached: bool,
                 gm: bool, tsa_url: str | None, timestamp: bool, in_file: Path, out_file: Path,
                 **opts: Any) -> None:
    """Sign IN into OUT (CMS SignedData, DER)."""
    from sscard.cms import CmsError, Flavour, sign

    content = _read(in_file)
    flavour = Flavour.GM if gm else Flavour.RFC5652
    if opts["gateway_url"]:
        client = _client(opts)
        signed = _remote(lambda: client.sign(content, key_ref, detached=detached,
                                             timestamp=timestamp, content_types=flavour.value))
    else:
        if cert_file is None:
            raise click.UsageError("--cert is required when signing with a local key")
        key = open_software_key(Path(key_ref), opts["passphrase_file"], opts["passphrase_stdin"])
        try:
            signed = sign(content, key, _cert(cert_file), chain=_certs(chain), detached=detached,
                          flavour=flavour, timestamper=_http_tsa(tsa_url) if tsa_url else None)
        except CmsError as exc:
            raise click.ClickException(str(exc)) from None
    out_file.write_bytes(signed)
    click.echo(f"signed {in_file} -> {out_file} ({'detached' if detached else 'attached'})",
               err=True)


# -- verify ------------------------------------------------------------------------------


def _print_report(report: dict[str, Any]) -> None:
    signer = report.get("signer") or {}
    who = signer.get("subject") or "(unknown signer)"
    ssn = signer.get("social_insurance_number")
    click.echo(("VALID" if report["valid"] else "NOT VALID") + f": signed by {who}"
               + (f" (social insurance number {ssn})" if ssn else ""))
    if report.get("timestamp_time"):
        click.echo(f"  time-stamped at {report['timestamp_time']}")
    elif report.get("signing_time"):
        click.echo(f"  signing time (claimed by the signer) {report['signing_time']}")
    for r in report.get("reasons", []):
        click.echo(f"  {r['code']}: {r['message']}")
    for n in report.get("notes", []):
        click.echo(f"  note {n['code']}: {n['message']}")


def _verify_at_gateway(opts: dict[str, Any], signed: bytes, content: bytes | None,
                       signed_file: Path, *, return_content: bool) -> dict[str, Any]:
    """The gateway's verification report; its refusals as unusable input. (The client, and the
    request signer with its SQLAlchemy replay memory, are imported only for --gateway.)"""
    from sscard.gateway.client import GatewayClientError

    try:
        answer: dict[str, Any] = _client(opts).verify(signed, content,
                                                      return_content=return_content)
    except GatewayClientError as exc:
        if exc.code == "MALFORMED_INPUT":
            raise UnusableInput(f"{signed_file}: {exc.message}") from None
        raise UnusableInput(f"gateway refused: {exc.code}: {exc.message}") from None
    return answer


@click.command("verify")
@click.option("--trust", type=_FILE, multiple=True, help="Trust anchor certificate(s).")
@click.option("--content", "content_file", type=_FILE,
              help="The signed content, for a detached signature.")
@click.option("--intermediate", type=_FILE, multiple=True, help="More CA certificates.")
@click.option("--crl", type=_FILE, multiple=True, help="CRLs to check revocation with.")
@click.option("--ocsp", "ocsp_url", metavar="URL",
              help="Ask this OCSP responder (instead of the one named) about the path's "
                   "certificates that declare OCSP.")
@click.option("--fetch", "--fetch-revocation", "fetch", is_flag=True,
              help="Fetch CRLs and OCSP answers from the URLs the certificates name, only "
                   "under the allow-list: the origins of the URLs that the --trust and "
                   "--intermediate certificates name, and --fetch-allow.")
@click.option("--fetch-allow", multiple=True, metavar="PREFIX",
              help="Also allow fetching under this URL prefix (http://host:port/path).")
@click.option("--revocation", type=click.Choice(REVOCATION_MODES),
              help="How much revocation information to insist on (default: require when "
                   "--crl, --ocsp or --fetch is given; 'leaf': the signer's certificate only).")
@click.option("--out", "out_file", type=_OUT, help="Write the signed content here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.argument("signed_file", type=_FILE)
@passphrase_options
@gateway_options
def verify_command(trust: tuple[Path, ...], content_file: Path | None,
                   intermediate: tuple[Path, ...], crl: tuple[Path, ...], ocsp_url: str | None,
                   fetch: bool, fetch_allow: tuple[str, ...], revocation: str | None,
                   out_file: Path | None, as_json: bool, signed_file: Path, **opts: Any) -> None:
    """Verify SIGNED: exit 0 valid, 1 not valid (with the reasons), 2 unusable input.

    Without --crl, --ocsp or --fetch revocation is not checked, and the report says so."""
    from sscard.cms import CmsError, SignatureReport, TrustConfig, Verifier
    from sscard.cms.revocation import RevocationFetch
    from sscard.fetch import FetchError
    from sscard.validation import RevocationMode
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_crl

    signed = _read(signed_file)
    content = _read(content_file) if content_file else None
    body: bytes | None
    try:
        if opts["gateway_url"]:
            if crl or ocsp_url or fetch or revocation:
                raise click.UsageError("--crl, --ocsp, --fetch and --revocation apply to local "
                                       "verification; the gateway checks revocation itself")
            answer = _verify_at_gateway(opts, signed, content, signed_file,
                                        return_content=out_file is not None)
            import base64

            body = base64.b64decode(answer["content"]) if answer.get("content") else None
            report: dict[str, Any] = answer
        else:
            if not trust:
                raise click.UsageError("--trust ROOT is required (or --gateway URL)")
            crls = [load_crl(_read(p)) for p in crl]
            anchors, others = _certs(trust), _certs(intermediate)
            if fetch_allow and not fetch:
                raise click.UsageError("--fetch-allow applies with --fetch")
            sources = None
            if fetch or ocsp_url:
                try:
                    sources = RevocationFetch.configure(
                        [*anchors, *others], allow=fetch_allow, ocsp_responder=ocsp_url,
                        follow_certificates=fetch)
                except FetchError as exc:
                    raise click.UsageError(str(exc)) from None
            verifier = Verifier(TrustConfig(
                anchors, intermediates=others, crls=crls, revocation_fetch=sources,
                revocation=RevocationMode(revocation) if revocation else None))
            result: SignatureReport = verifier.verify(signed, content)
            report, body = result.to_json(), result.content
    except (CmsError, X509Error) as exc:
        raise UnusableInput(f"{signed_file}: {exc}") from None
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    if out_file is not None and body is not None and report["valid"]:
        out_file.write_bytes(body)
    raise click.exceptions.Exit(EXIT_VALID if report["valid"] else EXIT_NOT_VALID)


# -- encrypt / decrypt ---------------------------------------------------------------------


@click.command("encrypt")
@click.option("--to", "recipients", type=_FILE, multiple=True, required=True,
              help="A recipient's certificate (repeat for several).")
@click.option("--cipher", type=click.Choice(CIPHERS),
              default="sm4_cbc", show_default=True, help="Content-encryption cipher.")
@click.option("--gm", is_flag=True, help="GM/T 0010 content-type OIDs.")
@click.option("--auth-enveloped", is_flag=True,
              help="RFC 5083 AuthEnvelopedData (GCM ciphers; what OpenSSL uses for AES-GCM).")
@click.option("--sm2-key-transport", "sm2_form",
              type=click.Choice(SM2_KEY_TRANSPORTS), default=SM2_KEY_TRANSPORTS[0],
              show_default=True,
              help="SM2 recipients: GM/T 0010 sm2encrypt, or the form BouncyCastle's CMS reads.")
@click.argument("in_file", type=_FILE)
@click.argument("out_file", type=_OUT)
@passphrase_options
@gateway_options
def encrypt_command(recipients: tuple[Path, ...], cipher: str, gm: bool, auth_enveloped: bool,
                    sm2_form: str, in_file: Path, out_file: Path, **opts: Any) -> None:
    """Encrypt IN to the recipients' certificates into OUT (CMS EnvelopedData, DER)."""
    from sscard.cms import CmsError, ContentCipher, Flavour, Sm2KeyTransport, encrypt

    content = _read(in_file)
    certs = [_cert(p) for p in recipients]
    flavour = Flavour.GM if gm else Flavour.RFC5652
    if opts["gateway_url"]:
        if sm2_form != Sm2KeyTransport.GMT0010.value:
            raise click.UsageError("--sm2-key-transport applies to local encryption only")
        client = _client(opts)
        env = _remote(lambda: client.encrypt(content, certs, cipher=cipher,
                                             content_types=flavour.value,
                                             authenticated=auth_enveloped))
    else:
        try:
            env = encrypt(content, certs, cipher=ContentCipher(cipher), flavour=flavour,
                          authenticated=auth_enveloped,
                          sm2_form=Sm2KeyTransport(sm2_form))
        except CmsError as exc:
            raise click.ClickException(str(exc)) from None
    out_file.write_bytes(env)
    click.echo(f"encrypted {in_file} -> {out_file} for {len(certs)} recipient(s)", err=True)


@click.command("decrypt")
@click.option("--key", "key_file", type=_FILE, help="The recipient's encrypted private key.")
@click.option("--cert", "cert_file", type=_FILE, help="The recipient's certificate.")
@click.argument("in_file", type=_FILE)
@click.argument("out_file", type=_OUT)
@passphrase_options
@gateway_options
def decrypt_command(key_file: Path | None, cert_file: Path | None, in_file: Path,
                    out_file: Path, **opts: Any) -> None:
    """Open the envelope IN into OUT (with --gateway: with the calling system's key)."""
    from sscard.cms import CmsError, decrypt
    from sscard.secrets_input import write_private_file

    data = _read(in_file)
    if opts["gateway_url"]:
        client = _client(opts)
        content = _remote(lambda: client.decrypt(data))
    else:
        if key_file is None or cert_file is None:
            raise click.UsageError("--key and --cert are required (or --gateway URL)")
        cert = _cert(cert_file)
        key = open_software_key(key_file, opts["passphrase_file"], opts["passphrase_stdin"])
        try:
            content = decrypt(data, key, cert).content
        except CmsError as exc:
            raise click.ClickException(f"{in_file}: {exc}") from None
    write_private_file(out_file, content)  # plaintext: readable by its owner only
    click.echo(f"decrypted {in_file} -> {out_file}", err=True)


# -- gateway group -------------------------------------------------------------------------


@click.group("gateway")
def gateway_group() -> None:
    """The certificate application support platform (HTTP gateway for business systems)."""


@gateway_group.command("serve")
@click.option("--config", "config_file", type=_FILE, required=True, help="Gateway TOML file.")
@serve_options(default_port=8443)
@db_url_options("SSCARD_GATEWAY_CHALLENGES", "cardholder challenge database shared by the "
                "workers (default with several workers: SQLite <home>/gateway-challenges.sqlite)",
                option="--challenges-db-url", dest="challenges_db",
                aliases=("--challenges-db",))
@click.pass_context
def serve(ctx: click.Context, config_file: Path, serving: ServeOptions,
          challenges_db: str | None) -> None:
    """Serve the gateway under gunicorn. With --tls-client-ca, business systems may identify
    themselves by their TLS client certificate."""
    from sscard.audit import AuditError
    from sscard.audit.scheduled import home_audit_key
    from sscard.cli import data_home
    from sscard.cms import CmsError
    from sscard.gateway.config import ConfigError, load_config
    from sscard.gateway.wsgi import GatewayAppFactory
    from sscard.x509.errors import X509Error

    home = data_home(ctx)
    if challenges_db is None and serving.workers > 1:
        home.mkdir(parents=True, exist_ok=True)
        challenges_db = f"sqlite:///{home / 'gateway-challenges.sqlite'}"
    try:
        # a bad file is named before serving, and the challenge database exists before the
        # workers open it (no checkpoint timer here: the master forks the workers)
        GatewayAppFactory(config_file, challenges_db)()
        served_home = None
        if load_config(config_file).audit_url:
            # an audit log: each worker's makes signed checkpoints on a schedule with the data
            # directory's audit key, made once here rather than raced by the workers
            home.mkdir(parents=True, exist_ok=True)
            home_audit_key(home)
            served_home = home
    except (ConfigError, X509Error, CmsError, AuditError, ValueError, OSError) as exc:
        raise click.ClickException(f"{config_file}: {exc}") from None
    click.echo(f"gateway serving on {serving.url} (gunicorn, {serving.workers} workers)",
               err=True)
    run(GatewayAppFactory(config_file, challenges_db, served_home), serving, name="gateway")


@gateway_group.command("authenticate-card")
@click.option("--reader", help="PC/SC reader name (default: the first with a card).")
@click.option("--pin-file", type=_FILE, help="Read the PKI PIN from a file.")
@click.option("--pin-stdin", is_flag=True, help="Read the PKI PIN from stdin.")
@passphrase_options
@gateway_options
def authenticate_card(reader: str | None, pin_file: Path | None, pin_stdin: bool,
                      **opts: Any) -> None:
    """Authenticate the cardholder in the reader at the gateway: the card signs the gateway's
    one-time challenge after the PIN; prints the identity. Exit 0 authenticated, 1 not."""
    from sscard.card.client import CardClient
    from sscard.card.errors import CardError
    from sscard.card.keyhandle import CardKey
    from sscard.card.transport import PcscTransport, default_reader_names
    from sscard.secrets_input import read_secret

    if not opts["gateway_url"]:
        raise click.UsageError("--gateway URL is required")
    client = _client(opts)
    name = reader or default_reader_names()[0]
    if name is None:
        raise click.ClickException("no reader with a card found")
    card = CardClient(PcscTransport(name))
    try:
        card.connect()
        der = card.read_certificate("sign")
        if der is None:
            raise click.ClickException("the card holds no signing certificate")
        pin = read_secret(file=pin_file, from_stdin=pin_stdin, prompt="Card PIN").decode()
        key = CardKey(card, lambda: pin)
        answer = _remote(lambda: client.authenticate_cardholder(key, der))
    except CardError as exc:
        raise click.ClickException(f"card: {exc}") from None
    finally:
        card.close()
    holder = answer.get("cardholder") or {}
    if answer["authenticated"]:
        click.echo(f"AUTHENTICATED: {holder.get('subject')} "
                   f"(social insurance number {holder.get('social_insurance_number')})")
        sys.exit(EXIT_VALID)
    click.echo(f"NOT AUTHENTICATED: {holder.get('subject')}")
    for r in answer.get("reasons", []):
        click.echo(f"  {r['code']}: {r['message']}")
    sys.exit(EXIT_NOT_VALID)
