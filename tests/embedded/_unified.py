"""A small runner for MongoDB's unified-format CRUD spec tests, over the embedded database.

The format is MongoDB's ``source/unified-test-format/unified-test-format.md``
(``mongodb/specifications``): each file creates a client, databases and
collections, seeds ``initialData``, runs ``operations`` (each with an
``expectResult`` or ``expectError``) and compares the collections with
``outcome``. This runner implements the parts the CRUD files use, emulating a
MongoDB 7.0 standalone:

- :func:`load_cases` reads every file (Extended JSON) and tells, per test,
  why it does not apply (:attr:`Case.skip`): server versions or topologies
  other than a 7.0 standalone, sessions, fail points, PyMongo APIs that do not
  exist, or a test whose only assertions are the commands a driver sends
  (``expectEvents``, APM command monitoring, which an in-process database
  has no wire for). A test that also checks results or outcome runs, and
  only its ``expectEvents`` are left unchecked.
- :func:`run_case` runs one test on a fresh :func:`nsn_store.testing.mongomock_client`.
- :func:`match` is the spec's "Evaluating Matches" (root documents may hold
  extra fields, numbers compare across int32/int64/double, the ``$$``
  operators), :func:`same` the exact comparison ``outcome`` asks for.

A ``NotImplementedError`` from the embedded database is never taken for an
expected error: it propagates, so a refused feature is visible as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bson import Decimal128, Int64, ObjectId, json_util
from bson.binary import Binary
from bson.codec_options import CodecOptions
from bson.json_util import JSONOptions
from bson.regex import Regex
from bson.timestamp import Timestamp
from pymongo import ReturnDocument, operations
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    InvalidOperation,
    PyMongoError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

SERVER_VERSION = (7, 0, 0)
TOPOLOGY = "single"
JSON_OPTIONS = JSONOptions(document_class=dict, tz_aware=False)


class Missing:
    """The value of an absent field (``$$exists: false``, ``$$unsetOrMatches``)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = Missing()


# ------------------------------------------------------------------ loading


@dataclass
class Case:
    """One test of one spec file: what to run and, when it does not apply, why."""

    file: str
    description: str
    spec: dict[str, Any]
    test: dict[str, Any]
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}::{self.description}"


def load_cases(directory: Path) -> list[Case]:
    """Return every test of every ``*.json`` file in ``directory``, in file order."""
    cases = []
    for path in sorted(directory.glob("*.json")):
        spec = json_util.loads(path.read_text(encoding="utf-8"), json_options=JSON_OPTIONS)
        for test in spec["tests"]:
            case = Case(path.stem, test["description"], spec, test)
            case.skip = why_not_applicable(spec, test)
            cases.append(case)
    return cases


def why_not_applicable(spec: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """Return why a test cannot run on the embedded database (a 7.0 standalone), or None."""
    if "skipReason" in test:
        return f"the spec skips it: {test['skipReason']}"
    for requirements in (spec.get("runOnRequirements"), test.get("runOnRequirements")):
        if requirements is not None and not any(satisfied(r) for r in requirements):
            return f"needs another server: runOnRequirements {list(requirements)}"
    if any("session" in entity for entity in spec.get("createEntities", ())):
        return "uses sessions (not a CRUD feature of the embedded database)"
    for operation in test["operations"]:
        stages = (operation.get("arguments") or {}).get("pipeline") or ()
        state = [s for stage in stages for s in stage if s in SERVER_STATE_STAGES]
        if state:
            return f"reads the server's own state ({state[0]}: sessions), not collection data"
        if operation.get("object") == "testRunner":
            return f"uses the server test command {operation['name']} (fail points)"
        if operation["name"] in UNAVAILABLE:
            return UNAVAILABLE[operation["name"]]
    if not any(_asserts_results(op) for op in test["operations"]) and "outcome" not in test:
        return "asserts only the commands a driver sends (expectEvents, APM command monitoring)"
    return None


SERVER_STATE_STAGES = ("$listLocalSessions", "$listSessions", "$currentOp")
UNAVAILABLE = {
    "count": "count(): PyMongo 4 has no Collection.count (countDocuments replaces it)",
    "clientBulkWrite": "MongoClient.bulk_write needs the 8.0 bulkWrite command",
}


def _asserts_results(operation: Mapping[str, Any]) -> bool:
    return "expectResult" in operation or "expectError" in operation


def satisfied(requirement: Mapping[str, Any]) -> bool:
    """Tell whether a 7.0 standalone without auth meets one ``runOnRequirement``."""
    low = requirement.get("minServerVersion")
    if low is not None and version(low) > SERVER_VERSION:
        return False
    high = requirement.get("maxServerVersion")
    if high is not None and version(high) < SERVER_VERSION:
        return False
    topologies = requirement.get("topologies")
    if topologies is not None and TOPOLOGY not in topologies:
        return False
    if requirement.get("serverless") == "require":
        return False
    if requirement.get("auth") is True or requirement.get("csfle"):
        return False
    return "serverParameters" not in requirement


def version(text: str) -> tuple[int, ...]:
    """Return ``"4.4"`` as ``(4, 4, 0)``."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


# ------------------------------------------------------------------ running


@dataclass
class Entities:
    """The test's entity map: clients, databases and collections by id."""

    client: Any
    items: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.items[name]


def run_case(case: Case, client: Any) -> None:
    """Run one test on ``client`` (a fresh embedded client); raise AssertionError on a mismatch."""
    for data in case.spec.get("initialData", ()):
        seed(client, data)
    entities = create_entities(client, case.spec.get("createEntities", ()))
    for index, operation in enumerate(case.test["operations"]):
        try:
            run_operation(entities, operation)
        except AssertionError as error:
            raise AssertionError(f"operation {index} ({operation['name']}): {error}") from None
    for data in case.test.get("outcome", ()):
        check_outcome(client, data)


def seed(client: Any, data: Mapping[str, Any]) -> None:
    """Set up one ``initialData`` collection: drop it, create it, insert its documents."""
    database = client[data["databaseName"]]
    name = data["collectionName"]
    database.drop_collection(name)
    options = dict(data.get("createOptions") or {})
    database.create_collection(name, **options)
    if data["documents"]:
        database[name].insert_many([dict(d) for d in data["documents"]])


def create_entities(client: Any, specs: Any) -> Entities:
    """Build the entity map (every client entity is the one embedded client)."""
    entities = Entities(client)
    for spec in specs:
        kind, options = next(iter(spec.items()))
        if kind == "client":
            entities.items[options["id"]] = client
        elif kind == "database":
            database = entities[options["client"]][options["databaseName"]]
            extra = _concerns(options.get("databaseOptions") or {})
            entities.items[options["id"]] = database.with_options(**extra) if extra else database
        elif kind == "collection":
            collection = entities[options["database"]][options["collectionName"]]
            extra = _concerns(options.get("collectionOptions") or {})
            entities.items[options["id"]] = (
                collection.with_options(**extra) if extra else collection
            )
        else:
            raise AssertionError(f"unsupported entity {kind!r}")
    return entities


def _concerns(options: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "writeConcern" in options:
        found["write_concern"] = WriteConcern(**_write_concern(options["writeConcern"]))
    if "readConcern" in options:
        found["read_concern"] = ReadConcern(**options["readConcern"])
    return found


def _write_concern(spec: Mapping[str, Any]) -> dict[str, Any]:
    names = {"journal": "j", "wtimeoutMS": "wtimeout"}
    return {names.get(k, k): v for k, v in spec.items()}


def run_operation(entities: Entities, operation: Mapping[str, Any]) -> None:
    """Run one operation and check its ``expectResult`` or ``expectError``."""
    target = entities[operation["object"]]
    name = operation["name"]
    arguments = dict(operation.get("arguments") or {})
    call = OPERATIONS.get(name)
    if call is None:
        raise AssertionError(f"the runner does not know the operation {name!r}")
    expect_error = operation.get("expectError")
    try:
        result = call(target, arguments)
    except NotImplementedError:
        raise  # a refused feature is never an expected error
    except Exception as error:
        if expect_error is None:
            raise
        check_error(error, expect_error, name)
        return
    if expect_error is not None:
        raise AssertionError(f"expected an error {expect_error}, got the result {result!r}")
    if "expectResult" in operation:
        match(operation["expectResult"], result, root=_root_result(name), where="result")


def _root_result(name: str) -> bool:
    return name not in ("distinct",)


# ------------------------------------------------------------- operations


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Option names PyMongo takes in camelCase, as command fields (**kwargs).
CAMEL_KWARGS = {"allowDiskUse", "batchSize", "maxTimeMS"}


def _options(arguments: Mapping[str, Any], camel: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Return spec arguments as PyMongo keyword arguments."""
    options: dict[str, Any] = {}
    for key, value in arguments.items():
        if key in camel:
            options[key] = value
        elif key == "sort" and isinstance(value, Mapping):
            options["sort"] = list(value.items())
        elif key == "returnDocument":
            options["return_document"] = _return_document(value)
        elif key in ("writeConcern", "readConcern"):
            options.update(_concerns({key: value}))
        elif key == "maxTimeMS":
            options["max_time_ms"] = value
        else:
            options[_snake(key)] = value
    return options


def _return_document(value: str) -> Any:
    if value.lower() == "after":
        return ReturnDocument.AFTER
    if value.lower() == "before":
        return ReturnDocument.BEFORE
    raise AssertionError(f"returnDocument {value!r} is neither Before nor After")


def _insert_one(collection: Any, arguments: dict[str, Any]) -> Any:
    result = collection.insert_one(**_options(arguments))
    if not result.acknowledged:
        return {"acknowledged": False}
    return {"insertedId": result.inserted_id}


def _insert_many(collection: Any, arguments: dict[str, Any]) -> Any:
    result = collection.insert_many(**_options(arguments))
    if not result.acknowledged:
        return {"acknowledged": False}
    return {"insertedIds": {str(i): v for i, v in enumerate(result.inserted_ids)}}


def _update_result(result: Any) -> Any:
    if not result.acknowledged:
        return {"acknowledged": False}
    found = {
        "matchedCount": result.matched_count,
        "modifiedCount": result.modified_count,
        "upsertedCount": 0 if result.upserted_id is None else 1,
    }
    if result.upserted_id is not None:
        found["upsertedId"] = result.upserted_id
    return found


def _delete_result(result: Any) -> Any:
    if not result.acknowledged:
        return {"acknowledged": False}
    return {"deletedCount": result.deleted_count}


def _bulk_result(result: Any) -> Any:
    if not result.acknowledged:
        return {"acknowledged": False}
    return {
        "deletedCount": result.deleted_count,
        "insertedCount": result.inserted_count,
        "matchedCount": result.matched_count,
        "modifiedCount": result.modified_count,
        "upsertedCount": result.upserted_count,
        "upsertedIds": {str(i): v for i, v in result.upserted_ids.items()},
    }


def _bulk_error_result(details: Mapping[str, Any]) -> dict[str, Any]:
    """Return the partial BulkWriteResult a BulkWriteError carries, as a document."""
    return {
        "deletedCount": details.get("nRemoved", 0),
        "insertedCount": details.get("nInserted", 0),
        "matchedCount": details.get("nMatched", 0),
        "modifiedCount": details.get("nModified", 0),
        "upsertedCount": details.get("nUpserted", 0),
        "upsertedIds": {str(u["index"]): u["_id"] for u in details.get("upserted", ())},
    }


def _requests(specs: list[Mapping[str, Any]]) -> list[Any]:
    models = []
    for spec in specs:
        kind, arguments = next(iter(spec.items()))
        model = getattr(operations, kind[0].upper() + kind[1:])
        models.append(model(**_options(arguments)))
    return models


def _bulk_write(collection: Any, arguments: dict[str, Any]) -> Any:
    arguments["requests"] = _requests(arguments["requests"])
    return _bulk_result(collection.bulk_write(**_options(arguments)))


def _find(collection: Any, arguments: dict[str, Any]) -> Any:
    return list(collection.find(**_options(arguments, frozenset({"allowDiskUse"}))))


def _aggregate(target: Any, arguments: dict[str, Any]) -> Any:
    options = _options(arguments, frozenset(CAMEL_KWARGS | {"bypassDocumentValidation"}))
    return list(target.aggregate(**options))


def _distinct(collection: Any, arguments: dict[str, Any]) -> Any:
    arguments["key"] = arguments.pop("fieldName")
    return collection.distinct(**_options(arguments))


def _find_and_modify(method: str) -> Callable[[Any, dict[str, Any]], Any]:
    def run(collection: Any, arguments: dict[str, Any]) -> Any:
        options = _options(arguments, frozenset({"bypassDocumentValidation"}))
        return getattr(collection, method)(**options)

    return run


def _plain(method: str, convert: Callable[[Any], Any] = lambda r: r) -> Callable[..., Any]:
    def run(target: Any, arguments: dict[str, Any]) -> Any:
        return convert(getattr(target, method)(**_options(arguments)))

    return run


def _create_index(collection: Any, arguments: dict[str, Any]) -> Any:
    arguments["keys"] = list(arguments["keys"].items())
    return collection.create_index(**_options(arguments))


def _modify_collection(database: Any, arguments: dict[str, Any]) -> Any:
    name = arguments.pop("collection")
    return database.command({"collMod": name, **arguments})


OPERATIONS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "insertOne": _insert_one,
    "insertMany": _insert_many,
    "updateOne": _plain("update_one", _update_result),
    "updateMany": _plain("update_many", _update_result),
    "replaceOne": _plain("replace_one", _update_result),
    "deleteOne": _plain("delete_one", _delete_result),
    "deleteMany": _plain("delete_many", _delete_result),
    "bulkWrite": _bulk_write,
    "find": _find,
    "findOne": _plain("find_one"),
    "findOneAndDelete": _find_and_modify("find_one_and_delete"),
    "findOneAndReplace": _find_and_modify("find_one_and_replace"),
    "findOneAndUpdate": _find_and_modify("find_one_and_update"),
    "aggregate": _aggregate,
    "countDocuments": _plain("count_documents"),
    "estimatedDocumentCount": _plain("estimated_document_count"),
    "distinct": _distinct,
    "createIndex": _create_index,
    "modifyCollection": _modify_collection,
}


# ------------------------------------------------------------------ errors


def is_client_error(error: BaseException) -> bool:
    """Tell whether ``error`` comes from the driver, not from a server reply."""
    if isinstance(error, (InvalidOperation, ConfigurationError)):
        return True
    return not isinstance(error, PyMongoError)


def _server_errors(error: BaseException) -> list[Mapping[str, Any]]:
    details = getattr(error, "details", None) or {}
    if isinstance(error, BulkWriteError):
        return [*details.get("writeErrors", ()), *details.get("writeConcernErrors", ())]
    return [details] if details else []


def check_error(error: BaseException, expected: Mapping[str, Any], operation: str) -> None:
    """Check a raised error against an ``expectError`` document."""
    shown = f"{type(error).__name__}: {error}"
    client = expected.get("isClientError")
    if client is not None and is_client_error(error) != client:
        raise AssertionError(f"isClientError {client} but got {shown}")
    errors = _server_errors(error)
    contains = expected.get("errorContains")
    if contains is not None:
        text = str(getattr(error, "details", None) or "") if errors else ""
        if contains.lower() not in (str(error) + " " + text).lower():
            raise AssertionError(f"errorContains {contains!r} but got {shown}")
    code = expected.get("errorCode")
    if code is not None and not any(e.get("code") == code for e in errors):
        raise AssertionError(f"errorCode {code} but got {shown} ({errors})")
    code_name = expected.get("errorCodeName")
    if code_name is not None and not any(
        str(e.get("codeName", "")).lower() == code_name.lower() for e in errors
    ):
        raise AssertionError(f"errorCodeName {code_name} but got {shown} ({errors})")
    if "errorResponse" in expected:
        match(expected["errorResponse"], getattr(error, "details", None), root=True, where="error")
    if "expectResult" in expected:
        if not isinstance(error, BulkWriteError):
            raise AssertionError(f"expected a partial result with {shown}")
        actual = _bulk_error_result(error.details)
        match(expected["expectResult"], actual, root=True, where="partial result")
    for label in expected.get("errorLabelsContain", ()):
        if not (isinstance(error, PyMongoError) and error.has_error_label(label)):
            raise AssertionError(f"errorLabelsContain {label!r} but got {shown}")


# ----------------------------------------------------------------- outcome


def check_outcome(client: Any, data: Mapping[str, Any]) -> None:
    """Check that a collection holds exactly ``data["documents"]`` (sorted by ``_id``)."""
    collection = client[data["databaseName"]].get_collection(
        data["collectionName"], codec_options=CodecOptions(tz_aware=False)
    )
    actual = list(collection.find({}, sort=[("_id", 1)]))
    expected = list(data["documents"])
    if not same(expected, actual):
        raise AssertionError(f"outcome of {data['collectionName']}: {actual!r} != {expected!r}")


# ---------------------------------------------------------------- matching


def match(expected: Any, actual: Any, *, root: bool, where: str) -> None:
    """Assert that ``actual`` matches ``expected`` (the spec's "Evaluating Matches")."""
    if _is_operator(expected):
        _special(expected, actual, root=root, where=where)
        return
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            raise AssertionError(f"{where}: expected a document {expected!r}, got {actual!r}")
        for key, value in expected.items():
            found = actual.get(key, MISSING)
            if _is_operator(value) and "$$exists" in value:
                if (found is not MISSING) != bool(value["$$exists"]):
                    raise AssertionError(f"{where}.{key}: $$exists {value['$$exists']}")
                continue
            if _is_operator(value) and "$$unsetOrMatches" in value and found is MISSING:
                continue
            if found is MISSING:
                raise AssertionError(f"{where}.{key}: missing (expected {value!r})")
            match(value, found, root=False, where=f"{where}.{key}")
        extra = set(actual) - set(expected)
        if not root and extra:
            raise AssertionError(f"{where}: unexpected fields {sorted(extra)} in {actual!r}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise AssertionError(f"{where}: expected {expected!r}, got {actual!r}")
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            match(e, a, root=root and isinstance(e, Mapping), where=f"{where}[{index}]")
        return
    if not scalar_equal(expected, actual):
        raise AssertionError(f"{where}: expected {expected!r}, got {actual!r}")


def _is_operator(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) == 1
        and isinstance(next(iter(value)), str)
        and next(iter(value)).startswith("$$")
    )


def _special(expected: Mapping[str, Any], actual: Any, *, root: bool, where: str) -> None:
    operator, argument = next(iter(expected.items()))
    if operator == "$$unsetOrMatches":
        if actual is not MISSING:
            match(argument, actual, root=root, where=where)
    elif operator == "$$type":
        names = argument if isinstance(argument, list) else [argument]
        if actual is MISSING or not any(type_matches(n, actual) for n in names):
            raise AssertionError(f"{where}: $$type {names} but got {actual!r}")
    elif operator == "$$exists":
        if (actual is not MISSING) != bool(argument):
            raise AssertionError(f"{where}: $$exists {argument}")
    elif operator == "$$lte":
        if not _number(actual) or not actual <= argument:
            raise AssertionError(f"{where}: $$lte {argument} but got {actual!r}")
    elif operator == "$$matchAsRoot":
        match(argument, actual, root=True, where=where)
    elif operator == "$$matchAsDocument":
        parsed = json_util.loads(actual, json_options=JSON_OPTIONS)
        match(argument, parsed, root=False, where=where)
    else:
        raise AssertionError(f"{where}: the runner does not know the operator {operator}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalar_equal(expected: Any, actual: Any) -> bool:
    """Compare two non-container values: numbers across int32/int64/double, dates as UTC."""
    if _number(expected) or _number(actual):
        return _number(expected) and _number(actual) and expected == actual
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        return _utc(expected) == _utc(actual)
    if type(expected) is not type(actual) and not (
        isinstance(expected, Binary) and isinstance(actual, bytes)
    ):
        return False
    return bool(expected == actual)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def same(expected: Any, actual: Any) -> bool:
    """Tell whether two values are exactly equal (key order aside, numbers by value)."""
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and set(expected) == set(actual)
            and all(same(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return scalar_equal(expected, actual)


def type_matches(name: str, value: Any) -> bool:
    """Tell whether ``value`` has the BSON type ``name`` (the ``$type`` aliases)."""
    if name == "number":
        return any(type_matches(n, value) for n in ("int", "long", "double", "decimal"))
    return bson_type(value) == name


def bson_type(value: Any) -> str:
    """Return the ``$type`` alias of a decoded BSON value."""
    checks: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "bool"),
        (Int64, "long"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (ObjectId, "objectId"),
        (datetime, "date"),
        (Decimal128, "decimal"),
        (Timestamp, "timestamp"),
        ((Regex, re.Pattern), "regex"),
        ((bytes, Binary), "binData"),
        (Mapping, "object"),
        (list, "array"),
        (type(None), "null"),
    ]
    for kinds, name in checks:
        if isinstance(value, kinds):
            return name
    return type(value).__name__
