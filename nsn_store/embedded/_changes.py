"""Change streams on the embedded database, shaped like PyMongo's ``ChangeStream``.

The collection store (:mod:`.store`) is the one place documents are stored,
replaced and deleted (TTL expiry included), so it announces each change there,
under the server lock, to the subscriptions open on that collection or its
database; with none open, nothing is built and a write costs one length check.
Each subscription turns a change into an event with the server's shape
(``_id`` resume token, ``operationType``, ``ns``, ``documentKey``,
``fullDocument``, ``updateDescription``, ``clusterTime`` and ``wallTime`` from
the client's clock), applies the stream's ``$match`` stages with mongomock's
matcher and queues what passes; the stream reads the queue without the lock.

Events live only in the streams open in this process: a stream cannot be
resumed (``resume_after``, ``start_after`` and ``start_at_operation_time`` are
refused), and changes made before it opened are not replayed. Collection
drops and renames produce no events (a server sends ``drop``/``rename`` and
``invalidate``).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from bson import Timestamp

from nsn_store.clock import Clock, to_bson_time
from nsn_store.embedded import _mongomock, roundtrip

DEFAULT_AWAIT_MS = 1000  # a server's awaitData getMore waits about a second by default
FULL_DOCUMENT_MODES = (None, "default", "updateLookup")
_SEQUENCE = itertools.count(1)  # one order for every change in the process


@dataclass(frozen=True)
class Change:
    """One stored change: ``kind`` is insert, update, replace or delete."""

    seq: int
    kind: str
    collection: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None


def next_change(kind: str, collection: str, old: Any, new: Any) -> Change:
    """Number a change in the process-wide order (the store calls this under its lock)."""
    return Change(next(_SEQUENCE), kind, collection, old, new)


def token(seq: int) -> dict[str, str]:
    """Return the resume token of change number ``seq`` (a server's is ``{_data: hex}``)."""
    return {"_data": f"{seq:032X}"}


def check_watch(
    pipeline: Any, full_document: Any, max_await_time_ms: Any, **refused: Any
) -> list[dict[str, Any]]:
    """Validate ``watch``'s arguments before anything is opened; return the ``$match`` filters."""
    for name, value in refused.items():
        if value is not None and value is not False and value != "off":
            raise NotImplementedError(
                f"watch({name}=...) is not supported by the embedded database: its change "
                "streams live in this process only and cannot be resumed or collated"
            )
    if full_document not in FULL_DOCUMENT_MODES:
        if isinstance(full_document, str):
            raise NotImplementedError(
                f"full_document={full_document!r} is not supported by the embedded database "
                "(post-images need changeStreamPreAndPostImages); use 'updateLookup'"
            )
        raise TypeError(f"full_document must be a string or None, not {full_document!r}")
    if max_await_time_ms is not None and (
        isinstance(max_await_time_ms, bool) or not isinstance(max_await_time_ms, int)
    ):
        raise TypeError("max_await_time_ms must be an integer or None")
    if max_await_time_ms is not None and max_await_time_ms < 0:
        raise ValueError("max_await_time_ms must be greater than or equal to 0")
    if pipeline is None:
        return []
    if not isinstance(pipeline, list):
        raise TypeError("pipeline must be a list")
    matches = []
    for stage in pipeline:
        if not isinstance(stage, Mapping) or len(stage) != 1:
            raise TypeError(f"each change stream stage must be a one-key mapping, not {stage!r}")
        ((name, argument),) = stage.items()
        if name != "$match":
            raise NotImplementedError(
                f"change stream stage {name!r} is not supported by the embedded database "
                "(only $match is)"
            )
        if not isinstance(argument, Mapping):
            raise TypeError("$match takes a filter document")
        roundtrip.check_encodable(None, argument)
        matches.append(_mongomock.patch_datetime_awareness_in_document(dict(argument)))
    return matches


class Subscription:
    """What one stream receives: events built under the store lock, read without it."""

    def __init__(
        self,
        database: str,
        matches: Sequence[Mapping[str, Any]],
        full_document: str | None,
        clock: Clock,
    ) -> None:
        self.database = database
        self.matches = list(matches)
        self.lookup = full_document == "updateLookup"
        self.clock = clock
        self.pending: deque[dict[str, Any]] = deque()
        self.ready = threading.Condition(threading.Lock())
        self.closed = False
        self.on_publish: Callable[[], None] | None = None  # the async stream's wake-up

    def publish(self, change: Change) -> None:
        """Queue ``change`` as an event if the stream's ``$match`` stages pass it (never blocks)."""
        event = self._event(change)
        if not all(_mongomock.filter_applies(match, event) for match in self.matches):
            return
        with self.ready:
            self.pending.append(event)
            self.ready.notify_all()
        if self.on_publish is not None:
            self.on_publish()

    def _event(self, change: Change) -> dict[str, Any]:
        now = to_bson_time(self.clock.now()).astimezone(timezone.utc).replace(tzinfo=None)
        image = change.new if change.new is not None else change.old
        assert image is not None
        event: dict[str, Any] = {
            "_id": token(change.seq),
            "operationType": change.kind,
            "clusterTime": Timestamp(
                int(now.replace(tzinfo=timezone.utc).timestamp()), change.seq % 2**32
            ),
            "wallTime": now,
            "ns": {"db": self.database, "coll": change.collection},
            "documentKey": {"_id": _copy(image["_id"])},
        }
        if change.kind in ("insert", "replace") or (change.kind == "update" and self.lookup):
            # A server looks the document up when the event is read; the write's own
            # post-image is the same document unless a later write changed it again.
            event["fullDocument"] = _copy(change.new)
        if change.kind == "update":
            assert change.old is not None and change.new is not None
            updated: dict[str, Any] = {}
            removed: list[str] = []
            _diff(change.old, change.new, "", updated, removed)
            event["updateDescription"] = {
                "updatedFields": updated,
                "removedFields": removed,
                "truncatedArrays": [],
            }
        return event

    def pop(self, timeout: float) -> dict[str, Any] | None:
        """Return the next event, waiting up to ``timeout`` seconds; None if none came."""
        with self.ready:
            if not self.pending and not self.closed and timeout > 0:
                self.ready.wait_for(lambda: self.pending or self.closed, timeout=timeout)
            return self.pending.popleft() if self.pending else None

    def close(self) -> None:
        """Wake every reader waiting on this subscription."""
        with self.ready:
            self.closed = True
            self.ready.notify_all()
        if self.on_publish is not None:
            self.on_publish()


def _copy(value: Any) -> Any:
    """Return a deep copy of a stored value (the caller may change the event it gets)."""
    return roundtrip.decode(roundtrip.encode({"v": value}))["v"]


def _diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    prefix: str,
    updated: dict[str, Any],
    removed: list[str],
) -> None:
    """Fill ``updatedFields``/``removedFields`` as dotted paths, descending into sub-documents."""
    for name, value in new.items():
        path = prefix + name
        before = old.get(name, _MISSING)
        if isinstance(before, Mapping) and isinstance(value, Mapping) and value:
            _diff(before, value, path + ".", updated, removed)
        elif before is _MISSING or type(before) is not type(value) or before != value:
            updated[path] = _copy(value)
    removed.extend(prefix + name for name in old if name not in new)


_MISSING = object()


class EmbeddedChangeStream:
    """A change stream over one collection or database of the embedded database.

    Used as PyMongo's ``ChangeStream``: a context manager and an iterator
    (``next`` blocks until a change comes), with ``try_next`` (waits up to
    ``max_await_time_ms``, then returns None), ``close``, ``alive`` and
    ``resume_token``. Not resumable: see the module documentation.
    """

    def __init__(
        self,
        subscription: Subscription,
        detach: Callable[[], None],
        max_await_time_ms: int | None,
        tz_aware: bool,
        start: int,
    ) -> None:
        self._subscription = subscription
        self._detach = detach
        wait_ms = DEFAULT_AWAIT_MS if max_await_time_ms is None else max_await_time_ms
        self.wait_seconds = wait_ms / 1000  # how long try_next waits
        self._tz_aware = tz_aware
        self._resume_token: dict[str, str] = token(start)

    @property
    def alive(self) -> bool:
        """Tell whether the stream is open."""
        return not self._subscription.closed

    @property
    def resume_token(self) -> dict[str, str]:
        """The token of the last change returned (the stream's start before any)."""
        return dict(self._resume_token)

    def try_next(self) -> dict[str, Any] | None:
        """Return the next change, waiting up to ``max_await_time_ms``; None if none came."""
        return self._present(self._subscription.pop(self.wait_seconds if self.alive else 0))

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (under the store lock: it must not block) on each queued change."""
        self._subscription.on_publish = callback

    def take(self) -> dict[str, Any] | None:
        """Return a queued change without waiting (for the async stream)."""
        return self._present(self._subscription.pop(0))

    def _present(self, event: dict[str, Any] | None) -> dict[str, Any] | None:
        if event is None:
            return None
        self._resume_token = dict(event["_id"])
        if self._tz_aware:
            return _mongomock.make_datetime_timezone_aware_in_document(event)
        return event

    def next(self) -> dict[str, Any]:
        """Return the next change, blocking until one comes (StopIteration once closed)."""
        while self.alive:
            event = self.try_next()
            if event is not None:
                return event
        raise StopIteration

    __next__ = next

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def close(self) -> None:
        """Close the stream: it stops receiving changes and blocked readers return."""
        if not self._subscription.closed:
            self._detach()
            self._subscription.close()

    def __enter__(self) -> EmbeddedChangeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_seq() -> int:
    """Return a number below every later change's (a new stream's starting resume token)."""
    return next(_SEQUENCE)


def watch(
    lock: Any,
    watchers: Callable[[], Any],
    database: str,
    clock: Clock,
    tz_aware: bool,
    arguments: Mapping[str, Any],
) -> EmbeddedChangeStream:
    """Check a ``watch`` call's PyMongo ``arguments`` and open its stream (one body for
    ``Collection.watch`` and ``Database.watch``, whose signatures mirror PyMongo's)."""
    refused = {name: arguments[name] for name in REFUSED_ARGUMENTS}
    matches = check_watch(
        arguments["pipeline"],
        arguments["full_document"],
        arguments["max_await_time_ms"],
        **refused,
    )
    return open_stream(
        lock,
        watchers,
        database,
        matches,
        arguments["full_document"],
        clock,
        arguments["max_await_time_ms"],
        tz_aware,
    )


#: ``watch`` arguments the embedded database refuses unless left at their default.
REFUSED_ARGUMENTS = (
    "resume_after",
    "collation",
    "start_at_operation_time",
    "session",
    "start_after",
    "full_document_before_change",
    "show_expanded_events",
)


def open_stream(
    lock: Any,
    watchers: Callable[[], Any],
    database: str,
    matches: Sequence[Mapping[str, Any]],
    full_document: str | None,
    clock: Clock,
    max_await_time_ms: int | None,
    tz_aware: bool,
) -> EmbeddedChangeStream:
    """Subscribe a new stream to the ``watchers`` set that ``watchers()`` returns under ``lock``."""
    subscription = Subscription(database, matches, full_document, clock)
    with lock:
        target = watchers()
        target.add(subscription)
        start = start_seq()

    def detach() -> None:
        with lock:
            target.discard(subscription)

    return EmbeddedChangeStream(subscription, detach, max_await_time_ms, tz_aware, start)
