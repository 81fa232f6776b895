"""The ``medner`` command line, the top layer: one module per command group (the way spaCy's ``spacy/cli``
is laid out), each command parsing its arguments, calling one library function and printing the result.
:mod:`medner.cli._app` holds the app, the exit codes, the one error helper and the shared options. Each command
imports what it runs inside its function, so `medner --help` starts without loading torch, whylogs or Metaflow."""

# imported in the order `medner --help` lists the commands
from medner.cli import data, export, models, serve, extract, monitor, review, kb  # noqa: F401, I001 - registers them
from medner.cli._app import app

__all__ = ["app"]
