"""``python -m medner.cli``: the ``medner`` command."""

from medner.cli import app

app()
