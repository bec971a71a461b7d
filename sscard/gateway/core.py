"""The gateway's operations as plain functions of (caller, JSON request) -> JSON answer.

The Flask layer (``service``) only authenticates, parses and translates; everything that
decides lives here, so it can be tested and benchmarked without HTTP.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from asn1crypto import x509

from sscard.clock import Clock, system_clock
from sscard.cms import (
    CmsBuildError,
    CmsError,
    CmsParseError,
    ContentCipher,
    EnvelopeDecryptionError,
    Flavour,
    NoMatchingRecipient,
    TimeStamper,
    TrustConfig,
    decrypt,
    encrypt,
    identify,
    sign,
)
from sscard.cms.revocation import RevocationFetch
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError, InvalidSignature
from sscard.fetch import AllowList, FetchError, FetchPolicy
from sscard.gateway.caller import Caller, CallerAuthenticator
from sscard.gateway.challenges import ChallengeStore, MemoryChallengeStore, new_challenge
from sscard.gateway.config import GatewayConfig, GatewayKey, fingerprint
from sscard.gateway.errors import GatewayError, bad_request, forbidden, unauthenticated
from sscard.gateway.profiles import (
    business_system_problems,
    cardholder_problems,
    recipient_problems,
)
from sscard.gateway.revocation import AnchoredVerifier, CrlFetcher, default_fetch_policy
from sscard.httpsig import ReplayStore, replay_store
from sscard.validation import Purpose, ReasonCode
from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_certificate

Json = Mapping[str, Any]


def b64_field(body: Json, name: str, required: bool = True) -> bytes | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"'{name}' is required (base64)")
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"'{name}' is not valid base64") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        return load_certificate(data)
    except X509ParseError as exc:
        raise bad_request(f"{what}: {exc}", "MALFORMED_INPUT") from None


def _flavour(body: Json) -> Flavour:
    name = body.get("content_types", "rfc5652")
    try:
        return Flavour(name)
    except ValueError:
        raise bad_request("'content_types' must be 'rfc5652' or 'gm'") from None


def _http_timestamp(url: str) -> Callable[[bytes], bytes]:
    """The configured TSA over HTTP: that URL only, no redirects, bounded time and size."""
    policy = FetchPolicy(AllowList([url]), timeout=10.0, max_bytes=256 * 1024,
                         max_requests=1, total_seconds=10.0)

    def fetch(request_der: bytes) -> bytes:
        try:
            return policy.fetcher().post(url, request_der, "application/timestamp-query",
                                         accept=("application/timestamp-reply",)).content
        except FetchError as exc:
            raise GatewayError("TIMESTAMP_UNAVAILABLE", str(exc), 502) from None
    return fetch


class Gateway:
    """One configured gateway: keys, policies, verifier, challenge store."""

    def __init__(self, config: GatewayConfig, challenges: ChallengeStore | None = None,
                 replays: ReplayStore | None = None, *, clock: Clock = system_clock) -> None:
        self.config = config
        #: what the gateway reads the time from (challenge expiry, request-signature dates);
        #: tests hand in a sscard.clock.FakeClock and advance it instead of sleeping
        self.clock = clock
        self.fetch_policy = default_fetch_policy(
            [*config.trust_anchors, *config.intermediates], config.crl_urls, config.fetch_allow)
        fetcher = CrlFetcher(config.crl_urls) if config.crl_urls else None
        self.verifier = AnchoredVerifier(TrustConfig(
            trust_anchors=config.trust_anchors,
            intermediates=config.intermediates,
            crls=config.crls,
            revocation_source=fetcher,
            revocation_fetch=(RevocationFetch(self.fetch_policy) if config.fetch_revocation
                              else None),
            cache_seconds=config.validation_cache_seconds,
        ))
        self.callers = CallerAuthenticator(self.verifier, config.request_signature_window,
                                           config.trusted_client_cert_header,
                                           replays if replays is not None else
                                           replay_store(config.database_url, clock),
                                           self.system_of, clock=clock)
        self._systems_by_print = {fp: name for name, policy in config.systems.items()
                                  for fp in policy.certificates}
        self._own_recipients = {fingerprint(config.keys[p.decryption_key].certificate)
                                for p in config.systems.values() if p.decryption_key}
        self.challenges = challenges or MemoryChallengeStore()
        fetch = config.timestamp_fetcher or (
            _http_timestamp(config.tsa_url) if config.tsa_url else None)
        self.timestamper = TimeStamper(fetch) if fetch else None

    # -- authorisation -------------------------------------------------------------------

    def system_of(self, der: bytes, cert: x509.Certificate) -> str:
        """The business system a caller's certificate is registered for: by its fingerprint
        and its business-system profile, never by a name it carries."""
        problems = business_system_problems(cert, self.config.caller_policies)
        if problems:
            raise unauthenticated("the caller's certificate is not a business-system "
                                  "certificate: " + "; ".join(problems))
        system = self._systems_by_print.get(fingerprint(der))
        if system is None:
            raise unauthenticated(f"the caller's certificate (SHA-256 {fingerprint(der)}) is "
                                  "not registered for any business system")
        return system

    def authorise(self, caller: Caller, operation: str) -> None:
        policy = self.config.systems[caller.system]
        if operation not in policy.operations:
            raise forbidden(f"system {caller.system!r} may not {operation}")

    def signing_key(self, caller: Caller, key_id: object) -> GatewayKey:
        if not isinstance(key_id, str) or not key_id:
            raise bad_request("'key' (the signing key id) is required")
        policy = self.config.systems[caller.system]
        if key_id not in policy.signing_keys:
            raise forbidden(f"system {caller.system!r} may not sign with key {key_id!r}")
        return self.config.keys[key_id]

    # -- operations ----------------------------------------------------------------------

    def _sign_one(self, key: GatewayKey, content: bytes, detached: bool, flavour: Flavour,
                  timestamp: bool) -> bytes:
        if timestamp and self.timestamper is None:
            raise bad_request("no time-stamp authority is configured", "TIMESTAMP_UNAVAILABLE")
        try:
            return sign(content, key.key, key.certificate, chain=key.chain, detached=detached,
                        flavour=flavour, timestamper=self.timestamper if timestamp else None,
                        check_key=False)
        except CmsBuildError as exc:
            raise GatewayError("SIGNING_FAILED", str(exc), 502) from None

    def sign(self, caller: Caller, body: Json) -> dict[str, Any]:
        key = self.signing_key(caller, body.get("key"))
        content = b64_field(body, "content")
        assert content is not None
        signed = self._sign_one(key, content, bool(body.get("detached", False)),
                                _flavour(body), bool(body.get("timestamp", False)))
        return {"signed": b64(signed)}

    def _items(self, body: Json) -> list[Json]:
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise bad_request("'items' must be a non-empty list")
        if len(items) > self.config.max_batch_items:
            raise GatewayError("BATCH_TOO_LARGE",
                               f"at most {self.config.max_batch_items} items per batch", 413)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad_request(f"items[{i}] must be an object")
        return items

    def sign_batch(self, caller: Caller, body: Json) -> dict[str, Any]:
        key = self.signing_key(caller, body.get("key"))
        items = self._items(body)
        flavour = _flavour(body)
        detached = bool(body.get("detached", False))
        timestamp = bool(body.get("timestamp", False))
        contents = []
        for i, item in enumerate(items):
            try:
                contents.append(b64_field(item, "content"))
            except GatewayError as exc:
                raise bad_request(f"items[{i}]: {exc.message}") from None
        return {"results": [{"signed": b64(self._sign_one(key, c or b"", detached, flavour,
                                                          timestamp))} for c in contents]}

    def _verify_one(self, body: Json) -> dict[str, Any]:
        signed = b64_field(body, "signed")
        content = b64_field(body, "content", required=False)
        assert signed is not None
        try:
            report = self.verifier.verify(signed, content)
        except CmsParseError as exc:
            raise bad_request(str(exc), "MALFORMED_INPUT") from None
        answer = report.to_json()
        if body.get("return_content") and report.content is not None:
            answer["content"] = b64(report.content)
        return answer

    def verify(self, caller: Caller, body: Json) -> dict[str, Any]:
        return self._verify_one(body)

    def verify_batch(self, caller: Caller, body: Json) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for item in self._items(body):
            try:
                results.append(self._verify_one(item))
            except GatewayError as exc:
                results.append({"valid": False, **exc.to_json()})
        return {"results": results}

    def encrypt(self, caller: Caller, body: Json) -> dict[str, Any]:
        content = b64_field(body, "content")
        assert content is not None
        raw = body.get("recipients")
        if not isinstance(raw, list) or not raw:
            raise bad_request("'recipients' must be a non-empty list of base64 certificates")
        recipients = []
        for i, item in enumerate(raw):
            der = b64_field({"r": item}, "r")
            assert der is not None
            cert = _certificate(der, f"recipients[{i}]")
            # an envelope for a revoked or foreign certificate would reach the wrong hands,
            # and one for a signing or CA certificate is not what its holder can open
            result = self.verifier.validate(cert, [], None, with_revocation=True)
            why = [f"{r.code.value}: {r.message}" for r in result.reasons]
            if fingerprint(der) not in self._own_recipients:
                why += recipient_problems(cert, self.config.recipient_policies)
            if why:
                raise GatewayError("RECIPIENT_NOT_VALID",
                                   f"recipients[{i}] ({identify(cert).subject}): "
                                   f"{'; '.join(why)}", 422)
            recipients.append(cert)
        cipher_name = body.get("cipher", "sm4_cbc")
        try:
            cipher = ContentCipher.parse(str(cipher_name))
            env = encrypt(content, recipients, cipher=cipher, flavour=_flavour(body),
                          authenticated=bool(body.get("authenticated", False)))
        except CmsBuildError as exc:
            raise bad_request(str(exc)) from None
        except CryptoError as exc:
            raise bad_request(f"a recipient certificate cannot be used: {exc}") from None
        return {"enveloped": b64(env)}

    def decrypt(self, caller: Caller, body: Json) -> dict[str, Any]:
        policy = self.config.systems[caller.system]
        if policy.decryption_key is None:
            raise forbidden(f"system {caller.system!r} has no decryption key at the gateway")
        key = self.config.keys[policy.decryption_key]
        data = b64_field(body, "enveloped")
        assert data is not None
        try:
            opened = decrypt(data, key.key, key.certificate)
        except CmsParseError as exc:
            raise bad_request(str(exc), "MALFORMED_INPUT") from None
        except NoMatchingRecipient as exc:
            raise GatewayError("NOT_ADDRESSED_TO_CALLER", str(exc), 422) from None
        except (EnvelopeDecryptionError, CmsError) as exc:
            raise GatewayError("DECRYPTION_FAILED", str(exc), 422) from None
        return {"content": b64(opened.content), "cipher": opened.cipher}

    def status(self, caller: Caller, body: Json) -> dict[str, Any]:
        cert_der = b64_field(body, "certificate")
        assert cert_der is not None
        cert = _certificate(cert_der, "certificate")
        chain = []
        for i, item in enumerate(body.get("chain") or []):
            der = b64_field({"c": item}, "c")
            assert der is not None
            chain.append(_certificate(der, f"chain[{i}]"))
        result = self.verifier.validate(cert, chain, None, with_revocation=True, use_cache=False)
        codes = result.codes
        if ReasonCode.REVOKED in codes:
            status = "revoked"
        elif ReasonCode.REVOCATION_UNKNOWN in codes:
            status = "unknown"
        elif result.valid:
            status = "good"
        else:
            status = "invalid"
        revoked = next((r for r in result.reasons if r.code is ReasonCode.REVOKED), None)
        return {
            "status": status,
            "valid": result.valid,
            "revocation_checked": result.revocation_checked,
            "revocation_time": revoked.revocation_time.isoformat()
            if revoked and revoked.revocation_time else None,
            "revocation_reason": revoked.revocation_reason if revoked else None,
            "reasons": [{"code": r.code.value, "message": r.message} for r in result.reasons],
            "subject": identify(cert).to_json(),
        }

    def new_challenge(self, caller: Caller, body: Json) -> dict[str, Any]:
        challenge = new_challenge(caller.system, self.config.challenge_seconds, self.clock())
        self.challenges.put(challenge)
        return challenge.to_json()

    def cardholder_verify(self, caller: Caller, body: Json,
                          now: datetime | None = None) -> dict[str, Any]:
        cid = body.get("challenge_id")
        if not isinstance(cid, str) or not cid:
            raise bad_request("'challenge_id' is required")
        signature = b64_field(body, "signature")
        cert_der = b64_field(body, "certificate")
        assert signature is not None and cert_der is not None
        cert = _certificate(cert_der, "certificate")
        # consumed here, whatever the outcome: a challenge is good for one answer
        challenge = self.challenges.take(cid, caller.system, now or self.clock())
        reasons: list[dict[str, str]] = []
        try:
            PublicKey.from_spki(cert.public_key.dump()).verify(signature, challenge.to_sign)
        except (InvalidSignature, CryptoError, ValueError):
            reasons.append({"code": "BAD_SIGNATURE",
                            "message": "the card's signature over the challenge does not verify "
                                       "with the certificate's key"})
        reasons.extend({"code": "NOT_A_CARDHOLDER", "message": problem} for problem in
                       cardholder_problems(cert, self.config.cardholder_policies))
        result = self.verifier.validate(cert, [], now, with_revocation=True,
                                        purpose=Purpose.SIGN, use_cache=False)
        reasons.extend({"code": r.code.value, "message": r.message} for r in result.reasons)
        return {
            "authenticated": not reasons,
            "cardholder": identify(cert).to_json(),
            "reasons": reasons,
        }
