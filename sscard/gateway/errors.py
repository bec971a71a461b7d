"""Gateway errors: each has a stable code (for programs), an HTTP status and a message; the
web layer answers them as RFC 9457 problem documents (``sscard.gateway.service``)."""

from __future__ import annotations


class GatewayError(Exception):
    """An error of the gateway. ``to_json`` is its shape inside a batch answer (one item)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


def unauthenticated(message: str) -> GatewayError:
    return GatewayError("UNAUTHENTICATED", message, 401)


def forbidden(message: str) -> GatewayError:
    return GatewayError("FORBIDDEN", message, 403)


def bad_request(message: str, code: str = "BAD_REQUEST") -> GatewayError:
    return GatewayError(code, message, 400)
