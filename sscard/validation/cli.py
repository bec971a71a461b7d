"""``sscard x509 verify``: validate a certificate path from files, for people and scripts.

Exit status: 0 valid, 1 not valid (the reasons are printed), 2 unusable input (a file that
cannot be read or parsed, named; a malformed option value).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sscard.cli import UnusableInput
from sscard.exitcodes import Exit

if TYPE_CHECKING:
    from asn1crypto import crl, x509

    from sscard.validation.result import ValidationResult

EXIT_VALID = Exit.OK
EXIT_NOT_VALID = Exit.REFUSED
EXIT_UNUSABLE = Exit.USAGE

#: the values of sscard.validation's Purpose, RevocationMode, TrustMode and Profile, written
#: out so that ``sscard x509 verify --help`` need not load the validator (pyhanko, the
#: cryptography backends); tests/validation/test_cli.py holds them to the enums
PURPOSES = ("server", "client", "sign", "any")
REVOCATION_MODES = ("require", "leaf", "if-declared", "none")
TRUST_MODES = ("constrained-anchor", "anchor", "leaf")
PROFILES = ("rfc5280", "webpki")


_EKU_NAMES = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
}


class _Unusable(Exception):
    """Input that makes validation impossible; the message names the file or option."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Unusable(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    from sscard.x509.errors import X509ParseError
    from sscard.x509.parse import load_certificates

    # deep=False: a certificate whose extension or key does not parse is one the validator
    # answers NOT VALID for (exit 1, with the reason), not unusable input
    try:
        return load_certificates(_read(path, what), deep=False)
    except X509ParseError as exc:
        raise _Unusable(f"{what} {path}: {exc}") from None


def _crl(path: Path) -> crl.CertificateList:
    from sscard.x509.errors import X509ParseError
    from sscard.x509.parse import load_crl

    try:
        return load_crl(_read(path, "CRL"))
    except X509ParseError as exc:
        raise _Unusable(f"CRL {path}: {exc}") from None


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _Unusable(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    # A time without a zone is read as UTC, the zone certificates are written in.
    return when if when.utcoffset() is not None else when.replace(tzinfo=UTC)


def _subject(cert: x509.Certificate) -> str:
    from sscard.validation.names import name_text

    return name_text(cert.subject)


def _report(result: ValidationResult) -> None:
    leaf = _subject(result.leaf)
    if result.valid:
        click.echo(f"OK: {leaf}")
    else:
        click.echo(f"NOT VALID: {leaf}")
        for reason in result.reasons:
            click.echo(f"  {reason.code.value}: {reason.message}")
    click.echo("path (trust anchor first):")
    for depth, cert in enumerate(result.path):
        click.echo(f"  {depth}: {_subject(cert)} (serial {cert.serial_number:X})")
    if result.valid:
        policies = ", ".join(sorted(result.user_constrained_policies)) or "none"
        click.echo(f"user-constrained policies: {policies}")
    if not result.revocation_checked:
        click.echo("note: revocation was not checked (give --crl or --ocsp)")


@click.command("verify")
@click.argument("leaf", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    "trust",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust anchor certificate(s), PEM (a bundle is fine) or DER. Repeatable.",
)
@click.option(
    "--intermediate",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Candidate CA certificate(s) to build the path from. Repeatable.",
)
@click.option(
    "--crl",
    "crls",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CRL or delta CRL, PEM or DER. Repeatable.",
)
@click.option(
    "--ocsp",
    is_flag=True,
    help="Ask the OCSP responders (and CRL distribution points) named in the certificates.",
)
@click.option("--at", "at", metavar="ISO-TIME", help="Validation time (default: now).")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="OID",
    help="Acceptable certificate policy (initial policy set). Repeatable; default anyPolicy.",
)
@click.option("--explicit-policy", is_flag=True, help="Require a valid policy for the path.")
@click.option("--inhibit-policy-mapping", is_flag=True, help="Forbid policy mapping.")
@click.option("--inhibit-any-policy", is_flag=True, help="Do not let anyPolicy match.")
@click.option(
    "--purpose",
    type=click.Choice(PURPOSES),
    help="Check that the leaf's key usages fit this use.",
)
@click.option("--hostname", metavar="NAME", help="Check the leaf's subjectAltName for NAME.")
@click.option(
    "--revocation",
    type=click.Choice(REVOCATION_MODES),
    help="How much revocation information to insist on "
    "(default: require when --crl or --ocsp is given, else none).",
)
@click.option(
    "--allow-legacy-algorithms",
    is_flag=True,
    help="Accept SHA-1 and 1024-bit RSA/DSA (old test data such as NIST PKITS only).",
)
@click.option(
    "--trust-mode",
    type=click.Choice(TRUST_MODES),
    default="constrained-anchor",
    show_default=True,
    help="constrained-anchor: the anchor certificate's validity and constraints apply "
    "(RFC 5937); anchor: only its name and key are used; leaf: --trust names directly "
    "trusted end-entity certificates.",
)
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="rfc5280",
    show_default=True,
    help="Certificate rules: rfc5280 (strict RFC 5280), or webpki (plus CA/Browser Forum).",
)
@click.option("--max-depth", type=click.IntRange(min=0), metavar="N",
              help="At most N intermediates between trust anchor and leaf (default 8).")
@click.option(
    "--eku",
    "ekus",
    multiple=True,
    metavar="OID|NAME",
    help="Extended key usage the leaf must allow: an OID, or serverAuth, clientAuth, "
    "codeSigning, emailProtection, timeStamping, OCSPSigning. Repeatable.",
)
def verify(
    leaf: Path,
    trust: tuple[Path, ...],
    intermediate: tuple[Path, ...],
    crls: tuple[Path, ...],
    ocsp: bool,
    at: str | None,
    policies: tuple[str, ...],
    explicit_policy: bool,
    inhibit_policy_mapping: bool,
    inhibit_any_policy: bool,
    purpose: str | None,
    hostname: str | None,
    revocation: str | None,
    allow_legacy_algorithms: bool,
    trust_mode: str,
    profile: str,
    max_depth: int | None,
    ekus: tuple[str, ...],
) -> None:
    """Validate the certificate in LEAF up to a trust anchor (RFC 5280 §6).

    LEAF may hold the leaf followed by its chain. Exit 0 when valid, 1 when not (with the
    reasons), 2 when the input is unusable.
    """
    from sscard.validation.errors import ValidationInputError
    from sscard.validation.validator import RevocationMode, validate_path

    # pyhanko-certvalidator logs every failed side path (e.g. a CRL issuer it then finds
    # another way to) with a traceback; the reasons printed below are what counts.
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.ERROR)
    try:
        leaf_and_chain = _certificates(leaf, "leaf certificate")
        anchors = [c for path in trust for c in _certificates(path, "trust anchor")]
        others = [c for path in intermediate for c in _certificates(path, "intermediate")]
        crl_list = [_crl(path) for path in crls]
        result = validate_path(
            leaf_and_chain[0],
            trust_anchors=anchors,
            intermediates=[*leaf_and_chain[1:], *others],
            crls=crl_list,
            fetch_revocation=ocsp,
            revocation=RevocationMode(revocation) if revocation else None,
            at=_time(at),
            policies=policies or None,
            explicit_policy=explicit_policy,
            inhibit_policy_mapping=inhibit_policy_mapping,
            inhibit_any_policy=inhibit_any_policy,
            purpose=purpose,
            hostname=hostname,
            allow_legacy_algorithms=allow_legacy_algorithms,
            trust_mode=trust_mode,
            profile=profile,
            max_depth=max_depth,
            extended_key_usages=[_EKU_NAMES.get(e, e) for e in ekus],
        )
    except (_Unusable, ValidationInputError) as exc:
        raise UnusableInput(str(exc)) from None
    _report(result)
    raise click.exceptions.Exit(EXIT_VALID if result.valid else EXIT_NOT_VALID)
