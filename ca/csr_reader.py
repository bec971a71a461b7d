"""A one-pass reader of the common PKCS#10 request, for the issuance hot path.

``sscard.x509.parse.load_csr`` checks a request by making asn1crypto parse all of it into Python
values; the CA then reads the subject, the key and the attributes through asn1crypto again. For
one SM2 certificate that costs more than the signature (profile of a batch: the strict parse
and reading its key and subject were half of the CPU per certificate). The requests a CA sees
almost all have one shape, read here in one pass over the DER:

    SEQUENCE { SEQUENCE { INTEGER 0, Name, SubjectPublicKeyInfo, [0] {} (or absent) },
               AlgorithmIdentifier (one of the signature algorithms the CA knows, exactly),
               BIT STRING (no unused bits) }

with definite, minimal lengths, no trailing octets, and a subject of one attribute per RDN, each
a DirectoryString attribute asn1crypto names, held as a UTF8String (valid UTF-8) or a
PrintableString. Anything else, including every malformed request, is not this reader's to
judge: ``read_csr`` answers None and the caller takes the strict asn1crypto parse, which accepts
or refuses it as before. So the reader may only ever be narrower than asn1crypto, never wider;
tests/ca/test_csr_reader.py checks that whatever it reads, asn1crypto reads the same (mutated and
random requests included).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos, keys, x509
from asn1crypto import csr as asn1csr

from ca.request_encoding import Subject
from sscard import asn1 as _asn1  # noqa: F401  (registers the SM OIDs, as the strict parse has)
from sscard.crypto.algorithms import KeyType, SignatureAlgorithm, signature_algorithm_for_oid
from sscard.x509.names import format_name
from sscard.x509.parse import CSR_PEM_TYPES, MAX_DER_BYTES
from sscard.x509.pem import PemError, first_pem_block, is_pem

_MAX_BYTES = MAX_DER_BYTES[asn1csr.CertificationRequest]

_VERSION_0 = b"\x02\x01\x00"
_EMPTY_ATTRIBUTES = b"\xa0\x00"
_UTF8_STRING = 0x0C
_PRINTABLE_STRING = 0x13


def _name_types() -> dict[bytes, tuple[str, str]]:
    """OID (its DER) -> (asn1crypto's name, the short name ``format_name`` writes), for the
    attribute types asn1crypto reads as a DirectoryString."""
    found = {}
    for dotted, name in x509.NameType._map.items():
        if x509.NameTypeAndValue._oid_specs.get(name) is not x509.DirectoryString:
            continue
        # the short name from format_name itself, so the texts cannot drift apart
        shown = format_name(x509.Name.build({name: "x"}))
        found[x509.NameType(dotted).dump()] = (name, shown.rsplit("=", 1)[0])
    return found


_NAME_TYPES = _name_types()
#: the AlgorithmIdentifiers a request may carry on this path (SM2 and ECDSA: no parameters),
#: as they are encoded, and the algorithm each names (as the strict parse maps the OID);
#: RSA's take the strict parse
_SIGNATURE_ALGORITHMS = {
    algos.SignedDigestAlgorithm({"algorithm": alg.oid}).dump():
        signature_algorithm_for_oid(alg.oid)
    for alg in SignatureAlgorithm if alg.key_type in (KeyType.SM2, KeyType.EC)
}

#: the key AlgorithmIdentifiers read on this path (SM2 and the named EC curves), as encoded;
#: the key itself is checked when it is loaded (OpenSSL refuses a point off the curve)
_KEY_ALGORITHMS = frozenset(
    keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": keys.ECDomainParameters(
        name="named", value=curve)}).dump()
    for curve in ("1.2.156.10197.1.301", "secp256r1", "secp384r1")
)


@dataclass(frozen=True)
class CsrParts:
    """What the CA reads from a request, each part as the octets it was sent as."""

    der: bytes
    subject: Subject
    spki: bytes
    #: the CertificationRequestInfo, as signed
    info: bytes
    signature_algorithm: SignatureAlgorithm
    #: the BIT STRING's content without its unused-bits octet (as asn1crypto's ``native``)
    signature: bytes


def _tlv(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int] | None:
    """(content start, content end) of the ``tag`` value at ``pos``, if it is one with a
    definite, minimal length that fits before ``end``."""
    if pos + 2 > end or buf[pos] != tag:
        return None
    size = buf[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3 or pos + count > end or buf[pos] == 0:
            return None  # indefinite, absurdly long, or not minimal: not DER's one encoding
        size = int.from_bytes(buf[pos:pos + count], "big")
        if size < 0x80:
            return None
        pos += count
    if pos + size > end:
        return None
    return pos, pos + size


def _subject(der: bytes, header: int, start: int, end: int) -> Subject | None:
    """The Name whose header is at ``header``, content ``start:end``."""
    pairs: list[tuple[str, str]] = []
    shown: list[str] = []
    attributes: dict[str, str] = {}
    pos = start
    while pos < end:
        rdn = _tlv(der, pos, end, 0x31)
        if rdn is None:
            return None
        atv = _tlv(der, rdn[0], rdn[1], 0x30)
        if atv is None or atv[1] != rdn[1]:
            return None  # several attributes in one RDN: left to asn1crypto
        oid = _tlv(der, atv[0], atv[1], 0x06)
        if oid is None:
            return None
        known = _NAME_TYPES.get(der[atv[0]:oid[1]])
        if known is None or oid[1] >= atv[1]:
            return None
        tag = der[oid[1]]
        value = _tlv(der, oid[1], atv[1], tag)
        if value is None or value[1] != atv[1]:
            return None
        raw = der[value[0]:value[1]]
        if tag == _UTF8_STRING:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
        elif tag == _PRINTABLE_STRING:
            text = raw.decode("latin-1")  # as asn1crypto decodes it
        else:
            return None
        name, short = known
        pairs.append((name, text))
        attributes.setdefault(name, text)
        escaped = text.replace("\\", "\\\\").replace(",", "\\,")  # as format_name
        shown.append(f"{short}={escaped}")
        pos = rdn[1]
    return Subject(der[header:end], ", ".join(shown), attributes, tuple(pairs))


def _der(data: bytes) -> bytes | None:
    if not is_pem(data):
        return data
    try:
        kind, der = first_pem_block(data)
    except PemError:
        return None
    return der if kind in CSR_PEM_TYPES else None


def read_csr(data: bytes) -> CsrParts | None:
    """The parts of a request (PEM or DER) of the common shape; None for any other request,
    well-formed or not, which the strict parse then judges."""
    der = _der(data)
    if der is None or len(der) > _MAX_BYTES:
        return None
    outer = _tlv(der, 0, len(der), 0x30)
    if outer is None or outer[1] != len(der):
        return None
    info_start = outer[0]
    info = _tlv(der, info_start, len(der), 0x30)
    if info is None:
        return None
    algorithm = _tlv(der, info[1], len(der), 0x30)
    signature_algorithm = (_SIGNATURE_ALGORITHMS.get(der[info[1]:algorithm[1]])
                           if algorithm is not None else None)
    if algorithm is None or signature_algorithm is None:
        return None
    signature = _tlv(der, algorithm[1], len(der), 0x03)
    if (signature is None or signature[1] != len(der) or signature[1] - signature[0] < 2
            or der[signature[0]] != 0):
        return None
    pos, info_end = info
    if der[pos:pos + 3] != _VERSION_0:
        return None
    name = _tlv(der, pos + 3, info_end, 0x30)
    if name is None:
        return None
    spki = _tlv(der, name[1], info_end, 0x30)
    if spki is None:
        return None
    key_algorithm = _tlv(der, spki[0], spki[1], 0x30)
    if key_algorithm is None or der[spki[0]:key_algorithm[1]] not in _KEY_ALGORITHMS:
        return None
    key = _tlv(der, key_algorithm[1], spki[1], 0x03)
    if key is None or key[1] != spki[1] or key[1] - key[0] < 2 or der[key[0]] != 0:
        return None
    if der[spki[1]:info_end] not in (b"", _EMPTY_ATTRIBUTES):
        return None  # attributes (an extension request): asn1crypto reads them
    subject = _subject(der, pos + 3, *name)
    if subject is None:
        return None
    spki_start = name[1]
    return CsrParts(der, subject, der[spki_start:spki[1]], der[info_start:info_end],
                    signature_algorithm, der[signature[0] + 1:signature[1]])
