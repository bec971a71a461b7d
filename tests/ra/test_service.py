"""The RA library: log-in and lock-out, enrollment checks, dual control for revocation and key
recovery (through the KMC onto a new card), pre-authorised batches, certificate log-in with an
officer's card, the audit trail, and the schema on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ca.records import Status
from ra import store
from ra.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
)
from ra.models import Base, Role
from ra.service import (
    CERTIFICATE_LOGIN_REFUSED,
    LOGIN_REFUSED,
    CardInput,
    RegistrationAuthority,
)
from sscard.audit.log import AuditLog
from sscard.audit.verify import verify_log
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport
from sscard.crypto.envelopes import EnvelopedKey, unwrap
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.emulator.card import EmulatedCard
from sscard.emulator.sample import sample_card
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.issuance.cards import holder
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of


def csr_for(key: SoftwareKey, name: str, ssn: str) -> bytes:
    return bytes(CsrBuilder().subject(parse_name(f"CN={name},serialNumber={ssn},C=CN"))
                 .sign(key).dump())


def test_log_in_and_lock_out(rig: RaRig) -> None:
    rig.ra.add_officer(None, "lockme", "Lock Me", PASSWORD, {Role.OFFICER},
                       person_id=person_of(100))
    assert rig.ra.authenticate("lockme", PASSWORD).roles == {Role.OFFICER}
    for _ in range(rig.ra.config.max_failed_logins):
        with pytest.raises(AuthenticationFailed) as refused:
            rig.ra.authenticate("lockme", "not the password")
        assert str(refused.value) == LOGIN_REFUSED
    with pytest.raises(AuthenticationFailed):
        rig.ra.authenticate("lockme", PASSWORD)
    with pytest.raises(Forbidden):
        rig.ra.unlock_officer(rig.actor("officer1"), "lockme")
    rig.ra.unlock_officer(rig.actor("admin"), "lockme")
    assert rig.ra.authenticate("lockme", PASSWORD).name == "lockme"
    # an unknown user gets the same answer as a wrong password
    with pytest.raises(AuthenticationFailed) as refused:
        rig.ra.authenticate("nobody", PASSWORD)
    assert str(refused.value) == LOGIN_REFUSED
    # the password hash is argon2, not the password
    with rig.ra.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT password_hash FROM officers WHERE username='lockme'").scalar()
    assert str(stored).startswith("$argon2id$") and PASSWORD not in str(stored)


def test_officer_account_rules(rig: RaRig) -> None:
    with pytest.raises(BadRequest, match="at least 10"):
        rig.ra.add_officer(None, "shorty", "S", "short", {Role.OFFICER},
                           person_id=person_of(101))
    with pytest.raises(Conflict, match="already exists"):
        rig.ra.add_officer(None, "officer1", "Again", PASSWORD, {Role.OFFICER},
                           person_id=person_of(102))
    with pytest.raises(Forbidden):
        rig.ra.add_officer(rig.actor("officer1"), "sneaky", "S", PASSWORD, {Role.ADMINISTRATOR},
                           person_id=person_of(103))


def test_enrollment_input_is_checked(rig: RaRig) -> None:
    key = SoftwareKey.generate("sm2")
    who = holder(301)
    card = CardInput(secrets.token_hex(16), "C00000301")
    good = csr_for(key, who.name, who.ssn)
    with pytest.raises(BadRequest, match="certificate request rejected"):
        rig.ra.submit_enrollment(rig.client, who, card, b"\x30\x03\x02\x01\x00")
    tampered = bytearray(good)
    tampered[-5] ^= 1
    with pytest.raises(BadRequest, match="certificate request rejected"):
        rig.ra.submit_enrollment(rig.client, who, card, bytes(tampered))
    with pytest.raises(BadRequest, match="not the cardholder's social security number"):
        rig.ra.submit_enrollment(rig.client, who, card, csr_for(key, who.name, holder(302).ssn))
    with pytest.raises(BadRequest, match="SM2"):
        rig.ra.submit_enrollment(rig.client, who, card, csr_for(
            SoftwareKey.generate("ec-p256"), who.name, who.ssn))
    with pytest.raises(BadRequest, match="cardholder data"):
        rig.ra.submit_enrollment(rig.client, type(who)(**{**who.__dict__, "sex": "7"}), card,
                                 good)
    with pytest.raises(BadRequest, match="32 hex"):
        rig.ra.submit_enrollment(rig.client, who, CardInput("XYZ", "C00000301"), good)
    with pytest.raises(Forbidden):
        rig.ra.submit_enrollment(rig.actor("auditor"), who, card, good)
    assert rig.ra.search_cardholders(rig.actor("auditor"), who.ssn) == []  # nothing stored
    first = rig.ra.submit_enrollment(rig.client, who, card, good)
    # the same card and key again (a new CSR: SM2 signatures differ) -> the same request
    again = rig.ra.submit_enrollment(rig.client, who, card, csr_for(key, who.name, who.ssn))
    assert again["request_id"] == first["request_id"]
    # another key for the same card is refused
    with pytest.raises(Conflict, match="already registered"):
        rig.ra.submit_enrollment(rig.client, who, card, csr_for(
            SoftwareKey.generate("sm2"), who.name, who.ssn))
    # the same person with different data is refused
    with pytest.raises(Conflict, match="different name"):
        rig.ra.submit_enrollment(rig.client, type(who)(**{**who.__dict__, "name": "王五"}),
                                 CardInput(secrets.token_hex(16), "C00000399"),
                                 csr_for(SoftwareKey.generate("sm2"), "王五", who.ssn))


def test_requester_cannot_approve_and_reject_needs_reason(rig: RaRig) -> None:
    key = SoftwareKey.generate("sm2")
    who = holder(311)
    req = rig.ra.submit_enrollment(rig.actor("officer1"), who,
                                   CardInput(secrets.token_hex(16), "C00000311"),
                                   csr_for(key, who.name, who.ssn))
    with pytest.raises(Forbidden, match="own request"):
        rig.ra.approve(rig.actor("officer1"), req["request_id"])
    with pytest.raises(BadRequest, match="needs a reason"):
        rig.ra.reject(rig.actor("officer2"), req["request_id"], " ")
    out = rig.ra.reject(rig.actor("officer2"), req["request_id"], "photo does not match")
    assert out["state"] == "rejected" and out["card"]["sign_serial"] is None
    with pytest.raises(Forbidden, match="rejected"):
        rig.ra.approve(rig.actor("officer2"), req["request_id"])
    with pytest.raises(NotFound):
        rig.ra.approve(rig.actor("officer2"), "rq-nonexistent")


def test_batch_rules(rig: RaRig) -> None:
    rig.ra.authorise_batch(rig.actor("officer2"), "tiny", 1, station="station-1")
    with pytest.raises(Conflict):
        rig.ra.authorise_batch(rig.actor("officer2"), "tiny", 5, station="station-1")
    with pytest.raises(Forbidden):
        rig.ra.authorise_batch(rig.actor("operator"), "mine", 5, station="station-1")
    done, _ = new_enrollment(rig, batch="tiny")
    assert done["state"] == "done"
    assert done["decisions"][0]["officer"] == "officer2"
    with pytest.raises(Forbidden, match="used up"):
        new_enrollment(rig, batch="tiny")
    with pytest.raises(Forbidden, match="no such"):
        new_enrollment(rig, batch="never authorised")


def test_revocation_dual_control(rig: RaRig) -> None:
    pending, _ = new_enrollment(rig)
    issued = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    serial = issued["card"]["sign_serial"]
    with pytest.raises(BadRequest, match="either"):
        rig.ra.submit_revocation(rig.actor("operator"))
    with pytest.raises(NotFound, match="never issued"):
        rig.ra.submit_revocation(rig.actor("operator"), serial="abcdef")
    with pytest.raises(BadRequest, match="hexadecimal"):
        rig.ra.submit_revocation(rig.actor("operator"), serial="xyz")
    rev = rig.ra.submit_revocation(rig.actor("operator"), serial=serial, reason="keyCompromise")
    one = rig.ra.approve(rig.actor("officer1"), rev["request_id"])
    assert one["state"] == "submitted"
    assert rig.ca.status(int(serial, 16)).status is Status.GOOD
    two = rig.ra.approve(rig.actor("officer2"), rev["request_id"])
    assert two["state"] == "done"
    assert rig.ca.status(int(serial, 16)).status is Status.REVOKED
    enc = int(issued["card"]["enc_serial"], 16)
    assert rig.ca.status(enc).status is Status.GOOD  # by serial: only that certificate
    with pytest.raises(Conflict, match="already revoked"):
        rig.ra.submit_revocation(rig.actor("operator"), serial=serial)
    found = rig.ra.search_certificates(rig.actor("auditor"), serial)
    assert {(c["use"], c["status"]) for c in found} == {("sign", "revoked"), ("enc", "good")}


def test_key_recovery_onto_a_new_card_needs_two_officers(rig: RaRig) -> None:
    pending, _ = new_enrollment(rig)
    issued = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    old_blob = base64.b64decode(issued["enveloped_key_blob"])
    new_card = SM2PrivateKey.generate()  # the replacement card's signing key
    with pytest.raises(BadRequest, match="reason"):
        rig.ra.submit_key_recovery(rig.actor("operator"), issued["card"]["enc_serial"],
                                   new_card.public_key().spki_der(), "")
    req = rig.ra.submit_key_recovery(rig.actor("operator"), issued["card"]["enc_serial"],
                                     new_card.public_key().spki_der(), "card lost, reissued")
    assert rig.ra.approve(rig.actor("officer1"), req["request_id"])["state"] == "submitted"
    with pytest.raises(Forbidden, match="different officer"):
        rig.ra.approve(rig.actor("officer1"), req["request_id"])
    done = rig.ra.approve(rig.actor("officer2"), req["request_id"])
    assert done["state"] == "done"
    # the KMC saw the same two officers
    kmc_events = rig.kmc.events(rig.kmc.authenticate(rig.kmc.add_caller(
        f"aud-{secrets.token_hex(3)}", "auditor")), "recovery.approve")
    assert {e["actor"] for e in kmc_events} >= {"officer1", "officer2"}
    # the recovered key, wrapped for the new card, is the escrowed one
    recovered = unwrap(EnvelopedKey.from_blob(base64.b64decode(
        done["enveloped_key_blob"])).to_der(), new_card)
    assert EnvelopedKey.from_blob(old_blob).public_point == \
        recovered.public_key().point


def test_certificate_login_with_the_officers_card(rig: RaRig) -> None:
    card = EmulatedCard(sample_card())
    with CardClient(InProcessTransport(card)) as client:
        from sscard.card.auth import KeyServiceAuthenticator
        from sscard.emulator import testkeys

        auth = KeyServiceAuthenticator({int(k): testkeys.provincial_test_key(
            k, "639900", testkeys.CardAlgorithm.SM4) for k in testkeys.KeyId})
        client.external_authenticate(0x0B, auth)
        client.generate_signing_key()
        key = CardKey(client, lambda: "123456")
        csr = CsrBuilder().subject(parse_name(
            f"CN=officer-card,serialNumber={person_of(104)},O=人社厅,C=CN")).sign(key)
        cert = rig.ca.issue_from_csr(csr.dump(), "ra-officer")
        rig.ra.add_officer(None, "cardofficer", "Card Officer", PASSWORD, {Role.OFFICER},
                           person_id=person_of(104))
        rig.ra.set_officer_certificate(rig.actor("admin"), "cardofficer", cert.der)
        challenge = rig.ra.new_login_challenge()
        actor = rig.ra.authenticate_certificate("cardofficer", challenge, key.sign(challenge))
        assert actor.name == "cardofficer" and Role.OFFICER in actor.roles
        # every refusal has one answer (no account enumeration); the audit log has the reason
        def refused(username: str, challenge: bytes, signature: bytes, reason: str) -> None:
            with pytest.raises(AuthenticationFailed) as exc:
                rig.ra.authenticate_certificate(username, challenge, signature)
            assert str(exc.value) == CERTIFICATE_LOGIN_REFUSED
            last = [r.record for r in rig.audit.records() if r.record.action == "ra.login"
                    and r.record.object == username][-1]
            assert last.outcome == "denied" and str(last.details["reason"]).startswith(reason)

        # a signature over another challenge, or by another key, is refused
        refused("cardofficer", rig.ra.new_login_challenge(), key.sign(challenge),
                "bad signature")
        challenge = rig.ra.new_login_challenge()
        refused("cardofficer", challenge, SoftwareKey.generate("sm2").sign(challenge),
                "bad signature")
        challenge = rig.ra.new_login_challenge()
        refused("officer1", challenge, key.sign(challenge), "no enabled officer")
        challenge = rig.ra.new_login_challenge()
        refused("nobody-at-all", challenge, key.sign(challenge), "no enabled officer")
        # a revoked officer certificate no longer logs in
        rig.ca.revoke(cert.serial, "affiliationChanged")
        challenge = rig.ra.new_login_challenge()
        refused("cardofficer", challenge, key.sign(challenge), "certificate revoked")


def test_every_action_is_in_a_valid_audit_log(rig: RaRig) -> None:
    pending, _ = new_enrollment(rig)
    rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    records = [r.record for r in rig.audit.records()]
    actions = {(r.action, r.outcome) for r in records}
    assert ("ra.enrollment.submit", "success") in actions
    assert ("ra.request.approve", "success") in actions
    assert ("ra.enrollment.issue", "success") in actions
    assert not any(PASSWORD in str(r.details) for r in records)
    assert verify_log(rig.audit.engine).intact


def test_audit_unavailable_means_no_action(rig: RaRig, tmp_path: Path) -> None:
    """If the audit log cannot take the record, the approval does not happen."""
    pending, _ = new_enrollment(rig)
    broken = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}")
    ra = RegistrationAuthority(rig.ra.engine, broken, rig.ra.ca, rig.ra.kmc)
    (tmp_path / "audit.db").chmod(0o400)
    broken.engine.dispose()
    import os

    if os.geteuid() == 0:
        # root ignores file modes: make the database unusable instead
        (tmp_path / "audit.db").write_bytes(b"not a database")
    from sscard.audit.errors import AuditError

    with pytest.raises(AuditError):
        ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    assert rig.ra.request(rig.client, pending["request_id"])["state"] == "submitted"


def test_models_match_the_migrations(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'ra.db'}")
    store.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_on_postgresql(rig: RaRig, pg_url: str) -> None:  # noqa: F811
    ra = RegistrationAuthority.open(pg_url, rig.audit, rig.ra.ca, rig.ra.kmc)
    try:
        store.upgrade(ra.engine)  # idempotent
        ra.add_officer(None, "pgofficer", "PG", PASSWORD, {Role.OFFICER},
                       person_id=person_of(105))
        ra.add_officer(None, "pgofficer2", "PG2", PASSWORD, {Role.OFFICER},
                       person_id=person_of(106))
        token = ra.add_api_client(None, "pg-station")
        client = ra.authenticate_client(token)
        key = SoftwareKey.generate("sm2")
        who = holder(321)
        req = ra.submit_enrollment(client, who, CardInput(secrets.token_hex(16), "P00000321"),
                                   csr_for(key, who.name, who.ssn))
        officer = ra.authenticate("pgofficer", PASSWORD)
        done = ra.approve(officer, req["request_id"], "ok")
        assert done["state"] == "done" and done["card"]["enc_serial"]
        with pytest.raises(Forbidden, match="different officer"):
            rev = ra.submit_revocation(ra.authenticate("pgofficer2", PASSWORD),
                                       card_number="P00000321")
            ra.approve(officer, rev["request_id"])
            ra.approve(officer, rev["request_id"])
    finally:
        ra.close()


def test_renewal_replaces_the_signing_certificate(rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    issued = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    number = issued["card"]["card_number"]
    who = issued["cardholder"]
    new_key = SoftwareKey.generate("sm2")
    with pytest.raises(Conflict, match="only an issued card"):
        rig.ra.submit_renewal(rig.actor("operator"), number, csr_for(new_key, who["name"],
                                                                     who["ssn"]))
    rig.ra.confirm_personalised(rig.client, pending["request_id"])
    with pytest.raises(BadRequest, match="social security number"):
        rig.ra.submit_renewal(rig.actor("operator"), number,
                              csr_for(new_key, who["name"], holder(999).ssn))
    with pytest.raises(NotFound):
        rig.ra.submit_renewal(rig.actor("operator"), "NOSUCH", b"")
    req = rig.ra.submit_renewal(rig.actor("operator"), number,
                                csr_for(new_key, who["name"], who["ssn"]), "key renewal")
    done = rig.ra.approve(rig.actor("officer2"), req["request_id"], "ok")
    assert done["state"] == "done"
    old, new = int(issued["card"]["sign_serial"], 16), int(done["card"]["sign_serial"], 16)
    assert old != new
    assert rig.ca.status(old).status is Status.REVOKED
    assert rig.ca.status(old).reason.name == "superseded"
    assert rig.ca.status(new).status is Status.GOOD
    assert rig.ca.status(int(issued["card"]["enc_serial"], 16)).status is Status.GOOD
