"""Fuzz CMS input: sscard.cms.parse.load_content_info and SignedData verification (what the
gateway does with documents business systems send). Allowed: CmsError from the parser; the
verifier answers with a report (or a CmsError for input that is not SignedData)."""

from __future__ import annotations

import _common

with _common.instrumented():
    import _pki

    from sscard.cms.errors import CmsError
    from sscard.cms.parse import load_content_info
    from sscard.cms.signed import sign
    from sscard.cms.verify import verify


def test_one_input(data: bytes) -> None:
    try:
        load_content_info(data)
    except CmsError:
        return
    p = _pki.pki()
    try:
        verify(data, [p.ca_cert], content=b"detached content")
    except CmsError:
        pass


def seeds() -> list[bytes]:
    p = _pki.pki()
    return [sign(b"document", p.leaf_key, p.leaf_cert, chain=[p.ca_cert]),
            sign(b"detached content", p.leaf_key, p.leaf_cert, detached=True)]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
