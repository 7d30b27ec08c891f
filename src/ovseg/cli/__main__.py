"""``python -m ovseg.cli``: the same command as ``ovseg``."""

from ovseg.cli import app

app()
