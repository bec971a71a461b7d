"""Readers for the two vector formats in ../shared/conformance/sm: OpenSSL evp_test stanzas
(Tongsuo) and Botan .vec files. Both are public data; parsing them is all this module does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stanza:
    fields: dict[str, str] = field(default_factory=dict)
    pem: str = ""

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def hex(self, key: str) -> bytes:
        value = self.fields[key].strip()
        if value.startswith('"') and value.endswith('"'):
            return value[1:-1].encode()
        return bytes.fromhex(value)


def evp_stanzas(path: Path) -> list[Stanza]:
    """OpenSSL evp_test: blank-line separated 'Key = value' stanzas; PEM keys inline."""
    stanzas: list[Stanza] = []
    cur = Stanza()
    in_pem = False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if in_pem:
            cur.pem += raw + "\n"
            if line.startswith("-----END"):
                in_pem = False
            continue
        if line.startswith("-----BEGIN"):
            cur.pem = raw + "\n"
            in_pem = True
            continue
        if not line or line.startswith("#"):
            if cur.fields:
                stanzas.append(cur)
                cur = Stanza()
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            cur.fields[k.strip()] = v.strip()
    if cur.fields:
        stanzas.append(cur)
    return stanzas


def botan_vectors(path: Path) -> list[dict[str, str]]:
    """Botan .vec: 'Key = value' groups; curve and hash lines stick until changed.
    Each entry carries the sticky context (P, A, B, xG, yG, Order, Oid, Hash) with it."""
    sticky: dict[str, str] = {}
    sticky_keys = {"P", "A", "B", "xG", "yG", "Order", "Oid", "Hash"}
    entries: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if not line or line.startswith("#"):
            if cur:
                entries.append({**sticky, **cur, "_section": section})
                cur = {}
            continue
        if "=" not in line:
            continue
        k, v = (s.strip() for s in line.split("=", 1))
        if k in sticky_keys:
            if cur:
                entries.append({**sticky, **cur, "_section": section})
                cur = {}
            sticky[k] = v
        else:
            cur[k] = v
    if cur:
        entries.append({**sticky, **cur, "_section": section})
    return entries
