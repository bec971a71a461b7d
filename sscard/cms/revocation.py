"""Revocation information for CMS verification, fetched only where the operator allows.

A signed message brings its own certificates, and those name the URLs (CRL distribution points,
OCSP responders) a verifier would fetch: whoever made them chooses where we connect. So the
URLs are fetched through :mod:`sscard.fetch` under an allow-list that comes from the operator:
by default the origins of the URLs that the *configured* certificates (trust anchors and
intermediates given to the verifier, never those in the message) name, plus any prefixes the
operator adds, plus an OCSP responder the operator names. No redirects, short timeouts, size
caps and a request budget per verification come with the fetcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

from asn1crypto import crl, ocsp, x509

from sscard.crypto.hashes import digest
from sscard.fetch import AllowList, FetchError, FetchPolicy, budgeted_fetcher
from sscard.x509.errors import X509Error
from sscard.x509.parse import load_crl

if TYPE_CHECKING:
    import requests

    from sscard.fetch import Fetcher

# RFC 6960 CertIDs name the issuer by hashes; our responder (ca.ocsp) and OpenSSL's accept
# SHA-256 as well as SHA-1, and SHA-256 needs no legacy exception
_CERT_ID_HASH = "sha256"


def urls_named_by(certificates: Iterable[x509.Certificate]) -> list[str]:
    """The CRL distribution point, OCSP and caIssuers URLs ``certificates`` name."""
    urls: list[str] = []
    for cert in certificates:
        urls.extend(dp.url for dp in cert.crl_distribution_points if dp.url)
        urls.extend(cert.ocsp_urls)
        aia = cert.authority_information_access_value
        for desc in aia or ():
            location = desc["access_location"]
            if desc["access_method"].native == "ca_issuers" and (
                    location.name == "uniform_resource_identifier"):
                urls.append(location.native)
    return urls


@dataclass(frozen=True)
class RevocationFetch:
    """Where a verifier may fetch revocation information from."""

    policy: FetchPolicy
    ocsp_responder: str | None = None
    """Ask this responder (named by the operator) instead of those the certificates name
    (about the certificates that declare an OCSP responder: the validator uses OCSP for those
    only)."""
    follow_certificates: bool = True
    """Fetch from the URLs the certificates name (under the allow-list)."""

    @classmethod
    def configure(cls, configured: Iterable[x509.Certificate], *,
                  allow: Iterable[str] = (), ocsp_responder: str | None = None,
                  follow_certificates: bool = True) -> RevocationFetch:
        """The allow-list: the origins of the URLs the ``configured`` certificates (the trust
        anchors and intermediates the operator gave) name, the ``allow`` prefixes and the
        ``ocsp_responder``. ``FetchRefused`` (a ValueError) for an unusable prefix."""
        named = AllowList.origins_of(urls_named_by(configured)).prefixes
        extra = [*allow, *([ocsp_responder] if ocsp_responder else [])]
        return cls(FetchPolicy(AllowList([*named, *extra])), ocsp_responder,
                   follow_certificates)


@dataclass
class Gathered:
    crls: list[crl.CertificateList] = field(default_factory=list)
    ocsp_responses: list[ocsp.OCSPResponse] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Each source that could not be used, with why (refused, unreachable, malformed)."""


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    key_bits = issuer.public_key["public_key"].contents[1:]  # BIT STRING without unused-bits
    return ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": _CERT_ID_HASH},
        "issuer_name_hash": digest(_CERT_ID_HASH, issuer.subject.dump()),
        "issuer_key_hash": digest(_CERT_ID_HASH, key_bits),
        "serial_number": cert.serial_number,
    }}]}}).dump()


def _ask_ocsp(fetcher: Fetcher, url: str, cert: x509.Certificate,
              issuer: x509.Certificate) -> ocsp.OCSPResponse:
    answer = fetcher.post(url, _ocsp_request(cert, issuer), "application/ocsp-request",
                          accept=["application/ocsp-response"])
    try:
        response = ocsp.OCSPResponse.load(answer.content, strict=True)
        status = response["response_status"].native
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an OCSP response: {exc}") from None
    if status != "successful":
        raise ValueError(f"the responder answered {status}")
    return response


def gather(path: Sequence[x509.Certificate], fetch: RevocationFetch,
           session: requests.Session | None = None) -> Gathered:
    """CRLs and OCSP responses for every certificate of ``path`` (trust anchor first) below
    the anchor: OCSP first, the CRL distribution points when no OCSP answer is had. Within a
    :func:`sscard.fetch.request_budget` for the same policy (and no ``session`` given), the
    fetches count against that budget."""
    fetcher = fetch.policy.fetcher(session) if session is not None else (
        budgeted_fetcher(fetch.policy))
    got = Gathered()
    for issuer, cert in pairwise(path):
        who = cert.subject.human_friendly
        if not cert.ocsp_urls:
            responders = []  # the validator takes OCSP only for certificates that declare it
        elif fetch.ocsp_responder:
            responders = [fetch.ocsp_responder]  # the operator's, instead of the declared one
        else:
            responders = list(cert.ocsp_urls) if fetch.follow_certificates else []
        answered = False
        for url in responders:
            try:
                got.ocsp_responses.append(_ask_ocsp(fetcher, url, cert, issuer))
                answered = True
                break
            except (FetchError, ValueError) as exc:
                got.failures.append(f"OCSP for {who} from {url}: {exc}")
        if answered or not fetch.follow_certificates:
            continue
        for dp in cert.crl_distribution_points:
            if not dp.url:
                continue
            try:
                got.crls.append(load_crl(fetcher.get(
                    dp.url, accept=["application/pkix-crl"]).content))
                break
            except (FetchError, X509Error) as exc:
                got.failures.append(f"CRL for {who} from {dp.url}: {exc}")
    return got
