"""Reviewers' session generations on SQLite and PostgreSQL: signing out and revocation move them on (the app signs
out every cookie of an older one: tests/review/test_app.py), revocation also ends the token, and migration 0003
starts the reviewers already stored at generation 0."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from medner.database import make_engine, naive_utcnow
from review.service import ReviewError, add_reviewer, end_sessions, reviewer_for_token, revoke_reviewer
from review.store import MIGRATIONS, AuditEvent, Reviewer, Store, text_sha256


def generation(store: Store, name: str) -> int:
    with store.session() as session:
        return session.scalars(select(Reviewer.session_generation).where(Reviewer.name == name)).one()


def test_signing_out_and_revocation_move_the_session_generation_on(store: Store) -> None:
    with store.session() as session:
        ann, bob = add_reviewer(session, "ann"), add_reviewer(session, "bob")
    assert generation(store, "ann") == 0
    with store.session() as session:
        end_sessions(session, reviewer_for_token(session, ann))
    assert generation(store, "ann") == 1
    with store.session() as session:
        revoke_reviewer(session, "ann")
    with store.session() as session:
        assert reviewer_for_token(session, ann) is None and reviewer_for_token(session, bob).name == "bob"
        events = [(e.action, e.detail) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert generation(store, "ann") == 2 and generation(store, "bob") == 0
    assert events[-1] == ("revoke-reviewer", {"reviewer": "ann"})
    with store.session() as session, pytest.raises(ReviewError, match="no reviewer 'carl'"):
        revoke_reviewer(session, "carl")


def test_reviewers_stored_before_migration_0003_start_at_generation_0(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    engine = make_engine(store_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.execute(text("INSERT INTO reviewers (name, token_sha256, created_at) VALUES ('ann', :sha, :at)"),
                           {"sha": text_sha256("token"), "at": naive_utcnow()})
    engine.dispose()
    store = Store(store_url)  # upgrades to the newest revision
    try:
        assert generation(store, "ann") == 0
        with store.session() as session:
            end_sessions(session, reviewer_for_token(session, "token"))
        assert generation(store, "ann") == 1
    finally:
        store.close()
