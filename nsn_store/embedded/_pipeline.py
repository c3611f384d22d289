"""Aggregation on the embedded database: the pipeline's leading stages read through the planner.

mongomock feeds every stored document to the first stage. Here a leading run
of ``$match`` stages, then an optional ``$sort``, ``$skip`` and ``$limit``
(in that order, as a server's pipeline optimiser moves them into the query),
becomes one ``find`` the planner serves from an index; mongomock runs the
remaining stages on what it returns. The documents are the same as mongomock's
own path gives (``find`` copies, timezone-aware when the codec says so).

A final ``$merge`` stage (and the ``$dateTrunc`` and time-zone expressions the
rollup sends) are the embedded database's own (:mod:`._stages`): the stage is
checked before anything is read, then the pipeline's output is merged into its
target and the aggregate returns no documents, as on a server.

A ``$group`` made of what :mod:`._group` evaluates itself runs there, with
mongomock's answers to the last detail; any other ``$group`` and every other
stage run in mongomock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nsn_store.embedded import _mongomock, _stages
from nsn_store.embedded._group import group_stage
from nsn_store.embedded.enforce import bypassing

_process_pipeline = _mongomock.process_pipeline


def split(pipeline: Sequence[Any]) -> tuple[dict[str, Any], Any, int, int, list[Any]]:
    """Return (filter, sort, skip, limit, remaining stages) of ``pipeline``'s front."""
    stages = list(pipeline)
    filters: list[Mapping[str, Any]] = []
    while stages and _stage(stages[0], "$match") and isinstance(stages[0]["$match"], Mapping):
        filters.append(stages.pop(0)["$match"])
    sort = None
    if stages and _stage(stages[0], "$sort") and _plain_sort(stages[0]["$sort"]):
        sort = list(stages.pop(0)["$sort"].items())
    skip = limit = 0
    if stages and _stage(stages[0], "$skip") and _count(stages[0]["$skip"], 0):
        skip = stages.pop(0)["$skip"]
    if stages and _stage(stages[0], "$limit") and _count(stages[0]["$limit"], 1):
        limit = stages.pop(0)["$limit"]
    spec: dict[str, Any] = {}
    if len(filters) == 1:
        spec = dict(filters[0])
    elif filters:
        spec = {"$and": [dict(f) for f in filters]}
    return spec, sort, skip, limit, stages


def _stage(stage: Any, name: str) -> bool:
    return isinstance(stage, Mapping) and list(stage) == [name]


def _plain_sort(sort: Any) -> bool:
    return (
        isinstance(sort, Mapping)
        and bool(sort)
        and all(
            isinstance(k, str) and not k.startswith("$") and type(d) is int and d in (1, -1)
            for k, d in sort.items()
        )
    )


def _count(value: Any, minimum: int) -> bool:
    return type(value) is int and value >= minimum


def aggregate(
    collection: Any, pipeline: Any, session: Any = None, **kwargs: Any
) -> _mongomock.CommandCursorLike:
    """Run ``pipeline`` on ``collection`` with its front served by the planner.

    A final ``$merge`` writes the output into its target (validated like any
    write, unless ``bypassDocumentValidation``) and the cursor is empty.
    """
    database = collection.database
    if not isinstance(pipeline, (list, tuple)):
        cursor: _mongomock.CommandCursorLike = _process_pipeline(
            list(collection.find()), database, pipeline, session
        )
        return cursor
    stages, merge_spec = _stages.split_merge(pipeline)
    merge = None if merge_spec is None else _stages.merge_stage(database, merge_spec)
    spec, sort, skip, limit, rest = split(stages)
    found = collection.find(
        spec, sort=sort, skip=skip, limit=limit, collation=kwargs.get("collation")
    )
    output = run_stages(list(found), database, rest, session)
    if merge is None:
        return _mongomock.command_cursor(output)
    with bypassing(bool(kwargs.get("bypassDocumentValidation"))):
        merge.write(output)
    return _mongomock.command_cursor([])


def run_stages(
    documents: list[Any], database: Any, stages: Sequence[Any], session: Any = None
) -> list[Any]:
    """Run ``stages`` on ``documents``: a native ``$group`` here, other stages in mongomock."""
    if session:  # mongomock refuses it
        return list(_process_pipeline(documents, database, list(stages), session))
    pending: list[Any] = []
    for stage in stages:
        group = group_stage(stage["$group"]) if _stage(stage, "$group") else None
        if group is None or not all(type(d) is dict for d in documents):
            pending.append(stage)
            continue
        if pending:
            documents = list(_process_pipeline(documents, database, pending, None))
            pending = []
        documents = group(documents)
    if pending:
        documents = list(_process_pipeline(documents, database, pending, None))
    return documents
