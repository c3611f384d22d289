"""Driver errors become nsn-store errors in one place, chained and structured."""

from __future__ import annotations

import pytest
from pymongo import errors as pymongo_errors

from nsn_store import errors

VALIDATION_DETAILS = {
    "index": 0,
    "code": 121,
    "errmsg": "Document failed validation",
    "errInfo": {
        "failingDocumentId": 1,
        "details": {
            "operatorName": "$jsonSchema",
            "schemaRulesNotSatisfied": [
                {"operatorName": "required"},
                {"operatorName": "properties"},
            ],
        },
    },
}


def test_validation_failure_names_the_rules_and_collection() -> None:
    exc = pymongo_errors.WriteError("Document failed validation", 121, VALIDATION_DETAILS)
    err = errors.translate(exc, collection="contacts")
    assert isinstance(err, errors.DocumentValidationError)
    assert err.code == 121 and err.collection == "contacts"
    assert "contacts" in str(err) and "required, properties" in str(err)
    assert err.details["errInfo"]["failingDocumentId"] == 1


def test_bulk_write_error_uses_its_first_write_error() -> None:
    duplicate = {"index": 1, "code": 11000, "errmsg": "E11000", "keyValue": {"clerkOrgId": "o"}}
    exc = pymongo_errors.BulkWriteError(
        {"writeErrors": [VALIDATION_DETAILS, duplicate], "nInserted": 0}
    )
    err = errors.translate(exc, collection="tenants")
    assert type(err) is errors.DocumentValidationError
    assert err.code == 121 and err.details["errInfo"]["failingDocumentId"] == 1
    reversed_order = pymongo_errors.BulkWriteError(
        {"writeErrors": [duplicate, VALIDATION_DETAILS], "nInserted": 0}
    )
    assert type(errors.translate(reversed_order)) is errors.DuplicateKeyError


def test_duplicate_key_carries_the_key_value() -> None:
    details = {"code": 11000, "keyPattern": {"clerkOrgId": 1}, "keyValue": {"clerkOrgId": "org_1"}}
    err = errors.translate(pymongo_errors.DuplicateKeyError("E11000", 11000, details))
    assert isinstance(err, errors.DuplicateKeyError)
    assert "org_1" in str(err)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            pymongo_errors.ServerSelectionTimeoutError("no servers"),
            errors.ConnectionFailedError,
            id="unreachable",
        ),
        pytest.param(
            pymongo_errors.AutoReconnect("reset"), errors.ConnectionFailedError, id="reset"
        ),
        pytest.param(pymongo_errors.InvalidURI("bad"), errors.ConfigurationError, id="bad-uri"),
        pytest.param(
            pymongo_errors.OperationFailure("boom", 2), errors.ServerError, id="other-code"
        ),
    ],
)
def test_translation_picks_the_branch(exc: Exception, expected: type) -> None:
    assert type(errors.translate(exc)) is expected  # type: ignore[arg-type]


def test_translated_chains_the_driver_error() -> None:
    original = pymongo_errors.OperationFailure("boom", 2)
    with pytest.raises(errors.ServerError) as info, errors.translated(collection="users"):
        raise original
    assert info.value.__cause__ is original
    assert info.value.code == 2


def test_bulk_write_error_with_only_a_write_concern_error() -> None:
    reply = {
        "writeErrors": [],
        "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication timed out"}],
    }
    err = errors.translate(pymongo_errors.BulkWriteError(reply))
    assert type(err) is errors.ServerError
    assert err.code == 64 and "replication" in str(err)


def test_translated_messages_that_quote_a_uri_are_masked() -> None:
    uri = "mongodb://app:s3cr#t@db.example.com/nsn"
    for exc in (
        pymongo_errors.ServerSelectionTimeoutError(f"{uri} timed out"),
        pymongo_errors.ConfigurationError(f"bad {uri}"),
    ):
        assert "s3cr" not in str(errors.translate(exc))
