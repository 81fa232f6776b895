"""``medner review serve``: the review web app (Starlette, server-rendered HTML, a little JavaScript).

A reviewer signs in with their token (``medner review add-reviewer``) and gets the next note of the queue
(:func:`review.queue.next_note`) with the model's diseases and treatments highlighted; they accept, delete,
retype or add entities and submit, or skip. Forms carry a per-session CSRF token and the note's revision: a
note reviewed by someone else since the page was shown is refused with a message, nothing overwritten. A session
holds the reviewer's session generation: signing out or revocation (:func:`review.service.end_sessions`) moves it
on, so every cookie of theirs, copies included, is signed out at its next request.

The JSON API (``/api/...``, ``Authorization: Bearer <token>``) does the same for scripts. Pages and answers
are never cached; note text appears only in the page of the note being reviewed, never in logs or errors.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from review.queue import DEFAULT_RANDOM_SHARE, latest_extraction, next_note, progress
from review.service import (
    ReviewError,
    StaleReview,
    end_sessions,
    quality_by_group,
    quality_by_version,
    reviewer_for_token,
    skip_note,
    submit_review,
)
from review.store import Note, Reviewer, Store, audit

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code, headers=SECURITY_HEADERS)


def _json(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code, headers=SECURITY_HEADERS)


def note_payload(note: Note, entities: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": note.id, "revision": note.revision, "text": note.text, "sample": note.sample,
            "confidence": note.confidence,
            "entities": [{**e, "text": note.text[e["start"]: e["end"]]} for e in entities]}


def quality_chart(rows: list[dict[str, Any]], width: int = 320, height: int = 90) -> str:
    """Weekly entity F1 from reviews (random share) as a small inline SVG: a bar per week and model version."""
    rows = [r for r in rows if r["entity_f1"] is not None][-12:]
    if not rows:
        return ""
    step = width / len(rows)
    bar = min(step - 4, 36.0)
    bars = []
    for k, row in enumerate(rows):
        h = row["entity_f1"] * (height - 14)
        bars.append(f'<rect x="{k * step + (step - bar) / 2:.1f}" y="{height - 14 - h:.1f}" width="{bar:.1f}" '
                    f'height="{h:.1f}">'
                    f'<title>week of {row["week"]}, v{row["model_version"]}: F1 {row["entity_f1"]:.3f} '
                    f'(P {row["precision"] or 0:.3f}, R {row["recall"] or 0:.3f}, {row["notes"]} notes)</title></rect>'
                    f'<text x="{k * step + step / 2:.1f}" y="{height - 2}" text-anchor="middle">'
                    f'{row["entity_f1"]:.2f}</text>')
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="entity F1 from reviews per week">{"".join(bars)}</svg>')


class ReviewApp:
    """The routes over one store; ``random_share`` is the queue's (default :data:`DEFAULT_RANDOM_SHARE`)."""

    def __init__(self, store: Store, random_share: float = DEFAULT_RANDOM_SHARE):
        self.store, self.random_share = store, random_share

    # --- who is asking ---------------------------------------------------------------------------
    def _session_reviewer(self, request: Request, session: Any) -> Reviewer | None:
        """The cookie's reviewer while the cookie holds their current session generation; a cookie of an older one
        (they signed out, or were revoked, since) is cleared: signed out."""
        reviewer_id, generation = request.session.get("reviewer_id"), request.session.get("generation")
        if reviewer_id is None:
            return None
        reviewer = session.get(Reviewer, reviewer_id)
        if reviewer is None or generation is None or reviewer.session_generation != generation:
            request.session.clear()
            return None
        return reviewer

    def _bearer_reviewer(self, request: Request, session: Any) -> Reviewer | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return reviewer_for_token(session, token.strip()) if scheme.lower() == "bearer" else None

    @staticmethod
    def _csrf(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        return request.session["csrf"]

    @staticmethod
    def _csrf_ok(request: Request, form: Any) -> bool:
        sent, expected = str(form.get("csrf", "")), request.session.get("csrf", "")
        return bool(expected) and secrets.compare_digest(sent, expected)

    # --- pages -----------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return _page(request, "login.html", csrf=self._csrf(request), message="")

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return _page(request, "login.html", 403, csrf=self._csrf(request), message="Your form expired: try again.")
        with self.store.session() as session:
            reviewer = reviewer_for_token(session, str(form.get("token", "")).strip())
            if reviewer is None:  # who tried is unknown: the address, never the token
                audit(session, "unknown", "sign-in-failed", client=request.client.host if request.client else None)
                return _page(request, "login.html", 401, csrf=self._csrf(request), message="Unknown token.")
            audit(session, reviewer.name, "sign-in")
            request.session.clear()  # a new session on sign-in: no fixation
            request.session.update(reviewer_id=reviewer.id, generation=reviewer.session_generation,
                                   csrf=secrets.token_urlsafe(24))
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)

    async def logout(self, request: Request) -> Response:
        """Sign out: every session of this reviewer ends, on this browser and wherever its cookie was copied."""
        form = await request.form()
        if self._csrf_ok(request, form):
            with self.store.session() as session:
                reviewer = self._session_reviewer(request, session)
                if reviewer is not None:
                    end_sessions(session, reviewer)
                    audit(session, reviewer.name, "sign-out")
            request.session.clear()
        return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)

    async def review_page(self, request: Request, message: str = "", status_code: int = 200) -> Response:
        with self.store.session() as session:
            reviewer = self._session_reviewer(request, session)
            if reviewer is None:
                return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
            note = next_note(session, reviewer.id, self.random_share)
            data = note_payload(note, latest_extraction(session, note.id).entities) if note else None
            if note is not None:  # who read which note, and when (ids only)
                audit(session, reviewer.name, "view", note.id)
            return _page(request, "review.html", status_code, reviewer=reviewer.name, note=data,
                         progress=progress(session), csrf=self._csrf(request), message=message,
                         chart=quality_chart(quality_by_version(session)), groups=quality_by_group(session))

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return await self.review_page(request, "Your form expired (sign in again if this repeats); nothing "
                                                   "was saved.", 403)
        note_id = request.path_params["note_id"]
        with self.store.session() as session:
            reviewer = self._session_reviewer(request, session)
            if reviewer is None:
                return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
            try:
                if form.get("action") == "skip":
                    skip_note(session, note_id, reviewer)
                else:
                    submit_review(session, note_id, reviewer, int(str(form.get("revision", "-1"))),
                                  json.loads(str(form.get("entities", "[]"))))
            except StaleReview as err:
                message, status = str(err), 409
            except (ReviewError, ValueError) as err:  # ValueError: a revision or entities field that is not JSON
                message, status = f"Not saved: {err}", 400
            else:
                return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
        return await self.review_page(request, message, status)

    # --- JSON API --------------------------------------------------------------------------------
    async def api_next(self, request: Request) -> Response:
        with self.store.session() as session:
            reviewer = self._bearer_reviewer(request, session)
            if reviewer is None:
                return _json({"error": "unauthorized"}, 401)
            note = next_note(session, reviewer.id, self.random_share)
            if note is None:
                return Response(status_code=204, headers=SECURITY_HEADERS)
            audit(session, reviewer.name, "view", note.id)
            return _json(note_payload(note, latest_extraction(session, note.id).entities))

    async def api_review(self, request: Request) -> Response:
        note_id = request.path_params["note_id"]
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as err:
            return _json({"error": f"bad request body: {err}"}, 400)
        with self.store.session() as session:
            reviewer = self._bearer_reviewer(request, session)
            if reviewer is None:
                return _json({"error": "unauthorized"}, 401)
            try:
                if body.get("action") == "skip":
                    skip_note(session, note_id, reviewer)
                    return _json({"note": note_id, "decision": "skipped"})
                if not isinstance(body.get("revision"), int):
                    raise ReviewError("revision must be an integer (from /api/next)")
                review = submit_review(session, note_id, reviewer, body["revision"], body.get("entities"))
                return _json({"note": note_id, "decision": review.decision})
            except StaleReview as err:
                return _json({"error": str(err)}, 409)
            except ReviewError as err:
                return _json({"error": str(err)}, 400)

    async def api_progress(self, request: Request) -> Response:
        with self.store.session() as session:
            if self._bearer_reviewer(request, session) is None:
                return _json({"error": "unauthorized"}, 401)
            return _json({**progress(session), "quality": quality_by_version(session),
                          "quality_by_group": quality_by_group(session)})

    async def healthz(self, request: Request) -> Response:
        return Response("ok", headers=SECURITY_HEADERS)


def create_app(store: Store, secret_key: str | None = None, random_share: float = DEFAULT_RANDOM_SHARE,
               https_only: bool = False) -> Starlette:
    """The app over ``store``. Sessions are signed with ``secret_key`` (default: a random key, so sessions end
    when the server restarts); ``https_only`` marks the cookie Secure (behind a TLS proxy)."""
    app = ReviewApp(store, random_share)
    routes = [
        Route("/", app.review_page), Route("/login", app.login_page), Route("/login", app.login, methods=["POST"]),
        Route("/logout", app.logout, methods=["POST"]),
        Route("/notes/{note_id:int}", app.submit, methods=["POST"]),
        Route("/api/next", app.api_next), Route("/api/notes/{note_id:int}", app.api_review, methods=["POST"]),
        Route("/api/progress", app.api_progress), Route("/healthz", app.healthz),
    ]
    middleware = [Middleware(SessionMiddleware, secret_key=secret_key or secrets.token_urlsafe(32),
                             session_cookie="medner_review", same_site="strict", https_only=https_only,
                             max_age=12 * 3600)]
    return Starlette(routes=routes, middleware=middleware)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (the default bind): there the session cookie may go without TLS."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(store: Store, host: str = "127.0.0.1", port: int = 8080, secret_key: str | None = None,
          random_share: float = DEFAULT_RANDOM_SHARE, on_ready: Any = None, https_only: bool | None = None) -> None:
    """Run the app with uvicorn until interrupted; ``port`` 0 takes a free one. ``on_ready(url)`` is called
    once the socket listens (the CLI prints the address: scripts and tests wait for that line). ``https_only``
    (default: unless ``host`` is loopback) marks the session cookie Secure: browsers send it over HTTPS only (a TLS
    proxy in front)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog from here on, so on_ready's caller may connect at once
    secure = not is_loopback(host) if https_only is None else https_only
    config = uvicorn.Config(create_app(store, secret_key, random_share, https_only=secure), log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        bound = sock.getsockname()[1]
        on_ready(f"http://{host}:{bound}")
    server.run(sockets=[sock])
