"""The twelve generated validators, end to end: through ``create_collection`` and ``insert_one``.

The sample documents and the invalid cases are the foundation's (in
``test_schema_validators``); here they travel the whole write path, so what
the validator engine decides is also what a write gets: accepted, or
WriteError 121 with nothing written.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_schema_validators as cases  # the foundation's schema cases: a missing module fails
from bson import ObjectId
from pymongo.errors import WriteError

from nsn_store.schema._registry import SCHEMA


@pytest.fixture
def schema_db(db: Any) -> Any:
    """A database holding the twelve collections with their validators."""
    for spec in SCHEMA:
        db.create_collection(spec.name, **spec.create_options())
    return db


@pytest.mark.parametrize("name", list(cases.FULL))
@pytest.mark.parametrize("variant", ["full", "minimal"])
def test_valid_document_is_inserted(schema_db: Any, name: str, variant: str) -> None:
    instance = cases.FULL[name] if variant == "full" else cases.MINIMAL[name]
    document = cases.stored(instance)
    schema_db[name].insert_one(document)
    assert schema_db[name].count_documents({"_id": document["_id"]}) == 1


@pytest.mark.parametrize(("name", "document"), [*cases._cases(), *cases.SPECIFIC_REJECTS])
def test_invalid_document_is_refused_with_121(
    schema_db: Any, name: str, document: dict[str, Any]
) -> None:
    with pytest.raises(WriteError) as caught:
        schema_db[name].insert_one({"_id": ObjectId(), **document})
    assert caught.value.code == 121
    assert caught.value.details["errInfo"]["details"]["schemaRulesNotSatisfied"]
    assert schema_db[name].count_documents({}) == 0
