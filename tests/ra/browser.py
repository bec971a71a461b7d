"""Headless Chromium (Debian chromium + chromium-driver) driven by Selenium, and the RA web app
served on a free loopback port in a thread; page helpers (log in, click and wait, read), a rig
with something on every page, and axe-core (vendored from npm under tests/ra/vendor, for the
tests only) injected into a page. Screenshots go to test-artifacts/ra/."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ra"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: axe-core (npm, MPL-2.0; licence beside it), the accessibility checker run inside the page
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required in CI)")
    pytest.skip(what)


def serve(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def chromium() -> Iterator[object]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        _missing("chromium and chromium-driver not installed (scripts/system-deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ra-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1280,900", "--lang=zh-CN"):
        options.add_argument(arg)
    # what a counter PC's browser asks for (headless Chromium would send en-US)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: object, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path


def log_in(browser: Any, base_url: str, user: str, password: str = PASSWORD,
           lang: str | None = None) -> None:
    browser.delete_all_cookies()
    if lang:
        browser.get(f"{base_url}/language/{lang}")
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


def state(browser: Any) -> str:
    """The request's state code (the page shows its name)."""
    text(browser, "state")
    return str(browser.find_element(By.ID, "state").get_attribute("data-state"))


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


def axe_violations(browser: Any, impacts: tuple[str, ...] = ("serious", "critical")
                   ) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA violations on the page of these impacts (rule, impact, where)."""
    browser.execute_script(AXE.read_text(encoding="utf-8"))
    browser.set_script_timeout(60)
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',"
        " 'wcag21aa', 'best-practice']}, resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact,"
        " help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))))"
        ".catch(e => done(JSON.stringify({error: String(e)})));")
    result = json.loads(found)
    if isinstance(result, dict):
        raise AssertionError(f"axe-core did not run: {result['error']}")
    return [v for v in result if v["impact"] in impacts]


def make_world(rig: RaRig) -> dict[str, Any]:
    """Something on every page: a pending enrollment, a finished one, a revocation filed by
    officer1, a batch, records in the audit log."""
    pending, _key = new_enrollment(rig)
    done, _key = new_enrollment(rig)
    finished = rig.ra.approve(rig.actor("officer2"), done["request_id"], "材料已核对")
    revocation = rig.ra.submit_revocation(rig.actor("officer1"),
                                          card_number=finished["card"]["card_number"],
                                          reason="keyCompromise", comment="持卡人报失")
    rig.ra.authorise_batch(rig.actor("officer2"), "district-7", 5, station="station-1")
    return {"pending": pending["request_id"], "done": done["request_id"],
            "revocation": revocation["request_id"], "ssn": finished["cardholder"]["ssn"],
            "card_number": finished["card"]["card_number"],
            "serial": finished["card"]["sign_serial"]}


def ui_pages(world: dict[str, Any]) -> Iterator[tuple[str | None, str, str]]:
    """(who, name, path) for every page of the UI; who None: not logged in."""
    yield None, "login", "/login"
    yield None, "login-certificate", "/login/certificate"
    for name, path in (("queue", "/"), ("all-requests", "/?state="),
                       ("enrollment", f"/requests/{world['pending']}"),
                       ("enrollment-done", f"/requests/{world['done']}"),
                       ("revocation", f"/requests/{world['revocation']}"),
                       ("search-cardholders", f"/search?q={world['ssn']}"),
                       ("search-certificates", f"/search?what=certificates&q={world['ssn']}"),
                       ("revoke", "/revoke"), ("recoveries", "/recoveries"),
                       ("batches", "/batches"), ("password", "/account/password")):
        yield "officer2", name, path
    yield "auditor", "audit", "/audit"
    yield "admin", "officers", "/admin/officers"
    yield "admin", "not-found", "/no-such-page"
