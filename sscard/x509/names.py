"""Distinguished names from and to text, keeping the given order and Chinese text as UTF8String.

``parse_name("CN=张三,serialNumber=350102199001011234,O=某市人社局,C=CN")`` keeps the order written
(the first attribute is the first RDN, as OpenSSL's ``-subj`` does with ``/``-separated forms).
"""

from __future__ import annotations

from asn1crypto import x509

from sscard.x509.errors import BuilderError

# short names as OpenSSL spells them -> asn1crypto attribute names
_ATTRS = {
    "cn": "common_name",
    "commonname": "common_name",
    "c": "country_name",
    "o": "organization_name",
    "ou": "organizational_unit_name",
    "l": "locality_name",
    "st": "state_or_province_name",
    "street": "street_address",
    "serialnumber": "serial_number",
    "sn": "surname",
    "gn": "given_name",
    "givenname": "given_name",
    "title": "title",
    "emailaddress": "email_address",
    "email": "email_address",
    "dc": "domain_component",
    "uid": "user_id",
    "dnqualifier": "dn_qualifier",
    "name": "name",
    "pseudonym": "pseudonym",
    "organizationidentifier": "organization_identifier",
}
_SHORT = {
    "common_name": "CN",
    "country_name": "C",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "street_address": "street",
    "serial_number": "serialNumber",
    "surname": "SN",
    "given_name": "GN",
    "title": "title",
    "email_address": "emailAddress",
    "domain_component": "DC",
    "user_id": "UID",
    "dn_qualifier": "dnQualifier",
    "name": "name",
    "pseudonym": "pseudonym",
    "organization_identifier": "organizationIdentifier",
}


def _split(text: str) -> list[str]:
    """Split on unescaped ',' (or '/' for the OpenSSL -subj form)."""
    text = text.strip()
    if text.startswith("/"):
        sep = "/"
        text = text[1:]
    else:
        sep = ","
    parts, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
# RFC 5280 App. A: these are PrintableString, whatever the DirectoryString default
_PRINTABLE_ATTRS = ("serial_number", "country_name", "dn_qualifier")


def _value(attr: str, value: str) -> object:
    if attr == "country_name" and len(value) != 2:
        raise BuilderError(f"country name must be a two-letter code, got {value!r}")
    if attr in _PRINTABLE_ATTRS:
        if not set(value) <= _PRINTABLE:
            raise BuilderError(f"{_SHORT[attr]} must be a PrintableString, got {value!r}")
        return x509.DirectoryString(name="printable_string", value=value)
    spec = x509.NameTypeAndValue._oid_specs.get(attr)
    if spec is x509.DirectoryString:
        return x509.DirectoryString(name="utf8_string", value=value)
    return value


def parse_name(text: str) -> x509.Name:
    """Parse ``"CN=张三,serialNumber=...,C=CN"``; raises BuilderError naming the bad part."""
    rdns = []
    for part in _split(text):
        if "=" not in part:
            raise BuilderError(f"name component {part!r} has no '='")
        key, value = part.split("=", 1)
        key = key.strip()
        value = value.strip()
        if not value:
            raise BuilderError(f"name component {key!r} is empty")
        if all(c.isdigit() or c == "." for c in key) and "." in key:
            attr = key
            atv = x509.NameTypeAndValue(
                {"type": key, "value": x509.DirectoryString(name="utf8_string", value=value)}
            )
        else:
            try:
                attr = _ATTRS[key.lower()]
            except KeyError:
                raise BuilderError(f"unknown name attribute {key!r}") from None
            atv = x509.NameTypeAndValue({"type": attr, "value": _value(attr, value)})
        rdns.append(x509.RelativeDistinguishedName([atv]))
    if not rdns:
        raise BuilderError("empty distinguished name")
    return x509.Name(name="", value=x509.RDNSequence(rdns))


def format_name(name: x509.Name) -> str:
    """RFC 4514-like text in encoding order, Chinese kept as is."""
    out = []
    for rdn in name.chosen:
        for atv in rdn:
            t = atv["type"].native
            short = _SHORT.get(t, atv["type"].dotted if t == atv["type"].dotted else t)
            v = atv["value"].native
            if isinstance(v, bytes):
                v = v.hex()
            text = str(v).replace("\\", "\\\\").replace(",", "\\,")
            out.append(f"{short}={text}")
    return ", ".join(out)


def name_attribute(name: x509.Name, attr: str) -> str | None:
    """The first value of ``attr`` (asn1crypto name, e.g. 'serial_number') in ``name``."""
    for rdn in name.chosen:
        for atv in rdn:
            if atv["type"].native == attr:
                return str(atv["value"].native)
    return None
