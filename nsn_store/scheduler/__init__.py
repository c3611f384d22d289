"""Schedule, claim and finish messages by ``sendAt``: the worker hot path, sync and asyncio.

:class:`Scheduler` and :class:`AsyncScheduler` declare their methods over the
same flows (:mod:`._flows`), built on the pure query and update builders
(:mod:`._queries`, :mod:`._updates`); :func:`backoff` is the retry delay they
apply. :class:`Backlog`, :class:`DeadLetter` and :class:`MessageHistory` are
what ``backlog``, ``failed`` and ``show`` return.
"""

from nsn_store.scheduler._flows import Backlog, DeadLetter, MessageHistory
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
    "DeadLetter",
    "MessageHistory",
    "ScheduleRequest",
    "Scheduler",
    "backoff",
]
