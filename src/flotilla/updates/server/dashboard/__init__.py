"""The web dashboard of ``flotilla updates serve``: server-rendered pages, a little JavaScript.

:mod:`queries` reads aggregates, :mod:`forms` turns form fields into typed values, :mod:`actions`
makes changes, :mod:`auth` handles sessions and CSRF, :mod:`routes` lists the routes. The server
adds :meth:`Dashboard.routes` to its route table and runs :func:`sample` (the rollout chart's
numbers) as one of its periodic tasks.
"""

from flotilla.updates.server.dashboard.auth import Sessions
from flotilla.updates.server.dashboard.queries import sample
from flotilla.updates.server.dashboard.routes import Dashboard

__all__ = ["Dashboard", "Sessions", "sample"]
