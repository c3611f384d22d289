"""Compile a collection validator (``$jsonSchema`` plus query operators) the way MongoDB does.

``compile_validator`` parses a validator once, raising the server's parse
errors (codes 2, 9, 14, 224, 51091, with the "Parsing of collection validator
failed" context for validators), and returns a :class:`CompiledValidator`
whose ``matches``/``explain``/``error_info`` the embedded database calls on
every write. ``$jsonSchema`` clauses go to our engine (``schema_*`` modules);
the other top-level clauses are ANDed and evaluated by mongomock's matcher.

What is MongoDB-specific, and why the ``jsonschema`` library is not the engine
(its Draft 4 validator was weighed keyword by keyword):

- ``type``/``bsonType``: MongoDB types are BSON types classified from the
  Python type (bool is not a number, int vs long by range, ``Int64``,
  ``Decimal128``, dates, ObjectId...); ``type`` accepts only JSON names and
  rejects ``integer``. The library's TypeChecker could be replaced, but the
  parse errors and the root rule (a root type without ``object`` matches
  nothing) cannot be expressed in it.
- ``enum``/``uniqueItems``: whole-BSON-value equality (numbers across
  int/long/double/decimal, object field order ignored, ``True`` is not ``1``,
  duplicate enum members refused at parse time); the library's equality
  differs for ``Int64``/``Decimal128``/ordered objects.
- ``multipleOf``: Decimal128 arithmetic (doubles at 15 digits); the library
  uses float division.
- ``minimum``/``maximum``: draft-4 boolean ``exclusive*`` that need their
  sibling; NaN equals only NaN; Decimal128 compared exactly.
- ``pattern``/``patternProperties``: an unanchored search like the library,
  but compiled with ``re.ASCII`` because PCRE's ``\\w`` is ASCII-only there.
- Root no-ops (scalar and array keywords at the top level), root ``enum``
  (object members only), dotted property names as paths, encryption keywords.
- ``required``, ``properties``, ``additionalProperties``, ``dependencies``,
  ``allOf``/``anyOf``/``oneOf``/``not``, ``items``/``additionalItems``,
  ``min/maxLength``, ``min/maxItems``, ``min/maxProperties``: here the
  library's *matching* agrees with MongoDB, but not its parse errors, and the
  server's ``errInfo`` is a tree in a fixed keyword order that the library's
  flat error stream cannot produce. Running two engines per write would also
  double the cost, so these few lines are implemented here as well.

The library is therefore used where its semantics match: the test suite runs
it as a differential oracle (hypothesis) on the keywords above, so a
disagreement on the generic keywords fails a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymongo.errors import OperationFailure

from nsn_store.embedded._mongomock import filter_applies
from nsn_store.jsonschema._bsontypes import bson_equal, bson_type
from nsn_store.jsonschema._checks import (
    BAD_VALUE,
    CODE_NAMES,
    TYPE_MISMATCH,
    SchemaParseError,
    is_object,
)
from nsn_store.jsonschema._errinfo import explain_schema
from nsn_store.jsonschema._eval import field_checks, matches_root
from nsn_store.jsonschema._node import SchemaNode
from nsn_store.jsonschema._parse import parse_schema

__all__ = ["CompiledValidator", "bson_equal", "bson_type", "compile_validator"]

VALIDATOR_CONTEXT = "Parsing of collection validator failed :: caused by :: "
_LOGICAL = ("$and", "$or", "$nor")
_TOP_LEVEL_OK = frozenset(
    {
        "$and",
        "$or",
        "$nor",
        "$expr",
        "$jsonSchema",
        "$comment",
        "$alwaysTrue",
        "$alwaysFalse",
    }
)
_BANNED = {
    "$where": "$where is not allowed in this context",
    "$text": "$text is not allowed in this context",
}
_GEO_NEAR = frozenset({"$near", "$nearSphere", "$geoNear"})
_FIELD_OPERATORS = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type",
        "$regex", "$options", "$not", "$elemMatch", "$size", "$all", "$mod",
        "$bitsAllSet", "$bitsAllClear", "$bitsAnySet", "$bitsAnyClear",
        "$geoWithin", "$geoIntersects", "$within", "$maxDistance", "$minDistance",
        "$near", "$nearSphere", "$geoNear",
    }
)  # fmt: skip

Matcher = Callable[[Mapping[str, Any]], bool]
Explainer = Callable[[Mapping[str, Any]], dict[str, Any]]


class CompiledValidator:
    """A parsed validator: ``matches`` decides, ``explain`` says why not, as the server does."""

    def __init__(
        self, validator: Mapping[str, Any], clauses: list[tuple[Matcher, Explainer]]
    ) -> None:
        self.validator = validator
        self._clauses = clauses

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Tell whether ``document`` (with its ``_id``) satisfies the validator."""
        return all(match(document) for match, _ in self._clauses)

    def still_matches(self, document: Mapping[str, Any], changed: Mapping[str, int | None]) -> bool:
        """Tell whether ``document`` satisfies the validator, given it did before an update
        that changed only its top-level fields ``changed`` (each mapped to None, or
        to how many elements a ``$push`` appended to it).

        A ``$jsonSchema`` clause re-checks only what those fields decide
        (:class:`~nsn_store.jsonschema._eval.FieldChecks`); any other clause is
        evaluated whole. The verdict is always the one :meth:`matches` gives.
        """
        for match, _ in self._clauses:
            recheck = match.recheck if isinstance(match, _SchemaMatch) else None
            if not (match(document) if recheck is None else recheck(document, changed)):
                return False
        return True

    def explain(self, document: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return errInfo ``details`` for a failing document, or None if it is valid."""
        failing = [
            (index, explain)
            for index, (match, explain) in enumerate(self._clauses)
            if not match(document)
        ]
        if not failing:
            return None
        if len(self._clauses) == 1:
            return failing[0][1](document)
        clauses = [{"index": index, "details": explain(document)} for index, explain in failing]
        return {"operatorName": "$and", "clausesNotSatisfied": clauses}

    def error_info(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Return the whole ``errInfo`` of a write error: failingDocumentId and details."""
        return {
            "failingDocumentId": document.get("_id"),
            "details": self.explain(document),
        }


def compile_validator(
    validator: Mapping[str, Any],
    *,
    context: str = "validator",
    allow_encrypt: bool = True,
) -> CompiledValidator:
    """Parse ``validator`` once; raise OperationFailure with the server's code if it is invalid.

    ``context="validator"`` (create/collMod) prefixes messages with the server's
    "Parsing of collection validator failed" context and bans ``$where``,
    ``$text`` and ``$near``-style operators; ``context="query"`` (a find
    filter) does neither. ``allow_encrypt=False`` refuses ``encrypt`` keywords,
    as the server does for ``validationAction: warn`` or level ``moderate``.
    """
    try:
        if not is_object(validator):
            raise SchemaParseError(TYPE_MISMATCH, "validator must be an object")
        clauses = _compile_clauses(validator, context == "validator", allow_encrypt)
    except SchemaParseError as error:
        raise _operation_failure(error, context) from None
    return CompiledValidator(validator, clauses)


def _operation_failure(error: SchemaParseError, context: str) -> OperationFailure:
    message = (VALIDATOR_CONTEXT if context == "validator" else "") + error.message
    code_name = CODE_NAMES.get(error.code, f"Location{error.code}")
    details = {"ok": 0.0, "errmsg": message, "code": error.code, "codeName": code_name}
    return OperationFailure(message, error.code, details)


def _compile_clauses(
    spec: Mapping[str, Any], banned: bool, allow_encrypt: bool
) -> list[tuple[Matcher, Explainer]]:
    clauses: list[tuple[Matcher, Explainer]] = []
    plain: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "$jsonSchema":
            clauses.append(_schema_clause(value, allow_encrypt))
        elif key in _LOGICAL:
            clauses.append(_logical_clause(key, value, banned, allow_encrypt))
        elif key in ("$alwaysTrue", "$alwaysFalse"):
            clauses.append(_constant_clause(key))
        else:
            _check_plain(key, value, banned)
            plain[key] = value
    if plain:
        clauses.append(_plain_clause(plain))
    return clauses


def _constant_clause(key: str) -> tuple[Matcher, Explainer]:
    # mongomock does not know these operators; their meaning is fixed.
    verdict = key == "$alwaysTrue"
    details = {
        "operatorName": key,
        "specifiedAs": {key: 1},
        "reason": "expression always evaluates to false",
    }
    return (lambda doc: verdict), (lambda doc: details)


def _schema_clause(value: Any, allow_encrypt: bool) -> tuple[Matcher, Explainer]:
    if not is_object(value):
        raise SchemaParseError(TYPE_MISMATCH, "$jsonSchema must be an object")
    schema: SchemaNode = parse_schema(value, root=True, allow_encrypt=allow_encrypt)
    return _SchemaMatch(schema), (lambda doc: explain_schema(schema, doc))


class _SchemaMatch:
    """A ``$jsonSchema`` clause's matcher, with the field-by-field re-check when it splits."""

    __slots__ = ("recheck", "schema")

    def __init__(self, schema: SchemaNode) -> None:
        self.schema = schema
        checks = field_checks(schema)
        self.recheck = None if checks is None else checks.still_matches

    def __call__(self, document: Mapping[str, Any]) -> bool:
        return matches_root(self.schema, document)


def _logical_clause(
    key: str, value: Any, banned: bool, allow_encrypt: bool
) -> tuple[Matcher, Explainer]:
    subs = [
        CompiledValidator(entry, _compile_clauses(entry, banned, allow_encrypt))
        for entry in _logical_entries(key, value)
    ]
    combine: Callable[[Iterable[bool]], bool] = {
        "$and": all,
        "$or": any,
        "$nor": lambda results: not any(results),
    }[key]

    def match(doc: Mapping[str, Any]) -> bool:
        return bool(combine(sub.matches(doc) for sub in subs))

    return match, lambda doc: _explain_logical(key, subs, doc)


def _logical_entries(key: str, value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, (list, tuple)) or not value:
        raise SchemaParseError(BAD_VALUE, f"{key} must be a nonempty array")
    if not all(is_object(entry) for entry in value):
        message = "$or/$and/$nor entries need to be full objects"
        raise SchemaParseError(BAD_VALUE, message)
    return list(value)


def _explain_logical(
    key: str, subs: list[CompiledValidator], doc: Mapping[str, Any]
) -> dict[str, Any]:
    if key == "$nor":  # the server lists the clauses that matched
        matched = [i for i, sub in enumerate(subs) if sub.matches(doc)]
        satisfied = [{"index": i, "details": _matched(subs[i])} for i in matched]
        return {"operatorName": key, "clausesSatisfied": satisfied}
    failing = [
        {"index": i, "details": sub.explain(doc)}
        for i, sub in enumerate(subs)
        if not sub.matches(doc)
    ]
    return {"operatorName": key, "clausesNotSatisfied": failing}


def _matched(sub: CompiledValidator) -> dict[str, Any]:
    if set(sub.validator) == {"$jsonSchema"}:
        return {"operatorName": "$jsonSchema", "reason": "schema matched"}
    return {"operatorName": "$and", "reason": "expression matched"}


def _check_plain(key: str, value: Any, banned: bool) -> None:
    if key.startswith("$"):
        if key in _BANNED:
            if banned:
                raise SchemaParseError(BAD_VALUE, _BANNED[key])
            return
        if key not in _TOP_LEVEL_OK:
            raise SchemaParseError(BAD_VALUE, f"unknown top level operator: {key}")
        return
    if is_object(value) and value and next(iter(value)).startswith("$"):
        for operator in value:
            _check_field_operator(operator, banned)


def _check_field_operator(operator: str, banned: bool) -> None:
    if operator in _GEO_NEAR and banned:
        raise SchemaParseError(
            BAD_VALUE,
            "$geoNear, $near, and $nearSphere are not allowed in this context",
        )
    if operator not in _FIELD_OPERATORS:
        raise SchemaParseError(BAD_VALUE, f"unknown operator: {operator}")


def _plain_clause(query: dict[str, Any]) -> tuple[Matcher, Explainer]:
    def match(doc: Mapping[str, Any]) -> bool:
        try:
            return bool(filter_applies(query, doc))
        except NotImplementedError:
            raise  # an emulator gap (e.g. an $expr mongomock lacks) must never pass as a verdict
        except Exception:
            return False

    def explain(doc: Mapping[str, Any]) -> dict[str, Any]:
        # Only $jsonSchema failures are explained in the server's shape; plain
        # query clauses report which expression failed.
        return {
            "operatorName": "$and",
            "specifiedAs": dict(query),
            "reason": "expression did not match",
        }

    return match, explain
