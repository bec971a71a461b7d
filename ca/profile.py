"""Certificate profiles: declarative TOML data (``ca/profiles/*.toml``), validated on load.

A profile says what a certificate of its kind contains (validity, key usage per key type, EKU,
basic constraints, policies, CRL distribution point, AIA, OCSP no-check, the social insurance
number extension) and what a request may ask for. Each file carries a ``version`` so that a
change is visible in the certificates' database rows and in reviews. Loading rejects unknown
keys, wrong types and contradictions (a CA profile without keyCertSign, ...), naming the file
and the key, so a typo never silently issues a wrong certificate.

Data directories may add or override profiles in ``<home>/profiles/*.toml``.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ca.errors import ProfileError
from sscard.crypto.algorithms import KeyAlgorithm, KeyType
from sscard.crypto.errors import UnsupportedAlgorithm

SHIPPED_DIR = Path(__file__).resolve().parent / "profiles"

# RFC 5280 names (as written in profiles) -> asn1crypto KeyUsage bit names
KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "non_repudiation",
    "contentCommitment": "non_repudiation",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
# RFC 5280 / RFC 9336 names -> OIDs (asn1crypto accepts dotted strings for every purpose)
EXTENDED_KEY_USAGES = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
    "documentSigning": "1.3.6.1.5.5.7.3.36",
}
# extensions a CSR may carry in its extensionRequest, as profiles name them
REQUESTABLE = {
    "keyUsage": "key_usage",
    "extendedKeyUsage": "extended_key_usage",
    "subjectAltName": "subject_alt_name",
    "basicConstraints": "basic_constraints",
}
SUBJECT_ATTRIBUTES = {
    "CN": "common_name", "C": "country_name", "O": "organization_name",
    "OU": "organizational_unit_name", "L": "locality_name", "ST": "state_or_province_name",
    "serialNumber": "serial_number", "emailAddress": "email_address",
}
SIN_MODES = ("required", "optional", "absent")
#: RFC 5280 Appendix A upper bounds (ub-common-name etc.); emailAddress is 255 (ub-emailaddress)
MAX_LENGTHS = {"country_name": 2, "email_address": 255}
DEFAULT_MAX_LENGTH = 64
#: subjectAltName entry kinds a profile may allow, as written -> asn1crypto GeneralName names
SAN_TYPES = {"dns": "dns_name", "email": "rfc822_name", "uri": "uniform_resource_identifier",
             "ip": "ip_address"}
_SUBJECT_RULE_KEYS = {"min", "max", "max_length", "pattern", "values", "check"}
_SAN_KEYS = {"types", "max", "wildcard"}

_TOP_KEYS = {
    "name", "version", "description", "validity_days", "key_algorithms", "subject_required",
    "allowed_request_extensions", "social_insurance_number", "certificate_policies",
    "crl_distribution_point", "authority_info_access", "ocsp_no_check", "key_usage",
    "extended_key_usage", "basic_constraints", "offline_only", "subject", "subject_alt_name",
}


@dataclass(frozen=True)
class SubjectRule:
    """What one subject attribute type may hold: how many (min..max), how long, which
    characters (a full-match regex), or which fixed values."""

    min: int = 0
    max: int = 1
    max_length: int = DEFAULT_MAX_LENGTH
    pattern: re.Pattern[str] | None = None
    values: frozenset[str] | None = None
    #: a named content check (VALUE_CHECKS), e.g. "gb11643" for a citizen ID number
    check: str | None = None

    def problem(self, value: str) -> str | None:
        """Why ``value`` fails this rule's named check, or None."""
        return None if self.check is None else VALUE_CHECKS[self.check](value)


@dataclass(frozen=True)
class SanRule:
    """Which subjectAltName entries a request may carry."""

    types: frozenset[str] = frozenset({"dns_name"})  # asn1crypto GeneralName names
    max: int = 10
    wildcard: bool = False  # a "*." left-most DNS label


def _gb11643(value: str) -> str | None:
    """A GB 11643 citizen identity number as the card carries it: 18 characters, the ISO 7064
    MOD 11-2 check digit, a GB/T 2260 province and a calendar birth date (the same check as
    the card tools, sscard.card.validation.validate_ssn)."""
    from sscard.card.validation import CardDataError, validate_ssn

    try:
        normal = validate_ssn(value)
    except CardDataError as exc:
        return str(exc)
    if normal != value:
        return f"{value!r}: write the check character X in upper case, as on the card"
    return None


#: named checks a subject rule may ask for (``check = "gb11643"``)
VALUE_CHECKS = {"gb11643": _gb11643}


def bad_characters(value: str) -> str | None:
    """Why a name value is unacceptable whatever the profile: control or format characters
    (NUL, newlines, bidi overrides), lone surrogates, unassigned code points, or whitespace at
    either end; None if it is clean."""
    if value != value.strip():
        return "leading or trailing white space"
    if value.isprintable():
        # str.isprintable is false for every character of the refused categories (Other, and
        # the line and paragraph separators), so a printable value needs no walk: a CA
        # checks every attribute of every subject it signs
        return None
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp"):
            return f"character U+{ord(ch):04X} ({category}) is not allowed in a name"
    return None


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    description: str
    validity_days: int
    key_algorithms: frozenset[KeyAlgorithm]
    allowed_request_extensions: frozenset[str]  # asn1crypto extension names
    social_insurance_number: str  # required | optional | absent
    certificate_policies: tuple[str, ...]
    crl_distribution_point: bool
    authority_info_access: bool
    ocsp_no_check: bool
    key_usage: Mapping[KeyType, frozenset[str]]  # asn1crypto bit names, per key type
    key_usage_critical: bool
    extended_key_usage: tuple[str, ...]  # dotted OIDs
    extended_key_usage_critical: bool
    is_ca: bool
    path_length: int | None
    basic_constraints_critical: bool
    #: never issued over the network (service identities); CA-level profiles are so anyway
    offline_only: bool = False
    #: asn1crypto attribute name -> rule; attribute types not listed are refused
    subject_rules: Mapping[str, SubjectRule] = field(default_factory=dict)
    san_rule: SanRule = SanRule()

    @property
    def subject_required(self) -> tuple[str, ...]:
        return tuple(a for a, r in self.subject_rules.items() if r.min > 0)

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"


def _fail(where: str, what: str) -> ProfileError:
    return ProfileError(f"profile {where}: {what}")


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = ..., ) -> Any:
    if key not in data:
        if default is ...:
            raise _fail(where, f"'{key}' is required")
        return default
    value = data[key]
    if kind is int and isinstance(value, bool):
        raise _fail(where, f"'{key}' must be an integer, not a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _fail(where, f"'{key}' must be {names}, got {type(value).__name__}")
    return value


def _str_list(data: Mapping[str, Any], key: str, where: str, default: Any = ...) -> list[str]:
    value = _get(data, key, list, where, default)
    if not all(isinstance(v, str) for v in value):
        raise _fail(where, f"'{key}' must be a list of strings")
    return list(value)


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; allowed: "
                    + ", ".join(sorted(allowed)))


def _oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) >= 2 and all(p.isdigit() for p in parts)


def profile_from_dict(data: Mapping[str, Any], where: str) -> Profile:
    """Validate one profile's data; ``where`` (a file name) goes into every error message."""
    _no_unknown(data, _TOP_KEYS, where)
    name = _get(data, "name", str, where)
    version = _get(data, "version", int, where)
    if version < 1:
        raise _fail(where, "'version' must be 1 or more")
    validity = _get(data, "validity_days", int, where)
    if not 1 <= validity <= 36500:
        raise _fail(where, f"'validity_days' {validity} out of range 1..36500")
    try:
        algs = frozenset(KeyAlgorithm.parse(a) for a in _str_list(data, "key_algorithms", where))
    except UnsupportedAlgorithm as exc:
        raise _fail(where, str(exc)) from None
    if not algs:
        raise _fail(where, "'key_algorithms' must name at least one algorithm")

    subject_rules = _subject_rules(data, where)
    san_rule = _san_rule(data, where)

    allowed_req = set()
    for ext in _str_list(data, "allowed_request_extensions", where, []):
        if ext not in REQUESTABLE:
            raise _fail(where, f"allowed_request_extensions: {ext!r} is not requestable; use "
                        + ", ".join(REQUESTABLE))
        allowed_req.add(REQUESTABLE[ext])

    sin = _get(data, "social_insurance_number", str, where, "absent")
    if sin not in SIN_MODES:
        raise _fail(where, f"social_insurance_number must be one of {', '.join(SIN_MODES)}")
    policies = _str_list(data, "certificate_policies", where, [])
    for p in policies:
        if not _oid(p):
            raise _fail(where, f"certificate_policies: {p!r} is not a dotted OID")

    bc = _get(data, "basic_constraints", dict, where, {})
    _no_unknown(bc, {"ca", "path_length", "critical"}, f"{where} [basic_constraints]")
    is_ca = _get(bc, "ca", bool, where, False)
    path_length = _get(bc, "path_length", int, where, None)
    if path_length is not None and (not is_ca or path_length < 0):
        raise _fail(where, "basic_constraints.path_length needs ca = true and a value >= 0")

    ku = _get(data, "key_usage", dict, where)
    _no_unknown(ku, {"critical", "sm2", "ec", "rsa", "ed25519"}, f"{where} [key_usage]")
    usages: dict[KeyType, frozenset[str]] = {}
    for ktype in KeyType:
        names = _str_list(ku, ktype.value, f"{where} [key_usage]", None) if ktype.value in ku \
            else None
        if names is None:
            continue
        bad = [n for n in names if n not in KEY_USAGES]
        if bad:
            raise _fail(where, f"key_usage.{ktype.value}: unknown usage(s) {', '.join(bad)}")
        if not names:
            raise _fail(where, f"key_usage.{ktype.value} is empty")
        usages[ktype] = frozenset(KEY_USAGES[n] for n in names)
    for alg in algs:
        if alg.key_type not in usages:
            raise _fail(where, f"key_usage has no entry '{alg.key_type.value}' for allowed "
                        f"algorithm {alg.value}")
        if is_ca and "key_cert_sign" not in usages[alg.key_type]:
            raise _fail(where, f"a CA profile needs keyCertSign in key_usage.{alg.key_type.value}")
        if not is_ca and "key_cert_sign" in usages[alg.key_type]:
            raise _fail(where, "keyCertSign in a profile that is not a CA (basic_constraints.ca)")
    if usages.get(KeyType.RSA, frozenset()) & {"key_agreement"}:
        raise _fail(where, "keyAgreement does not fit an RSA key (key_usage.rsa)")

    eku = _get(data, "extended_key_usage", dict, where, {})
    _no_unknown(eku, {"critical", "usages"}, f"{where} [extended_key_usage]")
    eku_oids = []
    for u in _str_list(eku, "usages", where, []):
        if u in EXTENDED_KEY_USAGES:
            eku_oids.append(EXTENDED_KEY_USAGES[u])
        elif _oid(u):
            eku_oids.append(u)
        else:
            raise _fail(where, f"extended_key_usage: unknown usage {u!r}; use a dotted OID or "
                        + ", ".join(EXTENDED_KEY_USAGES))
    ocsp_no_check = _get(data, "ocsp_no_check", bool, where, False)
    if ocsp_no_check and EXTENDED_KEY_USAGES["OCSPSigning"] not in eku_oids:
        raise _fail(where, "ocsp_no_check belongs to OCSP signer profiles (EKU OCSPSigning)")

    return Profile(
        name=name,
        version=version,
        description=_get(data, "description", str, where, ""),
        validity_days=validity,
        key_algorithms=algs,
        allowed_request_extensions=frozenset(allowed_req),
        social_insurance_number=sin,
        certificate_policies=tuple(policies),
        crl_distribution_point=_get(data, "crl_distribution_point", bool, where, False),
        authority_info_access=_get(data, "authority_info_access", bool, where, False),
        ocsp_no_check=ocsp_no_check,
        key_usage=usages,
        key_usage_critical=_get(ku, "critical", bool, where, True),
        extended_key_usage=tuple(eku_oids),
        extended_key_usage_critical=_get(eku, "critical", bool, where, False),
        is_ca=is_ca,
        path_length=path_length,
        basic_constraints_critical=_get(bc, "critical", bool, where, True),
        offline_only=_get(data, "offline_only", bool, where, False),
        subject_rules=subject_rules,
        san_rule=san_rule,
    )


def _attribute(short: str, where: str) -> str:
    if short not in SUBJECT_ATTRIBUTES:
        raise _fail(where, f"unknown subject attribute {short!r}; use "
                    + ", ".join(SUBJECT_ATTRIBUTES))
    return SUBJECT_ATTRIBUTES[short]


def _subject_rules(data: Mapping[str, Any], where: str) -> dict[str, SubjectRule]:
    """``[subject.CN]`` tables (min, max, max_length, pattern, values). Older profiles give only
    ``subject_required``: then each listed attribute is required once and every other known
    attribute may appear once, within the RFC 5280 lengths."""
    required = [_attribute(a, f"{where} subject_required")
                for a in _str_list(data, "subject_required", where, [])]
    tables = _get(data, "subject", dict, where, None)
    if tables is None:
        return {name: SubjectRule(min=1 if name in required else 0,
                                  max_length=MAX_LENGTHS.get(name, DEFAULT_MAX_LENGTH))
                for name in SUBJECT_ATTRIBUTES.values()}
    if required:
        raise _fail(where, "give either subject_required or [subject.X] tables (with min = 1)")
    rules: dict[str, SubjectRule] = {}
    for short, table in tables.items():
        at = f"{where} [subject.{short}]"
        name = _attribute(short, at)
        if not isinstance(table, dict):
            raise _fail(at, "must be a table")
        _no_unknown(table, _SUBJECT_RULE_KEYS, at)
        low = _get(table, "min", int, at, 0)
        high = _get(table, "max", int, at, 1)
        if not 0 <= low <= high or high < 1:
            raise _fail(at, f"min {low} and max {high} must satisfy 0 <= min <= max, max >= 1")
        ub = MAX_LENGTHS.get(name, DEFAULT_MAX_LENGTH)
        length = _get(table, "max_length", int, at, ub)
        if not 1 <= length <= ub:
            raise _fail(at, f"max_length {length} out of range 1..{ub} (RFC 5280 bound)")
        pattern = None
        if "pattern" in table:
            try:
                pattern = re.compile(_get(table, "pattern", str, at))
            except re.error as exc:
                raise _fail(at, f"pattern is not a regular expression: {exc}") from None
        values = None
        if "values" in table:
            listed = _str_list(table, "values", at)
            if not listed:
                raise _fail(at, "values is empty (leave the attribute out to forbid it)")
            values = frozenset(listed)
        check = _get(table, "check", str, at, None)
        if check is not None and check not in VALUE_CHECKS:
            raise _fail(at, f"unknown check {check!r}; known: {', '.join(VALUE_CHECKS)}")
        rules[name] = SubjectRule(low, high, length, pattern, values, check)
    if not any(r.min > 0 for r in rules.values()):
        raise _fail(where, "[subject] requires no attribute at all (give one min = 1)")
    return rules


def _san_rule(data: Mapping[str, Any], where: str) -> SanRule:
    table = _get(data, "subject_alt_name", dict, where, None)
    if table is None:
        return SanRule()
    at = f"{where} [subject_alt_name]"
    _no_unknown(table, _SAN_KEYS, at)
    kinds = []
    for t in _str_list(table, "types", at, ["dns"]):
        if t not in SAN_TYPES:
            raise _fail(at, f"unknown type {t!r}; use " + ", ".join(SAN_TYPES))
        kinds.append(SAN_TYPES[t])
    high = _get(table, "max", int, at, 10)
    if not 1 <= high <= 100:
        raise _fail(at, f"max {high} out of range 1..100")
    return SanRule(frozenset(kinds), high, _get(table, "wildcard", bool, at, False))


def load_profile_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path.name}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"profile {path}: cannot read: {exc.strerror}") from None
    profile = profile_from_dict(data, path.name)
    if profile.name != path.stem:
        raise ProfileError(f"profile {path.name}: name {profile.name!r} differs from the file name")
    return profile


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, Profile]:
    """The shipped profiles, then each directory's (a later file of the same name replaces)."""
    found: dict[str, Profile] = {}
    for directory in (SHIPPED_DIR, *extra_dirs):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            profile = load_profile_file(path)
            found[profile.name] = profile
    return found
