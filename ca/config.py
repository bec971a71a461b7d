"""The hierarchy configuration: a TOML file naming the root and the issuing CAs.

::

    base_url = "http://127.0.0.1:8080"      # where the service publishes CRLs, OCSP, CA certs

    [root]
    name = "root"
    subject = "CN=社会保障卡根CA,O=某省人力资源和社会保障厅,C=CN"
    algorithm = "sm2"                       # sm2 | ec-p256 | ec-p384 | rsa2048 | rsa3072 | rsa4096
    validity_days = 7305
    offline = false                         # true: the root lives elsewhere (see ca init --csr-out)

    [[issuing]]
    name = "issuing"
    subject = "CN=社会保障卡签发CA,O=某省人力资源和社会保障厅,C=CN"
    algorithm = "sm2"
    validity_days = 3652
    path_length = 0
    # crl_url / delta_crl_url / ocsp_url / ca_issuers_url default to base_url + /crl/<name>.crl,
    # /crl/<name>-delta.crl, /ocsp, /certs/<name>.crt;
    # crl_hours / delta_crl_hours: nextUpdate of full and delta CRLs

    [issuing.pkcs11]                        # optional: the key is on a PKCS#11 token
    module = "/usr/lib/softhsm/libsofthsm2.so"
    token = "ca"
    label = "issuing"
    pin_file = "/etc/sscard/token.pin"

Without a file the default is an SM2 root and one SM2 issuing CA.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ca.errors import ConfigError
from sscard.crypto.algorithms import KeyAlgorithm
from sscard.crypto.errors import UnsupportedAlgorithm
from sscard.x509.errors import X509Error
from sscard.x509.names import parse_name

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
_DEFAULT_TEMPLATE = """\
base_url = "{base_url}"
{database}
[root]
name = "root"
subject = "CN=社会保障卡根CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 7305

[[issuing]]
name = "issuing"
subject = "CN=社会保障卡签发CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 3652
path_length = 0
"""


def default_config_text(base_url: str = DEFAULT_BASE_URL, database_url: str | None = None) -> str:
    """The default hierarchy (SM2 root and one issuing CA) as TOML, for a service address and,
    optionally, a database URL: what ``ca init`` uses without ``--config``, and the starting
    point for scripts that need the same hierarchy elsewhere."""
    database = f'\n[database]\nurl = "{database_url}"\n' if database_url else ""
    return _DEFAULT_TEMPLATE.format(base_url=base_url, database=database)


DEFAULT_CONFIG = default_config_text()


@dataclass(frozen=True)
class Pkcs11Spec:
    module: str
    token: str
    label: str
    pin_file: str | None = None


@dataclass(frozen=True)
class CASpec:
    name: str
    subject: str
    algorithm: KeyAlgorithm
    validity_days: int
    pkcs11: Pkcs11Spec | None = None
    path_length: int | None = None
    crl_url: str | None = None
    delta_crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    crl_hours: int = 24
    delta_crl_hours: int = 1


@dataclass(frozen=True)
class HierarchyConfig:
    root: CASpec
    root_offline: bool
    issuing: tuple[CASpec, ...]
    database_url: str | None
    base_url: str
    text: str  # the TOML as given, kept in the data directory

    def issuing_named(self, name: str | None) -> CASpec:
        if name is None:
            return self.issuing[0]
        for spec in self.issuing:
            if spec.name == name:
                return spec
        raise ConfigError(f"no issuing CA named {name!r}; configured: "
                          + ", ".join(s.name for s in self.issuing))


_CA_KEYS = {"name", "subject", "algorithm", "validity_days", "pkcs11", "path_length", "crl_url",
            "delta_crl_url", "ocsp_url", "ca_issuers_url", "crl_hours", "delta_crl_hours",
            "offline"}


def _get(data: Mapping[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise ConfigError(f"{where}: '{key}' is required")
        return default
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _ca_spec(data: Any, where: str, base_url: str, is_root: bool) -> CASpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(data) - _CA_KEYS - ({"offline"} if is_root else set()))
    if unknown or (not is_root and "offline" in data):
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown or ['offline'])}")
    name = _get(data, "name", str, where)
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-' or '_'")
    subject = _get(data, "subject", str, where)
    try:
        parse_name(subject)
    except X509Error as exc:
        raise ConfigError(f"{where}: subject {subject!r}: {exc}") from None
    try:
        algorithm = KeyAlgorithm.parse(_get(data, "algorithm", str, where, "sm2"))
    except UnsupportedAlgorithm as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if algorithm is KeyAlgorithm.ED25519:
        raise ConfigError(f"{where}: ed25519 CAs are not supported (SM2, ECDSA or RSA)")
    validity = _get(data, "validity_days", int, where, 7305 if is_root else 3652)
    if not 1 <= validity <= 36500:
        raise ConfigError(f"{where}: validity_days {validity} out of range 1..36500")
    pkcs11 = None
    if "pkcs11" in data:
        p = _get(data, "pkcs11", dict, where)
        unknown = sorted(set(p) - {"module", "token", "label", "pin_file"})
        if unknown:
            raise ConfigError(f"{where}.pkcs11: unknown key(s) {', '.join(unknown)}")
        pkcs11 = Pkcs11Spec(
            module=_get(p, "module", str, f"{where}.pkcs11"),
            token=_get(p, "token", str, f"{where}.pkcs11"),
            label=_get(p, "label", str, f"{where}.pkcs11"),
            pin_file=_get(p, "pin_file", str, f"{where}.pkcs11", None),
        )
    path_length = _get(data, "path_length", int, where, None)
    if path_length is not None and path_length < 0:
        raise ConfigError(f"{where}: path_length must be 0 or more")
    crl_hours = _get(data, "crl_hours", int, where, 24)
    delta_hours = _get(data, "delta_crl_hours", int, where, 1)
    if crl_hours < 1 or delta_hours < 1:
        raise ConfigError(f"{where}: crl_hours and delta_crl_hours must be 1 or more")
    base = base_url.rstrip("/")
    return CASpec(
        name=name, subject=subject, algorithm=algorithm, validity_days=validity,
        pkcs11=pkcs11, path_length=path_length,
        crl_url=_get(data, "crl_url", str, where, f"{base}/crl/{name}.crl"),
        delta_crl_url=_get(data, "delta_crl_url", str, where, f"{base}/crl/{name}-delta.crl"),
        ocsp_url=_get(data, "ocsp_url", str, where, f"{base}/ocsp"),
        ca_issuers_url=_get(data, "ca_issuers_url", str, where, f"{base}/certs/{name}.crt"),
        crl_hours=crl_hours, delta_crl_hours=delta_hours,
    )


def parse_config(text: str, where: str = "config") -> HierarchyConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"base_url", "root", "issuing", "database"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    base_url = _get(data, "base_url", str, where, DEFAULT_BASE_URL)
    root_data = _get(data, "root", dict, where)
    root = _ca_spec(root_data, f"{where} [root]", base_url, is_root=True)
    offline = _get(root_data, "offline", bool, f"{where} [root]", False)
    issuing_data = _get(data, "issuing", list, where, [])
    if not issuing_data:
        raise ConfigError(f"{where}: at least one [[issuing]] CA is required")
    issuing = tuple(_ca_spec(d, f"{where} [[issuing]] #{i + 1}", base_url, is_root=False)
                    for i, d in enumerate(issuing_data))
    names = [root.name, *(s.name for s in issuing)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: CA name(s) used twice: {', '.join(dupes)}")
    db = _get(data, "database", dict, where, {})
    unknown = sorted(set(db) - {"url"})
    if unknown:
        raise ConfigError(f"{where} [database]: unknown key(s) {', '.join(unknown)}")
    return HierarchyConfig(root=root, root_offline=offline, issuing=issuing,
                           database_url=_get(db, "url", str, f"{where} [database]", None),
                           base_url=base_url, text=text)


def load_config(path: Path | None) -> HierarchyConfig:
    if path is None:
        return parse_config(DEFAULT_CONFIG, "default config")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return parse_config(text, Path(path).name)
