"""Render the schema to ``collections/*.json`` and check those files are current.

One file per collection, numbered in creation order (``01-tenants.json``),
holding exactly the validator, validation options and index specs that
``init`` applies. The text is deterministic (indent 2, declaration key order,
trailing newline) so a schema change shows up as a clean diff in review.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nsn_store.schema._registry import SCHEMA, CollectionSpec, Schema

logger = logging.getLogger(__name__)


def file_name(order: int, spec: CollectionSpec) -> str:
    """Return the file name of the ``order``-th collection (1-based)."""
    return f"{order:02d}-{spec.name}.json"


def collection_document(order: int, spec: CollectionSpec) -> dict[str, Any]:
    """Return the content of one collection's file."""
    return {
        "collection": spec.name,
        "order": order,
        "validator": spec.validator,
        "validationLevel": spec.validation_level,
        "validationAction": spec.validation_action,
        "indexes": [index.document() for index in spec.indexes],
    }


def render(schema: Schema = SCHEMA) -> dict[str, str]:
    """Return file name -> JSON text for every collection, in creation order."""
    files: dict[str, str] = {}
    for order, spec in enumerate(schema, start=1):
        text = json.dumps(collection_document(order, spec), indent=2, ensure_ascii=False)
        files[file_name(order, spec)] = text + "\n"
    return files


def write(directory: Path, schema: Schema = SCHEMA, *, prune: bool = False) -> list[Path]:
    """Write every collection's file into ``directory``; return the paths written.

    With ``prune``, stray ``*.json`` files (say, of a renamed collection) are
    deleted so that a following :func:`check` is clean.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render(schema)
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    if prune:
        for stray in _json_files(directory) - set(rendered):
            logger.info("removing stray schema file %s", directory / stray)
            (directory / stray).unlink()
    return written


def check(directory: Path, schema: Schema = SCHEMA) -> list[str]:
    """Return the differences between ``directory`` and the schema (empty: up to date)."""
    directory = Path(directory)
    rendered = render(schema)
    problems: list[str] = []
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {name}")
            continue
        line = _first_difference(path.read_text(encoding="utf-8"), text)
        if line is not None:
            problems.append(f"differs: {name} (first difference at line {line})")
    for stray in sorted(_json_files(directory) - set(rendered)):
        problems.append(f"extra: {stray} (not generated from the schema)")
    return problems


def _json_files(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*.json")} if directory.is_dir() else set()


def _first_difference(actual: str, expected: str) -> int | None:
    """Return the 1-based line where two texts first differ, or None if equal."""
    if actual == expected:
        return None
    actual_lines, expected_lines = actual.splitlines(), expected.splitlines()
    pairs = zip(actual_lines, expected_lines, strict=False)  # one may be longer
    for number, (left, right) in enumerate(pairs, start=1):
        if left != right:
            return number
    return min(len(actual_lines), len(expected_lines)) + 1
