"""``python -m heurimentor`` is the ``heurimentor`` command."""

from heurimentor.cli import app

app()
