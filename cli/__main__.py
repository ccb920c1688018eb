"""``python -m audioar_cli``: the same as the ``audioar`` command."""

from audioar_cli.main import app

app()
