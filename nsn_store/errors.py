"""The nsn-store error tree.

Every error the package raises derives from :class:`NsnStoreError`. Branches
carry structured data (collection, index, server code, differences) so callers
and the CLI can act on them without parsing messages. Driver errors are
translated in one place, :func:`translate`, and always chained (``raise ...
from exc``) so the original server reply stays available.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pymongo import errors as pymongo_errors

#: Server error codes the package reacts to (mongo/src/mongo/base/error_codes.yml).
DUPLICATE_KEY = 11000
DOCUMENT_VALIDATION_FAILURE = 121
NAMESPACE_EXISTS = 48
NAMESPACE_NOT_FOUND = 26
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86


class NsnStoreError(Exception):
    """Root of every error raised by nsn-store."""


class ConfigurationError(NsnStoreError):
    """A setting is wrong: a malformed URI, an unknown collection, a bad option."""


class InvalidArgumentError(ConfigurationError, ValueError):
    """An argument is out of its documented range or of the wrong type.

    Raised at the library's boundary, before any I/O, so nothing is written.
    ``argument`` names the parameter; the message never echoes a secret.
    It is also a :class:`ValueError`, the error Python code expects for a bad value.
    """

    def __init__(self, message: str, *, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidIdError(InvalidArgumentError):
    """An id is not an ObjectId nor its 24-hex string (a dict, an operator, None, ...)."""


class ConnectionFailedError(NsnStoreError):
    """The database could not be reached within the configured timeout.

    The message (so ``str()`` and ``repr()``) and ``uri`` are masked here,
    whatever the caller passes: a password or secret option of ``uri`` never
    shows, even where the message quotes it outside the URI.
    """

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        from nsn_store.masking import mask_text, mask_uri

        super().__init__(mask_text(message, uri))
        self.uri = mask_uri(uri) if uri is not None else None


class ServerError(NsnStoreError):
    """The server refused an operation; ``code`` is the server's error code."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        collection: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.collection = collection
        self.details = dict(details or {})


class DocumentValidationError(ServerError):
    """A write was rejected by the collection's validator (server code 121)."""


class DuplicateKeyError(ServerError):
    """A write would duplicate a unique index key (server code 11000)."""


class SchemaError(NsnStoreError):
    """The database schema is not what migration 0001 declares."""


class IndexConflictError(SchemaError):
    """An index exists under a declared name (or key) with different keys or options."""

    def __init__(
        self,
        message: str,
        *,
        collection: str,
        index: str,
        existing: Mapping[str, Any] | None = None,
        requested: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.collection = collection
        self.index = index
        self.existing = dict(existing or {})
        self.requested = dict(requested or {})


class DriftError(SchemaError):
    """``verify`` found differences between the database and the declared schema."""

    def __init__(self, message: str, *, differences: Sequence[Any]) -> None:
        super().__init__(message)
        self.differences = list(differences)


class ExistingDataError(SchemaError):
    """Existing documents would fail a validator that is about to be applied."""

    def __init__(self, message: str, *, collection: str, failing: int) -> None:
        super().__init__(message)
        self.collection = collection
        self.failing = failing


class MigrationLockedError(NsnStoreError):
    """Another migration run holds the lock and did not release it in time."""

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class DatabaseLockedError(NsnStoreError):
    """Another process is writing the file-backed embedded database; ``holder`` names it."""

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class NotFoundError(NsnStoreError):
    """A referenced document does not exist (or is not visible to this tenant)."""


class TenantIsolationError(NsnStoreError):
    """An operation would read or write across tenants, or change ``tenantId``."""


class InvalidTransitionError(NsnStoreError):
    """A scheduled message is not in a state that allows the requested change."""


class LeaseLostError(InvalidTransitionError):
    """The worker no longer holds the message's lease (expired or taken over)."""


def translate(exc: pymongo_errors.PyMongoError, *, collection: str | None = None) -> NsnStoreError:
    """Return the nsn-store error for a driver error (the caller chains it).

    Messages that may quote a URI (unreachable servers, configuration errors)
    go through the secret masker.
    """
    from nsn_store.masking import mask_text

    if isinstance(exc, pymongo_errors.ServerSelectionTimeoutError | pymongo_errors.AutoReconnect):
        return ConnectionFailedError(f"database unreachable: {exc}")
    if isinstance(exc, pymongo_errors.ConfigurationError | pymongo_errors.InvalidURI):
        return ConfigurationError(mask_text(str(exc)))
    if isinstance(exc, pymongo_errors.BulkWriteError):
        # A bulk write fails on its first write error, or else on a write-concern error.
        reply = exc.details or {}
        errors = reply.get("writeErrors") or reply.get("writeConcernErrors") or [{}]
        first = errors[0]
        return _from_code(first.get("code"), first.get("errmsg", str(exc)), collection, first)
    if isinstance(exc, pymongo_errors.OperationFailure):
        return _from_code(exc.code, str(exc), collection, exc.details or {})
    return ServerError(str(exc), collection=collection)


def _from_code(
    code: int | None, message: str, collection: str | None, details: Mapping[str, Any]
) -> ServerError:
    where = f" in {collection}" if collection else ""
    if code == DOCUMENT_VALIDATION_FAILURE:
        return DocumentValidationError(
            f"document failed validation{where}: {_rules(details)}",
            code=code,
            collection=collection,
            details=details,
        )
    if code == DUPLICATE_KEY:
        key = details.get("keyValue") or details.get("keyPattern") or ""
        return DuplicateKeyError(
            f"duplicate key{where}: {key}", code=code, collection=collection, details=details
        )
    return ServerError(f"{message}{where}", code=code, collection=collection, details=details)


def _rules(details: Mapping[str, Any]) -> str:
    """Summarise an ``errInfo`` as the names of the rules that failed."""
    info = details.get("errInfo", {}).get("details", {})
    names = [rule.get("operatorName", "?") for rule in info.get("schemaRulesNotSatisfied", [])]
    return ", ".join(names) or "see details"


@contextmanager
def translated(*, collection: str | None = None) -> Iterator[None]:
    """Translate driver errors raised inside the block into nsn-store errors."""
    try:
        yield
    except pymongo_errors.PyMongoError as exc:
        raise translate(exc, collection=collection) from exc
