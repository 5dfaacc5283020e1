"""Last-seen times of quiet check-ins, gathered in memory and written once a second.

A fleet's steady check-in changes nothing a user can see but ``instances.last_seen``, which the
dashboard shows to the minute and retention prunes by. Writing it per request cost a row update
and a commit on every check-in; here touches gather in a dict (one entry per machine, latest time
wins) and :meth:`LastSeen.flush` writes them all in one statement: on PostgreSQL one
``UPDATE ... FROM unnest(...)`` (three array parameters, however many machines), on SQLite one
prepared ``UPDATE`` run for each row inside one transaction. The server calls it every
:data:`FLUSH_INTERVAL` and once more on shutdown, so a crash loses at most a second of last-seen
times and nothing else (state-changing check-ins never come through here).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import Engine, bindparam, text, update

from flotilla.updates.server.schema import instances

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
"""Seconds between flushes: the most last-seen time a crash can lose."""

_PG_FLUSH = text(
    "UPDATE instances AS i SET last_seen = v.seen"
    " FROM unnest(CAST(:m AS text[]), CAST(:a AS text[]), CAST(:t AS timestamptz[]))"
    " AS v(machine_id, app_id, seen)"
    " WHERE i.machine_id = v.machine_id AND i.app_id = v.app_id AND i.last_seen < v.seen"
)
_SQLITE_FLUSH = (
    update(instances)
    .where(
        instances.c.machine_id == bindparam("k_m"),
        instances.c.app_id == bindparam("k_a"),
        instances.c.last_seen < bindparam("seen"),
    )
    .values(last_seen=bindparam("seen"))
)


class LastSeen:
    """Pending last-seen touches of one process; thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[tuple[str, str], datetime] = {}

    def touch(self, machine_id: str, app_id: str, at: datetime) -> None:
        """Note that (machine, app) was seen at ``at``; written by the next flush."""
        key = (machine_id, app_id)
        with self._lock:
            prev = self._pending.get(key)
            if prev is None or at > prev:
                self._pending[key] = at

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every pending touch in one statement; return how many machines it carried.

        A row never moves backwards (``last_seen < new``), so a flush racing a state-changing
        check-in of the same machine is harmless. On a database error the touches are put back
        for the next flush (a newer touch of the same machine wins).
        """
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                with self.engine.begin() as conn:
                    if self._pg:
                        conn.execute(
                            _PG_FLUSH,
                            {
                                "m": [k[0] for k in batch],
                                "a": [k[1] for k in batch],
                                "t": list(batch.values()),
                            },
                        )
                    else:
                        conn.execute(
                            _SQLITE_FLUSH,
                            [{"k_m": m, "k_a": a, "seen": t} for (m, a), t in batch.items()],
                        )
            except Exception:
                with self._lock:
                    for key, at in batch.items():
                        if key not in self._pending or self._pending[key] < at:
                            self._pending[key] = at
                raise
            return len(batch)
