"""The review loop: notes the model is least sure of, checked by people, exported as training data.

``store`` (SQLAlchemy models, Alembic migrations, SQLite by default, PostgreSQL by URL), ``queue`` (import
and active-learning order), ``service`` (reviews, export, retention, quality from reviews) and ``app`` (the
web app). Note text lives only in the review database: never in logs, the audit log or error messages.
"""
