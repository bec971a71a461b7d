"""Fuzz the time-stamping authority (ca.tsa.TimeStampAuthority.respond): it answers every input
with a DER TimeStampResp, 'granted' only for a request parse_request accepts, and never with
systemFailure (which it uses when its own machinery breaks: here, key and serials are fine, so
a systemFailure means client input broke the token builder)."""

from __future__ import annotations

import _common

with _common.instrumented():
    import _pki

    from ca.tsa import Rejection, TimeStampAuthority, TimeStampResp


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def next_serial(self) -> int:
        self.value += 1
        return self.value


_tsa: TimeStampAuthority | None = None


def tsa() -> TimeStampAuthority:
    global _tsa
    if _tsa is None:
        p = _pki.pki()
        _tsa = TimeStampAuthority(p.tsa_key, p.tsa_cert, Counter(), chain=(p.ca_cert,))
    return _tsa


def test_one_input(data: bytes) -> None:
    authority = tsa()
    answer = authority.respond(data, _pki.NOW)
    response = TimeStampResp.load(answer, strict=True)
    status = response["status"]["status"].native
    fail_info = response["status"]["fail_info"].native
    if fail_info and "system_failure" in fail_info:
        raise AssertionError("client input made the TSA fail internally (systemFailure)")
    try:
        authority.parse_request(data)
    except Rejection:
        if status == "granted":
            raise AssertionError("a rejected request was granted") from None
        return
    if status != "granted":
        raise AssertionError(f"an accepted request was answered {status}")
    response.native  # noqa: B018


def seeds() -> list[bytes]:
    return [_pki.ts_request(), _pki.ts_request("sha256", nonce=False, cert_req=False)]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
