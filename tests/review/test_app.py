"""The review app over HTTP, served by `medner review serve`: sign-in, CSRF, sessions that end on sign-out and
revocation, the note page, stale forms, the JSON API, and what a bad request gets back (a clear error, never the
note's text)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from review.queue import add_notes
from review.service import revoke_reviewer
from review.store import QUEUED, Note, Store
from tests.review.server import medner, review_server

MARKER = "Zqxmarker7731"
TEXT = f"{MARKER} had asthma treated with steroids ."


@pytest.fixture
def served(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    with store.session() as session:
        start = TEXT.index("asthma")
        add_notes(session, [("a:1", TEXT), ("a:2", "Aspirin eased the headache .")],
                  [[{"start": start, "end": start + 6, "label": "D", "score": 0.4}], []], model="ner",
                  model_version=1, random_share=0.0)
    store.close()
    token = medner("review", "add-reviewer", "ann", "--db", db)
    with review_server(db) as address:
        yield address, token, db


class Browser:
    """A cookie-keeping HTTP client that reports status and body instead of raising on 4xx."""

    def __init__(self, address: str):
        self.address, self.cookies = address, http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, path: str, form: dict | None = None, json_body: dict | None = None,
                token: str | None = None) -> tuple[int, str, str]:
        data, headers = None, {}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
        if json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.address + path, data=data, headers=headers)
        try:
            with self.opener.open(request) as answer:
                return answer.status, answer.url, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.url, err.read().decode()

    def csrf(self, page: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def sign_in(self, token: str) -> str:
        """Sign in through the form; the note page it lands on."""
        status, url, page = self.request("/login", form={"token": token, "csrf": self.csrf(self.request("/login")[2])})
        assert status == 200 and url == self.address + "/", (status, url)
        return page

    def copy(self) -> Browser:
        """Another client holding this one's cookies as they are now: a copied session cookie."""
        other = Browser(self.address)
        for cookie in self.cookies:
            other.cookies.set_cookie(cookie)
        return other


def note_status(db: str, note_id: int) -> str:
    store = Store(db)
    with store.session() as session:
        status = session.get(Note, note_id).status
    store.close()
    return status


def test_pages_need_sign_in_and_forms_need_their_csrf_token(served) -> None:
    address, token, _ = served
    browser = Browser(address)
    status, url, page = browser.request("/")
    assert status == 200 and url.endswith("/login") and "Sign in" in page
    assert browser.request("/login", form={"token": token})[0] == 403  # no CSRF token
    assert browser.request("/login", form={"token": "wrong", "csrf": browser.csrf(page)})[0] == 401
    status, url, page = browser.request("/login", form={"token": token, "csrf": browser.csrf(page)})
    assert status == 200 and url == address + "/" and "ann" in page
    note = json.loads(re.search(r'id="note-data">(.*?)</script>', page, re.S).group(1))
    assert note["text"] == TEXT and note["entities"][0]["text"] == "asthma"
    forged = {"csrf": "forged", "revision": note["revision"], "entities": "[]"}
    status, _, page = browser.request(f"/notes/{note['id']}", form=forged)
    assert status == 403 and "nothing was saved" in page


def test_signing_out_ends_every_session_of_the_reviewer_copied_cookies_included(served) -> None:
    address, token, db = served
    ann = Browser(address)
    page = ann.sign_in(token)
    note = json.loads(re.search(r'id="note-data">(.*?)</script>', page, re.S).group(1))
    copied, copied_form = ann.copy(), ann.copy()  # the cookie, copied from the browser while ann is signed in
    status, url, _ = copied.request("/")
    assert status == 200 and url == address + "/"  # a copy works as long as the session does
    elsewhere = Browser(address)
    elsewhere.sign_in(token)  # ann's second session, on another machine
    status, url, _ = ann.request("/logout", form={"csrf": ann.csrf(page)})
    assert status == 200 and url == address + "/login"
    # the copy's first request after the sign-out is a form with the session's own CSRF token: refused, not saved
    status, url, answer = copied_form.request(f"/notes/{note['id']}", form={
        "csrf": ann.csrf(page), "revision": note["revision"], "entities": "[]"})
    assert url == address + "/login" and "Sign in" in answer and note_status(db, note["id"]) == QUEUED
    for client in (copied, elsewhere, ann):
        status, url, answer = client.request("/")
        assert status == 200 and url == address + "/login" and "Sign in" in answer
    assert "ann" in Browser(address).sign_in(token)  # signing in again starts a session that works


def test_a_reviewer_revoked_while_signed_in_is_signed_out_at_the_next_request(served) -> None:
    address, token, db = served
    ann = Browser(address)
    page = ann.sign_in(token)
    note = json.loads(re.search(r'id="note-data">(.*?)</script>', page, re.S).group(1))
    store = Store(db)
    with store.session() as session:  # committed before the next request is sent
        revoke_reviewer(session, "ann")
    store.close()
    status, url, answer = ann.request(f"/notes/{note['id']}", form={
        "csrf": ann.csrf(page), "revision": note["revision"], "entities": "[]"})
    assert url == address + "/login" and "Sign in" in answer and note_status(db, note["id"]) == QUEUED
    status, url, answer = ann.request("/")
    assert status == 200 and url == address + "/login"
    assert ann.request("/login", form={"token": token, "csrf": ann.csrf(answer)})[0] == 401
    assert ann.request("/api/next", token=token)[0] == 401


def test_a_stale_form_is_refused_with_a_message_and_nothing_is_overwritten(served) -> None:
    address, token, db = served
    ann = Browser(address)
    _, _, page = ann.request("/login", form={"token": token, "csrf": ann.csrf(ann.request("/login")[2])})
    note = json.loads(re.search(r'id="note-data">(.*?)</script>', page, re.S).group(1))
    bob = medner("review", "add-reviewer", "bob", "--db", db)  # reviews the note first, through the API
    status, _, answer = ann.request(f"/api/notes/{note['id']}", json_body={"revision": note["revision"],
                                                                            "entities": []}, token=bob)
    assert status == 200 and json.loads(answer)["decision"] == "corrected"
    entities = json.dumps([{"start": 0, "end": len(MARKER), "label": "D", "text": MARKER}])
    status, _, page = ann.request(f"/notes/{note['id']}", form={"csrf": ann.csrf(page), "revision": note["revision"],
                                                               "entities": entities})
    assert status == 409 and "already reviewed by bob" in page and "your changes were not saved" in page
    status, _, answer = ann.request("/api/progress", token=token)
    assert json.loads(answer)["reviewed"] == 1


def test_the_api_reviews_notes_and_bad_requests_fail_alone_without_text(served) -> None:
    address, token, _ = served
    client = Browser(address)
    assert client.request("/api/next")[0] == 401
    assert client.request("/api/next", token="not-a-token")[0] == 401
    status, _, answer = client.request("/api/next", token=token)
    note = json.loads(answer)
    assert status == 200 and note["text"] == TEXT
    bad = [{"start": 0, "end": 4, "label": "D", "text": MARKER[:4]}]  # cuts a word
    status, _, answer = client.request(f"/api/notes/{note['id']}", json_body={"revision": note["revision"],
                                                                            "entities": bad}, token=token)
    assert status == 400 and "word boundaries" in answer and MARKER[:4] not in answer
    status, _, answer = client.request(f"/api/notes/{note['id']}", json_body={"revision": "x"}, token=token)
    assert status == 400 and "revision" in answer
    good = [{"start": TEXT.index("steroids"), "end": TEXT.index("steroids") + 8, "label": "T", "text": "steroids"}]
    status, _, answer = client.request(f"/api/notes/{note['id']}", json_body={"revision": note["revision"],
                                                                            "entities": good}, token=token)
    assert status == 200 and json.loads(answer) == {"note": note["id"], "decision": "corrected"}
    status, _, answer = client.request("/api/next", token=token)
    assert json.loads(answer)["text"] == "Aspirin eased the headache ."
    assert json.loads(client.request("/api/progress", token=token)[2])["reviewers"] == {"ann": 1}


def test_note_text_reaches_no_log_of_the_server(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    with store.session() as session:
        add_notes(session, [("a:1", TEXT)], [[]], model="ner", model_version=1)
    store.close()
    token, log = medner("review", "add-reviewer", "ann", "--db", db), []
    with review_server(db, log=log) as address:
        client = Browser(address)
        note = json.loads(client.request("/api/next", token=token)[2])
        for body in ({"revision": note["revision"], "entities": [{"start": 0, "end": 3, "label": "D", "text": "Zqx"}]},
                     {"revision": note["revision"], "entities": "not a list"}):
            assert client.request(f"/api/notes/{note['id']}", json_body=body, token=token)[0] == 400
        assert client.request(f"/api/notes/{note['id']}", json_body={"revision": note["revision"], "entities": []},
                              token=token)[0] == 200
    assert log and MARKER not in "".join(log)


def test_the_quality_panel_shows_each_group_s_f1_from_reviews(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    with store.session() as session:
        for group, text in (("clinic_a", "Asthma was treated ."), ("clinic_b", "Gout was treated .")):
            add_notes(session, [(f"{group}:1", text)], [[{"start": 0, "end": 4, "label": "D", "score": 0.9}]],
                      model="ner", model_version=1, random_share=1.0, group=group)
    store.close()
    token = medner("review", "add-reviewer", "ann", "--db", db)
    with review_server(db) as address:
        browser = Browser(address)
        login = browser.request("/login")[2]
        _, _, page = browser.request("/login", form={"token": token, "csrf": browser.csrf(login)})
        assert 'id="groups"' not in page  # nothing reviewed yet: no panel
        for _ in range(2):  # the model's span: wrong on "Asthma" (ends early), right on "Gout"
            note = json.loads(re.search(r'id="note-data">(.*?)</script>', page, re.S).group(1))
            final = [{"start": 0, "end": 4, "label": "D", "text": note["text"][:4]}] if note["text"].startswith(
                "Gout") else [{"start": 0, "end": 6, "label": "D", "text": "Asthma"}]
            status, _, answer = browser.request(f"/api/notes/{note['id']}", token=token,
                                                json_body={"revision": note["revision"], "entities": final})
            assert status == 200, answer
            _, _, page = browser.request("/")
        panel = re.search(r'<table id="groups">(.*?)</table>', page, re.S).group(1)
        rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td><td>(.*?)</td></tr>", panel)
        assert rows == [("clinic_a", "1", "0.000"), ("clinic_b", "1", "1.000")]
        _, _, answer = browser.request("/api/progress", token=token)
        assert [g["group"] for g in json.loads(answer)["quality_by_group"]] == ["clinic_a", "clinic_b"]


def test_sign_ins_failed_sign_ins_and_note_views_are_audited_without_tokens(served) -> None:
    from review.store import AuditEvent

    address, token, db = served
    browser = Browser(address)
    browser.request("/login", form={"token": "not-a-token-Zq", "csrf": browser.csrf(browser.request("/login")[2])})
    browser.request("/login", form={"token": token, "csrf": browser.csrf(browser.request("/login")[2])})
    status, _, _ = browser.request("/api/next", token=token)
    assert status == 200
    store = Store(db)
    with store.session() as session:
        events = [(e.actor, e.action, e.note_id is not None, json.dumps(e.detail)) for e in
                  session.query(AuditEvent).order_by(AuditEvent.id) if e.action not in ("import", "add-reviewer")]
    store.close()
    assert [e[:3] for e in events] == [("unknown", "sign-in-failed", False), ("ann", "sign-in", False),
                                       ("ann", "view", True), ("ann", "view", True)]  # the page, then the API
    assert not any(token in e[3] or "not-a-token-Zq" in e[3] for e in events)


def test_the_session_cookie_is_secure_unless_the_app_is_on_loopback(tmp_path: Path) -> None:
    from review.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("review.internal")
    db = f"sqlite:///{tmp_path / 'review.db'}"
    for options, secure in (((), False), (("--https-only",), True)):
        with review_server(db, *options) as address:
            with urllib.request.urlopen(address + "/login") as answer:
                cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("medner_review=") and ("; secure" in cookie.lower()) == secure, cookie
