"""``python -m flotilla.charts``: the charts commands without loading the other systems."""

from flotilla.charts.cli import app

if __name__ == "__main__":
    app(prog_name="flotilla charts")
