"""Keep an embedded database in a file between processes: load, save atomically, one writer.

A development database, not a server: the whole store lives in memory while a
process runs, is loaded from the file when it starts and written back when a
command that writes finishes (and at checkpoints of long-running commands).

- **Format**: a stream of BSON documents (``bson.decode_file_iter``): a header
  ``{format, version}``, then per collection one record of its options and
  indexes, then one record per document, in natural (insertion) order, which
  a reload keeps. BSON keeps every type a server keeps.
- **Atomic saves**: written to a temporary file in the same folder, flushed and
  ``fsync``-ed, then renamed over the old file (``os.replace``), and the folder
  is ``fsync``-ed. A process killed mid-save leaves the previous state intact.
- **One writer at a time**: a writer holds ``<file>.lock`` (created with
  ``O_EXCL``), which names its host, process id and command; a second writer is
  refused with :class:`~nsn_store.errors.DatabaseLockedError` naming the holder.
  A lock left by a process that no longer runs on this host is taken over.
  Readers take no lock: they load the last saved state, which a rename makes
  whole, so ``status`` and ``verify`` work while a writer runs.
- **Clients**: :func:`open_file` returns a :class:`FileBackedClient`, an
  :class:`~nsn_store.embedded.EmbeddedClient` loaded from the file. A writer
  holds the lock from opening to :meth:`~FileBackedClient.close`, which saves;
  :meth:`~FileBackedClient.save` writes a checkpoint in between. A reader never
  saves, so what it changes in memory is gone when the process ends.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import suppress
from datetime import timezone
from pathlib import Path
from typing import Any, BinaryIO

import bson
from bson.codec_options import CodecOptions

from nsn_store.clock import Clock
from nsn_store.embedded.client import EmbeddedClient
from nsn_store.embedded.store import EmbeddedCollectionStore
from nsn_store.errors import ConfigurationError, DatabaseLockedError

__all__ = ["FORMAT", "FileBackedClient", "WriterLock", "load_into", "open_file", "save_from"]

FORMAT = "nsn-store-embedded"
VERSION = 1
_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=timezone.utc)
_INDEX_FIELDS = (
    "unique",
    "sparse",
    "partialFilterExpression",
    "expireAfterSeconds",
    "collation",
    "hidden",
)


def save_from(client: Any, path: Path) -> int:
    """Write every database of ``client`` to ``path`` atomically; return the document count.

    The records are copied under the store's lock (when the client has one), so
    a save that runs while other threads write captures one consistent moment.
    """
    records = _snapshot(client)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    written = 0
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(bson.encode({"format": FORMAT, "version": VERSION}))
            for is_document, record in records:
                out.write(record)
                written += is_document
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)
    return written


def load_into(client: Any, path: Path) -> int:
    """Load ``path`` into ``client`` (an empty embedded client); return the document count.

    A missing file is an empty database. A file that is not an nsn-store
    embedded database raises :class:`~nsn_store.errors.ConfigurationError`.
    """
    try:
        source = path.open("rb")
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the embedded database file {path}: {exc.strerror}"
        ) from None
    with source:
        return _load(client, source, path)


def _load(client: Any, source: BinaryIO, path: Path) -> int:
    records = bson.decode_file_iter(source, codec_options=_CODEC)
    try:
        header = next(records, None)
        if not header or header.get("format") != FORMAT:
            raise ConfigurationError(f"{path} is not an nsn-store embedded database file")
        if header.get("version") != VERSION:
            raise ConfigurationError(
                f"{path} has format version {header.get('version')}; this nsn-store reads {VERSION}"
            )
        return _apply(client, records)
    except bson.errors.BSONError as exc:
        raise ConfigurationError(f"{path} is damaged ({exc}); restore it or delete it") from None


def _apply(client: Any, records: Iterator[dict[str, Any]]) -> int:
    loaded, collection = 0, None
    pending: list[dict[str, Any]] = []
    for record in records:
        if "collection" in record:
            _flush(collection, pending)
            collection, pending = _create(client, record["collection"]), []
        elif collection is not None:
            pending.append(record["document"])
            loaded += 1
            if len(pending) >= 1000:
                _flush(collection, pending)
                pending = []
    _flush(collection, pending)
    return loaded


def _create(client: Any, spec: Mapping[str, Any]) -> Any:
    database = client[spec["database"]]
    collection = database.create_collection(spec["name"], **spec.get("options", {}))
    for index in spec.get("indexes", []):
        options = {key: index[key] for key in _INDEX_FIELDS if key in index}
        collection.create_index(list(index["key"].items()), name=index["name"], **options)
    return collection


def _flush(collection: Any, documents: list[dict[str, Any]]) -> None:
    if collection is not None and documents:
        collection.insert_many(documents, ordered=True, bypass_document_validation=True)


def _snapshot(client: Any) -> list[tuple[bool, bytes]]:
    """Return the file's records as (is a document, BSON), read in one consistent moment."""
    store = getattr(client, "_store", None)
    lock = getattr(store, "lock", None)
    if lock is None:
        return list(_records(client))
    with lock:  # re-entrant: the reads below take it again
        return list(_records(client))


def _records(client: Any) -> Iterator[tuple[bool, bytes]]:
    for name in sorted(client.list_database_names()):
        database = client[name]
        for info in sorted(database.list_collections(), key=lambda i: i["name"]):
            collection = database[info["name"]]
            indexes = [dict(i) for i in collection.list_indexes() if i["name"] != "_id_"]
            for index in indexes:
                index["key"] = dict(index["key"])
            spec = {
                "database": name,
                "name": info["name"],
                "options": dict(info.get("options", {})),
                "indexes": indexes,
            }
            yield False, bson.encode({"collection": spec}, codec_options=_CODEC)
            # Natural order: loading inserts in file order, so it survives a reload,
            # as a server keeps it across a restart (and no sort is needed).
            store = getattr(collection, "_store", None)
            if isinstance(store, EmbeddedCollectionStore):
                for data in store.raw_documents():  # kept by the writes: nothing to encode
                    yield True, _document_record(data)
            else:
                for document in collection.find({}):
                    yield True, bson.encode({"document": document}, codec_options=_CODEC)


def _document_record(document: bytes) -> bytes:
    """Return the BSON of ``{"document": <document>}`` around an encoded document."""
    body = b"\x03document\x00" + document  # element type 3: an embedded document
    return struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"


def _fsync_folder(folder: Path) -> None:
    if sys.platform == "win32":
        return  # folders cannot be opened for fsync on Windows; the rename is enough there
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class WriterLock:
    """``<file>.lock``: held by the one process that may write the file."""

    def __init__(self, path: Path, command: str = "") -> None:
        self.path = path.with_name(path.name + ".lock")
        self.command = command
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseLockedError naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after clearing a dead holder's lock
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and _alive(holder):
                    raise DatabaseLockedError(
                        f"the embedded database {self.path.with_suffix('')} is being written by "
                        f"{_describe(holder)}; wait for it to finish or stop it",
                        holder=_describe(holder),
                    ) from None
                with suppress(FileNotFoundError):
                    self.path.unlink()  # its holder is gone
                continue
            with os.fdopen(descriptor, "w") as out:
                json.dump(
                    {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command}, out
                )
            self.held = True
            return
        raise DatabaseLockedError(f"could not take {self.path}", holder=None)

    def holder(self) -> dict[str, Any] | None:
        """Return who holds the lock (host, pid, command), or None when nobody does."""
        try:
            value = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def release(self) -> None:
        """Give the lock up (only if this object holds it)."""
        if self.held:
            with suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(holder: Mapping[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked: assume it runs
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: Mapping[str, Any]) -> str:
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"process {holder.get('pid')} on {holder.get('host')}{command}"


def open_file(
    path: Path, *, read_only: bool, clock: Clock | None = None, command: str = ""
) -> FileBackedClient:
    """Open the database kept in ``path``: a writer takes the lock first, then it loads.

    A missing file is an empty database (created by the first save). Raises
    DatabaseLockedError when another live process writes it, ConfigurationError
    when ``path`` is a folder or not an nsn-store embedded database file.
    """
    if path.is_dir():
        raise ConfigurationError(f"the embedded database file {path} is a folder: name a file")
    client = FileBackedClient(path, read_only=read_only, clock=clock, command=command)
    if client._writer is not None:
        client._writer.acquire()
    try:
        load_into(client, path)
    except BaseException:
        if client._writer is not None:
            client._writer.release()
        raise
    return client


class FileBackedClient(EmbeddedClient):
    """An embedded client kept in a file: loaded when opened, saved by a writer.

    Create it with :func:`open_file`. A writer holds ``<file>.lock`` until
    :meth:`close`; a reader (``read_only``) holds nothing and never saves.
    """

    def __init__(
        self, path: Path, *, read_only: bool, clock: Clock | None = None, command: str = ""
    ) -> None:
        super().__init__("localhost", clock=clock)
        self.path = path
        self.read_only = read_only
        self._writer = None if read_only else WriterLock(path, command)
        self._saving = threading.Lock()  # a checkpoint and close() never rename at once
        self._closed = False

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        return f"FileBackedClient({str(self.path)!r}, {mode}, clock={self.clock!r})"

    def save(self) -> int:
        """Write the whole database to the file atomically (a checkpoint); return its documents.

        Raises ConfigurationError for a reader, a closed client or a failed write
        (the file then still holds the previous save).
        """
        if self.read_only:
            raise ConfigurationError(
                f"the embedded database {self.path} was opened read-only: it is never saved"
            )
        if self._closed:
            raise ConfigurationError(f"the embedded database {self.path} is closed")
        with self._saving:
            try:
                return save_from(self, self.path)
            except OSError as exc:
                raise ConfigurationError(
                    f"could not save the embedded database {self.path}: "
                    f"{exc.strerror or exc}; the file still holds the last save"
                ) from exc

    def close(self) -> None:
        """Save (a writer) and give the lock up; a second call does nothing.

        The lock is released even when the save fails, whose error is raised.
        """
        if self._closed:
            return
        try:
            if self._writer is not None:
                self.save()
        finally:
            self._closed = True
            if self._writer is not None:
                self._writer.release()
