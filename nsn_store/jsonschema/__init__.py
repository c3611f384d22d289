"""A pure ``$jsonSchema`` engine with MongoDB's semantics: parse, match, explain.

It needs no database: the embedded database enforces validators with it and
``nsn-store check-data`` uses it to explain why stored documents fail. Parse
errors carry the server's codes (:class:`SchemaParseError`); the explanation is
shaped like the server's ``errInfo`` (MongoDB manual, "Schema Validation").
"""

from nsn_store.jsonschema._checks import SchemaParseError
from nsn_store.jsonschema._errinfo import explain_schema
from nsn_store.jsonschema._eval import matches_root
from nsn_store.jsonschema._node import SchemaNode
from nsn_store.jsonschema._parse import parse_schema

__all__ = ["SchemaNode", "SchemaParseError", "explain_schema", "matches_root", "parse_schema"]
