"""The named types of the public API: what an id or a document is where the API takes one.

Every service uses these names instead of bare ``Any``, so a signature says
what it accepts: an :data:`IdLike` is checked by
:func:`nsn_store.arguments.as_object_id` (an ``ObjectId`` or its 24-hex
string, nothing else), a :data:`Document` is what a read returns (BSON as
PyMongo decodes it) and a :data:`DocumentIn` is any mapping the API reads
without keeping (filters, payloads, updates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, Union

from bson import ObjectId

__all__ = ["Document", "DocumentIn", "IdLike"]

#: A stored document as PyMongo decodes it.
Document: TypeAlias = dict[str, Any]

#: A document, filter, update or payload the API reads and does not keep.
DocumentIn: TypeAlias = Mapping[str, Any]

#: An id as the API accepts it: an ``ObjectId`` or its 24-hex-digit string.
IdLike: TypeAlias = Union[ObjectId, str]  # noqa: UP007 (a runtime alias on Python 3.10)
