"""The all-positional ``$[]`` and filtered positional ``$[identifier]`` update operators.

mongomock implements neither ``arrayFilters`` nor ``$[]`` (it crashes with a
``TypeError`` on both). A server (``update_array_node.cpp``,
``parsed_update_array_filters.cpp``) parses the array filters with the update:
each filter names one identifier (``{"i.b": 3}`` is about ``i``), an
identifier is an alphanumeric string starting with a lowercase letter, each
identifier in the update needs a filter and each filter must be used. Then,
for each document, ``$[]`` stands for every element of the array at that
point of the path and ``$[i]`` for every element the filter for ``i``
matches (evaluated on ``{i: element}``).

Here :func:`expand` rewrites each such path into the concrete paths
(``y.$[i].b`` into ``y.0.b``, ``y.3.b``) of one document, and the update runs
on those through the usual path, so every update operator gets them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pymongo.common import validate_is_mapping, validate_list
from pymongo.errors import WriteError

from nsn_store.embedded.arithmetic import shell

Matcher = Callable[[Mapping[str, Any]], bool]
BAD_VALUE = 2
FAILED_TO_PARSE = 9
IDENTIFIER = re.compile(r"[a-z][A-Za-z0-9]*")
SEGMENT = re.compile(r"\$\[([^\]]*)\]")
# Operators for which a missing path is a no-op rather than an error.
REMOVALS = ("$unset", "$pull", "$pullAll", "$pop")


def _error(message: str, code: int) -> WriteError:
    return WriteError(message, code, {"index": 0, "code": code, "errmsg": message})


def parse(
    array_filters: Any, compile_filter: Callable[[Mapping[str, Any]], Matcher]
) -> dict[str, Matcher]:
    """Return a matcher per identifier of ``array_filters`` (none: an empty map)."""
    if array_filters is None:
        return {}
    validate_list("array_filters", array_filters)  # PyMongo's client-side check
    matchers: dict[str, Matcher] = {}
    for spec in array_filters:
        validate_is_mapping("array_filters", spec)
        name = _identifier(spec)
        if name in matchers:
            raise _error(
                f"Found multiple array filters with the same top-level field name {name}",
                FAILED_TO_PARSE,
            )
        matchers[name] = compile_filter(spec)
    return matchers


def _identifier(spec: Mapping[str, Any]) -> str:
    names = []
    for key in spec:
        if str(key).startswith("$"):
            raise NotImplementedError(
                f"an array filter with a top-level {key} is not supported by the embedded database"
            )
        names.append(str(key).split(".")[0])
    if not names:
        raise _error(
            "Cannot use an expression without a top-level field name in arrayFilters", BAD_VALUE
        )
    distinct = list(dict.fromkeys(names))
    if len(distinct) > 1:
        raise _error(
            "Error parsing array filter :: caused by :: Expected a single top-level field name, "
            f"found '{distinct[0]}' and '{distinct[1]}'",
            FAILED_TO_PARSE,
        )
    if not IDENTIFIER.fullmatch(distinct[0]):
        raise _error(
            "Error parsing array filter :: caused by :: The top-level field name must be an "
            f"alphanumeric string beginning with a lowercase letter, found '{distinct[0]}'",
            BAD_VALUE,
        )
    return distinct[0]


def positional(update: Any) -> bool:
    """Tell whether an update document uses ``$[]`` or ``$[identifier]``."""
    return isinstance(update, Mapping) and any(
        isinstance(fields, Mapping) and any("$[" in str(path) for path in fields)
        for fields in update.values()
    )


def check(update: Any, matchers: Mapping[str, Matcher]) -> None:
    """Refuse identifiers without a filter and filters without a use, as a server parses them."""
    used: set[str] = set()
    if isinstance(update, Mapping):
        for fields in update.values():
            for path in fields if isinstance(fields, Mapping) else ():
                for name in SEGMENT.findall(str(path)):
                    if name and name not in matchers:
                        raise _error(
                            f"No array filter found for identifier '{name}' in path '{path}'",
                            BAD_VALUE,
                        )
                    used.add(name)
    for name in matchers:
        if name not in used:
            raise _error(
                f"The array filter for identifier '{name}' was not used in the update "
                f"{shell(update)}",
                FAILED_TO_PARSE,
            )


def expand(
    update: Mapping[str, Any], document: Mapping[str, Any], matchers: Mapping[str, Matcher]
) -> dict[str, Any]:
    """Return ``update`` with its positional paths as the concrete paths of ``document``."""
    expanded: dict[str, Any] = {}
    for operator, fields in update.items():
        if not isinstance(fields, Mapping) or not any("$[" in str(p) for p in fields):
            expanded[operator] = fields
            continue
        concrete: dict[str, Any] = {}
        for path, value in fields.items():
            parts = str(path).split(".")
            for found in _paths(document, parts, [], matchers, operator in REMOVALS):
                concrete[".".join(found)] = value
        if concrete:
            expanded[operator] = concrete
    return expanded


def _paths(
    value: Any, parts: list[str], done: list[str], matchers: Mapping[str, Matcher], lenient: bool
) -> list[list[str]]:
    """Return the concrete paths ``parts`` names in ``value`` (``done``: the prefix so far)."""
    for position, part in enumerate(parts):
        segment = SEGMENT.fullmatch(part)
        if segment is None:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = None
            done = [*done, part]
            continue
        if value is None and lenient:
            return []
        if not isinstance(value, list):
            prefix = ".".join(done)
            if value is None:
                raise _error(
                    f"The path '{prefix}' must exist in the document in order to apply array "
                    "updates.",
                    BAD_VALUE,
                )
            raise _error(
                f"Cannot apply array updates to non-array element {prefix}: {shell(value)}",
                BAD_VALUE,
            )
        name, rest, found = segment.group(1), parts[position + 1 :], []
        for index, element in enumerate(value):
            if name and not matchers[name]({name: element}):
                continue
            found += _paths(element, rest, [*done, str(index)], matchers, lenient)
        return found
    return [done]
