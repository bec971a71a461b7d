"""Issue 12 finding 10 at the RA: a long or malformed user name made the audit write fail (500,
and the refusal unrecorded). The refusal is now the answer, and it is recorded."""

from __future__ import annotations

import secrets

import pytest

from ra.errors import AuthenticationFailed
from ra.web import WebConfig, create_app
from tests.ra.rig import RaRig


@pytest.mark.parametrize("username", ["z" * 5000, "zhao\n2026-12-06 admin ok"])
def test_hostile_user_names_are_refused_and_recorded(rig: RaRig, username: str) -> None:
    before = rig.audit.size()
    with pytest.raises(AuthenticationFailed):
        rig.ra.authenticate(username, "wrong password")
    records = [r.record for r in rig.audit.records(before + 1)]
    # the RA records its refusal as what it is: denied, with the reason
    assert [r.outcome for r in records] == ["attempt", "denied"]
    # one reason for an unknown user and a wrong password, in the log as in the answer
    assert records[-1].details["reason"] == "wrong password"
    assert "\n" not in records[-1].actor and len(records[-1].actor) <= 256


def test_the_login_page_answers_401_not_500(rig: RaRig) -> None:
    client = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False)
                        ).test_client()
    client.get("/login")
    with client.session_transaction() as session:
        token = session.get("csrf", "")
    answer = client.post("/login", data={"username": "y" * 100_000, "password": "x",
                                         "csrf_token": token})
    assert answer.status_code in (400, 401), answer.status_code
