"""``python -m flotilla``: the same as the ``flotilla`` console script."""

from flotilla.cli import main

main()
