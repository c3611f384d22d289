"""Every query the data modules issue is served by a declared index, or says why not.

The scheduler proves its own reads in ``test_scheduling_builders.py``; this file
does the same for counters, aggregates, previews, RAG, the tenant scope's
reference checks and the migration lock/record, with the same ESR check
(``esr_problems``: equality fields are a prefix of the index key, then the sort
fields in index order, then the range fields; ``residual`` fields are checked on
the fetched documents). A sort that runs entirely backwards is a reverse index
scan, so it is checked as the ascending sort it mirrors.

The shapes are the real ones: the sync classes run against a recording
database that keeps each filter, sort and pipeline they send (their async twins
share the same builders), and the builders that only the embedded fallback or
other modules use are called directly. Queries that no declared index can fully
serve are listed apart, each with the reason it is accepted, and the test
asserts that they are still bounded by a limit and that no index would serve
them. On a real server, ``explain()`` confirms the hot paths use the expected
index without an in-memory SORT.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from bson import ObjectId
from test_scheduler import _stages
from test_scheduling_builders import esr_problems

from nsn_store import previews, rag
from nsn_store.aggregates import _periods as periods
from nsn_store.aggregates._service import Aggregates
from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter, counter_filter
from nsn_store.migration import _checkdata as checkdata
from nsn_store.migration import _lock as migration_lock
from nsn_store.migration._results import MIGRATIONS
from nsn_store.migration._runner import init_schema
from nsn_store.previews import AIPreviews
from nsn_store.rag import RagDocuments
from nsn_store.scheduler._queries import Query
from nsn_store.schema._models import EVENT_TYPES
from nsn_store.schema._registry import MIGRATION_ID, SCHEMA
from nsn_store.tenancy import _rules as rules

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
TENANT, OTHER = ObjectId(), ObjectId()
METRIC = "messages.sent"


def esr(query: Query) -> list[str]:
    """Return the ESR problems of ``query``, reading an all-descending sort as a reverse scan."""
    if query.sort and {direction for _, direction in query.sort} == {-1}:
        query = replace(query, sort=[(name, 1) for name, _ in query.sort])
    return esr_problems(query)


# ------------------------------------------------------------ recording database


@dataclass
class Sent:
    """One query a class sent: where, which driver method, filter, sort and limit."""

    collection: str
    method: str
    filter: dict[str, Any]
    sort: list[tuple[str, int]] = field(default_factory=list)
    limit: int | None = None

    def query(self, index: str, residual: tuple[str, ...] = ()) -> Query:
        return Query(self.collection, self.filter, index, self.sort, residual)


def _sort_list(key: Any, direction: Any = None) -> list[tuple[str, int]]:
    if isinstance(key, str):
        return [(key, 1 if direction is None else int(direction))]
    return [(name, int(d)) for name, d in key]


class _Cursor:
    def __init__(self, sent: Sent) -> None:
        self.sent = sent

    def sort(self, key: Any, direction: Any = None) -> _Cursor:
        self.sent.sort = _sort_list(key, direction)
        return self

    def limit(self, n: int) -> _Cursor:
        self.sent.limit = n
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter([])


class _Collection:
    """Answer every call with "nothing there" and record the queries."""

    def __init__(self, name: str, log: list[Sent]) -> None:
        self.name, self.log = name, log

    def _sent(self, method: str, query: Any, sort: Any = None) -> Sent:
        sent = Sent(self.name, method, dict(query or {}), _sort_list(sort) if sort else [])
        self.log.append(sent)
        return sent

    def find(self, filter: Any = None, *args: Any, **kwargs: Any) -> _Cursor:
        sent = self._sent("find", filter, kwargs.get("sort"))
        sent.limit = kwargs.get("limit")  # find(filter, sort=..., limit=n): one call, as flows send
        return _Cursor(sent)

    def find_one(self, filter: Any = None, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        self._sent("find_one", filter, sort)

    def find_one_and_update(self, filter: Any, update: Any, **kwargs: Any) -> dict[str, Any]:
        self._sent("find_one_and_update", filter)
        return {"status": "streaming"}

    def update_one(self, filter: Any, update: Any, **kwargs: Any) -> Any:
        self._sent("update_one", filter)
        return SimpleNamespace(matched_count=1)

    def delete_many(self, filter: Any, **kwargs: Any) -> Any:
        self._sent("delete_many", filter)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        self._sent("count_documents", filter)
        return 0

    def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
        self._sent("aggregate", pipeline[0]["$match"])
        return []


class RecordingDB:
    """A stand-in database (not embedded, so aggregates take the server pipeline path)."""

    def __init__(self) -> None:
        self.log: list[Sent] = []

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(name, self.log)


def sent_by(action: Callable[[RecordingDB, ManualClock], Any]) -> list[Sent]:
    """Run ``action`` against a recording database; return the queries it sent."""
    db = RecordingDB()
    action(db, ManualClock(NOW))
    return db.log


def _counter(db: Any, clock: ManualClock) -> ShardedCounter:
    return ShardedCounter(db, clock=clock, rng=random.Random(7))


# ------------------------------------------------ served queries, one per I/O call

#: (id, action, [(index, residual) for each query the action sends, in order])
Expected = list[tuple[str, tuple[str, ...]]]
SHARD_KEY: Expected = [("by_tenant_metric_shard", ())]
CASES: list[tuple[str, Callable[[Any, ManualClock], Any], Expected]] = [
    ("counters.add", lambda db, c: _counter(db, c).add(TENANT, METRIC), SHARD_KEY),
    ("counters.count", lambda db, c: _counter(db, c).count(TENANT, METRIC), SHARD_KEY),
    ("counters.estimate", lambda db, c: _counter(db, c).estimate(TENANT, METRIC), SHARD_KEY),
    ("counters.reset", lambda db, c: _counter(db, c).reset(TENANT, METRIC), SHARD_KEY),
    ("counters.rebalance", lambda db, c: _counter(db, c).rebalance(TENANT, METRIC), SHARD_KEY),
    # The source filter is the caller's: this one, a tenant's sent messages, is the
    # documented use and rides by_tenantId {tenantId, status, sendAt}.
    (
        "counters.reconcile",
        lambda db, c: _counter(db, c).reconcile(
            TENANT, METRIC, source="scheduledMessages", filter={"status": "sent"}
        ),
        [("by_tenantId", ()), *SHARD_KEY],
    ),
    (
        "aggregates.rollup",  # the server pipeline's leading $match
        lambda db, c: Aggregates(db, clock=c).rollup(TENANT, "week", start=NOW, end=NOW),
        [("by_tenantId", ())],
    ),
    (
        "aggregates.series",
        lambda db, c: Aggregates(db, clock=c).series(
            TENANT, "sent", "day", NOW, NOW + timedelta(days=30)
        ),
        [("by_tenant_date_metric", ())],
    ),
    (
        "aggregates.rebuild",  # delete the rows; first and last event by createdAt
        lambda db, c: Aggregates(db, clock=c).rebuild(TENANT),
        [("by_tenant_date_metric", ()), ("by_tenantId", ()), ("by_tenantId", ())],
    ),
    # One preview by _id: the tenant and expiry are checked on that one document.
    (
        "previews.get",
        lambda db, c: AIPreviews(db, clock=c).get(TENANT, ObjectId()),
        [("_id_", ("tenantId", "expiresAt"))],
    ),
    (
        "previews.append_tokens",
        lambda db, c: AIPreviews(db, clock=c).append_tokens(TENANT, ObjectId(), "hi"),
        [("_id_", ("tenantId", "expiresAt", "status"))],
    ),
    (
        "previews.complete",
        lambda db, c: AIPreviews(db, clock=c).complete(TENANT, ObjectId()),
        [("_id_", ("tenantId", "expiresAt", "status"))],
    ),
    (
        "previews.fail",
        lambda db, c: AIPreviews(db, clock=c).fail(TENANT, ObjectId()),
        [("_id_", ("tenantId", "expiresAt", "status"))],
    ),
]


@pytest.mark.parametrize(("action", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_query_of_the_data_classes_is_served_in_esr_order(
    action: Callable[[Any, ManualClock], Any], expected: Expected
) -> None:
    sent = sent_by(action)
    assert len(sent) == len(expected), [s.method for s in sent]
    for query, (index, residual) in zip(sent, expected, strict=False):
        assert esr(query.query(index, residual)) == [], (query, index)


def test_the_hot_paths_send_exactly_their_pure_builders_filters() -> None:
    (count,) = sent_by(lambda db, c: _counter(db, c).count(TENANT, METRIC))
    assert count.filter == counter_filter(TENANT, METRIC) and count.sort == []
    (series,) = sent_by(
        lambda db, c: Aggregates(db, clock=c).series(
            TENANT, "sent", "week", NOW, NOW + timedelta(days=14)
        )
    )
    window = periods.period_window("week", NOW, NOW + timedelta(days=14))
    assert series.filter == periods.series_filter(TENANT, "sent", window)
    assert series.sort == [("date", 1)]
    (rollup,) = sent_by(
        lambda db, c: Aggregates(db, clock=c).rollup(
            TENANT, "week", start=NOW, end=NOW + timedelta(days=14)
        )
    )
    assert rollup.filter == periods.event_match(TENANT, window)
    preview_id = ObjectId()
    (get,) = sent_by(lambda db, c: AIPreviews(db, clock=c).get(TENANT, preview_id))
    assert get.filter == previews.live_filter(TENANT, NOW, preview_id)


def test_a_series_lists_each_period_start_so_the_date_is_an_equality() -> None:
    window = periods.period_window("month", NOW, datetime(2026, 4, 2, tzinfo=timezone.utc))
    query = periods.series_filter(TENANT, "sent", window)
    assert query["date"] == {"$in": ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"]}
    # by_tenant_period would serve it too, but only with metric checked after the fetch.
    assert (
        esr(Query("aggregates", query, "by_tenant_period", [("date", 1)], residual=("metric",)))
        == []
    )
    assert esr(Query("aggregates", query, "by_tenant_period", [("date", 1)]))


def test_the_rollup_merge_key_is_a_declared_unique_index() -> None:
    # $merge "on" fields must be backed by a unique index, or the server refuses the stage.
    unique = [{k for k, _ in i.keys} for i in SCHEMA.get("aggregates").indexes if i.unique]
    assert set(periods.MERGE_KEY) in unique


# ------------------------------------------- builders the classes above do not reach

WINDOW = periods.period_window("week", NOW, NOW + timedelta(days=7))
BUILDER_QUERIES: list[tuple[str, Query]] = [
    # The embedded rollup fallback: its events, the rows it compares, one row upsert.
    (
        "aggregates.embedded.events",
        Query("messageEvents", periods.event_match(TENANT, WINDOW), "by_tenantId"),
    ),
    (
        "aggregates.embedded.rows",
        Query("aggregates", periods.rows_filter(TENANT, WINDOW), "by_tenant_period"),
    ),
    (
        "aggregates.embedded.row",
        Query(
            "aggregates",
            periods.row_filter(TENANT, "week", "sent", "2026-01-05"),
            "by_tenant_date_metric",
        ),
    ),
    # The migration lock and record are single documents in nsn_migrations, by _id.
    (
        "migrations.take_lock",
        Query(MIGRATIONS, migration_lock.free_lock_filter(NOW), "_id_", residual=("expiresAt",)),
    ),
    (
        "migrations.refresh_or_release",
        Query(
            MIGRATIONS, {"_id": migration_lock.LOCK_ID, "holder": "h"}, "_id_", residual=("holder",)
        ),
    ),
    ("migrations.record", Query(MIGRATIONS, {"_id": MIGRATION_ID}, "_id_")),
]


@pytest.mark.parametrize(
    "query", [q for _, q in BUILDER_QUERIES], ids=[name for name, _ in BUILDER_QUERIES]
)
def test_builder_queries_are_served_in_esr_order(query: Query) -> None:
    assert esr(query) == []


REFERENCED = {name: {ObjectId()} for name in set(rules.REFERENCES.values())}


@pytest.mark.parametrize(
    ("collection", "query"),
    [(c, q) for c, q, _ in rules.reference_check_queries(TENANT, REFERENCED)],
    ids=sorted(REFERENCED),
)
def test_reference_checks_look_up_ids_and_check_the_tenant_on_them(
    collection: str, query: dict[str, Any]
) -> None:
    assert esr(Query(collection, query, "_id_", residual=("tenantId",))) == []


@pytest.mark.parametrize("name", rules.tenant_collections())
def test_every_tenant_scope_filter_has_an_index_led_by_tenant_id(name: str) -> None:
    # A scoped find and a scoped pipeline's leading $match are {tenantId, ...}.
    led = [i.name for i in SCHEMA.get(name).indexes if i.keys[0][0] == "tenantId"]
    assert led, f"{name} has no index starting with tenantId"
    for query in (
        rules.scope_filter(TENANT, None),
        rules.scope_pipeline(TENANT, [])[0]["$match"],
    ):
        assert esr(Query(name, query, led[0])) == []


def test_the_data_check_is_a_full_scan_by_design() -> None:
    # A validator check must read every document; $nor leaves no field an index could use.
    query = checkdata.violation_filter(SCHEMA.get("contacts").validator)
    assert all(key.startswith("$") for key in query)


# --------------------------------------- deliberately not fully served: and why

#: (id, action, index used, residual, limit that bounds the in-memory sort)
UNSERVED: list[tuple[str, Callable[[Any, ManualClock], Any], str, tuple[str, ...], int]] = [
    # the data model fixes aiPreviews.by_tenantId to {tenantId}: newest-first needs a
    # top-k SORT of the tenant's live previews, which TTL keeps few; limit bounds it.
    (
        "previews.list",
        lambda db, c: AIPreviews(db, clock=c).list(TENANT),
        "by_tenantId",
        ("expiresAt",),
        previews.DEFAULT_LIST_LIMIT,
    ),
    # ragDocuments.by_tenantId is {tenantId} too: a top-k SORT over the tenant's passages.
    (
        "rag.list",
        lambda db, c: RagDocuments(db, clock=c).list(TENANT),
        "by_tenantId",
        (),
        rag.DEFAULT_LIST_LIMIT,
    ),
    # Substring search is a regex over text/title: no B-tree index can seek it, so the
    # tenant's passages are scanned (Atlas Search or $text is the at-scale answer).
    (
        "rag.search",
        lambda db, c: RagDocuments(db, clock=c).search(TENANT, "x"),
        "by_tenantId",
        ("$or",),
        rag.DEFAULT_LIMIT,
    ),
]


def _serving_indexes(query: Query) -> list[str]:
    """Return the declared indexes that give ``query`` its sort (other fields residual)."""
    names = ["_id_", *(i.name for i in SCHEMA.get(query.collection).indexes)]
    serving = []
    for name in names:
        keys = (
            ["_id"]
            if name == "_id_"
            else [k for k, _ in SCHEMA.get(query.collection).index(name).keys]
        )
        residual = tuple(f for f in query.filter if f not in keys)
        if not esr(replace(query, index=name, residual=residual)):
            serving.append(name)
    return serving


@pytest.mark.parametrize(
    ("action", "index", "residual", "limit"),
    [u[1:] for u in UNSERVED],
    ids=[u[0] for u in UNSERVED],
)
def test_deliberately_unserved_sorts_are_bounded_and_no_index_could_serve_them(
    action: Callable[[Any, ManualClock], Any], index: str, residual: tuple[str, ...], limit: int
) -> None:
    (sent,) = sent_by(action)
    problems = esr(sent.query(index, residual))
    assert len(problems) == 1 and problems[0].startswith("sort"), problems
    assert sent.sort[0] == ("createdAt", -1) and sent.limit == limit
    assert _serving_indexes(sent.query(index, residual)) == []


def test_the_unserved_check_finds_the_index_when_one_gives_the_sort() -> None:
    # Guard for the helper above: the first event of a tenant by createdAt is found on
    # by_tenantId {tenantId, createdAt} and on no other messageEvents index.
    _, first, last = sent_by(lambda db, c: Aggregates(db, clock=c).rebuild(TENANT))
    assert _serving_indexes(first.query("by_tenantId")) == ["by_tenantId"]
    assert _serving_indexes(last.query("by_tenantId")) == ["by_tenantId"]  # reverse scan


# ------------------------------------------- explain() on a server and on the embedded one


@pytest.fixture
def server_db(db: Any) -> Any:
    """The schema'd database: a real server's plans, or the embedded planner's (same shape)."""
    init_schema(db)
    return db


def _plan(explained: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return (stage names, index names) of a winning plan; IDHACK reads ``_id_``."""
    stages = _stages(explained["queryPlanner"]["winningPlan"])
    names = [stage["stage"] for stage in stages]
    indexes = [
        stage.get("indexName", "_id_")
        for stage in stages
        if stage["stage"] in ("IXSCAN", "EXPRESS_IXSCAN", "IDHACK")
    ]
    return names, indexes


def test_counter_count_scans_the_shard_key(server_db: Any, clock: ManualClock) -> None:
    counter = ShardedCounter(server_db, clock=clock, rng=random.Random(1))
    for tenant in (TENANT, OTHER):
        for metric in (METRIC, "messages.failed", "messages.scheduled"):
            for _ in range(40):
                counter.add(tenant, metric)
    explained = server_db["counters"].find(counter_filter(TENANT, METRIC)).explain()
    names, indexes = _plan(explained)
    assert indexes == ["by_tenant_metric_shard"] and "SORT" not in names


def test_aggregates_series_reads_the_unique_row_key_in_date_order(server_db: Any) -> None:
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [
        {
            "tenantId": tenant,
            "period": "day",
            "metric": metric,
            "value": 1,
            "date": periods.date_key(day + timedelta(days=n)),
            "createdAt": NOW,
            "updatedAt": NOW,
        }
        for tenant in (TENANT, OTHER)
        for metric in EVENT_TYPES
        for n in range(60)
    ]
    server_db["aggregates"].insert_many(rows)
    # Every event type has a row per day, as after a rollup: by_tenant_period would
    # fetch them all and drop the other metrics; the unique key reads only "sent".
    window = periods.period_window("day", day, day + timedelta(days=30))
    cursor = (
        server_db["aggregates"].find(periods.series_filter(TENANT, "sent", window)).sort("date", 1)
    )
    names, indexes = _plan(cursor.explain())
    assert indexes == ["by_tenant_date_metric"] and "SORT" not in names


def test_preview_get_is_one_id_lookup(server_db: Any, clock: ManualClock) -> None:
    store = AIPreviews(server_db, clock=clock)
    made = [store.create(tenant, "p", ttl=600) for tenant in (TENANT, OTHER) for _ in range(30)]
    query = previews.live_filter(TENANT, clock.now(), made[3]["_id"])
    names, indexes = _plan(server_db["aiPreviews"].find(query).limit(1).explain())
    assert indexes == ["_id_"] and "SORT" not in names


@pytest.mark.parametrize(("action", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_query_of_the_data_classes_uses_its_index_on_the_embedded_database(
    action: Callable[[Any, ManualClock], Any], expected: Expected, backend: str
) -> None:
    # The embedded planner explains what it runs; the ESR check above says what it should.
    if backend != "embedded":
        pytest.skip("the recorded shapes run on the embedded planner here")
    from nsn_store.testing import mongomock_client

    db = mongomock_client()["coverage"]
    init_schema(db)
    for sent, (index, _) in zip(sent_by(action), expected, strict=True):
        cursor = db[sent.collection].find(
            sent.filter, sort=sent.sort or None, limit=sent.limit or 0
        )
        names, indexes = _plan(cursor.explain())
        assert indexes == [index], (sent, names)
        assert "SORT" not in names and "COLLSCAN" not in names, (sent, names)
