"""The RA UI's words and forms, served by the real app over a real RA (no browser: the Flask
test client, so every page in both languages is cheap to check): the catalogs are complete and
compiled, no English is left in the Chinese pages, codes are shown as names, forms keep what
was typed and put the error beside the field, actions are offered only to who may take them,
and every list pages."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from ra import i18n
from ra.models import Role
from tests.ra.browser import make_world, ui_pages
from tests.ra.enroll import new_enrollment
from tests.ra.rig import PASSWORD, RaRig, person_of

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = i18n.TRANSLATIONS
LOCALES = ("zh_Hans_CN", "en")

#: ASCII words a Chinese page may carry: abbreviations that are Chinese usage too
ALLOWED_WORDS = {"SHA", "PEM", "Base", "PSAM", "English"}


# -- the catalogs ----------------------------------------------------------------------------


def _po(locale: str) -> Any:
    with (CATALOGS / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


def _extracted() -> set[str]:
    """Every message the code and templates ask for, as pybabel extract finds them."""
    method_map = [("ra/web.py", "python"), ("ra/i18n.py", "python"),
                  ("ra/templates/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, keywords={"_": None, "gettext": None,
                                             "lazy_gettext": None, "_l": None}):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated(locale: str) -> None:
    catalog = _po(locale)
    ids = {m.id for m in catalog if m.id}
    asked = _extracted()
    assert asked - ids == set(), "not in the catalog: run make translations, then translate"
    untranslated = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []
    if locale.startswith("zh"):
        # a Chinese message is Chinese: one left as its English source is not translated
        same = [m.id for m in catalog if m.id and m.string == m.id and re.search(
            r"[A-Za-z]{3,}", m.id)]
        assert same == []


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogs_match_their_sources(locale: str) -> None:
    """The committed .mo is what its .po compiles to (a .po edited without make translations
    would not show)."""
    source = {m.id: m.string for m in _po(locale) if m.id}
    with (CATALOGS / locale / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(io.BytesIO(f.read())) if m.id}
    assert compiled == source


# -- pages -----------------------------------------------------------------------------------


class _Text(HTMLParser):
    """The words a reader sees: text outside <code>, <script>, <style> and elements marked
    translate="no" (names, numbers and identifiers), plus placeholders and titles."""

    SKIP = {"code", "script", "style"}
    VOID = {"input", "br", "img", "meta", "link", "hr", "col", "area", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.words: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        skipped = bool(self.stack and self.stack[-1]) or tag in self.SKIP or \
            found.get("translate") == "no"
        if not skipped:
            for name in ("placeholder", "title", "aria-label"):
                if found.get(name):
                    self.words.append(str(found[name]))
        if tag not in self.VOID:
            self.stack.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.words.append(data)


def english_words(html: str) -> set[str]:
    """English words shown on a page: runs of letters standing as words, not parts of codes
    (ra.request, officer:officer1, sm2_sm3, E00000100 are codes and values)."""
    parser = _Text()
    parser.feed(html)
    words = set()
    for chunk in parser.words:
        for token in re.split(r"[\s，。；：、（）()“”,;]+", chunk):
            token = token.strip(".!?-")
            if re.fullmatch(r"[A-Za-z]{2,}", token) and token not in ALLOWED_WORDS:
                words.add(token)
    return words


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found[1]


def log_in(app: Flask, user: str, lang: str | None = None) -> FlaskClient:
    client = app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"csrf_token": token, "username": user,
                                       "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    if lang:
        client.get(f"/language/{lang}")
    return client


def post(client: FlaskClient, path: str, data: dict[str, Any], page: str | None = None) -> Any:
    token = _csrf(client.get(page or path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


@pytest.fixture(scope="module")
def world(rig: RaRig) -> dict[str, Any]:
    return make_world(rig)


def test_no_english_left_in_the_chinese_pages(app: Flask, world: dict[str, Any]) -> None:
    clients: dict[str | None, FlaskClient] = {}
    for who, _name, path in ui_pages(world):
        if who not in clients:
            clients[who] = log_in(app, who) if who else app.test_client()
        resp = clients[who].get(path)
        assert resp.status_code == (404 if _name == "not-found" else 200), path
        html = resp.get_data(as_text=True)
        assert '<html lang="zh-CN">' in html
        assert english_words(html) == set(), path


def test_the_scan_finds_english(app: Flask) -> None:
    """The scanner itself: an English page is caught, codes in translate="no" are not."""
    assert english_words("<p>申请 <b>submitted</b></p>") == {"submitted"}
    assert english_words('<p>申请 <span translate="no">officer1 station</span></p>') == set()
    html = log_in(app, "officer2", "en").get("/").get_data(as_text=True)
    assert {"Requests", "Search"} <= english_words(html)


def test_pages_allow_no_inline_script_or_style(app: Flask) -> None:
    policy = app.test_client().get("/login").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy


def test_language_follows_the_switch_then_the_browser(app: Flask) -> None:
    client = app.test_client()
    assert "登录" in client.get("/login").get_data(as_text=True)  # no preference: Chinese
    english = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in english.get_data(as_text=True)
    client.get("/language/zh")  # the officer's choice wins over the browser's
    chosen = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="zh-CN">' in chosen.get_data(as_text=True)


def test_codes_are_shown_as_names(app: Flask, world: dict[str, Any]) -> None:
    html = log_in(app, "officer2").get(f"/requests/{world['done']}").get_data(as_text=True)
    sex = re.search(r'id="holder-sex">([^<]*)<', html)
    ethnicity = re.search(r'id="holder-ethnicity">([^<]*)<', html)
    birthplace = re.search(r'id="holder-birthplace">([^<]*)<', html)
    assert sex and sex[1] in ("男", "女")
    assert ethnicity and ethnicity[1].endswith("族")
    assert birthplace and birthplace[1].startswith("青海省")
    assert "已完成" in html and "新办发卡" in html and "个人化中" in html
    revocation = log_in(app, "officer2", "en").get(f"/requests/{world['revocation']}")
    assert "Key compromised (card lost or stolen)" in revocation.get_data(as_text=True)
    # the JSON API keeps the codes
    assert world["ssn"] and "keyCompromise" not in html


def test_every_audit_action_has_a_name() -> None:
    from sscard.audit.actions import AuditAction

    assert {a.value for a in AuditAction} == set(i18n.ACTIONS)


def test_times_are_local_with_the_zone(app: Flask, world: dict[str, Any]) -> None:
    html = log_in(app, "officer2").get(f"/requests/{world['pending']}").get_data(as_text=True)
    shown = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', html)
    assert shown is not None and shown[2].endswith("+08:00")
    assert "中国标准时间" in html


def test_the_zone_is_configurable(rig: RaRig, world: dict[str, Any]) -> None:
    import secrets

    from ra.web import WebConfig, create_app

    utc = create_app(rig.ra, WebConfig(secrets.token_bytes(32), False, timezone="UTC"))
    html = log_in(utc, "officer2").get(f"/requests/{world['pending']}").get_data(as_text=True)
    shown = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', html)
    assert shown is not None and shown[2].endswith("+00:00")
    with pytest.raises(Exception, match="Mars/Olympus"):  # a wrong zone stops the start
        create_app(rig.ra, WebConfig(secrets.token_bytes(32), False, timezone="Mars/Olympus"))


# -- forms -----------------------------------------------------------------------------------


def test_rejection_without_a_reason_keeps_the_page(app: Flask, rig: RaRig) -> None:
    pending, _key = new_enrollment(rig)
    rid = pending["request_id"]
    client = log_in(app, "officer1")
    resp = post(client, f"/requests/{rid}/decide", {"action": "reject", "reason": "   "},
                page=f"/requests/{rid}")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert 'id="error-summary"' in html and 'id="reason-error"' in html
    assert 'aria-invalid="true"' in html and "请填写拒绝理由" in html
    assert f'<code id="request-id" translate="no">{rid}</code>' in html  # the request page
    assert rig.ra.request(rig.client, rid)["state"] == "submitted"


def test_forms_keep_what_was_typed(app: Flask, rig: RaRig) -> None:
    client = log_in(app, "officer1")
    resp = post(client, "/revoke", {"card_number": "", "serial": "", "reason": "lost at desk"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="card_number-error"' in html
    assert "lost at desk</textarea>" in html
    resp = post(client, "/batches", {"name": "north", "station": "no-such-station",
                                     "limit": "3", "valid_hours": "12"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="form-error"' in html
    assert 'value="north"' in html and 'value="no-such-station"' in html
    # the kind of refusal and the RA's refusal in Chinese; the value it names kept as data
    assert "输入未被接受" in html and \
        '没有名为 <span translate="no">no-such-station</span> 的在用受理点' in html
    resp = post(client, "/batches", {"name": "north", "station": "station-1", "limit": "x"})
    assert 'id="limit-error"' in resp.get_data(as_text=True)
    # refusals the form knows are said at their field, in Chinese
    resp = post(client, "/revoke", {"card_number": "E99999999", "reason": "挂失"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="card_number-error"' in html
    assert "没有这张卡" in html and 'value="E99999999"' in html
    rig.ra.authorise_batch(rig.actor("officer1"), "taken-name", 1, station="station-1")
    resp = post(client, "/batches", {"name": "taken-name", "station": "station-1",
                                     "limit": "1", "valid_hours": "1"})
    assert "已有同名批次" in resp.get_data(as_text=True)


def test_all_four_roles_can_be_created(app: Flask, rig: RaRig) -> None:
    client = log_in(app, "admin")
    html = client.get("/admin/officers").get_data(as_text=True)
    offered = set(re.findall(r'name="roles" value="([a-z]+)"', html))
    assert offered == {r.value for r in Role}
    for n, role in enumerate(Role):
        resp = post(client, "/admin/officers", {
            "username": f"new-{role.value}", "display_name": f"New {role.value}",
            "person_id": person_of(400 + n), "password": PASSWORD, "roles": role.value})
        assert resp.status_code == 302, resp.get_data(as_text=True)
    made = {o["username"]: o["roles"] for o in rig.ra.officers(rig.actor("admin"))}
    assert all(made[f"new-{r.value}"] == r.value for r in Role)
    # no role chosen: the error is at the roles, the rest is kept
    resp = post(client, "/admin/officers", {"username": "norole", "display_name": "No Role",
                                            "person_id": person_of(499), "password": PASSWORD})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="roles-error"' in html and 'value="norole"' in html


def test_the_requester_is_not_offered_a_decision(app: Flask, world: dict[str, Any]) -> None:
    own = log_in(app, "officer1").get(f"/requests/{world['revocation']}").get_data(
        as_text=True)
    assert 'id="approve"' not in own and 'id="reject"' not in own
    other = log_in(app, "officer2").get(f"/requests/{world['revocation']}").get_data(
        as_text=True)
    assert 'id="approve"' in other
    # an operator, an auditor: no buttons either
    for who in ("operator", "auditor"):
        page = log_in(app, who).get(f"/requests/{world['pending']}").get_data(as_text=True)
        assert 'id="approve"' not in page


def test_menu_follows_the_database_not_the_session(app: Flask, rig: RaRig) -> None:
    rig.ra.add_officer(None, "shifty", "Shifty", PASSWORD, {Role.AUDITOR},
                       person_id=person_of(480))
    client = log_in(app, "shifty")
    with client.session_transaction() as s:
        s["roles"] = ["administrator", "officer"]  # a session claiming more than it has
    html = client.get("/").get_data(as_text=True)
    assert 'id="nav-officers"' not in html and 'id="nav-batches"' not in html
    assert 'id="nav-audit"' in html


MENU = {"nav-queue": "/", "nav-search": "/search", "nav-revoke": "/revoke",
        "nav-recoveries": "/recoveries", "nav-batches": "/batches", "nav-audit": "/audit",
        "nav-officers": "/admin/officers", "nav-password": "/account/password"}


@pytest.mark.parametrize("user", ["operator", "officer1", "auditor", "admin"])
def test_the_menu_offers_exactly_what_opens(app: Flask, user: str) -> None:
    client = log_in(app, user)
    offered = set(re.findall(r'<a id="(nav-[a-z]+)"', client.get("/account/password")
                             .get_data(as_text=True)))
    for link, path in MENU.items():
        status = client.get(path).status_code
        assert (status == 200) == (link in offered), (user, path, status)


# -- lists -----------------------------------------------------------------------------------


def _ids(html: str) -> list[str]:
    return re.findall(r'id="open-(rq-[0-9a-f]+)"', html)


def test_lists_page_and_sort(app: Flask, rig: RaRig) -> None:
    client = log_in(app, "officer2")
    while True:  # more than one page of waiting requests
        first = client.get("/?size=10&sort=created&order=desc").get_data(as_text=True)
        found = re.search(r'id="page-status">共 (\d+) 条，第 1 / (\d+) 页', first)
        if found is not None and int(found[1]) > 10:
            break
        new_enrollment(rig)
    total, pages = int(found[1]), int(found[2])
    assert pages == -(-total // 10) and 'id="page-next"' in first
    assert 'id="page-prev"' not in first
    page1 = _ids(first)
    page2 = _ids(client.get("/?size=10&sort=created&order=desc&page=2").get_data(as_text=True))
    assert len(page1) == 10 and page2 and not set(page1) & set(page2)
    # the same rows in the other order: the newest first, then the oldest first
    ascending = _ids(client.get("/?size=100&sort=created&order=asc").get_data(as_text=True))
    assert ascending[::-1][:10] == page1 and ascending[::-1][10:10 + len(page2)] == page2
    # the sort header says which way it sorts (for screen readers too)
    assert 'aria-sort="descending"' in first
    for path in ("/?page=0", "/?size=7", "/?sort=no_such_column", "/?page=x", "/?kind=no_such_kind",
                 "/?order=sideways"):
        resp = client.get(path)
        assert resp.status_code == 400, path
        assert english_words(resp.get_data(as_text=True)) == set(), path  # said in Chinese


def test_every_list_pages(app: Flask, world: dict[str, Any]) -> None:
    officer, auditor, admin = (log_in(app, u) for u in ("officer2", "auditor", "admin"))
    for client, path in ((officer, "/"), (officer, "/batches"), (officer, "/recoveries"),
                         (officer, f"/search?q={world['ssn']}"), (auditor, "/audit"),
                         (admin, "/admin/officers")):
        html = client.get(path + ("&" if "?" in path else "?") + "size=10").get_data(
            as_text=True)
        if "page-status" in html:
            assert 'aria-label="分页"' in html, path
        assert 'id="size"' in html, path


def test_officers_and_batches_filter(app: Flask, rig: RaRig, world: dict[str, Any]) -> None:
    admin = log_in(app, "admin")
    auditors = admin.get("/admin/officers?role=auditor").get_data(as_text=True)
    listed = re.findall(r'<tr id="officer-([^"]+)">', auditors)
    assert "auditor" in listed and "officer1" not in listed
    found = admin.get("/admin/officers?q=OFFICER1").get_data(as_text=True)
    assert re.findall(r'<tr id="officer-([^"]+)">', found) == ["officer1"]
    assert admin.get("/admin/officers?role=root").status_code == 400
    officer = log_in(app, "officer2")
    rig.ra.authorise_batch(rig.actor("officer1"), "closed-soon", 1, station="station-1")
    open_ones = officer.get("/batches?open=1").get_data(as_text=True)
    closed = officer.get("/batches?open=0").get_data(as_text=True)
    assert "district-7" in open_ones and "district-7" not in closed
    assert officer.get("/batches?open=maybe").status_code == 400


def test_audit_view_filters(app: Flask, rig: RaRig, world: dict[str, Any]) -> None:
    client = log_in(app, "auditor")
    html = client.get("/audit?action=ra.batch&size=10").get_data(as_text=True)
    actions = set(re.findall(r'<code translate="no">([a-z._]+)</code>', html))
    assert actions == {"ra.batch.authorise"} and "授权批次" in html
    assert "<details>" in html and "{&#34;" not in html  # details expandable, not raw JSON
    by_actor = client.get("/audit?actor=officer:officer2&size=10").get_data(as_text=True)
    assert re.findall(r'<td translate="no">(officer:[a-z0-9]+)</td>', by_actor)
    assert set(re.findall(r'<td translate="no">(officer:[a-z0-9]+)</td>', by_actor)) == {
        "officer:officer2"}
    # unfiltered, newest first, page after page without gaps or overlaps
    newest = rig.audit.size()
    seqs = [int(n) for page in (1, 2) for n in re.findall(
        r"<tr><td>(\d+)</td>", client.get(f"/audit?size=10&page={page}").get_data(
            as_text=True))]
    assert seqs[:20] == list(range(newest, newest - 20, -1))[:len(seqs[:20])]
    assert len(seqs) == 20
    assert 'id="empty"' in client.get("/audit?size=100&page=99999").get_data(as_text=True)
    future = client.get("/audit?since=2999-01-01").get_data(as_text=True)
    assert 'id="empty"' in future
    bad = client.get("/audit?since=yesterday")
    assert bad.status_code == 400 and 'id="since-error"' in bad.get_data(as_text=True)


def test_search_results_are_links(app: Flask, world: dict[str, Any]) -> None:
    client = log_in(app, "officer2")
    html = client.get(f"/search?q={world['ssn']}").get_data(as_text=True)
    assert f'href="/search?what=certificates&amp;q={world["ssn"]}"' in html
    certs = client.get(f"/search?what=certificates&q={world['ssn']}").get_data(as_text=True)
    assert f'href="/search?what=cardholders&amp;q={world["ssn"]}"' in certs


# -- refusals in the reader's language ------------------------------------------------------


class _Said(_Text):
    """The words the RA says: as _Text, without what the user typed back into a textarea."""

    SKIP = _Text.SKIP | {"textarea"}


def chinese_text(html: str, data: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Chinese the RA says on a page outside names and data (elements marked translate="no",
    text typed into a form, the ``data`` strings)."""
    parser = _Said()
    parser.feed(html)
    found = []
    for chunk in parser.words:
        for value in sorted(data, key=len, reverse=True):
            chunk = chunk.replace(value, "")
        if re.search(r"[\u3400-\u9fff]", chunk):
            found.append(chunk.strip())
    return found


def _refusals(rig: RaRig, world: dict[str, Any]) -> list[tuple[str, str | None, Any]]:
    """(what, who, how) for each refusal the UI can show; ``how`` posts or gets with a client
    logged in as ``who`` (None: not logged in) and returns the response. None of them changes
    anything, so each is tried in both languages."""
    pending, done, revocation = world["pending"], world["done"], world["revocation"]
    if "lockme" not in {o["username"] for o in rig.ra.officers(rig.actor("admin"))}:
        rig.ra.add_officer(None, "lockme", "Lock Me", PASSWORD, {Role.OFFICER},
                           person_id=person_of(480))
        rig.ra.add_officer(rig.actor("admin"), "proposed", "Proposed", PASSWORD,
                           {Role.OFFICER}, person_id=person_of(481))

    def wrong_password(c: FlaskClient) -> Any:
        return post(c, "/login", {"username": "officer1", "password": "not-the-password"})

    def locked_out(c: FlaskClient) -> Any:
        c.environ_base["REMOTE_ADDR"] = "192.0.2.7"  # its own source: other log-ins go on
        for _ in range(rig.ra.config.max_failed_logins):
            post(c, "/login", {"username": "lockme", "password": "wrong-password!"})
        return post(c, "/login", {"username": "lockme", "password": PASSWORD})

    def decide(rid: str, action: str, reason: str = "") -> Any:
        return lambda c: post(c, f"/requests/{rid}/decide", {"action": action, "reason": reason},
                              page=f"/requests/{rid}")

    def admin(path: str) -> Any:
        return lambda c: post(c, path, {}, page="/admin/officers")

    def add_officer(username: str, roles: list[str]) -> Any:
        return lambda c: post(c, "/admin/officers", {
            "username": username, "display_name": "X", "person_id": person_of(482),
            "password": PASSWORD, "roles": roles})

    return [
        ("wrong password", None, wrong_password),
        ("lock-out", None, locked_out),
        ("wrong current password", "officer2", lambda c: post(c, "/account/password", {
            "password": "not-the-password", "new_password": "a-new-password-1",
            "new_password_again": "a-new-password-1"})),
        ("unknown card", "officer2", lambda c: post(c, "/revoke", {
            "card_number": "E99999999", "reason_code": "keyCompromise", "reason": "挂失"})),
        ("bad serial", "officer2", lambda c: post(c, "/revoke", {
            "serial": "not-a-serial", "reason_code": "keyCompromise", "reason": "挂失"})),
        ("revoked already", "officer2", lambda c: post(c, "/revoke", {
            "serial": world["serial"] + "00", "reason_code": "keyCompromise", "reason": "挂失"})),
        ("unknown encryption certificate", "officer2", lambda c: post(c, "/recoveries", {
            "enc_serial": "7f7f7f", "new_card_key": "", "reason": "换卡"})),
        ("unknown request", "officer2", lambda c: c.get("/requests/R-NO-SUCH")),
        ("rejection without a reason", "officer2", decide(pending, "reject", " ")),
        ("self-approval", "officer1", decide(revocation, "approve")),
        ("decided already", "officer2", decide(done, "approve")),
        ("decision by the wrong role", "operator", decide(pending, "approve")),
        ("batch for an unknown station", "officer2", lambda c: post(c, "/batches", {
            "name": "east", "station": "no-such-station", "limit": "3", "valid_hours": "12"})),
        ("duplicate batch", "officer2", lambda c: post(c, "/batches", {
            "name": "district-7", "station": "station-1", "limit": "1", "valid_hours": "1"})),
        ("duplicate officer", "admin", add_officer("officer1", ["officer"])),
        ("bad user name", "admin", add_officer("no spaces allowed", ["officer"])),
        ("administrator with other roles", "admin",
         add_officer("two-hats", ["administrator", "officer"])),
        ("enabling an enabled account", "admin", admin("/admin/officers/officer1/enable")),
        ("enabling one's own proposal", "admin", admin("/admin/officers/proposed/enable")),
        ("unlocking no one", "admin", admin("/admin/officers/nobody/unlock")),
    ]


def test_refusals_are_said_in_the_readers_language(app: Flask, rig: RaRig,
                                                   world: dict[str, Any]) -> None:
    """Every refusal the UI can show, in Chinese without English and in English without
    Chinese (names and data aside), and none of them changes anything."""
    shown = {rid: rig.ra.request(rig.actor("auditor"), rid)
             for rid in (world["pending"], world["done"], world["revocation"])}
    before = {rid: r["state"] for rid, r in shown.items()}
    # data, not words: what the RA holds for the requests shown (names, officers' comments)
    data: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            data.add(value)
        elif isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                collect(item)

    collect(list(shown.values()))
    for what, who, how in _refusals(rig, world):
        for lang in ("zh", "en"):
            client = log_in(app, who, lang) if who else app.test_client()
            if not who:
                client.get(f"/language/{lang}")
            resp = how(client)
            html = resp.get_data(as_text=True)
            assert resp.status_code >= 400, (what, lang, resp.status_code)
            assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in html, (what, lang)
            assert "flash-error" in html or 'id="error-summary"' in html, (what, lang)
            assert 'lang="en" translate="no">' not in html.replace(
                'id="language" href="/language/en" lang="en" hreflang="en" translate="no">',
                ""), (what, "an untranslated refusal")
            if lang == "zh":
                assert english_words(html) == set(), what
            else:
                assert chinese_text(html, data) == [], what
    after = {rid: rig.ra.request(rig.actor("auditor"), rid)["state"] for rid in before}
    assert after == before
    assert "two-hats" not in {o["username"] for o in rig.ra.officers(rig.actor("admin"))}


def test_the_refusal_names_the_value(app: Flask, rig: RaRig, world: dict[str, Any]) -> None:
    """Values in a refusal are data: shown as typed, escaped, and not translated."""
    client = log_in(app, "officer2")
    resp = post(client, "/batches", {"name": "east", "station": "<b>no-such</b>",
                                     "limit": "3", "valid_hours": "12"})
    html = resp.get_data(as_text=True)
    assert '没有名为 <span translate="no">&lt;b&gt;no-such&lt;/b&gt;</span> 的在用受理点' in html
    resp = post(client, f"/requests/{world['done']}/decide", {"action": "approve"},
                page=f"/requests/{world['done']}")
    assert "当前状态：已完成" in resp.get_data(as_text=True)  # the state by its name


def test_the_api_keeps_codes_and_english(app: Flask, rig: RaRig) -> None:
    """The service's refusal carries its message id and values beside the English detail the
    JSON API answers with, whatever language the caller's client asks for."""
    from ra.errors import Conflict

    resp = app.test_client().get("/api/v1/enrollments/rq-no-such", headers={
        "Authorization": f"Bearer {rig.api_token}", "Accept-Language": "zh-CN,zh"})
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    found = resp.get_json()
    assert found["code"] == "not_found" and found["detail"] == "no request 'rq-no-such'"

    rig.ra.authorise_batch(rig.actor("officer1"), "api-twice", 1, station="station-1")
    with pytest.raises(Conflict) as caught:
        rig.ra.authorise_batch(rig.actor("officer1"), "api-twice", 1, station="station-1")
    assert caught.value.code == "batch_exists" and caught.value.params == {"name": "api-twice"}
    assert str(caught.value) == "a batch named 'api-twice' already exists"


def test_every_refusal_has_a_message() -> None:
    """Every message id the service and the policy raise is in the catalog's ERRORS table."""
    import ast

    raised = set()
    for source in ("ra/service.py", "ra/policy.py"):
        for node in ast.walk(ast.parse((ROOT / source).read_text())):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                    raised.add(kw.value.value)
            name = getattr(node.func, "id", "")
            if name in {"BadRequest", "NotFound", "Conflict", "Forbidden", "ConcurrentChange",
                        "AuthenticationFailed", "UpstreamFailed", "UpstreamUnavailable"}:
                assert len(node.args) >= 2, f"{source}:{node.lineno} raises without an id"
                if isinstance(node.args[1], ast.Constant):
                    raised.add(node.args[1].value)
    raised |= {"waiting_for_ca", "waiting_for_kmc"}  # _waiting's f-string
    assert raised - set(i18n.ERRORS) == set()
