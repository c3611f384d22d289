"""Measure the embedded database against raw mongomock (operations per second).

Usage: ``python benchmarks/bench_embedded.py [--quick]``

For 1k, 10k and 50k stored documents it times ``find_one`` by ``_id``,
``update_one`` by ``_id``, inserts into a collection with a unique index, and
inserts of valid documents without and with a ``$jsonSchema`` validator, on raw
``mongomock.MongoClient`` and on ``EmbeddedClient``, and prints a table with
ratios. Timings on a shared machine are noisy: read the ratios, not the absolute
figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mongomock

from nsn_store.embedded import EmbeddedClient

VALIDATOR = {
    "$jsonSchema": {
        "bsonType": "object",
        "required": ["tenantId", "status", "n"],
        "additionalProperties": False,
        "properties": {
            "_id": {"bsonType": "int"},
            "tenantId": {"bsonType": "string", "minLength": 1},
            "status": {"enum": ["scheduled", "processing", "sent"]},
            "n": {"bsonType": "int", "minimum": 0},
            "u": {"bsonType": "int"},
        },
    }
}


def _document(i: int) -> dict[str, Any]:
    return {"_id": i, "tenantId": f"t{i % 7}", "status": "scheduled", "n": i, "u": i}


def _collection(kind: str, size: int, validated: bool) -> Any:
    client = mongomock.MongoClient() if kind == "mongomock" else EmbeddedClient()
    db = client["bench"]
    coll = db.create_collection("docs", validator=VALIDATOR) if validated else db["docs"]
    coll.insert_many([_document(i) for i in range(size)])
    return coll


def _rate(operation: Callable[[int], Any], budget: float, cap: int) -> float:
    """Return operations per second, running for about ``budget`` seconds (at most ``cap`` ops)."""
    done, start = 0, time.perf_counter()
    while done < cap and (done < 3 or time.perf_counter() - start < budget):
        operation(done)
        done += 1
    return done / (time.perf_counter() - start)


def measure(kind: str, size: int, budget: float) -> dict[str, float]:
    coll = _collection(kind, size, validated=False)
    rates = {
        "find_one by _id": _rate(lambda i: coll.find_one({"_id": (i * 7919) % size}), budget, 5000),
        "update_one by _id": _rate(
            lambda i: coll.update_one({"_id": (i * 7919) % size}, {"$inc": {"n": 1}}), budget, 5000
        ),
        "insert (no validator)": _rate(
            lambda i: coll.insert_one(_document(size + i)), budget, 5000
        ),
    }
    coll.create_index("u", unique=True)
    rates["insert (unique index)"] = _rate(
        lambda i: coll.insert_one(_document(10_000_000 + i)), budget, 5000
    )
    if kind == "embedded":
        validated = _collection(kind, size, validated=True)
        rates["insert (validator)"] = _rate(
            lambda i: validated.insert_one(_document(size + i)), budget, 5000
        )
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1k and 10k only")
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 50_000]
    budget = 0.3 if args.quick else 1.5
    print(f"{'operation':<24}{'docs':>8}{'mongomock/s':>14}{'embedded/s':>14}{'ratio':>10}")
    for size in sizes:
        raw, ours = measure("mongomock", size, budget), measure("embedded", size, budget)
        for name, rate in ours.items():
            base = raw.get(name, raw["insert (no validator)"] if "insert" in name else rate)
            print(f"{name:<24}{size:>8}{base:>14.0f}{rate:>14.0f}{rate / base:>9.1f}x")
        overhead = ours["insert (no validator)"] / ours["insert (validator)"]
        print(f"{'validation overhead':<24}{size:>8}{'':>14}{'':>14}{overhead:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
