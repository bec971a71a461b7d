"""A service's HTTPS calls to another service with its own TLS client certificate (mutual
TLS), e.g. the RA's calls to a KMC that asks for client certificates (``--tls-client-ca``).

The key may be encrypted at rest: its passphrase is read from a file by the command (through
sscard.secrets_input), never taken from argv, and handed to OpenSSL only to load the key. The
server's certificate is checked against the CA file given, and only against it: requests'
own CA settings (``verify``, ``REQUESTS_CA_BUNDLE``, certifi) do not add to it.

    tls = ClientTls(ca_file=Path("internal-ca.pem"), certificate=Path("ra-kmc.pem"),
                    key=Path("ra-kmc.key"), key_passphrase=passphrase)
    client = KmcClient(url, api_key, session=tls.session())
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from sscard.serving import ServeError, load_key_pair


@dataclass(frozen=True)
class ClientTls:
    """The CA certificates that the server's TLS certificate must chain to and, for mutual
    TLS, the client certificate and its key (``key_passphrase`` is kept out of ``repr``)."""

    ca_file: Path
    certificate: Path | None = None
    key: Path | None = None
    key_passphrase: bytes | None = field(default=None, repr=False)
    #: the option that gives the key's passphrase, named when the key needs one
    hint_option: str = "a passphrase file"

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.key is None):
            raise ServeError("a TLS client certificate and its key go together")

    def context(self) -> ssl.SSLContext:
        """The client-side context; a ``ServeError`` naming the file that cannot be used."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ServeError(f"TLS: cannot load the CA file {self.ca_file}: {exc}") from None
        if self.certificate is not None and self.key is not None:
            load_key_pair(context, self.certificate, self.key, self.key_passphrase,
                          self.hint_option)
        return context

    def session(self) -> requests.Session:
        """A requests session whose HTTPS connections all use this identity and trust."""
        session = requests.Session()
        session.mount("https://", _ContextAdapter(self.context()))
        return session


class _ContextAdapter(HTTPAdapter):
    """Every HTTPS connection through one SSLContext, whatever requests' ``verify`` says
    (which would otherwise load REQUESTS_CA_BUNDLE or certifi into the context as well)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest,
                                             verify: Any, cert: Any = None
                                             ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        return host, {"ssl_context": self._context}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # the context verifies the server (CERT_REQUIRED, the host name) and holds the client
        # certificate: nothing of requests' own settings is to be added to the connection
        return None
