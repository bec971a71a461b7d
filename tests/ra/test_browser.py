"""The RA UI in a real browser (headless Chromium through Selenium): an officer logs in and
approves; a revocation needs a second officer; wrong passwords lock the account; a POST
without the CSRF token is refused; an auditor cannot approve. Screenshots are kept under
test-artifacts/ra/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from ca.records import Status
from ra.models import Role
from ra.service import LOGIN_REFUSED
from tests.ra.browser import chromium, screenshot, serve
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of


@pytest.fixture(scope="module")
def base_url(app: Flask) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def browser(driver: Any, base_url: str) -> Any:
    driver.get(base_url + "/login")
    driver.delete_all_cookies()
    return driver


def log_in(browser: Any, base_url: str, user: str, password: str = PASSWORD) -> None:
    browser.delete_all_cookies()
    browser.get(base_url + "/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    click(browser, "login-button")


def text(browser: Any, element_id: str) -> str:
    """The element's text once the page has it (a page still being replaced is waited out)."""
    def read(driver: Any) -> str | None:
        try:
            return str(driver.find_element(By.ID, element_id).text)
        except (NoSuchElementException, StaleElementReferenceException):
            return None

    found = WebDriverWait(browser, 15).until(lambda d: read(d) is not None and read(d))
    return str(found)


def click(browser: Any, element_id: str) -> None:
    """Click something that loads a page, and wait until the new page replaced the old."""
    element = browser.find_element(By.ID, element_id)
    element.click()

    def replaced(_driver: Any) -> bool:
        try:
            element.is_enabled()
            return False
        except WebDriverException:  # stale, or "node does not belong to the document"
            return True

    WebDriverWait(browser, 15).until(replaced)


def test_officer_logs_in_and_approves(browser: Any, base_url: str, rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    log_in(browser, base_url, "officer1")
    assert "officer1" in text(browser, "whoami")
    assert rid in text(browser, f"open-{rid}")
    screenshot(browser, "01-queue")
    click(browser, f"open-{rid}")
    # the decoded CSR and the cardholder are on the page, in Chinese by default
    assert pending["cardholder"]["ssn"] in text(browser, "csr-subject")
    assert "社会保障号码" in text(browser, "cardholder")
    click(browser, "language")
    assert "Social security number" in text(browser, "cardholder")
    browser.find_element(By.ID, "reason").send_keys("identity documents checked")
    screenshot(browser, "02-request-detail")
    click(browser, "approve")
    assert text(browser, "state") == "done"
    screenshot(browser, "03-approved")
    info = rig.ra.request(rig.client, rid)
    assert info["decisions"][0]["officer"] == "officer1"
    assert rig.ca.status(int(info["card"]["sign_serial"], 16)).status is Status.GOOD


def test_revocation_needs_a_second_officer(browser: Any, base_url: str, rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    done = rig.ra.approve(rig.actor("officer2"), pending["request_id"], "ok")
    card_number = done["card"]["card_number"]
    sign, enc = int(done["card"]["sign_serial"], 16), int(done["card"]["enc_serial"], 16)

    log_in(browser, base_url, "operator")
    click(browser, "nav-revoke")
    browser.find_element(By.ID, "card_number").send_keys(card_number)
    browser.find_element(By.ID, "reason").send_keys("card reported lost")
    click(browser, "submit-revocation")
    rid = text(browser, "request-id")
    assert text(browser, "state") == "submitted"
    assert text(browser, "approvals").startswith("0 / 2")

    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/requests/{rid}")
    click(browser, "approve")
    assert text(browser, "state") == "submitted"  # one approval is not enough
    assert text(browser, "approvals").startswith("1 / 2")
    screenshot(browser, "04-revocation-one-approval")
    assert rig.ca.status(sign).status is Status.GOOD
    # the same officer cannot give the second approval
    click(browser, "approve")
    assert "different officer" in text(browser, "message")
    assert rig.ca.status(sign).status is Status.GOOD

    log_in(browser, base_url, "officer2")
    browser.get(f"{base_url}/requests/{rid}")
    click(browser, "approve")
    assert text(browser, "state") == "done"
    screenshot(browser, "05-revocation-done")
    assert rig.ca.status(sign).status is Status.REVOKED
    assert rig.ca.status(enc).status is Status.REVOKED


def test_wrong_passwords_lock_the_account(browser: Any, base_url: str, rig: RaRig) -> None:
    rig.ra.add_officer(None, "locktest", "Lock Test", PASSWORD, {Role.OFFICER},
                       person_id=person_of(300))
    for attempt in range(rig.ra.config.max_failed_logins):
        log_in(browser, base_url, "locktest", f"wrong password {attempt}")
        assert "locktest" not in browser.page_source or "whoami" not in browser.page_source
    assert text(browser, "flash-error") == LOGIN_REFUSED
    screenshot(browser, "06-locked")
    # the right password no longer helps, and the answer is still the same
    log_in(browser, base_url, "locktest", PASSWORD)
    assert text(browser, "flash-error") == LOGIN_REFUSED
    assert not browser.find_elements(By.ID, "whoami")
    # an administrator unlocks it in the UI; then the right password works
    log_in(browser, base_url, "admin")
    click(browser, "nav-officers")
    click(browser, "unlock-locktest")
    log_in(browser, base_url, "locktest", PASSWORD)
    assert "locktest" in text(browser, "whoami")


def test_post_without_csrf_token_is_refused(browser: Any, base_url: str, rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/requests/{rid}")
    # what a forged cross-site form looks like: the same fields, no token
    browser.execute_script(
        "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove());")
    click(browser, "approve")
    assert text(browser, "status-code") == "400"
    assert "令牌" in text(browser, "message") or "token" in text(browser, "message")
    screenshot(browser, "07-csrf-refused")
    assert rig.ra.request(rig.client, rid)["state"] == "submitted"
    # and a wrong token is no better
    browser.get(f"{base_url}/requests/{rid}")
    browser.execute_script(
        "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.value = 'forged');")
    click(browser, "approve")
    assert text(browser, "status-code") == "400"
    assert rig.ra.request(rig.client, rid)["state"] == "submitted"


def test_auditor_cannot_approve(browser: Any, base_url: str, rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    log_in(browser, base_url, "auditor")
    browser.get(f"{base_url}/requests/{rid}")
    assert text(browser, "state") == "submitted"
    assert not browser.find_elements(By.ID, "approve")  # no button for an auditor
    # a hand-made form with the auditor's own valid token is refused by role
    token = browser.execute_script(
        "return document.querySelector('input[name=csrf_token]').value;")
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        f"f.action = '/requests/{rid}/decide';"
        "for (const [k, v] of [['csrf_token', arguments[0]], ['action', 'approve']]) {"
        " const i = document.createElement('input'); i.type = 'hidden'; i.name = k;"
        " i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();", token)
    WebDriverWait(browser, 10).until(ec.url_contains("/decide"))
    assert text(browser, "status-code") == "403"
    screenshot(browser, "08-auditor-refused")
    assert rig.ra.request(rig.client, rid)["state"] == "submitted"
    # the auditor's own view: the audit log shows the refusal and the approvals
    browser.get(f"{base_url}/audit")
    audit = text(browser, "audit")
    assert "ra.access" in audit and "denied" in audit and "ra.request.approve" in audit
    screenshot(browser, "09-audit-view")
