"""The RA UI in a real browser (headless Chromium through Selenium, one browser for the module):
every page in Chinese and English with a screenshot and axe-core finding no serious or critical
violation; an officer logs in and approves; a revocation needs a second officer; wrong
passwords lock the account; a POST without the CSRF token is refused; an auditor cannot
approve; a rejection without a reason keeps the page and says so beside the field; the
requester is not offered a decision on his own request; all four roles can be created; lists
page. Screenshots are kept under test-artifacts/ra/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from ca.records import Status
from ra.models import Role
from tests.ra.browser import (
    axe_violations,
    chromium,
    click,
    log_in,
    make_world,
    screenshot,
    serve,
    state,
    text,
    ui_pages,
)
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of


@pytest.fixture(scope="module")
def base_url(app: Flask) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture(scope="module")
def world(rig: RaRig) -> dict[str, Any]:
    return make_world(rig)


@pytest.fixture
def browser(driver: Any, base_url: str) -> Any:
    driver.get(base_url + "/login")
    driver.delete_all_cookies()
    return driver


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_renders_and_is_accessible(browser: Any, base_url: str,
                                              world: dict[str, Any], lang: str) -> None:
    """Every page, in each language: the page's language is declared, a screenshot is kept,
    and axe-core (WCAG 2.1 A/AA and best practice) finds nothing serious or critical."""
    who_now: object = object()
    problems: dict[str, list[dict[str, Any]]] = {}
    for who, name, path in ui_pages(world):
        if who != who_now:
            if who is None:
                browser.delete_all_cookies()
                browser.get(f"{base_url}/language/{lang}")
            else:
                log_in(browser, base_url, who, lang=lang)
            who_now = who
        browser.get(base_url + path)
        WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "main")))
        html_lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang")
        assert html_lang == ("zh-CN" if lang == "zh" else "en"), name
        screenshot(browser, f"pages/{lang}-{name}")
        found = axe_violations(browser)
        if found:
            problems[name] = found
    assert problems == {}


def test_axe_finds_what_it_should(browser: Any, base_url: str) -> None:
    """The checker itself: a control without a name and grey-on-grey text are reported."""
    browser.get(base_url + "/login")
    browser.execute_script(
        "const p = document.createElement('p'); p.textContent = '看不清';"
        "p.style.color = '#bbb'; p.style.background = '#ccc';"
        "document.getElementById('main').append(p, document.createElement('input'));"
        "document.querySelector('label[for=username]').remove();")
    rules = {v["id"] for v in axe_violations(browser)}
    assert {"color-contrast", "label"} <= rules


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
    assert state(browser) == "done"
    assert text(browser, "state") == "Done"
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
    assert state(browser) == "submitted"
    assert text(browser, "approvals").startswith("0 / 2")

    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/requests/{rid}")
    click(browser, "approve")
    assert state(browser) == "submitted"  # one approval is not enough
    assert text(browser, "approvals").startswith("1 / 2")
    screenshot(browser, "04-revocation-one-approval")
    assert rig.ca.status(sign).status is Status.GOOD
    # the same officer is not offered the second approval, and one forged is refused
    assert not browser.find_elements(By.ID, "approve")
    with pytest.raises(Exception, match="different officer"):
        rig.ra.approve(rig.actor("officer1"), rid, "again")
    assert rig.ca.status(sign).status is Status.GOOD

    log_in(browser, base_url, "officer2")
    browser.get(f"{base_url}/requests/{rid}")
    click(browser, "approve")
    assert state(browser) == "done"
    screenshot(browser, "05-revocation-done")
    assert rig.ca.status(sign).status is Status.REVOKED
    assert rig.ca.status(enc).status is Status.REVOKED


def test_wrong_passwords_lock_the_account(browser: Any, base_url: str, rig: RaRig) -> None:
    rig.ra.add_officer(None, "locktest", "Lock Test", PASSWORD, {Role.OFFICER},
                       person_id=person_of(300))
    for attempt in range(rig.ra.config.max_failed_logins):
        log_in(browser, base_url, "locktest", f"wrong password {attempt}")
        assert "locktest" not in browser.page_source or "whoami" not in browser.page_source
    refused = text(browser, "flash-error")
    assert refused.startswith("登录被拒绝")
    assert browser.find_element(By.ID, "username").get_attribute("value") == "locktest"
    screenshot(browser, "06-locked")
    # the right password no longer helps, and the answer is still the same
    log_in(browser, base_url, "locktest", PASSWORD)
    assert text(browser, "flash-error") == refused
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
    assert "令牌" in text(browser, "message")
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
    assert state(browser) == "submitted"
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
    rig.ra.approve(rig.actor("officer2"), new_enrollment(rig)[0]["request_id"], "ok")
    browser.get(f"{base_url}/audit")
    audit = text(browser, "audit")
    assert "ra.access" in audit and "已拒绝" in audit  # newest first
    # filtered by action in the form: the approvals
    browser.find_element(By.ID, "action").send_keys("ra.request")
    click(browser, "filter")
    actions = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#audit td code")}
    assert "ra.request.approve" in actions and all(a.startswith("ra.request.")
                                                   for a in actions)
    screenshot(browser, "09-audit-view")


def _below(browser: Any, field_id: str, error_id: str) -> bool:
    """The error is shown right under its field (the GOV.UK pattern), not elsewhere."""
    field = browser.find_element(By.ID, field_id).rect
    error = browser.find_element(By.ID, error_id).rect
    return bool(0 <= error["y"] - (field["y"] + field["height"]) < 40
                and abs(error["x"] - field["x"]) < 40)


def test_rejection_without_a_reason_keeps_the_page(browser: Any, base_url: str,
                                                   rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/requests/{rid}")
    click(browser, "reject")
    # still the request page, with the summary at the top and the message at the field
    assert text(browser, "request-id") == rid
    assert "请填写拒绝理由" in text(browser, "error-summary")
    assert "请填写拒绝理由" in text(browser, "reason-error")
    assert browser.find_element(By.ID, "reason").get_attribute("aria-invalid") == "true"
    assert _below(browser, "reason", "reason-error")
    # the summary has the focus, so a screen reader starts there
    assert browser.switch_to.active_element.get_attribute("id") == "error-summary"
    screenshot(browser, "10-reject-without-reason")
    assert axe_violations(browser) == []
    assert rig.ra.request(rig.client, rid)["state"] == "submitted"
    # the summary's link takes the officer to the field; then a reason is accepted
    click_link = browser.find_element(By.CSS_SELECTOR, "#error-summary a[href='#reason']")
    click_link.click()
    browser.find_element(By.ID, "reason").send_keys("证件与本人不符")
    click(browser, "reject")
    assert state(browser) == "rejected"


def test_a_form_keeps_what_was_typed(browser: Any, base_url: str, rig: RaRig) -> None:
    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/revoke")
    browser.find_element(By.ID, "reason").send_keys("持卡人电话挂失")
    click(browser, "submit-revocation")
    assert "请输入卡号" in text(browser, "card_number-error")
    assert _below(browser, "card_number", "card_number-error")
    assert browser.find_element(By.ID, "reason").get_attribute("value") == "持卡人电话挂失"
    screenshot(browser, "11-revoke-form-error")


def test_the_requester_is_not_offered_a_decision(browser: Any, base_url: str,
                                                 rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    done = rig.ra.approve(rig.actor("officer2"), pending["request_id"], "ok")
    log_in(browser, base_url, "officer1")
    browser.get(f"{base_url}/revoke")
    browser.find_element(By.ID, "card_number").send_keys(done["card"]["card_number"])
    browser.find_element(By.ID, "reason").send_keys("持卡人报失")
    click(browser, "submit-revocation")
    rid = text(browser, "request-id")
    assert state(browser) == "submitted"
    assert not browser.find_elements(By.ID, "approve")  # his own request
    assert not browser.find_elements(By.ID, "reject")
    screenshot(browser, "12-own-request")
    log_in(browser, base_url, "officer2")
    browser.get(f"{base_url}/requests/{rid}")
    assert browser.find_elements(By.ID, "approve")  # another officer is offered it


def test_all_four_roles_can_be_created(browser: Any, base_url: str, rig: RaRig) -> None:
    log_in(browser, base_url, "admin")
    for n, role in enumerate(Role):
        browser.get(f"{base_url}/admin/officers")
        for field, value in (("username", f"web-{role.value}"),
                             ("display_name", f"网页{n}"), ("person_id", person_of(600 + n)),
                             ("password", PASSWORD)):
            browser.find_element(By.ID, field).send_keys(value)
        browser.find_element(By.ID, f"role-{role.value}").click()
        click(browser, "add-officer")
        assert text(browser, "flash-info")
        row = text(browser, f"officer-web-{role.value}")
        assert f"web-{role.value}" in row
    screenshot(browser, "13-four-roles")
    made = {o["username"]: o["roles"] for o in rig.ra.officers(rig.actor("admin"))}
    assert {made[f"web-{r.value}"] for r in Role} == {r.value for r in Role}


def test_lists_page(browser: Any, base_url: str, rig: RaRig) -> None:
    while len(rig.ra.requests_page(rig.actor("auditor"), limit=1000)[0]) <= 10:
        new_enrollment(rig)
    log_in(browser, base_url, "auditor")
    browser.get(f"{base_url}/?state=&size=10")
    first = [e.get_attribute("id") for e in browser.find_elements(By.CLASS_NAME,
                                                                    "request-link")]
    assert len(first) == 10 and "/ 1" not in text(browser, "page-status")
    click(browser, "page-next")
    second = [e.get_attribute("id") for e in browser.find_elements(By.CLASS_NAME,
                                                                     "request-link")]
    assert second and not set(first) & set(second)
    assert "第 2 /" in text(browser, "page-status")
    screenshot(browser, "14-page-two")
    click(browser, "page-prev")
    assert [e.get_attribute("id") for e in browser.find_elements(
        By.CLASS_NAME, "request-link")] == first
