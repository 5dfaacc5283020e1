"""The web dashboard of ``flotilla updates serve``: server-rendered pages, a little JavaScript.

:mod:`queries` reads aggregates, :mod:`forms` turns form fields into typed values, :mod:`actions`
makes changes, :mod:`auth` handles sessions and CSRF, :mod:`routes` wires them to HTTP.
"""

from flotilla.updates.server.dashboard.routes import Dashboard, mount

__all__ = ["Dashboard", "mount"]
