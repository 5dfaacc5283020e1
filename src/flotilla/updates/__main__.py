"""``python -m flotilla.updates``: the same commands as ``flotilla updates``."""

from flotilla.updates.cli import app

app(prog_name="flotilla updates")
