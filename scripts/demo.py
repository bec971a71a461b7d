"""The main job on the embedded default (`make demo`).

Walks the whole flow in one process with a fresh data directory (./demo-data, or the directory
named by $SSCARD_DEMO_HOME): keys of every algorithm; the CA (SM2 root and issuing CA); the KMC
key ceremony (M-of-N custodian shares) and unsealing; the RA and its officers; the gateway and
a business system's credentials from our CA; a blank emulated card personalised with dual
certificates; signing and verifying at the gateway; encrypting to the cardholder and decrypting
on the card; cardholder authentication; revocation under dual control, seen in OCSP and in the
gateway's verdicts. The services (CA OCSP/CRL/TSA, KMC, RA, gateway) answer real HTTP on
127.0.0.1 ports chosen at start (see scripts/allinone.py for why); all stop before exit.

Exit status 0 when every step behaved as described; 1 (with the step named) otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import allinone
import requests
from allinone import CARD_NUMBER, PIN, card_in_reader, holder_zhang_san
from asn1crypto import ocsp, x509

from sscard.card.keyhandle import CardKey
from sscard.cms import enveloped, signed
from sscard.crypto.algorithms import KeyAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.keys.software import SoftwareKey
from sscard.x509.names import format_name
from sscard.x509.values import RevocationReason
from sscard.x509.verify import verify_certificate_signature, verify_signature


class DemoFailure(Exception):
    """A step did not behave as the demo says it does."""


_step = 0
_title = "start"


def step(title: str) -> None:
    global _step, _title
    _step += 1
    _title = title
    print(f"\n== {_step}. {title}", flush=True)


def say(line: str) -> None:
    print("   " + line, flush=True)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)


def ocsp_status(url: str, cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, Any]:
    """Ask the OCSP responder about ``cert`` (RFC 6960 over POST); check the answer's signature
    and that the responder's certificate comes from the issuing CA."""
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": issuer.subject.sha1,
        "issuer_key_hash": issuer.public_key.sha1,
        "serial_number": cert.serial_number}}]}})
    answer = requests.post(url, data=request.dump(), timeout=10,
                           headers={"Content-Type": "application/ocsp-request"})
    answer.raise_for_status()
    response = ocsp.OCSPResponse.load(answer.content)
    expect(response["response_status"].native == "successful",
           f"OCSP answered {response['response_status'].native}")
    basic = response["response_bytes"]["response"].parsed
    responder = basic["certs"][0]
    verify_signature(PublicKey.from_spki(responder.public_key.dump()),
                     basic["tbs_response_data"].dump(), basic["signature"].native,
                     basic["signature_algorithm"])
    verify_certificate_signature(responder, issuer)
    status = basic["tbs_response_data"]["responses"][0]["cert_status"]
    out: dict[str, Any] = {"status": status.name, "responder": format_name(responder.subject)}
    if status.name == "revoked":
        out["time"] = status.chosen["revocation_time"].native
        out["reason"] = RevocationReason.from_asn1(
            status.chosen["revocation_reason"].native).name
    return out


def reasons_text(report: dict[str, Any]) -> str:
    reasons = report.get("reasons") or []
    return "; ".join(f"{r['code']}: {r['message']}" for r in reasons) or "none"


def main() -> int:
    started = time.monotonic()
    home = Path(os.environ.get("SSCARD_DEMO_HOME", "demo-data"))
    if home.exists():
        shutil.rmtree(home)
    print("sscard-pki demo: the whole system in one process, on the embedded default "
          "(SQLite, software keys, an emulated card)")
    servers = allinone.Servers.bind()
    system = None
    try:
        system = run(home, servers)
    except DemoFailure as exc:
        print(f"\nDEMO FAILED at step {_step} ({_title}): {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # anything unexpected: the details for whoever debugs it, then the one-line verdict
        traceback.print_exc()
        print(f"\nDEMO FAILED at step {_step} ({_title}): {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        if system is not None:
            system.close()
        else:
            servers.stop()
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s: every step behaved as "
          f"described. Data in {home.resolve()}")
    print(f"The sscard command is {allinone.sscard_command()} (not on PATH: `source "
          f"{allinone.sscard_command().parent / 'activate'}` or call it by that path); "
          "`make serve` keeps the system running for you to try.")
    return 0


def run(home: Path, servers: allinone.Servers) -> allinone.System:
    step(f"Initialise the data directory {home}")
    passphrase = allinone.init_data_directory(home)
    say(f"software keys are encrypted PKCS#8 under a generated passphrase in "
        f"{home / 'secrets' / 'key-passphrase'} (mode 0600)")
    say("services listening on 127.0.0.1: " + ", ".join(
        f"{name} :{port}" for name, port in servers.ports().items()))

    step("Keys of every algorithm (encrypted PKCS#8 that `openssl pkey` reads)")
    for alg in KeyAlgorithm:
        key = SoftwareKey.generate(alg)
        path = home / "keys" / f"{alg.value}.pem"
        path.parent.mkdir(exist_ok=True)
        key.store(path, passphrase)
        reloaded = SoftwareKey.load(path, passphrase)
        reloaded.public_key().verify(key.sign(b"demo"), b"demo")
        say(f"{alg.value:8} -> {path}: stored, reloaded, signature verifies")

    step("The CA: an SM2 root CA and an issuing CA")
    ca = allinone.init_ca(home, passphrase, servers["ca"].url)
    root = ca.chain()[-1]
    say(f"root CA    {format_name(root.subject)} (self-signed, SM2-with-SM3)")
    say(f"issuing CA {format_name(ca.certificate.subject)} (signed by the root)")
    say(f"certificates name OCSP {servers['ca'].url}/ocsp and CRL {servers['ca'].url}/crl/...")
    ca.close()

    step("The KMC: key ceremony with M-of-N custodians, then unseal")
    result = allinone.run_key_ceremony(home)
    say(f"ceremony {result.ceremony_id}: storage key {result.storage_key_id} (AES-256-GCM), "
        f"sealed under a secret split {allinone.THRESHOLD}-of-{len(allinone.CUSTODIANS)}")
    for name, path in result.share_files.items():
        say(f"custodian {name}: share written to {path} (encrypted under their passphrase)")
    from keymgmt import ceremony
    from keymgmt.errors import KmcError
    from sscard.audit import AuditLog

    try:
        ceremony.unseal_from_files(home, allinone.share_files(home, ["zhang"]),
                                   audit=AuditLog.at_home(home))
        raise DemoFailure("the KMC unsealed with a single share")
    except KmcError as exc:
        say(f"unseal with zhang's share alone is refused: {exc}")
    say("unsealed with the shares of zhang and wang (any 2 of the 3 will do)")

    step("Start the services: CA (OCSP, CRL, TSA), KMC, RA, gateway")
    # the RA's officers and the gateway's credentials are set up through the opened system
    system = open_initial_system(home, servers, passphrase)
    for name in allinone.SERVICES:
        say(f"{name:8} {system.url(name)}")
    crl = requests.get(f"{system.url('ca')}/crl/{system.ca.name}.crl", timeout=10)
    expect(crl.status_code == 200, f"CRL download answered {crl.status_code}")
    say(f"CRL of the issuing CA downloaded over HTTP ({len(crl.content)} bytes)")
    kmc_health = requests.get(f"{system.url('kmc')}/health", timeout=10).json()
    expect(kmc_health.get("sealed") is False, f"KMC health: {kmc_health}")
    say(f"KMC health: {kmc_health}")

    step("The RA: officers (dual control needs several)")
    for username, (display, roles) in allinone.OFFICERS.items():
        say(f"{username:8} {display}: {', '.join(sorted(r.value for r in roles))}")
    say(f"passwords generated into {home / 'secrets' / 'officers'}/ (0600), never printed")
    say("the card-issuing station's enrollment API token: "
        f"{home / 'secrets' / 'ra-station.token'} (0600)")

    step("The gateway and a business system, with credentials from our CA")
    gw_cert = system.gateway.keys[allinone.GATEWAY_KEY_ID].certificate
    say(f"gateway signing key '{allinone.GATEWAY_KEY_ID}': {format_name(gw_cert.subject)}, "
        f"serial {gw_cert.serial_number:x}")
    say(f"business system '{allinone.SYSTEM_NAME}': {format_name(system.system_cert.subject)}, "
        f"serial {system.system_cert.serial_number:x} (signs its requests with its SM2 key)")
    gateway = GatewayClient(system.url("gateway"), key=system.system_key,
                            certificate=system.system_cert)

    step("Personalise a blank emulated card with dual certificates")
    card_path = home / "card" / "card.json"
    holder = holder_zhang_san()
    say(f"blank generation-3 card in the reader; holder {holder.name}, social security "
        f"number {holder.ssn}, card number {CARD_NUMBER}")
    outcome = allinone.personalise_card(system, card_path, say)
    expect(outcome.status == "done", f"personalisation ended {outcome.status}")
    with card_in_reader(card_path) as (client, _psam):
        info = client.read_info()
        sign_cert = x509.Certificate.load(client.read_certificate("sign"))
        enc_cert = x509.Certificate.load(client.read_certificate("enc"))
    expect(info.holder == holder and info.card.card_number == CARD_NUMBER,
           "the card data read back differs from the order")
    say(f"read back: {info.holder.name} {info.holder.ssn}, card {info.card.card_number}")
    say(f"signing certificate    serial {outcome.sign_serial}: key generated on the card")
    say(f"encryption certificate serial {outcome.enc_serial}: key escrowed by the KMC, "
        "imported as an ENVELOPEDKEYBLOB")
    say("both certificates read back equal to what the CA issued; the card signed a challenge "
        "and decrypted a message encrypted to its certificate")

    with card_in_reader(card_path) as (client, _psam):
        card_sign = CardKey(client, lambda: PIN)
        card_enc = CardKey(client, lambda: PIN, which="enc")
        chain = system.ca.chain()[:-1]

        step("Sign a document at the gateway and verify it")
        document = "参保人员社会保险缴费证明 / proof of contributions, 2026".encode()
        sealed = gateway.sign(document, allinone.GATEWAY_KEY_ID, detached=True,
                              timestamp=True)
        say(f"gateway signed with '{allinone.GATEWAY_KEY_ID}' and had the CA's TSA time-stamp "
            f"it: CMS SignedData ({len(sealed)} bytes, detached, RFC 3161 token inside)")
        report = gateway.verify(sealed, document)
        expect(report["valid"] is True and report["timestamp_time"] is not None,
               f"gateway signature not valid: {reasons_text(report)}")
        say(f"verify: valid={report['valid']}, signer {report['signer']['subject']}, "
            f"time-stamped {report['timestamp_time']}, reasons: {reasons_text(report)}")
        report = gateway.verify(sealed, document + b" (altered)")
        expect(report["valid"] is False, "an altered document verified")
        say(f"verify an altered copy: valid={report['valid']}, reasons: {reasons_text(report)}")

        form = "就业登记申请表 / employment registration form: 张三".encode()
        card_signed = signed.sign(form, card_sign, sign_cert, chain=chain)
        report = gateway.verify(card_signed)
        expect(report["valid"] is True,
               f"the cardholder's signature is not valid: {reasons_text(report)}")
        signer = report["signer"]
        say(f"the cardholder signs a form on the card (after the PIN); gateway: "
            f"valid={report['valid']}, signer {signer['common_name']} "
            f"(social security number {signer['social_insurance_number']})")

        step("Encrypt to the cardholder's encryption certificate, decrypt on the card")
        secret = "社保待遇核定结果 / benefit decision (confidential)".encode()
        envelope = gateway.encrypt(secret, [enc_cert])
        say(f"gateway: CMS EnvelopedData, SM2 key transport + SM4-CBC ({len(envelope)} bytes)")
        opened = enveloped.decrypt(envelope, card_enc, enc_cert)
        expect(opened.content == secret, "the card decrypted something else")
        say(f"the card opened it (PSO DECIPHER after the PIN): {opened.content.decode()}")

        step("Authenticate the cardholder")
        challenge = gateway.cardholder_challenge()
        say(f"gateway challenge {challenge['challenge_id']} (one-time, bound to "
            f"'{allinone.SYSTEM_NAME}')")
        signature = card_sign.sign(challenge["to_sign"])
        answer = gateway.cardholder_verify(challenge["challenge_id"], signature, sign_cert)
        expect(answer["authenticated"] is True, f"cardholder refused: {answer['reasons']}")
        who = answer["cardholder"]
        say(f"card signed it after the PIN; gateway checked signature, certificate path and "
            f"OCSP status: authenticated {who['common_name']} {who['social_insurance_number']}")
        try:
            gateway.cardholder_verify(challenge["challenge_id"], signature, sign_cert)
            raise DemoFailure("a replayed answer was accepted")
        except GatewayClientError as exc:
            expect(exc.code == "CHALLENGE_REPLAYED", f"replay refused with {exc.code}")
            say(f"the same answer sent again is refused: {exc}")

        step("Revoke the signing certificate through the RA (dual control)")
        issuing = system.ca.certificate
        ocsp_url = system.url("ca") + "/ocsp"
        before = ocsp_status(ocsp_url, sign_cert, issuing)
        expect(before["status"] == "good", f"OCSP before revocation: {before}")
        say(f"OCSP before: {before['status']} (signed by {before['responder']})")
        wang, li, zhao = (system.officer(n) for n in ("wang", "li", "zhao"))
        request = system.ra.submit_revocation(wang, serial=outcome.sign_serial,
                                              reason="keyCompromise",
                                              comment="card reported lost")
        say(f"wang files revocation request {request['request_id']} (card reported lost)")
        from ra.errors import Forbidden

        try:
            system.ra.approve(wang, request["request_id"])
            raise DemoFailure("the requester approved their own request")
        except Forbidden as exc:
            say(f"wang approving it too is refused: {exc}")
        state = system.ra.approve(li, request["request_id"], "loss report verified")["state"]
        say(f"li approves: {state} (revocation needs two approvers besides the requester)")
        state = system.ra.approve(zhao, request["request_id"], "second check")["state"]
        say(f"zhao approves: {state}; the CA revoked certificate {outcome.sign_serial}")
        after = ocsp_status(ocsp_url, sign_cert, issuing)
        expect(after["status"] == "revoked", f"OCSP after revocation: {after}")
        say(f"OCSP after: {after['status']} since {after['time']:%Y-%m-%d %H:%M:%S}Z, "
            f"reason {after['reason']}")
        status = gateway.certificate_status(sign_cert)
        expect(status["status"] == "revoked", f"gateway status: {status['status']}")
        say(f"gateway certificate status: {status['status']} ({status['revocation_reason']})")
        report = gateway.verify(card_signed)
        codes = [r["code"] for r in report["reasons"]]
        expect(report["valid"] is False and "REVOKED" in codes,
               f"the earlier signature after revocation: {report}")
        say(f"the earlier signed form now: valid={report['valid']}, reasons: "
            f"{reasons_text(report)}")
        answer = gateway.authenticate_cardholder(card_sign, sign_cert)
        expect(answer["authenticated"] is False, "a revoked card authenticated")
        say(f"cardholder authentication with the revoked card: authenticated="
            f"{answer['authenticated']} ({', '.join(r['code'] for r in answer['reasons'])})")

    step("The social security card up close (emulated, in-process): read, PIN, keys")
    from sscard.emulator.demo import card_demo

    for line in card_demo(home / "card-sample"):
        say(line)

    step("The audit log")
    size = system.audit.size()
    expect(size > 0, "the audit log is empty")
    say(f"{size} records in the hash-chained audit log {home / 'audit.sqlite'}: every issue, "
        "approval, revocation, escrow and gateway call above (`sscard audit verify` checks it)")
    return system


def open_initial_system(home: Path, servers: allinone.Servers,
                        passphrase: bytes) -> allinone.System:
    """First opening: the one-time set-up that needs the opened parts (officers, the station's
    token, the business credentials), then the system with every service attached."""
    from ca.authority import CertificateAuthority
    from ra.service import RegistrationAuthority
    from sscard.audit.log import AuditLog, default_url

    audit = AuditLog.open(default_url(home))
    ra = RegistrationAuthority.open(f"sqlite:///{home / 'ra.db'}", audit)
    try:
        allinone.add_officers(home, ra)
        allinone.add_station(home, ra)
    finally:
        ra.close()
    with CertificateAuthority.open(home, passphrase, audit=audit) as ca:
        allinone.issue_business_credentials(home, ca, passphrase)
        allinone.register_ra_principal(home, ca, passphrase)
    audit.engine.dispose()
    allinone.save_ports(home, servers.ports())
    return allinone.open_system(home, servers, say, present=("zhang", "wang"))


if __name__ == "__main__":
    sys.exit(main())
