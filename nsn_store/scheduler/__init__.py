"""Schedule, claim and finish messages by ``sendAt``: the worker hot path, sync and asyncio.

:class:`Scheduler` and :class:`AsyncScheduler` run the same operations
(:mod:`._flows`) over the pure query and update builders (:mod:`._queries`,
:mod:`._updates`); :func:`backoff` is the retry delay they apply.
"""

from nsn_store.scheduler._flows import Backlog
from nsn_store.scheduler._service import AsyncScheduler, Scheduler
from nsn_store.scheduler._updates import (
    CANCELLED,
    DEFAULT_LEASE,
    FAILED,
    MAX_ATTEMPTS,
    PROCESSING,
    SCHEDULED,
    SENT,
    ScheduleRequest,
    backoff,
)

__all__ = [
    "CANCELLED",
    "DEFAULT_LEASE",
    "FAILED",
    "MAX_ATTEMPTS",
    "PROCESSING",
    "SCHEDULED",
    "SENT",
    "AsyncScheduler",
    "Backlog",
    "ScheduleRequest",
    "Scheduler",
    "backoff",
]
